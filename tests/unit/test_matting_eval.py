"""`studioline eval matte`: the benchmark's error measures on synthetic mattes with known
values, folder matching by stem, and a smoke run on real alphamatting.com images."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from studioline.services.matting import evaluate
from studioline.shared.cli import main

# Mean SAD of the default solver on GT14, GT19 and GT20 (Trimap1) was 1.05; ~30% above it.
SMOKE_MAX_SAD = 1.4


def _trimap(shape=(40, 60), box=(slice(10, 30), slice(10, 50))) -> np.ndarray:
    trimap = np.zeros(shape, np.uint8)
    trimap[box] = 128
    return trimap


def test_sad_and_mse_count_the_unknown_region_only():
    trimap = _trimap()
    gt = np.zeros(trimap.shape)
    alpha = gt.copy()
    alpha[trimap == 128] = 0.1  # 800 unknown pixels off by 0.1
    alpha[trimap == 0] = 1.0  # errors outside the unknown region do not count
    errors = evaluate.matte_errors(alpha, gt, trimap)
    assert errors["sad"] == pytest.approx(800 * 0.1 / 1000)
    assert errors["mse"] == pytest.approx(0.01 * 1000)


def test_identical_mattes_have_no_error():
    rng = np.random.default_rng(0)
    gt = cv2.GaussianBlur(rng.random((50, 70)), (9, 9), 3)
    errors = evaluate.matte_errors(gt, gt, _trimap((50, 70)))
    assert errors == {"sad": 0.0, "mse": 0.0, "grad": 0.0, "conn": 0.0}


def test_gradient_error_of_a_ramp():
    """The benchmark's derivative-of-Gaussian kernel is normalised to unit L2 norm, so on a ramp
    of slope s it reads about s * 2 sqrt(2 pi) sigma^2 (~9.83 s at sigma 1.4; the kernel's
    truncation at 4 px takes ~1.5% off), not s: a flat prediction against a ramp costs that
    squared per unknown pixel, / 1000."""
    slope = 0.01
    gt = np.tile(np.arange(80) * slope, (40, 1))
    trimap = _trimap((40, 80), (slice(10, 30), slice(20, 60)))
    expected_magnitude = slope * 2.0 * np.sqrt(2.0 * np.pi) * evaluate.GRADIENT_SIGMA**2
    grad = evaluate.gradient_error(np.full(gt.shape, 0.3), gt, trimap == 128)
    assert grad == pytest.approx(800 * expected_magnitude**2 / 1000, rel=0.05)
    # A constant offset changes no gradient.
    assert evaluate.gradient_error(gt + 0.2, gt, trimap == 128) == pytest.approx(0.0, abs=1e-12)


def test_connectivity_error_of_a_detached_island():
    """An opaque island the ground truth does not have drops out of the shared largest
    component at the first threshold, so each of its pixels costs |phi| = 1."""
    trimap = np.full((60, 60), 128, np.uint8)
    gt = np.zeros((60, 60))
    gt[5:35, 5:35] = 1.0
    alpha = gt.copy()
    alpha[45:50, 45:50] = 1.0  # 25 pixels, not touching the object
    assert evaluate.connectivity_error(alpha, gt, trimap == 128) == pytest.approx(25 / 1000)
    # A faint island (alpha below the 0.15 tolerance) costs nothing.
    alpha[45:50, 45:50] = 0.1
    assert evaluate.connectivity_error(alpha, gt, trimap == 128) == pytest.approx(0.0)


def _write_synthetic_set(root: Path) -> None:
    """Two-colour images with a soft vertical edge: closed-form matting recovers them closely."""
    for folder in ("images", "trimaps", "alphas"):
        (root / folder).mkdir()
    h, w = 48, 64
    ramp = np.clip((np.arange(w) - 24) / 16.0, 0.0, 1.0)
    alpha = np.tile(ramp, (h, 1))
    fg, bg = np.array([40.0, 60.0, 220.0]), np.array([230.0, 200.0, 30.0])
    image = (alpha[..., None] * fg + (1 - alpha[..., None]) * bg + 0.5).astype(np.uint8)
    trimap = np.where(alpha >= 1.0, 255, np.where(alpha <= 0.0, 0, 128)).astype(np.uint8)
    trimap[:, 20:44] = 128
    for stem in ("a", "b"):
        cv2.imwrite(str(root / "images" / f"{stem}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 100])
        cv2.imwrite(str(root / "trimaps" / f"{stem}.png"), trimap)
        cv2.imwrite(str(root / "alphas" / f"{stem}.png"), (alpha * 255 + 0.5).astype(np.uint8))
    cv2.imwrite(str(root / "images" / "c.png"), image)  # no trimap, no alpha: skipped, not fatal


def test_evaluate_matte_matches_by_stem_and_saves_alphas(tmp_path):
    _write_synthetic_set(tmp_path)
    report = evaluate.evaluate_matte(
        tmp_path / "images", tmp_path / "trimaps", tmp_path / "alphas", method="cf", save_dir=tmp_path / "out"
    )
    assert report["n"] == 2 and [r["name"] for r in report["images"]] == ["a", "b"]
    assert report["skipped"] == [{"name": "c", "reason": "no trimap"}]
    assert set(report) >= {"n", "sad", "mse", "grad", "conn", "sec_per_image", "cpu_sec_per_image"}
    assert report["sad"] < 0.05 and report["mse"] < 5.0, report
    saved = cv2.imread(str(tmp_path / "out" / "a.png"), cv2.IMREAD_GRAYSCALE)
    assert saved.shape == (48, 64) and saved[:, :10].max() == 0 and saved[:, -10:].min() == 255


def test_cli_eval_matte_prints_json_last(tmp_path, capsys):
    _write_synthetic_set(tmp_path)
    argv = ["eval", "matte", "--images", str(tmp_path / "images"), "--trimaps", str(tmp_path / "trimaps"),
            "--alphas", str(tmp_path / "alphas"), "--json"]
    assert main([*argv, "--out", str(tmp_path / "result.json")]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["n"] == 2 and report["sad"] >= 0.0
    assert json.loads((tmp_path / "result.json").read_text())["sad"] == report["sad"]
    assert main([*argv[:-1], "--method", "bayesian"]) == 2
    assert "method" in capsys.readouterr().err
    assert main(["eval", "matte", "--images", str(tmp_path / "nowhere"), "--trimaps", "x", "--alphas", "y"]) == 2


def test_smoke_on_real_images(shared_data, tmp_path):
    """Three alphamatting.com images (linked, not copied) through the default solver; the bound
    is ~30% above what the step's solver measured on them."""
    root = shared_data / "A_alphamatting_lowres"
    folders = {"images": root / "input_training_lowres", "trimaps": root / "trimap_training_lowres" / "Trimap1",
               "alphas": root / "gt_training_lowres"}
    for name, source in folders.items():
        (tmp_path / name).mkdir()
        for stem in ("GT14", "GT19", "GT20"):
            (tmp_path / name / f"{stem}.png").symlink_to(source / f"{stem}.png")
    report = evaluate.evaluate_matte(tmp_path / "images", tmp_path / "trimaps", tmp_path / "alphas")
    assert report["n"] == 3 and not report["skipped"]
    assert report["sad"] < SMOKE_MAX_SAD, report
