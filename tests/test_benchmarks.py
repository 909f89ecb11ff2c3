"""`python -m benchmarks.run --quick` runs end to end and writes a well-formed report (timings are not asserted)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quick_benchmark_writes_report(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.run", "--quick", "--json", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Targets" in proc.stdout
    report = json.loads(out.read_text())
    assert {"machine", "settings", "query_latency", "indexing", "topk", "mode_eval", "targets", "notes",
            "elapsed_s"} <= set(report)
    assert {"cpu", "cores_available", "torch_threads", "torch"} <= set(report["machine"])

    measured = [e for e in report["query_latency"] if "variants" in e]
    assert measured and measured[0]["model"] == "tiny"
    for entry in measured + report["indexing"]:
        assert set(entry["variants"]) == {"plain", "fast", "faithful"}
        assert set(entry["ratio_vs_plain"]) == {"fast", "faithful"}
        assert all(r > 0 for r in entry["ratio_vs_plain"].values())
    for v in measured[0]["variants"].values():
        assert 0 < v["p50_ms"] <= v["p95_ms"]
    assert all(v["images_per_s"] > 0 for v in report["indexing"][0]["variants"].values())

    rows = [r for r in report["topk"] if "skipped" not in r]
    assert {"exact", "faiss-flat", "faiss-hnsw", "faiss-ivf", "milvus-lite"} <= {r["backend"] for r in rows}
    for r in rows:
        assert r["build_s"] >= 0 and r["p50_ms"] > 0 and r["batch_ms_per_query"] > 0
        assert 0 <= r["recall@10"] <= 1
        for point in r.get("sweep", []):
            assert 0 <= point["recall@10"] <= 1
    assert next(r for r in rows if r["backend"] == "exact")["recall@10"] == 1.0

    assert report["mode_eval"] == {"note": "not measured here (pass --mode-eval FAST.json FAITHFUL.json)"}
    statuses = {t["status"] for t in report["targets"]}
    assert statuses <= {"PASS", "MISS", "not measured here"}
    for t in report["targets"]:
        if t["measured"] is not None:
            assert t["measured"] > 0 or "recall" in t["target"]


def test_mode_eval_difference(tmp_path):
    """--mode-eval turns two evaluate reports into the fast-vs-faithful mAP difference in points."""
    from benchmarks.run import mode_eval

    paths = []
    for mode, value in (("fast", 0.512), ("faithful", 0.520)):
        path = tmp_path / f"{mode}.json"
        path.write_text(json.dumps({"mode": mode, "splip": {"mAP@all": value, "mAP@200": value}}))
        paths.append(str(path))
    result = mode_eval(paths)
    assert result["modes"] == ["fast", "faithful"]
    assert result["map_diff_points"] == pytest.approx(0.8)


def test_load_test_sends_distinct_drawings_both_ways_and_compares_with_the_floor(tmp_path):
    """Every search gets its own drawing (variants once the originals run out), as strokes or as the canvas PNG;
    rows carry CPU and throughput; the app is held to 2x the floor's CPU and 0.45x its throughput at the same way
    in, strokes to 1.5x the images' throughput, and the CPU breakdown adds up to the app's CPU per search."""
    from benchmarks.doodle import load_doodles
    from benchmarks.load_test import breakdown, compare, cost_targets, make_canvases, make_drawings, summarise

    drawings = make_drawings(120)
    assert len({json.dumps(d) for d in drawings}) == 120 and all(len(s) == 3 for d in drawings for s in d)
    first = load_doodles()["doodles"][0]["strokes"]
    assert [s[:2] for s in drawings[0]] == [[[x for x, _ in s], [y for _, y in s]] for s in first]
    paths = make_canvases(drawings[:2], tmp_path)
    assert {Image.open(p).size for p in paths} == {(512, 512)} and paths[0].read_bytes() != paths[1].read_bytes()

    rows = [summarise("floor", "strokes", 32, [([0.5, 0.4], 1.0, 0.02)]),
            summarise("floor", "image", 32, [([0.5, 0.4], 1.0, 0.02)]),
            summarise("search", "strokes", 32, [([0.9, 0.8, 0.7], 1.0, 0.045)]),
            summarise("search", "image", 32, [([0.9, "boom"], 2.0, 0.05)])]
    assert rows[0]["throughput_qps"] == 2.0 and rows[0]["server_cpu_ms_per_search"] == 10.0
    assert rows[3]["errors"] == 1 and rows[3]["server_cpu_ms_per_search"] == 25.0
    targets = {t["target"]: t for t in compare(rows)}
    assert targets["server CPU per search / floor (image, 32 clients)"]["measured"] == 2.5
    assert targets["throughput / floor (image, 32 clients)"]["measured"] == 0.25 and not targets["errors"]["ok"]
    assert targets["throughput, strokes / image (32 clients)"]["measured"] == pytest.approx(6.0)
    cost = {"strokes": {"handler apart from the forward pass": 0.8, "forward": 3.0}}
    parts = breakdown(rows, cost, 32)["strokes"]
    assert parts["the rest"] == pytest.approx(15.0 - 10.0 - 0.8 - 3.0) and parts["app CPU per search"] == 15.0
    slow = {"strokes": {**cost["strokes"], "handler apart from the forward pass": 1.2}}
    assert cost_targets(cost)[0]["ok"] and not cost_targets(slow)[0]["ok"]


def test_search_cost_times_each_piece_of_a_search_both_ways_in(tmp_path, capsys):
    """The handler's pieces on the app's state, for drawings as strokes and as canvas PNGs, in the demo's mode."""
    from _builders import build_demo_world

    from benchmarks.search_cost import PIECES, main

    world = build_demo_world(tmp_path / "world")
    main(["--model", str(world), "--n", "6", "--rounds", "2", "--json", str(tmp_path / "cost.json")])
    report = json.loads((tmp_path / "cost.json").read_text())
    assert set(report["ms_per_search"]) == {"strokes", "image"}
    for row in report["ms_per_search"].values():
        assert all(row[p] > 0 for p in PIECES)
        assert row["handler apart from the forward pass"] == pytest.approx(row["handler"] - row["forward"], abs=0.01)
        assert row["handler"] == pytest.approx(sum(row[p] for p in PIECES), abs=0.01)
    assert report["ms_per_search"]["image"]["input"] > report["ms_per_search"]["strokes"]["input"]
    assert "handler apart from the forward pass" in capsys.readouterr().out


def test_build_time_projection_counts_every_step_restart_and_validation():
    from benchmarks.build_time import project
    from splip_core.mini.build import V22_BUILD, V32_BUILD, BuildConfig

    shipped = project(BuildConfig(**V32_BUILD), 0.5, 0.25, 10.0, 100.0)  # 4,000 + two 2,000-step restarts
    assert (shipped["pretrain_steps"], shipped["prompt_steps"], shipped["validations"]) == (8000, 1000, 10)
    assert shipped["stages_s"] == {"pretrain": 4000.0, "train_prompts": 350.0, "evaluate": 100.0}
    assert shipped["total_h"] == round(4450 / 3600, 2)
    v22 = project(BuildConfig(**V22_BUILD), 0.5, 0.25, 10.0, 100.0)  # 2,000 + one 1,000-step restart
    assert v22["pretrain_steps"] == 3000
    no_restart = project(BuildConfig(**{**V32_BUILD, "continue_steps": 0}), 0.5, 0.25, 10.0, 0.0)
    unvalidated = project(BuildConfig(**{**V32_BUILD, "train_overrides": {"eval_every": None}}), 0.5, 0.25, 10.0, 0.0)
    assert no_restart["pretrain_steps"] == 4000 and unvalidated["validations"] == 0
