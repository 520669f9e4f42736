"""The inpainter's declaration: its cleaned photo becomes the working image of later steps."""

from studioline.services.inpainter.params import InpainterParams
from studioline.shared.spec import ArtifactKind, StepSpec

SPEC = StepSpec(
    name="inpainter",
    params=InpainterParams,
    implementation="studioline.services.inpainter.step:InpainterStep",
    rpc="Inpainter",
    method="Inpaint",
    optional=("mask", "fill_mask"),
    produces=(ArtifactKind("cleaned", pixels="rgb", working=True),),
    # The region to fill, given by the caller (255 = fill).
    accepts=(ArtifactKind("fill_mask", pixels="mask"),),
    # bench/memory_bombs.py --factors: 6.22 at 20 MP (two alphamatting.com photos enlarged, with
    # their mask; bench/results/memory_bombs.json). Declared with ~20% margin.
    memory_factor=7.5,
)
