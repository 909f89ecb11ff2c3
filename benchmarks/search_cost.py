"""Where one search's own CPU goes: `python -m benchmarks.search_cost [--model weights/mini] [--json OUT]`.

The demo's `/search` handler (`handlers.api_search`) on the app's own state, for the doodle benchmark's drawings
(and mirrored, shifted variants: `load_test.make_drawings`) sent both ways in: as strokes, what the page sends now,
and as the 512-px canvas PNG the page sent before (a file, as Gradio hands an upload over). One torch thread, the
mode the demo picks for the model. Per search, the handler's pieces in its own order: the input becoming the
model's image (strokes: read, simplified and drawn; a canvas: decoded, flattened, its ink found and redrawn),
preprocessing, the forward pass (the traced encoder), and the ranking with the answer's rows; the handler is their
sum. (Until the stroke path, this benchmark timed the first three only: its "5.2 ms apart from the forward pass"
was decoding, the ink pass and preprocessing.) The ways in take turns round by round, so drift hits both alike; the
median over rounds of each piece's mean is reported. Run it with nothing else on the machine (or paused): on two
cores anything beside it shows up in every number.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.load_test import make_canvases, make_drawings
from demo import DemoState, handlers

REPO = Path(__file__).resolve().parents[1]
PIECES = ("input", "preprocess", "forward", "ranking")
K = 10


def one_round(state: DemoState, queries: list) -> dict[str, float]:
    """Mean CPU milliseconds of each piece over `queries`, each query going through the pieces as `api_search` runs
    them, one after the other (so each piece finds the caches as the handler leaves them)."""
    total = dict.fromkeys(PIECES, 0.0)
    for query in queries:
        t0 = time.process_time()
        image = handlers.query_image(state, query)
        t1 = time.process_time()
        pixels = state.model.preprocess(image)
        t2 = time.process_time()
        features = state.model.encode_sketch(pixels)
        t3 = time.process_time()
        handlers.api_rows(state.space, handlers.rank(state, state.space, features, None, "GZS", K).splip)
        t4 = time.process_time()
        for piece, seconds in zip(PIECES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            total[piece] += seconds
    return {piece: 1000 * seconds / len(queries) for piece, seconds in total.items()}


def measure(state: DemoState, ways: dict[str, list], rounds: int = 5) -> dict[str, dict[str, float]]:
    """Per way in, the median over `rounds` of each piece's mean ms, the handler (their sum) and the handler apart
    from the forward pass."""
    for queries in ways.values():
        one_round(state, queries[:5])  # warm-up: the traces' first calls
    runs: dict[str, list[dict[str, float]]] = {way: [] for way in ways}
    for _ in range(rounds):
        for way, queries in ways.items():
            runs[way].append(one_round(state, queries))
    out = {}
    for way, rows in runs.items():
        row = {piece: float(np.median([r[piece] for r in rows])) for piece in PIECES}
        row["handler"] = sum(row[piece] for piece in PIECES)
        row["handler apart from the forward pass"] = row["handler"] - row["forward"]
        out[way] = {name: round(ms, 3) for name, ms in row.items()}
    return out


def ways_in(n: int, folder: Path) -> dict[str, list]:
    """`n` distinct drawings, as strokes and as canvas PNG files (the image editor's value, as the API gets it)."""
    drawings = make_drawings(n)
    canvases = make_canvases(drawings, folder)
    return {"strokes": drawings,
            "image": [{"background": None, "layers": [], "composite": str(path)} for path in canvases]}


def load_state(model: Path, cache_dir: Path) -> DemoState:
    """The app's state for `model` (traced encoders, the demo's mode, the gallery), on one torch thread."""
    torch.set_num_threads(1)
    return DemoState.create(str(model), offline=True, cache_dir=cache_dir, mini_dir=model)


def print_table(results: dict[str, dict[str, float]]) -> None:
    names = list(next(iter(results.values())))
    print(f"{'ms per search':<38}" + "".join(f"{way:>10}" for way in results))
    for name in names:
        print(f"{name:<38}" + "".join(f"{results[way][name]:>10.3f}" for way in results))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=REPO / "weights" / "mini")
    parser.add_argument("--n", type=int, default=104, help="distinct drawings per way in")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", metavar="OUT", help="also write the results as JSON")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        state = load_state(args.model, Path(tmp) / "cache")
        results = measure(state, ways_in(args.n, Path(tmp)), args.rounds)
    print(f"one thread, {state.model.config.inference_mode} mode, median of {args.rounds} rounds of {args.n} "
          "drawings")
    print_table(results)
    if args.json:
        Path(args.json).write_text(json.dumps({"model": str(args.model), "mode": state.model.config.inference_mode,
                                               "threads": 1, "n": args.n, "rounds": args.rounds,
                                               "ms_per_search": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
