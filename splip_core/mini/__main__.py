"""`python -m splip_core.mini build ...` rebuilds the offline world (see splip_core/mini/build.py)."""

from ..cli import mini

if __name__ == "__main__":
    raise SystemExit(mini())
