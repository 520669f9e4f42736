"""A small run of bench/memory_bombs.py, as `make bench` would run it but on two cases and one
step's factor, so the script does not rot; the figures themselves are in bench/results."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "memory_bombs.py"


def _run(out: Path, *args: str) -> dict:
    proc = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out), *args], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"memory_bombs.py failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return json.loads((out / "memory_bombs.json").read_text())


def test_memory_bombs(shared_data, tmp_path):
    report = _run(tmp_path, "--cases", "classifier/grey16,catalog-generator/8x8192")
    grey = report["after"]["classifier/grey16"]
    assert grey["outcomes"] == ["ok"] and not grey["over_chart_limit"]
    assert grey["growth_mb"] < grey["budget_mb"] == report["chart_limits_mb"]["classifier"] * report["memory_fraction"]
    canvases = report["after"]["catalog-generator/8x8192"]
    assert canvases["outcomes"][0].startswith("invalid_params") and canvases["growth_mb"] < 50
    report = _run(tmp_path, "--factors", "--steps", "classifier", "--factor-mp", "1,2")
    factors = report["factors"]["classifier"]
    assert len(factors["runs"]) == 4 and 0 < factors["measured"]["memory_factor"] < 20
    assert "after" in report  # a later run keeps the earlier figures
