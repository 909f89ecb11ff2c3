"""What the demo serves, loaded once at startup: the model (with its fallbacks), the frozen CLIP baseline that
shares its backbone, galleries indexed by both, and what the offline world ships (example sketches, evaluation).

Gallery embeddings go through `splip_core`'s on-disk cache, keyed by file content and each model's fingerprint
and inference mode, so a restart re-embeds nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from splip_core import (
    DOODLE_PREFIX,
    IMAGE_SUFFIXES,
    EmptyGalleryError,
    Gallery,
    Ranker,
    SpLIP,
    class_key,
    display_name,
    tiny_model,
)

from .uploads import UploadLimits, check_gallery_dir

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
MINI_DIR = REPO_ROOT / "weights" / "mini"
SETTINGS = ("ZS", "GZS", "FG")  # retrieval settings; "mode" means the inference mode (faithful / fast)
Progress = Callable[[float, str], None]


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


# ----------------------------------------------------------------------------------------------------------------
# the model
@dataclass
class LoadedModel:
    """The model, how the UI names it, its local folder (evaluation.json lives there) and what went wrong."""

    model: SpLIP
    name: str
    directory: Path | None
    notices: list[str]


def load_model(ref: str | None, offline: bool = False, mini_dir: Path = MINI_DIR) -> LoadedModel:
    """`ref` (a checkpoint folder or Hub repo id); when it is None or cannot be loaded, the offline world in
    `mini_dir`; when that is missing too, a random tiny model. Every fallback leaves a notice for the UI."""
    notices = []
    if ref is not None:
        try:
            model = SpLIP.from_pretrained(ref, local_files_only=offline)
            return LoadedModel(model, ref, Path(ref) if Path(ref).is_dir() else None, notices)
        except (ValueError, OSError, RuntimeError) as err:  # CheckpointError, ConfigError, BackboneError included
            notices.append(f"Could not load the model `{ref}` ({err}). Using the offline world instead.")
    if (mini_dir / "config.json").is_file():
        try:
            return LoadedModel(SpLIP.from_pretrained(mini_dir), f"offline world ({_shown(mini_dir)})", mini_dir,
                               notices)
        except (ValueError, OSError, RuntimeError) as err:
            notices.append(f"The offline world in {_shown(mini_dir)} could not be loaded ({err}).")
    else:
        notices.append(f"Offline world not built yet ({_shown(mini_dir)} missing): running a random tiny model, "
                       "so the rankings are meaningless.")
    return LoadedModel(tiny_model(), "random tiny model (splip_core.tiny)", None, notices)


@dataclass(frozen=True)
class Split:
    """Which categories trained the prompts (seen) and which did not: the model's seen classes plus split.json."""

    seen: frozenset[str]
    unseen_names: tuple[str, ...] = ()

    @classmethod
    def of(cls, model: SpLIP, split_file: Path | None = None) -> Split:
        seen, unseen = list(model.config.seen_classes), []
        if split_file is not None and split_file.is_file():
            data = json.loads(split_file.read_text(encoding="utf-8"))
            seen += data.get("seen", [])
            unseen = [u for u in data.get("unseen", []) if class_key(u) not in {class_key(s) for s in seen}]
        return cls(frozenset(class_key(s) for s in seen), tuple(display_name(u) for u in unseen))

    def status(self, label: str | None) -> str | None:
        """"seen", "unseen", or None for an unlabelled photo."""
        if label is None:
            return None
        return "seen" if class_key(label) in self.seen else "unseen"


