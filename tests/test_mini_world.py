"""The mini world: the icon map and its packages, a deterministic split, the honest protocol, rendering, pretraining.

Runs on a generated fixture laid out like the npm packages (simple shapes as artwork) with its own small icon map,
so no network and no real package is needed.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from _builders import CFG, CONCEPTS, SETS, TEST_FAMILIES, make_mini_packages
from PIL import Image

from splip_core.mini import concepts as cpt
from splip_core.mini import extra, pretrain, render, world
from splip_core.mini.sources import Artwork, IconMapError, fetch_packages, load_icon_map


@pytest.fixture(scope="module")
def fixture(tmp_path_factory):
    base, map_path = make_mini_packages(tmp_path_factory.mktemp("packages"))
    imap = load_icon_map(map_path)
    roots = fetch_packages(list(imap.sets.values()), tmp_path_factory.mktemp("cache"), packages_dir=base)
    return imap, Artwork(imap, roots)


@pytest.fixture(scope="module")
def built(fixture, tmp_path_factory) -> Path:
    imap, art = fixture
    root = tmp_path_factory.mktemp("world") / "world"
    world.build_world(imap, art, root, CFG)
    return root


def _manifest(root: Path) -> list[dict]:
    return json.loads((root / "manifest.json").read_text())


def test_icon_map_rejects_reserved_packages_and_undeclared_sets(tmp_path, fixture):
    raw = json.loads(json.dumps({"about": "", "sets": {"x": {"package": "@iconify-json/icon-park-outline",
                                 "version": "1", "license": "MIT", "family": "x", "role": "sketch"}},
                                 "concepts": {}}))
    (tmp_path / "reserved.json").write_text(json.dumps(raw))
    with pytest.raises(IconMapError, match="reserved"):
        load_icon_map(tmp_path / "reserved.json")
    raw["sets"]["x"]["package"] = "@iconify-json/x"
    raw["concepts"] = {"cat": {"icons": {"y": ["cat"]}}}
    (tmp_path / "undeclared.json").write_text(json.dumps(raw))
    with pytest.raises(IconMapError, match="undeclared"):
        load_icon_map(tmp_path / "undeclared.json")
    _, art = fixture
    assert b"<polygon" in art.data("alpha", "kitty")  # two alias hops, exact parents
    with pytest.raises(IconMapError, match="no icon"):
        art.data("alpha", "cat")  # no fuzzy fallback to a similar name


def test_split_is_deterministic_disjoint_and_eligible(fixture):
    imap, _ = fixture
    a = cpt.make_split(imap, 3, TEST_FAMILIES, 0.3, 0.15)
    assert a == cpt.make_split(imap, 3, TEST_FAMILIES, 0.3, 0.15)
    assert a != cpt.make_split(imap, 4, TEST_FAMILIES, 0.3, 0.15)
    groups = [set(a.seen), set(a.val), set(a.unseen)]
    assert all(not (x & y) for i, x in enumerate(groups) for y in groups[i + 1:])
    assert set().union(*groups) == set(CONCEPTS) - {"anvil"}  # anvil has 3 sketch families, below the bar
    assert a.test_families == TEST_FAMILIES and "beta" in a.train_families
    assert set(a.unseen) & set(cpt.EVERYDAY)  # a visitor can try zero-shot by drawing
    with pytest.raises(ValueError, match="not sketch families"):
        cpt.make_split(imap, 3, ("nope",))


def test_no_test_drawer_and_no_unseen_sketch_is_reachable_from_training(built):
    split = json.loads((built / "split.json").read_text())
    items = _manifest(built)
    training = [i for i in items if i["split"] in ("train", "val", "pretrain")]
    test_sets = {"delta", "om"}
    assert not [i for i in training if i["set"] in test_sets]
    assert not [i for i in training if i["concept"] in split["unseen"] and i["domain"] != "art"]
    assert not [i for i in items if i["split"] == "pretrain" and SETS[i["set"]][2] != "photo"]
    test_art = {(i["set"], i["icon"]) for i in items if i["split"] == "test" and i["domain"] == "photo"}
    assert not test_art & {(i["set"], i["icon"]) for i in training}
    assert {i["concept"] for i in items if i["split"] == "val"} == set(split["val"])
    assert not [i for i in items if i["split"] == "test" and i["concept"] in split["val"]]
    on_disk = {str(p.relative_to(built)) for p in built.rglob("*.*") if p.suffix in (".png", ".jpg")}
    assert on_disk == {i["path"] for i in items}


def test_fg_each_paired_sketch_has_exactly_one_photo_in_its_concept(built):
    sketches = sorted((built / "test" / "sketch").glob("*/fg_*.png"))
    assert sketches
    for s in sketches:
        stem = s.stem.rsplit("-", 1)[0]
        assert [p.name for p in (built / "test" / "photo" / s.parent.name).glob(f"{stem}.*")] == [f"{stem}.jpg"]


def test_sketches_are_cropped_ink_on_white_and_photos_are_coloured(built):
    sketch = next((built / "test" / "sketch").glob("*/*-1.png"))
    ink = torch.from_numpy(np.array(Image.open(sketch))) < 128
    rows, cols = ink.any(1).nonzero(), ink.any(0).nonzero()
    margin = min(rows.min(), cols.min(), CFG.size - 1 - rows.max(), CFG.size - 1 - cols.max())
    assert 0 < margin <= 0.15 * CFG.size  # cropped to the ink with the demo's margin
    photo = Image.open(next((built / "test" / "photo").glob("*/*.jpg"))).convert("RGB")
    assert photo.size == (CFG.size, CFG.size)
    assert len(np.unique(np.asarray(photo).reshape(-1, 3), axis=0)) > 50  # a background, not a white page


def test_visitor_sketch_varies_the_stroke_and_keeps_the_drawing(fixture):
    _, art = fixture
    data = art.data("beta", "house-beta")
    views = [render.visitor_sketch(data, 48, torch.Generator().manual_seed(k)) for k in range(3)]
    clean = render.visitor_sketch(data, 48, torch.Generator().manual_seed(0), clean=True)
    inks = [int((np.asarray(im) < 128).sum()) for im in (*views, clean)]
    assert len(set(inks)) == 4 and min(inks) > 20


def test_world_render_is_deterministic(fixture, built, tmp_path):
    imap, art = fixture
    again = tmp_path / "again"
    world.build_world(imap, art, again, CFG)

    def digest(root):
        return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(root.rglob("*.*")) if p.suffix in (".png", ".jpg")}

    assert digest(again) == digest(built)


def test_pretrain_and_gates_end_to_end(built, tmp_path):
    model = pretrain.pretrain(built, steps=2, seed=0, batch_size=8, log_every=0, edge_maps=0.5)
    pretrain.save(model, tmp_path / "clip")
    report = pretrain.gate(tmp_path / "clip", built)
    split = json.loads((built / "split.json").read_text())
    assert report["unseen_concepts"] == len(split["unseen"])
    for key in ("unseen_photo_text_top1", "unseen_sketch_photo_map_all", "unseen_colour_art_photo_map_all"):
        assert 0.0 <= report[key] <= 1.0
    assert report["colour_art_queries"] > 0 and report["fg_queries"] > 0


def test_edge_pairs_are_instance_pairs_of_training_art_only(fixture, tmp_path):
    imap, art = fixture
    root = tmp_path / "edge"
    world.build_world(imap, art, root, replace(CFG, edge_pairs=2))
    split = json.loads((root / "split.json").read_text())
    items = _manifest(root)
    edges = [i for i in items if Path(i["path"]).name.startswith("edge_")]
    assert edges and {i["split"] for i in edges} == {"train"} and {i["concept"] for i in edges} <= set(split["seen"])
    gallery_art = {(i["set"], i["icon"]) for i in items if i["split"] == "test" and i["domain"] == "photo"}
    assert not {(i["set"], i["icon"]) for i in edges} & gallery_art
    for sketch in (root / "train" / "sketch").glob("*/edge_*-1.png"):
        stem = sketch.stem.rsplit("-", 1)[0]
        assert (sketch.parent.parent.parent / "photo" / sketch.parent.name / f"{stem}.jpg").is_file()
        assert np.array(Image.open(sketch)).min() < 128  # it has ink


def test_extra_art_is_unmapped_colour_art_that_names_no_concept(fixture, tmp_path):
    imap, art = fixture
    items = extra.render_extra(imap, art, tmp_path / "extra", CFG.art_size)
    assert {(i["set"], i["label"]) for i in items} == {(s, w) for s in ("pa", "pb") for w in ("teapot", "hot pepper")}
    mapped = {(k, icon) for icons in imap.concepts.values() for k, names in icons.items() for icon in names}
    assert not {(i["set"], i["icon"]) for i in items} & mapped
    assert all(Image.open(tmp_path / "extra" / i["path"]).mode == "RGBA" for i in items)
    again = extra.render_extra(imap, art, tmp_path / "extra", CFG.art_size)  # resumes from its manifest
    assert again == items


def test_pretraining_mixes_extra_art_into_batches_with_its_own_labels(built, fixture, tmp_path):
    imap, art = fixture
    extra.render_extra(imap, art, tmp_path / "extra", CFG.art_size)
    pool = pretrain.Pool(built, tmp_path / "extra")
    n_world = len(pool.names)
    assert pool.extra_labels == 2 and all(len(pool.by_label[n_world + k]) == 2 for k in range(2))
    gen, rng = torch.Generator().manual_seed(0), random.Random(0)
    _, texts, labels, _ = pretrain.batch(pool, gen, rng, 64, extra_fraction=0.5)
    extra_rows = labels >= n_world
    assert 0 < int(extra_rows.sum()) < 64
    assert all(("teapot" in t or "hot pepper" in t) for t, e in zip(texts, extra_rows.tolist(), strict=True) if e)
    model = pretrain.pretrain(built, steps=1, batch_size=8, log_every=0, extra=tmp_path / "extra", extra_fraction=0.5)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    with pytest.raises(ValueError, match="extra_fraction"):
        pretrain.pretrain(built, steps=1, extra=tmp_path / "extra", extra_fraction=1.0)


def test_pretraining_can_continue_from_a_saved_backbone(built, tmp_path):
    first = pretrain.pretrain(built, steps=1, batch_size=8, log_every=0)
    pretrain.save(first, tmp_path / "first")
    fresh = pretrain.pretrain(built, steps=1, batch_size=8, log_every=0, lr=1e-12, seed=1)
    resumed = pretrain.pretrain(built, steps=1, batch_size=8, log_every=0, lr=1e-12, seed=1, init=tmp_path / "first")
    weight = first.visual.conv1.weight
    assert torch.allclose(resumed.visual.conv1.weight, weight, atol=1e-6)
    assert not torch.allclose(fresh.visual.conv1.weight, weight, atol=1e-6)
