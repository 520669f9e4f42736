"""Inpainting: find dust and specks on a plain background, and fill a mask.

Masks are HxW uint8, non-zero = speck / hole. Filling never changes a pixel outside the fill
mask: the filled image is composited back by the mask at full resolution.
"""

from __future__ import annotations

import cv2
import numpy as np

from studioline.shared.imageops import border_sides, channel_extremes, fill_holes

METHODS = ("telea", "ns", "patchmatch")


def _long_side_px(shape: tuple[int, ...], fraction: float, minimum: int = 1) -> int:
    return max(minimum, round(fraction * max(shape[:2])))


def _grow(mask: np.ndarray, r: float) -> np.ndarray:
    """Dilation by a disk of radius r through a distance transform (cost does not grow with
    r). Takes a uint8 or bool mask (non-zero = set), returns uint8 0/255."""
    near = cv2.distanceTransform((mask == 0).astype(np.uint8), cv2.DIST_L2, 5) <= r
    return near.astype(np.uint8) * 255


def _close(mask: np.ndarray, r: float) -> np.ndarray:
    """Morphological closing by a disk of radius r (uint8 0/255 out)."""
    grown = _grow(mask, r)
    return (cv2.distanceTransform(grown, cv2.DIST_L2, 5) > r).astype(np.uint8) * 255


def backdrop(image: np.ndarray, width: int = 2) -> tuple[np.ndarray, float]:
    """Colour of the frame's outer pixels (the backdrop of a product shot: their median) and
    how much they vary (per side, the 90th percentile of the largest channel deviation from
    it; the median over the four sides, so an object or a strip on one side does not count)."""
    sides = [side.astype(np.float32) for side in border_sides(image, width)]
    # The median of the four sides pooled, so the corner blocks count twice (unlike
    # imageops.backdrop_colour): the detections were tuned with it.
    colour = np.median(np.concatenate(sides), axis=0)
    spread = float(np.median([np.percentile(np.abs(side - colour).max(axis=1), 90) for side in sides]))
    return colour, spread


def colour_tolerance(spread: float) -> float:
    """How far a colour may stray from the backdrop's and still be backdrop: follows the
    backdrop's own variation, so a white garment on a retouched light-grey backdrop (9 grey
    levels apart) still stands out, and a noisy or shaded backdrop does not."""
    return float(np.clip(3.0 * spread + 3.0, 3.0, 30.0))


def object_region(image: np.ndarray, object_mask: np.ndarray | None, max_area_px: int) -> np.ndarray:
    """Where the product is (uint8 255): the given mask, plus whatever differs from the
    backdrop colour or is an edge, in a piece too large to be a speck, with enclosed holes
    filled."""
    colour, spread = backdrop(image)
    diff = channel_extremes(cv2.absdiff(image, (*np.round(colour).tolist(), 0.0)))[1]
    # The object's outline counts too: it closes around a garment the colour test half misses.
    edges = cv2.Canny(cv2.GaussianBlur(image, (3, 3), 0), 20, 40)
    differs = ((diff > colour_tolerance(spread)) | (edges > 0)).astype(np.uint8)
    # Bridge the gaps of a patchy match (ribbed or shaded fabric close to the backdrop).
    differs = _close(differs, _long_side_px(image.shape, 0.005, 1))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(differs, connectivity=8)
    # Edges and the closing fatten a speck's piece a few times over; only clearly larger
    # pieces are taken for the object.
    large = np.flatnonzero(stats[:, cv2.CC_STAT_AREA] > 4 * max_area_px)
    large = large[large != 0]
    region = np.isin(labels, large).astype(np.uint8) * 255
    if object_mask is not None:
        region = np.maximum(region, (object_mask >= 128).astype(np.uint8) * 255)
    # A light garment's outline has gaps where it meets a light backdrop: close them before
    # filling the holes, so its inside (prints, buttons, polka dots) is not taken for backdrop.
    # Only large pieces are in the region, so no speck is bridged to the object this way.
    return fill_holes(_close(region, 0.02 * max(image.shape[:2]))).astype(np.uint8) * 255


