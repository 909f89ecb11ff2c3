"""SBIR datasets with their standard zero-shot splits: `load_dataset(name, root, split)` -> `SBIRData`."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from splip_core.data.datasets import (
    CLASS_FILES,
    DOODLE_PREFIX,
    SKETCH_DOMAINS,
    SPLIT_FILES,
    SPLITS_DIR,
    DatasetError,
    Sample,
    SBIRData,
    load_folder,
    read_class_list,
    read_file_list,
    resolve_split,
    sketchy_sketch_instance,
)
from splip_core.data.quickdraw import load_quickdraw
from splip_core.data.sampling import ImageDataset, TripletDataset
from splip_core.data.sketchy import load_sketchy
from splip_core.data.tuberlin import load_tuberlin

LOADERS = {
    "sketchy": load_sketchy,
    "tuberlin": load_tuberlin,
    "quickdraw": load_quickdraw,
    "folder": load_folder,
}


def load_dataset(name: str, root: str | Path, split: str | Path | Iterable[str] | None = None, **options) -> SBIRData:
    """Load dataset `name` ("sketchy", "tuberlin", "quickdraw" or "folder") from `root` with zero-shot `split`.

    `split` is a named split (see `SPLIT_FILES`; None = the dataset's default: Sketchy "split1", TU-Berlin "sake",
    QuickDraw "dey", folder: ROOT/split.json or none), a class-list file, or class names. `options` go to the loader
    (Sketchy: `extended=False` for the original photos only).
    """
    key = name.lower().replace("-", "").replace("_", "")
    if key not in LOADERS:
        raise DatasetError(f"unknown dataset {name!r}; choose one of {', '.join(LOADERS)}")
    return LOADERS[key](root, split, **options)


__all__ = [
    "CLASS_FILES",
    "DOODLE_PREFIX",
    "SKETCH_DOMAINS",
    "SPLITS_DIR",
    "SPLIT_FILES",
    "DatasetError",
    "ImageDataset",
    "SBIRData",
    "Sample",
    "TripletDataset",
    "load_dataset",
    "load_folder",
    "load_quickdraw",
    "load_sketchy",
    "load_tuberlin",
    "read_class_list",
    "read_file_list",
    "resolve_split",
    "sketchy_sketch_instance",
]
