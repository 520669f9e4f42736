"""Random ingest events through the parsers: each becomes jobs or a StudiolineError naming the
problem, never another exception and never `parser_bug` (the safety net for parser bugs).

`make test` runs STUDIOLINE_FUZZ_EXAMPLES examples of each shape (300 by default, a few
seconds); the 20,000-event run that gives the figures is `python -m bench.ingest_fuzz`
(bench/results/ingest_fuzz.json)."""

from __future__ import annotations

import json
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from studioline.shared.errors import StudiolineError
from studioline.shared.events import new_job, parse_ingest, parse_job

EXAMPLES = int(os.environ.get("STUDIOLINE_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))

# Any JSON value, NaN and Infinity included (json.dumps writes them, as some producers do).
scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=16,
)
names = st.text(min_size=1, max_size=16)


def _maybe(strategy):
    """Mostly the shape the field should have, sometimes any JSON value."""
    return st.one_of(strategy, strategy, json_values)


def _some(required: tuple[str, ...] = (), **fields):
    return st.fixed_dictionaries({k: _maybe(fields.pop(k)) for k in required},
                                 optional={k: _maybe(v) for k, v in fields.items()})


recipes = _some(
    outputs=st.lists(st.sampled_from(["mask", "cutout", "crop", "catalog"]) | names, max_size=3),
    stepParams=st.dictionaries(st.sampled_from(["classifier", "cropper", "segmenter"]) | names,
                               st.dictionaries(names, json_values, max_size=3), max_size=3),
    chain=st.sampled_from(["other", "fallback"]) | names,
)
plain_jobs = _some(("bucket", "key"), bucket=names, key=names, tenant=names, job_id=names | st.integers(), version=names,
                   recipe=recipes, attributes=st.dictionaries(names, scalars, max_size=4))
s3_records = _some(
    eventName=st.sampled_from(["s3:ObjectCreated:Put", "s3:ObjectRemoved:Delete"]),
    s3=_some(("bucket", "object"), bucket=_some(("name",), name=names),
             object=_some(("key",), key=names, eTag=names, versionId=names, sequencer=names)),
)
notifications = _some(("Records",), EventName=st.just("s3:ObjectCreated:Put"), Records=st.lists(s3_records, max_size=3))
ingest_json = st.one_of(plain_jobs, notifications, st.dictionaries(names, json_values, max_size=4)).map(
    lambda doc: json.dumps(doc).encode()
)
# Bytes: anything, and protobuf JobEvents with their tails cut or bytes appended.
_JOB = new_job("incoming", "a.jpg", tenant="shop").SerializeToString()
random_bytes = st.binary(max_size=200) | st.builds(lambda cut, tail: _JOB[:cut] + tail, st.integers(0, len(_JOB)),
                                                   st.binary(max_size=40))


def outcome(parse, value: bytes) -> str:
    """"ok", the error's code, or "unclassified: <type>" for anything but a StudiolineError."""
    try:
        parse(value)
        return "ok"
    except StudiolineError as exc:
        return exc.code
    except Exception as exc:
        return f"unclassified: {type(exc).__name__}"


def _ingest(value: bytes) -> list:
    return parse_ingest(value, "default")


@FUZZ
@given(ingest_json)
def test_random_json_ingest_events_are_classified(value):
    result = outcome(_ingest, value)
    assert not result.startswith("unclassified") and result != "parser_bug", (result, value[:300])


@FUZZ
@given(random_bytes)
def test_random_bytes_are_classified_on_ingest_and_step_topics(value):
    for parse in (_ingest, parse_job):
        result = outcome(parse, value)
        assert not result.startswith("unclassified") and result != "parser_bug", (parse.__name__, result, value)
