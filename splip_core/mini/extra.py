"""Extra colour art for pretraining: every other emoji of the colour sets, named by its own icon name.

The world's concepts have about six colour artworks each, so the tiny CLIP sees under a thousand images and
memorises them. The colour sets ship thousands of other emoji ("grinning face", "hot pepper", "teapot"); the same
emoji drawn by several sets gives cross-style pairs the backbone can learn style invariance from, the way
web-scale CLIP learns it from many pictures of many things. The selection keeps the protocol clean:
- only colour ("photo" role) Iconify sets; no line, outline or sketch set ever enters pretraining;
- no icon the map assigns to any concept, in any set (so no test-gallery artwork), and no icon whose name contains a
  world concept's name as whole words ("cat face" for "cat"): the extras depict no concept of the world;
- no skin-tone, flag, keycap, button or bare-number variants (near-duplicates or not drawable things).
Each icon is rasterised like the world's pretraining art (RGBA, re-centred) into ROOT/<set>/<icon>.png, listed
in ROOT/manifest.json with its label (the icon name as words; one label across sets).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from PIL import Image

from . import render
from .sources import Artwork, IconMap

SKIP = re.compile(r"(^|-)(tone\d?|light|medium|medium-light|medium-dark|dark|flag|keycap|button|regional)(-|$)"
                  r"|regionalindicator|^\d")


def words(icon: str) -> str:
    """An Iconify icon name as caption words: "hot-pepper" -> "hot pepper"."""
    return icon.replace("-", " ").replace("_", " ").lower().strip()


def select(icon_map: IconMap, art: Artwork) -> list[dict]:
    """The extra icons, sorted by (set, icon): dicts with set, icon and label (see the module docstring)."""
    used: dict[str, set[str]] = {}
    for icons in icon_map.concepts.values():
        for key, names in icons.items():
            used.setdefault(key, set()).update(names)
    concepts = [f" {words(c)} " for c in icon_map.concepts]
    out = []
    for key, s in sorted(icon_map.sets.items()):
        if s.role != "photo" or s.names != "iconify":
            continue
        for icon in sorted(art.icon_names(key)):
            label = words(icon)
            if icon in used.get(key, ()) or SKIP.search(icon) or any(c in f" {label} " for c in concepts):
                continue
            out.append({"set": key, "icon": icon, "label": label})
    return out


def render_extra(icon_map: IconMap, art: Artwork, root: Path, size: int) -> list[dict]:
    """Rasterise the selected extras into `root` (resumable: existing files of the same selection are kept);
    returns the manifest entries (set, icon, label, path)."""
    root = Path(root)
    items = select(icon_map, art)
    digest = hashlib.sha256(json.dumps([size, items]).encode()).hexdigest()
    manifest = root / "manifest.json"
    done = json.loads(manifest.read_text()) if manifest.is_file() else {}
    if done.get("digest") == digest:
        return done["items"]
    for item in items:
        item["path"] = f"{item['set']}/{item['icon']}.png"
        path = root / item["path"]
        if path.is_file():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name("partial-" + path.name)
        Image.fromarray(render.rasterize(art.data(item["set"], item["icon"]), size), "RGBA").save(tmp, format="PNG")
        tmp.replace(path)
    manifest.write_text(json.dumps({"digest": digest, "size": size, "items": items}, indent=0, ensure_ascii=False))
    return items
