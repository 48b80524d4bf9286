"""Online stage: the gRPC service."""
