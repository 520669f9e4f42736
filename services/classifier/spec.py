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
    # bench/memory_bombs.py --factors: 1.21 at 20 MP (two alphamatting.com photos enlarged;
    # bench/results/memory_bombs.json). Declared with ~20% margin.
    memory_factor=1.5,
    commands="studioline.services.classifier.cli:add_commands",
)
