"""Image helpers the steps share: plain functions over numpy arrays, no step's own logic.

- The frame's border band (where a product shot's backdrop shows): its width, as a mask, its
  pixels (each once, or as the four sides), and the backdrop colour read from it.
- Per-pixel darkest and lightest channel; hole filling of a mask.
- "#RRGGBB" colours: a pydantic string type for step parameters, and its RGB triple.
"""

from __future__ import annotations

import re
from typing import Annotated

import cv2
import numpy as np
from pydantic import AfterValidator

_HEX = re.compile(r"^#[0-9a-fA-F]{6}$")


def border_width(shape: tuple[int, ...], fraction: float) -> int:
    """Width in pixels of a border band `fraction` of the image's shorter side wide (at least 2)."""
    return max(2, round(fraction * min(shape[:2])))


def border_mask(shape: tuple[int, ...], width: int) -> np.ndarray:
    """Boolean HxW mask of the band `width` pixels wide along the frame's edges."""
    band = np.zeros(shape[:2], bool)
    band[:width], band[-width:], band[:, :width], band[:, -width:] = True, True, True, True
    return band


def border_pixels(a: np.ndarray, width: int, mask: np.ndarray | None = None) -> np.ndarray:
    """The pixels of the band `width` wide along the frame's edges, each once: (N, C) for an
    HxWxC image, (N,) for an HxW map. With an HxW mask, only those where it is below 128
    (outside the object)."""
    h, w = a.shape[:2]
    # Where the band is wider than half the image, the far strips start past the near ones.
    bottom, right = max(width, h - width), max(width, w - width)
    middle = a[width:bottom]
    strips = (a[:width], a[bottom:], middle[:, :width], middle[:, right:])
    pixels = np.concatenate([s.reshape(-1, *a.shape[2:]) for s in strips])
    return pixels if mask is None else pixels[border_pixels(mask, width) < 128]


def border_sides(image: np.ndarray, width: int) -> list[np.ndarray]:
    """The top, bottom, left and right strips `width` wide of an HxWxC image, each as (N, C)
    pixels; each strip runs the whole side, so the corner blocks belong to two of them."""
    c = image.shape[2]
    return [s.reshape(-1, c) for s in (image[:width], image[-width:], image[:, :width], image[:, -width:])]


def backdrop_colour(image: np.ndarray, mask: np.ndarray | None = None, width: int = 1) -> np.ndarray | None:
    """The backdrop's colour: the per-channel median of the border band's pixels (`width`
    wide) outside the mask; None when the mask covers the whole band."""
    pixels = border_pixels(image, width, mask)
    return np.median(pixels, axis=0) if len(pixels) else None


def channel_extremes(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel darkest and lightest channel of an HxWx3 image (OpenCV: numpy's reductions
    over the last axis are several times slower)."""
    r, g, b = cv2.split(rgb)
    return cv2.min(cv2.min(r, g), b), cv2.max(cv2.max(r, g), b)


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """The mask (non-zero = set) with every region it encloses added, as bool: whatever a
    4-connected flood from outside the frame cannot reach."""
    h, w = mask.shape
    flood = np.zeros((h + 2, w + 2), np.uint8)
    flood[1:-1, 1:-1] = mask > 0
    cv2.floodFill(flood, None, (0, 0), 2)
    return flood[1:-1, 1:-1] != 2


def _hex_colour(value: str) -> str:
    if not _HEX.match(value):
        raise ValueError(f"{value!r} is not a colour '#RRGGBB'")
    return value.upper()


# A "#RRGGBB" colour parameter, stored upper-case.
HexColour = Annotated[str, AfterValidator(_hex_colour)]


def hex_to_rgb(colour: str) -> tuple[int, int, int]:
    """"#RRGGBB" -> (r, g, b)."""
    return tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))
