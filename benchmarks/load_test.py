"""Load test of the demo's `/search` API: `python benchmarks/load_test.py [--url URL] [--json OUT]`.

Two scenarios against the app on 127.0.0.1 (started here as `app.py --offline` on a free port unless --url names a
running one): `--clients` concurrent gradio_client clients sending `--queries` searches each (default 32 x 5), and
one client sending `--sequential` searches back to back (default 50). Each search is a full round trip: upload
of the sketch, queue, SpLIP + baseline encoding, top-k, answer. Reports errors and p50/p95/max latency per
scenario; exits 1 when any search failed. Not a unit test: it takes about a minute.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
from gradio_client import Client, handle_file
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_app(app_args: list[str], timeout: float) -> tuple[subprocess.Popen, str]:
    """`app.py` in a child process on a free port; returns once it answers HTTP."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    cmd = [sys.executable, str(REPO / "app.py"), "--host", "127.0.0.1", "--port", str(port), *app_args]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the app exited with code {proc.returncode}:\n{proc.stdout.read()}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.terminate()
    raise SystemExit(f"the app did not answer on {url} within {timeout:.0f} s")


def sketch_file(folder: Path) -> dict:
    """A drawn canvas as the Sketchpad value the API expects."""
    image = Image.new("RGB", (512, 512), "white")
    ImageDraw.Draw(image).line([(140, 150), (260, 340), (380, 140), (300, 120)], fill="black", width=8)
    path = folder / "sketch.png"
    image.save(path)
    return {"background": None, "layers": [], "composite": handle_file(str(path))}


def timed_queries(url: str, sketch: dict, n: int, k: int, start: threading.Barrier | None = None) -> list:
    """`n` searches from one client: a list of latencies in seconds, or the error text for failed ones."""
    client = Client(url, verbose=False)
    if start is not None:
        start.wait()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        try:
            rows = client.predict(sketch, "GZS", k, api_name="/search")
            ok = isinstance(rows, list) and len(rows) > 0
            out.append(time.perf_counter() - t0 if ok else f"unexpected answer {rows!r:.80}")
        except Exception as err:  # every failure counts, whatever its kind
            out.append(f"{type(err).__name__}: {err}")
    return out


def summarise(name: str, clients: int, results: list, wall: float) -> dict:
    latencies = [r for r in results if isinstance(r, float)]
    errors = [r for r in results if not isinstance(r, float)]
    row = {"scenario": name, "clients": clients, "queries": len(results), "errors": len(errors),
           "p50_s": None, "p95_s": None, "max_s": None, "throughput_qps": round(len(latencies) / wall, 2),
           "first_errors": errors[:3]}
    if latencies:
        row.update(p50_s=round(float(np.percentile(latencies, 50)), 3),
                   p95_s=round(float(np.percentile(latencies, 95)), 3), max_s=round(max(latencies), 3))
    return row


def run(url: str, clients: int, queries: int, sequential: int, k: int, folder: Path) -> list[dict]:
    sketch = sketch_file(folder)
    rows = []
    timed_queries(url, sketch, 2, k)  # warm-up: first-request costs are not what visitors see
    if clients:
        barrier = threading.Barrier(clients)
        with ThreadPoolExecutor(clients) as pool:
            t0 = time.perf_counter()
            futures = [pool.submit(timed_queries, url, sketch, queries, k, barrier) for _ in range(clients)]
            results = [r for f in futures for r in f.result()]
        rows.append(summarise(f"concurrent {clients}x{queries}", clients, results, time.perf_counter() - t0))
    if sequential:
        t0 = time.perf_counter()
        results = timed_queries(url, sketch, sequential, k)
        rows.append(summarise(f"sequential {sequential}", 1, results, time.perf_counter() - t0))
    return rows


def print_table(rows: list[dict]) -> None:
    cols = ["scenario", "clients", "queries", "errors", "p50_s", "p95_s", "max_s", "throughput_qps"]
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in cols]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)))
    for r in rows:
        print("  ".join(str(r[c]).ljust(w) for c, w in zip(cols, widths, strict=True)))
        for err in r["first_errors"]:
            print(f"    error: {err}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running app to test (default: start app.py --offline on a free port)")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients (default: %(default)s)")
    parser.add_argument("--queries", type=int, default=5, help="searches per concurrent client (default: %(default)s)")
    parser.add_argument("--sequential", type=int, default=50,
                        help="back-to-back searches from one client, 0 to skip (default: %(default)s)")
    parser.add_argument("--top-k", type=int, default=10, help="photos per search (default: %(default)s)")
    parser.add_argument("--app-arg", action="append", default=[], metavar="ARG",
                        help="extra argument for app.py, repeatable, e.g. --app-arg=--gallery --app-arg=DIR")
    parser.add_argument("--startup-timeout", type=float, default=600, help="seconds to wait for the app")
    parser.add_argument("--json", metavar="OUT", help="also write the results as JSON")
    args = parser.parse_args(argv)

    proc = None
    url = args.url
    if url is None:
        proc, url = start_app(["--offline", *args.app_arg], args.startup_timeout)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            rows = run(url, args.clients, args.queries, args.sequential, args.top_k, Path(tmp))
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
    print_table(rows)
    if args.json:
        Path(args.json).write_text(json.dumps({"url": url, "machine": platform.platform(), "cpus": os.cpu_count(),
                                               "top_k": args.top_k, "results": rows}, indent=2) + "\n")
    if any(r["errors"] for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