def contrast_threshold(sensitivity: float) -> float:
    """Minimum contrast (grey levels) of a speck against its local background."""
    return 8.0 + 40.0 * (1.0 - sensitivity)


def _specks_of_one_polarity(
    response: np.ndarray,
    local_off: np.ndarray,
    background: np.ndarray,
    touch_zone: np.ndarray,
    high: float,
    off_tolerance: float,
    min_px: int,
    max_px: int,
) -> np.ndarray:
    """Hysteresis on one response map: components above high/2 that hold a pixel above high,
    are small enough, stay clear of the object and lie on backdrop-coloured ground (mean
    local_off, the local background's distance from the backdrop colour, within tolerance).
    Returns a bool mask."""
    weak = ((response >= high / 2.0) & background).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(weak, connectivity=8)
    if n <= 1:
        return np.zeros(response.shape, bool)
    seeded = np.zeros(n, bool)
    seeded[np.unique(labels[(response >= high) & background])] = True
    area = stats[:, cv2.CC_STAT_AREA]
    # A component that reaches the keep-out zone is the object's own fringe, not a speck.
    touches = np.zeros(n, bool)
    touches[np.unique(labels[touch_zone])] = True
    off = np.bincount(labels.ravel(), weights=local_off.ravel(), minlength=n) / np.maximum(area, 1)
    good = seeded & (area >= min_px) & (area <= max_px) & ~touches & (off <= off_tolerance)
    good[0] = False
    return good[labels]


def detect_specks(
    image: np.ndarray,
    object_mask: np.ndarray | None = None,
    *,
    sensitivity: float,
    max_speck_width: float,
    max_speck_area: float,
    min_speck_px: int,
    object_margin: float,
) -> np.ndarray:
    """Small dark or light blemishes on a plain background, as a fill mask.

    The ground under a speck is estimated by a morphological closing (dark specks) or opening
    (light specks) with a square wider than any speck; pixels that differ from it by more
    than the contrast threshold (or 5 noise sigmas, if higher) seed a speck, which grows over
    pixels above half that. Only small components are kept that stay clear of the object (the
    given mask, plus whatever stands out from the backdrop in large pieces) and whose ground
    has the backdrop's colour; they are dilated a little to cover their soft fringe.
    Returns an HxW uint8 mask, 255 = fill.
    """
    rgb = np.ascontiguousarray(image[..., :3])
    h, w = rgb.shape[:2]
    empty = np.zeros((h, w), np.uint8)
    max_area_px = max(min_speck_px, round(max_speck_area * h * w))
    margin = _long_side_px(rgb.shape, object_margin, 0)
    obj = object_region(rgb, object_mask, max_area_px)
    keep_out = _grow(obj, margin) if margin else obj
    background = keep_out == 0
    if not background.any():
        return empty
    touch_zone = cv2.dilate(keep_out, np.ones((3, 3), np.uint8)) > 0

    k = 2 * _long_side_px(rgb.shape, max_speck_width, 1) + 1
    square = cv2.getStructuringElement(cv2.MORPH_RECT, (k, k))
    colour, spread = backdrop(rgb)
    # Ground may drift from the border's colour (shading, vignetting) by more than the object
    # test allows, but not as far as a light garment on a beige backdrop.
    off_tolerance = colour_tolerance(spread) + 15.0
    floor = contrast_threshold(sensitivity)
    found = np.zeros((h, w), bool)
    # Dark and light specks are found apart: the light gap between a dark speck and the object
    # would otherwise join them into one component that touches the object. A speck darkens
    # its darkest channel or lightens its lightest, whatever its hue; a polarity the backdrop
    # has no room for (light specks on pure white) is not looked for.
    darkest, lightest = channel_extremes(rgb)
    for channel, op, sign, ref in (
        (darkest, cv2.MORPH_BLACKHAT, 1.0, float(colour.min())),
        (lightest, cv2.MORPH_TOPHAT, -1.0, float(colour.max())),
    ):
        room = ref if sign > 0 else 255.0 - ref
        if room < floor:
            continue
        response = cv2.morphologyEx(channel, op, square, borderType=cv2.BORDER_REPLICATE).astype(np.float32)
        ground = channel.astype(np.float32) + sign * response  # the closing / opening
        # Noise of the backdrop (JPEG, sensor): robust sigma of the response over it.
        values = response[background]
        sigma = 1.4826 * float(np.median(np.abs(values - np.median(values))))
        high = max(floor, 5.0 * sigma)
        found |= _specks_of_one_polarity(
            response, np.abs(ground - ref), background, touch_zone, high, off_tolerance, min_speck_px, max_area_px
        )
    if not found.any():
        return empty
    return _grow(found, _long_side_px(rgb.shape, 0.002, 1))


