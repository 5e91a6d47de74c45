"""Persistent HNSW vector search with hnswlib's API.

The engine is the compiled ``hnswdb._hnswdb`` module; ``hnswdb.distributed`` runs one
index per shard on Ray actors (imported on its own, so that ``import hnswdb`` never
needs Ray).
"""

from ._hnswdb import CorruptError, HnswdbError, Index, LockedError, __version__

__all__ = ["CorruptError", "HnswdbError", "Index", "LockedError", "__version__"]
