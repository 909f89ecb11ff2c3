"""Write the mini world to disk: sketch/photo train, validation and test sets, the CLIP pretraining pool, the split.

Layout under ROOT (every image file is listed with its provenance in ROOT/manifest.json):

    split.json                              seed, seen/val/unseen concepts, train/test drawers, sources, fg rule
    train/sketch/<concept>/<set>_<icon>-<k>.png   seen concepts, train drawers (prompt training)
    train/photo/<concept>/<set>_<icon>_<v>.jpg    seen concepts, the concept's pretraining colour sets
    train/sketch|photo/<concept>/edge_<set>_<icon>  optional instance pairs: edge maps of that colour art, its photo
    val/sketch|photo/<concept>/...                validation concepts: the same, withheld from prompt training
    test/sketch/<concept>/<set>_<icon>-<k>.png    seen and unseen concepts, test drawers only
    test/photo/<concept>/<set>_<icon>_<v>.jpg     seen and unseen concepts, the concept's gallery colour sets
    test/photo/<concept>/fg_<set>_<icon>.jpg      ... the colour version of a test drawing (FG pair, see FG_RULE)
    pretrain/<concept>/<set>_<icon>.png           RGBA colour art the tiny CLIP is pretrained on
    pretrain/<concept>/line_<set>_<icon>.png      a doodle world's clean line icons of the train families (pretraining)
    train|val|test/sketch/<concept>/qd_<i>.png    a doodle world's Quick, Draw! drawing i (28x28, as shipped)

The honest protocol:
- Drawers are whole design families. Train families draw train and validation sketches; test families draw only
  test sketches, so no test drawer's art reaches prompt training, and no unseen concept has a sketch outside test/.
- Each concept's colour sets are divided (seeded) into pretraining sets and gallery sets. Pretraining and the prompt
  training photos use only the former, the test gallery only the latter: no test photo's artwork is in any
  training list, and the backbone never sees a line, outline or sketch set (edge maps of colour art are optional
  in pretraining, see pretrain.py).

A doodle world (v3, `sketches="doodles"`) keeps the photo protocol and changes the sketches:
- Concepts are Quick, Draw! categories. A seen concept's drawings 0..doodle_train-1 train the prompts and the rest
  up to 79 are its test doodles; a validation concept's drawings 0-79 choose the recipe; an unseen concept's 0-79
  are the zero-shot test. Drawings 80-99 are never read (doodles.py).
- The icon families stay as a second sketch domain: train families add prompt-training sketches of the seen
  concepts, test families draw test sketches only.
- The backbone, standing in for web CLIP (which has seen drawings of nearly everything), is pretrained on the
  colour art, the train families' clean line icons of every concept, and the doodles of the Quick, Draw!
  categories that are not concepts of the world (split.json's doodles.pretrain_categories): never a doodle of a
  world concept, never a test family's art.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..data.datasets import DOODLE_PREFIX
from ..names import folder_name
from . import concepts as cpt
from . import render
from .doodles import CREDIT as DOODLE_CREDIT
from .doodles import PACKAGE as DOODLE_PACKAGE
from .doodles import USABLE, bitmap_image, read_bitmaps
from .doodles import categories as doodle_categories
from .sources import Artwork, IconMap

DOODLE_SET = "quickdraw"  # the manifest's `set` of a doodle; its `icon` is the drawing's index


def pretrain_doodle_categories(categories: list[str], split: dict) -> list[str]:
    """The doodle categories the backbone may learn from: every one that is not a concept of the world."""
    world = {*split["seen"], *split["val"], *split["unseen"]}
    return [c for c in categories if c not in world]


def pretrain_doodles(split: dict, seen_doodles: bool = False) -> dict[str, range]:
    """Which drawings of which category the backbone's pool holds (the one place this rule lives): drawings
    0..USABLE-1 of every category outside the world and, with `seen_doodles` (world v4), a seen concept's training
    drawings 0..doodle_train-1, as web CLIP has seen people draw the common things. Never a drawing of a validation
    or unseen concept, never a seen concept's test drawings."""
    doodles = split.get("doodles", {})
    pool = {c: range(USABLE) for c in doodles.get("pretrain_categories", [])}
    if seen_doodles:
        pool.update({c: range(doodles["train"]) for c in split["seen"]})
    return pool

