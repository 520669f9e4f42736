"""gRPC front of the catalog-generator: CatalogGenerator.Compose."""

from studioline.shared.servicer import StepServicerBase
from studioline.v1 import steps_pb2_grpc


class CatalogGeneratorServicer(StepServicerBase, steps_pb2_grpc.CatalogGeneratorServicer):
    def Compose(self, request, context):
        return self.handle(request, context)


add_to_server = steps_pb2_grpc.add_CatalogGeneratorServicer_to_server
SERVICE_NAME = "studioline.v1.CatalogGenerator"
