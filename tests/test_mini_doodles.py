"""The doodle world (v3): Quick, Draw! doodles as sketches, the reserved drawings, the honest protocol, doodle
literacy in pretraining, and a canvas redrawn the way the doodle bitmaps were made.

Runs on generated packages (tests/_builders.py): the fixture's doodle files hold 80 usable drawings and 20 reserved
lines that are not JSON, so any code that parsed a reserved drawing would fail here.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from _builders import (
    DOODLE_CATEGORIES,
    DOODLE_CFG,
    RESERVED_LINE,
    TEST_FAMILIES,
    make_doodle_package,
    make_mini_packages,
)
from PIL import Image, ImageDraw

from splip_core.data import load_dataset
from splip_core.metrics import NOT_IN_GALLERY, retrieval_metrics
from splip_core.mini import doodles, pretrain, world
from splip_core.mini.sources import Artwork, fetch_packages, load_icon_map
from splip_core.preprocess import doodle_bitmap, drawn_sketch

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    base, map_path = make_mini_packages(tmp_path_factory.mktemp("packages"))
    make_doodle_package(base)
    imap = load_icon_map(map_path)
    cache = tmp_path_factory.mktemp("cache")
    roots = fetch_packages(list(imap.sets.values()), cache, packages_dir=base)
    return imap, Artwork(imap, roots), doodles.fetch_doodles(cache, base)


@pytest.fixture(scope="module")
def built(packages, tmp_path_factory):
    imap, art, doodle_root = packages
    root = tmp_path_factory.mktemp("doodle-world") / "world"
    split = world.build_world(imap, art, root, DOODLE_CFG, doodle_root)
    return root, split


def _manifest(root: Path) -> list[dict]:
    return json.loads((root / "manifest.json").read_text())


def test_only_drawings_0_to_79_can_be_read_and_the_reserved_lines_are_never_parsed(packages):
    _, _, root = packages
    got = doodles.read_bitmaps(root, "cat", [0, 79, 5])
    assert got.shape == (3, 28, 28) and got.dtype == np.float32 and got.min() >= 0 and got.max() <= 1
    assert np.array_equal(got[2], doodles.read_bitmaps(root, "cat", [5])[0])
    for index in (80, 99, -1):
        with pytest.raises(ValueError, match="reserved"):
            doodles.read_bitmaps(root, "cat", [index])
    with gzip.open(root / "src" / "drawings" / "cat.ndjson.gz", "rt") as f:  # the fixture's trap is in place
        assert f.readlines()[doodles.USABLE:] == [RESERVED_LINE] * 20
    assert doodles.categories(root) == DOODLE_CATEGORIES


def test_nothing_else_in_the_repository_opens_the_doodle_files():
    """Every reader of the package's drawing files (`<category>.ndjson.gz`) goes through read_bitmaps, which stops
    at drawing 79. (The ndjson format itself is named elsewhere: the demo's canvas downloads a drawing as a Quick,
    Draw! ndjson record and /search takes one.)"""
    readers = [p.relative_to(REPO).as_posix() for folder in ("splip_core", "demo", "benchmarks", "app.py")
               for p in ([REPO / folder] if folder.endswith(".py") else (REPO / folder).rglob("*.py"))
               if ".ndjson.gz" in p.read_text()]
    assert readers == ["splip_core/mini/doodles.py"]


def test_doodle_world_concepts_are_quick_draw_categories_split_by_drawing_index(built):
    root, split = built
    concepts = [*split["seen"], *split["val"], *split["unseen"]]
    assert set(concepts) <= set(DOODLE_CATEGORIES) and "bell" not in concepts  # bell is no Quick, Draw! category
    assert len(concepts) == len(set(concepts)) and split["unseen"] and split["val"]
    where: dict[tuple[str, int], str] = {}
    for item in _manifest(root):
        if item["set"] == world.DOODLE_SET:
            where[(item["concept"], int(item["icon"]))] = item["split"]
    assert {i for _, i in where} == set(range(doodles.USABLE))  # 0..79, nothing reserved
    for concept in concepts:
        splits = [where[(concept, i)] for i in range(doodles.USABLE)]
        if concept in split["seen"]:
            assert splits == ["train"] * DOODLE_CFG.doodle_train + ["test"] * (doodles.USABLE - DOODLE_CFG.doodle_train)
        else:
            assert set(splits) == {"val" if concept in split["val"] else "test"}
    image = Image.open(root / "test" / "sketch" / split["unseen"][0].replace(" ", "_") / "qd_70.png")
    assert image.size == (28, 28) and image.mode == "L"  # the bitmap as it is: black ink on white
    assert np.asarray(image).max() == 255 and np.asarray(image).min() < 128


def test_no_unseen_doodle_no_test_family_art_and_no_world_doodle_reaches_training(built, packages):
    root, split = built
    imap = packages[0]
    test_sets = {k for k, s in imap.sets.items() if s.family in TEST_FAMILIES}
    for item in _manifest(root):
        if item["split"] in ("train", "val", "pretrain"):
            assert item["concept"] not in split["unseen"] or item["split"] == "pretrain", item
            assert item["set"] not in test_sets, item  # test drawers' art is test-only, also in pretraining
            if item["set"] == world.DOODLE_SET:
                assert item["split"] != "pretrain" and item["concept"] not in split["unseen"], item
        if item["split"] == "pretrain" and item["domain"] == "line":
            assert imap.sets[item["set"]].role == "sketch"
    pool_categories = split["doodles"]["pretrain_categories"]
    assert pool_categories == ["ant", "bee", "zigzag"]  # the Quick, Draw! categories that are not world concepts
    pool = pretrain.Pool(root, doodles=packages[2])
    assert pool.doodle_names == pool_categories and len(pool.doodles) == 3 * doodles.USABLE
    assert not set(pool.doodle_names) & {*split["seen"], *split["val"], *split["unseen"]}
    assert len(pool.lines) == sum(1 for i in _manifest(root) if i["domain"] == "line")


def test_a_pool_refuses_doodles_of_a_world_concept(built, packages, tmp_path):
    _, split = built
    leaky = tmp_path / "world"
    leaky.mkdir()
    (leaky / "manifest.json").write_text("[]")
    (leaky / "split.json").write_text(json.dumps({**split, "doodles": {"pretrain_categories": [split["unseen"][0]]}}))
    with pytest.raises(ValueError, match="only a seen concept's training doodles"):
        pretrain.Pool(leaky, doodles=packages[2])


def test_world_v4_pools_the_seen_concepts_training_doodles_and_nothing_else_of_the_world(built, packages):
    """Each rule of the v4 pool, on the pool pretraining assembles: a seen concept's drawings 0..train-1 under its own
    name; never a validation or unseen concept's doodle, never a seen test drawing (train..79), never past 79."""
    root, split = built
    train = split["doodles"]["train"]
    pool = pretrain.Pool(root, doodles=packages[2], seen_doodles=True)
    by_category: dict[str, list[int]] = {}
    for category, index in pool.doodle_sources:
        by_category.setdefault(category, []).append(index)
    assert not set(by_category) & {*split["val"], *split["unseen"]}
    assert {c: by_category[c] for c in split["seen"]} == {c: list(range(train)) for c in split["seen"]}
    assert all(max(by_category[c]) < doodles.USABLE for c in split["doodles"]["pretrain_categories"])
    seen_rows = [i for i, (c, _) in enumerate(pool.doodle_sources) if c in split["seen"]]
    assert [pool.class_names[pool.doodle_labels[i]] for i in seen_rows] == [
        pool.doodle_sources[i][0] for i in seen_rows]  # captioned and labelled under the concept's own name
    assert len(pool.doodles) == len(pool.doodle_sources) == len(split["seen"]) * train + 3 * doodles.USABLE
    v3 = pretrain.Pool(root, doodles=packages[2])
    assert not {c for c, _ in v3.doodle_sources} & set(split["seen"])  # world v3.2 keeps every world doodle out
    leaky = root.parent / "leaky-v4"
    leaky.mkdir()
    (leaky / "manifest.json").write_text("[]")
    (leaky / "split.json").write_text(json.dumps({**split, "doodles": {
        **split["doodles"], "pretrain_categories": [split["seen"][0]]}}))  # all 80 drawings: its test ones too
    with pytest.raises(ValueError, match="only a seen concept's training doodles"):
        pretrain.Pool(leaky, doodles=packages[2])


