"""What the framework stores (``hnswdb.langchain``, ``hnswdb.llama_index``) share: one
persistent, string-keyed index in a directory, created by the first write (whose vectors
give the dimension, as frameworks only know it once they have embedded something)."""

import os
import threading
from typing import Any, Dict, List, Optional, Sequence

from ._hnswdb import IndexNotFoundError
from ._index import Index

# What a store creates when none is given; an existing index keeps its own.
DEFAULT_SPACE = "cosine"


class LazyIndex:
    """The index at `path`: opened now if the directory holds one, else created by the
    first `for_write`. `space` None means "cosine" for a new index and any space for an
    existing one; given, it must be the existing index's."""

    def __init__(self, path: Any, space: Optional[str], options: Dict[str, Any]) -> None:
        self.path = os.fspath(path)
        self._space = space
        self._options = options
        # Held while the index is created, so that two first writes (the async methods
        # run in executor threads) create it once. Reads and later writes never take it.
        self._lock = threading.Lock()
        self.index: Optional[Index] = None
        try:
            index = Index.open(self.path)
        except IndexNotFoundError:
            return
        self._adopt(index)

    def _adopt(self, index: Index) -> None:
        if index.id_kind != "str":
            index.close()
            raise ValueError(f"{self.path} is an index with integer ids; a framework store needs string ids")
        if self._space is not None and index.space != self._space:
            index.close()
            raise ValueError(f"{self.path} is an index of space {index.space!r}, not {self._space!r}")
        self.index = index

    @property
    def space(self) -> str:
        """The index's space, or the one the first write will create it with."""
        return self.index.space if self.index is not None else self._space or DEFAULT_SPACE

    def for_write(self, dim: int) -> Index:
        """The index, created with dimension `dim` if there is none yet."""
        with self._lock:
            if self.index is None:
                index = Index(self.space, dim)
                index.init_index(0, path=self.path, ids="str", **self._options)
                self.index = index
            return self.index

    def upsert(self, ids: Sequence[str], vectors: Sequence[Sequence[float]], payloads: List[dict]) -> None:
        """Writes each id with its vector and payload, replacing the ids already there;
        an id given twice keeps its last row (as a dict would)."""
        if not ids:
            return
        last = {key: row for row, key in enumerate(ids)}
        rows = sorted(last.values())
        index = self.for_write(len(vectors[0]))
        index.upsert([ids[r] for r in rows], [vectors[r] for r in rows], [payloads[r] for r in rows])

    def close(self) -> None:
        """Closes the index (checkpointing it); the store is unusable afterwards."""
        if self.index is not None:
            self.index.close()
