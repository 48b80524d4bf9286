"""Clients of the gRPC server: a channel helper, and the load generator behind `movierec bench`."""
