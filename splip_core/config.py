"""SpLIPConfig: the backbone, the prompt scheme and the training losses, as three nested sections of one JSON object.

    {"backbone": {...}, "prompts": {...}, "loss": {...}, "seen_classes": [...], "templates": {...},
     "inference_mode": "faithful"}

Marks in the field comments ([S], [S2], [U]) and "section N" refer to docs/METHOD.md: [U] values are unspecified by
the paper, so they are fields with the notes' suggested default and can be ablated without touching code. Configs
are frozen: change one with `replace` / `updated`, or a model's inference mode with `SpLIP.set_inference_mode`.
Checkpoints written before the sections existed hold one flat object; `from_dict` reads both forms.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MODALITIES = ("sketch", "photo")
INFERENCE_MODES = ("faithful", "fast")


class ConfigError(ValueError):
    """A configuration that cannot describe a SpLIP model."""


def _type_ok(value: Any, hint: Any) -> bool:
    """Does a JSON-loaded value have the annotated type? bool is not an int, an int is a float."""
    if typing.get_origin(hint) in (types.UnionType, typing.Union):
        return any(_type_ok(value, h) for h in typing.get_args(hint))
    if hint is Any:
        return True
    if hint is type(None):
        return value is None
    if hint in (int, float):
        return isinstance(value, (int, float) if hint is float else int) and not isinstance(value, bool)
    base, args = typing.get_origin(hint) or hint, typing.get_args(hint)
    if base is list:
        return isinstance(value, (list, tuple)) and all(_type_ok(v, args[0]) for v in value)
    if base is dict:
        return isinstance(value, dict) and all(_type_ok(k, args[0]) and _type_ok(v, args[1])
                                               for k, v in value.items())
    return isinstance(value, base)


_type_hints = functools.cache(typing.get_type_hints)  # evaluated once per class, not on every validation


def _check_types(obj: Any, prefix: str = "", skip: tuple[str, ...] = ()) -> None:
    """ConfigError naming the first field whose value has the wrong type (e.g. a count given as "4" or 2.5)."""
    hints = _type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if f.name not in skip and not _type_ok(value, hints[f.name]):
            raise ConfigError(f"{prefix}{f.name} must be {f.type}, got {value!r}")


def _one_of(name: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {choices}, got {value!r}")


@dataclass(frozen=True)
class BackboneConfig:
    """The frozen CLIP: which open_clip model, which weights, how images are preprocessed."""

    name: str = "ViT-B-32"
    """open_clip model name ("ViT-B-32"), or "hf-hub:org/repo" / "local-dir:PATH" in open_clip's own layout."""
    pretrained: str | None = "openai"
    """open_clip pretrained tag of a named backbone; None = random init (tests) or weights bundled with a checkpoint."""
    model_config: dict[str, Any] | None = None
    """A custom open_clip model config (embed_dim, vision_cfg, text_cfg); its weights travel as backbone.safetensors."""
    preprocess: dict[str, Any] | None = None
    """Image size / mean / std override; None = the backbone's own (CLIP's) preprocessing."""

    def validate(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ConfigError("backbone.name must be an open_clip model name, 'hf-hub:ORG/REPO' or 'local-dir:PATH'")


@dataclass(frozen=True)
class PromptConfig:
    """The prompt generators B_t, B_v, B_vt (section 9) and how their text conditioning is computed in training."""

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
    bt_layers: int = 3  # [S2] "3 linear layers"
    bt_hidden: int | None = None  # [U] None = text width
    bvt_per_layer: bool = False  # [U] one B_vt shared by all layers (False) or one per layer (True)
    bvt_hidden: int | None = None  # [U] None = text width
    prompt_init_std: float = 0.02  # [U] std of the mappers' last layer, keeps early prompts small
    tune_layernorm: bool = True  # [S] LayerNorm affine params of both encoders train too
    train_text_conditioning: str = "instance"  # [U] "instance" (faithful) or "batch" (T from the batch mean)
    text_class_sample: int | None = None
    """Training with "instance" conditioning only: each image's text pass runs over k seen classes drawn at random
    (always including its own), so B_vt averages and L_class ranks over that subset; None = all seen classes.
    Inference always uses all seen classes."""
    text_class_sample_shared: bool = False
    """With text_class_sample: one random subset per step, shared by every image (sketch, positive and negative)
    and not forced to hold any image's class, as at inference, where all images see the same classes. The per-image
    subsets (False) give the anchor and its positive a conditioning the negative lacks: a label shortcut that the
    triplet learns instead of the sketch (docs/WORLD-v2.md, "Does the recipe fit"). L_class skips images whose class
    is not in the shared subset."""

    def validate(self) -> None:
        _one_of("prompts.train_text_conditioning", self.train_text_conditioning, ("instance", "batch"))
        _one_of("prompts.text_prompt_position", self.text_prompt_position, ("prepend", "replace"))
        if self.text_class_sample is not None and self.text_class_sample < 1:
            raise ConfigError(f"prompts.text_class_sample must be >= 1 or null, got {self.text_class_sample}")
        for name in ("n_text_prompts", "n_shared_prompts", "bt_layers"):
            if getattr(self, name) < 1:
                raise ConfigError(f"prompts.{name} must be >= 1, got {getattr(self, name)}")


@dataclass(frozen=True)
class LossConfig:
    """L = L_triplet + alpha L_class + beta L_cjs (section 3), plus the optional terms this project adds."""

    use_triplet: bool = True
    adaptive_margin: bool = True
    fixed_margin: float = 0.2
    margin_min: float | None = None
    """Lower clamp of the adaptive margin; None = none. On a small text tower class-text cosines can be negative,
    and a triplet whose margin is negative never fires (section 11)."""
    triplet_mining: str = "random"
    """"random": the sampled negative; "batch_hard": per sketch, the most similar photo of another class (another
    instance at FG level) among the batch's positive and negative photos."""
    use_class_loss: bool = True
    alpha: float = 1.0  # weight of L_class [U]
    class_loss_on: str = "both"  # [U] "both" | "sketch" | "photo"
    class_text: str = "prompted"
    """Whose class text L_class reads: "prompted" (the paper's: the same prompted text pass that builds the visual
    prompts) or "frozen" (the backbone's own text of every seen class, a fixed table: it keeps the images aligned
    with the text side that the names ranking reads)."""
    temperature: float | None = None  # [U] tau of L_class; None = the backbone's learned 1/logit_scale (CLIP: 0.01)
    use_jigsaw: bool = True
    beta: float = 0.5  # weight of L_cjs [U]
    jigsaw_grid: int = 3  # [U]
    jigsaw_permutations: int = 100  # [U] |Y^perm|, max-Hamming set
    jigsaw_layers: int = 2  # [S]
    jigsaw_heads: int = 8  # [U]
    use_contrastive: bool = False
    """An in-batch symmetric InfoNCE between sketches and positive photos; every same-class (FG: same-instance) pair
    in the batch is a positive. Not in the paper."""
    contrastive_weight: float = 1.0
    contrastive_temperature: float = 0.07
    photo_anchor_weight: float = 0.0
    """Weight of 1 - cos(SpLIP photo feature, frozen CLIP photo feature), averaged over the batch's photos; 0 = off.
    Not in the paper: it keeps the photo side in the frozen space that knows every concept, so the sketch prompts
    learn to map drawings into it instead of re-partitioning the space around the seen concepts."""

    def validate(self) -> None:
        _one_of("loss.class_loss_on", self.class_loss_on, ("both", "sketch", "photo"))
        _one_of("loss.class_text", self.class_text, ("prompted", "frozen"))
        _one_of("loss.triplet_mining", self.triplet_mining, ("random", "batch_hard"))
        if self.contrastive_temperature <= 0:
            raise ConfigError(f"loss.contrastive_temperature must be > 0, got {self.contrastive_temperature}")
        for name in ("contrastive_weight", "photo_anchor_weight"):
            if getattr(self, name) < 0:
                raise ConfigError(f"loss.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("jigsaw_grid", "jigsaw_permutations"):
            if getattr(self, name) < 1:
                raise ConfigError(f"loss.{name} must be >= 1, got {getattr(self, name)}")


RANKING_METHODS = ("cosine", "names")


@dataclass(frozen=True)
class RankingConfig:
    """How photos are ranked for a sketch (splip_core/ranking.py). "cosine" is the paper's: the cosine of the two
    features. "names" adds `weight` times the agreement of what each image reads as: its distribution over the
    `vocabulary` (softmax of its cosine to each name's text, the sketch template for a sketch, the photo template for
    a photo, at `temperature`). A backbone that has seen people draw learns doodles into the names more than next
    to the photos; this ranking takes that path. Not part of the fingerprint: it re-ranks, the features stay."""

    method: str = "cosine"
    vocabulary: list[str] = field(default_factory=list)  # the names; empty: the seen classes
    temperature: float = 0.1
    weight: float = 1.0
    seen_offset: float = 0.0
    """Taken off a sketch's cosine to every seen name before the softmax (calibrated stacking): a backbone or prompts
    trained on some concepts' drawings pull an unseen concept's drawing toward those concepts' names."""
    seen_names: list[str] = field(default_factory=list)
    """The names whose drawings trained the model (the prompts' seen classes, and a backbone's own pretraining
    drawings): those `seen_offset` applies to. Empty: the seen classes."""
    agreement: str = "dot"
    """"dot": sum over names of p_sketch * p_photo; "sqrt": the Bhattacharyya coefficient sum sqrt(p_sketch * p_photo).
    Either is an inner product, so a search index ranks by it as by a cosine."""
    text: str = "frozen"
    """Whose text encoder reads the names: "frozen" (the backbone's own, the same table for SpLIP and frozen CLIP)
    or "model" (SpLIP's prompted text encoder, as the paper's L_class reads it)."""

    def validate(self) -> None:
        _one_of("ranking.method", self.method, RANKING_METHODS)
        _one_of("ranking.agreement", self.agreement, ("dot", "sqrt"))
        _one_of("ranking.text", self.text, ("frozen", "model"))
        if self.temperature <= 0:
            raise ConfigError(f"ranking.temperature must be > 0, got {self.temperature}")
        if self.weight < 0:
            raise ConfigError(f"ranking.weight must be >= 0, got {self.weight}")


SECTIONS: dict[str, type] = {"backbone": BackboneConfig, "prompts": PromptConfig, "loss": LossConfig,
                             "ranking": RankingConfig}
FLAT_SECTIONS = ("prompts", "loss")  # sections whose fields a flat (pre-section) checkpoint holds at the top level
# Flat (pre-section) checkpoint keys: each field of a section under its own name, the backbone's under these.
_FLAT_BACKBONE = {"backbone": "name", "pretrained": "pretrained", "backbone_config": "model_config",
                  "preprocess": "preprocess"}
# Knobs that had one allowed value and were dropped; a flat checkpoint may still carry them at that value.
_DROPPED = {"bt_pool": "mean", "bv_input": "embedding"}


@dataclass(frozen=True)
class SpLIPConfig:
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    prompts: PromptConfig = field(default_factory=PromptConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    ranking: RankingConfig = field(default_factory=RankingConfig)
    seen_classes: list[str] = field(default_factory=list)
    """The classes whose prompted text conditions the visual prompts (B_vt); the training classes."""
    templates: dict[str, str] = field(
        default_factory=lambda: {"sketch": "a sketch of a {}.", "photo": "a photo of a {}."}
    )
    sketch_pixels: int | None = None
    """A drawn sketch (a canvas) is redrawn as a bitmap this many pixels square the way the training doodles were
    made (`preprocess.doodle_bitmap`) before the transform; None: it is cropped to its ink and centred."""
    inference_mode: str = "faithful"
    """(section 10) "faithful": T from each image, one text pass over the seen classes per image (the paper's method).
    "fast" (an approximation): T from the running mean of training patch embeddings, so V^ms is computed once per
    modality and image encoding costs about plain CLIP."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "seen_classes", list(self.seen_classes))
        self.validate()

    def validate(self) -> None:
        """Raise ConfigError naming the field when a value cannot work."""
        _check_types(self, skip=tuple(SECTIONS))
        for name, cls in SECTIONS.items():
            section = getattr(self, name)
            if not isinstance(section, cls):
                raise ConfigError(f"{name} must be a {cls.__name__}, got {type(section).__name__}")
            _check_types(section, f"{name}.")
            section.validate()
        if set(self.templates) != set(MODALITIES):
            raise ConfigError(f"templates must have exactly the keys {MODALITIES}, got {sorted(self.templates)}")
        for modality, template in self.templates.items():
            if template.count("{}") != 1:
                raise ConfigError(f"templates[{modality!r}] needs exactly one '{{}}' for the class name: {template!r}")
        _one_of("inference_mode", self.inference_mode, INFERENCE_MODES)
        if self.sketch_pixels is not None and not 8 <= self.sketch_pixels <= 1024:
            raise ConfigError(f"sketch_pixels must be None or in 8..1024, got {self.sketch_pixels}")
        if len(set(self.seen_classes)) != len(self.seen_classes):
            raise ConfigError("seen_classes contains duplicates")
        if self.prompts.use_prompts and self.prompts.use_shared_prompts and not self.seen_classes:
            raise ConfigError("seen_classes is empty: B_vt builds the visual prompts from the seen-class prompts")

    # --- JSON --------------------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def non_defaults(self, without: tuple[str, ...] = ()) -> dict[str, Any]:
        """to_dict() without the fields at their defaults (nor the sections or fields named in `without`): what
        identifies this configuration, unchanged when a later version adds a field with a default (so embedding
        caches keyed on it stay valid)."""
        defaults, out = _field_defaults(SpLIPConfig), {}
        for name, value in self.to_dict().items():
            if name in without:
                continue
            if name in SECTIONS:
                default = dataclasses.asdict(defaults[name])
                changed = {k: v for k, v in value.items() if default[k] != v}
                if changed:
                    out[name] = changed
            elif value != defaults[name]:
                out[name] = value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SpLIPConfig:
        """The nested form, or a flat (pre-section) one. Strict: an unknown key is an error, so a typo never
        silently falls back to a default."""
        return _apply(_field_defaults(cls), data)

    def updated(self, changes: dict[str, Any]) -> SpLIPConfig:
        """This config with `changes` applied: nested ({"loss": {"alpha": 0.1}}) or flat ({"alpha": 0.1}) keys."""
        return _apply({f.name: getattr(self, f.name) for f in dataclasses.fields(self)}, changes)

    @classmethod
    def from_json(cls, path: str | Path) -> SpLIPConfig:
        return cls.from_dict(read_json_object(path))

    def to_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8")

    def replace(self, **changes: Any) -> SpLIPConfig:
        """Top-level fields or whole sections; for one field inside a section use `updated`."""
        return dataclasses.replace(self, **changes)


def _field_defaults(cls: type) -> dict[str, Any]:
    """Each field's default value (a fresh one where the field has a default factory)."""
    return {f.name: f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            for f in dataclasses.fields(cls)}


def _apply(current: dict[str, Any], changes: dict[str, Any]) -> SpLIPConfig:
    nested = _nest(changes)
    for name, cls in SECTIONS.items():
        if name in nested:
            current[name] = _section(cls, name, {**dataclasses.asdict(current[name]), **nested.pop(name)})
    current.update(nested)
    try:
        return SpLIPConfig(**current)
    except TypeError as err:
        raise ConfigError(f"bad SpLIP config: {err}") from err


def _section(cls: type, name: str, values: dict[str, Any]):
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown {name} config keys: {unknown}")
    try:
        return cls(**values)
    except TypeError as err:
        raise ConfigError(f"{name}: {err}") from err


def _nest(data: dict[str, Any]) -> dict[str, Any]:
    """Sort keys into sections: section objects stay, flat keys move to the section that owns the field."""
    if not isinstance(data, dict):
        raise ConfigError(f"a SpLIP config is a JSON object, got {type(data).__name__}")
    owner = {f.name: name for name in FLAT_SECTIONS for f in dataclasses.fields(SECTIONS[name])}
    top_level = {f.name for f in dataclasses.fields(SpLIPConfig)} - set(SECTIONS)
    nested: dict[str, Any] = {}
    unknown = []
    for key, value in data.items():
        if key in SECTIONS and isinstance(value, dict):
            nested.setdefault(key, {}).update(value)
        elif key in _FLAT_BACKBONE:
            nested.setdefault("backbone", {})[_FLAT_BACKBONE[key]] = value
        elif key in owner:
            nested.setdefault(owner[key], {})[key] = value
        elif key in top_level:
            nested[key] = value
        elif key in _DROPPED:
            if value != _DROPPED[key]:
                raise ConfigError(f"{key} supports {_DROPPED[key]!r} only, got {value!r}")
        else:
            unknown.append(key)
    if unknown:
        raise ConfigError(f"unknown SpLIP config keys: {sorted(unknown)}")
    return nested


def read_json_object(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """A JSON object from a file; ConfigError naming the file when it is missing, not JSON or not an object."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: {what} not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a {what} is a JSON object")
    return data


@dataclass
class TrainOptions:
    """How prompts are trained (`splip_core.train`): optimiser, schedule, budget, sampling. Not saved with a
    checkpoint; a preset's "train" object holds these fields."""

    epochs: int = 60  # [S2]
    batch_size: int = 192  # [S2]
    lr: float = 1e-3  # [S2]
    optimizer: str = "adam"  # [S2] Adam; "adamw" for decoupled weight decay
    weight_decay: float = 0.0
    schedule: str = "constant"  # "constant" or "cosine" (decays to 0 at the end of the step budget)
    warmup_steps: int = 0  # linear warm-up of the learning rate over the first steps
    grad_clip: float | None = None  # max global gradient norm; None = no clipping
    max_steps: int | None = None  # total optimiser steps across epochs; training stops there
    eval_every: int | None = None  # with val_data: steps between validations; None = after every epoch
    patience: int | None = None  # with val_data: validations without improvement before stopping; None = never
    seed: int = 0
    level: str = "class"  # "class" (ZS/GZS) or "instance" (FG)
    instance_positive: float = 0.0  # class level: probability of taking a sketch's paired photo as its positive
    hflip: bool = True
    workers: int = 0
    amp: bool = True  # bfloat16 autocast on CUDA only
    max_steps_per_epoch: int | None = None
    datasets: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.optimizer not in ("adam", "adamw"):
            raise ConfigError(f"optimizer must be 'adam' or 'adamw', got {self.optimizer!r}")
        if self.schedule not in ("constant", "cosine"):
            raise ConfigError(f"schedule must be 'constant' or 'cosine', got {self.schedule!r}")
        if self.level not in ("class", "instance"):
            raise ConfigError(f"level must be 'class' or 'instance', got {self.level!r}")
        if not 0.0 <= self.instance_positive <= 1.0:
            raise ConfigError(f"instance_positive is a probability in [0, 1], got {self.instance_positive}")
        for name in ("epochs", "warmup_steps"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("batch_size", "max_steps", "eval_every", "patience", "max_steps_per_epoch"):
            value = getattr(self, name)
            if value is not None and value < (0 if name == "max_steps" else 1):
                raise ConfigError(f"{name} must be >= {0 if name == 'max_steps' else 1}, got {value}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ConfigError(f"grad_clip must be > 0, got {self.grad_clip}")
