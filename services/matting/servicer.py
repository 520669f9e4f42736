"""gRPC front of the matting: Matting.Matte."""

from studioline.shared.servicer import StepServicerBase
from studioline.v1 import steps_pb2_grpc


class MattingServicer(StepServicerBase, steps_pb2_grpc.MattingServicer):
    def Matte(self, request, context):
        return self.handle(request, context)


add_to_server = steps_pb2_grpc.add_MattingServicer_to_server
SERVICE_NAME = "studioline.v1.Matting"
