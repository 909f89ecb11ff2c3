"""Named training recipes: JSON presets {"model": SpLIPConfig fields, "train": TrainOptions fields}.

`paper.json` is the paper's method with the spec's defaults; other presets record deviations, each with its measured
reason in "description". Presets ship as package data and are read through importlib.resources.
"""

from __future__ import annotations

import dataclasses
import json
from importlib import resources
from typing import Any

from ..config import ConfigError, SpLIPConfig

PRESET_KEYS = ("model", "train", "description")


def _files():
    return resources.files(__name__)


def list_presets() -> list[str]:
    """The names of the shipped presets, sorted."""
    return sorted(f.name[: -len(".json")] for f in _files().iterdir() if f.name.endswith(".json"))


def load_preset(name: str) -> dict[str, Any]:
    """{"model": {...}, "train": {...}} of preset `name`; ConfigError for an unknown preset or key."""
    from ..train import TrainOptions  # here, not at import time: splip_core.train imports this package

    resource = _files() / f"{name}.json"
    if not resource.is_file():
        raise ConfigError(f"unknown preset {name!r}; choose one of {list_presets()}")
    try:
        preset = json.loads(resource.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ConfigError(f"preset {name!r}: not valid JSON ({err})") from err
    if not isinstance(preset, dict):
        raise ConfigError(f"preset {name!r}: a preset is a JSON object")
    unknown = sorted(set(preset) - set(PRESET_KEYS))
    if unknown:
        raise ConfigError(f"preset {name!r}: unknown keys {unknown}; a preset has {list(PRESET_KEYS)}")
    preset.setdefault("model", {})
    preset.setdefault("train", {})
    for section, cls in (("model", SpLIPConfig), ("train", TrainOptions)):
        unknown = sorted(set(preset[section]) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ConfigError(f"preset {name!r}: unknown {section} keys {unknown}")
    return preset
