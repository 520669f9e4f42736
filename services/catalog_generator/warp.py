"""The thin-plate spline that moves a garment onto a body: scipy's RBFInterpolator through
target -> source points, evaluated on a coarse lattice and enlarged, then one cv2.remap of the
garment's premultiplied RGBA. Knows nothing of garments or poses, only point pairs.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy.interpolate import RBFInterpolator


def tps_backward_map(
    dst_points: np.ndarray, src_points: np.ndarray, size: tuple[int, int], grid: int = 8
) -> tuple[np.ndarray, np.ndarray]:
    """For every pixel of a (W, H) output, the source coordinates a thin-plate spline through
    dst -> src gives; evaluated on a `grid`-pixel lattice and interpolated bilinearly (the
    spline is smooth, so this costs nothing visible and ~grid^2 less time)."""
    w, h = size
    spline = RBFInterpolator(np.asarray(dst_points, float), np.asarray(src_points, float), kernel="thin_plate_spline")
    gx = np.linspace(0, w - 1, max(2, -(-w // grid) + 1))
    gy = np.linspace(0, h - 1, max(2, -(-h // grid) + 1))
    lattice = np.stack(np.meshgrid(gx, gy), -1).reshape(-1, 2)
    coarse = spline(lattice).reshape(gy.size, gx.size, 2).astype(np.float32)
    fine = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_LINEAR)
    return fine[..., 0], fine[..., 1]


def tps_warp(rgba: np.ndarray, src_points: np.ndarray, dst_points: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Warps float premultiplied RGBA so that src_points land on dst_points, onto a (W, H) canvas."""
    map_x, map_y = tps_backward_map(dst_points, src_points, size)
    return cv2.remap(rgba, map_x, map_y, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
