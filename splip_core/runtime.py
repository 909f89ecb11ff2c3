"""What the command lines share: device choice, CPU threads, seeding, and turning known errors into one line."""

from __future__ import annotations

import logging
import os
import random
import sys
from collections.abc import Callable

import numpy as np
import torch

from .backbone import BackboneError
from .config import ConfigError
from .model import CheckpointError, SpLIP
from .preprocess import InvalidImageError

USER_ERRORS = (BackboneError, CheckpointError, ConfigError, InvalidImageError, FileNotFoundError, ValueError)


def pick_device(name: str = "auto") -> torch.device:
    """"auto" = CUDA when present, else CPU; asking for CUDA without it falls back to CPU with a warning."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        logging.getLogger(__name__).warning("CUDA is not available here: running on the CPU")
        return torch.device("cpu")
    return device


def use_all_cores() -> None:
    """torch's intra-op threads = the cores this process may use (containers often report more than they give)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    torch.set_num_threads(max(1, cores))


def load_model(ref: str, device: str = "auto", mode: str | None = None) -> SpLIP:
    """A checkpoint (directory or Hub id) on the chosen device, its inference mode overridden when `mode` is set."""
    model = SpLIP.from_pretrained(ref).to(pick_device(device))
    if mode:
        model.set_inference_mode(mode)
    return model


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def run_cli(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """Run a command's main; a user error (bad path, bad config, unreadable data) prints one line and exits 2."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        return main(argv)
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
