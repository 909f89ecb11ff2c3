"""Prompt checkpoints: save/load round trips, the Hugging Face cache offline, push_to_hub at the HTTP boundary."""

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx2
import pytest
import torch
import yaml
from huggingface_hub.utils import _http
from safetensors.torch import load_file, save_file

from splip_core import BackboneError, CheckpointError, SpLIP, SpLIPConfig
from splip_core.tiny import tiny_backbone_config, tiny_model

ROOT = Path(__file__).resolve().parents[1]


def _pixels(seed=0):
    return torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def _trained_a_little(model):
    model.train()
    with torch.no_grad():
        model(_pixels(1), "sketch")  # moves the running patch means off zero
        model.clip.ln_final.weight.add_(0.5)  # a tuned LayerNorm must survive the round trip too
    return model.eval()


def test_save_then_load_gives_identical_embeddings(tmp_path):
    model = _trained_a_little(tiny_model())
    model.save_pretrained(tmp_path / "ckpt")
    files = sorted(p.name for p in (tmp_path / "ckpt").iterdir())
    assert files == ["README.md", "backbone.safetensors", "config.json", "model.safetensors"]
    loaded = SpLIP.from_pretrained(tmp_path / "ckpt")
    for mode in ("faithful", "fast"):
        model.set_inference_mode(mode)
        loaded.set_inference_mode(mode)
        assert torch.equal(model.encode_sketch(_pixels()), loaded.encode_sketch(_pixels()))
        assert torch.equal(model.encode_photo(_pixels()), loaded.encode_photo(_pixels()))
    assert torch.equal(model.encode_text(["cat"]), loaded.encode_text(["cat"]))
    assert loaded.fingerprint() == model.fingerprint()
    # the frozen baseline comes back too: the backbone file holds the untuned LayerNorms
    assert torch.equal(model.frozen_baseline().encode_photo(_pixels()),
                       loaded.frozen_baseline().encode_photo(_pixels()))


def test_checkpoint_holds_only_trainable_tensors_and_a_model_card(tmp_path):
    model = tiny_model()
    model.card_info = {"datasets": ["sketchy"], "metrics": {"map": 0.5}}
    model.save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert set(weights) == trainable | {"mean_patch_sketch", "mean_patch_photo", "mean_patch_count_sketch",
                                        "mean_patch_count_photo"}
    assert not any(n.startswith("clip.") and ".ln" not in n for n in weights)
    card = (tmp_path / "README.md").read_text()
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["library_name"] == "splip"
    assert "sketch-based-image-retrieval" in meta["tags"]
    assert meta["datasets"] == ["sketchy"] and meta["metrics"] == ["map"]
    assert "| map | 0.5 |" in card
    assert json.loads((tmp_path / "config.json").read_text())["backbone"]["model_config"] == tiny_backbone_config()


def test_named_backbone_records_its_pretrained_tag_and_base_model(tmp_path):
    model = SpLIP(SpLIPConfig.from_dict({"backbone": "ViT-B-32", "pretrained": "openai", "seen_classes": ["cat"]}),
                  _clip=tiny_model().clip)
    model.save_pretrained(tmp_path)
    assert not (tmp_path / "backbone.safetensors").exists()
    meta = yaml.safe_load((tmp_path / "README.md").read_text().split("---")[1])
    assert meta["base_model"] == "timm/vit_base_patch32_clip_224.openai"


def test_local_dir_backbone_in_open_clip_layout_is_bundled_on_save(tmp_path):
    source = tiny_model()
    backbone_dir = tmp_path / "mini-clip"
    backbone_dir.mkdir()
    (backbone_dir / "open_clip_config.json").write_text(json.dumps({"model_cfg": tiny_backbone_config()}))
    save_file(source.backbone_state_dict(), str(backbone_dir / "open_clip_model.safetensors"))
    model = SpLIP(SpLIPConfig.from_dict({"backbone": {"name": f"local-dir:{backbone_dir}", "pretrained": None},
                                                "seen_classes": ["cat", "dog"]}))
    baseline = model.frozen_baseline().encode_photo(_pixels())
    assert torch.equal(baseline, source.frozen_baseline().encode_photo(_pixels()))
    model.save_pretrained(tmp_path / "ckpt")
    saved = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert saved["backbone"]["name"] == "mini-clip" and saved["backbone"]["model_config"] == tiny_backbone_config()
    loaded = SpLIP.from_pretrained(tmp_path / "ckpt")
    assert torch.equal(loaded.encode_photo(_pixels()), model.encode_photo(_pixels()))


def _hub_cache(tmp_path: Path, repo_id: str, checkpoint: Path) -> Path:
    """A directory laid out exactly as huggingface_hub's cache: models--org--name/{refs,snapshots,blobs}."""
    cache = tmp_path / "hub"
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo / "blobs").mkdir()
    for i, f in enumerate(sorted(checkpoint.iterdir())):
        blob = repo / "blobs" / f"{i:040x}"
        blob.write_bytes(f.read_bytes())
        (snapshot / f.name).symlink_to(os.path.relpath(blob, snapshot))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return cache


