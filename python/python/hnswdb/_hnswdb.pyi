"""Type stubs of hnswdb's compiled engine. Users import hnswdb.Index (python/hnswdb/_index.py),
which adds hnswlib's snapshot files, limits and tombstones over this class."""

from os import PathLike
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

__version__: str

class HnswdbError(RuntimeError):
    """Base class of hnswdb's own errors."""

class LockedError(HnswdbError):
    """Another writer (process or open Index) holds the index."""

class CorruptError(HnswdbError):
    """An index file is damaged, foreign, or from a newer format version."""

class InvalidInputError(ValueError, RuntimeError):
    """Invalid input: a ValueError (hnswdb) and a RuntimeError (what hnswlib raises)."""

class UnknownLabelError(KeyError, RuntimeError):
    """An id the index does not hold: a KeyError and a RuntimeError."""

class IndexNotFoundError(FileNotFoundError, RuntimeError):
    """No index at the path: a FileNotFoundError and a RuntimeError."""

_Vectors = Union[npt.ArrayLike, np.ndarray]
# Integers on an integer-id index; str keys on a string-id one (init_index(ids="str")).
_Id = Union[int, str]
_Ids = Union[int, str, Iterable[int], Iterable[str], npt.NDArray[Any]]
# uint64 on an integer-id index; dtype object (str, None for padding) on a string-id one.
_Labels = npt.NDArray[Any]
_Path = Union[str, PathLike]
# Called with (done, total) from the engine's threads, one call at a time; an exception
# it raises goes to sys.unraisablehook (the operation goes on).
_Progress = Callable[[int, int], Any]

