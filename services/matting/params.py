"""Parameters of the matting step."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from studioline.shared.step import StepParams


class MattingParams(StepParams):
    # Alpha solver: pymatting's closed-form (Levin et al.), information-flow matting (Aksoy et
    # al. 2017), the mean of the two (best, ~4x closed-form's time), KNN or large-kernel
    # matting. See docs/ARCHITECTURE.md for their figures.
    method: Literal["cf", "ifm", "cf+ifm", "knn", "lkm"] = "cf"
    # The unknown band around the mask edge is as wide as the mask's own transition there, at
    # least min_band and at most band (fractions of the image's long side, so it scales with
    # resolution), widened towards band near hair-like texture; never narrower than min_band_px.
    band: float = Field(0.02, gt=0.0, le=0.2)
    min_band: float = Field(0.003, gt=0.0, le=0.2)
    min_band_px: int = Field(2, ge=1, le=64)
    # Mask levels (0..255) at or above which a pixel is confident foreground, at or below
    # which it is confident background; a soft mask's in-between values join the unknown band.
    fg_level: int = Field(230, ge=1, le=255)
    bg_level: int = Field(25, ge=0, le=254)
    # The alpha is solved at a scale where the unknown region has at most this many pixels,
    # then brought back by guided upsampling: the solve's time stays bounded at any resolution.
    solve_pixels: int = Field(30_000, ge=1_000, le=2_000_000)
    # Before solving, an unknown pixel with a known pixel of nearly its colour (RGB distance
    # <= expand_colour on [0, 1]) within expand_radius px takes that label (0: off); after,
    # alphas within clamp of 0 or 1 become 0 or 1 (see ops.EXPAND_RADIUS, ops.CLAMP).
    expand_radius: int = Field(5, ge=0, le=32)
    expand_colour: float = Field(0.03, ge=0.0, le=1.0)
    clamp: float = Field(0.05, ge=0.0, lt=0.5)
    # Foreground colours are estimated at most at this long side, then solved at full resolution.
    max_side: int = Field(1024, ge=64, le=8192)

    def solver(self) -> dict:
        """The alpha solver's own arguments (ops.estimate_alpha), for callers that bring a trimap."""
        return self.model_dump(include={"method", "solve_pixels", "expand_radius", "expand_colour", "clamp"})

    @model_validator(mode="after")
    def _levels_ordered(self):
        if self.bg_level >= self.fg_level:
            raise ValueError("bg_level must be below fg_level")
        if self.min_band > self.band:
            raise ValueError("min_band must not exceed band")
        return self
