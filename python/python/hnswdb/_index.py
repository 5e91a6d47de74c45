"""``hnswdb.Index``: hnswlib's ``Index`` over hnswdb's engine (``hnswdb._hnswdb.Index``).

One class, two kinds of index:

- hnswlib's, made by ``init_index()`` without a path, by ``load_index`` or by unpickling.
  Its files live in a private temporary directory, written without fsyncs and removed
  with the object; ``save_index`` writes one snapshot file, which nothing else ever
  touches. As in hnswlib, ``max_elements`` is a limit, and ``mark_deleted`` leaves a
  tombstone that counts as an element, that ``unmark_deleted`` revives and that
  ``replace_deleted=True`` reuses.
- hnswdb's, made by ``init_index(path=...)`` or ``Index.open(path)``: the index is that
  directory, opened in place, every write durable when it returns; deletes are physical
  and the files grow by themselves.

docs/python.md lists where either kind differs from hnswlib, and why.
"""

import contextlib
import os
import tempfile
import threading
import time
import warnings
import weakref
from typing import Any, Callable, Dict, Iterator, Optional, Tuple

import numpy as np

from . import _snapshot
from ._arrays import as_matrix
from ._hnswdb import CorruptError, HnswdbError, IndexNotFoundError, InvalidInputError, UnknownLabelError
from ._hnswdb import Index as _Engine

# hnswlib's beam width until set_ef; hnswdb's own indexes keep the engine's (64).
DEFAULT_EF = 10


class _Private:
    """What an hnswlib-style index keeps beside its engine."""

    def __init__(self, workdir: tempfile.TemporaryDirectory, limit: int, allow_replace: bool):
        self.workdir = workdir
        self.limit = limit
        self.allow_replace = allow_replace
        # label -> (vector, payload) of each label marked deleted. The engine deletes it
        # for real, so that searches skip it at full speed; unmark_deleted adds it back.
        self.tombstones: Dict[int, Tuple[np.ndarray, Any]] = {}
        # hnswlib's first default id: rows added since init_index (the count at a load).
        self.next_label = 0
        # Held by each write while it checks and updates the above with the engine, so
        # that concurrent writers cannot pass the limit or split a tombstone from its
        # vector; searches never take it.
        self.lock = threading.Lock()


def _release(engine: _Engine, workdir: Optional[tempfile.TemporaryDirectory]) -> None:
    # Close before removing: the engine checkpoints into its directory on close.
    try:
        engine.close()
    finally:
        if workdir is not None:
            workdir.cleanup()


def _labels(ids: Any) -> np.ndarray:
    """`ids` as a flat uint64 array, refusing non-integers and negatives (as the engine)."""
    array = np.asarray(ids).reshape(-1)
    if array.size and array.dtype.kind not in "iu":
        raise TypeError(f"ids must be integers, got an array of dtype {array.dtype}")
    if array.size and array.dtype.kind == "i" and array.min() < 0:
        raise InvalidInputError("ids must be non-negative integers")
    return array.astype(np.uint64)


def _rows(data: Any) -> int:
    return 1 if np.ndim(data) == 1 else len(data)


