"""Parameters of the cropper step."""

from __future__ import annotations

import re
from typing import Annotated, Literal, NamedTuple

from pydantic import Field, PlainSerializer, PlainValidator, field_validator

from studioline.shared.imageops import HexColour
from studioline.shared.step import StepParams

_ASPECT = re.compile(r"^\s*([1-9]\d{0,3})\s*:\s*([1-9]\d{0,3})\s*$")


class Aspect(NamedTuple):
    """An aspect ratio W:H, parsed once when the parameters are validated."""

    w: int
    h: int

    @property
    def ratio(self) -> float:
        return self.w / self.h

    def __str__(self) -> str:
        return f"{self.w}:{self.h}"


def parse_aspect(value) -> Aspect:
    """"4 : 5" -> Aspect(4, 5); the parameters' JSON writes it back as "4:5"."""
    if isinstance(value, Aspect):
        return value
    m = _ASPECT.match(value) if isinstance(value, str) else None
    if not m:
        raise ValueError(f"aspect {value!r} is not 'W:H' with positive integers (e.g. '4:5')")
    aspect = Aspect(int(m[1]), int(m[2]))
    if not 0.1 <= aspect.ratio <= 10:  # beyond that a padded product crop gets absurdly large
        raise ValueError(f"aspect {value!r} is more extreme than 1:10 or 10:1")
    return aspect


AspectRatio = Annotated[Aspect, PlainValidator(parse_aspect), PlainSerializer(str, return_type=str)]


class CropperParams(StepParams):
    # Aspect ratios "W:H", one crop each (e.g. ["1:1", "4:5", "16:9"]).
    aspects: list[AspectRatio] = Field(default_factory=lambda: [Aspect(1, 1)], min_length=1, max_length=8)
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

    def output_pixels(self, width: int, height: int) -> int:
        # One crop per aspect, each at most the image (or max_side squared).
        per_crop = width * height if self.max_side is None else min(width * height, self.max_side**2)
        return len(self.aspects) * per_crop

    @field_validator("aspects")
    @classmethod
    def _aspects(cls, v: list[Aspect]) -> list[Aspect]:
        if len(set(v)) != len(v):
            raise ValueError("aspects must not repeat")
        return v
