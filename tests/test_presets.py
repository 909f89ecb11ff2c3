"""Named presets: the shipped ones load and are valid, the paper preset is the defaults, typos are errors, and the
training command line applies a preset under --config and explicit flags."""

import dataclasses
import json

import pytest

import splip_core.configs as configs
from splip_core.config import ConfigError, SpLIPConfig
from splip_core.configs import list_presets, load_preset
from splip_core.runtime import run_cli
from splip_core.tiny import tiny_backbone_config
from splip_core.train import TrainOptions
from splip_core.train import main as train_main


def test_shipped_presets_are_listed_and_valid():
    assert {"paper", "mini"} <= set(list_presets())
    for name in list_presets():
        preset = load_preset(name)
        SpLIPConfig.from_dict({**preset["model"], "seen_classes": ["cat", "dog"]})
        TrainOptions(**preset["train"])


def test_paper_preset_is_the_method_as_specified_and_matches_the_defaults():
    preset = load_preset("paper")
    model, train = preset["model"], preset["train"]
    loss, prompts = model["loss"], model["prompts"]
    assert (loss["alpha"], loss["beta"], loss["margin_min"], prompts["train_text_conditioning"]) == (
        1.0, 0.5, None, "instance")
    assert all(prompts[k] for k in ("use_text_prompts", "use_template_prompts", "use_shared_prompts", "tune_layernorm"))
    assert all(loss[k] for k in ("use_triplet", "adaptive_margin", "use_class_loss", "use_jigsaw"))
    assert (train["optimizer"], train["lr"], train["epochs"], train["batch_size"]) == ("adam", 1e-3, 60, 192)
    defaults = SpLIPConfig.from_dict({"seen_classes": ["cat"]}).to_dict()
    for section in ("backbone", "prompts", "loss"):  # the defaults are the paper's method
        assert {k: defaults[section][k] for k in model[section]} == model[section]
    assert defaults["inference_mode"] == model["inference_mode"]
    assert {k: getattr(TrainOptions(), k) for k in train} == train


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"model": {"alpah": 1.0}}, r"unknown SpLIP config keys: \['alpah'\]"),
        ({"train": {"epoch": 3}}, r"unknown train keys \['epoch'\]"),
        ({"modle": {}}, r"unknown keys \['modle'\]"),
        ([1, 2], "a JSON object"),
    ],
)
def test_unknown_keys_and_bad_presets_are_clear_errors(tmp_path, monkeypatch, content, message):
    (tmp_path / "broken.json").write_text(json.dumps(content))
    monkeypatch.setattr(configs, "_files", lambda: tmp_path)
    assert list_presets() == ["broken"]
    with pytest.raises(ConfigError, match=message):
        load_preset("broken")
    with pytest.raises(ConfigError, match=r"unknown preset 'nope'; choose one of \['broken'\]"):
        load_preset("nope")


def test_cli_applies_the_preset_under_config_and_explicit_flags(folder_dataset, tmp_path, monkeypatch):
    presets = tmp_path / "presets"
    presets.mkdir()
    (presets / "trial.json").write_text(json.dumps({
        "model": {"loss": {"alpha": 0.1, "beta": 0.3}, "prompts": {"train_text_conditioning": "batch"}},
        "train": {"lr": 0.02, "epochs": 7, "batch_size": 32, "weight_decay": 0.01}}))
    monkeypatch.setattr(configs, "_files", lambda: presets)
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"backbone": "tiny-test-clip", "pretrained": None,  # the flat (older) form
                                  "backbone_config": tiny_backbone_config(), "alpha": 0.2}))
    out = tmp_path / "run"
    args = ["--preset", "trial", "--config", str(config), "--data", str(folder_dataset), "--dataset", "folder",
            "--out", str(out), "--epochs", "1", "--batch-size", "8", "--device", "cpu"]
    assert run_cli(train_main, args) == 0
    state = json.loads((out / "training_state.json").read_text())
    loss, prompts = state["config"]["loss"], state["config"]["prompts"]
    assert loss["alpha"] == 0.2  # --config over the preset
    assert loss["beta"] == 0.3 and prompts["train_text_conditioning"] == "batch"  # the preset, merged per field
    options = state["options"]
    assert (options["epochs"], options["batch_size"]) == (1, 8)  # flags over the preset
    assert (options["lr"], options["weight_decay"]) == (0.02, 0.01)  # preset over the defaults
    assert options["optimizer"] == "adam" and options["hflip"] is True  # defaults where nobody says otherwise
    assert set(options) == {f.name for f in dataclasses.fields(TrainOptions)}
