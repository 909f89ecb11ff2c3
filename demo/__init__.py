"""The SpLIP sketchpad demo: draw a sketch, get the top-k photos from SpLIP and from the frozen CLIP baseline.

`state` loads the model and galleries, `handlers` does the work as plain functions, `ui` lays out the Gradio Blocks
and handles their events, `sketchpad` is the drawing canvas that sends strokes, `server` launches the app,
`uploads` turns uploads into gallery folders, and `deploy` sends the app to a Hugging Face Space. It uses only
`splip_core`'s public modules.
"""

from .state import DemoState
from .ui import build_app

__all__ = ["DemoState", "build_app"]
