"""`python -m splip_core.mini build ...` rebuilds the offline world (see splip_core/mini/build.py)."""

import sys

from ..runtime import run_cli
from .build import main

if __name__ == "__main__":
    if sys.argv[1:2] != ["build"]:
        sys.exit("usage: python -m splip_core.mini build [--out weights/mini] [--help]")
    sys.exit(run_cli(main, sys.argv[2:]))
