"""Speed and scale benchmark: `python -m benchmarks.run [--quick] [--json OUT]`.

Every timing is compared with a baseline measured in the same run (variants are interleaved round by round, so
background load hits them alike):
  A. sketch-query latency: preprocess a PIL sketch + encode + top-10 over a 10k gallery (ExactIndex), SpLIP fast and
     faithful vs plain open_clip `encode_image` on the same backbone (ViT-B/32, the tiny test model, weights/mini);
  B. gallery indexing throughput: preprocess + encode in batches of 32 + ExactIndex.add, both modes vs plain CLIP;
  C. top-10 search over N unit vectors of dim 512: exact (ExactIndex) vs FAISS flat vs FAISS HNSW / IVF (recall@10
     against exact, with a sweep of ef_search / nprobe up to recall 0.95) vs Milvus Lite: build, latency, memory.
Models run on random weights (timing does not depend on them). Prints a table, writes every number with --json.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from splip_core import SpLIP, SpLIPConfig
from splip_core.data.datasets import SPLITS_DIR, read_class_list
from splip_core.index import ExactIndex, make_index
from splip_core.runtime import use_all_cores
from splip_core.tiny import tiny_model

REPO = Path(__file__).resolve().parents[1]

K = 10
QUERY_GALLERY = 10_000
BATCH = 32
RECALL_TARGET = 0.95
START = time.perf_counter()
TARGETS = {"fast_query": 1.3, "fast_query_mini": 1.15, "exact_vs_flat": 1.2, "fast_indexing": 0.8,
           "mode_map_points": 1.0}


# ------------------------------------------------------------------------------------------------------------------
# measurement helpers
def machine_info() -> dict:
    """CPU model, cores this process may use, thread settings and library versions."""
    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError, StopIteration):
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    versions = {}
    for name in ("faiss", "pymilvus", "open_clip"):
        try:
            versions[name] = __import__(name).__version__
        except (ImportError, AttributeError):
            versions[name] = None
    return {
        "cpu": cpu,
        "cores_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        **versions,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def limit_native_threads(threads: int) -> str:
    """Give NumPy's BLAS and FAISS's OpenMP the same thread count as torch (they keep their own pools otherwise)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return "BLAS/OpenMP threads not limited (threadpoolctl missing)"
    threadpool_limits(limits=threads)
    return f"BLAS/OpenMP pools (NumPy, FAISS) limited to {threads} threads"


def _proc_status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def _can_reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        _proc_status("VmHWM")
        return True
    except (OSError, KeyError):
        return False


class PeakMemory:
    """Peak memory growth over a `with` block, in MiB.

    On Linux: peak RSS of this process (VmHWM, reset on entry through /proc/self/clear_refs) minus RSS on entry, so
    native FAISS and in-process Milvus Lite memory count. Elsewhere: tracemalloc's peak (Python/NumPy only).
    """

    proc = _can_reset_peak()
    method = ("peak RSS growth: VmHWM - VmRSS from /proc/self/status, peak reset per measurement via "
              "/proc/self/clear_refs" if proc else "tracemalloc peak (Python and NumPy allocations only)")

    def __enter__(self) -> PeakMemory:
        gc.collect()
        if self.proc:
            Path("/proc/self/clear_refs").write_text("5")
            self._start = _proc_status("VmRSS")
        else:
            tracemalloc.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.proc:
            peak = _proc_status("VmHWM") - self._start
        else:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        self.mib = round(peak / 2**20, 1)


def progress(message: str) -> None:
    """One line on stderr per finished measurement, so a long run shows where it is."""
    print(f"[{time.perf_counter() - START:6.0f} s] {message}", file=sys.stderr, flush=True)


def stats(seconds: list[float]) -> dict:
    """Sample count, p50, p95 and mean of a list of durations, in milliseconds."""
    ms = np.asarray(seconds) * 1e3
    return {"samples": len(ms), "p50_ms": float(np.median(ms)), "p95_ms": float(np.percentile(ms, 95)),
            "mean_ms": float(ms.mean())}


