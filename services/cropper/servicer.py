"""gRPC front of the cropper: Cropper.Crop."""

from studioline.shared.servicer import StepServicerBase
from studioline.v1 import steps_pb2_grpc


class CropperServicer(StepServicerBase, steps_pb2_grpc.CropperServicer):
    def Crop(self, request, context):
        return self.handle(request, context)


add_to_server = steps_pb2_grpc.add_CropperServicer_to_server
SERVICE_NAME = "studioline.v1.Cropper"
