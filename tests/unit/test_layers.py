"""The layer rule: only x402console/ui imports textual or rich; headless commands never load them."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "x402console"
UI_ONLY = ("textual", "rich", "textual_plotext", "plotext")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_no_module_outside_ui_imports_textual_or_rich():
    offenders = []
    for path in PKG.rglob("*.py"):
        if (PKG / "ui") in path.parents:
            continue
        bad = _imports(path) & set(UI_ONLY)
        if bad:
            offenders.append(f"{path.relative_to(PKG.parent)}: {sorted(bad)}")
    assert offenders == []


@pytest.mark.parametrize(
    "module",
    ["x402console.cli", "x402console.config", "x402console.drill.sim.main", "x402console.drill.traffic",
     "x402console.drill.environment"],
)
def test_headless_entry_points_do_not_load_the_ui(module):
    code = f"import sys, {module}; bad = [m for m in sys.modules if m.split('.')[0] in {UI_ONLY!r}]; print(bad)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
