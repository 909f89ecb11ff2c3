"""Building the frozen open_clip CLIP that SpLIP prompts, its tokenizer and its image transform.

SpLIP reaches into the towers (see towers.py), so only the standard `open_clip.model.CLIP` with a
`VisionTransformer` image tower, the BPE `SimpleTokenizer` and argmax (EOT) text pooling are accepted; anything else
is refused here with a message instead of failing deep inside a forward pass. Pinned to open_clip_torch 3.3.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import open_clip
import torch
from open_clip.model import CLIP
from open_clip.tokenizer import SimpleTokenizer
from open_clip.transform import image_transform
from open_clip.transformer import VisionTransformer

from .config import SpLIPConfig

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
_CLIP_ARGS = ("embed_dim", "vision_cfg", "text_cfg", "quick_gelu", "init_logit_scale", "init_logit_bias")


class BackboneError(ValueError):
    """The open_clip backbone named in a config cannot be built or loaded."""


def _check_supported(model: torch.nn.Module, name: str) -> CLIP:
    if not isinstance(model, CLIP):
        raise BackboneError(f"{name}: SpLIP needs open_clip's CLIP class, got {type(model).__name__}")
    if not isinstance(model.visual, VisionTransformer):
        raise BackboneError(f"{name}: SpLIP needs a ViT image tower, got {type(model.visual).__name__}")
    if model.text_pool_type != "argmax":
        raise BackboneError(f"{name}: SpLIP needs EOT (argmax) text pooling, got {model.text_pool_type!r}")
    return model


def _named_backbone(config: SpLIPConfig) -> CLIP:
    name, tag = config.backbone.name, config.backbone.pretrained
    schema, _ = open_clip.factory.parse_model_name(name)
    if schema is None:
        if name not in open_clip.list_models():
            raise BackboneError(
                f"unknown open_clip backbone {name!r} (see open_clip.list_models(), e.g. 'ViT-B-32', 'ViT-B-16', "
                "'ViT-L-14'), or use 'hf-hub:ORG/REPO'"
            )
        tags = open_clip.list_pretrained_tags_by_model(name)
        if tag is not None and tag not in tags:
            raise BackboneError(f"{name!r} has no pretrained tag {tag!r}; known tags: {tags}")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="No pretrained weights loaded")
            model = open_clip.create_model(name, pretrained=None if schema else tag)
    except Exception as err:  # open_clip raises RuntimeError / OSError / HF errors for every download failure
        where = f"{name} ({tag})" if tag and not schema else name
        raise BackboneError(
            f"could not load the backbone weights {where}: {err}. Without network, the weights must already be "
            "in the Hugging Face cache (HF_HUB_OFFLINE=1 reads only the cache)"
        ) from err
    return _check_supported(model, name)


def build_backbone(config: SpLIPConfig) -> CLIP:
    """The frozen CLIP: from `backbone_config` (weights loaded later by the checkpoint) or by open_clip name."""
    if config.backbone.model_config is None:
        return _named_backbone(config)
    cfg = dict(config.backbone.model_config)
    unknown = sorted(set(cfg) - set(_CLIP_ARGS) - {"custom_text"})
    if unknown or cfg.get("custom_text"):
        raise BackboneError(f"backbone_config has keys SpLIP's CLIP builder does not take: {unknown or 'custom_text'}")
    cfg.pop("custom_text", None)
    missing = [k for k in ("embed_dim", "vision_cfg", "text_cfg") if k not in cfg]
    if missing:
        raise BackboneError(f"backbone_config lacks {missing}")
    try:
        model = CLIP(**cfg)
    except (TypeError, ValueError) as err:
        raise BackboneError(f"backbone_config does not describe an open_clip CLIP: {err}") from err
    return _check_supported(model, config.backbone.name)


def backbone_base_model(config: SpLIPConfig) -> str | None:
    """The Hub repo that holds the backbone weights, for the model card's `base_model`."""
    schema, ident = open_clip.factory.parse_model_name(config.backbone.name)
    if schema == "hf-hub":
        return ident
    if schema is None and config.backbone.model_config is None and config.backbone.pretrained:
        hub = open_clip.get_pretrained_cfg(config.backbone.name, config.backbone.pretrained).get("hf_hub", "")
        return hub.strip("/") or None
    return None


def preprocess_settings(model: CLIP, config: SpLIPConfig) -> dict[str, Any]:
    """Image size, mean and std: the config's override, else what open_clip attached to the model, else CLIP's."""
    size = model.visual.image_size
    base = {
        "size": int(size[0] if isinstance(size, (tuple, list)) else size),
        "mean": list(OPENAI_MEAN),
        "std": list(OPENAI_STD),
    }
    attached = getattr(model.visual, "preprocess_cfg", None) or {}
    base.update({k: attached[k] for k in ("mean", "std") if k in attached})
    base.update(config.backbone.preprocess or {})
    return base


def make_transform(settings: dict[str, Any]):
    """PIL image -> normalised (3, size, size) tensor: resize the short side, centre crop (CLIP's eval transform)."""
    return image_transform(settings["size"], is_train=False, mean=tuple(settings["mean"]), std=tuple(settings["std"]))


_TOKENIZER: SimpleTokenizer | None = None


def tokenizer() -> SimpleTokenizer:
    """CLIP's BPE tokenizer (shared: building it reads the 1.3 MB vocabulary)."""
    global _TOKENIZER
    if _TOKENIZER is None:
        logging.getLogger(__name__).debug("loading CLIP BPE tokenizer")
        _TOKENIZER = SimpleTokenizer()
    return _TOKENIZER
