"""Named training recipes, open_clip style: `list_presets()` and `load_preset(name)`.

A preset is a JSON file shipped in this package: {"description": why, "model": a partial SpLIPConfig in its nested
form (sections backbone / prompts / loss), "train": TrainOptions fields}. `paper.json` is the paper's method with
the defaults of docs/METHOD.md; other presets record deviations, each with its measured reason in "description".
"""

from __future__ import annotations

import dataclasses
from importlib import resources
from typing import Any

from ..config import ConfigError, SpLIPConfig, TrainOptions, read_json_object

PRESET_KEYS = ("model", "train", "description")


def _files():
    return resources.files(__name__)


def list_presets() -> list[str]:
    """The names of the shipped presets, sorted."""
    return sorted(f.name[: -len(".json")] for f in _files().iterdir() if f.name.endswith(".json"))


def load_preset(name: str) -> dict[str, Any]:
    """{"description": str, "model": {...}, "train": {...}} of preset `name`; ConfigError for an unknown preset or
    key (model keys are checked against SpLIPConfig, train keys against TrainOptions)."""
    if name not in list_presets():
        raise ConfigError(f"unknown preset {name!r}; choose one of {list_presets()}")
    with resources.as_file(_files() / f"{name}.json") as path:
        preset = read_json_object(path, f"preset {name!r}")
    unknown = sorted(set(preset) - set(PRESET_KEYS))
    if unknown:
        raise ConfigError(f"preset {name!r}: unknown keys {unknown}; a preset has {list(PRESET_KEYS)}")
    preset.setdefault("description", "")
    preset.setdefault("model", {})
    preset.setdefault("train", {})
    try:
        SpLIPConfig.from_dict({**preset["model"], "seen_classes": ["-"]})
    except ConfigError as err:
        raise ConfigError(f"preset {name!r}: {err}") from err
    unknown = sorted(set(preset["train"]) - {f.name for f in dataclasses.fields(TrainOptions)})
    if unknown:
        raise ConfigError(f"preset {name!r}: unknown train keys {unknown}")
    return preset
