"""The classifier's declaration: it routes, so it runs first on every job and plans the rest."""

from studioline.services.classifier.params import ClassifierParams
from studioline.shared.spec import StepSpec

SPEC = StepSpec(
    name="classifier",
    params=ClassifierParams,
    implementation="studioline.services.classifier.step:ClassifierStep",
    rpc="Classifier",
    method="Classify",
    models=("mobilenet_v2",),
    routes=True,
    commands="studioline.services.classifier.cli:add_commands",
)