def test_pretraining_batches_mix_colour_art_line_icons_and_doodles(built, packages):
    root, _ = built
    pool = pretrain.Pool(root, doodles=packages[2])
    gen, rng = torch.Generator().manual_seed(0), __import__("random").Random(0)
    images, texts, labels, sketch = pretrain.batch(pool, gen, rng, 16, line_fraction=0.25, doodle_fraction=0.25)
    assert images.shape == (16, 3, 64, 64) and len(texts) == 16 and sketch.tolist() == [False] * 8 + [True] * 8
    assert all(y >= len(pool.names) for y in labels[12:].tolist())  # doodles carry their own categories' labels
    assert all(y < len(pool.names) for y in labels[:12].tolist())
    assert all(pool.class_names[y] in t for y, t in zip(labels[12:].tolist(), texts[12:], strict=True))
    pixels = images * torch.tensor(pretrain.STD).view(1, 3, 1, 1) + torch.tensor(
        pretrain.MEAN).view(1, 3, 1, 1)  # back to [0, 1] colour
    assert pixels[8:].std(1).max() < 1e-5 < pixels[:8].std(1).mean()  # line icons and doodles: ink on white


def test_doodle_world_pretrains_in_bf16_and_reports_both_sketch_domains(built, packages, tmp_path):
    root, _ = built
    model = pretrain.pretrain(root, 2, batch_size=16, log_every=0, doodles=packages[2], line_fraction=0.25,
                              doodle_fraction=0.25, bf16=True)
    pretrain.save(model, tmp_path / "bb")
    report = pretrain.gate(tmp_path / "bb", root)
    assert report["doodle_queries"] > 0 and report["icon_sketch_queries"] > 0
    for key in ("unseen_doodle_text_top1", "unseen_icon_sketch_text_top1", "unseen_doodle_photo_map_all",
                "unseen_colour_art_photo_map_all", "unseen_photo_text_top1"):
        assert 0.0 <= report[key] <= 1.0, key


