import json

import pytest

from studioline.shared.errors import InvalidEvent
from studioline.shared.events import artifact_key, new_job, parse_ingest

MINIO_NOTIFICATION = {
    "EventName": "s3:ObjectCreated:Put",
    "Key": "incoming/shoes/red%20shoe.jpg",
    "Records": [
        {
            "eventVersion": "2.0",
            "eventSource": "minio:s3",
            "eventName": "s3:ObjectCreated:Put",
            "s3": {
                "bucket": {"name": "incoming"},
                "object": {"key": "shoes/red+shoe.jpg", "size": 1024, "eTag": "abc123", "sequencer": "17"},
            },
        }
    ],
}


def test_protobuf_job_round_trip():
    job = new_job("incoming", "a.jpg", tenant="shop")
    (parsed,) = parse_ingest(job.SerializeToString(), "default")
    assert parsed.job_id == job.job_id and parsed.source.key == "a.jpg" and parsed.tenant == "shop"


def test_plain_json_with_recipe():
    doc = {
        "bucket": "incoming",
        "key": "b.png",
        "tenant": "shop",
        "recipe": {"outputs": ["cutout"], "stepParams": {"cropper": {"aspects": ["1:1"]}}, "chain": "other"},
        "attributes": {"sku": 42},
    }
    (job,) = parse_ingest(json.dumps(doc).encode(), "default")
    assert job.recipe.chain == "other" and list(job.recipe.outputs) == ["cutout"]
    assert job.recipe.step_params["cropper"]["aspects"][0] == "1:1"
    assert job.attributes["sku"] == "42"
    # Without a job id, the same object is the same job: a replay is idempotent.
    (again,) = parse_ingest(json.dumps(doc).encode(), "default")
    assert again.job_id == job.job_id


def test_minio_notification_decodes_key():
    (job,) = parse_ingest(json.dumps(MINIO_NOTIFICATION).encode(), "default")
    assert job.source.bucket == "incoming" and job.source.key == "shoes/red shoe.jpg"
    assert job.tenant == "default"


def test_notification_without_created_records_is_rejected():
    doc = dict(MINIO_NOTIFICATION, EventName="s3:ObjectRemoved:Delete")
    doc["Records"] = [dict(doc["Records"][0], eventName="s3:ObjectRemoved:Delete")]
    with pytest.raises(InvalidEvent, match="ObjectCreated"):
        parse_ingest(json.dumps(doc).encode(), "default")


@pytest.mark.parametrize(
    "value, message",
    [
        (b"", "empty"),
        (b"{not json", "does not parse"),
        (json.dumps({"bucket": "x"}).encode(), "key"),
        (b"\xff\xfe garbage", "neither JSON nor"),
        (json.dumps({"bucket": "x", "key": "y", "recipe": {"outputs": 3}}).encode(), "recipe"),
    ],
)
def test_bad_messages_name_the_problem(value, message):
    with pytest.raises(InvalidEvent, match=message):
        parse_ingest(value, "default")


def test_artifact_keys_are_deterministic_and_parameter_sensitive():
    a = artifact_key("t", "ab" * 32, "cropper", {"aspects": ["1:1"]}, "crop.jpg")
    assert a == artifact_key("t", "ab" * 32, "cropper", {"aspects": ["1:1"]}, "crop.jpg")
    assert a != artifact_key("t", "ab" * 32, "cropper", {"aspects": ["4:5"]}, "crop.jpg")
    assert a.startswith("t/ab/" + "ab" * 32 + "/cropper-")
