"""gRPC front of the classifier: Classifier.Classify answers the type and the chain it routes to."""

import time

from studioline.shared.servicer import StepServicerBase, classification_message
from studioline.v1 import job_pb2, steps_pb2, steps_pb2_grpc


class ClassifierServicer(StepServicerBase, steps_pb2_grpc.ClassifierServicer):
    def __init__(self, runner, settings, storage, router):
        super().__init__(runner, settings, storage)
        self.router = router

    def Classify(self, request, context):
        start = time.perf_counter()
        result, _ = self.execute(request, context)
        classification = classification_message(result.info)
        decision = self.router.decide(classification.image_type, classification.confidence)
        classification.needs_review = decision.needs_review
        slip = self.router.plan(decision.chain, job_pb2.Recipe())
        return steps_pb2.ClassifyReply(
            classification=classification, slip=slip, ms=(time.perf_counter() - start) * 1000
        )


add_to_server = steps_pb2_grpc.add_ClassifierServicer_to_server
SERVICE_NAME = "studioline.v1.Classifier"
