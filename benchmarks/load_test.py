"""Load test of the demo's `/search` API beside a floor, strokes beside images: `python -m benchmarks.load_test`.

Starts two servers on 127.0.0.1 (or uses `--url` with `--server-pid`): the app (`app.py --offline` with a fresh,
empty `--cache-dir`, so its start is a cold start) and the floor, a Gradio app whose `/search` has the same inputs,
outputs and queue settings but a trivial handler (`benchmarks/floor_app.py`). For each server and each way in
(`--inputs`: strokes, what the page sends now, and the canvas image it sent before), in the same run and taking
turns round by round (`--rounds`, default 3), it measures `--clients` concurrent clients x `--queries` searches
(default 32 x 5 per round), then `--sequential` back-to-back searches from one client (default 50 per round).

Every search sends a different drawing: the doodle benchmark's mouse doodles (`benchmarks/doodles.json`; mirrored
and shifted copies once the originals are used up) as the page sends them, Quick, Draw! strokes with times, or
drawn on the 512 x 512 canvas as a PNG (uploaded, then sent as the image editor's value), so no result cache can
help. Clients speak raw HTTP to Gradio's API (`/gradio_api/call/search` and its event stream) with asyncio, spread
over `--processes` processes, so the load generator is not the bottleneck; each client keeps one Gradio session,
as gradio_client and a browser tab do. Per row: errors, p50/p95/max latency, throughput (successful searches per
second of wall time) and the server process's CPU time per search (utime + stime from /proc). Also reports the
cold start (seconds from launching app.py to its first answered search) and, unless `--no-cost`, where a search's
CPU goes, per way in: Gradio's floor (the floor's CPU per search), the handler apart from the forward pass and the
forward pass (`search_cost` on the app's model, in this process, before the load), and the rest (the app's CPU per
search under load less those three). Exits 1 when any search failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
DOODLES = REPO / "benchmarks" / "doodles.json"
INPUTS = ("strokes", "image")
TARGETS = {"cpu_vs_floor": 2.0, "throughput_vs_floor": 0.45, "cold_start_s": 10.0, "strokes_vs_image": 1.5,
           "handler_ms": 1.0}


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


def make_drawings(n: int, source: Path = DOODLES) -> list[list]:
    """`n` distinct drawings as the page sends them: strokes [xs, ys, ts] in canvas pixels and milliseconds, from the
    doodle file's doodles, then mirrored and shifted copies once the originals run out."""
    spec = json.loads(source.read_text())
    doodles, last = spec["doodles"], spec["canvas"] - 1
    out = []
    for i in range(n):
        variant, strokes, start = i // len(doodles), [], 0
        shift = 8 * (variant // 2)
        for stroke in doodles[i % len(doodles)]["strokes"]:
            xs = [min(last, (last - x if variant % 2 else x) + shift) for x, _ in stroke]
            ys = [min(last, y + shift) for _, y in stroke]
            strokes.append([xs, ys, [start + 16 * j for j in range(len(stroke))]])  # a point every 16 ms
            start = strokes[-1][2][-1] + 250
        out.append(strokes)
    return out


def make_canvases(drawings: list[list], folder: Path) -> list[Path]:
    """Each drawing as the canvas PNG the page sent before strokes: 512 x 512 RGBA, the 6-px brush."""
    from benchmarks.doodle import render  # not at the top: the load generator's processes import this module

    paths = []
    for i, drawing in enumerate(drawings):
        path = folder / f"{i:05d}.png"
        render([list(zip(xs, ys, strict=True)) for xs, ys, _ in drawing]).save(path)
        paths.append(path)
    return paths


async def one_search(client: httpx.AsyncClient, url: str, sketch: list | str, k: int, session: str) -> float | str:
    """Call /search in the client's `session` (as gradio_client does: one per client) with a drawing's strokes, or
    with a canvas PNG (a path) uploaded first, and read the event stream: the latency, or the error text."""
    t0 = time.perf_counter()
    try:
        if isinstance(sketch, str):
            upload = await client.post(f"{url}gradio_api/upload",
                                       files={"files": (Path(sketch).name, Path(sketch).read_bytes(), "image/png")})
            upload.raise_for_status()
            data = {"path": upload.json()[0], "meta": {"_type": "gradio.FileData"}}
            sketch = {"background": None, "layers": [], "composite": data}
        call = await client.post(f"{url}gradio_api/call/search",
                                 json={"data": [sketch, "GZS", k], "session_hash": session})
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


async def clients_async(url: str, jobs: list[list], k: int, start_at: float) -> list:
    """One asyncio task per client, each sending its sketches (drawings, or canvas PNG paths) one after another."""
    limits = httpx.Limits(max_connections=len(jobs) * 2 + 4)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        await asyncio.sleep(max(0.0, start_at - time.time()))

        async def run(sketches: list) -> list:
            session = uuid.uuid4().hex
            return [await one_search(client, url, s, k, session) for s in sketches]

        return [r for rs in await asyncio.gather(*(run(j) for j in jobs)) for r in rs]


def _process(args: tuple) -> list:
    return asyncio.run(clients_async(*args))


def timed_round(url: str, pid: int, sketches: list, clients: int, processes: int, k: int,
                pool) -> tuple[list, float, float]:
    """`clients` clients sharing `sketches` evenly, spread over `processes` processes and started together:
    (latencies or error texts, wall seconds, server CPU seconds)."""
    per_client = len(sketches) // clients
    jobs = [sketches[c * per_client:(c + 1) * per_client] for c in range(clients)]
    groups = [jobs[p::processes] for p in range(processes) if jobs[p::processes]]
    start_at = time.time() + 1.0  # every process connected and waiting before the first search
    cpu0 = cpu_seconds(pid)
    results = [r for part in pool.map(_process, [(url, g, k, start_at) for g in groups]) for r in part]
    return results, time.time() - start_at, cpu_seconds(pid) - cpu0


def summarise(server: str, way_in: str, clients: int, rounds: list[tuple[list, float, float]]) -> dict:
    """One row from a scenario's rounds: latencies pooled, throughput and CPU over the summed wall and CPU time."""
    results = [r for part, _, _ in rounds for r in part]
    wall, cpu = sum(w for _, w, _ in rounds), sum(c for _, _, c in rounds)
    latencies = [r for r in results if isinstance(r, float)]
    errors = [r for r in results if not isinstance(r, float)]
    row = {"scenario": f"{server} {way_in}{' sequential' if clients == 1 else ''}", "server": server,
           "input": way_in, "clients": clients, "queries": len(results), "rounds": len(rounds),
           "errors": len(errors), "p50_s": None, "p95_s": None, "max_s": None,
           "throughput_qps": round(len(latencies) / wall, 2),
           "server_cpu_ms_per_search": round(1000 * cpu / max(len(results), 1), 1), "wall_s": round(wall, 2),
           "first_errors": errors[:3]}
    if latencies:
        row.update(p50_s=round(float(np.percentile(latencies, 50)), 3),
                   p95_s=round(float(np.percentile(latencies, 95)), 3), max_s=round(max(latencies), 3))
    return row


def _row(rows: list[dict], server: str, way_in: str, clients: int) -> dict | None:
    return next((r for r in rows if (r["server"], r["input"], r["clients"]) == (server, way_in, clients)), None)


def compare(rows: list[dict]) -> list[dict]:
    """The targets: the app against the floor at the same load and way in (CPU per search <= 2x, throughput >=
    0.45x), the app's throughput with strokes against images at the same load (>= 1.5x), and 0 errors."""
    out = []
    for row in rows:
        floor = _row(rows, "floor", row["input"], row["clients"])
        if row["server"] == "floor" or floor is None:
            continue
        cpu = row["server_cpu_ms_per_search"] / max(floor["server_cpu_ms_per_search"], 1e-9)
        row["vs_floor"] = {"server_cpu": round(cpu, 2),
                           "throughput": round(row["throughput_qps"] / max(floor["throughput_qps"], 1e-9), 2)}
        load = f"{row['input']}, {row['clients']} client{'s' * (row['clients'] > 1)}"
        out.append({"target": f"server CPU per search / floor ({load})", "measured": cpu,
                    "threshold": f"<= {TARGETS['cpu_vs_floor']}", "ok": cpu <= TARGETS["cpu_vs_floor"]})
        if row["clients"] > 1:
            ratio = row["vs_floor"]["throughput"]
            out.append({"target": f"throughput / floor ({load})", "measured": ratio,
                        "threshold": f">= {TARGETS['throughput_vs_floor']}",
                        "ok": ratio >= TARGETS["throughput_vs_floor"]})
    for row in rows:
        image = _row(rows, "search", "image", row["clients"])
        if (row["server"], row["input"]) == ("search", "strokes") and image is not None and row["clients"] > 1:
            ratio = row["throughput_qps"] / max(image["throughput_qps"], 1e-9)
            out.append({"target": f"throughput, strokes / image ({row['clients']} clients)", "measured": ratio,
                        "threshold": f">= {TARGETS['strokes_vs_image']}", "ok": ratio >= TARGETS["strokes_vs_image"]})
    errors = sum(r["errors"] for r in rows)
    out.append({"target": "errors", "measured": errors, "threshold": "0", "ok": errors == 0})
    return out


def breakdown(rows: list[dict], cost: dict[str, dict[str, float]], clients: int) -> dict[str, dict[str, float]]:
    """Per way in, where the app's CPU per search under `clients` clients goes: Gradio's floor, the handler apart
    from the forward pass, the forward pass (both from `search_cost`), and the rest."""
    out = {}
    for way_in, pieces in cost.items():
        app, floor = _row(rows, "search", way_in, clients), _row(rows, "floor", way_in, clients)
        if app is None or floor is None:
            continue
        parts = {"Gradio's floor": floor["server_cpu_ms_per_search"],
                 "handler apart from the forward pass": pieces["handler apart from the forward pass"],
                 "forward pass": pieces["forward"]}
        parts["the rest"] = app["server_cpu_ms_per_search"] - sum(parts.values())
        parts["app CPU per search"] = app["server_cpu_ms_per_search"]
        out[way_in] = {name: round(ms, 2) for name, ms in parts.items()}
    return out


def cost_targets(cost: dict[str, dict[str, float]]) -> list[dict]:
    if "strokes" not in cost:
        return []
    ms = cost["strokes"]["handler apart from the forward pass"]
    return [{"target": "handler apart from the forward pass, strokes (ms)", "measured": ms,
             "threshold": f"<= {TARGETS['handler_ms']}", "ok": ms <= TARGETS["handler_ms"]}]


def print_report(rows: list[dict], targets: list[dict], startup: dict, parts: dict) -> None:
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
    if parts:
        print("\nCPU ms per search under the concurrent load, where it goes:")
        names = list(next(iter(parts.values())))
        print(f"{'':<38}" + "".join(f"{way_in:>10}" for way_in in parts))
        for name in names:
            print(f"{name:<38}" + "".join(f"{parts[way_in][name]:>10.2f}" for way_in in parts))
    print()
    for t in targets:
        print(f"{'PASS' if t['ok'] else 'MISS'}  {t['target']}: {t['measured']:.2f} (target {t['threshold']})")


def measure_cost(model: Path, folder: Path, inputs: list[str], rounds: int) -> dict[str, dict[str, float]]:
    """`search_cost` on the app's model, both ways in, in this process (the servers idle meanwhile)."""
    from benchmarks.search_cost import load_state, measure, ways_in

    state = load_state(model, folder / "cost-cache")
    return measure(state, {k: v for k, v in ways_in(104, folder).items() if k in inputs}, rounds)


def start_servers(args, tmp: Path, first: list) -> tuple[list, dict, dict]:
    """The app (a cold start, answering `first`) and the floor: (processes, {name: (url, pid)}, startup)."""
    procs, servers, startup = [], {}, {}
    if args.url:
        servers["app"] = (args.url, args.server_pid)
    else:
        cmd = [sys.executable, str(args.app), "--offline", "--cache-dir", str(tmp / "cache"), *args.app_arg]
        launched = time.perf_counter()
        proc, url, http_s = start_server(cmd, args.startup_timeout, tmp / "app.log")
        procs.append(proc)
        servers["app"] = (url, proc.pid)
        answer = asyncio.run(clients_async(url, [[first]], args.top_k, 0))[0]
        startup = {"http_s": round(http_s, 2), "first_search_s": round(time.perf_counter() - launched, 2),
                   "first_search_ok": isinstance(answer, float)}
    if not args.no_floor:
        proc, url, _ = start_server([sys.executable, "-m", "benchmarks.floor_app"], args.startup_timeout,
                                    tmp / "floor.log")
        procs.append(proc)
        servers["floor"] = (url, proc.pid)
    return procs, servers, startup


def parse_args(argv: list[str] | None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running app to test instead of starting app.py (needs --server-pid)")
    parser.add_argument("--server-pid", type=int, help="with --url: the server's process id, for its CPU time")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients (default: %(default)s)")
    parser.add_argument("--queries", type=int, default=5, help="searches per concurrent client (default: %(default)s)")
    parser.add_argument("--sequential", type=int, default=50,
                        help="back-to-back searches from one client, 0 to skip (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds per scenario, floor and app and ways in taking turns, so load drift hits all "
                             "alike (default: %(default)s)")
    parser.add_argument("--inputs", nargs="+", choices=INPUTS, default=list(INPUTS),
                        help="ways in: strokes, and/or the canvas PNG (default: both)")
    parser.add_argument("--processes", type=int, default=2, help="load-generator processes (default: %(default)s)")
    parser.add_argument("--top-k", type=int, default=10, help="photos per search (default: %(default)s)")
    parser.add_argument("--doodles", type=Path, default=DOODLES, help="the drawings (default: the doodle benchmark's)")
    parser.add_argument("--model", type=Path, default=REPO / "weights" / "mini",
                        help="the app's model, for the cost breakdown (default: %(default)s)")
    parser.add_argument("--no-cost", action="store_true", help="skip the cost breakdown (search_cost)")
    parser.add_argument("--app-arg", action="append", default=[], metavar="ARG",
                        help="extra argument for app.py, repeatable, e.g. --app-arg=--mode --app-arg=fast")
    parser.add_argument("--app", type=Path, default=REPO / "app.py", help="the app to start (default: this repo's)")
    parser.add_argument("--no-floor", action="store_true", help="skip the floor server")
    parser.add_argument("--startup-timeout", type=float, default=600, help="seconds to wait for a server")
    parser.add_argument("--json", metavar="OUT", help="also write the results as JSON")
    args = parser.parse_args(argv)
    if args.url and not args.server_pid:
        parser.error("--url needs --server-pid (the server's CPU time is measured)")
    return args


def run_load(args, servers: dict, sketches: dict[str, list]) -> list[dict]:
    """Every load x server x way in, round by round, taking turns: the rows."""
    rows = []
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(args.processes) as pool:
        for url, _ in servers.values():  # warm-up: first-request costs are not what visitors see
            asyncio.run(clients_async(url, [[each.pop() for each in sketches.values()]], args.top_k, 0))
        loads = [(args.clients, args.clients * args.queries, args.processes)]
        if args.sequential:
            loads.append((1, args.sequential, 1))
        order = sorted(servers, key=lambda s: s != "floor")  # the floor first, then the app, round by round
        for clients, n, processes in loads:
            rounds: dict[tuple[str, str], list] = {(name, way_in): [] for name in order for way_in in sketches}
            for _ in range(args.rounds):
                for name, way_in in rounds:
                    url, pid = servers[name]
                    batch = [sketches[way_in].pop() for _ in range(n)]
                    rounds[name, way_in].append(timed_round(url, pid, batch, clients, processes, args.top_k, pool))
            rows += [summarise("search" if name == "app" else name, way_in, clients, measured)
                     for (name, way_in), measured in rounds.items()]
    return rows


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    procs, servers, startup, cost = [], {}, {}, {}
    tmp = tempfile.TemporaryDirectory()
    folder = Path(tmp.name)
    try:
        per_input = 1 + args.rounds * (args.clients * args.queries + args.sequential)  # per server, warm-up included
        drawings = make_drawings(2 * per_input + 1, args.doodles)
        sketches = {"strokes": drawings[:]} if "strokes" in args.inputs else {}
        if "image" in args.inputs:
            sketches["image"] = [str(p) for p in make_canvases(drawings, folder)]
        procs, servers, startup = start_servers(args, folder, drawings[-1])
        if not args.no_cost:
            cost = measure_cost(args.model, folder, args.inputs, rounds=3)
        rows = run_load(args, servers, sketches)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=30)
        tmp.cleanup()
    targets = (compare(rows) if "floor" in servers else []) + cost_targets(cost)
    if startup:
        targets.append({"target": "cold start: launch to first answered search (s)",
                        "measured": startup["first_search_s"], "threshold": f"<= {TARGETS['cold_start_s']}",
                        "ok": startup["first_search_ok"] and startup["first_search_s"] <= TARGETS["cold_start_s"]})
    parts = breakdown(rows, cost, args.clients) if cost else {}
    print_report(rows, targets, startup, parts)
    if args.json:
        Path(args.json).write_text(json.dumps({
            "url": servers["app"][0], "machine": platform.platform(), "cpus": os.cpu_count(),
            "load_average": list(os.getloadavg()), "top_k": args.top_k, "app_args": args.app_arg,
            "inputs": {"distinct_drawings": len(drawings), "ways_in": list(sketches)}, "startup": startup,
            "results": rows, "search_cost_ms": cost, "cpu_breakdown_ms": parts, "targets": targets}, indent=2) + "\n")
    if any(r["errors"] for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
