"""Tiny SpLIP models on random weights: a forward pass in milliseconds on a CPU, for tests, benchmarks, smoke runs
and the demo when no trained weights can be found. Their retrieval is chance level by construction."""

from __future__ import annotations

from typing import Any

import torch

from .config import SpLIPConfig
from .model import SpLIP

TINY_CLASSES = ["cat", "dog", "hot air balloon", "car (sedan)", "apple", "guitar"]


def tiny_backbone_config(image_size: int = 32, vision_layers: int = 2, text_layers: int = 2) -> dict[str, Any]:
    """An open_clip CLIP config small enough to run a forward pass in milliseconds on a CPU."""
    return {
        "embed_dim": 32,
        "vision_cfg": {"image_size": image_size, "patch_size": 8, "width": 64, "layers": vision_layers,
                       "head_width": 32},
        "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 32, "heads": 2, "layers": text_layers},
    }


def tiny_config(seen_classes: list[str] | None = None, **overrides: Any) -> SpLIPConfig:
    """The tiny backbone's config; `overrides` are config fields, flat (`alpha=0.1`) or whole sections, plus
    image_size / vision_layers / text_layers of the backbone."""
    backbone_overrides = {k: overrides.pop(k) for k in ("image_size", "vision_layers", "text_layers")
                          if k in overrides}
    backbone = {"name": "tiny-test-clip", "pretrained": None,
                "model_config": tiny_backbone_config(**backbone_overrides)}
    seen = list(TINY_CLASSES if seen_classes is None else seen_classes)
    return SpLIPConfig.from_dict({"backbone": backbone, "seen_classes": seen, **overrides})


def tiny_model(seed: int = 0, seen_classes: list[str] | None = None, **overrides: Any) -> SpLIP:
    """A tiny SpLIP whose backbone and prompt weights are drawn from `seed` (prompts scaled up so they matter)."""
    torch.manual_seed(seed)
    model = SpLIP(tiny_config(seen_classes, **overrides))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith(("b_t.", "b_v.", "b_vt.")) and p.ndim == 2:
                p.normal_(0, 0.2)
    return model.eval()
