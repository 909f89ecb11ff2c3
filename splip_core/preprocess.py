"""Turning files, bytes and canvas drawings into clean RGB PIL images, with clear errors for bad input.

Every image that enters the library passes through `load_image`, so the limits and messages live in one place.
"""

from __future__ import annotations

import functools
import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter, ImageOps, UnidentifiedImageError

MAX_IMAGE_BYTES = 32 * 1024 * 1024
MAX_IMAGE_PIXELS = 40_000_000
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"})


class InvalidImageError(ValueError):
    """An input that is not a usable image: missing, empty, corrupt, not an image, or over a size limit.

    The message names the input (a path, "bytes") and carries the decoder's detail, for a log or a local user;
    `reason` says what is wrong and nothing else (no path, no library detail): what a server tells its client."""

    def __init__(self, reason: str, source: str | None = None, detail: object = None):
        super().__init__((f"{source}: " if source else "") + reason + (f" ({detail})" if detail is not None else ""))
        self.reason = reason


def _name(source) -> str:
    return str(source) if isinstance(source, (str, os.PathLike)) else type(source).__name__


def _open_bytes(data: bytes, name: str) -> Image.Image:
    if not data:
        raise InvalidImageError("empty file (0 bytes)", name)
    if len(data) > MAX_IMAGE_BYTES:
        raise InvalidImageError(f"{len(data)} bytes is over the {MAX_IMAGE_BYTES} byte limit", name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.width * image.height > MAX_IMAGE_PIXELS:
                raise InvalidImageError(
                    f"{image.width}x{image.height} pixels is over the {MAX_IMAGE_PIXELS} pixel limit", name)
            image.load()
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise InvalidImageError("not a readable image", name, err) from err
    except (OSError, SyntaxError, ValueError) as err:
        if isinstance(err, InvalidImageError):
            raise
        raise InvalidImageError("corrupt or truncated image", name, err) from err
    return image


def scan_folder(root: Path, exclude: Path | None = None) -> tuple[list[Path], list[Path]]:
    """Image files and other files under `root`, recursively, in sorted order.

    Hidden files and folders (name starting with ".") and the `exclude` folder are left out entirely.
    """
    images, others = [], []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(
            d for d in dirnames if not d.startswith(".") and (exclude is None or Path(dirpath, d) != exclude)
        )
        for name in sorted(filenames):
            if not name.startswith("."):
                path = Path(dirpath, name)
                (images if path.suffix.lower() in IMAGE_SUFFIXES else others).append(path)
    return images, others


def flatten_alpha(image: Image.Image, background=(255, 255, 255)) -> Image.Image:
    """RGB image with any transparency composited onto `background` (a drawn canvas stores RGB 0 where empty)."""
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, background)
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    return image.convert("RGB")


def load_image(source) -> Image.Image:
    """An RGB PIL image from a path, bytes, a numpy array or a PIL image; raises InvalidImageError when unusable."""
    if isinstance(source, Image.Image):
        image = source
    elif isinstance(source, np.ndarray):
        if source.ndim not in (2, 3) or source.size == 0:
            raise InvalidImageError(f"an array of shape {source.shape} is not an image")
        image = Image.fromarray(source.astype(np.uint8) if source.dtype != np.uint8 else source)
    elif isinstance(source, (bytes, bytearray)):
        image = _open_bytes(bytes(source), "bytes")
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise InvalidImageError("no such file", str(path))
        if path.stat().st_size > MAX_IMAGE_BYTES:
            raise InvalidImageError(f"{path.stat().st_size} bytes is over the {MAX_IMAGE_BYTES} byte limit", str(path))
        image = _open_bytes(path.read_bytes(), str(path))
    else:
        raise InvalidImageError(f"a {_name(source)} is not an image (expected a path, bytes, array or PIL image)")
    if image.width == 0 or image.height == 0:
        raise InvalidImageError(f"empty image ({image.width}x{image.height})", _name(source))
    return flatten_alpha(image)


INK_THRESHOLD = 200
LINE = 3  # stroke width of a redrawn doodle at 4x its pixels; its ink fraction is then nearest the bitmaps
_STROKE_LUT = [255 if v > 64 else 0 for v in range(256)]  # a resized stroke: inked where a quarter of it was


def _ink(image: Image.Image, ink_threshold: int = INK_THRESHOLD) -> Image.Image:
    """"L" image, 255 where a pixel is darker than `ink_threshold` once transparency is composited onto white, else
    0. Kept in PIL (threshold by lookup table, count by histogram, box by getbbox): a canvas's ink pass is on every
    search's path, and PIL's C loops do it in a fraction of numpy's time."""
    grey = image.convert("L") if image.mode in ("RGB", "L") else flatten_alpha(image).convert("L")
    return grey.point(_ink_lut(ink_threshold))