def test_sketch_domains_split_a_folder_dataset(built):
    root, _ = built
    data = load_dataset("folder", root / "test")
    doodle, icon = data.sketch_domain("doodles"), data.sketch_domain("icons")
    assert len(doodle.sketches) + len(icon.sketches) == len(data.sketches) and icon.sketches
    assert all(s.path.name.startswith("qd_") for s in doodle.sketches)
    assert not any(s.path.name.startswith("qd_") for s in icon.sketches)
    assert doodle.photos == data.photos


def _house(pen: int, offset=(40, 90), size=300) -> Image.Image:
    canvas = Image.new("RGB", (512, 512), "white")
    x, y = offset
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((x, y + size // 3, x + size * 2 // 3, y + size), outline="black", width=pen)
    draw.line((x, y + size // 3, x + size // 3, y, x + size * 2 // 3, y + size // 3), fill="black", width=pen)
    return canvas


def test_a_canvas_is_redrawn_like_a_quick_draw_bitmap_whatever_the_pen_and_place():
    thin, thick, moved = _house(3), _house(12), _house(3, offset=(150, 20), size=200)
    bitmaps = [np.asarray(doodle_bitmap(c)) < 128 for c in (thin, thick, moved)]
    for ink in bitmaps:
        rows, cols = np.nonzero(ink)
        assert rows.min() == 0 and cols.min() == 0  # in the top-left corner, as the package's bitmaps are
        assert rows.max() == 27  # the longer side (the height) fills the frame
        assert 0.06 < ink.mean() < 0.25  # thin strokes: ink like a real doodle's (10-20% of the pixels)
    assert abs(bitmaps[0].mean() - bitmaps[1].mean()) < 0.08  # a 12-pixel pen: about the same lines as 3 (the pen
    # width is estimated and the strokes thinned before they are drawn again)
    assert (bitmaps[0] ^ bitmaps[2]).mean() < 0.08  # a smaller house elsewhere on the canvas: the same bitmap
    assert doodle_bitmap(Image.new("RGB", (64, 64), "white")) is None
    sketch = drawn_sketch(thin, pixels=28)
    assert sketch.size == (28, 28) and sketch.mode == "RGB"
    assert np.array_equal(np.asarray(sketch), np.asarray(doodle_bitmap(thin).convert("RGB")))  # the canvas path


def test_concept_rank_counts_concepts_by_their_best_photo():
    gallery = torch.eye(4)  # photo i points along axis i
    gallery_labels = [0, 0, 1, 2]
    query = torch.tensor([[0.1, 0.9, 0.5, 0.0],  # concept 0's best photo (0.9) ranks first
                          [0.0, 0.9, 0.2, 0.5],  # concept 1's best (0.2) is behind 0 (0.9) and 2 (0.5): third
                          [0.3, 0.2, 0.0, 0.1]])  # concept 3 has no photo
    query = torch.nn.functional.normalize(query, dim=1)
    result = retrieval_metrics(query, [0, 1, 3], torch.nn.functional.normalize(gallery, dim=1), gallery_labels)
    assert result["concept_rank"].tolist() == [1, 3, NOT_IN_GALLERY]
    assert result["C@1"] == pytest.approx(1 / 3) and result["C@5"] == pytest.approx(2 / 3)
    assert result["per_query"]["C@5"].tolist() == [1.0, 1.0, 0.0]


def test_the_ranking_is_chosen_on_validation_among_the_cosine_and_the_names_candidates(built):
    """choose_ranking keeps every candidate's validation score, picks the best mix at the chosen offset, and the
    offset by the harmonic mean of the GZS view's two sides (on a tiny random model: the bookkeeping, not the
    quality)."""
    from splip_core.mini.calibrate import OFFSETS, choose_ranking, drawn_names, vocabularies
    from splip_core.tiny import tiny_model

    root, split = built
    model = tiny_model(seen_classes=[c.replace(" ", "_") for c in split["seen"]]).frozen_baseline()
    categories = [*split["seen"], *split["val"], *split["unseen"], *split["doodles"]["pretrain_categories"]]
    result = choose_ranking(model, root, split, vocabularies(split, categories), drawn_names(split))
    candidates, chosen = result["candidates"], result["ranking"]
    assert candidates[0]["method"] == "cosine" and {c["vocabulary"] for c in candidates} >= {"world", "quickdraw"}
    at_offset = [c for c in candidates if c["seen_offset"] == chosen["seen_offset"]
                 and (chosen["method"] == "names" or c["method"] == "cosine")]
    best = max(at_offset, key=lambda c: c["val_mAP"])
    assert {k: chosen[k] for k in ("method", "temperature", "weight", "agreement")} == {
        k: best[k] for k in ("method", "temperature", "weight", "agreement")}
    if chosen["method"] == "names":
        assert [o["seen_offset"] for o in result["offsets"]] == list(OFFSETS)
        assert chosen["seen_offset"] == max(result["offsets"], key=lambda o: o["harmonic"])["seen_offset"]
        assert set(chosen["seen_names"]) == set(drawn_names(split))
