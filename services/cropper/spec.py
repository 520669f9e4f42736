"""The cropper's declaration: one crop per aspect ratio, each of its own size."""

from studioline.services.cropper.params import CropperParams
from studioline.shared.spec import ArtifactKind, StepSpec

SPEC = StepSpec(
    name="cropper",
    params=CropperParams,
    implementation="studioline.services.cropper.step:CropperStep",
    rpc="Cropper",
    method="Crop",
    optional=("mask",),
    produces=(ArtifactKind("crop", pixels="rgb", formats=("jpeg",), source_geometry=False),),
    models=("vit_s_focus",),
    # bench/memory_bombs.py --factors: 1.79 at 20 MP (two alphamatting.com photos enlarged, with
    # their mask; bench/results/memory_bombs.json). Declared with ~25% margin.
    memory_factor=2.25,
)