def interleaved(fns: dict[str, Callable[[], object]], repeats: dict[str, int], warmup: int = 1) -> dict:
    """Durations of each fn: after `warmup` calls each, round i runs every fn that still has repeats left."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for i in range(max(repeats.values())):
        for name, fn in fns.items():
            if i < repeats[name]:
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    return times


def single_queries(index, queries: np.ndarray) -> tuple[list[float], list[list[str]]]:
    """Per-query durations and hit ids when queries are sent one at a time (what the app does)."""
    times, hits = [], []
    for q in queries:
        start = time.perf_counter()
        _, ids = index.search(q[None], K)
        times.append(time.perf_counter() - start)
        hits.append(ids[0])
    return times, hits


def recall(hits: list[list[str]], truth: list[list[str]]) -> float:
    return float(np.mean([len(set(h) & set(t)) / len(t) for h, t in zip(hits, truth, strict=True)]))


def fmt(value, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def table(headers: list[str], rows: list[list]) -> str:
    cells = [headers] + [[fmt(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
             for r in cells]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------------------------
# synthetic inputs
def unit_vectors(rng: np.random.Generator, n: int, dim: int, centres: np.ndarray | None = None,
                 spread: float = 0.045) -> np.ndarray:
    """n random unit vectors; with `centres`, each is a random centre plus Gaussian noise (cosine ~0.7 at dim 512)."""
    out = np.empty((n, dim), dtype=np.float32)
    for s in range(0, n, 100_000):
        block = rng.standard_normal((min(100_000, n - s), dim), dtype=np.float32)
        if centres is not None:
            block = centres[rng.integers(0, len(centres), len(block))] + spread * block
        out[s:s + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def vector_set(rng: np.random.Generator, n: int, n_queries: int, dim: int, kind: str):
    """Gallery and queries: uniform on the sphere, or clustered (n/100 classes; queries near a class centre)."""
    if kind == "uniform":
        return unit_vectors(rng, n, dim), unit_vectors(rng, n_queries, dim)
    centres = unit_vectors(rng, max(1, n // 100), dim)
    return unit_vectors(rng, n, dim, centres), unit_vectors(rng, n_queries, dim, centres)


def make_sketch(rng: np.random.Generator, size: int = 256) -> Image.Image:
    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        draw.line([tuple(int(v) for v in rng.integers(0, size, 2)) for _ in range(2)], fill="black", width=3)
    return image


def make_photo(rng: np.random.Generator, width: int = 320, height: int = 240) -> Image.Image:
    blocks = rng.integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8)
    return Image.fromarray(blocks).resize((width, height), Image.BILINEAR)


# ------------------------------------------------------------------------------------------------------------------
# A and B: the model
@torch.inference_mode()
def plain_encode(model: SpLIP, images: list) -> np.ndarray:
    """Plain frozen CLIP: the same preprocessing, then open_clip's own encode_image, L2-normalised."""
    pixels = torch.stack([model.preprocess(im) for im in images])
    return F.normalize(model.clip.encode_image(pixels), dim=-1).numpy()


def splip_encoder(model: SpLIP, mode: str, modality: str) -> Callable[[list], np.ndarray]:
    """SpLIP's encode_image in `mode`, set on every call since the variants take turns on one model."""

    def encode(images: list) -> np.ndarray:
        model.set_inference_mode(mode)
        return model.encode_image(images, modality, batch_size=BATCH).numpy()
    return encode


def encoders(model: SpLIP, modality: str) -> dict[str, Callable[[list], np.ndarray]]:
    return {"plain": lambda images: plain_encode(model, images), "fast": splip_encoder(model, "fast", modality),
            "faithful": splip_encoder(model, "faithful", modality)}


