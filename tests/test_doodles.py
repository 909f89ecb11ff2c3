"""The doodle benchmark's data and arithmetic: doodles.json is well formed, renders like the demo's canvas, and the
hit rates count what they claim (benchmarks/doodle.py)."""

import numpy as np
import pytest
import torch

from benchmarks.doodle import canvas_to_sketch, concept_ranking, drawn, evaluate, hit_rates, load_doodles, render
from splip_core.config import RankingConfig
from splip_core.gallery import Gallery
from splip_core.preprocess import ink_mask
from splip_core.ranking import Ranker

EVERYDAY = {
    "house", "tree", "sun", "moon", "star", "cloud", "flower", "cat", "dog", "fish", "bird", "butterfly", "car",
    "bicycle", "airplane", "sailboat", "train", "apple", "banana", "cup", "clock", "key", "umbrella", "heart", "book",
    "chair", "guitar", "hat", "eyeglasses", "scissors", "pizza", "mushroom", "snowman", "cactus", "tent", "envelope",
    "light bulb", "bell", "camera", "telephone",
}

SPEC = load_doodles()
DOODLES = SPEC["doodles"]


def test_doodle_file_is_well_formed():
    assert (SPEC["canvas"], SPEC["brush"]) == (512, 6)
    assert len(DOODLES) >= 40
    assert len({d["id"] for d in DOODLES}) == len(DOODLES)
    concepts = {d["concept"] for d in DOODLES}
    assert len(concepts) >= 25
    assert concepts <= EVERYDAY, concepts - EVERYDAY
    for d in DOODLES:
        assert 1 <= len(d["strokes"]) <= 12, d["id"]
        for stroke in d["strokes"]:
            assert len(stroke) >= 1, d["id"]
            for point in stroke:
                assert len(point) == 2 and all(isinstance(v, int) and 0 <= v < SPEC["canvas"] for v in point), d["id"]


@pytest.mark.parametrize("doodle", DOODLES, ids=[d["id"] for d in DOODLES])
def test_doodle_renders_and_is_cropped_like_the_demo(doodle):
    canvas = render(doodle["strokes"], SPEC["canvas"], SPEC["brush"])
    assert canvas.mode == "RGBA" and canvas.size == (512, 512)
    sketch = canvas_to_sketch(canvas)
    assert sketch is not None and sketch.mode == "RGB"
    assert ink_mask(sketch).sum() == ink_mask(canvas).sum()  # nothing drawn is lost or added by the crop
    ys, xs = np.nonzero(ink_mask(sketch))
    extent = max(ys.max() - ys.min(), xs.max() - xs.min()) + 1
    assert sketch.width == sketch.height == int(extent * 1.2) + 1  # crop_to_ink's square with a 10% margin
    lo, hi = (ys, sketch.height) if ys.max() - ys.min() >= xs.max() - xs.min() else (xs, sketch.width)
    for gap in (lo.min(), hi - 1 - lo.max()):  # the ink stops a tenth of its extent short of the square's edge
        assert abs(gap - 0.1 * extent) <= 2


@pytest.mark.parametrize("brush", [6, 11])
def test_render_draws_the_brush_width_with_round_caps(brush):
    line = ink_mask(render([[[100, 200], [300, 200]]], brush=brush))
    assert line[:, 200].sum() == brush
    xs = np.nonzero(line[200])[0]
    assert abs(xs.min() - (100 - brush / 2)) <= 1 and abs(xs.max() - (300 + brush / 2)) <= 1  # caps beyond the ends
    dot = ink_mask(render([[[50, 60]]], brush=brush))
    ys, xs = np.nonzero(dot)
    assert brush - 1 <= xs.max() - xs.min() + 1 <= brush + 1 and brush - 1 <= ys.max() - ys.min() + 1 <= brush + 1
    assert canvas_to_sketch(render([], brush=brush)) is None