FG_RULE = (
    "Instance = one drawing of a test drawer whose design family also ships a colour version of the very same "
    "icon (OpenMoji black and colour, for example). Its sketches are fg_<set>_<icon>-<k>.png; the photo "
    "fg_<set>_<icon>.jpg in the same concept folder is that colour version composited on a random background, the "
    "only true match. All other photos of the concept are distractors."
)


@dataclass(frozen=True)
class WorldConfig:
    """Sizes, counts and the split of the rendered world (the defaults are the shipped build)."""

    seed: int = 0
    test_families: tuple[str, ...] = ("openmoji", "emojione", "iconoir", "hugeicons")
    unseen_fraction: float = 0.25
    val_fraction: float = 0.12
    gallery_fraction: float = 0.4
    min_sketch_families: int = 4
    min_photo_sets: int = 3
    size: int = 96
    art_size: int = 96
    train_sketch_views: int = 3
    test_sketch_views: int = 6
    train_photo_views: int = 2
    gallery_photo_views: int = 2
    edge_pairs: int = 3  # edge-map sketches per training colour artwork, each paired with that artwork's photo
    jpeg_quality: int = 85
    # "icons": the sketches are the line/outline icon sets drawn like a visitor (v2); "doodles": Quick, Draw!
    # doodles (drawings 0..doodle_train-1 of a seen concept train, the rest up to doodles.USABLE test), the icon
    # sets a second sketch domain, and clean line icons of the train families in pretraining (v3)
    sketches: str = "icons"
    doodle_train: int = 64


@dataclass(frozen=True)
class Item:
    """One file to render: where it goes and what it depicts."""

    path: str
    split: str
    domain: str
    concept: str
    set: str
    icon: str
    view: int


def gallery_sets(icon_map: IconMap, concept: str, test_families: tuple[str, ...], cfg: WorldConfig) -> list[str]:
    """The colour sets of a concept kept for the test gallery: the colour twins of its test drawings first, then a
    seeded pick up to `gallery_fraction` of its sets, always leaving at least one set for pretraining."""
    icons = icon_map.concepts[concept]
    photo = [k for k in icons if icon_map.sets[k].role == "photo"]
    twins = sorted({p for p in photo if any(fg_twin(icon_map, concept, s) == p for s in icons
                                            if icon_map.sets[s].family in test_families)})
    rest = [p for p in photo if p not in twins]
    random.Random(f"{cfg.seed}:{concept}").shuffle(rest)
    want = max(1, round(cfg.gallery_fraction * len(photo)))
    picked = (twins + rest)[:max(want, len(twins))]
    return sorted(picked[:len(photo) - 1])


def fg_twin(icon_map: IconMap, concept: str, sketch_set: str) -> str | None:
    """The colour set of the same design family that draws the same icons as this sketch set, if any."""
    s = icon_map.sets[sketch_set]
    if s.role != "sketch":
        return None
    icons = icon_map.concepts[concept]
    for key, other in icon_map.sets.items():
        if other.role == "photo" and other.family == s.family and key in icons and \
                set(icons[key]) & set(icons[sketch_set]):
            return key
    return None


