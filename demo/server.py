"""Launching the demo: only the gallery, example and upload folders readable, uploads capped, and a share tunnel
that fails (no network) reported in one line while the app keeps serving locally. Gradio's own startup lines are
printed as usual; ours follow them, each starting with "* "."""

from __future__ import annotations

import gradio as gr

from .state import DemoState
from .ui import CSS, SEARCH_CONCURRENCY, THEME, TORCH_THREADS


def serve(app: gr.Blocks, state: DemoState, host: str = "127.0.0.1", port: int | None = None,
          share: bool = False, block: bool = True) -> tuple[str, str | None]:
    """Start the server and return (local URL, share URL or None); with `block`, serve until interrupted."""
    _, local_url, share_url = app.launch(
        server_name=host, server_port=port, share=share, prevent_thread_lock=True, allowed_paths=state.allowed_paths(),
        max_file_size=state.limits.max_file_bytes, show_error=True, theme=THEME, css=CSS, ssr_mode=False)
    c = state.model.config
    print(f"* SpLIP demo on {local_url}  (model: {state.model_name}, {c.inference_mode} mode; gallery: "
          f"{state.space.name if state.space else 'none'}; {SEARCH_CONCURRENCY} searches at a time x "
          f"{TORCH_THREADS} torch thread)", flush=True)
    for notice in state.notices:
        print(f"* Note: {notice}", flush=True)
    if share and share_url:
        print(f"* Public share link: {share_url}", flush=True)
    elif share:
        print(f"* No share link: the Gradio share server cannot be reached (no network?); serving locally on "
              f"{local_url} only.", flush=True)
    if block:
        app.block_thread()
    return local_url, share_url