def vit_b32() -> SpLIP:
    """ViT-B/32 on random weights, conditioned on Sketchy's 100 seen classes (split 1) like a real checkpoint."""
    unseen = set(read_class_list(SPLITS_DIR / "sketchy_split1_sake.txt"))
    seen = [c for c in read_class_list(SPLITS_DIR / "sketchy_classes.txt") if c not in unseen]
    torch.manual_seed(0)
    config = SpLIPConfig.from_dict({"backbone": {"name": "ViT-B-32", "pretrained": None}, "seen_classes": seen})
    return SpLIP(config).eval()


def bench_query(label: str, model: SpLIP, repeats: dict[str, int], rng: np.random.Generator) -> dict:
    """Latency of one sketch query (preprocess + encode + top-10 over a 10k ExactIndex) per variant."""
    sketch = make_sketch(rng)
    encode = encoders(model, "sketch")
    dim = encode["plain"]([sketch]).shape[1]
    index = ExactIndex(dim)
    index.add([str(i) for i in range(QUERY_GALLERY)], unit_vectors(rng, QUERY_GALLERY, dim))
    saved_mode = model.config.inference_mode
    times = interleaved({name: (lambda e=e: index.search(e([sketch]), K)) for name, e in encode.items()}, repeats)
    model.set_inference_mode(saved_mode)
    variants = {name: stats(t) for name, t in times.items()}
    plain = variants["plain"]["p50_ms"]
    return {"model": label, "embed_dim": dim, "seen_classes": len(model.config.seen_classes),
            "gallery_size": QUERY_GALLERY, "variants": variants,
            "ratio_vs_plain": {name: v["p50_ms"] / plain for name, v in variants.items() if name != "plain"}}


def bench_indexing(label: str, model: SpLIP, n_images: int, n_faithful: int, rounds: int,
                   rng: np.random.Generator) -> dict:
    """Photos per second for preprocess + encode (batches of 32) + ExactIndex.add, per variant."""
    photos = [make_photo(rng) for _ in range(n_images)]
    encode = encoders(model, "photo")
    dim = encode["plain"](photos[:1]).shape[1]
    counts = {"plain": n_images, "fast": n_images, "faithful": n_faithful}

    def build(name: str, warm: bool = False) -> None:
        images = photos[:2] if warm else photos[:counts[name]]
        index = ExactIndex(dim)
        for s in range(0, len(images), BATCH):
            index.add([str(i) for i in range(s, s + len(images[s:s + BATCH]))], encode[name](images[s:s + BATCH]))

    saved_mode = model.config.inference_mode
    for name in encode:
        build(name, warm=True)
    times = interleaved({name: (lambda n=name: build(n)) for name in encode},
                        {"plain": rounds, "fast": rounds, "faithful": 1}, warmup=0)
    model.set_inference_mode(saved_mode)
    variants = {name: {"images": counts[name], "rounds": len(t), "images_per_s": counts[name] / float(np.median(t))}
                for name, t in times.items()}
    plain = variants["plain"]["images_per_s"]
    return {"model": label, "batch_size": BATCH, "variants": variants,
            "ratio_vs_plain": {name: v["images_per_s"] / plain for name, v in variants.items() if name != "plain"}}


# ------------------------------------------------------------------------------------------------------------------
# C: top-k backends
def _measure(index, build: Callable[[object], None], queries: np.ndarray) -> dict:
    """Build time, per-query latency (one at a time), batch time per query and peak memory of one index."""
    with PeakMemory() as mem:
        start = time.perf_counter()
        build(index)
        build_s = time.perf_counter() - start
        times, hits = single_queries(index, queries)
        start = time.perf_counter()
        index.search(queries, K)
        batch = (time.perf_counter() - start) / len(queries)
    return {"build_s": build_s, **stats(times), "batch_ms_per_query": batch * 1e3, "peak_mib": mem.mib,
            "_hits": hits}


