"""Shared fixtures: a tiny sketch/photo dataset on disk in the generic folder layout, and the demo's fake offline
world. Plain builders and constants that tests also use by name live in _builders.py (tests never import each other).
"""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

FOLDER_CLASSES = ["apple", "car", "cat", "dog", "guitar", "tree"]
FOLDER_UNSEEN = ["car", "tree"]


def make_folder_dataset(root: Path, per_class: int = 4, seed: int = 0) -> Path:
    """ROOT/{sketch,photo}/<class>/ with one shape per class: sketches are black outlines on white, photos filled
    shapes on coloured backgrounds; `<id>-1.png` sketches pair with `<id>.jpg` photos; ROOT/split.json."""
    rng = np.random.default_rng(seed)
    for ci, name in enumerate(FOLDER_CLASSES):
        for i in range(per_class):
            box = [4 + 2 * ci + i, 6 + ci, 26 + i, 30 - ci]
            sketch = Image.new("RGB", (40, 40), "white")
            ImageDraw.Draw(sketch).ellipse(box, outline="black", width=2)
            photo = Image.new("RGB", (40, 40), tuple(int(v) for v in rng.integers(60, 255, 3)))
            ImageDraw.Draw(photo).rectangle(box, fill=(40 * ci, 30, 200 - 30 * ci))
            for kind, image, fname in (("sketch", sketch, f"{name}{i}-1.png"), ("photo", photo, f"{name}{i}.jpg")):
                folder = root / kind / name
                folder.mkdir(parents=True, exist_ok=True)
                image.save(folder / fname)
    (root / "split.json").write_text(json.dumps({"unseen": FOLDER_UNSEEN}))
    return root


@pytest.fixture
def folder_dataset(tmp_path) -> Path:
    return make_folder_dataset(tmp_path / "data")


@pytest.fixture(scope="module")
def demo_world(tmp_path_factory) -> Path:
    """A fake weights/mini for the demo (see `build_demo_world`), one per test module."""
    from _builders import build_demo_world  # here, not at the top: every test session imports this file

    return build_demo_world(tmp_path_factory.mktemp("world") / "mini")
