"""Start the SpLIP sketch-search demo (`python app.py --help`; `gradio app.py` reloads it on every edit); also what
a Hugging Face Space runs. The Blocks object is `demo`, at module level."""

from __future__ import annotations

import argparse
import os

MAX_TOP_K = 50  # = demo.handlers.MAX_K, not imported: --offline must set HF_HUB_OFFLINE before huggingface_hub loads


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Draw a sketch and see the top-k photos found by SpLIP and by the frozen CLIP baseline.")
    parser.add_argument("--model", metavar="REPO_OR_DIR", default=os.environ.get("SPLIP_MODEL"),
                        help="SpLIP checkpoint: a folder or a Hugging Face Hub repo id (default: $SPLIP_MODEL, "
                             "else the offline world in weights/mini). One that cannot be loaded falls back to "
                             "the offline world, with a notice in the UI.")
    parser.add_argument("--gallery", metavar="DIR",
                        help="folder of photos to search; class sub-folders become labels, loose photos are fine, "
                             "non-images are skipped (default: the offline world's test photos)")
    parser.add_argument("--offline", action="store_true",
                        help="no network: load --model only from disk or the local Hugging Face cache")
    parser.add_argument("--share", action="store_true",
                        help="also open a public gradio.live link (if the share server cannot be reached, the app "
                             "says so and serves locally)")
    parser.add_argument("--host", metavar="H", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                        help="address to listen on; 0.0.0.0 for every interface (default: %(default)s)")
    parser.add_argument("--port", metavar="P", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)),
                        help="port to listen on (default: %(default)s)")
    parser.add_argument("--top-k", metavar="K", type=int, default=10,
                        help=f"photos shown per search, 1-{MAX_TOP_K}; changeable in the UI (default: %(default)s)")
    parser.add_argument("--cache-dir", metavar="DIR", default=os.environ.get("SPLIP_CACHE_DIR"),
                        help="where gallery embeddings and uploads are kept (default: $SPLIP_CACHE_DIR, else "
                             "~/.cache/splip/demo)")
    parser.add_argument("--backend", default="exact",
                        choices=["exact", "faiss-flat", "faiss-hnsw", "faiss-ivf", "milvus"],
                        help="search index for the gallery (default: exact in-process top-k)")
    parser.add_argument("--milvus-uri", metavar="URI",
                        help="with --backend milvus: a Milvus server (http://host:19530) or a Milvus Lite file "
                             "(default: CACHE_DIR/gallery.db)")
    parser.add_argument("--mode", choices=["faithful", "fast"], default=os.environ.get("SPLIP_MODE") or None,
                        help="inference mode: faithful (the paper's per-image text pass) or fast (approximation: "
                             "visual prompts from the training mean, about plain-CLIP cost); default: $SPLIP_MODE, "
                             "else the model's")
    args = parser.parse_args(argv)
    if args.mode not in (None, "faithful", "fast"):
        parser.error(f"SPLIP_MODE must be 'faithful' or 'fast', got {args.mode!r}")
    if not 1 <= args.top_k <= MAX_TOP_K:
        parser.error(f"--top-k must be between 1 and {MAX_TOP_K}, got {args.top_k}")
    return args


def load_state(args: argparse.Namespace):
    """The thread budget, then the model and galleries (once per process: not again when `gradio app.py` reloads
    the page's code)."""
    import torch

    from demo import DemoState
    from demo.ui import TORCH_THREADS

    torch.set_num_threads(TORCH_THREADS)  # x SEARCH_CONCURRENCY searches at a time = the cores, no oversubscription
    try:
        return DemoState.create(args.model, args.gallery, offline=args.offline, cache_dir=args.cache_dir,
                                top_k=args.top_k, backend=args.backend, inference_mode=args.mode,
                                milvus_uri=args.milvus_uri)
    except FileNotFoundError as err:
        raise SystemExit(f"error: {err}") from None


if __name__ == "__main__":  # `python app.py`, a Space, and `gradio app.py`, which re-runs this file on each edit
    ARGS = parse_args()
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    if ARGS.offline:
        os.environ["HF_HUB_OFFLINE"] = "1"  # read when huggingface_hub is first imported, just below
    import gradio as gr

    from demo import build_app
    from demo.server import serve

    if gr.NO_RELOAD:
        STATE = load_state(ARGS)
    demo = build_app(STATE)  # the Blocks at module level: what `gradio app.py` swaps in after an edit
    if gr.NO_RELOAD:
        serve(demo, STATE, ARGS.host, ARGS.port, ARGS.share)
