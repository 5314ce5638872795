"""The house's layering and its light start: data flows one way (an import-linter contract in pyproject.toml),
and what needs no torch never imports it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_no_module_imports_a_layer_above_it():
    result = subprocess.run(["lint-imports", "--no-cache"], cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "1 kept, 0 broken" in result.stdout


def test_the_package_the_cli_and_reading_a_run_do_not_import_torch():
    fixture = ROOT / "tests" / "fixtures" / "v1_transformer"
    code = (
        "import sys, grokscope, grokscope.cli as cli; cli.build_parser(); "
        f"run = grokscope.open_run({str(fixture)!r}); run.summary(); grokscope.load_preset('digits'); "
        "heavy = [m for m in ('torch', 'transformer_lens', 'sklearn', 'plotly', 'streamlit') if m in sys.modules]; "
        "print(heavy)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