def count_specks(mask: np.ndarray) -> int:
    """Number of separate specks (8-connected components) in a fill mask."""
    return cv2.connectedComponents((mask > 0).astype(np.uint8), connectivity=8)[0] - 1


def patchmatch_available() -> bool:
    """Whether the optional pypatchmatch package and its native library are there."""
    try:
        import patchmatch
    except ImportError:
        return False
    return bool(patchmatch.patchmatch_available)


def _patchmatch(image: np.ndarray, mask: np.ndarray, radius: int) -> np.ndarray:
    if not patchmatch_available():
        raise RuntimeError("method 'patchmatch' needs the pypatchmatch package and its native library")
    import patchmatch

    # The search is randomised: a fixed seed makes equal inputs give equal outputs.
    patchmatch.set_random_seed(0)
    return patchmatch.inpaint(np.ascontiguousarray(image), mask, patch_size=radius)


def inpaint(image: np.ndarray, fill_mask: np.ndarray, method: str, radius: int) -> np.ndarray:
    """The image with the fill mask's non-zero pixels filled from their surroundings; every
    other pixel is returned unchanged. RGB or RGBA uint8 (alpha is left as it is). radius is
    the neighbourhood of Telea / Navier-Stokes, or PatchMatch's patch radius."""
    if method not in METHODS:
        raise ValueError(f"unknown inpainting method {method!r}; choose one of {', '.join(METHODS)}")
    if fill_mask.shape != image.shape[:2]:
        raise ValueError(f"fill mask {fill_mask.shape} does not match the image {image.shape[:2]}")
    hole = fill_mask > 0
    out = image.copy()
    if not hole.any():
        return out
    rgb = np.ascontiguousarray(image[..., :3])
    hole8 = hole.astype(np.uint8) * 255
    # Holes are filled in groups, each on its own crop with some context around it, so the
    # cost follows the damage rather than the frame (PatchMatch searches its whole input).
    pad = 8 * radius + 16
    near = cv2.dilate(hole8, cv2.getStructuringElement(cv2.MORPH_RECT, (2 * pad + 1, 2 * pad + 1)))
    n, groups, stats, _ = cv2.connectedComponentsWithStats(near, connectivity=8)
    for g in range(1, n):
        x, y, w, h = stats[g, :4]
        box = (slice(y, y + h), slice(x, x + w))
        crop, crop_hole = rgb[box], hole8[box]
        if method == "patchmatch":
            filled = _patchmatch(crop, crop_hole, radius)
        else:
            flag = cv2.INPAINT_TELEA if method == "telea" else cv2.INPAINT_NS
            filled = cv2.inpaint(crop, crop_hole, radius, flag)
        mine = (crop_hole > 0) & (groups[box] == g)
        out[box][..., :3][mine] = filled[mine]
    return out
