from google.protobuf import struct_pb2 as _struct_pb2
from studioline.v1 import job_pb2 as _job_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ImageInput(_message.Message):
    __slots__ = ("data", "ref")
    DATA_FIELD_NUMBER: _ClassVar[int]
    REF_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    ref: _job_pb2.ImageRef
    def __init__(self, data: _Optional[bytes] = ..., ref: _Optional[_Union[_job_pb2.ImageRef, _Mapping]] = ...) -> None: ...

class StepRequest(_message.Message):
    __slots__ = ("image", "inputs", "params", "output_bucket")
    class InputsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: ImageInput
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[ImageInput, _Mapping]] = ...) -> None: ...
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_BUCKET_FIELD_NUMBER: _ClassVar[int]
    image: ImageInput
    inputs: _containers.MessageMap[str, ImageInput]
    params: _struct_pb2.Struct
    output_bucket: str
    def __init__(self, image: _Optional[_Union[ImageInput, _Mapping]] = ..., inputs: _Optional[_Mapping[str, ImageInput]] = ..., params: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., output_bucket: _Optional[str] = ...) -> None: ...

class OutputImage(_message.Message):
    __slots__ = ("kind", "params", "data", "ref", "content_type", "width", "height")
    KIND_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    REF_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    kind: str
    params: _struct_pb2.Struct
    data: bytes
    ref: _job_pb2.ImageRef
    content_type: str
    width: int
    height: int
    def __init__(self, kind: _Optional[str] = ..., params: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., data: _Optional[bytes] = ..., ref: _Optional[_Union[_job_pb2.ImageRef, _Mapping]] = ..., content_type: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ...) -> None: ...

class StepReply(_message.Message):
    __slots__ = ("outputs", "ms", "report")
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    MS_FIELD_NUMBER: _ClassVar[int]
    REPORT_FIELD_NUMBER: _ClassVar[int]
    outputs: _containers.RepeatedCompositeFieldContainer[OutputImage]
    ms: float
    report: _job_pb2.StepReport
    def __init__(self, outputs: _Optional[_Iterable[_Union[OutputImage, _Mapping]]] = ..., ms: _Optional[float] = ..., report: _Optional[_Union[_job_pb2.StepReport, _Mapping]] = ...) -> None: ...

class ClassifyReply(_message.Message):
    __slots__ = ("classification", "slip", "ms", "report")
    CLASSIFICATION_FIELD_NUMBER: _ClassVar[int]
    SLIP_FIELD_NUMBER: _ClassVar[int]
    MS_FIELD_NUMBER: _ClassVar[int]
    REPORT_FIELD_NUMBER: _ClassVar[int]
    classification: _job_pb2.Classification
    slip: _job_pb2.RoutingSlip
    ms: float
    report: _job_pb2.StepReport
    def __init__(self, classification: _Optional[_Union[_job_pb2.Classification, _Mapping]] = ..., slip: _Optional[_Union[_job_pb2.RoutingSlip, _Mapping]] = ..., ms: _Optional[float] = ..., report: _Optional[_Union[_job_pb2.StepReport, _Mapping]] = ...) -> None: ...