# ----------------------------------------------------------------------------------------------------------------
# galleries
class SearchSpace:
    """One photo folder indexed by SpLIP and by the frozen CLIP baseline (same photos, same order), with the
    category names and text vectors for guessing what a sketch shows, and the ZS / GZS / FG views."""

    def __init__(self, name: str, root: Path, splip: Gallery, baseline: Gallery, split: Split,
                 categories: list[str], text_vectors: np.ndarray):
        if [i.path for i in splip.items] != [i.path for i in baseline.items]:
            raise ValueError("SpLIP and baseline galleries hold different photos")
        self.name, self.root, self.splip, self.baseline, self.split = name, root, splip, baseline, split
        self.categories, self.text_vectors = categories, text_vectors
        self._views: dict[tuple, tuple[Gallery, Gallery]] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.splip)

    @property
    def labels(self) -> list[str]:
        return self.splip.labels

    def status(self, label: str | None) -> str | None:
        return self.split.status(label)

    def label_for(self, category: str) -> str | None:
        """The gallery's own label (folder name) for a category name, if it has photos of it."""
        return next((lab for lab in self.labels if class_key(lab) == class_key(category)), None)

    def relative(self, path: str) -> str:
        """A photo's path under the gallery folder, "/"-separated (its name when it is elsewhere). String work, not
        pathlib: it runs for every row of every API answer."""
        prefix = f"{self.root}{os.sep}"
        return (path[len(prefix):] if path.startswith(prefix) else os.path.basename(path)).replace(os.sep, "/")

    def view(self, setting: str, label: str | None = None) -> tuple[Gallery, Gallery, str]:
        """(SpLIP gallery, baseline gallery, a note) for a retrieval setting: ZS = unseen categories only, GZS = all,
        FG = the photos of `label` (instance-level ranking within one category)."""
        if setting == "GZS":
            return self.splip, self.baseline, ""
        if setting == "ZS":
            labels = tuple(lab for lab in self.labels if self.status(lab) == "unseen")
            if not labels:
                return self.splip, self.baseline, "This gallery has no unseen categories: ZS shows all photos."
            note = f"ZS: searching only the {len(labels)} unseen categories."
        elif setting == "FG":
            if label is None:
                return self.splip, self.baseline, "FG: no labels in this gallery, so ranking every photo."
            labels = (label,)
            note = f"FG: ranking the photos of **{display_name(label)}** instance by instance."
        else:
            raise ValueError(f"setting must be one of {SETTINGS}, got {setting!r}")
        with self._lock:
            if labels not in self._views:
                self._views[labels] = (self.splip.restrict(labels), self.baseline.restrict(labels))
            return (*self._views[labels], note)

    def describe(self) -> str:
        statuses = [self.status(lab) for lab in self.labels]
        unlabelled = sum(item.label is None for item in self.splip.items)
        parts = [f"{len(self)} photos", f"{len(self.labels)} categories ({statuses.count('seen')} seen / "
                                        f"{statuses.count('unseen')} unseen)"]
        if unlabelled:
            parts.append(f"{unlabelled} unlabelled")
        if self.splip.skipped:
            parts.append(f"{len(self.splip.skipped)} files skipped ({self.splip.n_non_image} not images)")
        return f"{self.name}: " + ", ".join(parts)


def _text_vectors(model: SpLIP, names: list[str]) -> tuple[list[str], np.ndarray]:
    """Sketch-prompt text vectors for category names, read by the text encoder the model's ranking reads names
    with; a name too long for the text encoder is left out."""
    reader = Ranker.text_reader(model)
    try:
        return names, reader.encode_text(names, "sketch").numpy()
    except ValueError:
        kept = []
        for name in names:
            try:
                kept.append((name, reader.encode_text([name], "sketch").numpy()[0]))
            except ValueError:
                log.warning("category %r is too long for the text encoder; it is left out of the guesses", name)
        return [n for n, _ in kept], np.stack([v for _, v in kept])


def build_space(name: str, root: Path, model: SpLIP, baseline: SpLIP, split: Split, cache_dir: Path | None,
                progress: Progress | None = None, backend: str = "exact", index_options: dict | None = None,
                seeds: Sequence[Path] = (), rankers: tuple[Ranker, Ranker] | None = None) -> SearchSpace:
    """Index `root` with both models (cached embeddings are reused), each ranking as its `rankers` entry says
    (default: each model's own ranking), and prepare the category guesses.

    Raises EmptyGalleryError when the folder holds no usable photo.
    """
    rankers = rankers or (Ranker.of(model), Ranker.of(baseline))
    galleries = []
    for step, (who, encoder, ranker) in enumerate((("SpLIP", model, rankers[0]),
                                                   ("CLIP baseline", baseline, rankers[1]))):
        def report(done: int, total: int, step=step, who=who) -> None:
            if progress is not None:
                progress((step + done / max(total, 1)) / 2, f"embedding photos for {who}: {done}/{total}")

        galleries.append(Gallery.from_folder(
            root, lambda images, enc=encoder: enc.encode_photo(images).numpy(), encoder.fingerprint(),
            encoder.config.inference_mode, cache_dir=cache_dir, backend=backend, progress=progress is None,
            progress_callback=report,
            index_options=None if index_options is None else {**index_options, "collection": f"splip_{step}"},
            seeds=seeds, to_search=lambda vectors, r=ranker: r.vectors(vectors, "photo").numpy()))
    splip, base = galleries
    names = sorted({display_name(lab) for lab in splip.labels} | set(split.unseen_names)
                   | {display_name(s) for s in model.config.seen_classes}, key=str.lower)
    categories, vectors = _text_vectors(model, names)
    return SearchSpace(name, root, splip, base, split, categories, vectors)


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 120 else f"{seconds:.0f} s"


