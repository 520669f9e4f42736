"""Parameters of the cropper step."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from studioline.shared.imageops import HexColour
from studioline.shared.step import StepParams

_ASPECT = re.compile(r"^\s*([1-9]\d{0,3})\s*:\s*([1-9]\d{0,3})\s*$")


class CropperParams(StepParams):
    # Aspect ratios "W:H", one crop each (e.g. ["1:1", "4:5", "16:9"]).
    aspects: list[str] = Field(default_factory=lambda: ["1:1"], min_length=1, max_length=8)
    # product: around the mask's bounding box; saliency: where the saliency map is;
    # auto: product when the job carries a mask (or the image has an alpha channel), else saliency.
    mode: Literal["auto", "saliency", "product"] = "auto"
    # Product crops: free space on every side, as a fraction of the crop's side.
    margin: float = Field(0.08, ge=0.0, le=0.4)
    # Product crops: colour ("#RRGGBB") of the parts of the window outside the image; "auto"
    # takes the median colour of the image border outside the mask.
    pad_colour: Literal["auto"] | HexColour = "auto"
    # Saliency crops: the window may shrink to this fraction of the largest that fits (1 keeps
    # it as large as fits and only chooses its position) ...
    min_scale: float = Field(1.0, gt=0.0, le=1.0)
    # ... as long as it still covers this share of what the largest window covers.
    keep: float = Field(0.95, gt=0.0, le=1.0)
    # Saliency source: the img-focus ViT model, or the classical spectral-residual map.
    saliency: Literal["model", "spectral"] = "model"
    # Width (sigma, as a fraction of each side) of the centre prior the saliency is weighted
    # with; 0 turns it off.
    centre_prior: float = Field(0.3, ge=0.0, le=2.0)
    # Downscale each crop so its longer side is at most this (None keeps the crop's pixels).
    max_side: int | None = Field(None, ge=16, le=16384)

    @field_validator("aspects")
    @classmethod
    def _aspects(cls, v: list[str]) -> list[str]:
        out = []
        for a in v:
            m = _ASPECT.match(a)
            if not m:
                raise ValueError(f"aspect {a!r} is not 'W:H' with positive integers (e.g. '4:5')")
            w, h = int(m[1]), int(m[2])
            if not 0.1 <= w / h <= 10:  # beyond that a padded product crop gets absurdly large
                raise ValueError(f"aspect {a!r} is more extreme than 1:10 or 10:1")
            out.append(f"{w}:{h}")
        if len(set(out)) != len(out):
            raise ValueError("aspects must not repeat")
        return out
