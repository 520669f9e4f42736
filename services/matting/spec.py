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
    # bench/memory_bombs.py --factors: 11.85 at 20 MP (two alphamatting.com photos enlarged, their
    # alpha as the mask; bench/results/memory_bombs.json). Declared with ~15% margin.
    memory_factor=13.5,
    commands="studioline.services.matting.cli:add_commands",
)
