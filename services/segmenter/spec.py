"""The segmenter's declaration: a photo in, its foreground mask out."""

from studioline.services.segmenter.params import SegmenterParams
from studioline.shared.spec import ArtifactKind, StepSpec

MASK = ArtifactKind("mask", pixels="mask")

SPEC = StepSpec(
    name="segmenter",
    params=SegmenterParams,
    implementation="studioline.services.segmenter.step:SegmenterStep",
    rpc="Segmenter",
    method="Segment",
    produces=(MASK,),
    # bench/memory_bombs.py --factors: 7.23 at 20 MP (two alphamatting.com photos enlarged;
    # bench/results/memory_bombs.json). Declared with ~20% margin.
    memory_factor=8.5,
    models=("u2netp", "u2net", "isnet"),
    commands="studioline.services.segmenter.cli:add_commands",
)
