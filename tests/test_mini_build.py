"""The offline world's one command, end to end on a shrunken fixture, and the shipped weights."""

import json
from pathlib import Path

import pytest
from test_mini_world import CFG, make_fixture

from splip_core import SpLIP
from splip_core.data import load_dataset
from splip_core.evaluate import evaluate
from splip_core.mini.build import BuildConfig, build, results_markdown

SHIPPED = Path(__file__).resolve().parents[1] / "weights" / "mini"


def test_build_runs_end_to_end_on_a_fixture_and_its_numbers_reproduce(tmp_path):
    packages = make_fixture(tmp_path / "packages")
    cfg = BuildConfig(seed=3, world=CFG, pretrain_steps=2, pretrain_batch_size=16, epochs=1, batch_size=8,
                      max_steps_per_epoch=2, ablations=("w/o B_vt",))
    report = build(tmp_path / "out", tmp_path / "work", cfg, packages=packages)
    out = tmp_path / "out"
    assert {"config.json", "model.safetensors", "backbone.safetensors", "README.md", "evaluation.json",
            "RESULTS.md"} <= {p.name for p in out.iterdir()}
    split = json.loads((out / "gallery" / "split.json").read_text())
    assert len(split["unseen"]) == 5 and not set(split["seen"]) & set(split["unseen"])
    model = SpLIP.from_pretrained(out)
    assert sorted(model.config.seen_classes) == sorted(split["seen"])
    assert "CC BY-SA 4.0" in (out / "README.md").read_text()
    for setting in ("zs", "gzs", "fg"):
        r = report["settings"][setting]
        assert set(r) >= {"baseline", "splip", "chance"}
    assert set(report["ablations"]) == {"w/o B_vt"} and set(report["modes"]) == {"fast", "faithful"}
    assert "| ZS | mAP@all |" in results_markdown(report)
    again = evaluate(model, load_dataset("folder", out / "gallery"), "zs", baseline=False)
    assert again["splip"]["mAP@all"] == pytest.approx(report["settings"]["zs"]["splip"]["mAP@all"], abs=1e-6)


def test_shipped_weights_reproduce_their_recorded_zs_subset_map():
    report = json.loads((SHIPPED / "evaluation.json").read_text())
    check = report["subset_check"]
    model = SpLIP.from_pretrained(SHIPPED)
    data = load_dataset("folder", SHIPPED / "gallery")
    got = evaluate(model, data, check["setting"], baseline=False, max_queries=check["max_queries"],
                   seed=check["seed"])
    assert 100 * got["splip"]["mAP@all"] == pytest.approx(100 * check["mAP@all"], abs=0.5)