def _sweep(index, attr: str, values: list[int], queries: np.ndarray, truth: list[list[str]]) -> list[dict]:
    """Recall and latency at growing `attr` (ef_search / nprobe), stopping at the first that reaches the target."""
    points = []
    for value in values:
        setattr(index, attr, value)
        times, hits = single_queries(index, queries)
        points.append({attr: value, "recall@10": recall(hits, truth), **stats(times)})
        if points[-1]["recall@10"] >= RECALL_TARGET:
            break
    return points


def bench_topk(n: int, n_queries: int, data: str, hnsw_max: int, milvus_max: int, rng: np.random.Generator,
               dim: int = 512) -> list[dict]:
    """One row per backend for a gallery of n vectors."""
    vectors, queries = vector_set(rng, n, n_queries, dim, data)
    ids = [str(i) for i in range(n)]
    rows = []

    def add_all(index) -> None:  # in chunks: an IVF index trains on the first, memory stays bounded
        for s in range(0, n, 100_000):
            index.add(ids[s:s + 100_000], vectors[s:s + 100_000])

    def row(backend: str, params: dict, result: dict, truth: list[list[str]] | None) -> dict:
        hits = result.pop("_hits")
        entry = {"n": n, "backend": backend, "params": params, **result,
                 "recall@10": 1.0 if truth is None else recall(hits, truth)}
        rows.append(entry)
        progress(f"top-k n={n:,} {backend} {params or ''}")
        return entry

    result = _measure(ExactIndex(dim), lambda index: index.add(ids, vectors), queries)
    truth = result["_hits"]
    row("exact", {}, result, None)
    gc.collect()

    try:
        row("faiss-flat", {}, _measure(make_index("faiss-flat", dim), add_all, queries), truth)
        gc.collect()
        ann = [("faiss-hnsw", {}, "ef_search", [128, 256, 512, 1024, 2048])]
        nlist = min(256, max(1, n // 39))
        ann.append(("faiss-ivf", {"nlist": nlist}, "nprobe", sorted({min(p, nlist) for p in (16, 32, 64, 128, 256)})))
        for backend, params, attr, values in ann:
            if backend == "faiss-hnsw" and n > hnsw_max:
                rows.append({"n": n, "backend": backend, "skipped": f"n > --hnsw-max {hnsw_max} (build time)"})
                continue
            index = make_index(backend, dim, **params)
            entry = row(backend, {**params, attr: "auto"}, _measure(index, add_all, queries), truth)
            entry["params"][attr] = f"auto ({index.search_breadth()[attr]})"
            entry["sweep"] = _sweep(index, attr, values, queries, truth)
            del index
            gc.collect()
    except ImportError as err:
        rows.append({"n": n, "backend": "faiss", "skipped": str(err)})

    if n > milvus_max:
        rows.append({"n": n, "backend": "milvus-lite", "skipped": f"n > --milvus-max {milvus_max} (time budget)"})
    else:
        rows.extend(_bench_milvus(n, add_all, queries, truth))
        progress(f"top-k n={n:,} milvus-lite")
    return rows


def _bench_milvus(n: int, add_all: Callable[[object], None], queries: np.ndarray,
                  truth: list[list[str]]) -> list[dict]:
    """Milvus Lite (FLAT) through MilvusIndex; its `add` flushes, so build time includes sealing the segments."""
    dim = queries.shape[1]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            index = make_index("milvus", dim, uri=str(Path(tmp) / "bench.db"), collection="bench", overwrite=True)
            measured = _measure(index, add_all, queries)
            measured["recall@10"] = recall(measured.pop("_hits"), truth)
            index.close()
    except ImportError as err:
        return [{"n": n, "backend": "milvus-lite", "skipped": str(err)}]
    return [{"n": n, "backend": "milvus-lite", "params": {"index_type": "FLAT"}, **measured}]


# ------------------------------------------------------------------------------------------------------------------
# targets and report
def _status(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def targets(report: dict) -> list[dict]:
    out = []
    for entry in report["query_latency"]:
        if "variants" in entry:
            r = entry["ratio_vs_plain"]["fast"]
            limit = TARGETS["fast_query_mini" if entry["model"] == "mini" else "fast_query"]
            out.append({"target": f"fast query / plain encode_image ({entry['model']})", "measured": r,
                        "threshold": f"<= {limit}", "status": _status(r <= limit)})
    for entry in report["indexing"]:
        r = entry["ratio_vs_plain"]["fast"]
        out.append({"target": f"fast indexing / plain throughput ({entry['model']})", "measured": r,
                    "threshold": f">= {TARGETS['fast_indexing']}", "status": _status(r >= TARGETS["fast_indexing"])})
    rows = [r for r in report["topk"] if "skipped" not in r]
    for n in sorted({r["n"] for r in rows}):
        at = {r["backend"]: r for r in rows if r["n"] == n}
        if "faiss-flat" in at:
            r = at["exact"]["p50_ms"] / at["faiss-flat"]["p50_ms"]
            out.append({"target": f"exact / faiss-flat query p50 (n={n:,})", "measured": r,
                        "threshold": f"<= {TARGETS['exact_vs_flat']}",
                        "status": _status(r <= TARGETS["exact_vs_flat"])})
        for backend, knob in (("faiss-hnsw", "ef_search"), ("faiss-ivf", "nprobe")):
            if backend in at:
                r = at[backend]["recall@10"]
                params = ", ".join(f"{k}={v}" for k, v in at[backend]["params"].items())
                hit = next((p for p in at[backend]["sweep"] if p["recall@10"] >= RECALL_TARGET), None)
                note = "not reached in the sweep" if hit is None else (
                    f"{knob}={hit[knob]} reaches it: p50 {hit['p50_ms']:.2f} ms = "
                    f"{hit['p50_ms'] / at['exact']['p50_ms']:.2f}x exact")
                out.append({"target": f"{backend} recall@10, default {params} (n={n:,})", "measured": r,
                            "threshold": f">= {RECALL_TARGET}", "status": _status(r >= RECALL_TARGET), "note": note})
    mode = report["mode_eval"]
    if "map_diff_points" in mode:
        d = mode["map_diff_points"]
        limit = TARGETS["mode_map_points"]
        out.append({"target": "fast vs faithful mAP@all, offline world (points)", "measured": d,
                    "threshold": f"<= {limit}", "status": _status(d <= limit)})
    else:
        out.append({"target": "fast vs faithful mAP@all, offline world", "measured": None,
                    "threshold": f"<= {TARGETS['mode_map_points']} point", "status": "not measured here"})
    return out


def mode_eval(paths: list[str] | None) -> dict:
    """|mAP fast - mAP faithful| in points from two `python -m splip_core.evaluate --json` reports."""
    if not paths:
        return {"note": "not measured here (pass --mode-eval FAST.json FAITHFUL.json)"}
    fast, faithful = (json.loads(Path(p).read_text()) for p in paths)
    out = {"fast_json": paths[0], "faithful_json": paths[1], "modes": [fast.get("mode"), faithful.get("mode")]}
    for metric in ("mAP@all", "mAP@200"):
        out[metric] = {"fast": fast["splip"][metric], "faithful": faithful["splip"][metric]}
    out["map_diff_points"] = 100 * abs(fast["splip"]["mAP@all"] - faithful["splip"]["mAP@all"])
    return out


def print_report(report: dict) -> None:
    m = report["machine"]
    print(f"machine: {m['cpu']} | {m['cores_available']} cores available ({m['logical_cpus']} logical) | "
          f"torch {m['torch']}, {m['torch_threads']} threads | load average at start {m['load_average_start']}")
    s = report["settings"]
    print(f"mode: {'quick' if s['quick'] else 'full'} | k={K} | {s['native_threads']}\n"
          f"memory: {s['memory_method']}\n")

    if report["query_latency"]:
        print(f"A. sketch query: preprocess PIL sketch + encode + top-{K} over {QUERY_GALLERY:,} vectors "
              "(ExactIndex), ms")
        rows = [[e["model"], name, v["samples"], v["p50_ms"], v["p95_ms"], e["ratio_vs_plain"].get(name, 1.0)]
                for e in report["query_latency"] if "variants" in e for name, v in e["variants"].items()]
        print(table(["model", "variant", "n", "p50 ms", "p95 ms", "p50 / plain"], rows))
        for e in report["query_latency"]:
            if "skipped" in e:
                print(f"{e['model']}: skipped ({e['skipped']})")
        print()
    if report["indexing"]:
        print(f"B. gallery indexing: preprocess + encode (batch {BATCH}) + ExactIndex.add")
        rows = [[e["model"], name, v["images"], v["rounds"], v["images_per_s"], e["ratio_vs_plain"].get(name, 1.0)]
                for e in report["indexing"] for name, v in e["variants"].items()]
        print(table(["model", "variant", "images", "rounds", "images/s", "x plain"], rows), "\n")
    if report["topk"]:
        print_topk(report)

    print("Targets")
    print(table(["target", "measured", "threshold", "status", "note"],
                [[t["target"], t["measured"], t["threshold"], t["status"], t.get("note", "")]
                 for t in report["targets"]]))
    for note in report["notes"]:
        print("note:", note)
    sections = ", ".join(f"{k} {v:.0f} s" for k, v in report["section_s"].items())
    print(f"\nelapsed {report['elapsed_s']:.0f} s ({sections}), load average at end {m['load_average_end']}")


def print_topk(report: dict) -> None:
    s = report["settings"]
    print(f"C. top-{K}, dim 512, {s['data']} unit vectors, {s['queries']} queries sent one at a time "
          f"(batch = all queries in one call)")
    rows = []
    for r in report["topk"]:
        if "skipped" in r:
            rows.append([f"{r['n']:,}", r["backend"], "skipped: " + r["skipped"]] + [None] * 6)
            continue
        params = ", ".join(f"{k}={v}" for k, v in r["params"].items())
        rows.append([f"{r['n']:,}", r["backend"], params, r["build_s"], r["p50_ms"], r["p95_ms"],
                     r["batch_ms_per_query"], r["recall@10"], r["peak_mib"]])
        for p in r.get("sweep", []):
            knob = next(k for k in p if k in ("ef_search", "nprobe"))
            rows.append(["", f"  {r['backend']}", f"{knob}={p[knob]}", None, p["p50_ms"], p["p95_ms"], None,
                         p["recall@10"], None])
    print(table(["n", "backend", "params", "build s", "p50 ms", "p95 ms", "batch ms/q", "recall@10", "peak MiB"],
                rows), "\n")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="CI smoke run: tiny model only, 2k vectors, few repeats (well under a minute)")
    p.add_argument("--json", help="write every number here")
    p.add_argument("--mode-eval", nargs=2, metavar=("FAST_JSON", "FAITHFUL_JSON"),
                   help="`python -m splip_core.evaluate --mode fast|faithful --json` reports of the offline world")
    p.add_argument("--data", choices=["uniform", "clustered"], default="uniform",
                   help="top-k vectors: uniform on the sphere (worst case for ANN) or clustered like class embeddings")
    p.add_argument("--sizes", type=int, nargs="+", help="top-k gallery sizes (default 10k 100k 1M; quick 2k)")
    p.add_argument("--queries", type=int, help="top-k queries (default 100; quick 20)")
    p.add_argument("--hnsw-max", type=int, default=100_000, help="skip HNSW above this size (its build is slow)")
    p.add_argument("--milvus-max", type=int, default=100_000, help="skip Milvus Lite above this size")
    p.add_argument("--sections", nargs="+", choices=["models", "topk"], default=["models", "topk"],
                   help="run only some sections: models = A and B, topk = C")
    p.add_argument("--threads", type=int,
                   help="torch, BLAS and FAISS threads (default: the cores this process may use)")
    p.add_argument("--mini", default=str(REPO / "weights" / "mini"), help="offline-world checkpoint directory")
    return p


def run_models(quick: bool, mini: Path, notes: list[str]) -> tuple[list[dict], list[dict]]:
    """Sections A and B: ViT-B/32 (full runs), the tiny model, and weights/mini when it exists (full runs)."""
    rng = np.random.default_rng(0)
    models: list[tuple[str, Callable[[], SpLIP], dict]] = [
        ("tiny", tiny_model, dict.fromkeys(("plain", "fast", "faithful"), 20 if quick else 100))]
    if quick:
        notes.append("--quick: tiny model only (no ViT-B/32, no weights/mini), 2k vectors; ratios are smoke only")
    else:
        models.insert(0, ("ViT-B-32", vit_b32, {"plain": 30, "fast": 30, "faithful": 10}))
    latency, indexing = [], []
    with torch.inference_mode():
        for label, make, repeats in models:
            model = make()
            latency.append(bench_query(label, model, repeats, rng))
            progress(f"query latency {label}")
            if label == models[0][0]:
                n = 8 if quick else 64
                indexing.append(bench_indexing(label, model, n, n if quick else 32, 1 if quick else 3, rng))
                progress(f"indexing {label}")
            del model
        if quick:
            latency.append({"model": "mini", "skipped": "--quick"})
        elif (mini / "config.json").is_file():
            latency.append(bench_query("mini", SpLIP.from_pretrained(mini), models[0][2], rng))
            progress("query latency mini")
        else:
            latency.append({"model": "mini", "skipped": f"no checkpoint at {mini}"})
    gc.collect()
    return latency, indexing


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    started = time.perf_counter()
    if args.threads:
        torch.set_num_threads(args.threads)
    else:
        use_all_cores()
    blas_note = limit_native_threads(torch.get_num_threads())
    quick = args.quick
    sizes = args.sizes or ([2_000] if quick else [10_000, 100_000, 1_000_000])
    n_queries = args.queries or (20 if quick else 100)
    notes: list[str] = []
    report: dict = {"machine": machine_info(),
                    "settings": {"quick": quick, "sections": args.sections, "k": K, "data": args.data,
                                 "sizes": sizes, "queries": n_queries, "hnsw_max": args.hnsw_max,
                                 "milvus_max": args.milvus_max, "batch_size": BATCH,
                                 "memory_method": PeakMemory.method, "native_threads": blas_note},
                    "query_latency": [], "indexing": [], "topk": [], "section_s": {}}
    load = report["machine"]["load_average_start"]
    if load and load[0] > 0.5:
        notes.append(f"the machine was busy at start (1-min load average {load[0]:.1f} on "
                     f"{report['machine']['cores_available']} cores): other processes distort timings, and more "
                     "torch threads than idle cores can slow small operations many times over (try --threads)")
    if "models" in args.sections:
        report["query_latency"], report["indexing"] = run_models(quick, Path(args.mini), notes)
        report["section_s"]["models"] = time.perf_counter() - started
    if "topk" in args.sections:
        topk_start, rng = time.perf_counter(), np.random.default_rng(1)
        for n in sizes:
            report["topk"].extend(bench_topk(n, n_queries, args.data, args.hnsw_max, args.milvus_max, rng))
            gc.collect()
        report["section_s"]["topk"] = time.perf_counter() - topk_start
    if any(r["backend"] == "milvus-lite" and "skipped" not in r for r in report["topk"]):
        notes.append("Milvus Lite 3.x runs in this process as Python threads (gRPC on localhost), so its numbers "
                     "say nothing about a Milvus server; its build s = insert + flush")
    report["mode_eval"] = mode_eval(args.mode_eval)
    report["targets"] = targets(report)
    report["notes"] = notes
    report["machine"]["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    report["elapsed_s"] = time.perf_counter() - started
    print_report(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
