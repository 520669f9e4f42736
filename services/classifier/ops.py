"""Cheap, explainable cues about how a photo was taken, and the softmax head over them.

The cues are measured on a small copy of the image (longest side 256 px) in a few
milliseconds. Each one says something a person would check: is the frame edge a plain white
backdrop, how much of the frame the subject fills, how colourful and how cluttered the scene
is, how much skin shows. They go beside the CNN features into the classifier's head and are
returned with every result, so a surprising classification can be explained.
"""

from __future__ import annotations

import cv2
import numpy as np

from studioline.shared.imageops import backdrop_colour, border_mask, border_width, channel_extremes

WORK_SIDE = 256
CUE_NAMES = (
    "border_white",  # share of the frame edge that is near-white and neutral
    "border_std",  # spread of the frame edge's colour (0 = one flat colour)
    "border_luma",  # mean brightness of the frame edge
    "border_chroma",  # how coloured the edge's typical colour is (beige floor vs white sweep)
    "fill_ratio",  # share of the frame that differs from the edge's typical colour
    "fill_ratio_edge",  # the same along the frame edge: subject or clutter cut by the frame
    "white_fraction",  # share of the whole frame that is near-white
    "luma_mean",
    "luma_std",
    "saturation_mean",
    "colourfulness",  # Hasler and Suesstrunk's colourfulness, scaled to about 0..1
    "edge_density",  # share of Canny edge pixels: clutter and texture
    "skin_fraction",  # share of the frame in a YCrCb skin-tone range
    "skin_in_subject",  # share of the subject (non-background) that looks like skin
)

_WHITE_MIN = 225  # all channels at least this ...
_WHITE_SPREAD = 20  # ... and within this of each other: a neutral near-white
_BACKGROUND_DIST = 18.0  # Lab distance from the edge colour beyond which a pixel is subject
_BORDER = 0.04  # width of the frame edge band, as a fraction of the shorter side


def work_image(image: np.ndarray, side: int = WORK_SIDE) -> np.ndarray:
    """The RGB image shrunk (area filter) so its longest side is at most `side` pixels."""
    h, w = image.shape[:2]
    scale = side / max(h, w)
    if scale >= 1.0:
        return image
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def near_white(rgb: np.ndarray) -> np.ndarray:
    lo, hi = channel_extremes(rgb)
    return (lo >= _WHITE_MIN) & (cv2.subtract(hi, lo) <= _WHITE_SPREAD)


def skin_mask(rgb: np.ndarray) -> np.ndarray:
    """Skin-tone pixels by the classic YCrCb box (Chai and Ngan), on light and dark skin alike."""
    ycrcb = cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb)
    y, cr, cb = ycrcb[..., 0], ycrcb[..., 1], ycrcb[..., 2]
    return (cr >= 133) & (cr <= 173) & (cb >= 77) & (cb <= 127) & (y >= 40)


def colourfulness(rgb: np.ndarray) -> float:
    """Hasler and Suesstrunk (2003), divided by 100 so common photos fall in 0..1."""
    r, g, b = (rgb[..., i].astype(np.float32) for i in range(3))
    rg, yb = r - g, 0.5 * (r + g) - b
    return float((np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean())) / 100.0)


def compute_cues(image: np.ndarray) -> dict[str, float]:
    """The cues of CUE_NAMES for an HxWx3 RGB uint8 image (best passed through work_image first)."""
    rgb = work_image(image)
    width = border_width(rgb.shape, _BORDER)
    band = border_mask(rgb.shape, width)
    # Blurring first keeps JPEG noise and fabric texture from counting as subject.
    blurred = cv2.GaussianBlur(rgb, (5, 5), 0).astype(np.float32) / 255.0
    lab_image = cv2.cvtColor(blurred, cv2.COLOR_RGB2Lab)  # float input: L 0..100, a and b signed
    # The backdrop is the edge's typical colour.
    backdrop = [float(v) for v in backdrop_colour(lab_image, width=width)]
    lab = cv2.split(lab_image)  # per-channel planes keep the arithmetic contiguous
    subject = sum((c - v) ** 2 for c, v in zip(lab, backdrop)) > _BACKGROUND_DIST**2
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    skin = skin_mask(rgb)
    white = near_white(rgb)
    subject_px = int(subject.sum())
    return {
        "border_white": float(white[band].mean()),
        "border_std": float(cv2.meanStdDev(rgb, mask=band.view(np.uint8))[1].mean() / 255.0),
        "border_luma": float(gray[band].mean() / 255.0),
        "border_chroma": float(np.hypot(backdrop[1], backdrop[2]) / 100.0),
        "fill_ratio": float(subject.mean()),
        "fill_ratio_edge": float(subject[band].mean()),
        "white_fraction": float(white.mean()),
        "luma_mean": float(gray.mean() / 255.0),
        "luma_std": float(gray.std() / 255.0),
        "saturation_mean": float(hsv[..., 1].mean() / 255.0),
        "colourfulness": colourfulness(rgb),
        "edge_density": float((cv2.Canny(gray, 100, 200) > 0).mean()),
        "skin_fraction": float(skin.mean()),
        "skin_in_subject": float((skin & subject).sum() / subject_px) if subject_px else 0.0,
    }


def cue_vector(cues: dict[str, float]) -> np.ndarray:
    return np.array([cues[name] for name in CUE_NAMES], np.float32)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def head_probabilities(
    x: np.ndarray, mean: np.ndarray, std: np.ndarray, weight: np.ndarray, bias: np.ndarray, temperature: float
) -> np.ndarray:
    """Calibrated class probabilities (N x C) of the linear softmax head for inputs x (N x D)."""
    logits = ((x - mean) / std) @ weight.T + bias
    return softmax(logits / temperature)
