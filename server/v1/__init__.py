"""Generated gRPC stubs of proto/movierec/v1 (see server/codegen.py)."""