class _Progress:
    """A `progress` argument as the engine's hook: a callable `progress(done, total)`, a
    tqdm bar (or anything with `update(n)` and a `total`), or True for a new tqdm bar
    (a warning and no bar if tqdm is not installed). Use as a context manager: it makes
    sure the callable heard the end of an operation that succeeded, and closes its bar."""

    def __init__(self, progress: Any, desc: str) -> None:
        self.bar: Any = None
        self.owned = progress is True  # a bar made here is closed here
        self.last: Tuple[int, int] = (-1, -1)
        if progress is True:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                warnings.warn("progress=True draws a tqdm bar: pip install tqdm", stacklevel=3)
                progress = None
            else:
                progress = self.bar = tqdm(desc=desc, unit_scale=True)
        if progress is None or progress is False or callable(progress):
            self.callback: Optional[Callable[[int, int], Any]] = progress or None
        elif hasattr(progress, "update") and hasattr(progress, "total"):
            self.bar = progress
            self.callback = self._advance_bar
        else:
            raise TypeError(f"progress must be a callable(done, total), a tqdm bar or True, not {progress!r}")

    def hook(self) -> Optional[Callable[[int, int], None]]:
        """What to pass the engine (None: no reports)."""
        return None if self.callback is None else self._report

    def _report(self, done: int, total: int) -> None:
        self.last = (done, total)
        assert self.callback is not None
        self.callback(done, total)

    def _advance_bar(self, done: int, total: int) -> None:
        if self.bar.total != total:
            self.bar.total = total
            self.bar.refresh()
        self.bar.update(done - self.bar.n)

    def __enter__(self) -> "_Progress":
        return self

    def __exit__(self, kind: Any, *rest: Any) -> None:
        try:
            done, total = self.last
            if kind is None and self.callback is not None and (done != total or done < 0):
                total = max(total, 0)
                try:
                    self._report(total, total)  # an empty batch reports nothing on its own
                except Exception as e:  # as the engine does: the operation succeeded
                    warnings.warn(f"the progress callback raised {e!r}", RuntimeWarning, stacklevel=2)
        finally:
            if self.owned and self.bar is not None:
                self.bar.close()


