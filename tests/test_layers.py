"""The core's import direction: envs ← data ← act ← sampling ← evaluation ← training.

Each core package imports only the packages below it (and the base modules ``config``, ``files``, ``machine``,
``models``, ``packed_linear``), never dagster; read from the source (every import, also inside functions), so a
cycle cannot hide behind a lazy import.
"""

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(60)  # unit tests: seconds

PKG = Path(__file__).resolve().parent.parent / "act_pipeline"
ORDER = ["envs", "data", "act", "sampling", "evaluation", "training"]
BASE = {"config", "files", "models", "machine", "packed_linear"}
# what each base module may import from the package
BASE_ALLOWED = {"config": {"files"}, "files": set(), "models": {"config", "files", "packed_linear"}, "machine": set(),
                "packed_linear": set()}


def _imports(path: Path) -> set[str]:
    """Top-level names (``act_pipeline.<name>`` or a third-party root) this file imports."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for n in names:
            parts = n.split(".")
            out.add(parts[1] if parts[0] == "act_pipeline" and len(parts) > 1 else "!" + parts[0])
    return out


def _owner(path: Path) -> str:
    rel = path.relative_to(PKG).parts
    return rel[0] if len(rel) > 1 else rel[0].removesuffix(".py")


def _core_files():
    for path in sorted(PKG.rglob("*.py")):
        owner = _owner(path)
        if owner in ORDER or owner in BASE:
            yield path, owner


@pytest.mark.parametrize("path,owner", list(_core_files()), ids=lambda v: str(v) if isinstance(v, str) else None)
def test_core_imports_point_down(path: Path, owner: str):
    imported = _imports(path)
    assert "!dagster" not in imported and "!dagster_pipes" not in imported, f"{path}: the core never imports dagster"
    internal = {n for n in imported if not n.startswith("!")} - {owner}
    if owner in BASE:
        allowed = BASE_ALLOWED[owner]
    else:
        allowed = BASE | set(ORDER[:ORDER.index(owner)])
    wrong = sorted(internal - allowed)
    assert not wrong, (f"{path.relative_to(PKG.parent)} ({owner}) imports act_pipeline.{', act_pipeline.'.join(wrong)}; "
                       f"{owner} may import only {sorted(allowed)}")


def test_the_check_can_fail(tmp_path):
    """The walker sees a lazy import inside a function (what a cycle would hide behind)."""
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from act_pipeline.training.common import Log\n    import dagster\n")
    assert _imports(f) == {"training", "!dagster"}
