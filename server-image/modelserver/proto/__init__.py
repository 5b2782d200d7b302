"""Generated gRPC modules of the Open Inference Protocol (``open_inference_grpc.proto``; hack/gen-grpc.sh)."""