def plan(icon_map: IconMap, split: cpt.Split, cfg: WorldConfig) -> list[Item]:
    """Every file of the world, following the protocol in the module docstring."""
    items: list[Item] = []
    test_families = split.test_families
    role = {k: s.role for k, s in icon_map.sets.items()}
    family = {k: s.family for k, s in icon_map.sets.items()}

    def add(split_name, domain, concept, set_key, icon, view, name):
        ext = {"sketch": "png", "photo": "jpg", "art": "png", "line": "png"}[domain]
        where = "pretrain" if split_name == "pretrain" else f"{split_name}/{domain}"
        items.append(Item(f"{where}/{folder_name(concept)}/{name}.{ext}", split_name, domain, concept, set_key, icon,
                          view))

    doodles = cfg.sketches == "doodles"
    for concept in (*split.seen, *split.val, *split.unseen):
        icons = icon_map.concepts[concept]
        gallery = gallery_sets(icon_map, concept, test_families, cfg)
        if doodles:
            for i in range(USABLE):
                where = ("train" if i < cfg.doodle_train else "test") if concept in split.seen else \
                    "val" if concept in split.val else "test"
                add(where, "sketch", concept, DOODLE_SET, str(i), 0, f"{DOODLE_PREFIX}{i:02d}")
        for set_key, names in icons.items():
            for icon in names:
                stem = f"{set_key}_{icon}"
                if role[set_key] == "photo" and set_key not in gallery:
                    add("pretrain", "art", concept, set_key, icon, 0, stem)
                    if concept not in split.unseen:
                        where = "train" if concept in split.seen else "val"
                        for v in range(cfg.train_photo_views):
                            add(where, "photo", concept, set_key, icon, v, f"{stem}_{v}")
                    if concept in split.seen and cfg.edge_pairs:  # instance pairs: an edge map and its own art
                        add("train", "photo", concept, set_key, icon, 0, f"edge_{stem}")
                        for k in range(cfg.edge_pairs):
                            add("train", "sketch", concept, set_key, icon, k, f"edge_{stem}-{k}")
                elif role[set_key] == "photo":
                    if concept in split.val:
                        continue
                    paired = any(fg_twin(icon_map, concept, s) == set_key and icon in icons[s]
                                 for s in icons if family[s] in test_families)
                    if paired:
                        add("test", "photo", concept, set_key, icon, 0, f"fg_{stem}")
                    for v in range(int(paired), cfg.gallery_photo_views):
                        add("test", "photo", concept, set_key, icon, v, f"{stem}_{v}")
                elif family[set_key] in test_families:
                    if concept in split.val:
                        continue
                    twin = fg_twin(icon_map, concept, set_key)
                    name = f"fg_{twin}_{icon}" if twin and icon in icons[twin] and twin in gallery else stem
                    for k in range(cfg.test_sketch_views):
                        add("test", "sketch", concept, set_key, icon, k, f"{name}-{k}")
                else:
                    if doodles:  # web CLIP has seen line drawings of everything: so does the backbone
                        add("pretrain", "line", concept, set_key, icon, 0, f"line_{stem}")
                    if concept in split.seen or (concept in split.val and not doodles):
                        where = "train" if concept in split.seen else "val"
                        for k in range(cfg.train_sketch_views):
                            add(where, "sketch", concept, set_key, icon, k, f"{stem}-{k}")
    return items