class UserGalleries:
    """Galleries uploaded by visitors, one per browser session, each with its own photo and cache folders.

    A gallery lives while its visitor uses it: it expires `ttl_s` seconds after its last search or upload (the
    page's `gr.State` has the same time to live and calls `drop` when it expires or the tab closes), and at most
    `capacity` are held at once: a new one replaces the least recently used. A visitor whose gallery is gone is told
    why (`lookup`), never silently given the app's gallery. Memory: at most `capacity` galleries of at most
    `UploadLimits.max_images` photos, each held as two (n, D) float32 matrices (SpLIP and baseline) plus at most as
    much again in ZS/FG views: capacity x 5000 x 2 x 2 x D x 4 bytes, 82 MB at D = 128 (the offline world), 328 MB
    at D = 512 (ViT-B).
    """

    def __init__(self, capacity: int = 8, ttl_s: float = 1800.0):
        self.capacity, self.ttl_s = capacity, ttl_s
        self._spaces: OrderedDict[str, tuple[SearchSpace, list[Path], float]] = OrderedDict()  # (, folders, last use)
        self._gone: OrderedDict[str, str] = OrderedDict()  # key -> why it is no longer here, for its visitor
        self._lock = threading.Lock()

    @staticmethod
    def key_for(session: str) -> str:
        """The gallery key of a browser session (not the session id itself, which is kept out of the page)."""
        return hashlib.sha256(f"splip-gallery\0{session}".encode()).hexdigest()[:24]

    def describe_limits(self) -> str:
        return (f"it stays while you use it and is removed {_duration(self.ttl_s)} after your last search, or "
                f"when you close this tab; the server keeps at most {self.capacity} visitors' galleries (the least "
                "recently used goes first)")

    def add(self, key: str, space: SearchSpace, folders: list[Path]) -> None:
        """Hold `space` for `key`, replacing that visitor's previous gallery; `folders` (its photos, its embedding
        cache) are deleted with it. A folder the previous gallery shared (the cache) is kept."""
        with self._lock:
            self._expire(time.monotonic())
            old = self._spaces.pop(key, None)
            self._spaces[key] = (space, folders, time.monotonic())
            self._gone.pop(key, None)
            while len(self._spaces) > self.capacity:
                evicted, (_, evicted_folders, _) = self._spaces.popitem(last=False)
                self._forget(evicted, evicted_folders, f"it was removed to make room: the server keeps at most "
                                                       f"{self.capacity} visitors' galleries")
        for folder in [] if old is None else set(old[1]) - set(folders):
            shutil.rmtree(folder, ignore_errors=True)

    def lookup(self, key: str) -> tuple[SearchSpace | None, str]:
        """(the gallery, "") while it is held, refreshing its time to live; (None, why it is gone) after it expired
        or was evicted; (None, "") for a visitor who has none."""
        now = time.monotonic()
        with self._lock:
            self._expire(now)
            entry = self._spaces.get(key)
            if entry is None:
                return None, self._gone.get(key, "")
            self._spaces[key] = (entry[0], entry[1], now)
            self._spaces.move_to_end(key)
            return entry[0], ""

    def drop(self, key: str | None, reason: str | None = None) -> None:
        """Remove a visitor's gallery and its files; by default as expired (the `gr.State` delete callback: tab
        closed or time to live passed); `reason=""` when the visitor chose to leave it (nothing to tell them)."""
        if not key:
            return
        with self._lock:
            entry = self._spaces.pop(key, None)
            if entry is not None:
                self._forget(key, entry[1], f"it expired after {_duration(self.ttl_s)} without a search"
                             if reason is None else reason)

    def __len__(self) -> int:
        with self._lock:
            return len(self._spaces)

    def _expire(self, now: float) -> None:
        for key, (_, folders, used) in list(self._spaces.items()):
            if used + self.ttl_s <= now:
                del self._spaces[key]
                self._forget(key, folders, f"it expired after {_duration(self.ttl_s)} without a search")

    def _forget(self, key: str, folders: list[Path], reason: str) -> None:
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)
        if not reason:
            self._gone.pop(key, None)
            return
        self._gone[key] = reason
        while len(self._gone) > 10_000:
            self._gone.popitem(last=False)


# ----------------------------------------------------------------------------------------------------------------
# what the offline world ships
@dataclass(frozen=True)
class Example:
    """An example sketch: its file, class label, the instance it was drawn from (FG pair) and seen/unseen."""

    path: Path
    label: str
    instance: str
    status: str

    @property
    def caption(self) -> str:
        return f"{display_name(self.label)} · {self.status}"


