"""The face index: one Milvus row per indexed face."""
