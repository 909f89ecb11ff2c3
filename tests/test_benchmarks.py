"""`benchmarks/run.py --quick` runs end to end and writes a well-formed report (timings are not asserted)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quick_benchmark_writes_report(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "run.py"), "--quick", "--json", str(out)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
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