def _run_offline(cache: Path, code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)


def test_loading_from_the_hf_cache_works_offline(tmp_path):
    model = _trained_a_little(tiny_model())
    model.save_pretrained(tmp_path / "ckpt")
    expected = model.encode_sketch(_pixels())
    save_file({"x": _pixels()}, str(tmp_path / "pixels.safetensors"))
    cache = _hub_cache(tmp_path, "someone/splip-tiny", tmp_path / "ckpt")
    code = f"""
from safetensors.torch import load_file, save_file
from splip_core import SpLIP, CheckpointError
m = SpLIP.from_pretrained("someone/splip-tiny")
pixels = load_file({str(tmp_path / 'pixels.safetensors')!r})["x"]
save_file({{"e": m.encode_sketch(pixels)}}, {str(tmp_path / 'out.safetensors')!r})
try:
    SpLIP.from_pretrained("someone/not-cached")
except CheckpointError as err:
    print("REFUSED:", err)
"""
    result = _run_offline(cache, code)
    assert result.returncode == 0, result.stderr
    assert torch.equal(load_file(tmp_path / "out.safetensors")["e"], expected)
    assert "REFUSED: someone/not-cached: not found in the local Hugging Face cache" in result.stdout


class _FakeHub:
    """Answers the few Hub endpoints push_to_hub uses, recording the files of the commit."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.paths: list[str] = []
        self.validated_card = ""

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        path = request.url.path
        self.paths.append(f"{request.method} {path}")
        if path == "/api/repos/create":
            name = json.loads(request.content)["name"]
            return httpx2.Response(200, json={"url": f"https://huggingface.co/me/{name}", "name": f"me/{name}"})
        if path == "/api/validate-yaml":  # the model card's metadata is checked before the commit
            self.validated_card = json.loads(request.content)["content"]
            return httpx2.Response(200, json={})
        if path.endswith("/preupload/main"):
            files = json.loads(request.content)["files"]
            return httpx2.Response(200, json={"files": [
                {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]})
        if path.endswith("/commit/main"):
            for line in request.content.decode().splitlines():
                item = json.loads(line)
                if item["key"] == "file":
                    self.files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
            return httpx2.Response(200, json={"commitUrl": "https://huggingface.co/me/x/commit/abc",
                                              "commitOid": "a" * 40, "pullRequestUrl": None})
        return httpx2.Response(404, json={"error": f"fake hub has no {path}"})


@pytest.fixture
def fake_hub():
    hub = _FakeHub()
    _http.set_client_factory(lambda: httpx2.Client(transport=httpx2.MockTransport(hub)))
    _http.close_session()
    yield hub
    _http.set_client_factory(_http.default_client_factory)
    _http.close_session()


def test_push_to_hub_uploads_the_checkpoint(tmp_path, fake_hub):
    model = tiny_model()
    model.push_to_hub("me/splip-tiny", token="hf_fake")
    assert sorted(fake_hub.files) == ["README.md", "backbone.safetensors", "config.json", "model.safetensors"]
    model.save_pretrained(tmp_path)
    assert fake_hub.files["model.safetensors"] == (tmp_path / "model.safetensors").read_bytes()
    assert "library_name: splip" in fake_hub.validated_card
    assert json.loads(fake_hub.files["config.json"]) == json.loads((tmp_path / "config.json").read_text())


def test_missing_config_is_named(tmp_path):
    tiny_model().save_pretrained(tmp_path)
    (tmp_path / "config.json").unlink()
    with pytest.raises(CheckpointError, match=r"no config\.json"):
        SpLIP.from_pretrained(tmp_path)


def test_missing_directory_is_named(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint directory"):
        SpLIP.from_pretrained(str(tmp_path / "nope" / "deeper"))


def test_wrongly_shaped_weights_are_named(tmp_path):
    tiny_model().save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    weights["b_v.proj.weight"] = torch.zeros(3, 3)
    save_file(weights, str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"wrong shape.*b_v\.proj\.weight: expected \(64, 32\), found \(3, 3\)"):
        SpLIP.from_pretrained(tmp_path)


def test_weights_from_another_config_are_refused(tmp_path):
    tiny_model().save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["use_template_prompts"] = False
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"unexpected \['b_v\."):
        SpLIP.from_pretrained(tmp_path)


def test_corrupt_weights_file_is_named(tmp_path):
    tiny_model().save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match=r"model\.safetensors: not a readable safetensors file"):
        SpLIP.from_pretrained(tmp_path)


def test_unknown_backbone_and_tag_are_named():
    with pytest.raises(BackboneError, match="unknown open_clip backbone 'ViT-Q-99'"):
        SpLIP(SpLIPConfig.from_dict({"backbone": {"name": "ViT-Q-99"}, "seen_classes": ["cat"]}))
    with pytest.raises(BackboneError, match="has no pretrained tag 'nonsense'"):
        SpLIP(SpLIPConfig.from_dict({"backbone": {"name": "ViT-B-32", "pretrained": "nonsense"},
                                           "seen_classes": ["cat"]}))
