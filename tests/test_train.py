"""The command lines: training lowers the loss and resumes exactly, evaluation and search report results."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import splip_core.train as train_module
from splip_core import SpLIP
from splip_core.data import TripletDataset, load_dataset
from splip_core.evaluate import evaluate
from splip_core.evaluate import main as evaluate_main
from splip_core.preprocess import load_image
from splip_core.runtime import run_cli
from splip_core.search import main as search_main
from splip_core.tiny import tiny_config
from splip_core.train import TrainOptions, build_parser, lr_at, train, validation_map
from splip_core.train import main as train_main

ROOT = Path(__file__).resolve().parents[1]
OPTS = {"batch_size": 4, "seed": 3}


def _train(data, out, epochs, resume=False):
    config = tiny_config(seen_classes=data.seen)
    return train(config, data, out, TrainOptions(epochs=epochs, **OPTS), device="cpu", resume=resume)


def test_training_writes_a_loadable_checkpoint_each_epoch(folder_dataset, tmp_path):
    data = load_dataset("folder", folder_dataset)
    history = _train(data, tmp_path / "run", epochs=2)
    assert [h["epoch"] for h in history] == [1, 2]
    assert all(h["steps"] == 4 for h in history)  # 16 seen-class sketches / batch 4
    model = SpLIP.from_pretrained(tmp_path / "run")
    assert model.config.seen_classes == data.seen
    assert model.mean_patch_count_sketch.item() > 0
    assert json.loads((tmp_path / "run" / "training_state.json").read_text())["epoch"] == 2


def test_resumed_run_ends_with_the_same_weights_as_an_uninterrupted_one(folder_dataset, tmp_path):
    data = load_dataset("folder", folder_dataset)
    _train(data, tmp_path / "straight", epochs=2)
    _train(data, tmp_path / "interrupted", epochs=1)
    history = _train(data, tmp_path / "interrupted", epochs=2, resume=True)
    assert [h["epoch"] for h in history] == [1, 2]
    a = load_file(tmp_path / "straight" / "model.safetensors")
    b = load_file(tmp_path / "interrupted" / "model.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        assert torch.allclose(a[name], b[name], atol=1e-6), name
    initial = tiny_config(seen_classes=data.seen)
    assert not torch.equal(a["b_v.proj.weight"], SpLIP(initial).trainable_state_dict()["b_v.proj.weight"])


def test_resume_refuses_a_run_with_another_config(folder_dataset, tmp_path):
    data = load_dataset("folder", folder_dataset)
    _train(data, tmp_path / "run", epochs=1)
    other = tiny_config(seen_classes=data.seen, alpha=5.0)
    with pytest.raises(ValueError, match="another config"):
        train(other, data, tmp_path / "run", TrainOptions(epochs=2, **OPTS), device="cpu", resume=True)


def test_corrupt_image_is_skipped_and_counted_not_fatal(folder_dataset, tmp_path):
    (folder_dataset / "sketch" / "cat" / "cat0-1.png").write_bytes(b"not a png")
    data = load_dataset("folder", folder_dataset)
    history = _train(data, tmp_path / "run", epochs=1)
    assert history[0]["skipped_images"] == 1


def test_evaluation_reports_every_setting_with_baseline_and_chance(folder_dataset):
    data = load_dataset("folder", folder_dataset)
    model = SpLIP(tiny_config(seen_classes=data.seen))
    zs = evaluate(model, data, "zs")
    assert zs["num_queries"] == 8 and zs["num_gallery"] == 8
    assert set(zs["splip"]) == {"mAP@all", "mAP@200", "P@100", "P@200", "C@1", "C@5"}
    assert zs["chance"]["C@1"] == pytest.approx(1 / 2) and zs["chance"]["C@5"] == 1.0  # two unseen concepts
    assert zs["chance"]["mAP@all"] == pytest.approx(0.5)
    assert set(zs["per_class_ap"]["splip"]) == {"car", "tree"}
    gzs = evaluate(model, data, "gzs")
    assert gzs["num_gallery"] == 24 and gzs["chance"]["P@100"] == pytest.approx(4 / 24)
    fg = evaluate(model, data, "fg")
    assert set(fg["splip"]) == {"Acc@1", "Acc@5"} and fg["chance"]["Acc@1"] == pytest.approx(0.25)
    assert fg["splip"]["Acc@5"] == 1.0  # only 4 photos per category


def test_cli_train_evaluate_search_end_to_end(folder_dataset, tmp_path, capsys):
    config = tmp_path / "config.json"
    overrides = tiny_config().to_dict()
    overrides.pop("seen_classes")
    config.write_text(json.dumps(overrides))
    out = tmp_path / "run"
    args = ["--config", str(config), "--data", str(folder_dataset), "--dataset", "folder", "--out", str(out),
            "--epochs", "1", "--batch-size", "8", "--device", "cpu"]
    assert run_cli(train_main, args) == 0
    report_path, plot_path = tmp_path / "zs.json", tmp_path / "zs.png"
    assert run_cli(evaluate_main, ["--model", str(out), "--data", str(folder_dataset), "--dataset", "folder",
                                   "--setting", "zs", "--json", str(report_path), "--plot", str(plot_path)]) == 0
    table = capsys.readouterr().out
    assert "ZS  (8 queries x 8 photos" in table and "mAP@all" in table
    report = json.loads(report_path.read_text())
    assert 0 <= report["splip"]["mAP@all"] <= 1 and "baseline" in report
    assert Image.open(plot_path).size[0] > 100
    sketch = folder_dataset / "sketch" / "car" / "car0-1.png"
    assert run_cli(search_main, ["--model", str(out), "--gallery", str(folder_dataset / "photo"),
                                 "--sketch", str(sketch), "--top-k", "3", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert [h["rank"] for h in hits] == [1, 2, 3]
    assert hits[0]["score"] >= hits[1]["score"] >= hits[2]["score"]
    assert all(h["label"] in {"apple", "car", "cat", "dog", "guitar", "tree"} for h in hits)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--data", "/nonexistent/root", "--dataset", "folder", "--out", "x"], "/nonexistent/root"),
        (["--data", ".", "--dataset", "sketchy", "--out", "x"], "sketch"),
    ],
)
def test_cli_errors_are_one_readable_line(argv, message, capsys):
    assert run_cli(train_main, argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err


def test_every_cli_has_help():
    for module in ("splip_core.train", "splip_core.evaluate", "splip_core.search"):
        result = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True,
                                cwd=ROOT, timeout=120)
        assert result.returncode == 0 and "usage: python -m " + module in result.stdout


def test_learning_rate_schedules_warm_up_then_stay_or_decay():
    cosine = TrainOptions(lr=1.0, schedule="cosine", warmup_steps=4)
    assert [lr_at(s, cosine, 104) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_at(4, cosine, 104) == pytest.approx(1.0)
    assert lr_at(54, cosine, 104) == pytest.approx(0.5)  # half way through the decay
    assert lr_at(104, cosine, 104) == pytest.approx(0.0, abs=1e-12)
    assert lr_at(103, cosine, 104) < 1e-3
    constant = TrainOptions(lr=0.1, warmup_steps=2)
    assert [lr_at(s, constant, 10) for s in (0, 1, 2, 9)] == [0.05, 0.1, 0.1, 0.1]
    with pytest.raises(ValueError, match="schedule"):
        TrainOptions(schedule="step")


def test_max_steps_is_a_budget_across_epochs(folder_dataset, tmp_path):
    data = load_dataset("folder", folder_dataset)
    config = tiny_config(seen_classes=data.seen)
    history = train(config, data, tmp_path / "run", TrainOptions(epochs=5, max_steps=6, **OPTS), device="cpu")
    assert [h["steps"] for h in history] == [4, 2] and history[-1]["global_step"] == 6
    record = history[-1]
    for key in ("total", "triplet", "contrastive", "class", "jigsaw", "pos_cos", "active_triplets", "grad_norm",
                "lr", "norm_T", "norm_V_tg", "norm_V_ms", "norm_word_embedding", "norm_patch_token",
                "norm_layernorm_delta"):
        assert isinstance(record[key], float), key
    assert record["norm_layernorm_delta"] > 0
    resumed = train(config, data, tmp_path / "run", TrainOptions(epochs=5, max_steps=6, **OPTS), device="cpu",
                    resume=True)
    assert len(resumed) == 2  # the budget is spent: nothing more to do


def test_early_stopping_keeps_the_best_validated_checkpoint(folder_dataset, tmp_path):
    data = load_dataset("folder", folder_dataset)
    val = load_dataset("folder", folder_dataset, split=[])
    opts = TrainOptions(epochs=20, lr=3e-2, eval_every=2, patience=2, **OPTS)
    history = train(tiny_config(seen_classes=data.seen), data, tmp_path / "run", opts, device="cpu", val_data=val)
    scores = [h["val_mAP"] for h in history]
    best = max(scores)
    assert len(history) < 40  # 20 epochs x 4 steps / eval_every 2: it stopped early
    assert scores.index(best) == len(scores) - 3  # best, then `patience` validations without improvement
    assert all(h["best_val_mAP"] == max(scores[: i + 1]) for i, h in enumerate(history))
    assert validation_map(SpLIP.from_pretrained(tmp_path / "run"), val) == pytest.approx(best, abs=1e-6)


def test_resume_is_exact_with_schedule_validation_and_clipping(folder_dataset, tmp_path, monkeypatch):
    data = load_dataset("folder", folder_dataset)
    val = load_dataset("folder", folder_dataset, split=[])
    opts = TrainOptions(epochs=2, lr=1e-2, schedule="cosine", warmup_steps=2, grad_clip=0.5, eval_every=3, **OPTS)
    config = tiny_config(seen_classes=data.seen, margin_min=0.1, use_contrastive=True, text_class_sample=2)
    straight = train(config, data, tmp_path / "straight", opts, device="cpu", val_data=val)

    real_save = train_module._save_state

    def save_then_stop(*args):
        real_save(*args)
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "_save_state", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        train(config, data, tmp_path / "cut", opts, device="cpu", val_data=val)
    monkeypatch.setattr(train_module, "_save_state", real_save)
    resumed = train(config, data, tmp_path / "cut", opts, device="cpu", val_data=val, resume=True)
    assert [h["global_step"] for h in resumed] == [h["global_step"] for h in straight] == [3, 6, 8]
    for a, b in zip(straight, resumed, strict=True):
        assert a["val_mAP"] == pytest.approx(b["val_mAP"], abs=1e-6)
        assert a["total"] == pytest.approx(b["total"], rel=1e-5)
    for name in ("model.safetensors", "training_state.safetensors"):
        x, y = load_file(tmp_path / "straight" / name), load_file(tmp_path / "cut" / name)
        assert all(torch.allclose(x[k], y[k], atol=1e-6) for k in x), name


def test_instance_positive_takes_the_paired_photo(folder_dataset):
    data = load_dataset("folder", folder_dataset)
    colour_of = {load_image(p.path).getpixel((0, 0)): p.path for p in data.photos}

    def positives(probability, seed=0):
        triplets = TripletDataset(data, data.seen, lambda im: im.getpixel((0, 0)), seed=seed,
                                  instance_positive=probability)
        return [(triplets.anchors[i].path, colour_of[triplets[i]["positive"]]) for i in range(len(triplets))]

    def paired(sketch, photo):
        return photo.stem == sketch.stem.rpartition("-")[0]

    assert all(paired(s, p) for s, p in positives(1.0))
    assert not all(paired(s, p) for s, p in positives(0.0))
    half = positives(0.5, seed=1)
    assert half == positives(0.5, seed=1) and 0 < sum(paired(s, p) for s, p in half) < len(half)
    with pytest.raises(ValueError, match="instance_positive"):
        TrainOptions(instance_positive=1.5)


def test_help_documents_the_preset_precedence():
    help_text = build_parser().format_help()
    assert "--preset" in help_text and "precedence" in help_text
