"""Try-on: garment landmarks, the thin-plate spline, colourways, bad inputs, BlazePose on a real
photo, and `eval compose` on three pairs."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from studioline.services.catalog_generator import ops, tryon
from studioline.services.catalog_generator.body import Body
from studioline.services.catalog_generator.colourway import colourway
from studioline.services.catalog_generator.garment import garment_landmarks
from studioline.services.catalog_generator.params import CatalogGeneratorParams
from studioline.services.catalog_generator.warp import tps_backward_map, tps_warp
from studioline.shared.config import PROJECT_ROOT
from studioline.shared.errors import PermanentError, StudiolineError
from studioline.shared.models import pose as bp
from studioline.shared.models.store import ModelStore


def _tee(h: int = 400, w: int = 300) -> np.ndarray:
    """A synthetic T-shirt mask: a torso from x 90..210, y 40..380, short sleeves out to 30..270."""
    m = np.zeros((h, w), np.uint8)
    cv2.rectangle(m, (90, 40), (210, 380), 255, -1)
    cv2.fillPoly(m, [np.array([[90, 40], [30, 110], [60, 140], [90, 100]])], 255)
    cv2.fillPoly(m, [np.array([[210, 40], [270, 110], [240, 140], [210, 100]])], 255)
    cv2.ellipse(m, (150, 40), (25, 15), 0, 0, 180, 0, -1)  # the neckline
    return m


def test_landmarks_on_a_synthetic_tee():
    marks = garment_landmarks(_tee())
    assert marks.neck[1] == 40 and abs(marks.neck[0] - 150) <= 2
    assert marks.hem_left[0] == 90 and marks.hem_right[0] == 210
    assert 360 <= marks.hem_left[1] <= 380
    # Near the top the sleeves have barely begun: the shoulder points are close to the torso's sides.
    assert 70 <= marks.shoulder_left[0] <= 90 and 210 <= marks.shoulder_right[0] <= 230
    assert marks.shoulder_left[1] < 80
    assert marks.sleeve_length == "short"
    left, right = marks.sleeves
    # The armpits are where the sleeves' lower edges meet the torso (x 90 / 210, y 100).
    assert abs(left.armpit[0] - 90) <= 2 and abs(left.armpit[1] - 100) <= 3
    assert abs(right.armpit[0] - 210) <= 2 and abs(right.armpit[1] - 100) <= 3
    # The cuffs are the sleeves' far ends, out at x 30..60 / 240..270.
    assert ((left.cuff_outer + left.cuff_inner) / 2)[0] < 65 and ((right.cuff_outer + right.cuff_inner) / 2)[0] > 235
    assert not (marks.torso_mask() & left.mask).any()


def _long_sleeve(h: int = 400, w: int = 300) -> np.ndarray:
    """Sleeves hanging beside the torso down to y 250, a slit between them and the torso."""
    m = np.zeros((h, w), np.uint8)
    cv2.rectangle(m, (90, 40), (210, 270), 255, -1)
    cv2.fillPoly(m, [np.array([[90, 40], [40, 90], [45, 250], [80, 250], [86, 110]])], 255)
    cv2.fillPoly(m, [np.array([[210, 40], [260, 90], [255, 250], [220, 250], [214, 110]])], 255)
    cv2.ellipse(m, (150, 40), (25, 15), 0, 0, 180, 0, -1)
    return m


def test_long_sleeves_dress_and_trousers_are_told_apart():
    long_top = garment_landmarks(_long_sleeve())
    assert long_top.category == "top" and long_top.sleeve_length == "long"
    # The hem is the torso's, not the cuffs'.
    assert long_top.hem_left[0] >= 85 and long_top.hem_right[0] <= 215
    dress = np.zeros((600, 300), np.uint8)
    cv2.fillPoly(dress, [np.array([[110, 20], [190, 20], [200, 120], [250, 580], [50, 580], [100, 120]])], 255)
    cv2.ellipse(dress, (150, 20), (25, 15), 0, 0, 180, 0, -1)
    assert garment_landmarks(dress).category == "dress"
    trousers = np.zeros((600, 300), np.uint8)
    cv2.rectangle(trousers, (80, 20), (220, 200), 255, -1)
    cv2.fillPoly(trousers, [np.array([[80, 200], [145, 200], [140, 580], [70, 580]])], 255)
    cv2.fillPoly(trousers, [np.array([[155, 200], [220, 200], [230, 580], [160, 580]])], 255)
    assert garment_landmarks(trousers).category == "bottom"
    # try_on refuses a bottom with the reason, before any warping.
    photo, region = np.full((240, 200, 3), 200, np.uint8), np.zeros((240, 200), bool)
    region[80:170, 70:130] = True
    with pytest.raises(PermanentError, match="trousers or a skirt"):
        tryon.try_on(photo, region.astype(np.float32), region, _frontal(), np.zeros((600, 300, 3), np.uint8), trousers)


def _frontal() -> np.ndarray:
    """A frontal pose: the person's left shoulder on the image's right, the nose in front."""
    lm = np.zeros((33, 5))
    lm[:, 3:] = 1.0
    points = {bp.NOSE: (100, 40), 2: (95, 35), 5: (105, 35), 9: (96, 48), 10: (104, 48),
              bp.LEFT_SHOULDER: (130, 80), bp.RIGHT_SHOULDER: (70, 80), bp.LEFT_ELBOW: (140, 130),
              bp.RIGHT_ELBOW: (60, 130), bp.LEFT_WRIST: (145, 175), bp.RIGHT_WRIST: (55, 175),
              bp.LEFT_HIP: (120, 170), bp.RIGHT_HIP: (80, 170)}  # fmt: skip
    for i, xy in points.items():
        lm[i, :2] = xy
    lm[bp.NOSE, 2], lm[[bp.LEFT_SHOULDER, bp.RIGHT_SHOULDER], 2] = -50.0, 0.0
    return lm


def test_a_back_view_is_refused_with_a_reason():
    body = Body.from_landmarks(_frontal())
    assert body.shoulder_left[0] == 70 and body.elbows[0][0] == 60  # image-left arm first
    back = _frontal()
    back[[bp.LEFT_SHOULDER, bp.RIGHT_SHOULDER], 0] = back[[bp.RIGHT_SHOULDER, bp.LEFT_SHOULDER], 0]
    back[bp.NOSE, 2] = 50.0
    with pytest.raises(PermanentError, match="person's back"):
        Body.from_landmarks(back)


def test_a_template_that_cannot_take_the_garment_says_why_and_the_others_go_through():
    from studioline.services.catalog_generator.step import CatalogGeneratorStep
    from studioline.services.catalog_generator.templates import Template
    from studioline.shared.step import StepInput

    photo, region = np.full((240, 200, 3), 180, np.uint8), np.zeros((240, 200), bool)
    region[75:175, 55:145] = True
    person = cv2.dilate(region.astype(np.uint8), np.ones((31, 31), np.uint8)).astype(np.float32)
    back = _frontal()
    back[[bp.LEFT_SHOULDER, bp.RIGHT_SHOULDER], 0] = back[[bp.RIGHT_SHOULDER, bp.LEFT_SHOULDER], 0]
    back[bp.NOSE, 2] = 50.0
    step = CatalogGeneratorStep(settings=None, model_store=None)
    step._templates.update(front=Template(photo, person, region, _frontal()), back=Template(photo, person, region, back))
    cutout = np.dstack([np.full((400, 300, 3), (40, 90, 200), np.uint8), _tee()])
    params = CatalogGeneratorStep.spec.parse_params({"template_ids": ["front", "back"]})
    out = step.run(StepInput(image=cutout, params=params, inputs={"cutout": cutout}))
    assert len(out.images) >= 1 and out.info["templates"]["front"]["coverage_px"] > 1000
    assert "person's back" in out.refusals["back"] and "back" not in out.info["templates"]
    assert out.info["garment"]["sleeves"] == "short"  # the tee is 2.8 torso widths long: "dress"


def test_preparation_refuses_no_person_and_back_views_and_the_template_round_trips(monkeypatch):
    from types import SimpleNamespace

    from studioline.services.catalog_generator import prepare, templates

    photo = np.full((240, 200, 3), 230, np.uint8)
    photo[75:175, 55:145] = (40, 90, 200)  # the top the model wears
    person = np.zeros((240, 200), np.float32)
    person[20:235, 40:160] = 1.0
    back = _frontal()
    back[[bp.LEFT_SHOULDER, bp.RIGHT_SHOULDER], 0] = back[[bp.RIGHT_SHOULDER, bp.LEFT_SHOULDER], 0]
    back[bp.NOSE, 2] = 50.0
    pose = lambda landmarks: SimpleNamespace(landmarks=landmarks, person_mask=person, score=0.9)  # noqa: E731
    poses = {"none": None, "back": pose(back), "front": pose(_frontal())}
    # The pose model is reached only through estimate_pose: replacing it replaces the model.
    monkeypatch.setattr(prepare, "estimate_pose", lambda model, image: poses[model])
    with pytest.raises(PermanentError, match="no person found"):
        prepare.prepare_template(photo, "none")
    with pytest.raises(PermanentError, match="person's back"):
        prepare.prepare_template(photo, "back")
    template = prepare.prepare_template(photo, "front")
    assert template.region[120, 100] and not template.region[person == 0].any()
    files = {name: data for name, (data, _) in templates.encode(template).items()}
    assert set(files) == set(templates.FILES)
    again = templates.decode(files)
    assert np.array_equal(again.region, template.region) and np.abs(again.person - person).max() <= 1 / 255
    assert np.allclose(again.landmarks, template.landmarks, atol=1e-3) and again.score == pytest.approx(0.9)
    assert np.abs(again.photo.astype(int) - photo).mean() < 2  # JPEG at quality 95


def test_landmarks_reject_an_empty_mask():
    with pytest.raises(PermanentError, match="empty or too small"):
        garment_landmarks(np.zeros((100, 100), np.uint8))


def test_tps_maps_landmarks_onto_targets():
    src = np.array([[50, 20], [20, 40], [80, 40], [25, 110], [75, 110]], float)
    dst = np.array([[100, 60], [60, 90], [150, 85], [70, 230], [140, 240]], float)
    map_x, map_y = tps_backward_map(dst, src, (200, 260), grid=4)
    for (sx, sy), (dx, dy) in zip(src, dst):
        assert abs(map_x[int(dy), int(dx)] - sx) < 0.6 and abs(map_y[int(dy), int(dx)] - sy) < 0.6
    # A warped dot lands on its target.
    dot = np.zeros((130, 100, 4), np.float32)
    cv2.circle(dot, (80, 40), 3, (1, 1, 1, 1), -1)
    warped = tps_warp(dot, src, dst, (200, 260))
    ys, xs = np.nonzero(warped[..., 3] > 0.5)
    assert abs(xs.mean() - 150) < 2 and abs(ys.mean() - 85) < 2


def test_colourway_keeps_lightness_and_changes_hue():
    rng = np.random.default_rng(0)
    rgb = np.clip(rng.normal([180, 60, 50], 20, (64, 64, 3)), 0, 255).astype(np.uint8)
    mask = np.zeros((64, 64), np.float32)
    mask[:, :32] = 1
    out = colourway(rgb, mask, 120)
    lab_in = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).astype(float)
    lab_out = cv2.cvtColor(out, cv2.COLOR_RGB2LAB).astype(float)
    assert np.abs(lab_out[:, :32, 0] - lab_in[:, :32, 0]).mean() < 3.0
    assert np.array_equal(out[:, 32:], rgb[:, 32:])
    # Red turned by 120 degrees is no longer red-dominant.
    assert out[:, :32, 0].mean() < rgb[:, :32, 0].mean() - 40


def test_bad_inputs_give_clear_errors():
    with pytest.raises(PermanentError, match=r"\(33, 5\) pose landmarks"):
        Body.from_landmarks(np.zeros((10, 5)))
    hidden = np.zeros((33, 5))
    with pytest.raises(PermanentError, match="not all visible"):
        Body.from_landmarks(hidden)
    with pytest.raises(PermanentError, match="RGBA cut-out"):
        ops.cutout_rgb_alpha(np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(PermanentError, match="alpha channel is empty"):
        ops.cutout_rgb_alpha(np.zeros((10, 10, 4), np.uint8))
    with pytest.raises(ValueError, match="template ids"):
        CatalogGeneratorParams(template_ids=["../etc"])
    with pytest.raises(ValueError, match="hue rotations"):
        CatalogGeneratorParams(colourways=[0])


@pytest.fixture(scope="module")
def pose_model():
    model = bp.BlazePose(ModelStore(PROJECT_ROOT / ".models"))
    try:
        model.load()
    except StudiolineError as exc:
        pytest.skip(str(exc))
    yield model
    model.close()


@pytest.fixture(scope="module")
def viton(shared_data):
    return shared_data / "C1_viton_tryon_256"


def test_anchors_match_the_detector():
    assert bp.ssd_anchors().shape == (2254, 2)


def test_pose_on_a_real_photo_agrees_with_openpose(pose_model, viton):
    """BlazePose's shoulders, elbows and hips within 8 px of the dataset's OpenPose points
    (192x256 photos), on the first five people."""
    # OpenPose COCO-18 index -> BlazePose index.
    pairs = {2: bp.RIGHT_SHOULDER, 5: bp.LEFT_SHOULDER, 3: bp.RIGHT_ELBOW, 6: bp.LEFT_ELBOW,
             8: bp.RIGHT_HIP, 11: bp.LEFT_HIP}  # fmt: skip
    errors = []
    for path in sorted((viton / "image").iterdir())[:5]:
        photo = cv2.imread(str(path))[..., ::-1].copy()
        (pose,) = pose_model.predict([photo])
        assert pose is not None and pose.person_mask.shape == photo.shape[:2]
        assert 0.15 < (pose.person_mask > 0.5).mean() < 0.8
        people = json.loads((viton / "pose" / f"{path.stem}_keypoints.json").read_text())["people"][0]
        ref = np.array(people.get("pose_keypoints", people.get("pose_keypoints_2d"))).reshape(-1, 3)
        for o, b in pairs.items():
            if ref[o, 2] > 0.3:
                errors.append(np.hypot(*(ref[o, :2] - pose.landmarks[b, :2])))
    assert np.median(errors) < 8.0


def test_eval_compose_smoke_on_three_pairs(viton, tmp_path, capsys):
    from studioline.shared.cli import main

    pairs = tmp_path / "pairs.txt"
    pairs.write_text("\n".join((viton / "test_pairs_paired.txt").read_text().splitlines()[:3]) + "\n")
    rc = main(["eval", "compose", "--pairs", str(pairs), "--root", str(viton), "--json", "--sheet", str(tmp_path / "s.jpg")])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"n", "ssim", "psnr", "baseline_ssim", "baseline_psnr", "sec_per_image"} <= summary.keys()
    assert summary["n"] == 3
    assert summary["ssim"] > summary["baseline_ssim"]
    assert cv2.imread(str(tmp_path / "s.jpg")).shape[0] == 3 * 192