def test_a_doodle_on_a_smaller_canvas_is_the_same_hand_movement_scaled():
    """--canvas-side: the file's canvas is the demo's; another side scales the strokes and the brush with it."""
    doodle = DOODLES[0]
    same = drawn(doodle["strokes"], SPEC, SPEC["canvas"])
    assert np.array_equal(np.asarray(same), np.asarray(render(doodle["strokes"], SPEC["canvas"], SPEC["brush"])))
    half = ink_mask(drawn(doodle["strokes"], SPEC, SPEC["canvas"] // 2))
    full = ink_mask(same)
    assert half.shape == (SPEC["canvas"] // 2,) * 2
    for axis in (0, 1):  # the drawing's extent halves, to a pixel or two of the brush's rounding
        extent = [np.nonzero(m.any(axis=axis))[0] for m in (full, half)]
        assert abs((extent[0].max() - extent[0].min()) / 2 - (extent[1].max() - extent[1].min())) <= 2
    assert abs(half.sum() / full.sum() - 0.25) < 0.05  # a half-width brush on half the length: a quarter of the ink


def test_hit_rates_count_the_truth_within_the_first_k():
    rankings = [["cat", "dog"], ["dog", "cat", "a", "b", "c"], ["a", "b", "c", "d", "e", "cat"], ["cat"]]
    truths = ["cat", "cat", "cat", "dog"]
    assert hit_rates(rankings, truths, ks=(1, 2, 5, 6)) == {1: 0.25, 2: 0.5, 5: 0.5, 6: 0.75}
    with pytest.raises(ValueError):
        hit_rates(rankings, truths[:2])


def test_concept_ranking_orders_concepts_by_their_best_photo():
    assert concept_ranking(np.array([0.1, 0.9, 0.5, 0.2, 0.95]), ["a", "b", "a", "c", "c"]) == ["c", "b", "a"]


class _FixedEncoder:
    """Stands in for SpLIP: the i-th sketch gets the i-th given query vector."""

    def __init__(self, queries):
        self.queries = torch.tensor(queries, dtype=torch.float32)

    def encode_sketch(self, images):
        return self.queries[: len(images)]


def test_evaluate_separates_photo_and_concept_hits():
    # for the first doodle (a dog) six cat photos outscore the one dog photo: a miss at photo@5, a hit at concept@5
    labels = ["cat"] * 6 + ["dog"]
    angles = np.linspace(0.0, 0.6, 7)
    vectors = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    gallery = Gallery.from_items([f"{i}.jpg" for i in range(7)], labels, vectors)
    encoder = _FixedEncoder([[1.0, 0.0], [1.0, 0.0], [np.cos(0.6), np.sin(0.6)], [1.0, 0.0]])
    result = evaluate(encoder, Ranker(RankingConfig()), [None] * 4, gallery, ["dog", "cat", "dog", "pizza"])
    assert result["photo_hit"] == {1: 0.5, 5: 0.5}
    assert result["concept_hit"] == {1: 0.5, 5: 0.75}  # pizza has no photo: always a miss
    assert result["top3"][0] == ["cat", "dog"]


def test_early_retrieval_measures_on_a_hand_made_rank_sequence():
    from benchmarks.doodle import early_retrieval, m_at_a, m_at_b, strokes_until

    ranks = [9, 3, 6, 2, 1]  # a drawing of 5 strokes among 11 concepts
    assert m_at_a(ranks, 11) == pytest.approx(np.mean([2 / 10, 8 / 10, 5 / 10, 9 / 10, 10 / 10]))
    assert m_at_b(ranks) == pytest.approx(np.mean([1 / 9, 1 / 3, 1 / 6, 1 / 2, 1]))
    assert strokes_until(ranks) == 4  # in the top 5 at stroke 2, out at stroke 3, in for good from stroke 4
    assert strokes_until([1, 1, 1]) == 1 and strokes_until([1, 2, 6]) is None and strokes_until([7, 5]) == 2
    assert m_at_a([1], 11) == 1.0 and m_at_a([12], 11) == 0.0  # a missing concept counts as past the last
    report = early_retrieval({"SpLIP": [ranks, [1, 1]], "frozen CLIP": [[11, 11, 11, 11, 11], [2, 1]]},
                             ["cat", "dog"], 11, boot=200)
    assert report["SpLIP"]["m@A"]["mean"] == pytest.approx((m_at_a(ranks, 11) + 1.0) / 2)
    assert report["SpLIP"]["strokes_until_top5"] == {"median": 2.5, "found_at_the_end": 1.0,
                                                     "found_before_the_last_stroke": 1.0}
    assert report["frozen CLIP"]["strokes_until_top5"]["found_at_the_end"] == 0.5
    paired = [(m_at_b(ranks) - 1 / 11), (1.0 - m_at_b([2, 1]))]  # SpLIP minus frozen, drawing by drawing
    assert report["difference"]["m@B"]["mean_difference"] == pytest.approx(np.mean(paired))

    from benchmarks.doodle import headline_rows

    rows = headline_rows({"early_retrieval": report, "n_gallery_concepts": 3, "n_doodles": 2})
    d = report["difference"]["m@A"]
    assert rows[0] == (f"| mouse doodles, stroke by stroke | m@A | {100 * report['frozen CLIP']['m@A']['mean']:.1f} | "
                       f"{100 * report['SpLIP']['m@A']['mean']:.1f} | {100 * d['mean_difference']:+.1f} "
                       f"[{100 * d['ci_low']:+.1f}, {100 * d['ci_high']:+.1f}] | 50.0 | 2 |")
    assert rows[1].split(" | ")[-2] == "61.1"  # a random rank among 3: (1 + 1/2 + 1/3) / 3


def test_both_paths_make_the_same_doodle_bitmap_placement():
    """The stroke path and the canvas path turn a doodle's first strokes into 28-px doodle bitmaps drawn alike:
    top-left, the larger side filling the frame (the canvas path from pixels, the stroke path from the strokes)."""
    from benchmarks.doodle import queries

    doodle = next(d for d in DOODLES if d["id"] == "house-1")
    for path in ("strokes", "canvas"):
        query = queries(path, SPEC, SPEC["canvas"], 28)
        for n in (1, len(doodle["strokes"])):
            ink = 1 - np.asarray(query(doodle["strokes"][:n]).convert("L"), np.float32) / 255
            rows, cols = np.nonzero(ink > 0.2)
            assert rows.min() == 0 and cols.min() == 0 and max(rows.max(), cols.max()) == 27, (path, n)
    assert queries("strokes", SPEC, SPEC["canvas"], 28)([]) is None


def test_path_difference_is_taken_doodle_by_doodle():
    from benchmarks.doodle import m_at_b, path_difference

    def run(hits, ranks):
        return {"results": {"SpLIP": {"concept_top5": hits}}, "ranks": {"SpLIP": ranks}}

    a, b = run([1.0, 0.0, 1.0], [[1, 1], [9], [2]]), run([0.0, 0.0, 1.0], [[3, 1], [9], [4]])
    diff = path_difference(a, b, ["cat", "dog", "sun"], 10, boot=200)["SpLIP"]
    assert diff["concept top-5"]["mean_difference"] == pytest.approx(1 / 3)
    expected = np.mean([m_at_b([1, 1]) - m_at_b([3, 1]), 0, m_at_b([2]) - m_at_b([4])])
    assert diff["m@B"]["mean_difference"] == pytest.approx(expected)


def test_the_rendering_comparison_measures_what_it_says():
    from benchmarks.stroke_rendering import ks_distance, measure, thin

    bar = np.zeros((28, 28), bool)
    bar[10:13, 4:24] = True  # a 3-px-thick bar, 20 px long
    skeleton = thin(bar)
    assert skeleton[11, 6:22].all() and skeleton.sum() <= 20 and not skeleton[10].any()
    ink = np.zeros((28, 28))
    ink[0, :] = 1.0
    ink[:20, 0] = 1.0  # an L touching the top-left corner, 28 wide and 20 high
    m = measure(ink)
    assert (m["first row"], m["first column"], m["extent"], m["left column ink"]) == (0, 0, 28, 1.0)
    assert m["aspect"] == pytest.approx(28 / 20) and m["line width"] == pytest.approx(1.0, abs=0.1)
    assert ks_distance([1, 2, 3], [1, 2, 3]) == 0 and ks_distance([1, 2], [5, 6]) == 1
