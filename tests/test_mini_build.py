"""The offline world's one command, end to end on a shrunken fixture, and the shipped weights."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from _builders import CFG, DOODLE_CFG, make_doodle_package, make_mini_packages

from benchmarks.doodle import headline_rows
from splip_core import RankingConfig, SpLIP, SpLIPConfig
from splip_core.data import load_dataset
from splip_core.evaluate import evaluate
from splip_core.mini.build import HEADLINE, BuildConfig, ablations_for, build, results_markdown

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "weights" / "mini"
SHIPPED_DOODLES = "benchmarks/results/doodle-mini-v3.2.json"  # the doodle benchmark of the shipped model


@pytest.mark.slow
def test_build_runs_end_to_end_on_a_fixture_resumes_and_its_numbers_reproduce(tmp_path):
    packages, icon_map = make_mini_packages(tmp_path / "packages")
    cfg = BuildConfig(seed=3, world=CFG, pretrain_steps=2, continue_steps=1, pretrain_batch_size=16, extra_art=0.5,
                      train_overrides={"max_steps": 2, "batch_size": 8, "eval_every": 1, "epochs": 2},
                      ablations=("w/o B_vt", "paper preset"), ablation_steps=1)
    report = build(tmp_path / "out", tmp_path / "work", cfg, packages=packages, icon_map=icon_map)
    out = tmp_path / "out"
    assert {"config.json", "model.safetensors", "backbone.safetensors", "README.md", "evaluation.json",
            "RESULTS.md", "ATTRIBUTION.md"} <= {p.name for p in out.iterdir()}
    split = json.loads((out / "gallery" / "split.json").read_text())
    assert split["unseen"] and not set(split["seen"]) & set(split["unseen"])
    model = SpLIP.from_pretrained(out)
    assert sorted(model.config.seen_classes) == sorted(c.replace(" ", "_") for c in split["seen"])
    assert "CC BY-SA 4.0" in (out / "README.md").read_text()
    assert "| om-color | openmoji | 1.0.0 | CC-BY-SA-4.0 |" in (out / "ATTRIBUTION.md").read_text()
    assert "pretrain-extra/art" in (out / "ATTRIBUTION.md").read_text()  # the extra colour art is credited too
    for setting in ("zs", "seen", "gzs", "fg"):
        r = report["settings"][setting]
        assert set(r) >= {"baseline", "splip", "chance", "difference", "num_queries", "num_concepts"}
    assert set(report["ablations"]) == {"w/o B_vt", "paper preset"}
    assert "difference" in report["ablations"]["w/o B_vt"] and set(report["modes"]) == {"fast", "faithful"}
    reference, ablated = report["ablation_reference"], report["ablations"]["w/o B_vt"]
    assert reference["max_steps"] == 1 and "the ablations' reference" in results_markdown(report)
    assert ablated["difference"]["mAP@all"]["mean_difference"] == pytest.approx(  # taken against the reference
        ablated["mAP@all"] - reference["mAP@all"], abs=1e-6)
    assert report["training"] and "val_mAP" in json.dumps(report["training"])
    assert "| ZS | mAP@all |" in results_markdown(report)
    assert report["training_fit"]["num_queries"] > 0 and "| training fit | mAP@all |" in results_markdown(report)
    again = evaluate(model, load_dataset("folder", out / "gallery"), "zs", baseline=False)
    assert again["splip"]["mAP@all"] == pytest.approx(report["settings"]["zs"]["splip"]["mAP@all"], abs=1e-6)

    stamp = (tmp_path / "work" / "world" / "stamp").stat().st_mtime_ns
    build(tmp_path / "out2", tmp_path / "work", BuildConfig(**{**cfg.__dict__, "ablations": ()}),
          packages=packages, icon_map=icon_map)
    assert (tmp_path / "work" / "world" / "stamp").stat().st_mtime_ns == stamp  # the rendered world is reused


@pytest.mark.slow
def test_more_warm_restarts_continue_the_backbone_the_work_folder_holds(tmp_path, monkeypatch):
    """Asking a built --work folder for one more warm restart runs that restart only, from the backbone there, and
    ends with the weights a build with both restarts from scratch ends with."""
    from safetensors.torch import load_file

    from splip_core.mini import build as build_mod

    packages, icon_map = make_mini_packages(tmp_path / "packages")
    calls, pretrain = [], build_mod.pretrain_mod.pretrain
    monkeypatch.setattr(build_mod.pretrain_mod, "pretrain",
                        lambda *args, **kwargs: calls.append(args[1:3]) or pretrain(*args, **kwargs))
    cfg = BuildConfig(seed=3, world=CFG, pretrain_steps=2, continue_steps=1, restarts=1, pretrain_batch_size=16,
                      ablations=(), train_overrides={"max_steps": 1, "batch_size": 8, "eval_every": 1, "epochs": 1})
    more = BuildConfig(**{**cfg.__dict__, "restarts": 2})
    weights = Path(build_mod.BACKBONE_NAME) / "open_clip_model.safetensors"
    build(tmp_path / "out", tmp_path / "work", cfg, packages=packages, icon_map=icon_map)
    assert calls == [(2, 3), (1, 4)]  # (steps, seed): the first cycle, then restart 1
    build(tmp_path / "out", tmp_path / "work", more, packages=packages, icon_map=icon_map)
    assert calls[2:] == [(1, 5)]  # restart 2 only
    build(tmp_path / "out2", tmp_path / "fresh", more, packages=packages, icon_map=icon_map)
    assert calls[3:] == [(2, 3), (1, 4), (1, 5)]
    resumed, fresh = load_file(tmp_path / "work" / weights), load_file(tmp_path / "fresh" / weights)
    assert all(torch.equal(resumed[k], fresh[k]) for k in fresh)
    with pytest.raises(ValueError, match="restarts must be at least 1"):
        build(tmp_path / "out3", tmp_path / "work", BuildConfig(restarts=0))


@pytest.mark.slow
def test_the_doodle_world_builds_end_to_end_on_a_fixture(tmp_path, monkeypatch):
    """The doodle world v4 on generated packages: doodles are the measured sketches, the icon families a second
    domain, the canvas is redrawn like a doodle, the backbone's pool holds the seen concepts' training doodles and no
    other doodle of the world, the ranking through the names is chosen on validation and shipped, and ATTRIBUTION
    names Quick, Draw!. The fixture's reserved lines are not JSON: a build that read one would fail."""
    from splip_core.mini import pretrain

    packages, icon_map = make_mini_packages(tmp_path / "packages")
    make_doodle_package(packages)
    pools, pool_class = [], pretrain.Pool
    monkeypatch.setattr(pretrain, "Pool", lambda *a, **k: pools.append(pool_class(*a, **k)) or pools[-1])
    cfg = BuildConfig(seed=3, world=DOODLE_CFG, pretrain_steps=2, continue_steps=0, pretrain_batch_size=16,
                      train_overrides={"max_steps": 2, "batch_size": 8, "eval_every": 1, "epochs": 2},
                      ablations=("w/o LN tuning",), ablation_steps=1)
    report = build(tmp_path / "out", tmp_path / "work", cfg, packages=packages, icon_map=icon_map)
    out = tmp_path / "out"
    split = json.loads((tmp_path / "work" / "world" / "split.json").read_text())
    drawn = {c for c, _ in pools[0].doodle_sources}
    assert set(split["seen"]) <= drawn and not drawn & {*split["val"], *split["unseen"]}
    assert all(i < split["doodles"]["train"] for c, i in pools[0].doodle_sources if c in split["seen"])
    model = SpLIP.from_pretrained(out)
    assert model.config.ranking == RankingConfig(**report["ranking_choice"]["ranking"])
    assert report["ranking_frozen"]["candidates"] and report["ranking_choice"]["offsets"]
    # the paper's cosine rows stand beside a names ranking (a fixture this small may choose the cosine itself)
    assert set(report.get("settings_cosine", {})) == ({"zs", "gzs", "gzs_seen"} if model.config.ranking.method
                                                      == "names" else set())
    assert set(report["names_top1"]) == {"validation", "unseen", "seen"}
    assert model.config.sketch_pixels == 28
    assert {"zs", "seen", "gzs", "gzs_seen", "icons_zs", "icons_seen", "fg"} <= set(report["settings"])
    gallery = load_dataset("folder", out / "gallery")
    doodles, icons = gallery.sketch_domain("doodles"), gallery.sketch_domain("icons")
    unseen_doodles = doodles.sketches_of(doodles.unseen)
    assert report["settings"]["zs"]["num_queries"] == len(unseen_doodles)
    assert report["settings"]["icons_zs"]["num_queries"] == len(icons.sketches_of(icons.unseen))
    assert report["settings"]["gzs_seen"]["num_queries"] == len(doodles.sketches_of(doodles.seen))
    for name in ("zs", "gzs", "gzs_seen"):
        assert {"C@1", "C@5"} <= set(report["settings"][name]["splip"])
    assert report["training_fit"]["num_queries"] > 0 and report["gate_a"]["doodle_queries"] > 0
    attribution = (out / "ATTRIBUTION.md").read_text()
    assert "Quick, Draw! data by Google" in attribution and "CC BY 4.0" in attribution
    assert "3 other categories" in attribution and "80-99 of every category are reserved" in attribution
    assert "Quick, Draw!" in (out / "README.md").read_text()
    check = report["subset_check"]
    again = evaluate(model, gallery.sketch_domain(check["sketches"]), "zs", baseline=False,
                     max_queries=check["max_queries"], seed=check["seed"])
    assert again["splip"]["mAP@all"] == pytest.approx(check["mAP@all"], abs=1e-6)


