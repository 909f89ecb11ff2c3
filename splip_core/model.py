"""SpLIP: a frozen open_clip CLIP whose two encoders prompt each other (B_t, B_v, B_vt), with Hub I/O.

How one image of modality `mod` is encoded (spec section 9):
  E0  = patch tokens of the image                          (vision_embeddings)
  T   = B_t(mean(E0))                                      m text prompts
  text pass over "<template of mod> <c>" for every seen class c with T in the slots after SOT, keeping the EOT state
  entering each text block, averaged over classes -> W_l
  Vtg = B_v(embedded template words), V^ms_l = B_vt(W_l)
  visual block l sees [CLS ; Vtg ; V^ms_l ; patches];  feature = proj(ln_post(CLS)), L2-normalised.
"faithful" mode does that per image (a text pass over all seen classes per image); "fast" mode takes T from the
running mean of training patch embeddings, so the text pass and V^ms are computed once per modality and cached.
In training, `text_class_sample` = k lets each image's text pass run over k sampled seen classes instead of all.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from huggingface_hub import ModelCard, ModelCardData, ModelHubMixin, hf_hub_download
from huggingface_hub.errors import HfHubHTTPError, HFValidationError, LocalEntryNotFoundError
from PIL import Image
from safetensors.torch import load_file, save_file
from torch import nn

from .backbone import BackboneError, backbone_base_model, build_backbone, make_transform, preprocess_settings
from .backbone import tokenizer as clip_tokenizer
from .config import MODALITIES, ConfigError, SpLIPConfig
from .preprocess import load_image
from .prompts import TemplateToVision, TextLayersToVision, VisionToText
from .towers import run_text, run_vision, vision_embeddings

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
BACKBONE_FILE = "backbone.safetensors"
PAPER_URL = "https://arxiv.org/abs/2407.04207"


class CheckpointError(ValueError):
    """A SpLIP checkpoint that cannot be found, read or matched to its config."""


def prompt_name(class_name: str) -> str:
    """The words a class name becomes in a prompt: dataset folder names use '_' for spaces ("hot-air_balloon")."""
    return " ".join(class_name.replace("_", " ").split())


def _check_modality(modality: str) -> str:
    if modality not in MODALITIES:
        raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")
    return modality


class SpLIP(
    nn.Module,
    ModelHubMixin,
    library_name="splip",
    tags=["sketch-based-image-retrieval", "zero-shot", "clip", "prompt-learning"],
    paper_url=PAPER_URL,
    pipeline_tag="image-feature-extraction",
):
    """Sketch and photo encoders sharing one frozen CLIP; only the prompt mappers (and LayerNorms) train."""

    def __init__(self, config: SpLIPConfig | dict, _clip: nn.Module | None = None):
        super().__init__()
        if isinstance(config, dict):
            config = SpLIPConfig.from_dict(config)
        self.config = config
        self.clip = _clip if _clip is not None else build_backbone(config)
        self.clip.eval()
        self.clip.requires_grad_(False)
        self._preprocess = preprocess_settings(self.clip, config)
        self.transform = make_transform(self._preprocess)
        self.d_vision = self.clip.visual.transformer.width
        self.d_text = self.clip.transformer.width
        self.n_vision_layers = len(self.clip.visual.transformer.resblocks)
        self.n_text_layers = len(self.clip.transformer.resblocks)
        self._fast_cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._fingerprint: str | None = None
        self.card_info: dict[str, Any] = {}
        self._snapshot_layernorms()

        c = config
        self.text_prompts_on = c.use_prompts and c.use_text_prompts
        self.template_prompts_on = c.use_prompts and c.use_template_prompts
        self.shared_prompts_on = c.use_prompts and c.use_shared_prompts
        self.b_t = self.b_v = self.b_vt = None
        if self.text_prompts_on:
            self.b_t = VisionToText(self.d_vision, self.d_text, c.n_text_prompts, c.bt_hidden or self.d_text,
                                    c.bt_layers, c.prompt_init_std)
        if self.template_prompts_on:
            self.b_v = TemplateToVision(self.d_text, self.d_vision, c.prompt_init_std)
        if self.shared_prompts_on:
            self.b_vt = TextLayersToVision(self.d_text, self.d_vision, c.n_shared_prompts, c.bvt_hidden or self.d_text,
                                           self.n_text_layers, c.bvt_per_layer, c.prompt_init_std)
        if c.use_prompts and c.tune_layernorm:
            for module in self.clip.modules():
                if isinstance(module, nn.LayerNorm):
                    module.requires_grad_(True)
        for modality in MODALITIES:
            self.register_buffer(f"mean_patch_{modality}", torch.zeros(self.d_vision))
            self.register_buffer(f"mean_patch_count_{modality}", torch.zeros((), dtype=torch.float64))
            if c.use_prompts and c.seen_classes:  # tokenised once: every prompted forward's class text pass reads them
                ids, eot = self._prompt_ids(c.seen_classes, modality, self.text_prompts_on)
                self.register_buffer(f"_seen_ids_{modality}", ids, persistent=False)
                self.register_buffer(f"_seen_eot_{modality}", eot, persistent=False)
            words = clip_tokenizer().encode(c.templates[modality].split("{}")[0])
            self.register_buffer(f"_template_ids_{modality}", torch.tensor(words, dtype=torch.long), persistent=False)

    # ----------------------------------------------------------------------------------------------------------
    # depth and layer maps
    @property
    def visual_depth(self) -> int:
        d = self.config.visual_prompt_depth
        return self.n_vision_layers if d is None else min(d, self.n_vision_layers)

    @property
    def text_depth(self) -> int:
        d = self.config.text_prompt_depth
        return self.n_text_layers if d is None else min(d, self.n_text_layers)

    def _text_layer_for(self, visual_layer: int) -> int:
        """The text block whose input state prompts visual block `visual_layer` (towers of unequal depth)."""
        return visual_layer * self.n_text_layers // self.n_vision_layers

    @property
    def device(self) -> torch.device:
        return self.clip.visual.conv1.weight.device

    # ----------------------------------------------------------------------------------------------------------
    # tokens
    def _prompt_ids(self, names: Sequence[str], modality: str, with_slots: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids (C, L) padded to the longest prompt, and each prompt's EOT index (after the prompt slots)."""
        tok = clip_tokenizer()
        template = self.config.templates[modality]
        m = self.config.n_text_prompts if with_slots else 0
        prefix = template.split("{}")[0]
        seqs = []
        for name in names:
            text = template.format(prompt_name(name))
            if with_slots and self.config.text_prompt_position == "replace":
                text = text[len(prefix):]
            seqs.append([tok.sot_token_id] + [0] * m + tok.encode(text) + [tok.eot_token_id])
        if not seqs:
            raise ValueError("no class names given")
        length = max(len(s) for s in seqs)
        if length > self.clip.context_length:
            worst = names[int(np.argmax([len(s) for s in seqs]))]
            raise ValueError(
                f"prompt for class {worst!r} is {length} tokens, over the text encoder's context of "
                f"{self.clip.context_length}"
            )
        ids = torch.zeros(len(seqs), length, dtype=torch.long)
        for row, seq in enumerate(seqs):
            ids[row, : len(seq)] = torch.tensor(seq)
        eot = torch.tensor([len(s) - 1 for s in seqs], dtype=torch.long)
        return ids, eot

    # ----------------------------------------------------------------------------------------------------------
    # the prompted forward pass
    def _text_pass(self, ids: torch.Tensor, eot: torch.Tensor, prompts: torch.Tensor | None, keep_states: bool,
                   class_subset: torch.Tensor | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Class text features (Bt, C, D) and class-averaged EOT states [(Bt, Dt)] for prompts T (Bt, m, Dt).

        With `class_subset` (B, k) of class indices, row b runs only over its k classes (C = k, Bt = B): one pass over
        B*k prompts, cut to the longest of them.
        """
        ids, eot = ids.to(self.device), eot.to(self.device)
        if class_subset is None:
            n_classes, length = ids.shape
            bt = 1 if prompts is None else prompts.shape[0]
            embeds = self.clip.token_embedding(ids).unsqueeze(0).expand(bt, -1, -1, -1)
            eot = eot.repeat(bt)
        else:
            class_subset = class_subset.to(self.device)
            bt, n_classes = class_subset.shape
            eot = eot[class_subset].flatten()
            length = int(eot.max()) + 1
            embeds = self.clip.token_embedding(ids[class_subset, :length])
        embeds = embeds.reshape(bt * n_classes, length, -1)
        slots = None
        if prompts is not None:
            prompts = prompts.expand(bt, -1, -1)
            slots = prompts.unsqueeze(1).expand(-1, n_classes, -1, -1).reshape(bt * n_classes, *prompts.shape[1:])
        feats, states = run_text(self.clip, embeds, eot, slots, self.text_depth, keep_states)
        return feats.view(bt, n_classes, -1), [s.view(bt, n_classes, -1).mean(1) for s in states]

    def _text_prompts(self, modality: str, patches: torch.Tensor | None, conditioning: str) -> torch.Tensor | None:
        """T: per image ("instance"), from the batch mean ("batch"), or from the training running mean ("mean")."""
        if self.b_t is None:
            return None
        if conditioning == "instance":
            return self.b_t(patches.mean(1))
        if conditioning == "batch":
            return self.b_t(patches.mean((0, 1)).unsqueeze(0))
        return self.b_t(getattr(self, f"mean_patch_{modality}").to(self.clip.visual.conv1.weight.dtype).unsqueeze(0))

    def _visual_prompt_stack(self, modality: str, states: list[torch.Tensor], bt: int) -> torch.Tensor | None:
        """(depth, Bt, K, Dv): [Vtg ; V^ms_l] for every prompted visual block."""
        parts_per_layer = []
        v_tg = None
        if self.b_v is not None:
            ids = getattr(self, f"_template_ids_{modality}")
            v_tg = self.b_v(self.clip.token_embedding(ids)).unsqueeze(0).expand(bt, -1, -1)
        for layer in range(self.visual_depth):
            parts = [] if v_tg is None else [v_tg]
            if self.b_vt is not None:
                text_layer = self._text_layer_for(layer)
                parts.append(self.b_vt(states[text_layer], text_layer))
            if parts:
                parts_per_layer.append(torch.cat(parts, dim=1))
        return torch.stack(parts_per_layer) if parts_per_layer else None

    def _conditioning(self) -> str:
        if self.training:
            return self.config.train_text_conditioning
        return "instance" if self.config.inference_mode == "faithful" else "mean"

    def _update_mean_patch(self, modality: str, patches: torch.Tensor) -> None:
        with torch.no_grad():
            mean = getattr(self, f"mean_patch_{modality}")
            count = getattr(self, f"mean_patch_count_{modality}")
            batch = patches.detach().mean(1).to(mean.dtype)
            total = count + batch.shape[0]
            mean.mul_((count / total).to(mean.dtype)).add_(batch.sum(0) / total.to(mean.dtype))
            count.fill_(total)

    def forward(self, pixels: torch.Tensor, modality: str, with_class_text: bool = False,
                class_subset: torch.Tensor | None = None) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor | None]:
        """L2-normalised image features (B, D); with `with_class_text`, also the seen-class text features
        (Bt, C, D) produced by the same text pass (Bt = B with per-image conditioning, else 1), for L_class.

        `class_subset` (B, k), training with "instance" conditioning only: image b's text pass runs over the seen
        classes class_subset[b] (config.text_class_sample), and the class text is (B, k, D) in that order.
        """
        modality = _check_modality(modality)
        if class_subset is not None and not (self.training and self._conditioning() == "instance"):
            raise ValueError("class subsets are for training with train_text_conditioning='instance' only")
        tokens = vision_embeddings(self.clip, pixels)
        if not self.config.use_prompts:
            feats = run_vision(self.clip, tokens)
            return (F.normalize(feats, dim=-1), None) if with_class_text else F.normalize(feats, dim=-1)
        patches = tokens[:, 1:]
        if self.training and self.b_t is not None:
            self._update_mean_patch(modality, patches)
        conditioning = self._conditioning()
        stack, class_text = self._prompts_for(modality, patches, conditioning, with_class_text, class_subset)
        feats = run_vision(self.clip, tokens, None if stack is None else (lambda i: stack[i]),
                           0 if stack is None else self.visual_depth)
        feats = F.normalize(feats, dim=-1)
        return (feats, class_text) if with_class_text else feats

    def _prompts_for(self, modality: str, patches: torch.Tensor, conditioning: str, with_class_text: bool,
                     class_subset: torch.Tensor | None = None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        cacheable = conditioning == "mean" or (conditioning != "batch" and self.b_t is None)
        cacheable = cacheable and not self.training and not torch.is_grad_enabled()
        if cacheable and modality in self._fast_cache:
            return self._fast_cache[modality]
        prompts = self._text_prompts(modality, patches, conditioning)
        class_text, states = None, []
        if self.b_vt is not None or with_class_text:
            ids, eot = self._seen_ids_eot(modality)
            class_text, states = self._text_pass(ids, eot, prompts, self.b_vt is not None, class_subset)
            class_text = F.normalize(class_text, dim=-1)
        bt = class_text.shape[0] if class_text is not None else 1 if prompts is None else prompts.shape[0]
        result = (self._visual_prompt_stack(modality, states, bt), class_text)
        if cacheable:
            self._fast_cache[modality] = result
        return result

    def _seen_ids_eot(self, modality: str) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.config.seen_classes:
            raise ValueError("no seen classes in the config: the class text pass needs them")
        return getattr(self, f"_seen_ids_{modality}"), getattr(self, f"_seen_eot_{modality}")

    def train(self, mode: bool = True) -> SpLIP:
        """Training mode for the prompt modules; the frozen CLIP always stays in eval mode."""
        super().train(mode)
        self.clip.eval()
        if mode:  # weights may change from here on: cached prompts and the fingerprint go stale
            self._fast_cache.clear()
            self._fingerprint = None
        return self

    # ----------------------------------------------------------------------------------------------------------
    # public encoders
    def preprocess(self, image) -> torch.Tensor:
        """(3, S, S) normalised tensor from a PIL image, path, bytes or array (InvalidImageError if unusable)."""
        return self.transform(load_image(image))

    def _pixels(self, images) -> torch.Tensor:
        if isinstance(images, torch.Tensor):
            size = self._preprocess["size"]
            if images.ndim == 3:
                images = images.unsqueeze(0)
            if images.ndim != 4 or images.shape[1] != 3 or tuple(images.shape[2:]) != (size, size):
                raise ValueError(f"expected a preprocessed batch (N, 3, {size}, {size}), got {tuple(images.shape)}")
            return images
        if isinstance(images, (Image.Image, str, os.PathLike, bytes, np.ndarray)):
            images = [images]
        images = list(images)
        if not images:
            raise ValueError("no images to encode")
        return torch.stack([self.preprocess(im) for im in images])

    @torch.inference_mode()
    def encode_image(self, images, modality: str, batch_size: int = 32) -> torch.Tensor:
        """(N, D) L2-normalised float32 CPU features of sketches or photos (PIL images, paths or a tensor batch)."""
        _check_modality(modality)
        was_training = self.training
        if was_training:  # toggling walks every module: a per-query cost as large as a tiny model's forward
            self.eval()
        pixels = self._pixels(images)
        dtype = self.clip.visual.conv1.weight.dtype
        out = [self(pixels[i:i + batch_size].to(self.device, dtype), modality).float().cpu()
               for i in range(0, len(pixels), batch_size)]
        if was_training:
            self.train()
        return torch.cat(out)

    def encode_sketch(self, images, batch_size: int = 32) -> torch.Tensor:
        return self.encode_image(images, "sketch", batch_size)

    def encode_photo(self, images, batch_size: int = 32) -> torch.Tensor:
        return self.encode_image(images, "photo", batch_size)

    @torch.inference_mode()
    def encode_text(self, class_names: Sequence[str], modality: str = "photo") -> torch.Tensor:
        """(C, D) L2-normalised text features of "<template> <class>" for any class names.

        With text prompts on, T comes from the training running mean of `modality` (image-free, as in fast mode).
        """
        _check_modality(modality)
        if isinstance(class_names, str):
            class_names = [class_names]
        ids, eot = self._prompt_ids(list(class_names), modality, self.text_prompts_on)
        prompts = self._text_prompts(modality, None, "mean") if self.text_prompts_on else None
        feats, _ = self._text_pass(ids, eot, prompts, keep_states=False)
        return F.normalize(feats[0], dim=-1).float().cpu()

    # ----------------------------------------------------------------------------------------------------------
    # what trains, what is saved
    def _snapshot_layernorms(self) -> None:
        """Keep the backbone's own LayerNorm values: they are saved as the backbone and give the frozen baseline."""
        self._frozen_ln = {
            f"{module_name}.{name}": p.detach().clone()
            for module_name, module in self.clip.named_modules()
            if isinstance(module, nn.LayerNorm)
            for name, p in module.named_parameters(recurse=False)
        }

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """The tensors a prompt checkpoint holds: trainable parameters and the running patch means."""
        state = {n: p for n, p in self.named_parameters() if p.requires_grad}
        state.update({n: b for n, b in self.named_buffers() if n.startswith("mean_patch")})
        return {n: t.detach().contiguous().cpu().clone() for n, t in state.items()}

    def load_trainable_state_dict(self, state: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
        """Load prompt weights; a missing, extra or wrongly shaped tensor is a CheckpointError naming it."""
        expected = self.trainable_state_dict()
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(set(state) - set(expected))
        wrong = [f"{n}: expected {tuple(expected[n].shape)}, found {tuple(state[n].shape)}"
                 for n in expected if n in state and state[n].shape != expected[n].shape]
        if missing or unexpected or wrong:
            details = "; ".join(filter(None, [
                f"missing {missing[:5]}{' ...' if len(missing) > 5 else ''}" if missing else "",
                f"unexpected {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}" if unexpected else "",
                f"wrong shape {wrong[:5]}" if wrong else "",
            ]))
            raise CheckpointError(f"{source}: the weights do not match the config ({details})")
        named = dict(self.named_parameters()) | dict(self.named_buffers())
        with torch.no_grad():
            for name, tensor in state.items():
                named[name].copy_(tensor.to(named[name].dtype))
        self._fast_cache.clear()
        self._fingerprint = None

    def backbone_state_dict(self) -> dict[str, torch.Tensor]:
        """The frozen CLIP's own weights (LayerNorms as loaded, before any tuning)."""
        state = {n: t.detach().contiguous().cpu().clone() for n, t in self.clip.state_dict().items()}
        state.update({n: t.cpu().clone() for n, t in self._frozen_ln.items()})
        return state

    def load_backbone_state_dict(self, state: dict[str, torch.Tensor], source: str = "backbone") -> None:
        own = self.clip.state_dict()
        wrong = [f"{n}: expected {tuple(own[n].shape)}, found {tuple(state[n].shape)}"
                 for n in own if n in state and state[n].shape != own[n].shape]
        missing = sorted(set(own) - set(state))
        if wrong or missing:
            raise CheckpointError(f"{source}: backbone weights do not match backbone_config "
                                  f"(missing {missing[:5]}, wrong shape {wrong[:5]})")
        self.clip.load_state_dict(state, strict=False)
        self._snapshot_layernorms()
        self._fast_cache.clear()
        self._fingerprint = None

    def fingerprint(self) -> str:
        """A short hash of config + every weight that shapes the embeddings: the key of embedding caches."""
        if self._fingerprint is None:
            digest = hashlib.sha256(json.dumps(self.config.to_dict(), sort_keys=True).encode())
            digest.update(str(self._bundles_backbone()).encode())
            state = self.trainable_state_dict()
            if self._bundles_backbone():
                state |= {f"backbone.{k}": v for k, v in self.backbone_state_dict().items()}
            for name in sorted(state):
                digest.update(name.encode())
                digest.update(state[name].float().numpy().tobytes())
            self._fingerprint = digest.hexdigest()[:16]
        return self._fingerprint

    def frozen_baseline(self) -> SpLIP:
        """The same backbone with prompts off and the backbone's own LayerNorms: plain frozen CLIP for comparison.

        Shares every large tensor with this model (only LayerNorms are copied), so it costs almost no memory.
        """
        shared = {id(p): p for n, p in self.clip.named_parameters() if n not in self._frozen_ln}
        clip = copy.deepcopy(self.clip, shared)
        with torch.no_grad():
            for name, value in self._frozen_ln.items():
                clip.get_parameter(name).copy_(value)
        return SpLIP(self.config.replace(use_prompts=False), _clip=clip)

    # ----------------------------------------------------------------------------------------------------------
    # Hub I/O
    def _bundles_backbone(self) -> bool:
        schema, _ = open_clip.factory.parse_model_name(self.config.backbone)
        return self.config.backbone_config is not None or schema == "local-dir" or (
            schema is None and self.config.pretrained is None)

    def _saved_config(self) -> SpLIPConfig:
        schema, ident = open_clip.factory.parse_model_name(self.config.backbone)
        if schema != "local-dir":
            return self.config
        model_cfg = open_clip.factory.get_model_config(self.config.backbone)
        return self.config.replace(backbone=Path(ident).name, pretrained=None, backbone_config=model_cfg,
                                   preprocess=dict(self._preprocess))

    def _save_pretrained(self, save_directory: Path) -> None:
        save_directory = Path(save_directory)
        self._saved_config().to_json(save_directory / CONFIG_FILE)
        save_file(self.trainable_state_dict(), str(save_directory / WEIGHTS_FILE), metadata={"format": "pt"})
        if self._bundles_backbone():
            save_file(self.backbone_state_dict(), str(save_directory / BACKBONE_FILE), metadata={"format": "pt"})
        else:
            (save_directory / BACKBONE_FILE).unlink(missing_ok=True)
        self.generate_model_card().save(save_directory / "README.md")

    def generate_model_card(self, *args, **kwargs) -> ModelCard:
        """README.md with YAML metadata (library, tags, base model, datasets, metrics) and what the weights are."""
        info = {**self.card_info, **kwargs}
        c = self._saved_config()
        data = ModelCardData(
            library_name="splip",
            license=info.get("license", "mit"),
            tags=["sketch-based-image-retrieval", "zero-shot", "clip", "prompt-learning", "splip"],
            base_model=backbone_base_model(self.config),
            datasets=info.get("datasets"),
            metrics=sorted(info.get("metrics", {})) or None,
            pipeline_tag="image-feature-extraction",
        )
        results = info.get("metrics", {})
        table = "\n".join(f"| {k} | {v} |" for k, v in sorted(results.items())) or "| (not evaluated) | |"
        n_params = sum(t.numel() for n, t in self.trainable_state_dict().items() if not n.startswith("mean_patch"))
        body = f"""
# SpLIP prompts for {c.backbone}

Prompt generators (B_t, B_v, B_vt{", LayerNorms" if c.tune_layernorm and c.use_prompts else ""}) learnt on a frozen
CLIP, following SpLIP ([Singha et al., ECCV 2024]({PAPER_URL})) for zero-shot sketch-based image retrieval.
{info.get("description", "")}

- Backbone: `{c.backbone}` ({"weights bundled as backbone.safetensors" if self._bundles_backbone() else
  f"open_clip pretrained tag `{c.pretrained}`"})
- Trainable tensors in `model.safetensors`: {n_params:,} parameters
- Seen classes (condition the visual prompts): {len(c.seen_classes)}
- Inference mode: `{c.inference_mode}`

```python
from splip_core import SpLIP
model = SpLIP.from_pretrained("REPO_OR_DIR")
sketch = model.encode_sketch(["sketch.png"]); photos = model.encode_photo(["a.jpg", "b.jpg"])
scores = sketch @ photos.T
```

## Results

| metric | value |
|---|---|
{table}
"""
        return ModelCard(f"---\n{data.to_yaml()}\n---\n{body}")

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, *, revision: str | None = None,
                        local_files_only: bool = False, cache_dir: str | Path | None = None,
                        token: str | bool | None = None, force_download: bool = False, **kwargs) -> SpLIP:
        """Load a prompt checkpoint from a directory or a Hub repo id (honours the HF cache and HF_HUB_OFFLINE)."""
        source = str(pretrained_model_name_or_path)
        if not Path(source).is_dir() and (source.startswith((".", "/", "~")) or source.count("/") > 1):
            raise CheckpointError(f"{source}: no such checkpoint directory")
        try:
            return super().from_pretrained(source, revision=revision, local_files_only=local_files_only,
                                           cache_dir=cache_dir, token=token, force_download=force_download,
                                           **kwargs)
        except LocalEntryNotFoundError as err:
            raise CheckpointError(
                f"{source}: not found in the local Hugging Face cache, and the Hub could not be reached "
                f"(offline mode or no network): {err.__class__.__name__}"
            ) from err
        except HFValidationError as err:
            raise CheckpointError(f"{source}: neither a checkpoint directory nor a valid Hub repo id ({err})") from err
        except HfHubHTTPError as err:
            raise CheckpointError(f"{source}: could not be fetched from the Hub ({err})") from err

    @classmethod
    def _from_pretrained(cls, *, model_id: str, revision: str | None, cache_dir, force_download: bool,
                         local_files_only: bool, token, config: dict | None = None, **kwargs) -> SpLIP:
        if config is None:
            raise CheckpointError(f"{model_id}: no {CONFIG_FILE}; a SpLIP checkpoint holds {CONFIG_FILE} and "
                                  f"{WEIGHTS_FILE}")
        config = {k: v for k, v in config.items() if k != "_clip"}

        def fetch(filename: str, required: bool = True) -> str | None:
            if Path(model_id).is_dir():
                path = Path(model_id) / filename
                if path.is_file():
                    return str(path)
                if required:
                    raise CheckpointError(f"{model_id}: missing {filename}")
                return None
            try:
                return hf_hub_download(model_id, filename, revision=revision, cache_dir=cache_dir, token=token,
                                       force_download=force_download, local_files_only=local_files_only)
            except LocalEntryNotFoundError:
                raise
            except HfHubHTTPError as err:
                if required:
                    raise CheckpointError(f"{model_id}: missing {filename} ({err})") from err
                return None

        try:
            spec = SpLIPConfig.from_dict(config)
        except (ConfigError, TypeError) as err:
            raise CheckpointError(f"{model_id}/{CONFIG_FILE}: {err}") from err
        weights = fetch(WEIGHTS_FILE)
        model = cls(spec)
        bundled = fetch(BACKBONE_FILE, required=spec.backbone_config is not None)
        if bundled is not None:
            model.load_backbone_state_dict(_read_safetensors(bundled), f"{model_id}/{BACKBONE_FILE}")
        model.load_trainable_state_dict(_read_safetensors(weights), f"{model_id}/{WEIGHTS_FILE}")
        model.eval()
        return model


@torch.no_grad()
def prompt_norms(model: SpLIP, sample_pixels: torch.Tensor, modality: str) -> dict[str, float]:
    """Mean L2 norms of what is learnt for these images, beside the scale of the backbone tokens they sit among.

    "T" (B_t output tokens), "V_tg" (B_v output), "V_ms" (B_vt output, mean over the prompted visual layers) against
    "word_embedding" (the backbone's token-embedding table) and "patch_token" (E0 of the sample); "layernorm_delta"
    is the largest |LayerNorm weight or bias - its initial value|. Prompts far above the token scale are how a loss
    satisfied by scale shows (spec section 11). Uses the model's current conditioning; absent generators are left out.
    """
    modality = _check_modality(modality)
    tokens = vision_embeddings(model.clip, sample_pixels.to(model.device, model.clip.visual.conv1.weight.dtype))
    patches = tokens[:, 1:]
    norms = {"word_embedding": float(model.clip.token_embedding.weight.norm(dim=-1).mean()),
             "patch_token": float(patches.norm(dim=-1).mean())}
    if model.config.use_prompts:
        prompts = model._text_prompts(modality, patches, model._conditioning())
        if prompts is not None:
            norms["T"] = float(prompts.norm(dim=-1).mean())
        if model.b_v is not None:
            ids = getattr(model, f"_template_ids_{modality}")
            norms["V_tg"] = float(model.b_v(model.clip.token_embedding(ids)).norm(dim=-1).mean())
        if model.b_vt is not None:
            ids, eot = model._seen_ids_eot(modality)
            _, states = model._text_pass(ids, eot, prompts, keep_states=True)
            layers = [model._text_layer_for(i) for i in range(model.visual_depth)]
            norms["V_ms"] = float(np.mean([model.b_vt(states[t], t).norm(dim=-1).mean().item() for t in layers]))
    deltas = [float((model.clip.get_parameter(name) - initial.to(model.device)).abs().max())
              for name, initial in model._frozen_ln.items()]
    norms["layernorm_delta"] = max(deltas, default=0.0)
    return norms


def _read_safetensors(path: str) -> dict[str, torch.Tensor]:
    try:
        return load_file(path)
    except Exception as err:  # safetensors raises its own SafetensorError for corrupt headers
        raise CheckpointError(f"{path}: not a readable safetensors file ({err})") from err


__all__ = ["BackboneError", "CheckpointError", "SpLIP", "prompt_norms"]
