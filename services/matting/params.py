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
    # The alpha is solved at a scale where the unknown region (after expansion) has at most this
    # many pixels, then brought back by guided upsampling: the solve's time stays bounded at any
    # resolution. Closed-form on alphamatting.com (expanded, clamped; Trimap1 / Trimap2 mean
    # SAD): 20k 5.18 / 6.67, 30k 5.20 / 6.69, 45k 5.27 / 6.73: the coarser solve loses nothing
    # and halves the time.
    solve_pixels: int = Field(30_000, ge=1_000, le=2_000_000)
    # Trimap expansion (Shared Matting, Gastal and Oliveira 2010): before solving, an unknown
    # pixel takes the label of the nearest known pixel within expand_radius px whose colour is
    # within expand_colour (RGB distance, channels on [0, 1]); 0: off. Chosen on the 20
    # alphamatting.com images, both trimaps (closed-form at 60k pixels, unclamped, mean SAD):
    # none 5.66 / 7.50; (10, 0.02) 5.77 / 6.90; (10, 0.01) 5.61 / 7.10; (5, 0.02) 5.36 / 7.15;
    # (3, 0.02) 5.33 / 7.23; (5, 0.03) 5.30 / 7.03.
    expand_radius: int = Field(5, ge=0, le=32)
    expand_colour: float = Field(0.03, ge=0.0, le=1.0)
    # Solved alphas within clamp of 0 or 1 become exactly 0 or 1: solvers leave a faint veil
    # over pure background and foreground that the ground truth does not have. Closed-form at
    # 30k (Trimap1 / Trimap2 mean SAD): none 5.22 / 6.93, 0.02 5.19 / 6.82, 0.05 5.20 / 6.69,
    # 0.1 5.33 / 6.63.
    clamp: float = Field(0.05, ge=0.0, lt=0.5)
    # Foreground colours are estimated at most at this long side, then solved at full resolution.
    max_side: int = Field(1024, ge=64, le=8192)

    def trimap(self) -> dict:
        """The trimap's own arguments (ops.trimap_from_mask), for callers that bring a mask."""
        return self.model_dump(include={"band", "min_band", "min_band_px", "fg_level", "bg_level"})

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
