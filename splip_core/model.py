"""SpLIP: a frozen open_clip CLIP whose two encoders prompt each other (B_t, B_v, B_vt); saving and loading in hub.py.

How one image of modality `mod` is encoded (docs/METHOD.md section 9):
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
import os
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from .backbone import BackboneError, build_backbone, make_transform, preprocess_settings
from .backbone import tokenizer as clip_tokenizer
from .config import MODALITIES, SpLIPConfig
from .hub import CheckpointError, HubMixin
from .names import display_name
from .preprocess import load_image
from .prompts import TemplateToVision, TextLayersToVision, VisionToText
from .towers import run_text, run_vision, vision_embeddings


def _check_modality(modality: str) -> str:
    if modality not in MODALITIES:
        raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")
    return modality


class _OneModality(nn.Module):
    """A model's encoder of one modality as a module of pixels alone, the shape `torch.jit.trace` takes."""

    def __init__(self, model: SpLIP, modality: str):
        super().__init__()
        self.model, self.modality = model, modality

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model(pixels, self.modality)


class SpLIP(nn.Module, HubMixin):
    """Sketch and photo encoders sharing one frozen CLIP; only the prompt mappers (and LayerNorms) train.

    Saving and loading (`save_pretrained`, `from_pretrained`, `push_to_hub`) and `fingerprint` come from
    `splip_core.hub.HubMixin`.
    """

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
        self._traced: dict[str, torch.jit.ScriptModule] = {}  # trace_for_serving's one-image encoders
        self._fingerprint: str | None = None
        self.card_info: dict[str, Any] = {}
        self._snapshot_layernorms()

        p = config.prompts
        self.text_prompts_on = p.use_prompts and p.use_text_prompts
        self.template_prompts_on = p.use_prompts and p.use_template_prompts
        self.shared_prompts_on = p.use_prompts and p.use_shared_prompts
        self.b_t = self.b_v = self.b_vt = None
        if self.text_prompts_on:
            self.b_t = VisionToText(self.d_vision, self.d_text, p.n_text_prompts, p.bt_hidden or self.d_text,
                                    p.bt_layers, p.prompt_init_std)
        if self.template_prompts_on:
            self.b_v = TemplateToVision(self.d_text, self.d_vision, p.prompt_init_std)
        if self.shared_prompts_on:
            self.b_vt = TextLayersToVision(self.d_text, self.d_vision, p.n_shared_prompts, p.bvt_hidden or self.d_text,
                                           self.n_text_layers, p.bvt_per_layer, p.prompt_init_std)
        if p.use_prompts and p.tune_layernorm:
            for module in self.clip.modules():
                if isinstance(module, nn.LayerNorm):
                    module.requires_grad_(True)
        for modality in MODALITIES:
            self.register_buffer(f"mean_patch_{modality}", torch.zeros(self.d_vision))
            self.register_buffer(f"mean_patch_count_{modality}", torch.zeros((), dtype=torch.float64))
            if p.use_prompts and config.seen_classes:  # tokenised once: every prompted forward's text pass reads them
                ids, eot = self._prompt_ids(config.seen_classes, modality, self.text_prompts_on)
                self.register_buffer(f"_seen_ids_{modality}", ids, persistent=False)
                self.register_buffer(f"_seen_eot_{modality}", eot, persistent=False)
            words = clip_tokenizer().encode(config.templates[modality].split("{}")[0])
            self.register_buffer(f"_template_ids_{modality}", torch.tensor(words, dtype=torch.long), persistent=False)

    # ----------------------------------------------------------------------------------------------------------
    # depth and layer maps
    @property
    def visual_depth(self) -> int:
        d = self.config.prompts.visual_prompt_depth
        return self.n_vision_layers if d is None else min(d, self.n_vision_layers)

    @property
    def text_depth(self) -> int:
        d = self.config.prompts.text_prompt_depth
        return self.n_text_layers if d is None else min(d, self.n_text_layers)

    def _text_layer_for(self, visual_layer: int) -> int:
        """The text block whose input state prompts visual block `visual_layer` (towers of unequal depth)."""
        return visual_layer * self.n_text_layers // self.n_vision_layers

    @property
    def device(self) -> torch.device:
        return self.clip.visual.conv1.weight.device

    @property
    def embed_dim(self) -> int:
        """Width of the joint image/text feature space."""
        projection = self.clip.text_projection
        return projection.shape[1] if isinstance(projection, torch.Tensor) else projection.out_features

    @property
    def conditions_per_image(self) -> bool:
        """Whether each image gets its own text pass now (training with "instance" conditioning, or faithful
        inference): only then may a training pass run over a per-image subset of the seen classes."""
        return self._conditioning() == "instance"

    def set_inference_mode(self, mode: str) -> SpLIP:
        """Switch between "faithful" and "fast" encoding (ConfigError for anything else). The prompts cached for
        fast mode, the traced encoders and the fingerprint (the key of embedding caches) are cleared: all depend on
        the mode."""
        if mode != self.config.inference_mode:
            self.config = self.config.replace(inference_mode=mode)
            self._forget_derived()
        return self

    # ----------------------------------------------------------------------------------------------------------
    # tokens
    def _prompt_ids(self, names: Sequence[str], modality: str, with_slots: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids (C, L) padded to the longest prompt, and each prompt's EOT index (after the prompt slots)."""
        tok = clip_tokenizer()
        template = self.config.templates[modality]
        m = self.config.prompts.n_text_prompts if with_slots else 0
        prefix = template.split("{}")[0]
        seqs = []
        for name in names:
            text = template.format(display_name(name))
            if with_slots and self.config.prompts.text_prompt_position == "replace":
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
            return self.config.prompts.train_text_conditioning
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
        classes class_subset[b] (config.prompts.text_class_sample), and the class text is (B, k, D) in that order.
        """
        modality = _check_modality(modality)
        if class_subset is not None and not (self.training and self.conditions_per_image):
            raise ValueError("class subsets are for training with train_text_conditioning='instance' only")
        tokens = vision_embeddings(self.clip, pixels)
        if not self.config.prompts.use_prompts:
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

    def _forget_derived(self) -> None:
        """Drop what was derived from the weights and the inference mode: the prompts cached for fast mode, the
        traced encoders and the fingerprint (the key of embedding caches)."""
        self._fast_cache.clear()
        self._traced.clear()
        self._fingerprint = None

    def train(self, mode: bool = True) -> SpLIP:
        """Training mode for the prompt modules; the frozen CLIP always stays in eval mode."""
        super().train(mode)
        self.clip.eval()
        if mode:  # weights may change from here on: cached prompts, traces and the fingerprint go stale
            self._forget_derived()
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
        traced = self._traced.get(modality) if len(pixels) == 1 and not was_training else None
        encode = traced if traced is not None else (lambda batch: self(batch, modality))
        out = [encode(pixels[i:i + batch_size].to(self.device, dtype)).float().cpu()
               for i in range(0, len(pixels), batch_size)]
        if was_training:
            self.train()
        return torch.cat(out)

    def trace_for_serving(self) -> SpLIP:
        """Encode one image at a time through TorchScript from now on (both modalities, in the current inference
        mode; `train`, `set_inference_mode` and loading weights drop the traces). Why: eager torch takes the GIL
        back after every op, and beside a busy event loop each take can wait a whole switch interval; a traced
        forward is one call that holds no GIL. Measured beside a busy Python thread, 2 encoding threads: 4-6
        eager encodes/s vs 116-123 traced. Outputs equal eager ones; tracing takes a fraction of a second.
        TorchScript is deprecated (torch 2.14 warns, and still runs it): where tracing fails the model stays
        eager and a RuntimeWarning says why."""
        self.eval()
        size = self._preprocess["size"]
        example = torch.zeros(1, 3, size, size, device=self.device, dtype=self.clip.visual.conv1.weight.dtype)
        traced = {}
        try:
            for modality in MODALITIES:
                with torch.inference_mode():
                    self(example, modality)  # fills fast mode's prompt cache first: the trace then holds the prompts
                with torch.no_grad(), warnings.catch_warnings():
                    warnings.simplefilter("ignore", torch.jit.TracerWarning)  # the prompt count is fixed per model
                    warnings.simplefilter("ignore", FutureWarning)  # TorchScript's deprecation: see the docstring
                    one = _OneModality(self, modality).eval()
                    traced[modality] = torch.jit.freeze(torch.jit.trace(one, example, check_trace=False))
        except (AttributeError, RuntimeError) as err:  # a torch without TorchScript, or a model it cannot trace
            warnings.warn(f"encoding eagerly: tracing the encoders failed ({err})", RuntimeWarning, stacklevel=2)
            return self
        self._traced = traced
        return self

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
        self._forget_derived()

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
        self._forget_derived()

    def frozen_baseline(self) -> SpLIP:
        """The same backbone with prompts off and the backbone's own LayerNorms: plain frozen CLIP for comparison.

        Shares every large tensor with this model (only LayerNorms are copied), so it costs almost no memory.
        """
        shared = {id(p): p for n, p in self.clip.named_parameters() if n not in self._frozen_ln}
        clip = copy.deepcopy(self.clip, shared)
        with torch.no_grad():
            for name, value in self._frozen_ln.items():
                clip.get_parameter(name).copy_(value)
        return SpLIP(self.config.updated({"prompts": {"use_prompts": False}}), _clip=clip)


@torch.no_grad()
def prompt_norms(model: SpLIP, sample_pixels: torch.Tensor, modality: str) -> dict[str, float]:
    """Mean L2 norms of what is learnt for these images, beside the scale of the backbone tokens they sit among.

    "T" (B_t output tokens), "V_tg" (B_v output), "V_ms" (B_vt output, mean over the prompted visual layers) against
    "word_embedding" (the backbone's token-embedding table) and "patch_token" (E0 of the sample); "layernorm_delta"
    is the largest |LayerNorm weight or bias - its initial value|. Prompts far above the token scale are how a loss
    satisfied by scale shows (docs/METHOD.md section 11). Uses the model's current conditioning; absent generators
    are left out.
    """
    modality = _check_modality(modality)
    tokens = vision_embeddings(model.clip, sample_pixels.to(model.device, model.clip.visual.conv1.weight.dtype))
    patches = tokens[:, 1:]
    norms = {"word_embedding": float(model.clip.token_embedding.weight.norm(dim=-1).mean()),
             "patch_token": float(patches.norm(dim=-1).mean())}
    if model.config.prompts.use_prompts:
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


__all__ = ["BackboneError", "CheckpointError", "SpLIP", "prompt_norms"]
