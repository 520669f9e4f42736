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
    commands="studioline.services.catalog_generator.cli:add_commands",
)
