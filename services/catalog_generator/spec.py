"""The catalog generator's declaration: the cut-out in, catalog canvases (or try-on composites) out."""

from studioline.services.catalog_generator.params import CatalogGeneratorParams
from studioline.shared.spec import ArtifactKind, StepSpec

SPEC = StepSpec(
    name="catalog-generator",
    params=CatalogGeneratorParams,
    implementation="studioline.services.catalog_generator.step:CatalogGeneratorStep",
    rpc="CatalogGenerator",
    method="Compose",
    consumes=("cutout",),
    produces=(ArtifactKind("catalog", pixels="rgb", formats=("jpeg", "png"), source_geometry=False),),
    # bench/memory_bombs.py --factors (bench/results/memory_bombs.json): a canvas is composed in
    # float, 15.76 times its bytes (one 4096 x 4096 canvas from a small cut-out); the cut-out
    # and image then cost 3.46 times theirs (20 MP alphamatting.com photos with their alpha, one
    # 1600 x 1600 canvas). Declared with ~10-15% margin.
    memory_factor=4.0,
    output_memory_factor=17.5,
    commands="studioline.services.catalog_generator.cli:add_commands",
)
