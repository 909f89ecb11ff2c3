"""Deploying to a Hugging Face Space, offline: what `python -m demo.deploy` would send (the same listing and filter
as huggingface_hub's `upload_folder`), what it asks the Hub to do, and that every tracked file a Space would refuse
outside Git LFS (10 MiB or more) is covered by .gitattributes."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from huggingface_hub import HfApi

from demo import deploy

REPO = Path(__file__).resolve().parents[1]
GIT = shutil.which("git")


def test_the_dry_run_lists_what_the_space_runs_and_nothing_else(capsys):
    assert deploy.main(["someone/splip", "--dry-run"]) == 0
    listed = {line.split()[-1] for line in capsys.readouterr().out.splitlines() if "  " in line}
    sent = {path for path, _ in deploy.files_to_send()}
    assert listed == sent
    assert {"app.py", "README.md", "requirements.txt", ".gitattributes", "demo/sketchpad.js", "splip_core/strokes.py",
            "weights/mini/backbone.safetensors", "weights/mini/config.json"} <= sent
    assert not [p for p in sent if p.startswith(("tests/", "benchmarks/", ".ci/", ".git/")) or "__pycache__" in p]


def test_the_listing_is_what_upload_folder_would_send(tmp_path):
    """huggingface_hub's own file selection (offline: no README.md, whose front matter it checks on the Hub)."""
    for path in ("app.py", "demo/ui.py", "demo/__pycache__/ui.cpython-311.pyc", "weights/mini/a.safetensors",
                 "tests/test_x.py", ".git/config", "notes.txt"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("x")
    theirs = HfApi()._prepare_upload_folder_additions(tmp_path, "", allow_patterns=deploy.SEND,
                                                     ignore_patterns=deploy.SKIP + deploy.DEFAULT_IGNORE_PATTERNS)
    ours = deploy.files_to_send(tmp_path)
    assert [p for p, _ in ours] == [op.path_in_repo for op in theirs] == ["app.py", "demo/ui.py",
                                                                            "weights/mini/a.safetensors"]


def test_a_deploy_creates_the_gradio_space_and_uploads_the_selection(monkeypatch):
    calls = []

    class FakeApi:
        def __init__(self, token=None):
            calls.append(("token", token))

        def create_repo(self, repo_id, **kwargs):
            calls.append(("create", repo_id, kwargs))
            return f"https://huggingface.co/spaces/{repo_id}"

        def upload_folder(self, **kwargs):
            calls.append(("upload", kwargs))

    monkeypatch.setattr(deploy, "HfApi", FakeApi)
    assert deploy.deploy("me/splip", token="t") == "https://huggingface.co/spaces/me/splip"
    (_, token), (_, repo, create), (_, upload) = calls
    assert token == "t" and repo == "me/splip"
    assert create == {"repo_type": "space", "space_sdk": "gradio", "private": False, "exist_ok": True}
    assert upload["repo_type"] == "space" and upload["folder_path"] == deploy.REPO_ROOT
    assert upload["allow_patterns"] == deploy.SEND and upload["ignore_patterns"] == deploy.SKIP
    with pytest.raises(SystemExit):
        deploy.main(["not a space id", "--dry-run"])


@pytest.mark.skipif(GIT is None or not (REPO / ".git").exists(), reason="needs git and a checkout")
def test_every_tracked_file_of_10_mib_or_more_and_every_weight_and_gallery_image_is_in_git_lfs():
    assert deploy.outside_lfs(REPO) == []
    tracked = subprocess.run(["git", "ls-files", "weights"], cwd=REPO, capture_output=True, text=True).stdout.split()
    binaries = [p for p in tracked if p.endswith((".safetensors", ".npy", ".jpg", ".png"))]
    assert binaries and not set(binaries) & set(deploy.outside_lfs(REPO, min_bytes=0))  # and every weight, image


@pytest.mark.skipif(GIT is None, reason="needs git")
def test_the_lfs_check_finds_a_large_file_outside_lfs(tmp_path):
    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                       capture_output=True)

    git("init", "-q")
    (tmp_path / "big.bin").write_bytes(b"\0" * deploy.LFS_LIMIT)
    (tmp_path / "weights.safetensors").write_bytes(b"\0" * deploy.LFS_LIMIT)
    (tmp_path / "small.txt").write_text("x")
    (tmp_path / ".gitattributes").write_text("*.safetensors filter=lfs diff=lfs merge=lfs -text\n")
    git("add", ".")
    assert deploy.outside_lfs(tmp_path) == ["big.bin"]
