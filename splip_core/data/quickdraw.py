"""QuickDraw-Extended (Dey et al., "Doodle to Search", CVPR 2019): 110 classes of QuickDraw doodles with photos.

Layouts read (each optionally under `QuickDraw/`):
  `sketches/<class>/*.png` + `images/<class>/*.jpg`                        ZSE-SBIR release
  `QuickDraw_sketches/<class>/*.png` + `EXTEND_image_quickdraw/<class>/*`  Doodle2Search release
Doodle2Search's training-time .npy bitmaps (full_numpy_bitmap_<class>.npy) are not read.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from splip_core.data.datasets import SBIRData, load_class_folders

_PAIRS = (("sketches", "images"), ("QuickDraw_sketches", "EXTEND_image_quickdraw"))
LAYOUTS = tuple((f"{base}{sk}", f"{base}{ph}") for base in ("", "QuickDraw/") for sk, ph in _PAIRS)


def load_quickdraw(root: str | Path, split: str | Path | Iterable[str] | None = None) -> SBIRData:
    """QuickDraw-Extended from `root`. Split: "dey" (default, the 30 unseen classes of Dey et al.), a class-list
    file, or class names. No sketch-photo pairs (instance ids are None)."""
    return load_class_folders(root, "quickdraw", LAYOUTS, split)
