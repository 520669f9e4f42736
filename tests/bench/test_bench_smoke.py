"""A tiny run of each benchmark script, exactly as `make bench` runs it but on a few images,
so the scripts do not rot. The figures themselves are not checked here (bench/results/ holds
them): only that each script runs end to end and writes sane results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _run(script: str, out: Path, *args: str, env: dict | None = None, timeout: int = 600) -> None:
    proc = subprocess.run([sys.executable, str(BENCH / script), "--out", str(out), *args],
                          capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


def _json(path: Path) -> dict:
    assert path.exists(), f"{path.name} not written"
    assert path.with_suffix(".png").exists(), f"{path.with_suffix('.png').name} not written"
    return json.loads(path.read_text())


def test_steps(shared_data, tmp_path):
    _run("steps.py", tmp_path, "--n", "2", "--steps", "classifier,segmenter[classical],inpainter", "--sizes", "1024")
    report = _json(tmp_path / "steps.json")
    assert set(report["steps"]) == {"classifier", "segmenter[classical]", "inpainter"}
    for entry in report["steps"].values():
        r = entry["1024"]
        assert r["n"] == 2 and 0 < r["median_ms"] <= r["p99_ms"]
        assert r["images_per_s_1_worker"] > 0 and r["images_per_s_2_workers"] > 0 and r["peak_rss_mb"] > 50


def test_rembg_side_by_side(shared_data, tmp_path):
    pytest.importorskip("rembg", reason="rembg is in the bench extra: pip install -e '.[bench]'")
    _run("rembg_compare.py", tmp_path, "--n", "1", "--model", "u2netp", "--no-summary")
    report = _json(tmp_path / "rembg_compare.json")
    assert set(report["layouts"]) == {"rembg_1proc", "rembg_2proc", "ours_1proc", "ours_2proc"}
    for layout in report["layouts"].values():
        assert layout["images_per_s"] > 0 and 0.3 < layout["iou_mean"] <= 1
    assert not (tmp_path / "summary.json").exists()


def test_line(shared_data, tmp_path):
    _run("line.py", tmp_path, "--n", "4", "--paced", "1", "--standalone", "2", "--no-summary")
    report = _json(tmp_path / "line.json")
    assert report["throughput"]["done"] + report["throughput"]["dead_lettered"] == 4
    assert report["steps_alone"]["images_per_s"] > 0 and report["throughput"]["images_per_s"] > 0
    assert report["paced"]["hop_overhead_ms"]["all_hops"]["n"] >= 2  # the classifier and at least one step


def test_rss(shared_data, tmp_path):
    _run("rss.py", tmp_path, "--n", "12", "--every", "3", "--photos", "4", "--services", "inpainter", "--no-summary")
    report = _json(tmp_path / "rss.json")
    r = report["services"]["inpainter"]
    assert r["images"] == 12 and len(r["samples"]["rss_mb"]) >= 4 and r["rss_mb_start"] > 50
    assert r["rss_growth_mb_per_10k"] is not None


def test_gpu_benchmark_runs_on_the_cpu(tmp_path):
    _run("gpu.py", tmp_path, "--model", "u2netp", "--seconds", "0.2", "--images", "2", "--photos", "2",
         "--clients", "2", "--no-summary", env={"STUDIOLINE_MODELS__DEVICE": "cpu"})
    report = _json(tmp_path / "gpu_cpu_fallback.json")
    assert report["provider"] == "CPUExecutionProvider" and report["gpu_name"] is None
    assert report["raw_images_per_s"] > 0 and report["service_batcher_images_per_s"] > 0
    assert report["service_grpc_images_per_s"] > 0
