"""``hnswdb.BFIndex``: hnswlib's exact brute-force index.

The vectors live in one numpy array (``max_elements`` rows, allocated at ``init_index``
as hnswlib does); searches compare every row on hnswdb's distance kernels, on all threads
with the GIL released. ``save_index`` writes the same kind of snapshot file as
``Index.save_index``.
"""

import os
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np

from . import _snapshot
from ._hnswdb import CorruptError, InvalidInputError, UnknownLabelError, _exact_knn, _prepare_rows
from ._index import _labels, _rows


class BFIndex:
    """Exact k-nearest-neighbour search over every stored vector (hnswlib's BFIndex)."""

    def __init__(self, space: str, dim: int) -> None:
        if dim < 1:
            raise InvalidInputError("dim must be at least 1")
        _prepare_rows(np.zeros((0, dim), np.float32), dim, space)  # checks the space name
        self.space, self.dim = space, dim
        self.num_threads = os.cpu_count() or 1
        self._vectors: Optional[np.ndarray] = None  # rows [0, count) hold vectors
        self._labels = np.zeros(0, np.uint64)
        self._rows: Dict[int, int] = {}  # label -> row
        self._next_label = 0  # hnswlib's first default id: rows added so far

    def init_index(self, max_elements: int) -> None:
        if self._vectors is not None:
            raise RuntimeError("The index is already initiated.")
        self._allocate(max_elements)

    def _allocate(self, max_elements: int) -> None:
        self._vectors = np.zeros((max_elements, self.dim), np.float32)
        self._labels = np.zeros(max_elements, np.uint64)

    def _store(self) -> np.ndarray:
        if self._vectors is None:
            raise RuntimeError("the index is not initiated: call init_index or load_index first")
        return self._vectors

    def add_items(self, data: Any, ids: Any = None) -> None:
        """Adds rows (an id present has its vector replaced); all or nothing."""
        store = self._store()
        vectors = _prepare_rows(data, self.dim, self.space)
        rows = len(vectors)
        if ids is None:
            labels = np.arange(self._next_label, self._next_label + rows, dtype=np.uint64)
        else:
            labels = _labels(ids)
        if len(labels) != rows:
            raise InvalidInputError(f"{len(labels)} ids for {rows} vectors")
        fresh = {label for label in labels.tolist() if label not in self._rows}
        if len(self._rows) + len(fresh) > len(store):
            raise RuntimeError("The number of elements exceeds the specified limit")
        for label, vector in zip(labels.tolist(), vectors):
            row = self._rows.setdefault(label, len(self._rows))
            store[row] = vector
            self._labels[row] = label
        self._next_label += rows

    def delete_vector(self, label: int) -> None:
        """Removes `label` (the last row moves into its place, as in hnswlib)."""
        store = self._store()
        label = int(label)
        row = self._rows.pop(label, None)
        if row is None:
            raise UnknownLabelError(f"id {label} is not in the index")
        last = len(self._rows)
        if row != last:
            store[row] = store[last]
            self._labels[row] = self._labels[last]
            self._rows[int(self._labels[row])] = row

    def knn_query(
        self, data: Any, k: int = 1, num_threads: int = -1, filter: Optional[Callable[[int], bool]] = None
    ) -> Tuple[np.ndarray, np.ndarray]:
        """(labels, distances), each (rows, k), nearest first. `filter(label)` is called
        once per stored label and call; RuntimeError if fewer than k labels qualify."""
        store = self._store()
        if k == 0:
            rows = _rows(data)
            return np.zeros((rows, 0), np.uint64), np.zeros((rows, 0), np.float32)
        count = len(self._rows)
        allowed = None
        if filter is not None:
            allowed = np.fromiter((bool(filter(label)) for label in self._labels[:count].tolist()), bool, count)
        threads = num_threads if num_threads > 0 else max(self.num_threads, 0)
        positions, distances = _exact_knn(store, count, data, k, self.space, allowed, threads)
        return self._labels[positions], distances

    def set_num_threads(self, num_threads: int) -> None:
        self.num_threads = num_threads

    def get_current_count(self) -> int:
        return len(self._rows)

    def get_max_elements(self) -> int:
        return 0 if self._vectors is None else len(self._vectors)

    def save_index(self, path: Any) -> None:
        """Writes the index to the one file `path` (replacing it atomically)."""
        store, count = self._store(), len(self._rows)
        meta = {"kind": "BFIndex", "space": self.space, "dim": self.dim, "max_elements": len(store)}
        _snapshot.write(path, meta, {"vectors": store[:count], "labels": self._labels[:count]})

    def load_index(self, path: Any, max_elements: int = 0) -> None:
        """Loads the snapshot `path` (replacing any index already here). `max_elements`
        raises the limit if it is at least the element count."""
        meta, arrays = _snapshot.read(path)
        if meta.get("kind") != "BFIndex" or meta.get("space") != self.space or meta.get("dim") != self.dim:
            raise CorruptError(
                f"{path} holds a {meta.get('kind')} of {meta.get('space')} vectors of dimension "
                f"{meta.get('dim')}, not a BFIndex of {self.space} of dimension {self.dim}"
            )
        vectors, labels = arrays["vectors"], arrays["labels"]
        count = len(labels)
        self._allocate(max_elements if max_elements >= count else meta["max_elements"])
        self._vectors[:count] = vectors  # type: ignore[index]
        self._labels[:count] = labels
        self._rows = {label: row for row, label in enumerate(labels.tolist())}
        self._next_label = count

    def __repr__(self) -> str:
        return f"<hnswdb.BFIndex(space='{self.space}', dim={self.dim})>"
