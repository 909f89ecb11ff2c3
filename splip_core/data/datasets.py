"""The common in-memory description of an SBIR dataset, the split files, and the generic on-disk readers.

Every dataset (Sketchy, TU-Berlin, QuickDraw, a plain folder) becomes one `SBIRData`: the class names, every sketch
and photo as a `Sample` (path, label, instance id), and the unseen classes of the chosen zero-shot split. The
evaluation protocols (ZS, GZS, FG) are then selections over it, so no protocol depends on a dataset's folder layout.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from splip_core.names import class_key
from splip_core.preprocess import IMAGE_SUFFIXES

SPLITS_DIR = Path(__file__).parent / "splits"

# Full class list and the named zero-shot splits of each dataset; the first split named is the default.
CLASS_FILES = {
    "sketchy": "sketchy_classes.txt",
    "tuberlin": "tuberlin_classes.txt",
    "quickdraw": "quickdraw_classes.txt",
}
SPLIT_FILES = {
    "sketchy": {
        "split1": "sketchy_split1_sake.txt",
        "split1_sake": "sketchy_split1_sake.txt",
        "split1_sempcyc": "sketchy_split1_sempcyc.txt",
        "split2": "sketchy_split2.txt",
    },
    "tuberlin": {
        "sake": "tuberlin_split_sake.txt",
        "sempcyc": "tuberlin_split_sempcyc.txt",
    },
    "quickdraw": {"dey": "quickdraw_split_dey.txt"},
}


DOODLE_PREFIX = "qd_"  # a folder dataset's Quick, Draw! doodles are named qd_<index>.png
SKETCH_DOMAINS = ("doodles", "icons")


class DatasetError(ValueError):
    """A dataset that cannot be used as asked: missing root, unknown layout, bad split, empty class, bad list."""


@dataclass(frozen=True)
class Sample:
    """One image file: its class label (index into `SBIRData.classes`) and, for paired data, its instance id.

    A sketch and a photo with the same label and the same instance id depict the same object (Sketchy's pairs);
    `instance` is None where a file has no partner (TU-Berlin, QuickDraw, Sketchy's extended photos).
    """

    path: Path
    label: int
    instance: str | None = None


@dataclass
class SBIRData:
    """A loaded dataset and its zero-shot split; the protocol selections (ZS / GZS / FG) are methods."""

    classes: list[str]
    sketches: list[Sample]
    photos: list[Sample]
    unseen: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if len(set(self.classes)) != len(self.classes):
            raise DatasetError("class names must be unique")
        unknown = sorted(set(self.unseen) - set(self.classes))
        if unknown:
            raise DatasetError(f"unseen classes not among the dataset's classes: {unknown}")
        for sample in (*self.sketches, *self.photos):
            if not 0 <= sample.label < len(self.classes):
                raise DatasetError(f"{sample.path}: label {sample.label} outside 0..{len(self.classes) - 1}")

    @property
    def seen(self) -> list[str]:
        """The training classes: every class that is not unseen, in class order."""
        unseen = set(self.unseen)
        return [name for name in self.classes if name not in unseen]

    def labels_of(self, classes: Iterable[str]) -> set[int]:
        """The labels of the named classes; DatasetError names any that the dataset does not have."""
        index = {name: i for i, name in enumerate(self.classes)}
        classes = list(classes)
        missing = [name for name in classes if name not in index]
        if missing:
            raise DatasetError(f"classes not in this dataset: {missing}")
        return {index[name] for name in classes}

    def sketches_of(self, classes: Iterable[str]) -> list[Sample]:
        """The sketches of the named classes, in load order."""
        labels = self.labels_of(classes)
        return [s for s in self.sketches if s.label in labels]

    def photos_of(self, classes: Iterable[str], paired_only: bool = False) -> list[Sample]:
        """The photos of the named classes; with `paired_only`, only those that have an instance id."""
        labels = self.labels_of(classes)
        return [p for p in self.photos if p.label in labels and (p.instance is not None or not paired_only)]

    def zs_split(self) -> tuple[list[Sample], list[Sample]]:
        """ZS-SBIR: unseen-class sketch queries against the unseen-class photo gallery."""
        self._need_unseen()
        return self.sketches_of(self.unseen), self.photos_of(self.unseen)

    def gzs_split(self, queries: str = "unseen") -> tuple[list[Sample], list[Sample]]:
        """GZS-SBIR: sketch queries against the photos of ALL classes (seen and unseen).

        `queries="unseen"` (default) follows Yelamarthi et al. / SEM-PCYC (unseen-class sketches only); "all" also
        queries with the seen-class sketches. The seen-class gallery is every seen photo (no held-out subset).
        """
        self._need_unseen()
        if queries == "unseen":
            return self.sketches_of(self.unseen), list(self.photos)
        if queries == "all":
            return list(self.sketches), list(self.photos)
        if queries == "seen":
            return self.sketches_of(self.seen), list(self.photos)
        raise ValueError(f"queries must be 'unseen', 'seen' or 'all', not {queries!r}")

    def sketch_domain(self, domain: str) -> SBIRData:
        """The same data with only one domain's sketches: "doodles" (files named `qd_*`, Quick, Draw! doodles),
        "icons" (every other sketch: the mini world's icon families) or "all"."""
        if domain == "all":
            return self
        if domain not in SKETCH_DOMAINS:
            raise DatasetError(f"sketch domain must be one of {('all', *SKETCH_DOMAINS)}, not {domain!r}")
        keep = [s for s in self.sketches if s.path.name.startswith(DOODLE_PREFIX) == (domain == "doodles")]
        return dataclasses.replace(self, sketches=keep)

    def fg_split(self, classes: Iterable[str] | None = None) -> tuple[list[Sample], list[Sample]]:
        """FG-ZS-SBIR: sketches of `classes` (default: unseen) that have a paired photo, against the paired photos.

        Evaluate with `metrics.fg_accuracy(..., query_labels, gallery_labels)` so that each query only ranks the
        photos of its own category.
        """
        classes = list(self.unseen if classes is None else classes)
        if not classes:
            raise DatasetError("no classes to evaluate: the split has no unseen classes and none were given")
        gallery = self.photos_of(classes, paired_only=True)
        paired = {(p.label, p.instance) for p in gallery}
        queries = [s for s in self.sketches_of(classes) if (s.label, s.instance) in paired]
        if not queries:
            raise DatasetError(f"no sketch-photo pairs (instance ids) in classes {classes[:5]}...")
        return queries, gallery

    def _need_unseen(self) -> None:
        if not self.unseen:
            raise DatasetError("this dataset has no unseen classes: load it with a zero-shot split")


def read_class_list(path: str | Path) -> list[str]:
    """Class names from a list file: one per line; blank lines and lines starting with '#' are skipped.

    Also reads the `name id` format of SAKE / ZSE-SBIR's cname_cid.txt: when every line ends in a number and those
    numbers are 0, 1, 2, ... in order, the number is dropped. Names may contain spaces.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: class list not found")
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    names = [line for line in lines if line and not line.startswith("#")]
    if not names:
        raise DatasetError(f"{path}: no class names in the file")
    numbered = [re.fullmatch(r"(.*\S)\s+(\d+)", name) for name in names]
    if all(numbered) and [int(m.group(2)) for m in numbered] == list(range(len(names))):
        names = [m.group(1) for m in numbered]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise DatasetError(f"{path}: classes listed twice: {duplicates}")
    return names


def read_file_list(
    list_file: str | Path,
    class_file: str | Path,
    root: str | Path,
    instance_of: Callable[[Path], str | None] | None = None,
) -> list[Sample]:
    """Samples from a `relative/path label` list (SAKE / ZSE-SBIR format), paths resolved under `root`.

    The label is the 0-based row of `class_file` (see `read_class_list`). Paths may contain spaces ("palm tree"),
    so each line is split on its LAST space. `instance_of(path)` gives the instance id (default: none). Files are
    not opened here; unreadable ones are skipped later by `sampling.ImageDataset`.
    """
    list_file, root = Path(list_file), Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: image root not found")
    if not list_file.is_file():
        raise DatasetError(f"{list_file}: file list not found")
    n_classes = len(read_class_list(class_file))
    samples = []
    for number, line in enumerate(list_file.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        rel, _, label = line.rpartition(" ")
        if not rel or not label.lstrip("-").isdigit():
            raise DatasetError(f"{list_file}:{number}: expected 'path label', got {line!r}")
        if not 0 <= int(label) < n_classes:
            raise DatasetError(f"{list_file}:{number}: label {label} outside 0..{n_classes - 1} of {class_file}")
        path = root / rel.strip()
        samples.append(Sample(path, int(label), instance_of(path) if instance_of else None))
    if not samples:
        raise DatasetError(f"{list_file}: no entries")
    return samples


def image_files(folder: Path) -> list[Path]:
    """The image files directly in `folder` (any case of a known suffix; hidden files skipped), sorted by name."""
    return sorted(
        p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    )


def class_folders(folder: Path) -> dict[str, Path]:
    """The visible sub-folders of `folder` by name."""
    return {p.name: p for p in sorted(folder.iterdir()) if p.is_dir() and not p.name.startswith(".")}


def find_layout(root: Path, layouts: Sequence[tuple[str, ...]], dataset: str) -> tuple[Path, ...]:
    """The first layout (tuple of folder paths relative to `root`) whose folders all exist, as absolute paths.

    DatasetError names the root and every layout that was looked for.
    """
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset root not found")
    for layout in layouts:
        paths = tuple(root / rel for rel in layout)
        if all(p.is_dir() for p in paths):
            return paths
    expected = "; ".join(" + ".join(f"{rel}/<class>/" for rel in layout) for layout in layouts)
    raise DatasetError(f"{root}: not a {dataset} folder; expected one of: {expected}")


def canonical_classes(
    folders: dict[str, Path], known: Sequence[str], where: Path, aliases: dict[str, str] | None = None
) -> dict[str, Path]:
    """Map on-disk class folders to the dataset's own class names (`known`), whatever the release's spelling.

    A folder matches a known class by exact name, by `aliases` (a release's misspellings), or by `class_key`.
    DatasetError names folders that match no class of the dataset, and classes that two folders match.
    """
    by_key = {class_key(name): name for name in known}
    aliases = aliases or {}
    mapped: dict[str, Path] = {}
    unknown, twice = [], []
    for name, path in folders.items():
        canonical = name if name in known else aliases.get(name) or by_key.get(class_key(name))
        if canonical is None:
            unknown.append(name)
        elif canonical in mapped:
            twice.append(f"{mapped[canonical].name} / {name}")
        else:
            mapped[canonical] = path
    if unknown:
        raise DatasetError(f"{where}: folders that are not classes of this dataset: {sorted(unknown)}")
    if twice:
        raise DatasetError(f"{where}: two folders for the same class: {twice}")
    return mapped


def match_split(unseen: Sequence[str], classes: Sequence[str], where: Path) -> list[str]:
    """The split's class names spelled as in `classes`; DatasetError names split classes not on disk."""
    by_key = {class_key(name): name for name in classes}
    matched = [name if name in classes else by_key.get(class_key(name)) for name in unseen]
    missing = [name for name, got in zip(unseen, matched, strict=True) if got is None]
    if missing:
        raise DatasetError(f"{where}: split classes with no folder on disk: {missing}")
    return [name for name in matched if name is not None]


def resolve_split(dataset: str, split: str | Path | Iterable[str] | None) -> list[str]:
    """The unseen classes for `split`: a split name of `dataset` (None = its default), a class-list file path, or
    an iterable of class names."""
    named = SPLIT_FILES.get(dataset, {})
    if split is None:
        if not named:
            return []
        split = next(iter(named))
    if isinstance(split, str) and split in named:
        return read_class_list(SPLITS_DIR / named[split])
    if isinstance(split, (str, Path)):
        if Path(split).is_file():
            return read_class_list(split)
        choices = ", ".join(named) or "none"
        raise DatasetError(f"unknown split {str(split)!r} for {dataset} (named splits: {choices}; or a file path)")
    return list(split)


def build(
    classes_to_dirs: Sequence[tuple[str, Sequence[Path], Sequence[Path]]],
    unseen: Sequence[str],
    root: Path,
    sketch_instance: Callable[[Path], str | None] | None = None,
    photo_instance: Callable[[Path], str | None] | None = None,
) -> SBIRData:
    """An SBIRData from (class, sketch folders, photo folders) triples, classes labelled in the given order.

    `sketch_instance` / `photo_instance` give each file's instance id (None: unpaired). A class given no sketch
    folder at all is gallery-only. Photo folders are read in
    order; a file whose name already came from an earlier folder of the same class is a duplicate (Sketchy's
    extended set repeats the original photos) and is dropped. DatasetError names empty classes.
    """
    names = [name for name, _, _ in classes_to_dirs]
    sketches, photos, empty = [], [], []
    for label, (name, sketch_dirs, photo_dirs) in enumerate(classes_to_dirs):
        class_sketches = [p for d in sketch_dirs for p in image_files(d)]
        seen_names: set[str] = set()
        class_photos = []
        for folder in photo_dirs:
            for path in image_files(folder):
                if path.name in seen_names:
                    continue
                seen_names.add(path.name)
                class_photos.append(Sample(path, label, photo_instance(path) if photo_instance else None))
        if sketch_dirs and not class_sketches:
            empty.append(f"{name} (no sketches in {', '.join(map(str, sketch_dirs))})")
        if not class_photos:
            empty.append(f"{name} (no photos in {', '.join(map(str, photo_dirs))})")
        sketches += [Sample(p, label, sketch_instance(p) if sketch_instance else None) for p in class_sketches]
        photos += class_photos
    if empty:
        raise DatasetError(f"{root}: empty class folders: {empty}")
    return SBIRData(classes=names, sketches=sketches, photos=photos, unseen=list(unseen))


def sketchy_sketch_instance(path: Path) -> str:
    """Sketchy's pairing: sketch `n02691156_10151-3.png` is of photo `n02691156_10151` (stem before the last '-')."""
    return path.stem.rpartition("-")[0] or path.stem


def stem_instance(path: Path) -> str:
    """A photo's instance id: its file stem."""
    return path.stem


def load_class_folders(
    root: str | Path,
    dataset: str,
    layouts: Sequence[tuple[str, str]],
    split: str | Path | Iterable[str] | None,
    photo_aliases: dict[str, str] | None = None,
) -> SBIRData:
    """A dataset stored as `<sketch folder>/<class>/*` + `<photo folder>/<class>/*` (TU-Berlin, QuickDraw).

    `layouts` lists the (sketch folder, photo folder) pairs that releases use, relative to `root`. Folder names are
    mapped to the dataset's class list (`CLASS_FILES`), so labels follow that list whatever the release's spelling.
    """
    root = Path(root)
    known = read_class_list(SPLITS_DIR / CLASS_FILES[dataset])
    sketch_dir, photo_dir = find_layout(root, layouts, dataset)
    sketch_classes = canonical_classes(class_folders(sketch_dir), known, sketch_dir)
    photo_classes = canonical_classes(class_folders(photo_dir), known, photo_dir, photo_aliases)
    unpaired = sorted(set(sketch_classes) ^ set(photo_classes))
    if unpaired:
        raise DatasetError(f"{root}: classes with sketches but no photo folder, or the reverse: {unpaired}")
    names = [name for name in known if name in sketch_classes]
    if not names:
        raise DatasetError(f"{sketch_dir}: no class folders")
    unseen = match_split(resolve_split(dataset, split), names, root)
    triples = [(name, [sketch_classes[name]], [photo_classes[name]]) for name in names]
    return build(triples, unseen, root)


def load_folder(root: str | Path, split: str | Path | Iterable[str] | None = None) -> SBIRData:
    """The generic layout `ROOT/sketch/<class>/*` + `ROOT/photo/<class>/*` (class names = folder names, sorted).

    A class may have photos and no sketch folder (a gallery-only distractor, as in a GZS gallery); a sketch class
    without photos is an error.

    Unseen classes come from `split` (a class-list file or names) or, when None, from the "unseen" list of an
    optional `ROOT/split.json` (no file: every class is seen). Sketches pair with photos the Sketchy way: a sketch
    named `<photo stem>-<n>` (or exactly `<photo stem>`) gets that photo's instance id.
    """
    root = Path(root)
    sketch_dir, photo_dir = find_layout(root, [("sketch", "photo")], "sketch/photo")
    sketch_classes, photo_classes = class_folders(sketch_dir), class_folders(photo_dir)
    only_sketch = sorted(set(sketch_classes) - set(photo_classes))
    if only_sketch:
        raise DatasetError(f"{root}: classes with sketches but no photo folder (only in sketch/: {only_sketch})")
    if not sketch_classes:
        raise DatasetError(f"{sketch_dir}: no class folders")
    names = sorted(photo_classes)  # a photo-only class is a gallery distractor (GZS): it has no queries
    wanted = _split_json(root / "split.json") if split is None else resolve_split("folder", split)
    unseen = match_split(wanted, names, root)
    stems = {name: {p.stem for p in image_files(photo_classes[name])} for name in names}

    def sketch_instance(path: Path) -> str | None:
        photo_stems = stems[path.parent.name]
        for candidate in (sketchy_sketch_instance(path), path.stem):
            if candidate in photo_stems:
                return candidate
        return None

    triples = [(name, [sketch_classes[name]] if name in sketch_classes else [], [photo_classes[name]])
               for name in names]
    return build(triples, unseen, root, sketch_instance, stem_instance)


def _split_json(path: Path) -> list[str]:
    if not path.is_file():
        return []
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DatasetError(f"{path}: not readable JSON ({err})") from err
    unseen = content.get("unseen", []) if isinstance(content, dict) else None
    if not isinstance(unseen, list) or not all(isinstance(name, str) for name in unseen):
        raise DatasetError(f'{path}: expected {{"unseen": [class names]}}')
    return unseen
