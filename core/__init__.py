"""rvs: reverse visual search over video.

`rvs` (this folder, core/) is the shared core: settings, wire messages, media decoding, face
models, the vector store, the catalog and the bus. The three services live in services/ and are
imported as `rvs.sampler`, `rvs.embedder` and `rvs.query`.
"""

__version__ = "0.1.0"
