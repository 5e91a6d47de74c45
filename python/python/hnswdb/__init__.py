"""Persistent HNSW vector search with hnswlib's API.

``hnswdb.Index`` and ``hnswdb.BFIndex`` behave as hnswlib's (``import hnswdb as
hnswlib``); ``Index.open(path)`` and ``init_index(path=...)`` give hnswdb's own persistent
index. The engine is the compiled ``hnswdb._hnswdb`` module; ``hnswdb.distributed`` runs
one index per shard on Ray actors (imported on its own, so that ``import hnswdb`` never
needs Ray).
"""

from ._bf import BFIndex
from ._hnswdb import (
    CorruptError,
    HnswdbError,
    IndexNotFoundError,
    InvalidInputError,
    LockedError,
    UnknownLabelError,
    __version__,
)
from ._index import Index

__all__ = [
    "BFIndex",
    "CorruptError",
    "HnswdbError",
    "Index",
    "IndexNotFoundError",
    "InvalidInputError",
    "LockedError",
    "UnknownLabelError",
    "__version__",
]
