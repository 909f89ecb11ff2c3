"""Sketchy (Sangkloy et al. 2016) and Sketchy-Ext (with the 73,002 photos collected by Liu et al., CVPR 2017).

Folders read, each optionally under `256x256/`, `rendered_256x256/256x256/`, `Sketchy/` or `Sketchy/256x256/`:
  sketches          `sketch/tx_000000000000/<class>/*.png`  (or `tx_000000000000_ready`, the SAKE / ZSE-SBIR copy)
  original photos   `photo/tx_000000000000/<class>/*.jpg`   (or `tx_000000000000_ready`); paired with the sketches
  extended photos   `EXTEND_image_sketchy/<class>/*`  (Liu et al.'s zip, Doodle2Search), `EXTEND_image_sketchy_ready`
                    (SAKE / ZSE-SBIR) or `extended_photo` (SEM-PCYC), next to `sketch/`, one level up, or in `root`
Pairing: sketch `n02691156_10151-3.png` is of photo `n02691156_10151.jpg`. Only the original photos carry instance
ids. The extended folder repeats the original photos under the same file names; each is kept once (SAKE / ZSE-SBIR's
file lists count these 12,500 photos twice).
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from pathlib import Path

from splip_core.data.datasets import (
    CLASS_FILES,
    SPLITS_DIR,
    DatasetError,
    SBIRData,
    build,
    canonical_classes,
    class_folders,
    match_split,
    read_class_list,
    resolve_split,
    sketchy_sketch_instance,
)

BASES = ("", "256x256", "rendered_256x256/256x256", "Sketchy", "Sketchy/256x256")
SKETCH_DIRS = ("sketch/tx_000000000000", "sketch/tx_000000000000_ready")
PHOTO_DIRS = ("photo/tx_000000000000", "photo/tx_000000000000_ready")
EXTENDED_DIRS = ("EXTEND_image_sketchy", "EXTEND_image_sketchy_ready", "extended_photo")


def _first_dir(candidates: Iterable[Path]) -> Path | None:
    return next((p for p in candidates if p.is_dir()), None)


def load_sketchy(root: str | Path, split: str | Path | Iterable[str] | None = None, extended: bool = True) -> SBIRData:
    """Sketchy-Ext (or, with `extended=False`, plain Sketchy with its 12,500 paired photos) from `root`.

    Splits: "split1" (default; = "split1_sake", 25 unseen, Shen et al. as released by SAKE / ZSE-SBIR),
    "split1_sempcyc" (SEM-PCYC's seed-0 redraw), "split2" (21 unseen, Yelamarthi et al.), a class-list file, or
    class names. With `extended=True` the extended photo folder must exist.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset root not found")
    base = next((root / b for b in BASES if _first_dir(root / b / s for s in SKETCH_DIRS)), None)
    if base is None:
        raise DatasetError(
            f"{root}: not a Sketchy folder; expected {' or '.join(f'{s}/<class>/' for s in SKETCH_DIRS)}, "
            f"optionally under {', '.join(b + '/' for b in BASES if b)}"
        )
    sketch_dir = _first_dir(base / s for s in SKETCH_DIRS)
    photo_dir = _first_dir(base / p for p in PHOTO_DIRS)
    extended_dir = None
    if extended:
        places = dict.fromkeys((base, base.parent, root))
        extended_dir = _first_dir(place / e for place in places for e in EXTENDED_DIRS)
        if extended_dir is None:
            raise DatasetError(
                f"{root}: no Sketchy-Ext photo folder ({', '.join(EXTENDED_DIRS)}) in "
                f"{', '.join(map(str, places))}; pass extended=False to use the original photos only"
            )
    elif photo_dir is None:
        raise DatasetError(f"{base}: no photo folder ({' or '.join(PHOTO_DIRS)})")

    known = read_class_list(SPLITS_DIR / CLASS_FILES["sketchy"])
    sketches = canonical_classes(class_folders(sketch_dir), known, sketch_dir)
    photo_sets = [canonical_classes(class_folders(d), known, d) for d in (photo_dir, extended_dir) if d]
    photo_only = sorted({name for photos in photo_sets for name in photos} - set(sketches))
    if photo_only:
        raise DatasetError(f"{root}: photo classes with no sketch folder in {sketch_dir}: {photo_only}")
    names = [name for name in known if name in sketches]
    if not names:
        raise DatasetError(f"{sketch_dir}: no class folders")
    unseen = match_split(resolve_split("sketchy", split), names, root)
    triples = [(name, [sketches[name]], [p[name] for p in photo_sets if name in p]) for name in names]
    return build(triples, unseen, root, sketchy_sketch_instance, partial(_original_photo_instance, photo_dir))


def _original_photo_instance(photo_dir: Path | None, path: Path) -> str | None:
    """Photos of the original set are paired with sketches (instance = stem); extended photos are not."""
    return path.stem if photo_dir is not None and path.parent.parent == photo_dir else None
