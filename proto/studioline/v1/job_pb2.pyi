import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ImageRef(_message.Message):
    __slots__ = ("bucket", "key", "sha256", "content_type", "width", "height")
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    bucket: str
    key: str
    sha256: str
    content_type: str
    width: int
    height: int
    def __init__(self, bucket: _Optional[str] = ..., key: _Optional[str] = ..., sha256: _Optional[str] = ..., content_type: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ...) -> None: ...

class Artifact(_message.Message):
    __slots__ = ("kind", "ref", "params", "step")
    KIND_FIELD_NUMBER: _ClassVar[int]
    REF_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    kind: str
    ref: ImageRef
    params: _struct_pb2.Struct
    step: str
    def __init__(self, kind: _Optional[str] = ..., ref: _Optional[_Union[ImageRef, _Mapping]] = ..., params: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., step: _Optional[str] = ...) -> None: ...

class Recipe(_message.Message):
    __slots__ = ("outputs", "step_params", "chain")
    class StepParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _struct_pb2.Struct
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    STEP_PARAMS_FIELD_NUMBER: _ClassVar[int]
    CHAIN_FIELD_NUMBER: _ClassVar[int]
    outputs: _containers.RepeatedScalarFieldContainer[str]
    step_params: _containers.MessageMap[str, _struct_pb2.Struct]
    chain: str
    def __init__(self, outputs: _Optional[_Iterable[str]] = ..., step_params: _Optional[_Mapping[str, _struct_pb2.Struct]] = ..., chain: _Optional[str] = ...) -> None: ...

class PlannedStep(_message.Message):
    __slots__ = ("step", "params_json")
    STEP_FIELD_NUMBER: _ClassVar[int]
    PARAMS_JSON_FIELD_NUMBER: _ClassVar[int]
    step: str
    params_json: str
    def __init__(self, step: _Optional[str] = ..., params_json: _Optional[str] = ...) -> None: ...

class RoutingSlip(_message.Message):
    __slots__ = ("chain", "steps", "position")
    CHAIN_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    chain: str
    steps: _containers.RepeatedCompositeFieldContainer[PlannedStep]
    position: int
    def __init__(self, chain: _Optional[str] = ..., steps: _Optional[_Iterable[_Union[PlannedStep, _Mapping]]] = ..., position: _Optional[int] = ...) -> None: ...

class StepTiming(_message.Message):
    __slots__ = ("step", "ms", "queue_ms", "worker")
    STEP_FIELD_NUMBER: _ClassVar[int]
    MS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_MS_FIELD_NUMBER: _ClassVar[int]
    WORKER_FIELD_NUMBER: _ClassVar[int]
    step: str
    ms: float
    queue_ms: float
    worker: str
    def __init__(self, step: _Optional[str] = ..., ms: _Optional[float] = ..., queue_ms: _Optional[float] = ..., worker: _Optional[str] = ...) -> None: ...

class StepReport(_message.Message):
    __slots__ = ("step", "info", "quality", "quality_note", "needs_review", "warnings", "refusals")
    class RefusalsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    STEP_FIELD_NUMBER: _ClassVar[int]
    INFO_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    QUALITY_NOTE_FIELD_NUMBER: _ClassVar[int]
    NEEDS_REVIEW_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    REFUSALS_FIELD_NUMBER: _ClassVar[int]
    step: str
    info: _struct_pb2.Struct
    quality: float
    quality_note: str
    needs_review: bool
    warnings: _containers.RepeatedScalarFieldContainer[str]
    refusals: _containers.ScalarMap[str, str]
    def __init__(self, step: _Optional[str] = ..., info: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., quality: _Optional[float] = ..., quality_note: _Optional[str] = ..., needs_review: _Optional[bool] = ..., warnings: _Optional[_Iterable[str]] = ..., refusals: _Optional[_Mapping[str, str]] = ...) -> None: ...

class Classification(_message.Message):
    __slots__ = ("image_type", "confidence", "scores", "needs_review")
    class ScoresEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    IMAGE_TYPE_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    NEEDS_REVIEW_FIELD_NUMBER: _ClassVar[int]
    image_type: str
    confidence: float
    scores: _containers.ScalarMap[str, float]
    needs_review: bool
    def __init__(self, image_type: _Optional[str] = ..., confidence: _Optional[float] = ..., scores: _Optional[_Mapping[str, float]] = ..., needs_review: _Optional[bool] = ...) -> None: ...

class JobEvent(_message.Message):
    __slots__ = ("job_id", "tenant", "source", "recipe", "slip", "artifacts", "attempt", "created_at", "updated_at", "classification", "timings", "attributes", "reports")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    RECIPE_FIELD_NUMBER: _ClassVar[int]
    SLIP_FIELD_NUMBER: _ClassVar[int]
    ARTIFACTS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    CLASSIFICATION_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    REPORTS_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    tenant: str
    source: ImageRef
    recipe: Recipe
    slip: RoutingSlip
    artifacts: _containers.RepeatedCompositeFieldContainer[Artifact]
    attempt: int
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    classification: Classification
    timings: _containers.RepeatedCompositeFieldContainer[StepTiming]
    attributes: _containers.ScalarMap[str, str]
    reports: _containers.RepeatedCompositeFieldContainer[StepReport]
    def __init__(self, job_id: _Optional[str] = ..., tenant: _Optional[str] = ..., source: _Optional[_Union[ImageRef, _Mapping]] = ..., recipe: _Optional[_Union[Recipe, _Mapping]] = ..., slip: _Optional[_Union[RoutingSlip, _Mapping]] = ..., artifacts: _Optional[_Iterable[_Union[Artifact, _Mapping]]] = ..., attempt: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., classification: _Optional[_Union[Classification, _Mapping]] = ..., timings: _Optional[_Iterable[_Union[StepTiming, _Mapping]]] = ..., attributes: _Optional[_Mapping[str, str]] = ..., reports: _Optional[_Iterable[_Union[StepReport, _Mapping]]] = ...) -> None: ...

class DeadLetter(_message.Message):
    __slots__ = ("job", "raw", "reason", "error_code", "step", "source_topic", "partition", "offset", "attempt", "failed_at", "raw_ref")
    JOB_FIELD_NUMBER: _ClassVar[int]
    RAW_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    SOURCE_TOPIC_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    FAILED_AT_FIELD_NUMBER: _ClassVar[int]
    RAW_REF_FIELD_NUMBER: _ClassVar[int]
    job: JobEvent
    raw: bytes
    reason: str
    error_code: str
    step: str
    source_topic: str
    partition: int
    offset: int
    attempt: int
    failed_at: _timestamp_pb2.Timestamp
    raw_ref: ImageRef
    def __init__(self, job: _Optional[_Union[JobEvent, _Mapping]] = ..., raw: _Optional[bytes] = ..., reason: _Optional[str] = ..., error_code: _Optional[str] = ..., step: _Optional[str] = ..., source_topic: _Optional[str] = ..., partition: _Optional[int] = ..., offset: _Optional[int] = ..., attempt: _Optional[int] = ..., failed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., raw_ref: _Optional[_Union[ImageRef, _Mapping]] = ...) -> None: ...
