"""Cache structures: the KV slot allocator and the radix prefix cache (native, see csrc/cache)."""

from radixserve.cache.kv_allocator import KVAllocator
from radixserve.cache.radix_cache import InsertResult, MatchResult, NodeHandle, RadixCache

__all__ = ["InsertResult", "KVAllocator", "MatchResult", "NodeHandle", "RadixCache"]
