"""Strokes into the model's input (`splip_core.strokes`): what is refused and why, Quick, Draw!'s simplification
(checked against a textbook Ramer-Douglas-Peucker), and the bitmap's placement, scale and lines."""

from __future__ import annotations

import math

import numpy as np
import pytest

from splip_core import InvalidStrokesError, stroke_sketch
from splip_core.strokes import (
    LINE_WIDTH,
    MAX_POINTS,
    MAX_STROKES,
    _ramer_douglas_peucker,
    _resample,
    read_strokes,
    render_strokes,
    simplify_strokes,
)

SQUARE = [[[10, 110, 110, 10, 10], [20, 20, 120, 120, 20]]]


def textbook_rdp(points: list[tuple[float, float]], epsilon: float) -> list[tuple[float, float]]:
    """Ramer-Douglas-Peucker as it is usually written: recursive, the first farthest point splits."""
    if len(points) < 3:
        return points
    (ax, ay), (bx, by) = points[0], points[-1]
    length = math.hypot(bx - ax, by - ay)

    def distance(p):
        if length == 0:
            return math.hypot(p[0] - ax, p[1] - ay)
        return abs((bx - ax) * (p[1] - ay) - (by - ay) * (p[0] - ax)) / length

    distances = [distance(p) for p in points[1:-1]]
    farthest = 1 + int(np.argmax(distances))
    if distances[farthest - 1] <= epsilon:
        return [points[0], points[-1]]
    return textbook_rdp(points[:farthest + 1], epsilon)[:-1] + textbook_rdp(points[farthest:], epsilon)


@pytest.mark.parametrize("seed", range(20))
def test_rdp_keeps_what_the_textbook_algorithm_keeps(seed):
    rng = np.random.default_rng(seed)
    steps = rng.normal(0, 3, (int(rng.integers(3, 300)), 2)).cumsum(axis=0)
    if seed == 0:
        steps[-1] = steps[0]  # a closed loop: the chord has no length
    ours = _ramer_douglas_peucker(steps, 2.0)
    assert ours.tolist() == [list(p) for p in textbook_rdp([tuple(p) for p in steps.tolist()], 2.0)]


def test_simplification_aligns_scales_resamples_and_simplifies():
    wobbly = [[list(range(100, 301)), [50 + 0.4 * math.sin(math.pi * i / 25) for i in range(201)], list(range(201))],
              [[150, 150], [40, 90]]]
    simplified = simplify_strokes(read_strokes(wobbly))
    every = np.concatenate(simplified)
    assert every.dtype.kind == "i" and every.min(axis=0).tolist() == [0, 0] and every.max() == 255
    assert simplified[0].tolist() == [[0, 13], [255, 13]]  # a wobble under epsilon is a straight line
    assert simplified[1].tolist() == [[64, 0], [64, 64]]
    assert simplify_strokes(read_strokes([[[5], [7]]]))[0].tolist() == [[0, 0]]  # one dot stays at the corner


def test_strokes_are_resampled_every_pixel_keeping_their_last_point():
    """All strokes at once, each on its own: a 3-4-5 triangle's legs, a dot, and a stroke ending on a sample."""
    legs, dot, exact = _resample([np.array([[0.0, 0.0], [3.0, 4.0], [3.0, 6.5]]), np.array([[9.0, 9.0]] * 2),
                                  np.array([[0.0, 0.0], [2.0, 0.0]])], 1.0)
    steps = np.hypot(*np.diff(legs, axis=0).T)
    assert len(legs) == 9 and np.allclose(steps[:-1], 1.0) and steps[-1] == pytest.approx(0.5)
    assert legs[-1].tolist() == [3.0, 6.5] and legs[4].tolist() == pytest.approx([2.4, 3.2])
    assert dot.tolist() == [[9.0, 9.0]] and exact.tolist() == [[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]]


