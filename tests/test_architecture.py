"""The architecture as tests: import-linter's contracts (pyproject.toml), a light report layer, small modules."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "unet_pipeline"
HEAVY = ("torch", "openvino", "nncf", "onnxruntime", "onnx")
MAX_MODULE_LINES = 350
MAX_FUNCTION_LINES = 60


def test_the_import_contracts_hold():
    """Layers (entry points > deploy | training > report | engines > record > data | model | metrics > config >
    core), light records and reports, engines that know no job, no import circle: `lint-imports` keeps them all."""
    linter = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    proc = subprocess.run([linter], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout and "Contracts: 4 kept" in proc.stdout


def test_reading_records_and_tables_loads_no_torch_and_no_engine():
    """What only reads records (the tables, the summary, MLflow tracking, `results`, the sweep callback, the SLURM
    launcher) imports in a fresh interpreter without torch or any engine library (the callback imports the
    bundler only when select.bundle asks for one)."""
    code = (
        "import sys\n"
        "import unet_pipeline.report, unet_pipeline.record, unet_pipeline.results, unet_pipeline.callbacks\n"
        "import unet_pipeline.report.tracking, unet_pipeline.report.plots, unet_pipeline.report.compare\n"
        "import hydra_plugins.unet_pipeline_slurm.slurm_launcher\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "conf" not in p.relative_to(PACKAGE).parts)


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_are_read_in_one_sitting(path):
    """No module over 350 lines, no function over about 60: one job each, steps with names."""
    source = path.read_text()
    assert len(source.splitlines()) <= MAX_MODULE_LINES
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long


def test_every_room_has_a_public_face():
    """Each subpackage's __init__ says what it owns (a docstring) and names what others may import (__all__)."""
    for init in sorted(PACKAGE.glob("*/__init__.py")):
        if init.parent.name in ("conf", "checkpoints"):
            continue
        tree = ast.parse(init.read_text())
        assert ast.get_docstring(tree), f"{init.parent.name}/__init__.py has no docstring"
        names = [t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)]
        assert "__all__" in names, f"{init.parent.name}/__init__.py names no public face (__all__)"
