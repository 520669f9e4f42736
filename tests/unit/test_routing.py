import json
from pathlib import Path

import pytest
import yaml

from studioline.shared.config import Settings
from studioline.shared.errors import ConfigError, InvalidEvent, InvalidParams
from studioline.shared import steps
from studioline.shared.routing import Router
from studioline.v1 import job_pb2


@pytest.fixture(scope="module")
def router():
    return Router.from_settings(Settings())


def _write_table(tmp_path: Path, table: dict) -> Path:
    path = tmp_path / "routing.yaml"
    path.write_text(yaml.safe_dump(table))
    return path


def test_every_type_routes_to_a_chain(router):
    for image_type in ("product_on_white", "on_model_studio", "lifestyle_on_model_street",
                       "flat_lay_or_hanging_amateur", "other"):
        decision = router.decide(image_type, 0.99)
        assert not decision.needs_review and decision.chain in router.table.chains


def test_low_confidence_and_unknown_types_take_the_fallback(router):
    assert router.decide("product_on_white", 0.2) .needs_review
    assert router.decide("product_on_white", 0.2).chain == router.fallback_chain
    assert router.decide("ghost_mannequin", 0.99).chain == router.fallback_chain


def test_plan_prunes_to_wanted_outputs(router):
    full = router.plan("product_on_white", job_pb2.Recipe())
    assert [s.step for s in full.steps] == ["segmenter", "inpainter", "matting", "cropper", "catalog-generator"]
    masks_only = router.plan("product_on_white", job_pb2.Recipe(outputs=["mask"]))
    assert [s.step for s in masks_only.steps] == ["segmenter"]
    cutout = router.plan("product_on_white", job_pb2.Recipe(outputs=["cutout"]))
    # The cleaned backdrop feeds the cut-out, so the inpainter stays.
    assert [s.step for s in cutout.steps] == ["segmenter", "inpainter", "matting"]


def test_recipe_params_override_table_params(router):
    recipe = job_pb2.Recipe()
    recipe.step_params["cropper"].update({"aspects": ["16:9"]})
    slip = router.plan("other", recipe)
    assert json.loads(slip.steps[0].params_json)["aspects"] == ["16:9"]
    recipe.step_params["cropper"].update({"no_such_param": 1})
    with pytest.raises(InvalidParams, match="no_such_param"):
        router.plan("other", recipe)


def test_planned_params_keep_their_types(router):
    """A recipe's Struct makes every number a double; the plan carries the model's own JSON,
    so the catalog generator's integer sizes arrive as integers."""
    recipe = job_pb2.Recipe()
    recipe.step_params["catalog-generator"].update({"sizes": [[800, 1000]], "fill": 0.9})
    (planned,) = [s for s in router.plan("product_on_white", recipe).steps if s.step == "catalog-generator"]
    params = json.loads(planned.params_json)
    assert params["sizes"] == ["800x1000"] and params["fill"] == 0.9
    assert steps.spec("catalog-generator").load_params(planned.params_json).size_pairs() == [(800, 1000)]


def test_unknown_outputs_and_chains_are_rejected(router):
    with pytest.raises(InvalidEvent, match="unknown output"):
        router.plan("other", job_pb2.Recipe(outputs=["hologram"]))
    with pytest.raises(InvalidEvent, match="unknown chain"):
        router.decide("other", 0.9, requested_chain="nope")


@pytest.mark.parametrize(
    "table, message",
    [
        ({"types": {"a": "c"}, "chains": {"c": [{"step": "sharpener"}], "fallback": []}}, "unknown step 'sharpener'"),
        ({"types": {"a": "missing"}, "chains": {"fallback": []}}, "unknown chain 'missing'"),
        ({"types": {}, "chains": {"c": [{"step": "cropper", "params": {"aspect": "1:1"}}], "fallback": []}}, "aspect"),
        ({"types": {}, "chains": {"c": []}}, "fallback chain"),
    ],
)
def test_bad_tables_fail_at_start_up(tmp_path, table, message):
    with pytest.raises(ConfigError, match=message):
        Router.from_file(_write_table(tmp_path, table), 0.5, "fallback")


def test_environment_overrides_config(monkeypatch, tmp_path):
    monkeypatch.setenv("STUDIOLINE_KAFKA__MAX_BATCH", "3")
    config = tmp_path / "studioline.yaml"
    config.write_text("kafka: {max_batch: 5, partitions: 2}\nlimits: {max_pixels: 1000}\n")
    monkeypatch.setenv("STUDIOLINE_CONFIG", str(config))
    s = Settings()
    assert s.kafka.max_batch == 3 and s.kafka.partitions == 2 and s.limits.max_pixels == 1000
    monkeypatch.setenv("STUDIOLINE_KAFKA__MAX_BATCH", "0")
    with pytest.raises(Exception, match="max_batch"):
        Settings()


def test_kafka_security_reaches_every_client(monkeypatch):
    assert Settings().kafka.client_config() == {"bootstrap_servers": ["localhost:9092"], "security_protocol": "PLAINTEXT"}
    monkeypatch.setenv("STUDIOLINE_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("STUDIOLINE_KAFKA__SASL_USERNAME", "line")
    monkeypatch.setenv("STUDIOLINE_KAFKA__SASL_PASSWORD", "s3cret")
    k = Settings().kafka
    assert "s3cret" not in repr(k)  # never printed with the settings
    config = k.client_config()
    assert config["sasl_plain_username"] == "line" and config["sasl_plain_password"] == "s3cret"
    monkeypatch.setenv("STUDIOLINE_KAFKA__SECURITY_PROTOCOL", "SASL")
    with pytest.raises(Exception, match="security_protocol"):
        Settings()
