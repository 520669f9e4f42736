"""Job events: reading what arrives on the ingest topic, and naming outputs deterministically.

The ingest topic accepts three shapes, one message each:
- a protobuf studioline.v1.JobEvent;
- plain JSON: {"bucket": ..., "key": ..., "tenant"?, "job_id"?, "recipe"?: {"outputs": [...],
  "step_params": {step: {...}}, "chain": ...}, "attributes"?: {...}};
- an S3 / MinIO bucket notification (s3:ObjectCreated:*), which may hold several records.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any
from urllib.parse import unquote_plus

from google.protobuf.json_format import ParseDict, ParseError
from google.protobuf.message import DecodeError
from google.protobuf.timestamp_pb2 import Timestamp

from studioline.shared.errors import InvalidEvent
from studioline.v1 import job_pb2

_JOB_NAMESPACE = uuid.UUID("6f1d7a52-3c0e-4d0b-9d7e-5a8f2c1b9e40")


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


def parse_ingest(value: bytes, default_tenant: str) -> list[job_pb2.JobEvent]:
    """Jobs from one ingest message; raises InvalidEvent naming what is wrong."""
    if value is None or len(value) == 0:
        raise InvalidEvent("empty message on the ingest topic")
    if value.lstrip()[:1] == b"{":
        try:
            doc = json.loads(value)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidEvent(f"ingest message looks like JSON but does not parse: {exc}") from exc
        if "Records" in doc or "EventName" in doc:
            return _from_s3_notification(doc, default_tenant)
        return [_from_json(doc, default_tenant)]
    return [parse_job(value)]


def parse_job(value: bytes) -> job_pb2.JobEvent:
    try:
        job = job_pb2.JobEvent.FromString(value)
    except DecodeError as exc:
        raise InvalidEvent(f"message is neither JSON nor a studioline.v1.JobEvent: {exc}") from exc
    if not job.job_id or not job.source.bucket or not job.source.key:
        raise InvalidEvent("JobEvent lacks job_id or source bucket/key")
    return job


def _from_json(doc: dict[str, Any], default_tenant: str) -> job_pb2.JobEvent:
    for field in ("bucket", "key"):
        if not isinstance(doc.get(field), str) or not doc[field]:
            raise InvalidEvent(f"JSON job event lacks a string {field!r}")
    recipe = job_pb2.Recipe()
    if doc.get("recipe") is not None:
        try:
            ParseDict(doc["recipe"], recipe)
        except ParseError as exc:
            raise InvalidEvent(f"JSON job event has a malformed recipe: {exc}") from exc
    attributes = doc.get("attributes") or {}
    if not isinstance(attributes, dict):
        raise InvalidEvent("JSON job event: attributes must be an object of strings")
    return new_job(
        doc["bucket"],
        doc["key"],
        tenant=str(doc.get("tenant") or default_tenant),
        job_id=str(doc.get("job_id") or ""),
        recipe=recipe,
        attributes={str(k): str(v) for k, v in attributes.items()},
        version=str(doc.get("version") or ""),
    )


def _from_s3_notification(doc: dict[str, Any], default_tenant: str) -> list[job_pb2.JobEvent]:
    records = doc.get("Records")
    if not isinstance(records, list) or not records:
        raise InvalidEvent("S3 notification without Records")
    jobs = []
    for record in records:
        name = str(record.get("eventName", ""))
        if "ObjectCreated" not in name:
            continue  # deletions and the like are not work for the line
        try:
            bucket = record["s3"]["bucket"]["name"]
            obj = record["s3"]["object"]
            key = unquote_plus(obj["key"])  # S3 URL-encodes keys in notifications
        except (KeyError, TypeError) as exc:
            raise InvalidEvent(f"S3 notification record lacks s3.bucket.name or s3.object.key: {exc}") from exc
        version = str(obj.get("versionId") or obj.get("eTag") or obj.get("sequencer") or "")
        jobs.append(new_job(bucket, key, tenant=default_tenant, version=version))
    if not jobs:
        raise InvalidEvent(f"S3 notification holds no s3:ObjectCreated record (event {doc.get('EventName', '?')})")
    return jobs


def params_digest(params: dict[str, Any]) -> str:
    canonical = json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def artifact_key(tenant: str, source_sha256: str, step: str, params: dict[str, Any], name: str) -> str:
    """Deterministic: the same input, step and parameters always name the same object, so a
    replay overwrites instead of duplicating."""
    return f"{tenant}/{source_sha256[:2]}/{source_sha256}/{step}-{params_digest(params)}/{name}"
