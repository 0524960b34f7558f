"""Face detection and embedding. Model loading, batching and device placement live here only."""
