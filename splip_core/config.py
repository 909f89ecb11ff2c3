"""SpLIPConfig: every choice of the method, the backbone it needs, and the training losses, in one JSON object.

Values marked [U] in `shared/method/SPLIP.md` (unspecified by the paper) are fields here with the spec's suggested
default, so they can be ablated without touching code.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MODALITIES = ("sketch", "photo")
INFERENCE_MODES = ("faithful", "fast")


class ConfigError(ValueError):
    """A configuration that cannot describe a SpLIP model."""


@dataclass
class SpLIPConfig:
    # --- backbone --------------------------------------------------------------------------------------------
    backbone: str = "ViT-B-32"
    """open_clip model name ("ViT-B-32"), or "hf-hub:org/repo" / "local-dir:PATH" in open_clip's own layout."""
    pretrained: str | None = "openai"
    """open_clip pretrained tag of a named backbone; None = random init (tests) or weights bundled with a checkpoint."""
    backbone_config: dict[str, Any] | None = None
    """A custom open_clip model config (embed_dim, vision_cfg, text_cfg); its weights travel as backbone.safetensors."""
    preprocess: dict[str, Any] | None = None
    """Image size / mean / std override; None = the backbone's own (CLIP's) preprocessing."""

    # --- the classes whose text conditions the visual prompts (B_vt) -------------------------------------------
    seen_classes: list[str] = field(default_factory=list)
    templates: dict[str, str] = field(
        default_factory=lambda: {"sketch": "a sketch of a {}.", "photo": "a photo of a {}."}
    )

    # --- prompt scheme --------------------------------------------------------------------------------------------
    use_prompts: bool = True
    """False = plain frozen CLIP: encode_* equal open_clip's encode_image / encode_text."""
    use_text_prompts: bool = True  # B_t (ablation "w/o B_t")
    use_template_prompts: bool = True  # B_v (ablation "w/o B_v")
    use_shared_prompts: bool = True  # B_vt (ablation "w/o B_vt")
    n_text_prompts: int = 4  # m [S]
    n_shared_prompts: int = 2  # n per visual layer [S]
    text_prompt_depth: int | None = None  # [U] layers of F_t that get T re-inserted; None = all
    visual_prompt_depth: int | None = None  # [U] layers of F_v that get fresh prompts; None = all
    text_prompt_position: str = "prepend"  # [U] "prepend": [SOT, T, template words, class, EOT]; "replace"
    bt_pool: str = "mean"  # [U] how B_t reads E_0: "mean" over patches
    bt_layers: int = 3  # [S2] "3 linear layers"
    bt_hidden: int | None = None  # [U] None = text width
    bv_input: str = "embedding"  # [U] B_v reads the template's token embeddings ("embedding") only
    bvt_per_layer: bool = False  # [U] one B_vt shared by all layers (False) or one per layer (True)
    bvt_hidden: int | None = None  # [U] None = text width
    prompt_init_std: float = 0.02  # [U] std of the mappers' last layer, keeps early prompts small
    tune_layernorm: bool = True  # [S] LayerNorm affine params of both encoders train too

    # --- inference cost (section 10 of the spec) ------------------------------------------------------------------
    inference_mode: str = "faithful"
    """"faithful": T from each image, one text pass over the seen classes per image (the paper's method).
    "fast" (an approximation): T from the running mean of training patch embeddings, so V^ms is computed once per
    modality and image encoding costs about plain CLIP."""
    train_text_conditioning: str = "instance"  # [U] "instance" (faithful) or "batch" (T from the batch mean)
    text_class_sample: int | None = None
    """Training with "instance" conditioning only: each image's text pass runs over k seen classes drawn at random
    (always including its own), so B_vt averages and L_class ranks over that subset; None = all seen classes.
    Inference always uses all seen classes."""

    # --- losses (used by splip_core.losses / train) ---------------------------------------------------------------
    alpha: float = 1.0  # weight of L_class [U]
    beta: float = 0.5  # weight of L_cjs [U]
    use_triplet: bool = True
    use_class_loss: bool = True
    use_jigsaw: bool = True
    adaptive_margin: bool = True
    fixed_margin: float = 0.2
    margin_min: float | None = None
    """Lower clamp of the adaptive margin; None = none. On a small text tower class-text cosines can be negative,
    and a triplet whose margin is negative never fires (spec section 11)."""
    triplet_mining: str = "random"
    """"random": the sampled negative; "batch_hard": per sketch, the most similar photo of another class (another
    instance at FG level) among the batch's positive and negative photos."""
    use_contrastive: bool = False
    """An in-batch symmetric InfoNCE between sketches and positive photos; every same-class (FG: same-instance) pair
    in the batch is a positive. Not in the paper."""
    contrastive_weight: float = 1.0
    contrastive_temperature: float = 0.07
    photo_anchor_weight: float = 0.0
    """Weight of 1 - cos(SpLIP photo feature, frozen CLIP photo feature), averaged over the batch's photos; 0 = off.
    Not in the paper: it keeps the photo side in the frozen space that knows every concept, so the sketch prompts
    learn to map drawings into it instead of re-partitioning the space around the seen concepts."""
    class_loss_on: str = "both"  # [U] "both" | "sketch" | "photo"
    temperature: float | None = None  # [U] tau of L_class; None = the backbone's learned 1/logit_scale (CLIP: 0.01)
    jigsaw_grid: int = 3  # [U]
    jigsaw_permutations: int = 100  # [U] |Y^perm|, max-Hamming set
    jigsaw_layers: int = 2  # [S]
    jigsaw_heads: int = 8  # [U]

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ConfigError naming the field when a value cannot work."""
        if not self.backbone or not isinstance(self.backbone, str):
            raise ConfigError("backbone must be an open_clip model name, 'hf-hub:ORG/REPO' or 'local-dir:PATH'")
        if set(self.templates) != set(MODALITIES):
            raise ConfigError(f"templates must have exactly the keys {MODALITIES}, got {sorted(self.templates)}")
        for modality, template in self.templates.items():
            if template.count("{}") != 1:
                raise ConfigError(f"templates[{modality!r}] needs exactly one '{{}}' for the class name: {template!r}")
        if self.inference_mode not in INFERENCE_MODES:
            raise ConfigError(f"inference_mode must be one of {INFERENCE_MODES}, got {self.inference_mode!r}")
        if self.train_text_conditioning not in ("instance", "batch"):
            raise ConfigError("train_text_conditioning must be 'instance' or 'batch'")
        if self.text_prompt_position not in ("prepend", "replace"):
            raise ConfigError("text_prompt_position must be 'prepend' or 'replace'")
        if self.class_loss_on not in ("both", "sketch", "photo"):
            raise ConfigError("class_loss_on must be 'both', 'sketch' or 'photo'")
        if self.triplet_mining not in ("random", "batch_hard"):
            raise ConfigError("triplet_mining must be 'random' or 'batch_hard'")
        if self.contrastive_temperature <= 0:
            raise ConfigError(f"contrastive_temperature must be > 0, got {self.contrastive_temperature}")
        if self.contrastive_weight < 0:
            raise ConfigError(f"contrastive_weight must be >= 0, got {self.contrastive_weight}")
        if self.text_class_sample is not None and int(self.text_class_sample) < 1:
            raise ConfigError(f"text_class_sample must be >= 1 or null, got {self.text_class_sample}")
        if self.bt_pool != "mean" or self.bv_input != "embedding":
            raise ConfigError("bt_pool supports 'mean' and bv_input supports 'embedding' only")
        for name in ("n_text_prompts", "n_shared_prompts", "bt_layers", "jigsaw_grid", "jigsaw_permutations"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if len(set(self.seen_classes)) != len(self.seen_classes):
            raise ConfigError("seen_classes contains duplicates")
        if self.use_prompts and self.use_shared_prompts and not self.seen_classes:
            raise ConfigError("seen_classes is empty: B_vt builds the visual prompts from the seen-class prompts")

    # --- JSON --------------------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SpLIPConfig:
        """Strict: an unknown key is an error (a typo must not silently fall back to a default)."""
        if not isinstance(data, dict):
            raise ConfigError(f"a SpLIP config is a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown SpLIP config keys: {unknown}")
        return cls(**data)

    @classmethod
    def from_json(cls, path: str | Path) -> SpLIPConfig:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path}: not valid JSON ({err})") from err
        return cls.from_dict(data)

    def to_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8")

    def replace(self, **changes: Any) -> SpLIPConfig:
        return dataclasses.replace(self, **changes)
