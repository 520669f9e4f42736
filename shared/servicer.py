"""The gRPC front of a step: one generic handler for every step, bound from its spec.

Request in, the same job path as the Kafka loop (shared/jobpath.py), the step through the
batcher, encoded outputs and the step's report back. A routing step answers with its
classification and the plan the router makes.

Error mapping: bad input (not an image, too large, over the memory budget, bad parameters,
missing mask, a reply too large for one message) is INVALID_ARGUMENT with the reason; a
reference or output bucket outside the caller's tenant PERMISSION_DENIED (a missing or bad
token is refused earlier, UNAUTHENTICATED, by shared/auth.py); a missing model file
FAILED_PRECONDITION; storage outages and a memory budget held by others UNAVAILABLE; anything
else INTERNAL. Never UNKNOWN.
"""

from __future__ import annotations

import logging
import time

import grpc

from studioline.shared import jobpath
from studioline.shared.auth import CALLER
from studioline.shared.errors import Forbidden, ModelMissing, PermanentError, TransientError, bounded
from studioline.shared.memory import process_budget
from studioline.shared.metrics import IMAGES
from studioline.shared.runtime import StepRunner, dict_to_struct, encode_outputs, store_outputs
from studioline.shared.step import StepOutput
from studioline.shared.tenants import Tenant, Tenants
from studioline.v1 import job_pb2, steps_pb2

log = logging.getLogger(__name__)


def message_limit(limits) -> int:
    """The largest gRPC message either way: an image plus its mask inline, and some room."""
    return limits.inline_max_bytes * 2 + (1 << 20)


class StepServicer:
    def __init__(self, runner: StepRunner, settings, storage, router=None):
        self.runner = runner
        self.spec = runner.step.spec
        self.settings = settings
        self.storage = storage
        self.tenants = Tenants(settings)
        self.router = router  # routing steps: plans the reply's slip
        self.budget = process_budget(settings.limits)  # shared with the Kafka loop of this process

    def handler(self) -> grpc.GenericRpcHandler:
        """The step's one RPC, as steps.proto declares it."""
        reply_class = self.spec.reply_class()
        method = grpc.unary_unary_rpc_method_handler(
            self.handle,
            request_deserializer=steps_pb2.StepRequest.FromString,
            response_serializer=reply_class.SerializeToString,
        )
        return grpc.method_handlers_generic_handler(self.spec.grpc_service, {self.spec.method: method})

    def _read(self, image: steps_pb2.ImageInput, what: str, tenant: Tenant) -> bytes:
        which = image.WhichOneof("source")
        if which == "data":
            if len(image.data) > self.settings.limits.inline_max_bytes:
                raise PermanentError(
                    f"{what}: inline image of {len(image.data)} bytes exceeds the inline limit of "
                    f"{self.settings.limits.inline_max_bytes}; pass an S3 reference instead",
                    "too_large",
                )
            return image.data
        if which == "ref":
            if self.storage is None:
                raise PermanentError(f"{what}: S3 references need storage, which this server lacks", "no_storage")
            if not image.ref.bucket or not image.ref.key:
                raise PermanentError(f"{what}: reference needs bucket and key", "invalid_ref")
            self.tenants.check_read(tenant, image.ref.bucket, image.ref.key, what)
            return self.storage.get(image.ref.bucket, image.ref.key, self.settings.limits.max_bytes)
        raise PermanentError(f"{what}: no image given (set data or ref)", "no_image")

    def execute(self, request: steps_pb2.StepRequest) -> tuple[StepOutput, jobpath.Prepared]:
        """Runs the step on the request's image and inputs."""
        tenant = self.tenants.get(CALLER.get())
        if request.output_bucket:  # before any work
            self.tenants.check_write(tenant, request.output_bucket)
        params = self.spec.parse_params(jobpath.struct_params(request.params))
        image = jobpath.Blob(self._read(request.image, "image", tenant))
        inputs = {kind: jobpath.Blob(self._read(img, kind, tenant), kind) for kind, img in request.inputs.items()}
        prepared = jobpath.prepare(self.spec, params, image, inputs, self.settings.limits, budget=self.budget)
        try:
            return self._run(request, params, prepared), prepared
        except BaseException:
            prepared.release()
            raise

    def _run(self, request, params, prepared: jobpath.Prepared) -> StepOutput:
        if not request.output_bucket:  # found out now, not after the work
            h, w = prepared.item.image.shape[:2]
            expected, limit = jobpath.reply_bytes(self.spec, params, w, h), message_limit(self.settings.limits)
            if expected > limit:
                raise PermanentError(
                    f"the reply would take about {expected / 1e6:.0f} MB, over the {limit / 1e6:.0f} MB one reply may "
                    "carry: set output_bucket to get the outputs as S3 references",
                    "reply_too_large",
                )
        (result,), _ = self.runner.run([prepared.item], source="grpc")
        if isinstance(result, Exception):
            raise result
        return result

    def handle(self, request: steps_pb2.StepRequest, context):
        start = time.perf_counter()
        try:
            result, prepared = self.execute(request)
            try:
                reply = self._routed(result) if self.spec.routes else self._outputs(request, result, prepared)
            finally:
                prepared.release()  # its outputs are encoded
            reply.report.CopyFrom(jobpath.report_message(self.spec, result))
        except Exception as exc:
            IMAGES.labels(self.spec.name, "grpc", "error").inc()
            self._abort(context, exc)
        IMAGES.labels(self.spec.name, "grpc", "ok").inc()
        reply.ms = (time.perf_counter() - start) * 1000
        return reply

    def _routed(self, result: StepOutput) -> steps_pb2.ClassifyReply:
        job = job_pb2.JobEvent()
        job.slip.steps.add(step=self.spec.name)
        jobpath.route(job, jobpath.classification_message(result), self.router)
        return steps_pb2.ClassifyReply(classification=job.classification, slip=job.slip)

    def _outputs(self, request, result: StepOutput, prepared: jobpath.Prepared) -> steps_pb2.StepReply:
        reply = steps_pb2.StepReply()
        encoded = encode_outputs(self.spec, result)
        if request.output_bucket:
            basis = prepared.key_basis
            arts = store_outputs(
                self.storage, request.output_bucket, CALLER.get(), basis["inputs"][0], self.spec.name, basis, encoded
            )
            for art, out in zip(arts, encoded):
                reply.outputs.add(kind=out.kind, params=art.params, ref=art.ref, content_type=out.content_type,
                                  width=out.width, height=out.height)
        else:
            for out in encoded:
                reply.outputs.add(kind=out.kind, params=dict_to_struct(out.params), data=out.data,
                                  content_type=out.content_type, width=out.width, height=out.height)
        return reply

    def _abort(self, context, exc: Exception):
        if isinstance(exc, Forbidden):
            context.abort(grpc.StatusCode.PERMISSION_DENIED, f"{exc.code}: {exc}")
        if isinstance(exc, PermanentError):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{exc.code}: {exc}")
        if isinstance(exc, ModelMissing):
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        if isinstance(exc, TransientError):
            context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        log.exception("step failed on a gRPC request")
        context.abort(grpc.StatusCode.INTERNAL, bounded(f"{self.spec.name} failed: {type(exc).__name__}: {exc}"))