class Index:
    """An HNSW index with hnswlib's interface (see the module's docstring for the two
    kinds of index behind it)."""

    def __init__(self, space: str, dim: int) -> None:
        self._engine = _Engine(space, dim)
        self._private: Optional[_Private] = None
        self._release: Optional[weakref.finalize] = None
        self._ef: Optional[int] = None  # set before the index exists: applied to it
        self._num_threads = os.cpu_count() or 1

    # -- opening -------------------------------------------------------------------------

    @classmethod
    def open(cls, path: Any, read_only: bool = False, memory_budget: Optional[int] = None) -> "Index":
        """Opens hnswdb's index directory `path` in place (space and dim from its files)."""
        engine = _Engine.open(path, read_only=read_only, memory_budget=memory_budget)
        index = cls(engine.space, engine.dim)
        index._adopt(engine, None)
        return index

    @classmethod
    def open_or_create(
        cls,
        path: Any,
        space: Optional[str] = None,
        dim: Optional[int] = None,
        *,
        ids: Optional[str] = None,
        M: int = 16,
        ef_construction: int = 200,
        fields: Optional[Dict[str, str]] = None,
        routing: str = "sq8",
        storage: str = "f32",
        durable: bool = True,
        read_only: bool = False,
        memory_budget: Optional[int] = None,
        expected: Optional[int] = None,
    ) -> "Index":
        """Opens hnswdb's index directory `path`, or creates it there if it holds none
        (then `space` and `dim` are required; the other settings apply to a new index
        only; `ids` is "int" unless given). `routing="auto"` creates it with the routing
        whose tiers best fit `memory_budget` once it holds `expected` vectors (both
        required then). If given, `space`, `dim` and `ids` must match an existing index's
        (InvalidInputError otherwise). Two processes that race to create it both end up
        with the one index."""
        try:
            engine = _Engine.open(path, read_only=read_only, memory_budget=memory_budget, durable=durable)
        except IndexNotFoundError:
            if read_only:
                raise
            if space is None or dim is None:
                raise InvalidInputError(f"{path} holds no index: give space and dim to create one") from None
            if routing.lower() == "auto" and expected is None:
                raise InvalidInputError('routing="auto" needs expected (and memory_budget)')
            settings = (M, ef_construction, fields, routing, storage, durable, memory_budget, expected or 1)
            engine = cls._create(path, space, dim, ids or "int", *settings)
            if memory_budget is not None:
                engine.close()
                engine = _Engine.open(path, memory_budget=memory_budget, durable=durable)
        index = cls(engine.space, engine.dim)
        index._adopt(engine, None)
        index._check_matches(path, space, dim, ids)
        return index

    @staticmethod
    def _create(path: Any, space: str, dim: int, ids: str, *settings: Any) -> _Engine:
        M, ef_construction, fields, routing, storage, durable, memory_budget, expected = settings
        engine = _Engine(space, dim)
        options = dict(M=M, ef_construction=ef_construction, path=path, fields=fields, routing=routing)
        options.update(storage=storage, durable=durable, ids=ids, memory_budget=memory_budget)
        try:
            engine.init_index(expected, **options)
        except FileExistsError:  # another process created it first: open theirs
            return _Engine.open(path, durable=durable)
        return engine

    def _check_matches(self, path: Any, space: Optional[str], dim: Optional[int], ids: Optional[str]) -> None:
        found = (self.space, self.dim, self._engine.id_kind)
        for name, wanted, have in zip(("space", "dim", "ids"), (space, dim, ids), found):
            if wanted is not None and wanted != have:
                self.close()
                raise InvalidInputError(f"{path} holds an index with {name}={have!r}, not {wanted!r}")

    def init_index(
        self,
        max_elements: int,
        M: int = 16,
        ef_construction: int = 200,
        random_seed: int = 100,
        allow_replace_deleted: bool = False,
        path: Any = None,
        fields: Optional[Dict[str, str]] = None,
        routing: str = "sq8",
        storage: str = "f32",
        ids: str = "int",
        memory_budget: Optional[int] = None,
    ) -> None:
        """Creates the index: hnswlib's kind without `path`, hnswdb's in `path`.
        `ids="str"` (hnswdb's kind only) names vectors by string keys instead of integers.
        `routing="auto"` (with `path`) picks the routing whose tiers best fit
        `memory_budget` bytes once the index holds `max_elements` vectors."""
        if self._is_open():
            raise RuntimeError("The index is already initiated.")
        options = dict(M=M, ef_construction=ef_construction, random_seed=random_seed, fields=fields)
        options.update(allow_replace_deleted=allow_replace_deleted, routing=routing, storage=storage, ids=ids)
        if memory_budget is not None:
            options.update(memory_budget=memory_budget)
        if path is None and ids != "int":
            # hnswlib's kind keeps tombstones and default ids by integer label.
            raise InvalidInputError('ids="str" needs a path: string ids are for hnswdb\'s kind of index')
        if path is not None:
            self._engine.init_index(max_elements, path=path, **options)
            self._adopt(self._engine, None)
            if self._ef is not None:
                self._engine.set_ef(self._ef)
            return
        workdir = tempfile.TemporaryDirectory(prefix="hnswdb-")
        tree = os.path.join(workdir.name, "index")
        self._engine.init_index(max_elements, path=tree, durable=False, **options)
        self._adopt(self._engine, _Private(workdir, max_elements, allow_replace_deleted))
        self._engine.set_ef(DEFAULT_EF if self._ef is None else self._ef)

    def load_index(self, path: Any, max_elements: int = 0, allow_replace_deleted: bool = False) -> None:
        """Loads a copy of the snapshot file `path` (or of hnswdb's index directory
        `path`): later changes never touch `path`. `max_elements` raises the limit if it
        is at least the element count. As in hnswlib, ef is reset to 10."""
        self._load(path, max_elements, allow_replace_deleted)
        self._engine.set_ef(DEFAULT_EF)

    def _load(self, source: Any, max_elements: int, allow_replace_deleted: bool) -> dict:
        workdir = tempfile.TemporaryDirectory(prefix="hnswdb-")
        tree = os.path.join(workdir.name, "index")
        meta, arrays = self._unpack(source, tree)
        try:
            engine = _Engine.open(tree, durable=False)
        except IndexNotFoundError:
            # The snapshot's index directory is missing or incomplete: a truncated file.
            raise CorruptError(f"{source} is a damaged snapshot: it holds no whole index") from None
        try:
            self._check_identity(engine, source)
            private = _Private(workdir, 0, allow_replace_deleted)
            labels = arrays.get("tombstone_labels", np.zeros(0, np.uint64)).tolist()
            vectors = arrays.get("tombstone_vectors", np.zeros((0, self.dim), np.float32))
            payloads = meta.get("tombstone_payloads", [None] * len(labels))
            private.tombstones = {label: (v, p) for label, v, p in zip(labels, vectors, payloads)}
            count = len(engine) + len(labels)
            raised = max_elements >= count and max_elements > 0
            private.limit = max_elements if raised else meta.get("max_elements", count)
            private.next_label = count
        except BaseException:
            _release(engine, workdir)
            raise
        self._adopt(engine, private)
        return meta

    @staticmethod
    def _unpack(source: Any, tree: str) -> Tuple[dict, dict]:
        if isinstance(source, (str, os.PathLike)) and os.path.isdir(source):
            # hnswdb's own index directory: copied by a checked backup, opened read-only.
            with _Engine.open(source, read_only=True) as original:
                original.backup(tree)
                return {"kind": "Index", "max_elements": original.get_max_elements()}, {}
        meta, arrays = _snapshot.read(source, into=tree)
        if meta.get("kind") != "Index":
            raise CorruptError(f"{source} holds a {meta.get('kind')} snapshot, not an Index")
        return meta, arrays

    def _check_identity(self, engine: _Engine, source: Any) -> None:
        if engine.space != self.space or engine.dim != self.dim:
            where = "the pickled index" if isinstance(source, bytes) else source
            raise InvalidInputError(
                f"{where} holds a {engine.space} index of dimension {engine.dim}, "
                f"not {self.space} of dimension {self.dim}"
            )

    def _adopt(self, engine: _Engine, private: Optional[_Private]) -> None:
        """Makes `engine` this object's index, after closing the one it had (as hnswlib's
        load_index replaces an index already there)."""
        if self._release is not None:
            self._release()
        self._engine, self._private = engine, private
        workdir = private.workdir if private is not None else None
        self._release = weakref.finalize(self, _release, engine, workdir)
        engine.set_num_threads(max(self._num_threads, 0))

    def _is_open(self) -> bool:
        return self._release is not None and self._release.alive

    # -- saving and pickling ---------------------------------------------------------------

    def save_index(self, path: Any) -> None:
        """Writes the index to the one file `path` (replacing it atomically). Given the
        directory of an index opened in place, checkpoints it instead."""
        engine = self._open_engine()
        if self._private is None and os.path.isdir(path) and os.path.samefile(path, engine.path):
            engine.flush()
            return
        with tempfile.TemporaryDirectory(prefix="hnswdb-save-") as scratch:
            copy = os.path.join(scratch, "index")
            meta, arrays = self._backup(copy)
            _snapshot.write(path, meta, arrays, tree=copy)

    def _backup(self, copy: str) -> Tuple[dict, dict]:
        """Backs the engine up into `copy`; returns the snapshot's metadata and arrays as
        of the same moment (no write of this object's runs meanwhile)."""
        private = self._private
        with private.lock if private is not None else contextlib.nullcontext():
            self._engine.backup(copy)
            return self._meta(), self._arrays()

    def _meta(self) -> dict:
        private = self._private
        return {
            "kind": "Index",
            "space": self.space,
            "dim": self.dim,
            "max_elements": self.max_elements,
            "ef": self.ef,
            "num_threads": self._num_threads,
            "allow_replace_deleted": private is not None and private.allow_replace,
            "tombstone_payloads": [p for _, p in private.tombstones.values()] if private else [],
        }

    def _arrays(self) -> dict:
        tombstones = self._private.tombstones if self._private else {}
        vectors = [v for v, _ in tombstones.values()]
        return {
            "tombstone_labels": np.array(list(tombstones), dtype=np.uint64),
            "tombstone_vectors": np.array(vectors, dtype=np.float32).reshape(-1, self.dim),
        }

    def __reduce__(self) -> tuple:
        # An open index travels as its snapshot bytes, unpickled as hnswlib's kind.
        if not self._is_open():
            return (_unpickle, (self.space, self.dim, self._ef, self._num_threads, None))
        with tempfile.TemporaryDirectory(prefix="hnswdb-pickle-") as scratch:
            copy = os.path.join(scratch, "index")
            meta, arrays = self._backup(copy)
            data = _snapshot.to_bytes(meta, arrays, tree=copy)
        return (_unpickle, (self.space, self.dim, self.ef, self._num_threads, data))

    # -- writing ---------------------------------------------------------------------------

    def add_items(
        self,
        data: Any,
        ids: Any = None,
        num_threads: int = -1,
        replace_deleted: bool = False,
        payloads: Any = None,
        progress: Any = None,
    ) -> None:
        """Adds the rows of `data` under `ids`; an id present has its vector replaced.
        One write, all or nothing. Default ids: hnswlib's (from the count of rows added,
        for hnswlib's kind), after the largest id present (hnswdb's kind). `data` may
        also be a pandas Series of arrays or DataFrame, or a pyarrow (fixed-size) list
        array. `progress`: a callable(done, total), a tqdm bar, or True for one."""
        engine = self._open_engine()
        threads = self._threads(num_threads)
        data = as_matrix(data)
        if self._private is None:
            with _Progress(progress, "add_items") as bar:
                engine.add_items(data, ids, threads, payloads=payloads, progress=bar.hook())
            return
        private = self._private
        if replace_deleted and not private.allow_replace:
            raise RuntimeError("Replacement of deleted elements is disabled in constructor")
        rows = _rows(data)
        with private.lock:
            if ids is None:
                labels = np.arange(private.next_label, private.next_label + rows, dtype=np.uint64)
            else:
                labels = _labels(ids)
            revived, reused = self._plan_add(labels, replace_deleted)
            with _Progress(progress, "add_items") as bar:
                engine.add_items(data, labels, threads, payloads=payloads, progress=bar.hook())
            for label in revived + list(private.tombstones)[:reused]:
                del private.tombstones[label]
            private.next_label += rows

    def _plan_add(self, labels: np.ndarray, replace_deleted: bool) -> Tuple[list, int]:
        """Checks an add of `labels` against hnswlib's rules: (tombstoned labels it
        revives, tombstones its new labels take the place of)."""
        private = self._private
        assert private is not None
        unique = set(labels.tolist())
        revived = [label for label in unique if label in private.tombstones]
        if revived and private.allow_replace:
            raise RuntimeError(
                "Can't use addPoint to update deleted elements if replacement of deleted elements is enabled."
            )
        fresh = [label for label in unique if label not in private.tombstones and label not in self._engine]
        reused = min(len(fresh), len(private.tombstones)) if replace_deleted else 0
        if self.element_count + len(fresh) - reused > private.limit:
            raise RuntimeError("The number of elements exceeds the specified limit")
        return revived, reused

    def upsert(self, ids: Any, vectors: Any, payloads: Any = None) -> None:
        """Replaces the vectors of `ids` (a scalar id with a 1-D vector: one), adding
        those absent, as one write; `payloads` (a dict or None per id) as in add_items."""
        vectors = as_matrix(vectors)
        if self._private is None:
            self._open_engine().upsert(ids, vectors, payloads=payloads)
        else:
            rows = np.asarray(vectors).reshape(-1, self.dim)
            self.add_items(rows, _labels(ids), payloads=payloads)

    def query(self, vectors: Any, k: int = 10, **options: Any) -> Any:
        """The engine's query (see the stub), with `vectors` as add_items takes them."""
        return self._open_engine().query(as_matrix(vectors), k, **options)

    def mark_deleted(self, label: int) -> None:
        """hnswlib's kind: a tombstone (see unmark_deleted). hnswdb's kind: deletes."""
        engine = self._open_engine()
        private = self._private
        if private is None:
            engine.delete(label)
            return
        label = int(label)
        with private.lock:
            if label in private.tombstones:
                raise RuntimeError("The requested to delete element is already deleted")
            vector = engine.get_items([label])[0]
            payload = engine.get_payloads([label])[0]
            engine.delete(label)
            private.tombstones[label] = (vector, payload)

    def unmark_deleted(self, label: int) -> None:
        """Brings a label marked deleted back (hnswlib's kind only)."""
        engine = self._open_engine()
        private = self._private
        if private is None:
            raise HnswdbError("unmark_deleted: this index deletes in place (hnswdb's kind); add the vector again")
        label = int(label)
        with private.lock:
            if label not in private.tombstones:
                if label in engine:
                    raise RuntimeError("The requested to undelete element is not deleted")
                raise UnknownLabelError(f"id {label} is not in the index")
            vector, payload = private.tombstones[label]
            engine.add_items(vector.reshape(1, -1), [label], payloads=[payload])
            del private.tombstones[label]

    def resize_index(self, new_size: int) -> None:
        """hnswlib's kind: sets the limit (not below the element count)."""
        engine = self._open_engine()
        private = self._private
        if private is None:
            engine.resize_index(new_size)
            return
        with private.lock:
            if new_size < self.element_count:
                raise RuntimeError("Cannot resize, max element is less than the current number of elements")
            private.limit = new_size

    # -- reading ---------------------------------------------------------------------------

    def knn_query(
        self,
        data: Any,
        k: int = 1,
        num_threads: int = -1,
        filter: Any = None,
        ef: Optional[int] = None,
        strict: bool = True,
        offset: int = 0,
        plan: Optional[str] = None,
    ) -> Tuple[np.ndarray, np.ndarray]:
        """(labels, distances), each (rows, k), nearest first; see docs/python.md.
        `data` as add_items takes it."""
        engine = self._open_engine()
        data = as_matrix(data)
        if k == 0:
            rows = _rows(data)
            labels = object if engine.id_kind == "str" else np.uint64
            return np.zeros((rows, 0), labels), np.zeros((rows, 0), np.float32)
        return engine.knn_query(data, k, self._threads(num_threads), filter, ef, strict, offset, plan)

    def get_items(self, ids: Any = None, return_type: str = "numpy") -> Any:
        """The stored vectors of `ids` (a sequence; default: every live id, ascending), as
        a float32 array or (return_type="list") a list of lists."""
        if return_type not in ("numpy", "list"):
            raise ValueError('return_type should be "numpy" or "list"')
        engine = self._open_engine()
        if ids is None:
            ids = sorted(engine.get_ids_list())
        elif np.ndim(ids) == 0:
            raise ValueError("get_items accepts a list of indices and returns a list of vectors")
        items = engine.get_items(ids if engine.id_kind == "str" else _labels(ids))
        return items.tolist() if return_type == "list" else items

    def get_ids_list(self) -> list:
        """Every id, including (hnswlib's kind) those marked deleted, as hnswlib."""
        ids = self._open_engine().get_ids_list()
        return ids + list(self._private.tombstones) if self._private else ids

    def get_current_count(self) -> int:
        return self.element_count

    def get_max_elements(self) -> int:
        return self.max_elements

    @property
    def element_count(self) -> int:
        """Elements, counting (hnswlib's kind) those marked deleted; 0 before init."""
        if not self._is_open():
            return 0
        tombstones = len(self._private.tombstones) if self._private else 0
        return len(self._engine) + tombstones

    @property
    def max_elements(self) -> int:
        """hnswlib's kind: the limit. hnswdb's: the slots its files hold now."""
        if not self._is_open():
            return 0
        return self._private.limit if self._private else self._engine.get_max_elements()

    @property
    def id_kind(self) -> str:
        """"int" (integer ids, hnswlib's) or "str" (string keys), fixed at creation."""
        return self._open_engine().id_kind

    @property
    def M(self) -> int:
        return self._engine.M if self._is_open() else 0

    @property
    def ef_construction(self) -> int:
        return self._engine.ef_construction if self._is_open() else 0

    @property
    def space(self) -> str:
        return self._engine.space

    @property
    def dim(self) -> int:
        return self._engine.dim

    # -- settings --------------------------------------------------------------------------

    @property
    def ef(self) -> int:
        """The search beam width (settable before init_index, as in hnswlib)."""
        if self._is_open():
            return self._engine.ef
        return DEFAULT_EF if self._ef is None else self._ef

    @ef.setter
    def ef(self, ef: int) -> None:
        self.set_ef(ef)

    def set_ef(self, ef: int) -> None:
        self._ef = ef
        if self._is_open():
            self._engine.set_ef(ef)

    @property
    def num_threads(self) -> int:
        """Default threads of add_items and knn_query, as set (0 or less: every core)."""
        return self._num_threads

    @num_threads.setter
    def num_threads(self, num_threads: int) -> None:
        self.set_num_threads(num_threads)

    def set_num_threads(self, num_threads: int) -> None:
        self._num_threads = num_threads
        if self._is_open():
            self._engine.set_num_threads(max(num_threads, 0))

    def _threads(self, num_threads: int) -> int:
        # hnswlib: a call's own count when positive, else the default.
        return num_threads if num_threads > 0 else self._num_threads

    # -- maintenance -----------------------------------------------------------------------

    def compact(self, progress: Any = None, relocate: bool = False) -> dict:
        """Rebuilds the index from its live vectors into dense files (the space deletes
        left behind is given back) and carries on with it: this object stays usable.
        With `relocate=True` the live vectors and their links are copied as they are,
        in breadth-first order, instead of re-inserted: O(n) copies, the same graph
        (what `close` does by itself once enough slots are free). Returns {"live",
        "bytes_before", "bytes_after"}. `progress` as in add_items (live vectors copied
        by a rebuild)."""
        engine = self._open_engine()
        with _Progress(progress, "compact") as bar:
            return engine.compact(progress=bar.hook(), relocate=relocate)

    def backup(self, path: Any, progress: Any = None) -> int:
        """Copies the index, as of one moment while writes go on, into the new directory
        `path`, and checks the copy. Returns the bytes copied. `progress` as in
        add_items (bytes copied)."""
        engine = self._open_engine()
        with _Progress(progress, "backup") as bar:
            return engine.backup(path, progress=bar.hook())

    def follow(self, interval: float = 0.1) -> Iterator[dict]:
        """For a read-only view: refreshes it every `interval` seconds and yields
        {"count", "lsn"} after each refresh that brought new writes. Ends when the view
        is closed (from another thread, say)."""
        engine = self._open_engine()
        if not engine.read_only:
            raise HnswdbError("follow: the index is writable, so always current; open it read_only=True")
        seen = engine._view_position()
        while True:
            time.sleep(interval)
            try:
                engine = self._open_engine()
                engine.refresh()
                position = engine._view_position()
                count = len(engine)
            except HnswdbError:
                if not self._is_open():
                    return  # closed meanwhile
                raise
            if position != seen:
                seen = position
                yield {"count": count, "lsn": position[1]}

    # -- lifetime --------------------------------------------------------------------------

    def _open_engine(self) -> _Engine:
        if not self._is_open():
            raise HnswdbError("the index is not open: call init_index, load_index or Index.open first")
        return self._engine

    def close(self) -> None:
        """Closes the index (checkpointing hnswdb's kind; removing hnswlib's kind's files).
        Later calls raise until it is opened again."""
        if self._is_open():
            self._engine.close()  # raises, leaving it open, if another thread uses it
            assert self._release is not None
            self._release()

    def __enter__(self) -> "Index":
        return self

    def __exit__(self, *exc: object) -> bool:
        self.close()
        return False

    def __len__(self) -> int:
        """Live vectors (not counting those marked deleted)."""
        return len(self._open_engine())

    def __contains__(self, label: int) -> bool:
        return label in self._open_engine()

    def __repr__(self) -> str:
        if not self._is_open():
            return f"<hnswdb.Index(space='{self.space}', dim={self.dim})>"
        return repr(self._engine)

    def __getattr__(self, name: str) -> Any:
        # hnswdb's own calls (payloads, filters, tune, flush, refresh, path...) go to the
        # engine as they are. Private names never do (they are looked up during __init__).
        if name.startswith("_") or not hasattr(_Engine, name):
            raise AttributeError(f"'Index' object has no attribute {name!r}")
        return getattr(self._open_engine(), name)


def _unpickle(space: str, dim: int, ef: Optional[int], num_threads: int, data: Optional[bytes]) -> Index:
    index = Index(space, dim)
    index._num_threads = num_threads
    index._ef = ef
    if data is not None:
        meta = index._load(data, 0, False)
        assert index._private is not None
        index._private.allow_replace = bool(meta.get("allow_replace_deleted"))
        index._engine.set_ef(meta["ef"])
    return index