def test_an_ablation_that_leaves_the_preset_unchanged_is_refused(tmp_path):
    """v3's and v4's presets tune LayerNorms, v2.2's does not; v4's has L_class, v3.2's not: each gets the ablation
    that changes it, and a no-op ablation (it would measure noise under its name) stops the build before any work."""
    assert "w/o LN tuning" in ablations_for("mini") and "+ LN tuning" not in ablations_for("mini")
    assert "+ LN tuning" in ablations_for("mini-v2.2") and "w/o LN tuning" not in ablations_for("mini-v2.2")
    assert "+ L_class (alpha 0.1)" in ablations_for("mini-v3.2") and "w/o L_class" not in ablations_for("mini-v3.2")
    parts = {"w/o B_vt", "w/o B_v", "w/o B_t", "fixed margin", "w/o LN tuning", "+ jigsaw (beta 0.1)", "w/o L_class"}
    assert set(ablations_for("mini", extras=False)) == parts  # the build's default: one part of the method each
    assert set(ablations_for("mini")) == parts | {"+ contrastive", "per-image class subsets", "paper preset"}
    with pytest.raises(ValueError, match="do not change the 'mini' preset"):
        build(tmp_path / "out", tmp_path / "work", BuildConfig(ablations=("+ LN tuning",)))
    assert not (tmp_path / "work").exists()


