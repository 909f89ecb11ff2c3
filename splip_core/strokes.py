"""A drawing as strokes, the way Quick, Draw! records one, turned into the image the model reads.

A drawing is a list of strokes, each `[xs, ys]` (Quick, Draw!'s simplified format) or `[xs, ys, ts]` (its raw
format: canvas pixels and milliseconds since the first point), or a Quick, Draw! ndjson record holding that list
under "drawing". Everything a page, an API client or a benchmark sends passes through `read_strokes`, so the limits
and their messages live here. `simplify_strokes` is the dataset's own simplification (top-left aligned, scaled to
0-255, resampled at 1 px, Ramer-Douglas-Peucker with epsilon 2) and `render_strokes` draws the result the way its
28-pixel bitmaps look (docs/STROKES.md measures the match). No image is decoded anywhere on this path.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

MAX_STROKES = 200  # a Quick, Draw! doodle has a handful; 200 is far past any drawing made by hand
MAX_POINTS = 20_000  # points in all strokes together: minutes of drawing at the pointer's event rate
MAX_COORDINATE = 100_000  # |x| and |y| in the sender's pixels
SIMPLIFIED_SIDE = 255  # the simplified format's coordinates run 0..255
RESAMPLE_SPACING = 1.0
RDP_EPSILON = 2.0
SUPERSAMPLE = 8  # a doodle bitmap is drawn this many times larger, then box-filtered down: anti-aliased lines
LINE_WIDTH = 0.875  # a doodle bitmap's line, in its own pixels (7 of the 8 supersampled pixels)
INK_GAIN = 1.35  # ink = min(1, gain x coverage): the bitmaps' lines are solid where they cover 3/4 of a pixel
SKETCH_SIDE = 224  # a drawing for a model that was not trained on doodle bitmaps: centred on this square ...
SKETCH_MARGIN = 0.1  # ... with this margin on each side, as the canvas path cropped a canvas to its ink
SKETCH_LINE = 0.02  # ... and lines this fraction of the side wide (the canvas brush's share of a drawing) ...
SKETCH_SUPERSAMPLE = 2  # ... drawn twice as large and filtered down (its lines are several pixels wide)


class InvalidStrokesError(ValueError):
    """A drawing that cannot be read as strokes; the message names what is wrong (and the limit it broke)."""


def _rows(stroke, number: int) -> list:
    if not isinstance(stroke, (list, tuple)) or len(stroke) not in (2, 3) or not all(
            isinstance(row, (list, tuple)) for row in stroke):
        raise InvalidStrokesError(f"stroke {number} is not [xs, ys] or [xs, ys, ts] (lists of numbers)")
    lengths = {len(row) for row in stroke}
    if len(lengths) != 1:
        raise InvalidStrokesError(f"stroke {number}: its x, y and t lists have different lengths "
                                  f"({', '.join(str(len(row)) for row in stroke)})")
    if not lengths.pop():
        raise InvalidStrokesError(f"stroke {number} has no points")
    return list(stroke)


def _numbers(rows: list, number: int) -> np.ndarray:
    """(len(rows), n) float64 of one stroke, refusing anything that is not a finite number (text, nesting, bools,
    NaN, infinity)."""
    try:
        array = np.asarray(rows)
    except ValueError:  # ragged: a list where a number should be
        array = None
    if array is None or array.dtype.kind not in "iuf" or array.ndim != 2:
        raise InvalidStrokesError(f"stroke {number}: coordinates must be numbers (not text, lists or booleans)")
    array = array.astype(np.float64, copy=False)
    if not np.isfinite(array).all():
        raise InvalidStrokesError(f"stroke {number}: coordinates must be finite numbers (found NaN or infinity)")
    if np.abs(array[:2]).max() > MAX_COORDINATE:
        raise InvalidStrokesError(f"stroke {number}: a coordinate is outside the range -{MAX_COORDINATE}.."
                                  f"{MAX_COORDINATE}")
    return array


def read_strokes(drawing) -> list[np.ndarray]:
    """The strokes of a drawing as (n, 2) float arrays of x, y (times dropped); [] for a drawing with no strokes.

    Raises InvalidStrokesError naming the problem: not a list of strokes, a stroke not shaped [xs, ys] or
    [xs, ys, ts], lists of different lengths, an empty stroke, anything but finite numbers, a coordinate outside
    +-MAX_COORDINATE, more than MAX_STROKES strokes or MAX_POINTS points. The counts are checked before any number
    is read, so an oversized drawing costs nothing.
    """
    if isinstance(drawing, dict) and "drawing" in drawing:
        drawing = drawing["drawing"]
    if not isinstance(drawing, (list, tuple)):
        raise InvalidStrokesError(f"a drawing is a list of strokes [[xs, ys], ...], not a {type(drawing).__name__}")
    if len(drawing) > MAX_STROKES:
        raise InvalidStrokesError(f"{len(drawing)} strokes is over the limit of {MAX_STROKES} strokes per drawing")
    strokes, points = [], 0
    for number, stroke in enumerate(drawing, 1):
        rows = _rows(stroke, number)
        points += len(rows[0])
        if points > MAX_POINTS:
            raise InvalidStrokesError(f"over {MAX_POINTS} points: the limit of points per drawing (all strokes)")
        strokes.append(rows)
    return [_numbers(rows, number)[:2].T for number, rows in enumerate(strokes, 1)]


def _resample(strokes: Sequence[np.ndarray], spacing: float) -> list[np.ndarray]:
    """Every stroke as points every `spacing` along its polyline, its last point kept (a stroke of no length: its
    first point). All strokes in one pass: they are laid end to end on one arc-length axis, a gap between them,
    and interpolated at once (per stroke, numpy's calls would cost more than their arithmetic)."""
    every = np.concatenate(strokes)
    sizes = np.array([len(s) for s in strokes])
    ends = np.cumsum(sizes)
    steps = np.hypot(*np.diff(every, axis=0).T)
    steps[ends[:-1] - 1] = 2 * spacing  # the jump to the next stroke: a gap no sample falls into
    along = np.concatenate([[0.0], np.cumsum(steps)])
    start = along[ends - sizes]
    length = along[ends - 1] - start
    counts = np.maximum(1, np.ceil(length / spacing)).astype(int)
    counts += length - (counts - 1) * spacing > 1e-9  # the last point, unless a sample already sits on it
    stroke = np.repeat(np.arange(len(strokes)), counts)
    step = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    at = start[stroke] + np.minimum(step * spacing, length[stroke])
    points = np.stack([np.interp(at, along, every[:, 0]), np.interp(at, along, every[:, 1])], axis=1)
    return np.split(points, np.cumsum(counts)[:-1])


def _ramer_douglas_peucker(points: np.ndarray, epsilon: float) -> np.ndarray:
    """The points RDP keeps: the end points, then recursively the farthest point from the chord while it is farther
    than `epsilon`. Iterative, and one matrix product per chord: the offsets from the chord's line are the points
    projected on its normal, so the farthest is the largest or the smallest projection (a drawing's chords are
    many and short, so what costs is the calls, not the arithmetic)."""
    if len(points) < 3:
        return points
    xs, ys = points[:, 0].tolist(), points[:, 1].tolist()
    keep = [0, len(points) - 1]
    chords = [(0, len(points) - 1)]
    while chords:
        a, b = chords.pop()
        if b - a < 2:
            continue
        dx, dy = xs[b] - xs[a], ys[b] - ys[a]
        length = math.hypot(dx, dy)
        if length == 0:  # a closed loop: distances from the point itself
            inner = points[a + 1:b]
            distance = np.hypot(inner[:, 0] - xs[a], inner[:, 1] - ys[a])
            farthest = int(distance.argmax())
            far = float(distance[farthest])
        else:
            offsets = points[a + 1:b] @ (-dy / length, dx / length)
            centre = (-dy * xs[a] + dx * ys[a]) / length
            high, low = int(offsets.argmax()), int(offsets.argmin())
            up, down = float(offsets[high]) - centre, centre - float(offsets[low])
            farthest, far = (high, up) if up > down or (up == down and high < low) else (low, down)
        if far > epsilon:
            keep.append(a + 1 + farthest)
            chords += [(a, a + 1 + farthest), (a + 1 + farthest, b)]
    return points[sorted(keep)]


def simplify_strokes(strokes: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Quick, Draw!'s simplification: the drawing moved to the top-left corner (minimum 0), scaled uniformly so its
    larger side spans 0..255, every stroke resampled at 1 px spacing and simplified by Ramer-Douglas-Peucker with
    epsilon 2.0; (n, 2) int arrays. A drawing with no extent (one dot) stays at the corner."""
    if not strokes:
        return []
    every = np.concatenate(strokes)
    low = every.min(axis=0)
    extent = float((every.max(axis=0) - low).max())
    scale = SIMPLIFIED_SIDE / extent if extent > 0 else 0.0
    resampled = _resample([(s - low) * scale for s in strokes], RESAMPLE_SPACING)
    return [np.rint(_ramer_douglas_peucker(s, RDP_EPSILON)).astype(int) for s in resampled]


def _draw(simplified: Sequence[np.ndarray], side: int, to_pixels, width: float, supersample: int) -> Image.Image:
    """White-on-black coverage of the strokes drawn `supersample` times larger and box-filtered to `side`:
    round-capped, round-joined lines `width` pixels wide; `to_pixels` maps simplified coordinates to pixels."""
    big = side * supersample
    image = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(image)
    pen = max(1, round(width * supersample))
    radius = pen / 2
    for stroke in simplified:
        points = [(x * supersample, y * supersample) for x, y in to_pixels(stroke).tolist()]
        if len(points) > 1:
            draw.line(points, fill=255, width=pen)
        for x, y in points:  # round caps and joins: a disc at every point (PIL's own round joints cost more)
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=255)
    return image.resize((side, side), Image.BOX)


@functools.cache
def _ink_lut(gain: float) -> list[int]:
    """Coverage (white on black) -> black-on-white ink saturating at 1 / gain coverage."""
    return [255 - min(255, round(gain * v)) for v in range(256)]


def render_strokes(simplified: Sequence[np.ndarray], pixels: int = 28, line_width: float = LINE_WIDTH,
                   ink_gain: float = INK_GAIN) -> Image.Image:
    """A simplified drawing as a Quick, Draw! bitmap ("L", black on white, `pixels` square): the 0..255 frame mapped
    onto pixel centres 0.5..pixels-0.5, so the drawing touches the top and left edges and its larger side fills
    the frame; lines `line_width` pixels wide, anti-aliased, ink saturating at 1 / `ink_gain` coverage (the
    defaults are what docs/STROKES.md measured against the dataset's bitmaps)."""
    scale = (pixels - 1) / SIMPLIFIED_SIDE
    coverage = _draw(simplified, pixels, lambda s: s * scale + 0.5, line_width, SUPERSAMPLE)
    return coverage.point(_ink_lut(ink_gain))


def render_centred(simplified: Sequence[np.ndarray], side: int = SKETCH_SIDE) -> Image.Image:
    """A simplified drawing for a model trained on cropped canvases ("L", black on white): centred on a `side`
    square with SKETCH_MARGIN on each side, lines SKETCH_LINE of the side wide."""
    every = np.concatenate(simplified)
    span = every.max(axis=0)
    inner = side * (1 - 2 * SKETCH_MARGIN)
    scale = inner / SIMPLIFIED_SIDE
    offset = (side - span * scale) / 2
    coverage = _draw(simplified, side, lambda s: s * scale + offset, SKETCH_LINE * side, SKETCH_SUPERSAMPLE)
    return coverage.point(_ink_lut(1.0))


def stroke_sketch(drawing, pixels: int | None = None) -> Image.Image | None:
    """What a drawing is searched as (RGB), or None for a drawing with no strokes: with `pixels` (a model's
    `config.sketch_pixels`) its Quick, Draw! bitmap, else the drawing centred on a square. Raises
    InvalidStrokesError (see `read_strokes`)."""
    strokes = read_strokes(drawing)
    if not strokes:
        return None
    simplified = simplify_strokes(strokes)
    image = render_strokes(simplified, pixels) if pixels else render_centred(simplified)
    return image.convert("RGB")
