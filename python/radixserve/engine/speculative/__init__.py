"""Speculative decoding: n-gram (prompt-lookup) drafts verified in one extend step."""
