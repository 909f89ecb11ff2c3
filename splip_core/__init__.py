"""SpLIP sketch-based image retrieval on a frozen open_clip CLIP: the public API.

The demo, the command lines' users and the Space use only what is exported here: the model and its config, the
training presets, image loading, drawings sent as strokes (`stroke_sketch`), how photos are ranked for a sketch
(`Ranker`), the searchable photo gallery, and the class-name rules.
"""

from .backbone import BackboneError
from .config import BackboneConfig, ConfigError, LossConfig, PromptConfig, RankingConfig, SpLIPConfig, TrainOptions
from .configs import list_presets, load_preset
from .data.datasets import DOODLE_PREFIX
from .hub import CheckpointError
from .metrics import format_difference
from .model import SpLIP
from .names import class_key, display_name, folder_name
from .preprocess import IMAGE_SUFFIXES, MAX_IMAGE_BYTES, InvalidImageError, drawn_sketch, is_blank, load_image
from .ranking import Ranker
from .strokes import InvalidStrokesError, stroke_sketch
from .tiny import tiny_model

__version__ = "0.2.0"

# Loaded on first use: importing the package must not import splip_core.cache (it runs as `python -m
# splip_core.cache`, and runpy warns when the module it is asked to run was imported first).
_FROM_GALLERY = ("EmptyGalleryError", "Gallery", "Hit")


def __getattr__(name: str):
    if name in _FROM_GALLERY:
        from . import gallery

        return getattr(gallery, name)
    raise AttributeError(f"module 'splip_core' has no attribute {name!r}")


__all__ = [
    "DOODLE_PREFIX",
    "IMAGE_SUFFIXES",
    "MAX_IMAGE_BYTES",
    "BackboneConfig",
    "BackboneError",
    "CheckpointError",
    "ConfigError",
    "EmptyGalleryError",
    "Gallery",
    "Hit",
    "InvalidImageError",
    "InvalidStrokesError",
    "LossConfig",
    "PromptConfig",
    "Ranker",
    "RankingConfig",
    "SpLIP",
    "SpLIPConfig",
    "TrainOptions",
    "__version__",
    "class_key",
    "display_name",
    "drawn_sketch",
    "folder_name",
    "format_difference",
    "is_blank",
    "list_presets",
    "load_image",
    "load_preset",
    "stroke_sketch",
    "tiny_model",
]
