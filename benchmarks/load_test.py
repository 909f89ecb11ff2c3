"""Load test of the demo's `/search` API beside a floor: `python -m benchmarks.load_test [--json OUT]`.

Starts two servers on 127.0.0.1 (or uses `--url` with `--server-pid`): the app (`app.py --offline` with a fresh,
empty `--cache-dir`, so its start is a cold start) and the floor, a Gradio app whose `/search` has the same inputs,
outputs and queue settings but a trivial handler (`benchmarks/floor_app.py`). For each server, in the same run and
taking turns round by round (`--rounds`, default 3), it measures `--clients` concurrent clients x `--queries`
searches (default 32 x 5 per round), then `--sequential` back-to-back searches from one client (default 50 per
round).

Every search sends a different sketch: the offline world's test sketches drawn on a 512 x 512 canvas (mirrored and
shifted copies once the originals are used up), so no result cache can help. Clients speak raw HTTP to Gradio's API
(upload, then `/gradio_api/call/search` and its event stream) with asyncio, spread over `--processes` processes, so
the load generator is not the bottleneck; each client keeps one Gradio session, as gradio_client and a browser tab
do. Per row: errors, p50/p95/max latency, throughput (successful searches per second of wall time) and the server
process's CPU time per search (utime + stime from /proc). Also reports the cold start: seconds from launching app.py
to its first answered search. Exits 1 when any search failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import random
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
from PIL import Image, ImageOps

REPO = Path(__file__).resolve().parents[1]
SKETCHES = REPO / "weights" / "mini" / "gallery" / "sketch"
CANVAS = 512
TARGETS = {"cpu_vs_floor": 2.0, "throughput_vs_floor": 0.45, "cold_start_s": 10.0}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(cmd: list[str], timeout: float, log: Path) -> tuple[subprocess.Popen, str, float]:
    """Run `cmd` (which takes --host/--port) on a free port, its output in `log`; returns (process, URL, seconds
    until it answered HTTP)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    t0 = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen([*cmd, "--host", "127.0.0.1", "--port", str(port)], cwd=REPO, stdout=out,
                                stderr=subprocess.STDOUT, text=True)
    deadline = t0 + timeout
    while time.perf_counter() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{cmd[1]} exited with code {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return proc, url, time.perf_counter() - t0
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.terminate()
    raise SystemExit(f"{cmd[1]} did not answer on {url} within {timeout:.0f} s")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def make_sketches(n: int, folder: Path, source: Path = SKETCHES, seed: int = 0) -> tuple[list[Path], int]:
    """`n` distinct canvas PNGs from the test sketches (mirrored / shifted variants after the originals run out);
    returns them and the number of original sketches used."""
    originals = sorted(source.rglob("*.png"))
    if not originals:
        raise SystemExit(f"no sketches under {source}: build the offline world or pass --sketches DIR")
    random.Random(seed).shuffle(originals)
    out = []
    for i in range(n):
        image = Image.open(originals[i % len(originals)]).convert("RGB")
        variant = i // len(originals)
        if variant % 2:
            image = ImageOps.mirror(image)
        image = ImageOps.contain(image, (CANVAS * 3 // 4, CANVAS * 3 // 4))
        canvas = Image.new("RGB", (CANVAS, CANVAS), "white")
        shift = 8 * (variant // 2)
        canvas.paste(image, ((CANVAS - image.width) // 2 + shift, (CANVAS - image.height) // 2 + shift))
        path = folder / f"{i:05d}.png"
        canvas.save(path)
        out.append(path)
    return out, min(n, len(originals))


async def one_search(client: httpx.AsyncClient, url: str, sketch: Path, k: int, session: str) -> float | str:
    """Upload the sketch, call /search in the client's `session` (as gradio_client does: one per client) and read
    the event stream: the latency, or the error text."""
    t0 = time.perf_counter()
    try:
        upload = await client.post(f"{url}gradio_api/upload",
                                   files={"files": (sketch.name, sketch.read_bytes(), "image/png")})
        upload.raise_for_status()
        data = {"path": upload.json()[0], "meta": {"_type": "gradio.FileData"}}
        call = await client.post(f"{url}gradio_api/call/search",
                                 json={"data": [{"background": None, "layers": [], "composite": data}, "GZS", k],
                                       "session_hash": session})
        call.raise_for_status()
        event = None
        async with client.stream("GET", f"{url}gradio_api/call/search/{call.json()['event_id']}") as stream:
            async for line in stream.aiter_lines():
                if line.startswith("event:"):
                    event = line.split(":", 1)[1].strip()
                elif line.startswith("data:") and event in ("complete", "error"):
                    payload = line.split(":", 1)[1].strip()
                    if event == "error":
                        return f"server error: {payload[:120]}"
                    rows = json.loads(payload)[0]
                    if not (isinstance(rows, list) and len(rows) == k and {"rank", "photo", "score"} <= set(rows[0])):
                        return f"unexpected answer {payload[:120]}"
                    return time.perf_counter() - t0
        return f"stream ended without a result (last event {event})"
    except (httpx.HTTPError, ValueError, KeyError, IndexError) as err:
        return f"{type(err).__name__}: {err}"


async def clients_async(url: str, jobs: list[list[str]], k: int, start_at: float) -> list:
    """One asyncio task per client, each sending its sketches one after another."""
    limits = httpx.Limits(max_connections=len(jobs) * 2 + 4)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        await asyncio.sleep(max(0.0, start_at - time.time()))

        async def run(sketches: list[str]) -> list:
            session = uuid.uuid4().hex
            return [await one_search(client, url, Path(s), k, session) for s in sketches]

        return [r for rs in await asyncio.gather(*(run(j) for j in jobs)) for r in rs]


def _process(args: tuple) -> list:
    return asyncio.run(clients_async(*args))


def timed_round(url: str, pid: int, sketches: list[Path], clients: int, processes: int, k: int,
                pool) -> tuple[list, float, float]:
    """`clients` clients sharing `sketches` evenly, spread over `processes` processes and started together:
    (latencies or error texts, wall seconds, server CPU seconds)."""
    per_client = len(sketches) // clients
    jobs = [[str(s) for s in sketches[c * per_client:(c + 1) * per_client]] for c in range(clients)]
    groups = [jobs[p::processes] for p in range(processes) if jobs[p::processes]]
    start_at = time.time() + 1.0  # every process connected and waiting before the first search
    cpu0 = cpu_seconds(pid)
    results = [r for part in pool.map(_process, [(url, g, k, start_at) for g in groups]) for r in part]
    return results, time.time() - start_at, cpu_seconds(pid) - cpu0


def summarise(name: str, clients: int, rounds: list[tuple[list, float, float]]) -> dict:
    """One row from a scenario's rounds: latencies pooled, throughput and CPU over the summed wall and CPU time."""
    results = [r for part, _, _ in rounds for r in part]
    wall, cpu = sum(w for _, w, _ in rounds), sum(c for _, _, c in rounds)
    latencies = [r for r in results if isinstance(r, float)]
    errors = [r for r in results if not isinstance(r, float)]
    row = {"scenario": name, "clients": clients, "queries": len(results), "rounds": len(rounds),
           "errors": len(errors), "p50_s": None, "p95_s": None, "max_s": None,
           "throughput_qps": round(len(latencies) / wall, 2),
           "server_cpu_ms_per_search": round(1000 * cpu / max(len(results), 1), 1), "wall_s": round(wall, 2),
           "first_errors": errors[:3]}
    if latencies:
        row.update(p50_s=round(float(np.percentile(latencies, 50)), 3),
                   p95_s=round(float(np.percentile(latencies, 95)), 3), max_s=round(max(latencies), 3))
    return row


def compare(rows: list[dict]) -> list[dict]:
    """The issue's targets: app vs floor at the same load, 0 errors, and the cold start."""
    out = []
    for row in rows:
        if row["scenario"] == "floor" or row["scenario"].startswith("floor "):
            continue
        floor = next(r for r in rows if r["scenario"].startswith("floor") and r["clients"] == row["clients"])
        cpu = row["server_cpu_ms_per_search"] / max(floor["server_cpu_ms_per_search"], 1e-9)
        row["vs_floor"] = {"server_cpu": round(cpu, 2),
                           "throughput": round(row["throughput_qps"] / max(floor["throughput_qps"], 1e-9), 2)}
        out.append({"target": f"server CPU per search / floor ({row['clients']} clients)", "measured": cpu,
                    "threshold": f"<= {TARGETS['cpu_vs_floor']}", "ok": cpu <= TARGETS["cpu_vs_floor"]})
        if row["clients"] > 1:
            ratio = row["vs_floor"]["throughput"]
            out.append({"target": f"throughput / floor ({row['clients']} clients)", "measured": ratio,
                        "threshold": f">= {TARGETS['throughput_vs_floor']}",
                        "ok": ratio >= TARGETS["throughput_vs_floor"]})
    errors = sum(r["errors"] for r in rows)
    out.append({"target": "errors", "measured": errors, "threshold": "0", "ok": errors == 0})
    return out


def print_report(rows: list[dict], targets: list[dict], startup: dict) -> None:
    cols = ["scenario", "clients", "queries", "errors", "p50_s", "p95_s", "max_s", "throughput_qps",
            "server_cpu_ms_per_search"]
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in cols]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)))
    for r in rows:
        print("  ".join(str(r[c]).ljust(w) for c, w in zip(cols, widths, strict=True)))
        for err in r["first_errors"]:
            print(f"    error: {err}")
    if startup:
        print(f"\ncold start: HTTP up {startup['http_s']} s, first search answered {startup['first_search_s']} s "
              "after launch")
    print()
    for t in targets:
        print(f"{'PASS' if t['ok'] else 'MISS'}  {t['target']}: {t['measured']:.2f} (target {t['threshold']})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running app to test instead of starting app.py (needs --server-pid)")
    parser.add_argument("--server-pid", type=int, help="with --url: the server's process id, for its CPU time")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients (default: %(default)s)")
    parser.add_argument("--queries", type=int, default=5, help="searches per concurrent client (default: %(default)s)")
    parser.add_argument("--sequential", type=int, default=50,
                        help="back-to-back searches from one client, 0 to skip (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds per scenario, floor and app taking turns, so load drift hits both alike "
                             "(default: %(default)s)")
    parser.add_argument("--processes", type=int, default=2, help="load-generator processes (default: %(default)s)")
    parser.add_argument("--top-k", type=int, default=10, help="photos per search (default: %(default)s)")
    parser.add_argument("--sketches", type=Path, default=SKETCHES, help="folder of test sketches (default: the "
                        "offline world's)")
    parser.add_argument("--app-arg", action="append", default=[], metavar="ARG",
                        help="extra argument for app.py, repeatable, e.g. --app-arg=--mode --app-arg=fast")
    parser.add_argument("--app", type=Path, default=REPO / "app.py", help="the app to start (default: this repo's)")
    parser.add_argument("--no-floor", action="store_true", help="skip the floor server")
    parser.add_argument("--startup-timeout", type=float, default=600, help="seconds to wait for a server")
    parser.add_argument("--json", metavar="OUT", help="also write the results as JSON")
    args = parser.parse_args(argv)
    if args.url and not args.server_pid:
        parser.error("--url needs --server-pid (the server's CPU time is measured)")

    procs, servers, startup = [], {}, {}
    tmp = tempfile.TemporaryDirectory()
    try:
        total = 2 + args.rounds * (args.clients * args.queries + args.sequential)  # per server, warm-up included
        sketches, originals = make_sketches(2 * total + 1, Path(tmp.name), args.sketches)
        if args.url:
            servers["app"] = (args.url, args.server_pid)
        else:
            cmd = [sys.executable, str(args.app), "--offline", "--cache-dir", str(Path(tmp.name) / "cache"),
                   *args.app_arg]
            launched = time.perf_counter()
            proc, url, http_s = start_server(cmd, args.startup_timeout, Path(tmp.name) / "app.log")
            procs.append(proc)
            servers["app"] = (url, proc.pid)
            first = asyncio.run(clients_async(url, [[str(sketches.pop())]], args.top_k, 0))[0]
            startup = {"http_s": round(http_s, 2), "first_search_s": round(time.perf_counter() - launched, 2),
                       "first_search_ok": isinstance(first, float)}
        if not args.no_floor:
            proc, url, _ = start_server([sys.executable, "-m", "benchmarks.floor_app"],
                                        args.startup_timeout, Path(tmp.name) / "floor.log")
            procs.append(proc)
            servers["floor"] = (url, proc.pid)
        rows = []
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(args.processes) as pool:
            for url, _ in servers.values():  # warm-up: first-request costs are not what visitors see
                asyncio.run(clients_async(url, [[str(sketches.pop()), str(sketches.pop())]], args.top_k, 0))
            loads = [("", args.clients, args.clients * args.queries, args.processes)]
            if args.sequential:
                loads.append((" sequential", 1, args.sequential, 1))
            order = sorted(servers, key=lambda s: s != "floor")  # the floor first, then the app, round by round
            for suffix, clients, n, processes in loads:
                rounds: dict[str, list] = {name: [] for name in order}
                for _ in range(args.rounds):
                    for name in order:
                        url, pid = servers[name]
                        batch = [sketches.pop() for _ in range(n)]
                        rounds[name].append(timed_round(url, pid, batch, clients, processes, args.top_k, pool))
                rows += [summarise(("search" if name == "app" else name) + suffix, clients, rounds[name])
                         for name in order]
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=30)
        tmp.cleanup()
    targets = compare(rows) if "floor" in servers else []
    if startup:
        targets.append({"target": "cold start: launch to first answered search (s)",
                        "measured": startup["first_search_s"], "threshold": f"<= {TARGETS['cold_start_s']}",
                        "ok": startup["first_search_ok"] and startup["first_search_s"] <= TARGETS["cold_start_s"]})
    print_report(rows, targets, startup)
    if args.json:
        Path(args.json).write_text(json.dumps({
            "url": servers["app"][0], "machine": platform.platform(), "cpus": os.cpu_count(),
            "load_average": list(os.getloadavg()), "top_k": args.top_k, "app_args": args.app_arg,
            "sketches": {"distinct_inputs": 2 * total + 1, "original_sketches": originals},
            "startup": startup, "results": rows, "targets": targets}, indent=2) + "\n")
    if any(r["errors"] for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
