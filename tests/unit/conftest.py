"""Fixtures the unit tests share."""

import pytest

from studioline.services.classifier.step import ClassifierStep
from studioline.shared.config import PROJECT_ROOT, Settings
from studioline.shared.models.store import ModelStore


@pytest.fixture(scope="module")
def classifier_step():
    """The real classifier, loaded from the local model store (`make models`)."""
    s = ClassifierStep(Settings(), ModelStore(PROJECT_ROOT / ".models"))
    s.load()
    yield s
    s.close()
