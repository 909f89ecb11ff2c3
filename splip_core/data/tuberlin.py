"""TU-Berlin-Ext: the 250-class TU-Berlin sketches (Eitz et al. 2012) with the photos of Zhang et al. 2016.

Layouts read (each optionally under `TUBerlin/` or `TU-Berlin/`):
  `png_ready/<class>/*.png` + `ImageResized_ready/<class>/*.JPEG`   SAKE / ZSE-SBIR release
  `sketches/<class>/*.png` + `images/<class>/*.jpg`                 SEM-PCYC / Doodle2Search (underscored names)
  `png/<class>/*.png` + `ImageResized/<class>/*`                    the raw downloads
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from splip_core.data.datasets import SBIRData, load_class_folders

_PAIRS = (("png_ready", "ImageResized_ready"), ("sketches", "images"), ("png", "ImageResized"))
LAYOUTS = tuple((f"{base}{sk}", f"{base}{ph}") for base in ("", "TUBerlin/", "TU-Berlin/") for sk, ph in _PAIRS)

# Misspelt or shortened photo folders of the raw ImageResized download, as renamed by SEM-PCYC's
# download_datasets.sh (github.com/AnjanDutta/sem-pcyc); other raw names differ only in spaces and punctuation.
RAW_PHOTO_ALIASES = {
    "tromobone": "trombone",
    "chandeler": "chandelier",
    "griaffe": "giraffe",
    "diamod": "diamond",
    "spidar": "spider",
    "spacesshuttle": "space shuttle",
    "wristwatching": "wrist-watch",
    "mouse": "mouse (animal)",
    "pipe": "pipe (for smoking)",
}


def load_tuberlin(root: str | Path, split: str | Path | Iterable[str] | None = None) -> SBIRData:
    """TU-Berlin-Ext from `root`. Splits: "sake" (default, 30 unseen, SAKE / ZSE-SBIR) or "sempcyc" (30 unseen,
    SEM-PCYC's seed-0 draw), a class-list file, or class names. No sketch-photo pairs (instance ids are None)."""
    return load_class_folders(root, "tuberlin", LAYOUTS, split, RAW_PHOTO_ALIASES)
