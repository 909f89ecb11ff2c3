"""Shared fixtures: a tiny sketch/photo dataset on disk in the generic folder layout."""

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
