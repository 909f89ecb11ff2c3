"""The mini world: deterministic disjoint selection and split, the honest protocol, domains, end-to-end build.

Runs on a generated fixture laid out like the five npm packages (simple shapes as artwork), so no network and
no real package is needed.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from splip_core.mini import concepts as cpt
from splip_core.mini import pretrain, render, world
from splip_core.mini.sources import FLUENT_3D, FLUENT_COLOR, FLUENT_FLAT, OPENMOJI, TWEMOJI, EmojiArt, fetch_packages

# (hexcode, annotation, group, subgroup); shapes differ per row. "cat face" merges into "cat"; the face,
# the flag and the clock dial are excluded.
ROWS = [
    ("1F415", "dog", "animals-nature", "animal-mammal"),
    ("1F408", "cat", "animals-nature", "animal-mammal"),
    ("1F431", "cat face", "animals-nature", "animal-mammal"),
    ("1F41F", "fish", "animals-nature", "animal-marine"),
    ("1F335", "cactus", "animals-nature", "plant-other"),
    ("1F34E", "red apple", "food-drink", "food-fruit"),
    ("1F955", "carrot", "food-drink", "food-vegetable"),
    ("1F35E", "bread", "food-drink", "food-prepared"),
    ("1F682", "locomotive", "travel-places", "transport-ground"),
    ("2708-FE0F", "airplane", "travel-places", "transport-air"),
    ("26F5", "sailboat", "travel-places", "transport-water"),
    ("1F388", "balloon", "activities", "event"),
    ("1FA81", "kite", "activities", "game"),
    ("26BD", "soccer ball", "activities", "sport"),
    ("1F3B8", "guitar", "objects", "musical-instrument"),
    ("1F511", "key", "objects", "lock"),
    ("1F514", "bell", "objects", "sound"),
    ("1F600", "grinning face", "smileys-emotion", "face-smiling"),
    ("1F3C1", "chequered flag", "flags", "flag"),
    ("1F55B", "twelve o\u2019clock", "travel-places", "time"),
]
COLOURS = {"om_color": "#ea5a47", "f3d": "#3f8fd2", "fcolor": "#5cb85c", "fflat": "#f0ad4e", "tw": "#9b59b6"}


def _points(i: int) -> str:
    """A distinct closed shape per row: regular polygons, then stars."""
    k = 3 + i % 8
    star = i >= 8
    pts = []
    for j in range(2 * k if star else k):
        r = (12 if j % 2 else 26) if star else 26
        a = 2 * math.pi * j / (2 * k if star else k) + 0.3 * i
        pts.append(f"{36 + r * math.cos(a):.1f},{36 + r * math.sin(a):.1f}")
    return " ".join(pts)


def _svg(i: int, fill: str | None, view: int = 72) -> str:
    paint = f'fill="{fill}" stroke="#000" stroke-width="1"' if fill else 'fill="none" stroke="#000" stroke-width="2"'
    s = view / 72
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {view} {view}">'
            f'<g transform="scale({s})"><polygon points="{_points(i)}" {paint}/></g></svg>')


def make_fixture(base: Path) -> Path:
    """Write the five packages like `npm pack` gives them; OpenMoji as a tarball, the rest unpacked."""
    om = base / "om_src" / "package"
    (om / "black" / "svg").mkdir(parents=True)
    (om / "color" / "svg").mkdir(parents=True)
    (om / "data").mkdir()
    table = []
    for i, (hexcode, ann, group, sub) in enumerate(ROWS):
        (om / "black" / "svg" / f"{hexcode}.svg").write_text(_svg(i, None))
        (om / "color" / "svg" / f"{hexcode}.svg").write_text(_svg(i, COLOURS["om_color"]))
        table.append({"hexcode": hexcode, "annotation": ann, "group": group, "subgroups": sub,
                      "tags": f"{ann.split()[-1]}, thing", "openmoji_tags": "", "skintone": "", "order": i})
    table.append({**table[0], "hexcode": "1F415-1F3FB", "skintone": "1"})  # skin-tone variants never count
    (om / "data" / "openmoji.json").write_text(json.dumps(table))
    with tarfile.open(base / f"{OPENMOJI.stem}.tgz", "w:gz") as tar:
        tar.add(om, arcname="package")
    f3d = base / FLUENT_3D.stem / "package" / "assets"
    f3d.mkdir(parents=True)
    tw = base / TWEMOJI.stem / "package"
    tw.mkdir(parents=True)
    chars, icons = {}, {"fcolor": {}, "fflat": {}}
    import cairosvg

    for i, (hexcode, *_) in enumerate(ROWS):
        key = hexcode.lower().replace("-fe0f", "")
        png = cairosvg.svg2png(bytestring=_svg(i, COLOURS["f3d"]).encode(), output_width=64, output_height=64)
        Image.open(io.BytesIO(png)).save(f3d / f"{hexcode.lower()}.webp")
        (tw / f"{key}.svg").write_text(_svg(i, COLOURS["tw"], view=36))
        chars[key] = f"icon-{i}"
        for style in icons:
            body = _svg(i, COLOURS[style], view=32).split(">", 1)[1].rsplit("</svg>", 1)[0]
            icons[style][f"icon-{i}"] = {"body": body}
    for style, pkg in (("fcolor", FLUENT_COLOR), ("fflat", FLUENT_FLAT)):
        root = base / pkg.stem / "package"
        root.mkdir(parents=True)
        (root / "icons.json").write_text(json.dumps({"prefix": style, "icons": icons[style],
                                                     "width": 32, "height": 32}))
        (root / "chars.json").write_text(json.dumps(chars if style == "fflat" else {}))
    return base


CFG = world.WorldConfig(seed=3, max_concepts=15, size=48, art_size=48, train_sketch_views=2,
                        test_sketch_views=2, f3d_views=1, style_views=1)


@pytest.fixture(scope="module")
def art(tmp_path_factory) -> EmojiArt:
    base = make_fixture(tmp_path_factory.mktemp("packages"))
    return EmojiArt(fetch_packages(tmp_path_factory.mktemp("cache"), packages_dir=base))


@pytest.fixture(scope="module")
def built(art, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("world") / "world"
    world.build_world(art, root, CFG)
    return root


def test_base_names_merge_near_duplicates_and_drop_faces_and_dials():
    assert cpt.base_name("dog face", "animals-nature") == "dog"
    assert cpt.base_name("red apple", "food-drink") == cpt.base_name("green apple", "food-drink") == "apple"
    assert cpt.base_name("sun with face", "travel-places") is None
    assert cpt.base_name("twelve o\u2019clock", "travel-places") is None
    assert cpt.content_words("bowl with spoon") == {"bowl", "spoon"}


def test_selection_and_split_are_deterministic_and_disjoint(art):
    first = cpt.select_concepts(art.table, art.styles, 15)
    assert first == cpt.select_concepts(art.table, art.styles, 15)
    names = [c.name for c in first]
    assert "cat" in names and len(next(c for c in first if c.name == "cat").members) == 2
    assert not {"grinning face", "chequered flag"} & set(names) and not any("clock" in n for n in names)
    words = [cpt.content_words(n) for n in names]
    assert all(not (a & b) for i, a in enumerate(words) for b in words[i + 1:])
    seen, unseen = cpt.split_concepts(first, seed=3)
    assert (seen, unseen) == cpt.split_concepts(first, seed=3)
    assert not set(seen) & set(unseen) and set(seen) | set(unseen) == set(names)
    assert {c.group for c in first if c.name in unseen} == set(cpt.GROUPS)  # one unseen per group of three


def _hashes(root: Path, prefix: str) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in (root / prefix).rglob("*.*")}


def test_no_unseen_test_image_is_reachable_from_any_training_list(built):
    split = json.loads((built / "split.json").read_text())
    manifest = json.loads((built / "manifest.json").read_text())
    unseen = set(split["unseen"])
    training = [m for m in manifest if m["split"] in ("train", "pretrain")]
    trained_art = {(m["style"], m["hexcode"]) for m in training}
    unseen_test = [m for m in manifest if m["split"] == "test" and m["concept"] in unseen]
    assert unseen_test and not {(m["style"], m["hexcode"]) for m in unseen_test} & trained_art
    assert not {m["concept"] for m in training if m["split"] == "train"} & unseen
    assert all(m["style"] not in ("om_line", "om_color") for m in training if m["split"] == "pretrain")
    train_hashes = set(_hashes(built, "train").values()) | set(_hashes(built, "pretrain").values())
    assert not set(_hashes(built, "test").values()) & train_hashes
    # seen-class test sketches are held-out drawings, never a prompt-training drawing
    train_sketch = {m["hexcode"] for m in manifest if m["split"] == "train" and m["domain"] == "sketch"}
    assert not {m["hexcode"] for m in manifest if m["split"] == "test" and m["domain"] == "sketch"} & train_sketch
    listed = {m["path"] for m in manifest}
    assert listed == {p.relative_to(built).as_posix() for p in built.rglob("*.*") if p.suffix != ".json"}


def test_fg_each_sketch_has_exactly_one_photo_in_its_concept(built):
    for split in ("train", "test"):
        for folder in (built / split / "sketch").iterdir():
            photos = {p.stem for p in (built / split / "photo" / folder.name).iterdir()}
            for sketch in folder.iterdir():
                assert sketch.stem.rsplit("-", 1)[0] in photos  # stems are unique within a folder
            assert len(photos) > len({s.stem.rsplit("-", 1)[0] for s in folder.iterdir()})  # distractors exist


def _features(path: Path) -> np.ndarray:
    x = np.asarray(Image.open(path).convert("RGB").resize((24, 24)), dtype=np.float32) / 255
    sat = x.max(-1) - x.min(-1)
    return np.array([sat.mean(), (x.min(-1) > 0.9).mean(), x.std(), 1.0])


def test_sketches_and_photos_differ_in_domain_but_share_the_concept(built, art):
    sketches = sorted((built / "train" / "sketch").rglob("*.png"))
    photos = sorted((built / "train" / "photo").rglob("*.jpg"))
    x = np.stack([_features(p) for p in sketches + photos])
    y = np.r_[np.ones(len(sketches)), -np.ones(len(photos))]
    w = np.linalg.lstsq(x, y, rcond=None)[0]  # a plain linear classifier
    assert (np.sign(x @ w) == y).mean() > 0.95
    # the line drawing traces the colour version of the same code point better than any other code point's
    hexes = [h for h, *_ in ROWS[:17]]
    line = [render.rasterize(art.data("om_line", h), 48)[..., 3] > 64 for h in hexes]
    edge = []
    for h in hexes:
        a = torch.from_numpy(render.rasterize(art.data("om_color", h), 48)[..., 3] / 255.0).float()[None, None]
        edge.append((torch.nn.functional.max_pool2d(a, 3, 1, 1) - -torch.nn.functional.max_pool2d(-a, 3, 1, 1))
                    [0, 0].numpy() > 0.3)
    iou = np.array([[(li & e).sum() / (li | e).sum() for e in edge] for li in line])
    assert (iou.argmax(1) == np.arange(len(hexes))).mean() >= 0.9


def test_build_pretrain_and_gate_end_to_end(built, tmp_path):
    import open_clip

    model = pretrain.pretrain(built, steps=2, batch_size=16, log_every=0)
    pretrain.save(model, tmp_path / "bb")
    loaded = open_clip.create_model(f"local-dir:{tmp_path / 'bb'}")
    assert isinstance(loaded, open_clip.model.CLIP)
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k])
    tokens = open_clip.get_tokenizer(f"local-dir:{tmp_path / 'bb'}")(["a sketch of a hot air balloon"])
    assert tokens.shape == (1, pretrain.MODEL_CFG["text_cfg"]["context_length"]) and tokens.shape[1] >= 24
    report = pretrain.gate(tmp_path / "bb", built)
    assert report["unseen_concepts"] == 5 and report["test_sketches"] > 0
    for key in ("unseen_photo_text_top1", "unseen_sketch_photo_map_all", "chance_map_all", "unseen_fg_acc1"):
        assert 0.0 <= report[key] <= 1.0


def test_world_render_is_deterministic(art, built, tmp_path):
    again = tmp_path / "again"
    world.build_world(art, again, CFG)
    assert _hashes(again, ".") == _hashes(built, ".")
