"""The query service: gRPC Search over the face index, and the media catalog API."""
