"""The search page: a small HTTP server beside the gRPC API, on the same Search code path."""
