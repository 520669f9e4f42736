"""Parameters of the classifier step."""

from __future__ import annotations

from typing import Literal

from studioline.shared.step import StepParams


class ClassifierParams(StepParams):
    # The head this service ships; a job that pins another version fails instead of being
    # classified by a head it was not meant for.
    head_version: Literal["v1"] = "v1"
    # Return the explainable cues (border whiteness, fill ratio, skin share, ...) in the info.
    include_cues: bool = True
