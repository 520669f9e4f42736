"""The catalog-generator step: the cut-out centred on a plain background at each requested
size, with a soft contact shadow. No model."""

from __future__ import annotations

from studioline.services.catalog_generator import ops
from studioline.services.catalog_generator.params import CatalogGeneratorParams
from studioline.shared.step import OutputImage, Step, StepInput, StepOutput


class CatalogGeneratorStep(Step):
    name = "catalog-generator"
    Params = CatalogGeneratorParams
    consumes = ("cutout",)
    produces = ("catalog",)

    def run(self, item: StepInput) -> StepOutput:
        self.check_inputs(item.inputs)
        p: CatalogGeneratorParams = item.params
        product = ops.trim_premultiplied(item.inputs["cutout"])
        images, boxes = [], {}
        for label, size in zip(p.sizes, p.size_pairs()):
            pixels, box = ops.compose(product, size, p.fill, p.background_rgb(), p.shadow, p.shadow_opacity)
            boxes[label] = list(box)
            images.append(OutputImage(kind="catalog", pixels=pixels, params={"size": label}, format=p.format))
        return StepOutput(images=images, info={"product_boxes": boxes, "background": p.background})
