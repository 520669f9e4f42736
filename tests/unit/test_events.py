import json

import pytest

from studioline.shared import events
from studioline.shared.config import IngestLimits
from studioline.shared.errors import MESSAGE_MAX_CHARS, Forbidden, InvalidEvent, PermanentError, bounded
from studioline.shared.events import artifact_key, new_job, parse_ingest, parse_job

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
    (parsed,) = parse_ingest(job.SerializeToString(), "shop")
    assert parsed.job_id == job.job_id and parsed.source.key == "a.jpg" and parsed.tenant == "shop"


@pytest.mark.parametrize("claim", ["shop", "t" * 300])
def test_the_tenant_is_the_topics_never_the_events(claim):
    """An event naming another tenant than its topic's is forbidden, as JSON and as protobuf;
    one naming none gets the topic's."""
    with pytest.raises(Forbidden, match="arrived on 'other'"):
        parse_ingest(new_job("incoming", "a.jpg", tenant=claim).SerializeToString(), "other")
    with pytest.raises(Forbidden, match="arrived on 'other'"):
        parse_ingest(_json_job(tenant=claim), "other")
    (job,) = parse_ingest(_json_job(), "other")
    assert job.tenant == "other"


def test_a_notification_on_the_shared_topic_belongs_to_the_buckets_owner():
    owners = {"incoming": "shop-a"}
    (job,) = parse_ingest(json.dumps(MINIO_NOTIFICATION).encode(), "default", bucket_owner=owners.get)
    assert job.tenant == "shop-a"
    with pytest.raises(Forbidden, match="no tenant reads this bucket"):
        parse_ingest(json.dumps(MINIO_NOTIFICATION).encode(), "default", bucket_owner={}.get)


def test_plain_json_with_recipe():
    doc = {
        "bucket": "incoming",
        "key": "b.png",
        "tenant": "shop",
        "recipe": {"outputs": ["cutout"], "stepParams": {"cropper": {"aspects": ["1:1"]}}, "chain": "other"},
        "attributes": {"sku": 42},
    }
    (job,) = parse_ingest(json.dumps(doc).encode(), "shop")
    assert job.recipe.chain == "other" and list(job.recipe.outputs) == ["cutout"]
    assert job.recipe.step_params["cropper"]["aspects"][0] == "1:1"
    assert job.attributes["sku"] == "42"
    # Without a job id, the same object is the same job: a replay is idempotent.
    (again,) = parse_ingest(json.dumps(doc).encode(), "shop")
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


# ---- poison events: every one is an InvalidEvent with a reason, never another exception -------

S3_KEY_NOT_A_STRING = {"Records": [{"eventName": "s3:ObjectCreated:Put",
                                    "s3": {"bucket": {"name": "incoming"}, "object": {"key": 5}}}]}


@pytest.mark.parametrize(
    "value, code, message",
    [
        (b'{"Records": [1]}', "invalid_event", "record 0 is int"),
        (b'{"a":' * 100_000, "invalid_event", "nested deeper than the parser"),  # RecursionError before
        (b'{"a":' * 40 + b"1" + b"}" * 40, "invalid_event", "nested deeper than 32"),
        (json.dumps(S3_KEY_NOT_A_STRING).encode(), "invalid_event", "s3.object.key is int"),
        (json.dumps({"Records": [{"eventName": 7}]}).encode(), "invalid_event", "eventName is int"),
        (None, "tombstone", "tombstone"),
        (b"{\xff\xfe}", "invalid_event", "does not parse"),
        (b"\x0a\xff\xff\xff\xff\x0f", "invalid_event", "neither JSON nor"),
        (b'{"bucket": "b", "key": "k", "x": NaN}', "invalid_event", "NaN"),
        (b'{"bucket": "b", "key": "k", "x": ' + b"1" * 5000 + b"}", "invalid_event", "does not parse"),
        (b'{"bucket": "b", "key": "k", "recipe": []}', "invalid_event", "recipe must be an object"),
        (b'{"bucket": "b", "key": "k", "recipe": {"stepParams": {"c": {"x": 1e999}}}}', "invalid_event", "not finite"),
        (b'{"bucket": "b", "key": "k", "attributes": {"a": {"b": 1}}}', "invalid_event", "attribute 'a' is dict"),
        (b'{"bucket": "b", "key": "k", "tenant": {"t": 1}}', "invalid_event", "'tenant' must be a string"),
    ],
)
def test_poison_events_are_invalid_events(value, code, message):
    with pytest.raises(InvalidEvent, match=message) as caught:
        parse_ingest(value, "default")
    assert caught.value.code == code


