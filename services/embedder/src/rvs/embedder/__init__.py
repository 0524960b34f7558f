"""The embedder: consumes frames in batches, finds and embeds faces, upserts them into Milvus."""