@functools.cache
def _ink_lut(ink_threshold: int) -> list[int]:
    return [255 if v < ink_threshold else 0 for v in range(256)]


def _too_little_ink(ink: Image.Image, min_ink_fraction: float) -> bool:
    return ink.histogram()[255] < min_ink_fraction * ink.width * ink.height


def ink_mask(image: Image.Image, ink_threshold: int = INK_THRESHOLD) -> np.ndarray:
    """(H, W) bool: the pixels darker than `ink_threshold` once transparency is composited onto white."""
    return np.asarray(_ink(image, ink_threshold)) > 0


def is_blank(image: Image.Image, min_ink_fraction: float = 0.0005, ink_threshold: int = INK_THRESHOLD) -> bool:
    """True when fewer than `min_ink_fraction` of the pixels are darker than `ink_threshold` (an empty canvas)."""
    return _too_little_ink(_ink(image, ink_threshold), min_ink_fraction)


def _square(image: Image.Image, box: tuple[int, int, int, int], margin: float) -> Image.Image:
    piece = image.crop(box)
    side = int(max(piece.size) * (1 + 2 * margin)) + 1
    square = Image.new("RGB", (side, side), "white")
    square.paste(piece, ((side - piece.width) // 2, (side - piece.height) // 2))
    return square


def crop_to_ink(image: Image.Image, margin: float = 0.1, ink_threshold: int = INK_THRESHOLD) -> Image.Image:
    """The drawing cropped to its strokes plus `margin`, centred on a white square: a small doodle in a corner of
    a canvas then looks like the centred, frame-filling sketches the model was trained on."""
    box = _ink(image, ink_threshold).getbbox()
    return image if box is None else _square(image, box, margin)


def _doodle(ink: Image.Image, box: tuple[int, int, int, int], pixels: int, line: int = LINE) -> Image.Image:
    """The inked pixels (`_ink`) in `box` redrawn as a Quick, Draw! bitmap (see `doodle_bitmap`). Working at 4x: the
    strokes are thinned to about one pixel (the pen's width estimated from what one erosion removes: area /
    (removed / 2)), drawn again `line` pixels wide, and box-filtered down."""
    work = 4 * pixels
    piece = ink.crop(box)
    scale = work / max(piece.size)
    piece = piece.resize((max(1, round(piece.width * scale)), max(1, round(piece.height * scale))), Image.BOX)
    piece = piece.point(_STROKE_LUT)
    area = piece.histogram()[255]
    eroded = piece.filter(ImageFilter.MinFilter(3))
    removed = area - eroded.histogram()[255]
    width = 2 * area / max(removed, 1)
    for _ in range(int((width - 1.5) // 2)):  # each erosion takes a pixel off both sides; keep one at least
        if eroded.getbbox() is None:  # a filled blob, not strokes: keep what the last erosion left
            break
        piece, eroded = eroded, eroded.filter(ImageFilter.MinFilter(3))
    page = Image.new("L", (work, work), 0)
    page.paste(piece.filter(ImageFilter.MaxFilter(line)), (0, 0))
    return ImageOps.invert(page.resize((pixels, pixels), Image.BOX))


def doodle_bitmap(image: Image.Image, pixels: int = 28, ink_threshold: int = INK_THRESHOLD) -> Image.Image | None:
    """A drawing redrawn the way Quick, Draw!'s bitmaps were made ("L", black on white, `pixels` square; None when
    nothing is inked): scaled so its longer side fills the frame, in the top-left corner, every stroke thinned and
    redrawn `LINE` / 4 pixels wide whatever pen drew it, anti-aliased (the ink fraction then nearest the bitmaps').
    The model then sees a canvas as it saw its training doodles."""
    ink = _ink(image, ink_threshold)
    box = ink.getbbox()
    return None if box is None else _doodle(ink, box, pixels)


def drawn_sketch(image: Image.Image, min_ink_fraction: float = 0.0005, margin: float = 0.1,
                 ink_threshold: int = INK_THRESHOLD, pixels: int | None = None) -> Image.Image | None:
    """What a canvas is searched as: None when it is blank (`is_blank`), else `crop_to_ink` of it or, with
    `pixels`, its `doodle_bitmap`, from one ink pass (a search's preprocessing is on the demo's hot path)."""
    ink = _ink(image, ink_threshold)
    if _too_little_ink(ink, min_ink_fraction):
        return None
    if pixels:
        return _doodle(ink, ink.getbbox(), pixels).convert("RGB")
    return _square(image, ink.getbbox(), margin)
