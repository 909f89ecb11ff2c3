"""The SpLIP sketchpad demo: draw a sketch, get the top-k photos from SpLIP and from the frozen CLIP baseline.

`state` loads the model and galleries, `handlers` does the work as plain functions, `ui` lays out and wires the
Gradio Blocks, `server` launches them, and `uploads` turns uploads into gallery folders. It uses only
`splip_core`'s public modules.
"""

from .state import DemoState
from .ui import build_app

__all__ = ["DemoState", "build_app"]
