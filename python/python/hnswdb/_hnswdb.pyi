"""Type stubs of hnswdb's Python binding: hnswlib's Index API over a persistent index."""

from os import PathLike
from typing import Callable, Iterable, Optional, Tuple, Union

import numpy as np
import numpy.typing as npt

__version__: str

class HnswdbError(RuntimeError):
    """Base class of hnswdb's own errors."""

class LockedError(HnswdbError):
    """Another writer (process or open Index) holds the index."""

class CorruptError(HnswdbError):
    """An index file is damaged, foreign, or from a newer format version."""

_Vectors = Union[npt.ArrayLike, np.ndarray]
_Ids = Union[int, Iterable[int], npt.NDArray[np.integer]]
_Path = Union[str, PathLike]

class Index:
    """A persistent HNSW index with hnswlib's interface. Every write is durable when it
    returns; the index lives in one directory."""

    def __init__(self, space: str, dim: int) -> None:
        """`space`: 'cosine', 'l2' or 'ip'. Call `init_index` or `load_index` next."""
    @staticmethod
    def open(path: _Path, read_only: bool = False) -> "Index":
        """Opens the index at `path`; space and dimension come from its files."""
    def init_index(
        self,
        max_elements: int,
        M: int = 16,
        ef_construction: int = 200,
        random_seed: int = 100,
        allow_replace_deleted: bool = False,
        path: Optional[_Path] = None,
    ) -> None:
        """Creates the index in `path` (a temporary directory if None)."""
    def load_index(self, path: _Path, max_elements: int = 0, allow_replace_deleted: bool = False) -> None:
        """Opens the index at `path` into this object (space and dim must match)."""
    def save_index(self, path: _Path) -> None:
        """Checkpoints, then copies the index to `path` if it lives elsewhere."""
    def add_items(
        self,
        data: _Vectors,
        ids: Optional[_Ids] = None,
        num_threads: int = -1,
        replace_deleted: bool = False,
    ) -> None:
        """Adds rows of `data`; an existing id has its vector replaced (as in hnswlib)."""
    def upsert(self, id: int, vector: _Vectors) -> None:
        """Replaces the vector of `id`, or adds it, as one durable write."""
    def knn_query(
        self,
        data: _Vectors,
        k: int = 1,
        num_threads: int = -1,
        filter: Optional[Callable[[int], bool]] = None,
        ef: Optional[int] = None,
        strict: bool = True,
    ) -> Tuple[npt.NDArray[np.uint64], npt.NDArray[np.float32]]:
        """(labels, distances), each of shape (rows, k), nearest first. `ef` is this call's
        beam width; with strict=False rows with fewer than k hits are padded with label
        2**64-1 and distance inf instead of raising."""
    def set_ef(self, ef: int) -> None: ...
    ef: int
    def set_num_threads(self, num_threads: int) -> None: ...
    @property
    def num_threads(self) -> int: ...
    def get_items(self, ids: _Ids) -> npt.NDArray[np.float32]:
        """Stored vectors, shape (len(ids), dim). KeyError for an unknown id."""
    def get_ids_list(self) -> list[int]: ...
    def mark_deleted(self, label: int) -> None:
        """Deletes `label` (a real delete: the graph is repaired)."""
    def delete(self, label: int) -> None: ...
    def delete_items(self, ids: _Ids) -> None:
        """Deletes all of `ids` as one durable write; KeyError (nothing deleted) if one is absent."""
    def get_current_count(self) -> int: ...
    def get_max_elements(self) -> int: ...
    def resize_index(self, new_size: int) -> None: ...
    def flush(self) -> None:
        """Checkpoint: every acknowledged write is in the page files."""
    def refresh(self) -> None: ...
    def close(self) -> None: ...
    def __enter__(self) -> "Index": ...
    def __exit__(self, *exc: object) -> bool: ...
    def __len__(self) -> int: ...
    def __contains__(self, label: int) -> bool: ...
    @property
    def space(self) -> str: ...
    @property
    def dim(self) -> int: ...
    @property
    def M(self) -> int: ...
    @property
    def ef_construction(self) -> int: ...
    @property
    def element_count(self) -> int: ...
    @property
    def max_elements(self) -> int: ...
    @property
    def path(self) -> "PathLike[str]":
        """The directory that holds the index (a pathlib.Path)."""
