"""The matting step's declaration: the mask in, an RGBA cut-out at full resolution out."""

from studioline.services.matting.params import MattingParams
from studioline.shared.spec import ArtifactKind, StepSpec

SPEC = StepSpec(
    name="matting",
    params=MattingParams,
    implementation="studioline.services.matting.step:MattingStep",
    rpc="Matting",
    method="Matte",
    consumes=("mask",),
    produces=(ArtifactKind("cutout", pixels="rgba"),),
    commands="studioline.services.matting.cli:add_commands",
)
