"""Where one search's own CPU goes: `python -m benchmarks.search_cost [--model weights/mini] [--canvas 512 256]`.

The demo's `/search` handler piece by piece, on one torch thread, for canvases as the browser sends them (RGBA PNGs
of the offline world's test sketches, as the load test draws them): decoding and flattening the PNG (`load_image`),
the ink pass and crop or doodle bitmap (`drawn_sketch`), preprocessing, and the encoder traced as the demo serves it,
in the mode the demo picks for the model. Canvas sizes take turns round by round, so drift hits all alike; the
median over rounds of each piece's mean is reported. Run it with nothing else on the machine (or paused): on two
cores anything beside it shows up in every number.
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmarks.load_test import SKETCHES, make_sketches
from demo.state import choose_inference_mode
from splip_core import SpLIP, drawn_sketch, load_image

REPO = Path(__file__).resolve().parents[1]
PIECES = ("decode", "ink", "preprocess", "encode")


def canvases(n: int, side: int, source: Path = SKETCHES) -> list[bytes]:
    """`n` distinct RGBA canvas PNGs `side` pixels square, as the Sketchpad uploads them."""
    with tempfile.TemporaryDirectory() as tmp:
        paths, _ = make_sketches(n, Path(tmp), source)
        out = []
        for path in paths:
            image = Image.open(path).convert("RGBA")
            if image.width != side:
                image = image.resize((side, side), Image.LANCZOS)
            buffer = io.BytesIO()
            image.save(buffer, "PNG")
            out.append(buffer.getvalue())
    return out


def one_round(model: SpLIP, blobs: list[bytes]) -> dict[str, float]:
    """Mean milliseconds of each piece over `blobs`."""
    total = dict.fromkeys(PIECES, 0.0)
    for blob in blobs:
        t0 = time.perf_counter()
        image = load_image(blob)
        t1 = time.perf_counter()
        sketch = drawn_sketch(image, pixels=model.config.sketch_pixels)
        t2 = time.perf_counter()
        pixels = model.preprocess(sketch)
        t3 = time.perf_counter()
        model.encode_sketch(pixels)
        t4 = time.perf_counter()
        for piece, seconds in zip(PIECES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            total[piece] += seconds
    return {piece: 1000 * seconds / len(blobs) for piece, seconds in total.items()}


def measure(model: SpLIP, sides: list[int], n: int = 60, rounds: int = 5,
            source: Path = SKETCHES) -> dict[int, dict[str, float]]:
    """Per canvas side, the median over `rounds` of each piece's mean ms, and their sum as "total"."""
    blobs = {side: canvases(n, side, source) for side in sides}
    one_round(model, blobs[sides[0]][:5])  # warm-up: the traces' first calls
    runs: dict[int, list[dict[str, float]]] = {side: [] for side in sides}
    for _ in range(rounds):
        for side in sides:
            runs[side].append(one_round(model, blobs[side]))
    out = {}
    for side, rows in runs.items():
        medians = {piece: round(float(np.median([r[piece] for r in rows])), 3) for piece in PIECES}
        out[side] = {**medians, "total": round(sum(medians.values()), 3)}
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=REPO / "weights" / "mini")
    parser.add_argument("--canvas", type=int, nargs="+", default=[512], help="canvas sides in pixels")
    parser.add_argument("--n", type=int, default=60, help="distinct canvases per side")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", metavar="OUT", help="also write the results as JSON")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    model = SpLIP.from_pretrained(args.model)
    evaluation = args.model / "evaluation.json"
    mode, _ = choose_inference_mode(json.loads(evaluation.read_text()) if evaluation.is_file() else None)
    if mode:
        model.set_inference_mode(mode)
    model.trace_for_serving()
    results = measure(model, args.canvas, args.n, args.rounds, args.model / "gallery" / "sketch")
    print(f"ms per search, one thread, {model.config.inference_mode} mode, median of {args.rounds} rounds")
    print(f"{'canvas':>7} " + " ".join(f"{p:>10}" for p in (*PIECES, "total")))
    for side, row in results.items():
        print(f"{side:>7} " + " ".join(f"{row[p]:>10.2f}" for p in (*PIECES, "total")))
    if args.json:
        Path(args.json).write_text(json.dumps({"model": str(args.model), "mode": model.config.inference_mode,
                                               "threads": 1, "n": args.n, "rounds": args.rounds,
                                               "ms_per_search": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
