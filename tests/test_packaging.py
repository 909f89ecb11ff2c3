"""The package as pip sees it: declared dependencies (compatible ranges holding the tested pins), extras, console
scripts, package data, and an import from outside the checkout."""

import re
import shutil
import subprocess
import sys
import zipfile
from importlib import import_module, metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

import splip_core

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = {"splip-train", "splip-evaluate", "splip-search", "splip-cache", "splip-mini"}


def _pins(path: Path) -> dict[str, Version]:
    pins = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s#]+)", line.strip())
        if match:
            pins[canonicalize_name(match[1])] = Version(match[2])
    return pins


def test_dependencies_are_ranges_that_hold_the_tested_versions():
    dist = metadata.distribution("splip")
    requirements = [Requirement(r) for r in dist.requires or []]
    core = [r for r in requirements if r.marker is None]
    assert {canonicalize_name(r.name) for r in core} >= {"torch", "torchvision", "open-clip-torch", "huggingface-hub",
                                              "safetensors", "numpy", "pillow"}
    pins = _pins(REPO / "requirements.txt") | _pins(REPO / "requirements-dev.txt")
    for requirement in requirements:
        name = canonicalize_name(requirement.name)
        if name == "splip":
            continue  # the dev extra pulls the other extras
        assert "==" not in str(requirement.specifier), f"{requirement}: a library declares ranges, not pins"
        assert name in pins, f"{requirement} is declared but requirements*.txt do not pin a tested version"
        assert requirement.specifier.contains(pins[name]), f"tested {name}=={pins[name]} is outside {requirement}"
    assert {"demo", "index", "mini", "dev"} <= set(dist.metadata.get_all("Provides-Extra"))
    assert dist.version == splip_core.__version__


def test_console_scripts_point_at_callables():
    scripts = {e.name: e for e in metadata.entry_points(group="console_scripts") if e.name.startswith("splip-")}
    assert set(scripts) == SCRIPTS
    for entry in scripts.values():
        assert callable(getattr(import_module(entry.module), entry.attr))


def test_a_console_script_runs_and_reports_a_user_error_in_one_line(tmp_path):
    script = Path(sys.executable).with_name("splip-evaluate")
    help_run = subprocess.run([script, "--help"], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert help_run.returncode == 0 and "--setting" in help_run.stdout
    bad = subprocess.run([script, "--model", str(tmp_path / "nowhere"), "--dataset", "mini"], capture_output=True,
                         text=True, cwd=tmp_path, timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip().startswith("error:") and "Traceback" not in bad.stderr


def test_the_package_imports_from_any_directory(tmp_path):
    run = subprocess.run([sys.executable, "-c", "import splip_core; print(splip_core.__version__)"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == splip_core.__version__


@pytest.mark.slow
def test_the_wheel_declares_its_dependencies_scripts_and_data(tmp_path):
    had_build_dir = (REPO / "build").exists()
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp_path), str(REPO)], capture_output=True, text=True, timeout=600)
    if not had_build_dir:  # setuptools builds inside the source tree
        shutil.rmtree(REPO / "build", ignore_errors=True)
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = tmp_path.glob("splip-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        meta = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        entry_points = archive.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    assert {"splip_core/configs/paper.json", "splip_core/configs/mini.json", "splip_core/mini/data/icon_map.json",
            "splip_core/data/splits/sketchy_classes.txt"} <= set(names)
    assert not [n for n in names if n.startswith(("tests/", "demo/", "benchmarks/", "weights/"))]
    assert re.search(r"^Requires-Dist: open_clip_torch<3\.4,>=3\.3$", meta, re.M), meta
    assert "Provides-Extra: demo" in meta
    assert all(f"{name} = splip_core.cli:" in entry_points for name in SCRIPTS)
