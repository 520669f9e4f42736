"""How a step declares itself: one `StepSpec` per step, in the step's own folder
(services/<step>/spec.py), and the artifact kinds it makes.

A spec names its code by dotted path and imports only its parameters, so a process that plans
jobs (the routing step's) can read every spec without loading any other step's code or models.
Everything that lists steps (services, topics, gRPC bindings, client calls, bench tables) derives
from the step table in shared/steps.py, which lists the specs.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError

from studioline.shared.errors import InvalidParams
from studioline.shared.step import StepParams


@dataclass(frozen=True)
class ArtifactKind:
    """What an artifact is: how its bytes decode and what later steps make of it."""

    name: str
    # "mask": one channel; "rgb": colour (an alpha that hides nothing is dropped); "rgba": colour
    # with alpha always (a cut-out is RGBA by definition, even where every pixel is opaque).
    pixels: Literal["mask", "rgb", "rgba"]
    # Encodings a step may write it in (shared/imageio.py CONTENT_TYPES).
    formats: tuple[str, ...] = ("png",)
    # Later steps work on the newest artifact of a working kind instead of the source photo.
    working: bool = False
    # True: pixel for pixel over the image it was made from (a mask, a cleaned photo), so it must
    # have that image's size; False: its own geometry (a crop, an upscale, a catalog canvas).
    source_geometry: bool = True


@dataclass(frozen=True)
class StepSpec:
    name: str  # the service name: topic step.<name>, consumer group, Helm values key
    params: type[StepParams]
    implementation: str  # "module:Class" of its Step subclass, imported only by the service itself
    rpc: str  # its service in proto/studioline/v1/steps.proto ...
    method: str  # ... and that service's one method
    consumes: tuple[str, ...] = ()  # artifact kinds it needs besides the working image
    optional: tuple[str, ...] = ()  # kinds it reads when the job has them
    produces: tuple[ArtifactKind, ...] = ()
    # Kinds it reads that no step makes (a caller supplies them, e.g. a mask to fill).
    accepts: tuple[ArtifactKind, ...] = ()
    models: tuple[str, ...] = ()  # registry names of the models it may load (shared/models)
    # A routing step runs first on every job: its result's `route` is handed to the router,
    # which writes the rest of the routing slip. It also consumes the ingest topic.
    routes: bool = False
    # "module:function" adding its own `studioline` subcommands (eval, explain, ...), if any.
    commands: str = ""
    # Working memory at the peak of a request (decoding, run and encoding), as a multiple of
    # the bytes of the 8-bit arrays the step is handed (image, inputs) and writes (its params'
    # output_pixels), on top of the decoder's own buffers: what the memory budget reserves for
    # it (jobpath.memory_estimate). Measured per step with `bench/memory_bombs.py --factors`;
    # an unmeasured step is assumed to hold four copies of them.
    memory_factor: float = 4.0
    # The same for the arrays it writes, where their cost differs from its inputs' (a canvas
    # composed in float): None counts them with memory_factor.
    output_memory_factor: float | None = None

    @property
    def output_factor(self) -> float:
        return self.memory_factor if self.output_memory_factor is None else self.output_memory_factor

    @property
    def grpc_service(self) -> str:
        return f"studioline.v1.{self.rpc}"

    @property
    def inputs(self) -> tuple[str, ...]:
        return self.consumes + self.optional

    @property
    def produced_kinds(self) -> tuple[str, ...]:
        return tuple(k.name for k in self.produces)

    @property
    def rpc_path(self) -> str:
        return f"/{self.grpc_service}/{self.method}"

    def reply_class(self):
        """The protobuf class its RPC answers with, as steps.proto declares it (a spec naming an
        RPC the contract lacks fails here)."""
        from google.protobuf.message_factory import GetMessageClass

        from studioline.v1 import steps_pb2

        try:
            method = steps_pb2.DESCRIPTOR.services_by_name[self.rpc].methods_by_name[self.method]
        except KeyError:
            raise ValueError(f"step {self.name}: steps.proto has no rpc {self.rpc}.{self.method}") from None
        return GetMessageClass(method.output_type)

    def step_class(self):
        return load_attr(self.implementation)

    def parse_params(self, raw: dict[str, Any] | None) -> StepParams:
        """Validates raw parameters (the routing table's, a recipe's, a gRPC request's)."""
        try:
            return self.params.model_validate(raw or {})
        except ValidationError as exc:
            raise InvalidParams(f"invalid parameters for {self.name}: {_problems(exc)}") from exc

    def load_params(self, params_json: str) -> StepParams:
        """Parameters as planned: the model's own JSON, validated again since the slip travels
        through a broker anyone may write to."""
        try:
            return self.params.model_validate_json(params_json or "{}")
        except ValidationError as exc:
            raise InvalidParams(f"invalid planned parameters for {self.name}: {_problems(exc)}") from exc


def _problems(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(params)'}: {e['msg']}" for e in exc.errors())


def load_attr(target: str):
    """The object a "module:attribute" path names."""
    module, attr = target.split(":")
    return getattr(importlib.import_module(module), attr)
