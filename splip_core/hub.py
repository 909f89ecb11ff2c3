"""Hub I/O for SpLIP: checkpoint files, save/load from a directory or the Hugging Face Hub, the model card, and
the fingerprint that keys embedding caches.

A checkpoint directory holds config.json (SpLIPConfig, nested or the older flat form), model.safetensors (the
trainable tensors), backbone.safetensors when the backbone is not an open_clip pretrained tag, and README.md.
`HubMixin` is huggingface_hub's `ModelHubMixin` filled in for SpLIP; it reads the model through `config`, `card_info`,
the preprocessing settings and the state-dict methods.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import open_clip
import torch
from huggingface_hub import ModelCard, ModelCardData, ModelHubMixin, hf_hub_download
from huggingface_hub.errors import HfHubHTTPError, HFValidationError, LocalEntryNotFoundError
from safetensors.torch import load_file, save_file

from .backbone import backbone_base_model
from .config import BackboneConfig, ConfigError, SpLIPConfig

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
BACKBONE_FILE = "backbone.safetensors"
PAPER_URL = "https://arxiv.org/abs/2407.04207"
LIBRARY = "splip"
TAGS = ["sketch-based-image-retrieval", "zero-shot", "clip", "prompt-learning"]
PIPELINE_TAG = "image-feature-extraction"


class CheckpointError(ValueError):
    """A SpLIP checkpoint that cannot be found, read or matched to its config."""


class HubMixin(ModelHubMixin, library_name=LIBRARY, tags=TAGS, paper_url=PAPER_URL, pipeline_tag=PIPELINE_TAG):
    """save_pretrained / from_pretrained / push_to_hub / fingerprint for a SpLIP model."""

    _fingerprint: str | None = None

    def fingerprint(self) -> str:
        """A short hash of config + every weight that shapes the embeddings (not the ranking, which only re-ranks
        them): the key of embedding caches. Anything that changes the config or the weights (loading, training,
        `set_inference_mode`) resets it."""
        if self._fingerprint is None:
            features = self.config.non_defaults(without=("ranking",))  # the ranking re-ranks; features stay
            digest = hashlib.sha256(json.dumps(features, sort_keys=True).encode())
            digest.update(str(self._bundles_backbone()).encode())
            state = self.trainable_state_dict()
            if self._bundles_backbone():
                state |= {f"backbone.{k}": v for k, v in self.backbone_state_dict().items()}
            for name in sorted(state):
                digest.update(name.encode())
                digest.update(state[name].float().numpy().tobytes())
            self._fingerprint = digest.hexdigest()[:16]
        return self._fingerprint

    def _bundles_backbone(self) -> bool:
        schema, _ = open_clip.factory.parse_model_name(self.config.backbone.name)
        return self.config.backbone.model_config is not None or schema == "local-dir" or (
            schema is None and self.config.backbone.pretrained is None)

    def _saved_config(self) -> SpLIPConfig:
        schema, ident = open_clip.factory.parse_model_name(self.config.backbone.name)
        if schema != "local-dir":
            return self.config
        model_cfg = open_clip.factory.get_model_config(self.config.backbone.name)
        return self.config.replace(backbone=BackboneConfig(Path(ident).name, None, model_cfg, dict(self._preprocess)))

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
            library_name=LIBRARY,
            license=info.get("license", "mit"),
            tags=[*TAGS, LIBRARY],
            base_model=backbone_base_model(self.config),
            datasets=info.get("datasets"),
            metrics=sorted(info.get("metrics", {})) or None,
            pipeline_tag=PIPELINE_TAG,
        )
        results = info.get("metrics", {})
        table = "\n".join(f"| {k} | {v} |" for k, v in sorted(results.items())) or "| (not evaluated) | |"
        n_params = sum(t.numel() for n, t in self.trainable_state_dict().items() if not n.startswith("mean_patch"))
        body = f"""
# SpLIP prompts for {c.backbone.name}

Prompt generators (B_t, B_v, B_vt{", LayerNorms" if c.prompts.tune_layernorm and c.prompts.use_prompts else ""})
learnt on a frozen CLIP, following SpLIP ([Singha et al., ECCV 2024]({PAPER_URL})) for zero-shot sketch-based
image retrieval.
{info.get("description", "")}

- Backbone: `{c.backbone.name}` ({"weights bundled as backbone.safetensors" if self._bundles_backbone() else
  f"open_clip pretrained tag `{c.backbone.pretrained}`"})
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
                        token: str | bool | None = None, force_download: bool = False, **kwargs):
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
                         local_files_only: bool, token, config: dict | None = None, **kwargs):
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
        except ConfigError as err:
            raise CheckpointError(f"{model_id}/{CONFIG_FILE}: {err}") from err
        weights = fetch(WEIGHTS_FILE)
        model = cls(spec)
        bundled = fetch(BACKBONE_FILE, required=spec.backbone.model_config is not None)
        if bundled is not None:
            model.load_backbone_state_dict(_read_safetensors(bundled), f"{model_id}/{BACKBONE_FILE}")
        model.load_trainable_state_dict(_read_safetensors(weights), f"{model_id}/{WEIGHTS_FILE}")
        model.eval()
        return model


def _read_safetensors(path: str) -> dict[str, torch.Tensor]:
    try:
        return load_file(path)
    except Exception as err:  # safetensors raises its own SafetensorError for corrupt headers
        raise CheckpointError(f"{path}: not a readable safetensors file ({err})") from err
