"""Deploy the app to a Hugging Face Space: `python -m demo.deploy OWNER/SPACE [--dry-run] [--private]`.

A Space refuses a git push that holds a file of 10 MiB or more outside Git LFS, and this repository's history holds
the offline world's 20.7 MB backbone as a plain git object. So the deploy sends files, not history:
huggingface_hub's `upload_folder` uploads what the Space runs (the app, the demo, the library, the offline world,
requirements.txt, the README whose front matter is the Space's config, .gitattributes) and moves large and binary
files through LFS by itself. It creates the Space (SDK gradio) when it does not exist. `--dry-run` lists what
would be sent, with sizes, and touches no network. The token is huggingface_hub's usual one (`hf auth login`,
or $HF_TOKEN); set the Space variable SPLIP_MODEL to serve a Hub checkpoint instead of the bundled world.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

from huggingface_hub import HfApi
from huggingface_hub.hf_api import DEFAULT_IGNORE_PATTERNS
from huggingface_hub.utils import filter_repo_objects

REPO_ROOT = Path(__file__).resolve().parent.parent
SEND = ["app.py", "README.md", "requirements.txt", ".gitattributes", "demo/**", "splip_core/**", "weights/**",
        "docs/**"]
SKIP = ["**/__pycache__/**", "**/*.pyc", "**/.DS_Store"]
LFS_LIMIT = 10 * 1024 * 1024  # a Space refuses larger files pushed outside Git LFS
SPACE_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def files_to_send(root: Path = REPO_ROOT) -> list[tuple[str, int]]:
    """(path in the Space, bytes) of every file `upload_folder` sends from `root` with SEND and SKIP, sorted: the
    same listing and filter it applies itself."""
    paths = {p.relative_to(root).as_posix(): p for p in sorted(root.glob("**/*")) if p.is_file()}
    kept = filter_repo_objects(paths, allow_patterns=SEND, ignore_patterns=SKIP + DEFAULT_IGNORE_PATTERNS)
    return [(path, paths[path].stat().st_size) for path in kept]


def outside_lfs(root: Path = REPO_ROOT, min_bytes: int = LFS_LIMIT) -> list[str]:
    """Files git tracks under `root` of `min_bytes` or more that .gitattributes does not put in Git LFS (what a Space
    would refuse in a push); [] outside a git checkout."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return []
    big = [p for p in listed.decode().split("\0")
           if p and (root / p).is_file() and (root / p).stat().st_size >= min_bytes]
    if not big:
        return []
    attributes = subprocess.run(["git", "check-attr", "-z", "filter", "--", *big], cwd=root, capture_output=True,
                                check=True).stdout.decode().split("\0")
    filters = dict(zip(attributes[0::3], attributes[2::3], strict=False))  # path, attribute, value triples
    return [p for p in big if filters.get(p) != "lfs"]


def deploy(space_id: str, root: Path = REPO_ROOT, private: bool = False, token: str | None = None) -> str:
    """Create the Space if needed and upload the files it runs; returns the Space's URL."""
    api = HfApi(token=token)
    url = api.create_repo(space_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
    api.upload_folder(repo_id=space_id, repo_type="space", folder_path=root, allow_patterns=SEND,
                      ignore_patterns=SKIP, delete_patterns=SEND,  # a file gone here goes there too
                      commit_message="Deploy the SpLIP sketch search app")
    return str(url)


def _size(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MB" if n >= 1024 * 1024 else f"{n / 1024:.1f} kB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo.deploy", description=__doc__.split("\n\n")[0])
    parser.add_argument("space", metavar="OWNER/SPACE", help="the Space to create or update")
    parser.add_argument("--dry-run", action="store_true", help="list what would be sent; touch no network")
    parser.add_argument("--private", action="store_true", help="create the Space private")
    parser.add_argument("--token", help="a Hugging Face token (default: huggingface_hub's own)")
    args = parser.parse_args(argv)
    if not SPACE_ID.match(args.space):
        parser.error(f"the Space must be OWNER/NAME, got {args.space!r}")
    if args.dry_run:
        files = files_to_send()
        for path, size in files:
            print(f"{_size(size):>10}  {path}")
        print(f"{len(files)} files, {_size(sum(s for _, s in files))}, would go to "
              f"https://huggingface.co/spaces/{args.space}")
        for path in outside_lfs():
            print(f"note: {path} is over {_size(LFS_LIMIT)} and not in Git LFS (.gitattributes): a git push of "
                  "this repository to a Space would be refused; this upload is not")
        return 0
    print(f"Deployed: {deploy(args.space, private=args.private, token=args.token)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