def test_shipped_weights_reproduce_their_recorded_zs_subset_map():
    report = json.loads((SHIPPED / "evaluation.json").read_text())
    check = report["subset_check"]
    model = SpLIP.from_pretrained(SHIPPED)
    data = load_dataset("folder", SHIPPED / "gallery").sketch_domain(check.get("sketches", "all"))
    got = evaluate(model, data, check["setting"], baseline=False, max_queries=check["max_queries"],
                   seed=check["seed"])
    assert 100 * got["splip"]["mAP@all"] == pytest.approx(100 * check["mAP@all"], abs=0.5)


def test_the_results_tables_are_the_shipped_evaluation():
    """Every line of the results (and any ablation) tables and the sentences under them in docs/RESULTS.md is what
    the shipped evaluation.json renders; the README's table is its headline rows and the early-retrieval rows of
    the shipped model's doodle benchmark, in that order."""
    report = json.loads((SHIPPED / "evaluation.json").read_text())
    lines = [r for r in results_markdown(report).splitlines() if r.strip()]
    results = (REPO / "docs" / "RESULTS.md").read_text().splitlines()
    assert sum(r.startswith("| ") for r in lines) > 15 and [r for r in lines if r not in results] == []
    doodles = json.loads((REPO / SHIPPED_DOODLES).read_text())
    assert doodles["model"] == "weights/mini"
    table = results_markdown(report, only=HEADLINE).splitlines() + headline_rows(doodles)
    readme = (REPO / "README.md").read_text()
    cosine_rows = sum("cosine" in setting for setting, _ in HEADLINE) if "settings_cosine" not in report else 0
    assert len(table) == 2 + len(HEADLINE) - cosine_rows + 2 and "\n".join(table) + "\n" in readme


def test_the_v4_table_in_the_results_is_its_timed_builds_evaluation():
    """docs/RESULTS.md's table of the world v4 (built and timed, not shipped) is what that build's evaluation.json,
    kept in benchmarks/results, renders for the README's rows."""
    report = json.loads((REPO / "benchmarks" / "results" / "mini-v4-3000-timed-build-evaluation.json").read_text())
    table = results_markdown(report, only=HEADLINE)
    assert len(table.splitlines()) == 2 + len(HEADLINE) and table in (REPO / "docs" / "RESULTS.md").read_text()


