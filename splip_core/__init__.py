"""SpLIP sketch-based image retrieval on a frozen open_clip CLIP: the public API.

The demo and the command lines use only what is exported here.
"""

from .backbone import BackboneError
from .config import ConfigError, SpLIPConfig
from .model import CheckpointError, SpLIP
from .preprocess import InvalidImageError, is_blank, load_image

__all__ = [
    "BackboneError",
    "CheckpointError",
    "ConfigError",
    "InvalidImageError",
    "SpLIP",
    "SpLIPConfig",
    "is_blank",
    "load_image",
]
