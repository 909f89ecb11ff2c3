"""Search a folder of photos with one sketch: `python -m splip_core.search --help`.

Gallery embeddings are cached on disk (keyed by file content, model fingerprint and inference mode), so the
second search of the same folder only encodes the sketch.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .gallery import Gallery
from .index import BACKENDS
from .model import SpLIP
from .ranking import Ranker
from .runtime import load_model, run_cli, use_all_cores


def photo_embedder(model: SpLIP, batch_size: int = 32):
    """The `embed_fn` a Gallery wants: list of PIL photos -> float32 numpy (N, D)."""
    return lambda images: model.encode_photo(images, batch_size=batch_size).numpy()


def open_gallery(model: SpLIP, folder: str | Path, cache_dir: str | Path | None = None, backend: str = "exact",
                 batch_size: int = 32, progress: bool = True, progress_callback=None) -> Gallery:
    """Index `folder` with `model` through the on-disk embedding cache, ranked as the model's ranking says."""
    cache = Path(cache_dir) if cache_dir else Path(folder) / ".splip-cache"
    ranker = Ranker.of(model)
    return Gallery.from_folder(folder, photo_embedder(model, batch_size), model.fingerprint(),
                               model.config.inference_mode, cache_dir=cache, backend=backend, batch_size=batch_size,
                               progress=progress, progress_callback=progress_callback,
                               to_search=lambda vectors: ranker.vectors(vectors, "photo").numpy())


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m splip_core.search", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="checkpoint directory or Hub repo id (e.g. weights/mini)")
    p.add_argument("--gallery", required=True, help="folder of photos (class sub-folders give labels)")
    p.add_argument("--sketch", required=True, help="the sketch image file")
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument("--mode", choices=["faithful", "fast"], help="override the checkpoint's inference mode")
    p.add_argument("--backend", choices=BACKENDS, default="exact")
    p.add_argument("--cache-dir", help="embedding cache (default: GALLERY/.splip-cache)")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    use_all_cores()
    model = load_model(args.model, args.device, args.mode)
    query = Ranker.of(model).vectors(model.encode_sketch([args.sketch]), "sketch")
    gallery = open_gallery(model, args.gallery, args.cache_dir, args.backend)
    hits = gallery.search(query[0].numpy(), args.top_k)
    if args.json:
        print(json.dumps([{"rank": i + 1, "path": str(h.path), "label": h.label, "score": round(h.score, 4)}
                          for i, h in enumerate(hits)], indent=2))
    else:
        for i, hit in enumerate(hits, 1):
            print(f"{i:>3}  {hit.score:.4f}  {hit.label or '-':<20}  {hit.path}")
    if gallery.skipped:
        print(f"({len(gallery.skipped)} files skipped: not readable images)")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
