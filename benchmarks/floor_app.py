"""The load test's floor: a Gradio app whose `/search` takes and returns what the demo's does (same typed
signature, strokes or an image, the same JSON; same queue, concurrency and Gradio analytics settings: importing
demo.ui sets them) but does no work, so its cost is the framework's alone.

`python -m benchmarks.floor_app --port P` (started by `benchmarks.load_test`).
"""

from __future__ import annotations

import argparse
import os
from typing import Literal

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr

from demo.ui import QUEUE_SIZE, SEARCH_CONCURRENCY, Sketch


def search(sketch: Sketch, setting: Literal["ZS", "GZS", "FG"] = "GZS", k: int = 10) -> list[dict]:
    """k constant rows shaped like the demo's answer."""
    return [{"rank": r, "photo": f"cat/{r}.jpg", "category": "cat", "score": 0.5, "seen": True}
            for r in range(1, int(k) + 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7861)
    args = parser.parse_args()
    with gr.Blocks(title="floor") as app:
        gr.api(search, api_name="search", concurrency_id="search", concurrency_limit=SEARCH_CONCURRENCY)
    app.queue(max_size=QUEUE_SIZE)
    app.launch(server_name=args.host, server_port=args.port, ssr_mode=False)


if __name__ == "__main__":
    main()