@pytest.mark.parametrize("drawing, message", [
    ("a cat", "a drawing is a list of strokes"),
    ({"strokes": []}, "a drawing is a list of strokes"),
    ([[[0, float("nan")], [1, 2]]], "finite numbers"),
    ([[[0, float("inf")], [1, 2]]], "finite numbers"),
    ([[["0", "1"], ["1", "2"]]], "must be numbers"),
    ([[[True, False], [False, True]]], "must be numbers"),
    ([[[None, 1], [1, 2]]], "must be numbers"),
    ([[[[0, 1]], [[1, 2]]]], "must be numbers"),
    ([[[0, [1]], [1, 2]]], "must be numbers"),
    ([[0, 1], [1, 2]], "stroke 1 is not [xs, ys] or [xs, ys, ts]"),
    ([[[0, 1]]], "stroke 1 is not [xs, ys] or [xs, ys, ts]"),
    ([[[0, 1], [1, 2], [3, 4], [5, 6]]], "stroke 1 is not [xs, ys] or [xs, ys, ts]"),
    ([[[0, 1], [1, 2]], [[0, 1, 2], [1, 2]]], "stroke 2: its x, y and t lists have different lengths (3, 2)"),
    ([[[], []]], "stroke 1 has no points"),
    ([[[0, 1e9], [1, 2]]], "outside the range -100000..100000"),
    ([[[0, 1]] * 2] * (MAX_STROKES + 1), f"{MAX_STROKES + 1} strokes is over the limit of {MAX_STROKES}"),
    ([[[0] * (MAX_POINTS // 2 + 1), [0] * (MAX_POINTS // 2 + 1)]] * 2, f"over {MAX_POINTS} points"),
])
def test_a_malformed_drawing_is_refused_naming_the_problem(drawing, message):
    with pytest.raises(InvalidStrokesError) as caught:
        stroke_sketch(drawing, 28)
    assert message in str(caught.value)


def test_a_huge_drawing_is_refused_before_its_numbers_are_read():
    million = [[[0.5] * 1_000_000, [0.5] * 1_000_000]]
    with pytest.raises(InvalidStrokesError, match=f"over {MAX_POINTS} points"):
        read_strokes(million)
    with pytest.raises(InvalidStrokesError, match="10000 strokes is over the limit"):
        read_strokes([[[1], [1]]] * 10_000)


def test_the_formats_a_client_sends_are_read_alike():
    raw = [[[10, 110, 110], [20, 20, 120], [0, 16, 40]]]
    simplified = [[[10, 110, 110], [20, 20, 120]]]
    record = {"word": "cat", "drawing": raw}
    expected = [[10.0, 20.0], [110.0, 20.0], [110.0, 120.0]]
    for drawing in (raw, simplified, record, [tuple(tuple(r) for r in raw[0])]):
        assert [s.tolist() for s in read_strokes(drawing)] == [expected]
    assert read_strokes([]) == [] and stroke_sketch([], 28) is None


def ink(image) -> np.ndarray:
    return 1 - np.asarray(image.convert("L"), np.float32) / 255


def test_the_bitmap_sits_top_left_with_its_larger_side_filling_the_frame():
    wide = [[[0, 400, 400, 0, 0], [0, 0, 100, 100, 0]]]
    bitmap = ink(stroke_sketch(wide, 28))
    rows, cols = np.nonzero(bitmap > 0.2)
    assert rows.min() == 0 and cols.min() == 0 and cols.max() == 27
    assert 6 <= rows.max() <= 8  # the aspect ratio is kept: 100/400 of 28 pixels
    assert bitmap[:, 0].max() > 0.9 and bitmap[0, :].max() > 0.9  # the edges' lines are solid, as the dataset's


def test_lines_are_about_one_pixel_wide_and_anti_aliased():
    """A horizontal line's ink, summed down a column, is the line's width; its edges are grey."""
    for y in (64, 70):
        bitmap = ink(render_strokes(simplify_strokes(read_strokes([[[0, 255, 255], [y, y, 255]]]))))
        columns = bitmap[:, 3:20].sum(axis=0)
        assert np.allclose(columns, columns.mean(), atol=0.05)
        assert LINE_WIDTH * 0.9 < columns.mean() < LINE_WIDTH * 1.4
    assert ((bitmap > 0.05) & (bitmap < 0.95)).any()
    thick = ink(render_strokes(simplify_strokes(read_strokes(SQUARE)), line_width=2.0))
    assert thick.sum() > 1.5 * ink(render_strokes(simplify_strokes(read_strokes(SQUARE)))).sum()


def test_without_pixels_the_drawing_is_centred_with_a_margin():
    sketch = stroke_sketch([[[0, 400, 400, 0, 0], [0, 0, 100, 100, 0]]])
    rows, cols = np.nonzero(ink(sketch) > 0.5)
    assert sketch.mode == "RGB" and sketch.width == sketch.height == 224
    assert abs((cols.min() + cols.max()) / 2 - 111.5) < 2 and abs((rows.min() + rows.max()) / 2 - 111.5) < 2
    assert 15 <= cols.min() <= 25 and 198 <= cols.max() <= 208
