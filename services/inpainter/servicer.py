"""gRPC front of the inpainter: Inpainter.Inpaint."""

from studioline.shared.servicer import StepServicerBase
from studioline.v1 import steps_pb2_grpc


class InpainterServicer(StepServicerBase, steps_pb2_grpc.InpainterServicer):
    def Inpaint(self, request, context):
        return self.handle(request, context)


add_to_server = steps_pb2_grpc.add_InpainterServicer_to_server
SERVICE_NAME = "studioline.v1.Inpainter"
