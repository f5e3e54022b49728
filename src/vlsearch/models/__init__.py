"""Model wrappers: checkpoint loading, preprocessing, batching, embedder and reranker."""
