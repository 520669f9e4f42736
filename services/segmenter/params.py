"""Parameters of the segmenter step."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from studioline.shared.step import StepParams


NetworkName = Literal["u2netp", "u2net", "isnet"]


class SegmenterParams(StepParams):
    # auto: the classical segmenter when the background is plain and its mask looks right,
    # else `network`. u2net (larger, slower) and isnet (1024 px, best edges; the opt-in isnet
    # model pack) are loaded on first use.
    model: Literal["auto", "u2netp", "u2net", "isnet", "classical"] = "auto"
    # The network "auto" falls back to.
    network: NetworkName = "u2netp"
    # Quality score (info "quality", 0..1) under which the step runs `escalate_to` on the image
    # and keeps that model's mask; 0 never escalates.
    escalate_below: float = Field(0.0, ge=0.0, le=1.0)
    escalate_to: NetworkName = "isnet"
    # Quality under which the final mask is flagged for review (info "needs_review").
    review_below: float = Field(0.0, ge=0.0, le=1.0)
    # Foreground probability at which a pixel counts as product (clean-up, hard masks, info).
    threshold: float = Field(0.5, gt=0.0, lt=1.0)
    # True: soft edges (0..255); False: a hard 0/255 mask.
    soft: bool = True
    # Fill enclosed background-like regions (a white print inside a white shirt). Off for people:
    # the gaps between arms and body are background.
    fill_holes: bool = True
    # Drop separate blobs smaller than this fraction of the image (the largest always stays).
    min_component: float = Field(0.002, ge=0.0, le=0.5)
    # Border uniformity (share of the border within delta E 8 of its median colour) from which
    # "auto" treats the background as plain and tries the classical segmenter.
    plain_uniformity: float = Field(0.8, ge=0.0, le=1.0)
    # backdrop: on a plain backdrop (see plain_uniformity), redraw a network mask's outline from
    # the backdrop's colour within a band two network pixels wide (ops.refine_with_backdrop).
    refine: Literal["none", "backdrop"] = "none"
    # Classical path: let GrabCut move the edge within a narrow band (slower, ~0.3 s).
    grabcut: bool = False
    # RGBA input with real transparency: return its alpha instead of segmenting again.
    use_alpha: bool = True
