"""Colourways: a composite's garment recoloured by rotating its hue in CIELAB's a*b* plane,
inside the garment's coverage only, keeping lightness (and so the print's and folds' contrast).
"""

from __future__ import annotations

import cv2
import numpy as np


def colourway(rgb: np.ndarray, mask: np.ndarray, hue_degrees: float) -> np.ndarray:
    """The image with the hue inside `mask` (HxW float in [0, 1] or bool) rotated by hue_degrees
    in CIELAB's a*b* plane: lightness, and so the print's and the folds' contrast, is kept."""
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).astype(np.float32)
    t = np.deg2rad(hue_degrees)
    a, b = lab[..., 1] - 128.0, lab[..., 2] - 128.0
    rot = lab.copy()
    rot[..., 1] = np.cos(t) * a - np.sin(t) * b + 128.0
    rot[..., 2] = np.sin(t) * a + np.cos(t) * b + 128.0
    shifted = cv2.cvtColor(np.clip(rot, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB).astype(np.float32)
    m = mask.astype(np.float32)[..., None]
    return (rgb.astype(np.float32) * (1.0 - m) + shifted * m + 0.5).astype(np.uint8)