def test_the_shipped_embedding_seeds_match_the_shipped_model():
    """The seeds must be keyed by the fingerprints the app computes from the shipped model in each inference mode
    (else a cold start re-embeds the whole gallery)."""
    model = SpLIP.from_pretrained(SHIPPED)
    seeds = {"-".join(p.name.split("-")[:2]) for p in (SHIPPED / "embeddings").iterdir()}
    for mode in ("fast", "faithful"):
        model.set_inference_mode(mode)
        assert {f"{model.fingerprint()}-{mode}", f"{model.frozen_baseline().fingerprint()}-{mode}"} <= seeds, mode


def test_a_flat_checkpoint_from_before_the_config_sections_still_loads(tmp_path):
    """tests/data/flat-config-v0.1.json is the config.json the previous offline world shipped with (one flat
    object). It reads into the sections field by field, and the shipped weights under a flat config load to the
    very same model."""
    old = json.loads((Path(__file__).with_name("data") / "flat-config-v0.1.json").read_text())
    config = SpLIPConfig.from_dict(old)
    assert (config.backbone.name, config.backbone.model_config) == (old["backbone"], old["backbone_config"])
    assert (config.loss.alpha, config.loss.margin_min, config.prompts.text_class_sample) == (
        old["alpha"], old["margin_min"], old["text_class_sample"])

    shipped = SpLIP.from_pretrained(SHIPPED)
    nested = shipped.config.to_dict()
    flat = {**nested["prompts"], **nested["loss"], "backbone": nested["backbone"]["name"],
            "pretrained": nested["backbone"]["pretrained"], "backbone_config": nested["backbone"]["model_config"],
            "preprocess": nested["backbone"]["preprocess"], "seen_classes": nested["seen_classes"],
            "templates": nested["templates"], "inference_mode": nested["inference_mode"],
            "sketch_pixels": nested["sketch_pixels"],
            "bt_pool": "mean", "bv_input": "embedding"}
    for name in ("model.safetensors", "backbone.safetensors"):
        shutil.copy(SHIPPED / name, tmp_path / name)
    (tmp_path / "config.json").write_text(json.dumps(flat))
    loaded = SpLIP.from_pretrained(tmp_path)
    assert loaded.config == shipped.config and loaded.fingerprint() == shipped.fingerprint()


def test_shipped_world_is_small_and_its_files_are_safetensors_json_and_images():
    files = [p for p in SHIPPED.rglob("*") if p.is_file()]
    assert {p.suffix for p in files} <= {".safetensors", ".json", ".md", ".png", ".jpg", ".npy"}
    seeds = [p for p in files if p.suffix == ".npy"]
    assert {p.parent.parent.name for p in seeds} == {"embeddings"}  # only the gallery's embedding seeds
    assert all(np.load(p, allow_pickle=False).dtype == np.float16 for p in seeds)  # plain arrays, no pickles
    assert sum(p.stat().st_size for p in files if p.suffix == ".safetensors") <= 40e6
    assert sum(p.stat().st_size for p in (SHIPPED / "gallery").rglob("*") if p.is_file()) <= 15e6


def test_the_build_command_pretrains_each_world_for_its_own_steps_unless_told(monkeypatch, tmp_path):
    from splip_core.mini import build as build_mod

    seen = []
    monkeypatch.setattr(build_mod, "build", lambda out, work, cfg, *args, **kwargs: seen.append(cfg) or {
        "settings": {}, "timings_s": {}, "sizes_bytes": {}, "gate_a": {}})
    for argv in ([], ["--world", "v2.2"], ["--world", "v2.2", "--continue-steps", "0"], ["--pretrain-steps", "5"],
                 ["--world", "v3.2"], ["--world", "v3.2", "--restarts", "3"]):
        build_mod.main(["--out", str(tmp_path), *argv])
    assert all(c.ablations is None and c.ablation_steps is None for c in seen)  # the method's parts, shipped budget
    assert [(c.pretrain_steps, c.continue_steps, c.restarts) for c in seen] == [
        (BuildConfig.pretrain_steps, 0, 1), (2000, 1000, 1), (2000, 0, 1), (5, 0, 1), (4000, 2000, 2), (4000, 2000, 3)]
    assert seen[1].preset == "mini-v2.2" and seen[0].world.sketches == "doodles"
    assert (seen[0].seen_doodles, seen[0].names_ranking, seen[0].preset) == (True, True, "mini")
    assert (seen[4].seen_doodles, seen[4].names_ranking, seen[4].preset) == (False, False, "mini-v3.2")
