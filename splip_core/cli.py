"""The console scripts a `pip install` puts on PATH; each runs one command's `main` through `run_cli`.

`splip-train` = `python -m splip_core.train`, `splip-evaluate`, `splip-search`, `splip-cache` likewise, and
`splip-mini build ...` = `python -m splip_core.mini build ...`. Imports are deferred so `--help` stays quick.
"""

from __future__ import annotations

import sys


def _run(module: str, argv: list[str]) -> int:
    from importlib import import_module

    from .runtime import run_cli

    return run_cli(import_module(f"splip_core.{module}").main, argv)


def train() -> int:
    return _run("train", sys.argv[1:])


def evaluate() -> int:
    return _run("evaluate", sys.argv[1:])


def search() -> int:
    return _run("search", sys.argv[1:])


def cache() -> int:
    return _run("cache", sys.argv[1:])


def mini() -> int:
    if sys.argv[1:2] != ["build"]:
        print("usage: splip-mini build [--out weights/mini] [--help]", file=sys.stderr)
        return 2
    return _run("mini.build", sys.argv[2:])
