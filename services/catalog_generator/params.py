"""Parameters of the catalog-generator step."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from studioline.shared.imageops import HexColour, hex_to_rgb
from studioline.shared.step import StepParams

_SIZE = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")
MIN_SIDE, MAX_SIDE = 16, 8192
# All canvases of one job together, as the line's input limit (limits.max_pixels). Composing a
# canvas takes about 47 bytes per pixel, and every canvas is kept (3 bytes a pixel) until encoded
# (bench/memory_bombs.py): 8 canvases near 8192 x 8192 (537 MP) took 4.2 GB and 50 s. Within
# this bound the memory budget (spec.output_memory_factor) decides what a pod can take.
MAX_OUTPUT_PIXELS = 50_000_000
# The try-on contact sheet's cells (step.py: SHEET_CELL_HEIGHT 512, three quarters as wide).
SHEET_CELL_PIXELS = 384 * 512


class CatalogGeneratorParams(StepParams):
    # Canvas sizes, one composite each: "WxH" strings or [w, h] pairs (stored as "WxH").
    sizes: list[str] = Field(default_factory=lambda: ["1600x1600"], min_length=1, max_length=8)
    # Share of the canvas the product spans along the canvas' limiting side.
    fill: float = Field(0.85, gt=0.0, le=1.0)
    background: HexColour = "#FFFFFF"
    # A soft contact shadow under the product's base.
    shadow: bool = True
    # Darkening at the shadow's core (0 = none, 1 = black).
    shadow_opacity: float = Field(0.4, ge=0.0, le=1.0)
    format: Literal["jpeg", "png"] = "jpeg"
    # Try-on mode: put the garment (the job's image and cut-out) on these model templates (ids in
    # the templates bucket, see `studioline templates add`) instead of a plain background.
    template_ids: list[str] = Field(default_factory=list, max_length=8)
    # Try-on: how much of the model photo's folds and light to carry onto the garment (0 = none).
    shading: float = Field(0.5, ge=0.0, le=1.0)
    # Try-on: extra colourways of the garment, as hue rotations in degrees (0 is always made).
    colourways: list[float] = Field(default_factory=list, max_length=6)
    # Try-on: the model photo's backdrop replaced by `background` (from the person mask).
    replace_background: bool = False
    # Try-on with several templates: one contact sheet of the garment across them.
    contact_sheet: bool = True

    @field_validator("template_ids")
    @classmethod
    def _template_ids(cls, v: list[str]) -> list[str]:
        from studioline.services.catalog_generator.templates import TEMPLATE_ID

        bad = [t for t in v if not TEMPLATE_ID.match(t)]
        if bad:
            raise ValueError(f"template ids {bad}: use 1-64 letters, digits, '.', '_' or '-'")
        if len(set(v)) != len(v):
            raise ValueError("template_ids must not repeat")
        return v

    @field_validator("colourways")
    @classmethod
    def _colourways(cls, v: list[float]) -> list[float]:
        if any(not -360.0 < h < 360.0 or h == 0 for h in v):
            raise ValueError("colourways are non-zero hue rotations between -360 and 360 degrees")
        return v

    @field_validator("sizes", mode="before")
    @classmethod
    def _sizes(cls, v):
        if not isinstance(v, (list, tuple)):
            return v  # pydantic reports the type error
        out = []
        for s in v:
            if isinstance(s, str) and (m := _SIZE.match(s)):
                w, h = int(m[1]), int(m[2])
            elif isinstance(s, (list, tuple)) and len(s) == 2 and all(type(n) is int for n in s):
                w, h = s
            else:
                raise ValueError(f"size {s!r} is neither 'WxH' nor [w, h] with integers")
            if not (MIN_SIDE <= w <= MAX_SIDE and MIN_SIDE <= h <= MAX_SIDE):
                raise ValueError(f"size {w}x{h}: each side must be between {MIN_SIDE} and {MAX_SIDE}")
            out.append(f"{w}x{h}")
        if len(set(out)) != len(out):
            raise ValueError("sizes must not repeat")
        return out

    @model_validator(mode="after")
    def _bounded_output(self):
        total = self.canvas_pixels()
        if total > MAX_OUTPUT_PIXELS:
            what = f"{len(self.sizes)} size(s)"
            if self.template_ids:
                what += f" x {len(self.template_ids)} template(s) x {1 + len(self.colourways)} colourway(s)"
            raise ValueError(
                f"{what} make {total / 1e6:.1f} MP of canvases, over the {MAX_OUTPUT_PIXELS / 1e6:.0f} MP one job "
                "may write: ask for fewer or smaller sizes (or split the job)"
            )
        return self

    def output_pixels(self, width: int, height: int) -> int:
        return self.canvas_pixels()  # canvases have their own sizes, whatever the image's

    def canvas_pixels(self) -> int:
        """Every canvas the job writes: each size, per template and colourway in try-on, and
        the contact sheet of several templates."""
        per_variant = sum(w * h for w, h in self.size_pairs())
        if not self.template_ids:
            return per_variant
        sheet = len(self.template_ids) * SHEET_CELL_PIXELS if self.contact_sheet and len(self.template_ids) > 1 else 0
        return per_variant * len(self.template_ids) * (1 + len(self.colourways)) + sheet

    def size_pairs(self) -> list[tuple[int, int]]:
        return [tuple(int(n) for n in s.split("x")) for s in self.sizes]

    def background_rgb(self) -> tuple[int, int, int]:
        return hex_to_rgb(self.background)
