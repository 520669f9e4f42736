"""gRPC front of the segmenter: Segmenter.Segment."""

from studioline.shared.servicer import StepServicerBase
from studioline.v1 import steps_pb2_grpc


class SegmenterServicer(StepServicerBase, steps_pb2_grpc.SegmenterServicer):
    def Segment(self, request, context):
        return self.handle(request, context)


add_to_server = steps_pb2_grpc.add_SegmenterServicer_to_server
SERVICE_NAME = "studioline.v1.Segmenter"