def find_examples(sketch_root: Path, split: Split, per_group: int = 4) -> list[Example]:
    """Up to `per_group` seen and `per_group` unseen example sketches, one per class, classes spread evenly; a real
    doodle (qd_*) where a class has one."""
    if not sketch_root.is_dir():
        return []
    groups: dict[str, list[Example]] = {"seen": [], "unseen": []}
    for folder in sorted(p for p in sketch_root.iterdir() if p.is_dir()):
        files = sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES),
                       key=lambda p: (not p.name.startswith(DOODLE_PREFIX), p.name))
        if files:
            status = split.status(folder.name)
            groups[status].append(Example(files[0], folder.name, re.sub(r"-\d+$", "", files[0].stem), status))
    chosen = []
    for group in groups.values():
        step = max(len(group) / per_group, 1)
        chosen += [group[int(i * step)] for i in range(min(per_group, len(group)))]
    return chosen


def load_evaluation(directory: Path | None) -> tuple[dict | None, str]:
    """evaluation.json of the model folder, or None with the reason the About tab shows."""
    if directory is None or not (directory / "evaluation.json").is_file():
        return None, "No evaluation shipped with this model (evaluation.json missing)."
    try:
        data = json.loads((directory / "evaluation.json").read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        return data, ""
    except (OSError, ValueError) as err:
        return None, f"The shipped evaluation.json could not be read ({err})."


MAX_FAST_LOSS = 0.005  # fast mode is the default when it loses at most this much ZS mAP@all (half a point)


def choose_inference_mode(evaluation: dict | None) -> tuple[str | None, str]:
    """("fast", why) when the shipped evaluation measured both modes and fast mode costs at most MAX_FAST_LOSS
    mAP@all; else (None, "") and the model keeps its own mode."""
    modes = (evaluation or {}).get("modes") or {}
    try:
        fast, faithful = float(modes["fast"]["mAP@all"]), float(modes["faithful"]["mAP@all"])
    except (KeyError, TypeError, ValueError):
        return None, ""
    if faithful - fast > MAX_FAST_LOSS:
        return None, ""
    return "fast", (f"fast mode, chosen because the shipped evaluation measured no accuracy cost: ZS mAP@all "
                    f"{100 * fast:.2f} (fast) vs {100 * faithful:.2f} (faithful); `--mode faithful` runs the "
                    "paper's per-image text pass")


# ----------------------------------------------------------------------------------------------------------------
@dataclass
class DemoState:
    """Everything the handlers need, shared by all visitors (read-only after startup except `user_spaces`)."""

    model: SpLIP
    baseline: SpLIP
    rankers: tuple[Ranker, Ranker]  # how SpLIP and the baseline rank photos (the model's config.ranking, both)
    model_name: str
    split: Split
    space: SearchSpace | None
    gallery_note: str
    examples: list[Example]
    evaluation: dict | None
    evaluation_note: str
    cache_dir: Path
    upload_dir: Path
    top_k: int = 10
    backend: str = "exact"
    limits: UploadLimits = field(default_factory=UploadLimits)
    notices: list[str] = field(default_factory=list)
    user_spaces: UserGalleries = field(default_factory=UserGalleries)
    inference_note: str = ""
    seeds: list[Path] = field(default_factory=list)

    @classmethod
    def create(cls, model_ref: str | None = None, gallery: str | Path | None = None, offline: bool = False,
               cache_dir: str | Path | None = None, top_k: int = 10, mini_dir: Path = MINI_DIR,
               limits: UploadLimits | None = None, backend: str = "exact", inference_mode: str | None = None,
               milvus_uri: str | None = None) -> DemoState:
        """Load the model (falling back as `load_model` says), index the gallery and find the shipped extras.

        `backend` is the search index (splip_core.index.BACKENDS; "milvus" reaches `milvus_uri`, a Milvus server
        URI or a Milvus Lite file, default CACHE_DIR/gallery.db); `inference_mode` overrides the model's own
        ("faithful" or the faster approximation "fast"). Without it, fast mode is chosen when the model's
        shipped evaluation shows it costs no accuracy (`choose_inference_mode`).

        Gallery embeddings come from the cache, else from the seeds shipped in the model folder's `embeddings/`
        (`python -m splip_core.cache prebuild`) when fingerprint, mode and photo content all match, else are
        computed.

        The gallery is `gallery`, else the offline world's test photos. Uploads go to a fresh temporary folder,
        removed when the app exits.
        """
        gallery = check_gallery_dir(gallery) if gallery is not None else None
        loaded = load_model(model_ref, offline, mini_dir)
        has_world = loaded.directory is not None and (loaded.directory / "gallery").is_dir()
        world = loaded.directory if has_world else mini_dir
        split = Split.of(loaded.model, world / "gallery" / "split.json")
        evaluation, evaluation_note = load_evaluation(loaded.directory)
        inference_note = ""
        if inference_mode is None:
            inference_mode, inference_note = choose_inference_mode(evaluation)
        if inference_mode is not None:
            loaded.model.set_inference_mode(inference_mode)  # before the fingerprint (cache key) is first computed
        cache_dir = Path(cache_dir if cache_dir is not None else Path.home() / ".cache" / "splip" / "demo")
        loaded.model.trace_for_serving()  # a query's forward holds no GIL, so searches and the event loop share it
        baseline = loaded.model.frozen_baseline().trace_for_serving()
        state = cls(model=loaded.model, baseline=baseline,
                    rankers=(Ranker.of(loaded.model), Ranker.of(baseline)), model_name=loaded.name,
                    split=split, space=None, gallery_note="", examples=find_examples(world / "gallery" / "sketch",
                                                                                     split),
                    evaluation=evaluation, evaluation_note=evaluation_note, cache_dir=cache_dir.expanduser().resolve(),
                    upload_dir=Path(tempfile.mkdtemp(prefix="splip-demo-uploads-")).resolve(), top_k=top_k,
                    backend=backend, limits=limits or UploadLimits(), notices=list(loaded.notices),
                    inference_note=inference_note)
        state.seeds = list(dict.fromkeys(d / "embeddings" for d in (loaded.directory, world)
                                         if d is not None and (d / "embeddings").is_dir()))
        weakref.finalize(state, shutil.rmtree, state.upload_dir, ignore_errors=True)  # at exit, or when dropped
        root = gallery if gallery is not None else world / "gallery" / "photo"
        if not root.is_dir():
            state.gallery_note = ("No gallery yet: upload photos in the *Your gallery* tab, or start the app with "
                                  "`--gallery DIR`.")
            return state
        try:
            options = None
            if backend == "milvus":
                options = {"uri": milvus_uri or str(state.cache_dir / "gallery.db")}
            state.space = build_space(_shown(root), root, state.model, state.baseline, split,
                                      state.gallery_cache(root), backend=backend, index_options=options,
                                      seeds=state.seeds, rankers=state.rankers)
        except EmptyGalleryError as err:
            state.gallery_note = f"{err}. Upload photos in the *Your gallery* tab instead."
            state.notices.append(str(err))
        return state

    def gallery_cache(self, root: Path | None, visitor: str | None = None) -> Path:
        """Where a gallery's embeddings are cached: one folder per gallery folder and one per visitor's uploads, so
        that indexing one gallery never drops another's cached embeddings."""
        if root is None:
            return self.cache_dir / "embeddings" / "uploads" / (visitor or "anonymous")
        return self.cache_dir / "embeddings" / hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]

    def allowed_paths(self) -> list[str]:
        """The only folders the server may read files from: the gallery, the example sketches and uploads."""
        paths = [self.upload_dir]
        if self.space is not None:
            paths.append(self.space.root)
        paths += sorted({e.path.parent.parent for e in self.examples})
        return [str(p) for p in paths]

    def space_for(self, key: str | None) -> tuple[SearchSpace | None, str]:
        """(the gallery to search, "") for a visitor: their upload when they have one (key), else the app's
        gallery; (None, what to tell them) when their upload is gone, never the app's gallery in its place."""
        if not key:
            return self.space, ""
        space, why = self.user_spaces.lookup(key)
        if space is None and not why:
            return self.space, ""
        if space is None:
            return None, (f"Your uploaded gallery is gone: {why}. Upload it again in *Your gallery*, or press "
                          "*Back to the app's gallery* there.")
        return space, ""

    def info_line(self, space: SearchSpace | None) -> str:
        c = self.model.config
        model = (f"**Model:** {self.model_name} — `{c.backbone.name}`, {len(c.seen_classes)} seen classes, "
                 f"{c.inference_mode} mode, fingerprint `{self.model.fingerprint()}`")
        gallery = f"**Gallery:** {space.describe()}" if space is not None else f"**Gallery:** none. {self.gallery_note}"
        mode = f"  \n**Mode:** {self.inference_note}" if self.inference_note else ""
        return f"{model}{mode}  \n{gallery}"
