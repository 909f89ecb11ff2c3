"""The layering ARCHITECTURE.md promises, read from the source: the library never imports Gradio, the demo and the
app use only `splip_core`'s public API, and test modules do not import each other."""

import ast
from pathlib import Path

import splip_core

REPO = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) of every import statement in a file, absolute module names only."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module, [alias.name for alias in node.names]))
    return found


def test_the_library_never_imports_gradio():
    offenders = [f"{p.relative_to(REPO)}: {module}" for p in (REPO / "splip_core").rglob("*.py")
                 for module, _ in _imports(p) if module.split(".")[0] in ("gradio", "gradio_client", "demo")]
    assert not offenders, offenders


def test_the_demo_and_the_app_use_only_the_public_api():
    files = [*(REPO / "demo").glob("*.py"), REPO / "app.py"]
    offenders = []
    for path in files:
        for module, names in _imports(path):
            if module.startswith("splip_core."):
                offenders.append(f"{path.name}: imports the submodule {module}")
            elif module == "splip_core":
                offenders += [f"{path.name}: {name} is not in splip_core.__all__" for name in names
                              if name not in splip_core.__all__]
    assert not offenders, offenders


def test_test_modules_do_not_import_each_other():
    tests = {p.stem for p in (REPO / "tests").glob("test_*.py")}
    offenders = [f"{p.name}: {module}" for p in (REPO / "tests").glob("*.py")
                 for module, _ in _imports(p) if module.split(".")[0] in tests | {"conftest"}]
    assert not offenders, offenders
