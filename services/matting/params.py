"""Parameters of the matting step."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from studioline.shared.step import StepParams


class MattingParams(StepParams):
    # pymatting's solver: closed-form (Levin et al.), KNN, or large-kernel matting. KNN and
    # large-kernel are 10-30x slower here (10-30 s at 800 px) for no better mattes.
    method: Literal["cf", "knn", "lkm"] = "cf"
    # Half-width of the unknown band around the mask edge, as a fraction of the image's long
    # side (so it scales with resolution); never narrower than min_band_px.
    band: float = Field(0.01, gt=0.0, le=0.2)
    min_band_px: int = Field(2, ge=1, le=64)
    # Mask levels (0..255) at or above which a pixel is confident foreground, at or below
    # which it is confident background; a soft mask's in-between values join the unknown band.
    fg_level: int = Field(230, ge=1, le=255)
    bg_level: int = Field(25, ge=0, le=254)
    # Alpha (and foreground colours) are solved at most at this long side, then brought back.
    max_side: int = Field(1024, ge=64, le=8192)

    @model_validator(mode="after")
    def _levels_ordered(self):
        if self.bg_level >= self.fg_level:
            raise ValueError("bg_level must be below fg_level")
        return self
