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
)
