"""Job events: reading what arrives on the ingest topic, and naming outputs deterministically.

The ingest topic accepts three shapes, one message each:
- a protobuf studioline.v1.JobEvent;
- plain JSON: {"bucket": ..., "key": ..., "tenant"?, "job_id"?, "recipe"?: {"outputs": [...],
  "step_params": {step: {...}}, "chain": ...}, "attributes"?: {...}};
- an S3 / MinIO bucket notification (s3:ObjectCreated:*), which may hold several records.

Parsing raises InvalidEvent (permanent: the worker dead-letters the message) naming what is
wrong, and a new job is bounded (`IngestLimits`) before it starts. Anything else the parser
raises is a bug in it; it comes out as a PermanentError `parser_bug`, never as a crash loop.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote_plus

from google.protobuf.json_format import ParseDict, ParseError
from google.protobuf.message import DecodeError
from google.protobuf.struct_pb2 import Struct
from google.protobuf.timestamp_pb2 import Timestamp

from studioline.shared.config import IngestLimits
from studioline.shared.errors import Forbidden, InvalidEvent, StudiolineError, as_permanent
from studioline.v1 import job_pb2

log = logging.getLogger(__name__)

_JOB_NAMESPACE = uuid.UUID("6f1d7a52-3c0e-4d0b-9d7e-5a8f2c1b9e40")
_DEFAULT_LIMITS = IngestLimits()


def now_ts() -> Timestamp:
    ts = Timestamp()
    ts.GetCurrentTime()
    return ts


def new_job(
    bucket: str,
    key: str,
    *,
    tenant: str,
    job_id: str = "",
    recipe: job_pb2.Recipe | None = None,
    attributes: dict[str, str] | None = None,
    version: str = "",
) -> job_pb2.JobEvent:
    """A job for one source object. Without a job id, the id derives from the object, so a
    replayed notification is the same job."""
    if not bucket or not key:
        raise InvalidEvent("a job needs the source object's bucket and key")
    job = job_pb2.JobEvent(
        job_id=job_id or str(uuid.uuid5(_JOB_NAMESPACE, f"{tenant}/{bucket}/{key}/{version}")),
        tenant=tenant,
        source=job_pb2.ImageRef(bucket=bucket, key=key),
        recipe=recipe or job_pb2.Recipe(),
        attributes=attributes or {},
    )
    stamp = now_ts()
    job.created_at.CopyFrom(stamp)
    job.updated_at.CopyFrom(stamp)
    return job


def _classified(parse):
    """Whatever else `parse` raises is a bug in it: a PermanentError `parser_bug` (bounded),
    so the message is dead-lettered instead of crash-looping the worker that polled it."""

    @functools.wraps(parse)
    def wrapper(*args, **kwargs):
        try:
            return parse(*args, **kwargs)
        except StudiolineError:
            raise
        except Exception as exc:
            log.exception("event parser failed", extra={"parser": parse.__name__})
            raise as_permanent(exc, f"{parse.__name__} failed", "parser_bug") from exc

    return wrapper


@_classified
def parse_ingest(
    value: bytes | None,
    default_tenant: str,
    limits: IngestLimits = _DEFAULT_LIMITS,
    bucket_owner: Callable[[str], str | None] | None = None,
) -> list[job_pb2.JobEvent]:
    """Jobs from one ingest message, each within `limits`; raises InvalidEvent naming what is wrong.

    The tenant is the topic's (`default_tenant`), never the event's: an event naming another
    tenant is Forbidden. With `bucket_owner` (the shared ingest topic), a bucket notification's
    jobs belong to the tenant whose sources name the bucket."""
    if value is None:
        raise InvalidEvent("null value (a tombstone) on the ingest topic", "tombstone")
    if len(value) == 0:
        raise InvalidEvent("empty message on the ingest topic")
    if value.lstrip()[:1] == b"{":
        doc = _load_json(value, limits.max_depth)
        if "Records" in doc or "EventName" in doc:
            jobs = _from_s3_notification(doc, default_tenant, bucket_owner)
        else:
            jobs = [_from_json(doc, default_tenant)]
    else:
        jobs = [parse_job(value)]
        _claim(jobs[0].tenant, default_tenant)
        jobs[0].tenant = default_tenant
    for job in jobs:
        check_new_job(job, limits)
    return jobs


@_classified
def parse_job(value: bytes | None) -> job_pb2.JobEvent:
    if value is None:
        raise InvalidEvent("null value (a tombstone): no job event", "tombstone")
    try:
        job = job_pb2.JobEvent.FromString(value)
    except DecodeError as exc:
        raise InvalidEvent(f"message is neither JSON nor a studioline.v1.JobEvent: {exc}") from exc
    if not job.job_id or not job.source.bucket or not job.source.key:
        raise InvalidEvent("JobEvent lacks job_id or source bucket/key")
    return job


def check_new_job(job: job_pb2.JobEvent, limits: IngestLimits) -> None:
    """A new job's sizes, ids and parameter values within `limits` (the event grows at every
    step, and every later step would trip over what is not checked here)."""
    for name, value in (("job_id", job.job_id), ("tenant", job.tenant)):
        if len(value) > limits.max_id_chars:
            raise InvalidEvent(f"{name} has {len(value)} characters; at most {limits.max_id_chars} (ingest.max_id_chars)", "too_large")
    if len(job.attributes) > limits.max_attributes:
        raise InvalidEvent(f"{len(job.attributes)} attributes; at most {limits.max_attributes} (ingest.max_attributes)", "too_large")
    size = sum(len(k.encode()) + len(v.encode()) for k, v in job.attributes.items())
    if size > limits.max_attributes_bytes:
        raise InvalidEvent(f"attributes of {size} bytes; at most {limits.max_attributes_bytes} (ingest.max_attributes_bytes)", "too_large")
    size = job.recipe.ByteSize()
    if size > limits.max_recipe_bytes:
        raise InvalidEvent(f"a recipe of {size} bytes; at most {limits.max_recipe_bytes} (ingest.max_recipe_bytes)", "too_large")
    for step, params in job.recipe.step_params.items():
        size = params.ByteSize()
        if size > limits.max_step_params_bytes:
            raise InvalidEvent(f"parameters for {step!r} of {size} bytes; at most {limits.max_step_params_bytes} (ingest.max_step_params_bytes)", "too_large")
        _check_values(params, f"the parameters for {step!r}", limits.max_depth)
    size = job.ByteSize()  # what else it carries: caller-supplied artifacts, a slip
    if size > limits.max_event_bytes:
        raise InvalidEvent(f"the job event is {size} bytes; at most {limits.max_event_bytes} (ingest.max_event_bytes)", "too_large")


def _check_values(params: Struct, what: str, max_depth: int) -> None:
    """Parameter values nest at most `max_depth` deep and hold finite numbers only (JSON has no
    NaN or Infinity, and a parameter model would turn them into nonsense)."""
    stack = [(value, 2) for value in params.fields.values()]
    while stack:
        value, depth = stack.pop()
        if depth > max_depth:
            raise InvalidEvent(f"{what} nest deeper than {max_depth} (ingest.max_depth)")
        kind = value.WhichOneof("kind")
        if kind == "number_value" and not math.isfinite(value.number_value):
            raise InvalidEvent(f"{what} hold a number that is not finite ({value.number_value})")
        if kind == "struct_value":
            stack.extend((v, depth + 1) for v in value.struct_value.fields.values())
        elif kind == "list_value":
            stack.extend((v, depth + 1) for v in value.list_value.values)


def _load_json(value: bytes, max_depth: int) -> dict[str, Any]:
    try:
        doc = json.loads(value, parse_constant=_not_a_number)
    except RecursionError as exc:
        raise InvalidEvent("JSON event nested deeper than the parser can follow") from exc
    except ValueError as exc:  # not UTF-8, not JSON, an integer of more than 4,300 digits
        raise InvalidEvent(f"ingest message looks like JSON but does not parse: {exc}") from exc
    if not isinstance(doc, dict):
        raise InvalidEvent(f"a JSON event is an object, not a {type(doc).__name__}")
    if _deeper_than(doc, max_depth):
        raise InvalidEvent(f"JSON event nested deeper than {max_depth} (ingest.max_depth)")
    return doc


def _not_a_number(name: str):
    raise InvalidEvent(f"JSON event holds {name}, which is not a JSON number")


def _deeper_than(doc: Any, max_depth: int) -> bool:
    stack = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else None
        if children is None:
            continue
        if depth > max_depth:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _text(doc: dict[str, Any], field: str) -> str:
    """An optional id-like field: a string, or a whole number written without quotes."""
    value = doc.get(field)
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidEvent(f"JSON job event: {field!r} must be a string, not {type(value).__name__}")
    return str(value)


def _from_json(doc: dict[str, Any], default_tenant: str) -> job_pb2.JobEvent:
    for field in ("bucket", "key"):
        if not isinstance(doc.get(field), str) or not doc[field]:
            raise InvalidEvent(f"JSON job event lacks a string {field!r}")
    recipe = job_pb2.Recipe()
    if doc.get("recipe") is not None:
        if not isinstance(doc["recipe"], dict):
            raise InvalidEvent(f"JSON job event: recipe must be an object, not {type(doc['recipe']).__name__}")
        try:
            ParseDict(doc["recipe"], recipe)
        except ParseError as exc:
            raise InvalidEvent(f"JSON job event has a malformed recipe: {exc}") from exc
    attributes = doc.get("attributes")
    if attributes is None:
        attributes = {}
    if not isinstance(attributes, dict):
        raise InvalidEvent("JSON job event: attributes must be an object of strings")
    for name, value in attributes.items():
        if not isinstance(value, (str, int, float)):  # bool is an int
            raise InvalidEvent(f"JSON job event: attribute {name!r} is {type(value).__name__}, not a string or number")
    _claim(_text(doc, "tenant"), default_tenant)
    return new_job(
        doc["bucket"],
        doc["key"],
        tenant=default_tenant,
        job_id=_text(doc, "job_id"),
        recipe=recipe,
        attributes={k: str(v) for k, v in attributes.items()},
        version=_text(doc, "version"),
    )


def _claim(claimed: str, tenant: str) -> None:
    if claimed and claimed != tenant:
        raise Forbidden(f"the event names tenant {claimed!r} but arrived on {tenant!r}'s ingest topic")


def _from_s3_notification(
    doc: dict[str, Any], default_tenant: str, bucket_owner: Callable[[str], str | None] | None
) -> list[job_pb2.JobEvent]:
    records = doc.get("Records")
    if not isinstance(records, list) or not records:
        raise InvalidEvent("S3 notification without Records")
    jobs = []
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            raise InvalidEvent(f"S3 notification record {i} is {type(record).__name__}, not an object")
        name = record.get("eventName", "")
        if not isinstance(name, str):
            raise InvalidEvent(f"S3 notification record {i}: eventName is {type(name).__name__}, not a string")
        if "ObjectCreated" not in name:
            continue  # deletions and the like are not work for the line
        bucket = _notified(record, i, "bucket", "name")
        key = unquote_plus(_notified(record, i, "object", "key"))  # S3 URL-encodes keys in notifications
        obj = record["s3"]["object"]
        version = str(obj.get("versionId") or obj.get("eTag") or obj.get("sequencer") or "")
        tenant = bucket_owner(bucket) if bucket_owner else default_tenant
        if not tenant:
            raise Forbidden(f"S3 notification record {i}: no tenant reads this bucket")
        jobs.append(new_job(bucket, key, tenant=tenant, version=version))
    if not jobs:
        raise InvalidEvent(f"S3 notification holds no s3:ObjectCreated record (event {doc.get('EventName', '?')})")
    return jobs


def _notified(record: dict[str, Any], i: int, part: str, field: str) -> str:
    """s3.<part>.<field> of a notification record, which must be a string."""
    s3 = record.get("s3")
    inner = s3.get(part) if isinstance(s3, dict) else None
    value = inner.get(field) if isinstance(inner, dict) else None
    if not isinstance(value, str):
        raise InvalidEvent(f"S3 notification record {i}: s3.{part}.{field} is {type(value).__name__}, not a string")
    return value


def params_digest(params: dict[str, Any]) -> str:
    canonical = json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def artifact_key(tenant: str, source_sha256: str, step: str, params: dict[str, Any], name: str) -> str:
    """Deterministic: the same input, step and parameters always name the same object, so a
    replay overwrites instead of duplicating."""
    return f"{tenant}/{source_sha256[:2]}/{source_sha256}/{step}-{params_digest(params)}/{name}"