@pytest.mark.parametrize("value", [None, b"\xff\xfe garbage", b"", new_job("b", "k", tenant="t").SerializeToString()[:-3]])
def test_step_topic_values_that_are_no_job(value):
    with pytest.raises(InvalidEvent) as caught:
        parse_job(value)
    assert caught.value.code == ("tombstone" if value is None else "invalid_event")


def _json_job(**fields) -> bytes:
    return json.dumps({"bucket": "incoming", "key": "a.jpg", **fields}).encode()


@pytest.mark.parametrize(
    "value, message",
    [
        (_json_job(attributes={"blob": "x" * (1 << 20)}), "ingest.max_attributes_bytes"),  # 1 MB attribute
        (_json_job(attributes={f"a{i}": "1" for i in range(65)}), "ingest.max_attributes"),
        (_json_job(recipe={"stepParams": {f"s{i}": {"v": "x" * 15_000} for i in range(5)}}), "ingest.max_recipe_bytes"),
        (_json_job(recipe={"stepParams": {"cropper": {"v": "x" * 20_000}}}), "ingest.max_step_params_bytes"),
        (_json_job(job_id="j" * 300), "ingest.max_id_chars"),
    ],
)
def test_sizes_are_bounded_at_ingest(value, message):
    with pytest.raises(InvalidEvent, match=message) as caught:
        parse_ingest(value, "default")
    assert caught.value.code == "too_large"


def test_protobuf_jobs_are_bounded_too():
    job = new_job("incoming", "a.jpg", tenant="shop")
    job.recipe.step_params["cropper"].update({"margin": float("nan")})
    with pytest.raises(InvalidEvent, match="not finite"):
        parse_ingest(job.SerializeToString(), "shop")
    job = new_job("incoming", "a.jpg", tenant="shop")
    job.artifacts.add(kind="mask", ref={"bucket": "b", "key": "k" * 300_000})
    with pytest.raises(InvalidEvent, match="ingest.max_event_bytes"):
        parse_ingest(job.SerializeToString(), "shop")
    limits = IngestLimits(max_attributes=1)
    job = new_job("incoming", "a.jpg", tenant="shop", attributes={"a": "1", "b": "2"})
    with pytest.raises(InvalidEvent, match="2 attributes; at most 1"):
        parse_ingest(job.SerializeToString(), "shop", limits)


def test_a_bug_in_the_parser_is_a_bounded_permanent_error(monkeypatch):
    def broken(doc, tenant):
        raise KeyError("x" * 100_000)

    monkeypatch.setattr(events, "_from_json", broken)
    with pytest.raises(PermanentError) as caught:
        parse_ingest(_json_job(), "default")
    assert caught.value.code == "parser_bug" and "KeyError" in str(caught.value)
    assert len(str(caught.value)) <= MESSAGE_MAX_CHARS


def test_bounded_messages_say_what_was_cut():
    assert bounded("short") == "short"
    cut = bounded("y" * 200_000)
    kept, note = cut.split("... [")
    assert len(cut) <= MESSAGE_MAX_CHARS and len(kept) + int(note.split()[0]) == 200_000
    assert len(str(InvalidEvent("z" * 200_000))) <= MESSAGE_MAX_CHARS
