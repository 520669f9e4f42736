"""The catalog-generator step.

Packshot mode (no template_ids): the cut-out centred on a plain background at each requested
size, with a soft contact shadow. No model.

Try-on mode (template_ids): the job's garment (its image and cut-out) put on each named model
template from the templates bucket (prepared once by `studioline templates add`, so no model
runs here), in every colourway and size, plus a contact sheet across the templates.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from studioline.services.catalog_generator import ops, templates, tryon
from studioline.services.catalog_generator.colourway import colourway
from studioline.services.catalog_generator.garment import garment_landmarks
from studioline.services.catalog_generator.params import CatalogGeneratorParams
from studioline.services.catalog_generator.spec import SPEC
from studioline.shared.errors import PermanentError
from studioline.shared.step import OutputImage, Step, StepInput, StepOutput

TEMPLATE_CACHE = 16
SHEET_CELL_HEIGHT = 512


class CatalogGeneratorStep(Step):
    spec = SPEC

    def __init__(self, settings, model_store):
        super().__init__(settings, model_store)
        self._storage = None
        self._templates: OrderedDict[str, templates.Template] = OrderedDict()

    def run(self, item: StepInput) -> StepOutput:
        p: CatalogGeneratorParams = item.params
        if p.template_ids:
            return self._try_on(item.inputs["cutout"], p)
        product = ops.trim_premultiplied(item.inputs["cutout"])
        images, boxes = [], {}
        for label, size in zip(p.sizes, p.size_pairs()):
            pixels, box = ops.compose(product, size, p.fill, p.background_rgb(), p.shadow, p.shadow_opacity)
            boxes[label] = list(box)
            images.append(OutputImage(kind="catalog", pixels=pixels, params={"size": label}, format=p.format))
        return StepOutput(images=images, info={"product_boxes": boxes, "background": p.background})

    def template(self, template_id: str) -> templates.Template:
        """A template from the templates bucket, kept in a small LRU cache."""
        if template_id in self._templates:
            self._templates.move_to_end(template_id)
            return self._templates[template_id]
        if self._storage is None:
            from studioline.shared.storage import Storage

            self._storage = Storage(self.settings.s3)
        template = templates.load(self._storage, self.settings.s3.templates_bucket, template_id)
        self._templates[template_id] = template
        if len(self._templates) > TEMPLATE_CACHE:
            self._templates.popitem(last=False)
        return template

    def _try_on(self, cutout: np.ndarray, p: CatalogGeneratorParams) -> StepOutput:
        garment, alpha = ops.cutout_rgb_alpha(cutout)
        background = p.background_rgb()
        images, sheet_cells, info = [], [], {"templates": {}, "background": p.background}
        marks = garment_landmarks(alpha)
        info["garment"] = {"category": marks.category, "sleeves": marks.sleeve_length}
        errors, refusals = [], {}
        for template_id in p.template_ids:
            t = self.template(template_id)
            try:
                composite, cover = tryon.try_on(t.photo, t.person, t.region, t.landmarks, garment, alpha, p.shading)
            except PermanentError as exc:
                # One template that cannot take the garment (a back view...) says why, the others go on.
                refusals[template_id] = str(exc)
                errors.append(exc)
                continue
            if p.replace_background:
                composite = ops.replace_backdrop(composite, t.person, background)
            info["templates"][template_id] = {"coverage_px": int((cover > 0.5).sum())}
            for hue in [0.0, *p.colourways]:
                pixels = composite if hue == 0 else colourway(composite, cover, hue)
                if hue == 0:
                    sheet_cells.append(pixels)
                for label, size in zip(p.sizes, p.size_pairs()):
                    images.append(
                        OutputImage(
                            kind="catalog",
                            pixels=ops.fit_on_canvas(pixels, size, background),
                            params={"size": label, "template": template_id, "hue": hue},
                            format=p.format,
                        )
                    )
        if not images:
            raise errors[0]
        if p.contact_sheet and len(sheet_cells) > 1:
            sheet = np.concatenate(
                [ops.fit_on_canvas(c, (round(SHEET_CELL_HEIGHT * 0.75), SHEET_CELL_HEIGHT), background) for c in sheet_cells],
                axis=1,
            )
            images.append(OutputImage(kind="catalog", pixels=sheet, params={"sheet": "templates"}, format=p.format))
        return StepOutput(images=images, info=info, refusals=refusals)
