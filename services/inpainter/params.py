"""Parameters of the inpainter step."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from studioline.shared.step import StepParams


class InpainterParams(StepParams):
    # "auto": find dust and specks on the plain background and fill them; "mask": fill the
    # job's fill_mask artifact (required then). A fill_mask, when present, is filled exactly
    # in either mode.
    mode: Literal["auto", "mask"] = "auto"
    # OpenCV's Telea or Navier-Stokes fill, or PatchMatch (needs the pypatchmatch package;
    # better on texture, slower).
    method: Literal["telea", "ns", "patchmatch"] = "telea"
    # How far Telea / Navier-Stokes look around each hole pixel, in pixels.
    radius: int = Field(5, ge=1, le=32)
    # PatchMatch's patch radius (patches of (2r+1)^2 pixels); larger follows larger structure
    # but is much slower.
    patch_radius: int = Field(3, ge=1, le=16)
    # Auto mode. 0..1: higher finds fainter specks (minimum contrast against the local
    # background goes from 48 grey levels at 0 down to 8 at 1).
    sensitivity: float = Field(0.5, ge=0.0, le=1.0)
    # Largest speck width (a dot's diameter, a hair's thickness) and largest speck area, as
    # fractions of the image's long side and of the image area; smaller specks than
    # min_speck_px pixels are left alone.
    max_speck_width: float = Field(0.02, gt=0.0, le=0.1)
    max_speck_area: float = Field(0.002, gt=0.0, le=0.05)
    min_speck_px: int = Field(1, ge=1, le=1000)
    # Specks closer than this to the object (fraction of the long side) are left alone, so
    # the object's own edge is never touched.
    object_margin: float = Field(0.01, ge=0.0, le=0.1)

    def detection(self) -> dict:
        """Auto mode's speck detector arguments (ops.detect_specks)."""
        return self.model_dump(
            include={"sensitivity", "max_speck_width", "max_speck_area", "min_speck_px", "object_margin"}
        )