class Index:
    """The engine: one index directory, opened in place. With durable=True (the default)
    every write is durable when it returns."""

    def __init__(self, space: str, dim: int) -> None:
        """`space`: 'cosine', 'l2' or 'ip'. Call `init_index` or `load_index` next."""
    @staticmethod
    def open(
        path: _Path, read_only: bool = False, memory_budget: Optional[int] = None, durable: bool = True
    ) -> "Index":
        """Opens the index at `path`; space and dimension come from its files."""
    def init_index(
        self,
        max_elements: int,
        M: int = 16,
        ef_construction: int = 200,
        random_seed: int = 100,
        allow_replace_deleted: bool = False,
        *,
        path: _Path,
        fields: Optional[Dict[str, str]] = None,
        routing: str = "sq8",
        storage: str = "f32",
        durable: bool = True,
        ids: str = "int",
        memory_budget: Optional[int] = None,
    ) -> None:
        """Creates the index in `path`; `fields` indexes payload fields for filters:
        {"lang": "keyword", "year": "int"}. durable=False never fsyncs the log.
        ids="str" names vectors by string keys (up to 1 KiB of UTF-8 each): every method
        then takes and returns str ids. storage="f16" or "bf16" halves the vector file
        (get_items returns the stored values widened; f16 refuses components beyond
        ±65,504, bf16 keeps f32's range at about two significant digits)."""
    def backup(self, path: _Path, progress: Optional[_Progress] = None) -> int:
        """Copies the index as of now into the new directory `path`, checked. Returns the
        bytes copied; `progress(done, total)` is told the bytes as they are copied."""
    def compact(
        self, progress: Optional[_Progress] = None, relocate: bool = False
    ) -> Dict[str, int]:
        """Rebuilds the index from its live vectors into dense files (with `relocate`,
        copies them and their links as they are, no re-insert) and carries on with it
        (this object stays open, with its ef and threads). {"live", "bytes_before",
        "bytes_after"}; `progress` counts live vectors copied by a rebuild. Raises
        (leaving the index open) if another thread is using it."""
    def verify(self) -> Dict[str, Any]:
        """The whole-index check, O(n): {"ok", "problems", "unreachable", "stale_links",
        "live", "tombstones", "free"}."""
    def stats(self) -> Dict[str, Any]:
        """Every field of the Rust Stats: len, capacity, high_water, free_slots,
        held_slots, tombstones, upper_nodes, max_level, dim, metric, M, ef_construction,
        kernels, wal_bytes, codes_generation, misfits, routing ("sq8" | "rabitq" | "rabitq:BITS"),
        storage ("f32" | "f16" | "bf16"), ids ("int" | "str"), residency (a dict, or None
        without a memory budget)."""
    @property
    def read_only(self) -> bool: ...
    def _view_position(self) -> Optional[Tuple[int, int]]:
        """A read-only view's (index uid, next LSN); None when writable."""
    def add_items(
        self,
        data: _Vectors,
        ids: Optional[_Ids] = None,
        num_threads: int = -1,
        replace_deleted: bool = False,
        payloads: Optional[Sequence[Optional[Dict[str, Any]]]] = None,
        progress: Optional[_Progress] = None,
    ) -> None:
        """Adds rows of `data` (with a payload dict per row, if given); an existing id has
        its vector replaced (as in hnswlib), and keeps its payload unless given one. A
        string-id index needs `ids` (one str per row). `progress(done, total)` is told the
        rows in the graph as they go in."""
    def upsert(
        self, ids: _Ids, vectors: _Vectors, payloads: Optional[Sequence[Optional[Dict[str, Any]]]] = None
    ) -> None:
        """Replaces the vectors of `ids` (a scalar id with a 1-D vector: one), adding those
        absent, as one durable write; a payload per id (None keeps the one it has)."""
    def query(
        self,
        vectors: Union[Sequence[float], npt.NDArray[Any]],
        k: int = 10,
        *,
        filter: Optional[Dict[str, Any]] = None,
        include: Sequence[str] = ("distance", "payload"),
        ef: Optional[int] = None,
        offset: int = 0,
    ) -> Union[List[Dict[str, Any]], List[List[Dict[str, Any]]]]:
        """The k nearest as dicts {"id", "distance", "payload", "vector"} with the keys
        `include` names ("id" always; the vector a float32 array; a payload None when the
        id has none). A 1-D query gives a list, a 2-D one a list per row; fewer matches
        than k give a shorter list. `filter`: docs/filters.md, on any payload key."""
    def get(
        self,
        ids: Optional[_Ids] = None,
        *,
        filter: Optional[Dict[str, Any]] = None,
        include: Sequence[str] = ("payload",),
        limit: Optional[int] = None,
        offset: int = 0,
    ) -> List[Dict[str, Any]]:
        """Records {"id", "payload", "vector"} of `ids` in their order (absent ids left
        out), or of every live id `filter` admits (all without one) in id order; `offset`
        skipped, at most `limit`."""
    def count(self, filter: Optional[Dict[str, Any]] = None) -> int:
        """Live ids, or those `filter` admits."""
    def update(
        self,
        ids: Optional[_Ids] = None,
        *,
        filter: Optional[Dict[str, Any]] = None,
        payload: Optional[Dict[str, Any]],
        replace: bool = False,
    ) -> int:
        """Merges `payload` (top level; a key set to None is removed) into, or with
        replace=True replaces, the payload of each id given or matching, as one durable
        write; returns how many. KeyError for an absent id."""
    def knn_query(
        self,
        data: _Vectors,
        k: int = 1,
        num_threads: int = -1,
        filter: Optional[Union[Callable[[Any], bool], Dict[str, Any]]] = None,
        ef: Optional[int] = None,
        strict: bool = True,
        offset: int = 0,
        plan: Optional[str] = None,
    ) -> Tuple[_Labels, npt.NDArray[np.float32]]:
        """(labels, distances), each of shape (rows, k), nearest first. `filter` is a dict
        over payload fields (planned; docs/filters.md) or a callable on labels.
        `ef` is this call's beam width; `offset` skips the nearest (paging); with
        strict=False rows with fewer than k hits are padded with label 2**64-1 (None on a
        string-id index) and distance inf instead of raising. Labels of a string-id index
        are its keys, in an array of dtype object."""
    def get_payloads(self, ids: _Ids) -> List[Optional[Dict[str, Any]]]: ...
    def set_payload(self, id: _Id, payload: Optional[Dict[str, Any]], replace: bool = False) -> None:
        """Merges `payload` into the id's (top level; a key set to None is removed), or
        with replace=True replaces it; None removes the payload."""
    def set_payloads(
        self, ids: _Ids, payloads: Sequence[Optional[Dict[str, Any]]], replace: bool = False
    ) -> None:
        """set_payload of each id, as one durable write."""
    def create_field_index(self, name: str, kind: str) -> None:
        """Indexes a payload field: kind is keyword, int, float or bool."""
    @property
    def fields(self) -> Dict[str, str]: ...
    def explain(self, filter: Dict[str, Any], k: int = 10, ef: Optional[int] = None) -> Dict[str, Any]:
        """{"plan": "scan" | "walk", "matching": int, "live": int, "filter": "index" |
        "scan", "unindexed": [keys no field index holds, answered by a payload scan]}"""
    def search_within(
        self, vector: _Vectors, max_distance: float, filter: Optional[Dict[str, Any]] = None
    ) -> Tuple[_Labels, npt.NDArray[np.float32]]: ...
    def tune(self, target_recall: float = 0.95, k: int = 10) -> Dict[str, Any]:
        """Smallest ef reaching the target recall on a sample; becomes the default."""
    def set_ef(self, ef: int) -> None: ...
    ef: int
    def set_num_threads(self, num_threads: int) -> None: ...
    @property
    def num_threads(self) -> int: ...
    def get_items(self, ids: _Ids) -> npt.NDArray[np.float32]:
        """Stored vectors, shape (len(ids), dim). KeyError for an unknown id."""
    def get_ids_list(self) -> list[Any]: ...
    def mark_deleted(self, label: _Id) -> None:
        """Deletes `label` (a real delete: the graph is repaired)."""
    def delete(
        self, ids: Optional[_Ids] = None, *, filter: Optional[Dict[str, Any]] = None, missing_ok: bool = False
    ) -> int:
        """Deletes `ids` (one or many) or every id `filter` admits, as one durable write;
        returns how many. KeyError (nothing deleted) for an absent id unless missing_ok."""
    def delete_items(self, ids: _Ids) -> None:
        """Deletes all of `ids` as one durable write; KeyError (nothing deleted) if one is absent."""
    def get_current_count(self) -> int: ...
    def get_max_elements(self) -> int: ...
    def resize_index(self, new_size: int) -> None: ...
    def flush(self) -> None:
        """Checkpoint: every acknowledged write is in the page files."""
    def refresh(self) -> None: ...
    def close(self) -> None:
        """Checkpoints and closes the index. Once deletes have freed more than a tenth of
        the slots (in an index of at least 1,024), it first relocates the index into
        dense files (docs/durability.md)."""
    def __enter__(self) -> "Index": ...
    def __exit__(self, *exc: object) -> bool: ...
    def __len__(self) -> int: ...
    def __contains__(self, label: object) -> bool: ...
    @property
    def id_kind(self) -> str:
        """"int" or "str", fixed at creation."""
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

def _prepare_rows(data: _Vectors, dim: int, space: str) -> npt.NDArray[np.float32]:
    """Rows checked as the index checks them (and normalised under cosine)."""

def _exact_knn(
    vectors: npt.NDArray[np.float32],
    count: int,
    queries: _Vectors,
    k: int,
    space: str,
    allowed: Optional[npt.NDArray[np.bool_]] = None,
    threads: int = 0,
) -> Tuple[npt.NDArray[np.uint64], npt.NDArray[np.float32]]:
    """Exact k nearest of vectors[:count]: (row positions, distances)."""
