"""Parameters of the segmenter step."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from studioline.shared.step import StepParams


class SegmenterParams(StepParams):
    # auto: the classical segmenter when the background is plain and its mask looks right,
    # else U2Netp. u2net is the larger, slower model, loaded on first use.
    model: Literal["auto", "u2netp", "u2net", "classical"] = "auto"
    # Foreground probability at which a pixel counts as product (clean-up, hard masks, info).
    threshold: float = Field(0.5, gt=0.0, lt=1.0)
    # True: soft edges (0..255); False: a hard 0/255 mask.
    soft: bool = True
    # Fill enclosed background-like regions (a white print inside a white shirt).
    fill_holes: bool = True
    # Drop separate blobs smaller than this fraction of the image (the largest always stays).
    min_component: float = Field(0.002, ge=0.0, le=0.5)
    # Border uniformity (share of the border within delta E 8 of its median colour) from which
    # "auto" treats the background as plain and tries the classical segmenter.
    plain_uniformity: float = Field(0.8, ge=0.0, le=1.0)
    # Classical path: let GrabCut move the edge within a narrow band (slower, ~0.3 s).
    grabcut: bool = False
    # RGBA input with real transparency: return its alpha instead of segmenting again.
    use_alpha: bool = True
