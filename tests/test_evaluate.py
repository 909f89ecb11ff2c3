"""The evaluation report's SpLIP - frozen CLIP differences with concept-clustered bootstrap CIs, and the CLI."""

import json

import pytest

from splip_core.data import load_dataset
from splip_core.evaluate import evaluate, format_table, split_for
from splip_core.evaluate import main as evaluate_main
from splip_core.runtime import run_cli
from splip_core.tiny import tiny_model


@pytest.fixture
def data(folder_dataset):
    return load_dataset("folder", folder_dataset)


@pytest.mark.parametrize(("setting", "concepts"), [("zs", 2), ("fg", 2)])
def test_report_has_a_difference_with_ci_for_every_metric(data, setting, concepts):
    model = tiny_model(seen_classes=data.seen)
    report = evaluate(model, data, setting, bootstrap=300, seed=1)
    assert set(report) >= {"baseline", "splip", "chance", "num_queries", "num_gallery", "per_class_ap"}
    assert set(report["difference"]) == set(report["splip"])
    assert report["num_concepts"] == concepts
    for metric, diff in report["difference"].items():
        assert diff["mean_difference"] == pytest.approx(report["splip"][metric] - report["baseline"][metric],
                                                        abs=1e-9)
        assert diff["ci_low"] <= diff["mean_difference"] <= diff["ci_high"]
        assert (diff["n_queries"], diff["n_clusters"], diff["n_boot"]) == (report["num_queries"], concepts, 300)
    assert evaluate(model, data, setting, bootstrap=300, seed=1)["difference"] == report["difference"]
    json.dumps(report)  # the report stays JSON-serialisable

    table = format_table(report)
    first = next(iter(report["difference"]))
    d = {k: 100 * v for k, v in report["difference"][first].items() if k in ("mean_difference", "ci_low", "ci_high")}
    assert f"{d['mean_difference']:+.2f} [{d['ci_low']:+.2f}, {d['ci_high']:+.2f}]" in table
    assert "splip - baseline [95% CI]" in table and "300 bootstrap draws of the 2 concepts" in table


def test_no_difference_without_baseline_or_bootstrap(data):
    model = tiny_model(seen_classes=data.seen)
    for kwargs in ({"baseline": False}, {"bootstrap": 0}):
        report = evaluate(model, data, "zs", **kwargs)
        assert "difference" not in report and report["num_concepts"] == 2
        assert "95% CI" not in format_table(report)
    with pytest.raises(ValueError, match="bootstrap must be >= 0"):
        evaluate(model, data, "zs", bootstrap=-1)


def test_cli_bootstrap_and_seed_reach_the_json(data, folder_dataset, tmp_path, capsys):
    model_dir = tmp_path / "model"
    tiny_model(seen_classes=data.seen).save_pretrained(model_dir)
    args = ["--model", str(model_dir), "--data", str(folder_dataset), "--dataset", "folder", "--setting", "zs",
            "--device", "cpu", "--bootstrap", "200"]
    reports = []
    for seed in ("5", "5", "6"):
        out = tmp_path / f"report{len(reports)}.json"
        assert run_cli(evaluate_main, [*args, "--seed", seed, "--json", str(out)]) == 0
        reports.append(json.loads(out.read_text()))
    assert "splip - baseline [95% CI]" in capsys.readouterr().out
    assert reports[0]["difference"] == reports[1]["difference"]
    assert reports[0]["difference"]["mAP@all"]["n_boot"] == 200
    assert reports[0]["splip"] == reports[2]["splip"]
    assert run_cli(evaluate_main, [*args, "--bootstrap", "0", "--json", str(tmp_path / "off.json")]) == 0
    assert "difference" not in json.loads((tmp_path / "off.json").read_text())


def test_a_reference_model_replaces_the_frozen_baseline(data):
    model = tiny_model(seen_classes=data.seen)
    other = tiny_model(seen_classes=data.seen, seed=1)
    report = evaluate(model, data, "zs", baseline=False, reference=other, bootstrap=200)
    assert report["baseline"] == evaluate(other, data, "zs", baseline=False)["splip"]
    assert report["baseline"] != evaluate(model, data, "zs", bootstrap=0)["baseline"]
    same = evaluate(model, data, "zs", reference=model, bootstrap=200)["difference"]["mAP@all"]
    assert same["mean_difference"] == same["ci_low"] == same["ci_high"] == 0.0


def test_a_memo_encodes_each_file_once_per_model_and_keeps_the_numbers(data, folder_dataset, monkeypatch):
    model = tiny_model(seen_classes=data.seen)
    plain = {s: evaluate(model, data, s, bootstrap=0) for s in ("zs", "gzs")}
    encoded = []
    forward = type(model).forward

    def counting(self, pixels, modality, *args, **kwargs):
        encoded.append((self.fingerprint(), modality, pixels.shape[0]))
        return forward(self, pixels, modality, *args, **kwargs)

    monkeypatch.setattr(type(model), "forward", counting)
    memo: dict = {}
    for setting in ("zs", "gzs"):
        report = evaluate(model, data, setting, bootstrap=0, memo=memo)
        for name in ("splip", "baseline"):
            assert report[name] == pytest.approx(plain[setting][name], abs=1e-6)
        assert report["num_queries"] == plain[setting]["num_queries"]
    photos = {(f, m): n for f, m, n in encoded if m == "photo"}
    assert len(photos) == 2  # SpLIP and its frozen baseline: two models, told apart by their fingerprints
    # the gzs gallery holds every photo, the zs one only the unseen: gzs encodes just the photos zs did not
    assert sum(n for f, m, n in encoded if m == "photo") == 2 * len(data.photos)
    assert sum(n for f, m, n in encoded if m == "sketch") == 2 * len(split_for(data, "zs")[0])
    (folder_dataset / "sketch" / data.unseen[0] / "broken.png").write_bytes(b"not an image")
    encoded.clear()
    again = evaluate(model, load_dataset("folder", folder_dataset), "zs", bootstrap=0, memo=memo)
    assert encoded == []  # the one new file is tried, unreadable and dropped; nothing known is encoded again
    assert again["num_queries"] == plain["zs"]["num_queries"]
    assert again["splip"] == pytest.approx(plain["zs"]["splip"], abs=1e-6)