def _generator(seed: int, path: str) -> torch.Generator:
    digest = hashlib.sha256(f"{seed}:{path}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))


class Doodles:
    """The usable drawings of the doodle package, read once per category."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._last: tuple[str, np.ndarray] | None = None

    def image(self, category: str, index: int) -> Image.Image:
        if self._last is None or self._last[0] != category:
            self._last = (category, read_bitmaps(self.root, category, range(USABLE)))
        return bitmap_image(self._last[1][index])


def render_item(item: Item, art: Artwork, cfg: WorldConfig, doodles: Doodles | None = None) -> Image.Image:
    """The image of one planned file; deterministic given the seed and the file's path. View 0 of a sketch is
    the drawing as designed (only cropped); the others are drawn like a visitor would. A doodle is its 28x28
    bitmap as it is (the model's transform upsamples it, as it upsamples a canvas redrawn as a doodle)."""
    if item.set == DOODLE_SET:
        if doodles is None:
            raise ValueError(f"{item.path}: a doodle, but no doodle package was given")
        return doodles.image(item.concept, int(item.icon))
    gen = _generator(cfg.seed, item.path)
    data, svg = art.data(item.set, item.icon), art.is_svg(item.set)
    if item.domain == "art":
        return Image.fromarray(render.rasterize(data, cfg.art_size, svg=svg), "RGBA")
    if item.domain == "line":
        return Image.fromarray(render.rasterize(data, cfg.art_size, svg=svg, ink=True), "RGBA")
    if item.domain == "sketch" and Path(item.path).name.startswith("edge_"):
        rgba = render.to_tensor(render.rasterize(data, cfg.size, svg=svg))[None]
        return render.edge_sketch(rgba, gen, cfg.size)
    if item.domain == "sketch":
        return render.visitor_sketch(data, cfg.size, gen, svg=svg, clean=item.view == 0)
    rgba = render.to_tensor(render.rasterize(data, cfg.size, svg=svg))[None]
    # an FG or edge-pair photo keeps the drawing's orientation; distractors may be mirrored
    flip = 0.0 if Path(item.path).name.startswith(("fg_", "edge_")) else 0.5
    rgb = render.photos(rgba, gen, cfg.size, flip=flip)[0]
    return Image.fromarray((rgb.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))


def build_world(icon_map: IconMap, art: Artwork, root: Path, cfg: WorldConfig = WorldConfig(),
                doodle_root: Path | None = None) -> dict:
    """Split and render the world into `root`; returns the split.json content. A doodle world
    (`cfg.sketches == "doodles"`) needs the doodle package's folder `doodle_root`.

    An interrupted render of the same plan resumes (files are deterministic given their path, and `root/plan`
    holds the plan's digest); any other content of `root` is replaced."""
    root = Path(root)
    if cfg.sketches not in ("icons", "doodles"):
        raise ValueError(f"WorldConfig.sketches must be 'icons' or 'doodles', got {cfg.sketches!r}")
    if cfg.sketches == "doodles" and doodle_root is None:
        raise ValueError("a doodle world needs the doodle package (doodle_root)")
    categories = doodle_categories(doodle_root) if cfg.sketches == "doodles" else None
    split = cpt.make_split(icon_map, cfg.seed, cfg.test_families, cfg.unseen_fraction, cfg.val_fraction,
                           cfg.min_sketch_families, cfg.min_photo_sets, categories)
    doodles = Doodles(doodle_root) if categories is not None else None
    items = plan(icon_map, split, cfg)
    digest = hashlib.sha256(json.dumps([asdict(cfg), [asdict(i) for i in items]]).encode()).hexdigest()
    if root.exists() and not ((root / "plan").is_file() and (root / "plan").read_text() == digest):
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / "plan").write_text(digest)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny per-image ops: threads only add overhead
    for item in items:
        path = root / item.path
        if path.is_file():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        image = render_item(item, art, cfg, doodles)
        tmp = path.with_name("partial-" + path.name)
        if item.domain == "photo":
            image.save(tmp, format="JPEG", quality=cfg.jpeg_quality, optimize=True)
        else:
            image.save(tmp, format="PNG", optimize=True)
        tmp.replace(path)
    torch.set_num_threads(threads)
    counts: dict[str, int] = {}
    for item in items:
        key = f"{item.split}/{item.domain}"
        counts[key] = counts.get(key, 0) + 1
    used = sorted({item.set for item in items} - {DOODLE_SET})
    content = {
        "seed": cfg.seed,
        "seen": list(split.seen),
        "val": list(split.val),
        "unseen": list(split.unseen),
        "train_families": list(split.train_families),
        "test_families": list(split.test_families),
        "everyday": [c for c in cpt.EVERYDAY if c in (*split.seen, *split.val, *split.unseen)],
        "lists": {c: list(icon_map.lists[c]) for c in (*split.seen, *split.val, *split.unseen)},
        "sources": {k: {"package": icon_map.sets[k].package, "version": icon_map.sets[k].version,
                        "license": icon_map.sets[k].license, "family": icon_map.sets[k].family,
                        "role": icon_map.sets[k].role} for k in used},
        "fg": FG_RULE,
        "folders": "concept folder = concept name with spaces as underscores",
        "config": asdict(cfg),
        "counts": counts,
    }
    if categories is not None:
        content["doodles"] = {"package": f"{DOODLE_PACKAGE.package}@{DOODLE_PACKAGE.version}",
                              "license": DOODLE_PACKAGE.license, "credit": DOODLE_CREDIT, "usable": USABLE,
                              "train": cfg.doodle_train,
                              "pretrain_categories": pretrain_doodle_categories(categories, content)}
    (root / "split.json").write_text(json.dumps(content, indent=1, ensure_ascii=False))
    (root / "manifest.json").write_text(json.dumps([asdict(i) for i in items], indent=0, ensure_ascii=False))
    return content
