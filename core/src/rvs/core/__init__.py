"""rvs.core: what the three services share: settings, media decoding, face models, the vector store,
the catalog and the bus. It imports no service (import-linter checks it, see pyproject.toml)."""
