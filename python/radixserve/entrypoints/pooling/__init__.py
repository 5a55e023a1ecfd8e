"""Pooling routes (#8): /v1/embeddings, /encode, /classify, /v1/score, /v1/rerank."""
