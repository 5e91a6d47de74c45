"""Sharded hnswdb indexes on Ray: one index directory per shard, one Ray actor per replica.

An hnswdb index is a directory, so a shard is a directory too: each shard replica is an
actor that owns one index on its node's disk and stays pinned to that node (a restarted
actor must find its files again). Writes route by a stable hash of the id, so an id lives
on exactly one shard; searches go to every shard and the per-shard top-k lists are merged
exactly. Durability is hnswdb's: a write is acknowledged once every replica of its shard
has logged it, so a killed actor loses nothing acknowledged and reopens its directory when
Ray restarts it.

What this module does not do: transactions across shards (a batch is all or nothing per
shard, not across them), and rebalancing when the number of shards changes (build a new
sharded index and stream the old one into it: see ``ShardedIndex.reshard``).
See docs/distributed.md.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
import uuid
from typing import Any, Callable, Iterable, Optional, Sequence, Tuple

import numpy as np

try:
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
except ImportError as e:  # the extra, not the package, brings Ray
    raise ImportError("hnswdb.distributed needs Ray: pip install 'hnswdb[distributed]'") from e

from ._hnswdb import Index

__all__ = ["ShardedIndex", "shard_of", "merge_topk", "MISSING_LABEL"]

#: Label of a padding entry: a shard that holds fewer than k vectors pads its answer.
MISSING_LABEL = np.uint64(2**64 - 1)

_MANIFEST_VERSION = 1

# Arguments smaller than this travel inside each task (as Ray inlines small objects);
# larger ones go to the object store once and every task reads them from there.
_INLINE_BYTES = 64 * 1024


def shard_of(ids: Any, shards: int) -> np.ndarray:
    """The shard of each id: splitmix64's finaliser of the id, modulo ``shards``.

    It is part of the on-disk contract (an id's vectors live on the shard this returns),
    so it never changes: the same ids give the same shards in every process, Python
    version and language (Python's own ``hash`` is salted per process)."""
    if shards < 1:
        raise ValueError("shards must be at least 1")
    z = np.asarray(ids, dtype=np.uint64)
    # uint64 array arithmetic wraps modulo 2**64, which is what splitmix64 wants.
    with np.errstate(over="ignore"):
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z % np.uint64(shards)).astype(np.int64)


def merge_topk(
    labels: Sequence[np.ndarray], distances: Sequence[np.ndarray], k: int
) -> Tuple[np.ndarray, np.ndarray]:
    """The k nearest of several per-shard answers, each of shape (rows, >= k).

    Exact: every vector of the global top-k is in the top-k of its own shard, so the k
    smallest distances of the concatenated lists are the global answer (padding entries
    carry distance inf and sort last; ties keep shard order)."""
    all_labels = np.concatenate(labels, axis=1)
    all_distances = np.concatenate(distances, axis=1)
    order = np.argsort(all_distances, axis=1, kind="stable")[:, :k]
    return (
        np.take_along_axis(all_labels, order, axis=1),
        np.take_along_axis(all_distances, order, axis=1),
    )


def _write_json_atomic(path: str, value: dict) -> None:
    """Writes `value` to `path` so that a crash leaves the old file or the new one."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(value, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _read_json(path: str) -> Optional[dict]:
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


class ShardError(RuntimeError):
    """A shard directory is missing, foreign, or its node left the cluster."""


class _Shard:
    """One replica of one shard: an hnswdb index in one directory, inside a Ray actor.

    Ray re-runs the constructor, with the same arguments, when it restarts the actor, so
    the constructor is the recovery path: it opens the directory (hnswdb replays its log)
    and only creates it the first time. A marker file beside the directory records which
    sharded index and shard the directory belongs to and whether it was ever created, so
    that a restart can never mistake a lost directory for a new, empty shard."""

    def __init__(self, path: str, identity: dict, create: Optional[dict], threads: int):
        self.path = path
        marker_path = path + ".shard.json"
        marker = _read_json(marker_path)
        if marker is not None and marker.get("uuid") != identity["uuid"]:
            raise ShardError(
                f"{path} belongs to another sharded index ({marker.get('name')!r}, "
                f"shard {marker.get('shard')}): refusing to use it"
            )
        if marker is None:
            if create is None:
                raise ShardError(f"{marker_path} is missing: {path} is not a shard of this index")
            if os.path.exists(path):
                raise ShardError(f"{path} exists and is not a shard of this index")
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            marker = dict(identity, created=False)
            _write_json_atomic(marker_path, marker)
        if os.path.exists(path):
            self.index = Index.open(path)
        elif marker["created"] or create is None:
            raise ShardError(f"shard directory {path} is gone (it was created and written to)")
        else:
            self.index = Index(identity["space"], identity["dim"])
            self.index.init_index(path=path, **create)
        if not marker["created"]:
            _write_json_atomic(marker_path, dict(marker, created=True))
        self.index.set_num_threads(threads)
        self.queries = 0  # query rows served, to show how reads spread over replicas

    # Writes share one thread (the "write" concurrency group), so that one driver's writes
    # apply in the order it sent them; reads run beside them in the "read" group.

    @ray.method(concurrency_group="write")
    def add_items(self, vectors: np.ndarray, ids: np.ndarray, payloads: Optional[list] = None) -> int:
        # add_items replaces the vector of an id already present, so a write Ray retries
        # after a restart is idempotent.
        self.index.add_items(vectors, ids, payloads=payloads)
        return len(ids)

    @ray.method(concurrency_group="write")
    def set_payloads(self, ids: np.ndarray, payloads: list) -> None:
        self.index.set_payloads(ids, payloads)

    @ray.method(concurrency_group="read")
    def get_payloads(self, ids: np.ndarray) -> list:
        return self.index.get_payloads(ids)

    @ray.method(concurrency_group="write")
    def delete(self, ids: np.ndarray) -> int:
        # Absent ids are skipped so that a delete Ray retries after a restart is idempotent.
        present = [int(i) for i in ids if int(i) in self.index]
        if present:
            self.index.delete_items(present)
        return len(present)

    @ray.method(concurrency_group="write")
    def flush(self) -> None:
        self.index.flush()

    @ray.method(concurrency_group="write")
    def close(self) -> None:
        self.index.close()

    @ray.method(concurrency_group="read")
    def knn_query(
        self, queries: np.ndarray, k: int, ef: Optional[int], filter: Optional[Callable]
    ) -> Tuple[np.ndarray, np.ndarray]:
        self.queries += len(queries)
        return self.index.knn_query(queries, k=k, ef=ef, filter=filter, strict=False)

    @ray.method(concurrency_group="read")
    def get_items(self, ids: np.ndarray) -> np.ndarray:
        return self.index.get_items(ids)

    @ray.method(concurrency_group="read")
    def contains(self, ids: np.ndarray) -> np.ndarray:
        return np.array([int(i) in self.index for i in ids], dtype=bool)

    @ray.method(concurrency_group="read")
    def ids(self) -> np.ndarray:
        return np.array(self.index.get_ids_list(), dtype=np.uint64)

    @ray.method(concurrency_group="read")
    def count(self) -> int:
        return len(self.index)

    @ray.method(concurrency_group="read")
    def info(self) -> dict:
        return {
            "path": self.path,
            "node_id": ray.get_runtime_context().get_node_id(),
            "pid": os.getpid(),
            "count": len(self.index),
            "queries": self.queries,
        }


# Up to 4 reads run at once beside the one write thread (each search itself uses the
# actor's threads; the index serves concurrent readers and a writer on its own).
_ShardActor = ray.remote(concurrency_groups={"write": 1, "read": 4})(_Shard)


# What an actor asks Ray for unless told: a quarter of a CPU, so that four shards fit a
# 2-core laptop or CI machine with CPUs to spare for ray.data's read tasks (asking for whole
# CPUs there leaves actors pending forever). On a cluster, give each actor the cores its
# shard should search with (num_cpus=4 ...): it uses ceil(num_cpus) threads.
DEFAULT_NUM_CPUS = 0.25


class ShardedIndex:
    """N hnswdb shards on Ray actors, with hnswlib's API: ``add_items``, ``knn_query``,
    ``get_items``, ``delete``. Create one with ``ShardedIndex.create``, reopen it (after
    the driver or the cluster restarted) with ``ShardedIndex.open``; Ray must be
    initialised (``ray.init``) first."""

    def __init__(self, manifest: dict, manifest_path: str, replicas: list):
        self.manifest = manifest
        self.manifest_path = manifest_path
        self._replicas = replicas  # [shard][replica] -> actor handle
        self._next_replica = [0] * len(replicas)
        self._lock = threading.Lock()
        self.ef: Optional[int] = manifest.get("ef")

    # ----- creating and opening ---------------------------------------------------------

    @classmethod
    def create(
        cls,
        name: str,
        dim: int,
        space: str = "l2",
        shards: int = 2,
        replicas: int = 1,
        root: str = "hnswdb-shards",
        M: int = 16,
        ef_construction: int = 200,
        random_seed: int = 100,
        num_cpus: float = DEFAULT_NUM_CPUS,
        resources: Optional[dict] = None,
        nodes: Optional[Sequence[str]] = None,
        max_restarts: int = -1,
        fields: Optional[dict] = None,
    ) -> "ShardedIndex":
        """Creates `shards` × `replicas` actors, each creating its index directory under
        `root` on its node (``{root}/{name}/shard-{s}-r{r}``; `root` must be a path every
        node can write to, on its own disk). The manifest (shapes, paths, nodes) is written
        to ``{root}/{name}/manifest.json`` on the driver's filesystem.

        Placement: each actor asks Ray for `num_cpus` CPUs and `resources`, and is pinned
        to one node so that a restart finds its files; `nodes` (Ray node ids, one per shard
        or one per replica) chooses them, else alive nodes are taken in turn, replicas of a
        shard on different nodes when there are enough. `max_restarts` (-1: always) is how
        often Ray restarts a killed actor; calls in flight are retried after the restart.
        `fields` indexes payload fields in every shard ({"lang": "keyword", ...}), so that
        dict filters pass through to the shards' planners."""
        if shards < 1 or replicas < 1:
            raise ValueError("shards and replicas must be at least 1")
        if dim < 1:
            raise ValueError("dim must be at least 1")
        Index(space, dim)  # validates the space name before any actor starts
        base = os.path.join(os.path.abspath(root), name)
        manifest_path = os.path.join(base, "manifest.json")
        if os.path.exists(manifest_path):
            raise FileExistsError(f"{manifest_path} exists: open the index instead")
        placement = _place(shards, replicas, nodes)
        manifest = {
            "format": _MANIFEST_VERSION,
            "uuid": uuid.uuid4().hex,
            "name": name,
            "dim": dim,
            "space": space,
            "shards": shards,
            "replicas": replicas,
            "M": M,
            "ef_construction": ef_construction,
            "ef": None,
            "router": "splitmix64",
            "paths": [
                [os.path.join(base, f"shard-{s:03d}-r{r}") for r in range(replicas)]
                for s in range(shards)
            ],
            "nodes": placement,
        }
        create = {
            "fields": fields,
            "max_elements": 0,
            "M": M,
            "ef_construction": ef_construction,
            "random_seed": random_seed,
        }
        handles = _start(manifest, create, num_cpus, resources, max_restarts)
        os.makedirs(base, exist_ok=True)
        _write_json_atomic(manifest_path, manifest)
        return cls(manifest, manifest_path, handles)

    @classmethod
    def open(
        cls,
        name: str,
        root: str = "hnswdb-shards",
        num_cpus: float = DEFAULT_NUM_CPUS,
        resources: Optional[dict] = None,
        max_restarts: int = -1,
    ) -> "ShardedIndex":
        """Reopens the sharded index `name` under `root` from its manifest: one actor per
        replica on the node that holds its directory (ShardError if that node is gone)."""
        manifest_path = os.path.join(os.path.abspath(root), name, "manifest.json")
        manifest = _read_json(manifest_path)
        if manifest is None:
            raise FileNotFoundError(f"no sharded index at {manifest_path}")
        if manifest.get("format") != _MANIFEST_VERSION or manifest.get("router") != "splitmix64":
            raise ShardError(f"{manifest_path}: unsupported manifest (format {manifest.get('format')})")
        alive = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
        for s, row in enumerate(manifest["nodes"]):
            for r, node in enumerate(row):
                if node not in alive:
                    raise ShardError(
                        f"shard {s} replica {r} lives on node {node}, which is not in the cluster"
                    )
        handles = _start(manifest, None, num_cpus, resources, max_restarts)
        return cls(manifest, manifest_path, handles)

    # ----- properties ---------------------------------------------------------------------

    @property
    def dim(self) -> int:
        return self.manifest["dim"]

    @property
    def space(self) -> str:
        return self.manifest["space"]

    @property
    def shards(self) -> int:
        return self.manifest["shards"]

    @property
    def replicas(self) -> int:
        return self.manifest["replicas"]

    def shard_of(self, ids: Any) -> np.ndarray:
        """The shard each id is routed to."""
        return shard_of(ids, self.shards)

    # ----- writes -------------------------------------------------------------------------

    def add_items(self, data: Any, ids: Any, payloads: Optional[Sequence] = None) -> None:
        """Adds (or replaces) the rows of `data` under `ids`, with a payload dict (or
        None) per row if given. Returns once every replica of every shard concerned has
        made its part durable; each shard's part is all or nothing, the call as a whole is
        not (no cross-shard transaction)."""
        ray.get(self._submit_add(data, ids, payloads))

    def get_payloads(self, ids: Any) -> list:
        """The payloads of `ids`, in that order (None: none). KeyError for an unknown id."""
        ids = _ids(ids)
        out: list = [None] * len(ids)
        parts = [(part, self._reader(s).get_payloads.remote(ids[part])) for s, part in self._route(ids)]
        for part, ref in parts:
            for i, p in zip(part, ray.get(ref)):
                out[i] = p
        return out

    def set_payloads(self, ids: Any, payloads: Sequence) -> None:
        """Sets (dict) or removes (None) the payloads of `ids`, per shard all or nothing."""
        ids = _ids(ids)
        if len(payloads) != len(ids):
            raise ValueError(f"{len(payloads)} payloads for {len(ids)} ids")
        refs = []
        for s, part in self._route(ids):
            chunk = [payloads[i] for i in part]
            refs.extend(h.set_payloads.remote(ids[part], chunk) for h in self._replicas[s])
        ray.get(refs)

    def upsert(self, id: int, vector: Any) -> None:
        """Replaces the vector of `id`, or adds it."""
        self.add_items(np.asarray(vector, dtype=np.float32).reshape(1, -1), [id])

    def delete(self, ids: Any) -> int:
        """Deletes `ids`; ids not present are skipped (so that a retried delete is
        harmless). Returns how many of them were present."""
        ids = _ids(ids)
        refs = []
        for s, part in self._route(ids):
            refs.append([h.delete.remote(ids[part]) for h in self._replicas[s]])
        return sum(ray.get(group)[0] for group in refs)

    def add_batches(
        self,
        batches: Any,
        vector_column: str = "vector",
        id_column: str = "id",
        batch_size: int = 10_000,
        max_in_flight: Optional[int] = None,
    ) -> int:
        """Bulk load: `batches` is a ``ray.data.Dataset`` (rows with `vector_column` and
        `id_column`; its reads and transforms run in parallel Ray tasks) or an iterable of
        ``(vectors, ids)`` numpy chunks. Batches stream into the shards with up to
        `max_in_flight` (default 2 per shard) writes outstanding, every shard inserting in
        parallel. Returns the number of vectors written. Ids must be distinct across
        batches: two writes of one id in flight at once may land in either order."""
        if hasattr(batches, "iter_batches"):
            chunks = (
                (np.stack(b[vector_column]), b[id_column])
                for b in batches.iter_batches(batch_size=batch_size, batch_format="numpy")
            )
        else:
            chunks = iter(batches)
        limit = max_in_flight or 2 * self.shards * self.replicas
        pending: list = []
        written = 0
        for vectors, ids in chunks:
            pending.extend(self._submit_add(vectors, ids))
            while len(pending) > limit:
                done, pending = ray.wait(pending, num_returns=len(pending) - limit)
                written += sum(ray.get(done))
        written += sum(ray.get(pending))
        return written // self.replicas

    def _submit_add(self, data: Any, ids: Any, payloads: Optional[Sequence] = None) -> list:
        vectors = _vectors(data, self.dim)
        ids = _ids(ids)
        if len(ids) != len(vectors):
            raise ValueError(f"{len(ids)} ids for {len(vectors)} vectors")
        if payloads is not None and len(payloads) != len(ids):
            raise ValueError(f"{len(payloads)} payloads for {len(ids)} vectors")
        if len(np.unique(ids)) != len(ids):
            raise ValueError("an id repeats within one add_items call")
        refs = []
        for s, part in self._route(ids):
            # One copy in the object store, shared by the shard's replicas.
            v = ray.put(np.ascontiguousarray(vectors[part]))
            i = ray.put(ids[part])
            p = None if payloads is None else ray.put([payloads[j] for j in part])
            refs.extend(h.add_items.remote(v, i, p) for h in self._replicas[s])
        return refs

    def flush(self) -> None:
        """Checkpoints every replica (acknowledged writes are durable without it)."""
        ray.get([h.flush.remote() for row in self._replicas for h in row])

    # ----- reads --------------------------------------------------------------------------

    def set_ef(self, ef: int) -> None:
        """Default beam width of every shard's search (raise it for recall)."""
        self.ef = int(ef)

    def knn_query(
        self,
        data: Any,
        k: int = 1,
        ef: Optional[int] = None,
        filter: Optional[Any] = None,
        strict: bool = True,
    ) -> Tuple[np.ndarray, np.ndarray]:
        """The k nearest vectors of every row of `data` over all shards: `(labels,
        distances)` of shape (rows, k). Each shard answers all rows in one call (one
        replica per shard, in turn); the answers merge exactly. `filter` (a dict over
        the indexed payload fields, planned by each shard, or a picklable callable on
        labels) runs inside each shard. Raises RuntimeError if fewer than k are
        found, unless `strict=False` (then rows are padded with label 2**64-1, distance
        inf)."""
        if k < 1:
            raise ValueError("k must be at least 1")
        queries = _vectors(data, self.dim)
        if queries.nbytes > _INLINE_BYTES:
            # One copy in the object store for every shard, instead of one per task.
            queries = ray.put(queries)
        ef = ef if ef is not None else self.ef
        refs = [self._reader(s).knn_query.remote(queries, k, ef, filter) for s in range(self.shards)]
        answers = ray.get(refs)
        labels, distances = merge_topk([a[0] for a in answers], [a[1] for a in answers], k)
        if strict and (labels == MISSING_LABEL).any():
            found = int((labels != MISSING_LABEL).sum(axis=1).min())
            raise RuntimeError(
                f"found only {found} of the k={k} neighbours asked for: the index holds "
                f"fewer vectors, or the filter admits fewer, or ef is too small"
            )
        return labels, distances

    def get_items(self, ids: Any) -> np.ndarray:
        """The stored vectors of `ids`, in that order. KeyError for an unknown id."""
        ids = _ids(ids)
        out = np.empty((len(ids), self.dim), dtype=np.float32)
        parts = [(part, self._reader(s).get_items.remote(ids[part])) for s, part in self._route(ids)]
        for part, ref in parts:
            out[part] = ray.get(ref)
        return out

    def __contains__(self, id: int) -> bool:
        ids = _ids([id])
        return bool(ray.get(self._reader(int(self.shard_of(ids)[0])).contains.remote(ids))[0])

    def get_ids_list(self) -> list:
        """Every stored id (shard by shard)."""
        return [int(i) for a in ray.get([self._reader(s).ids.remote() for s in range(self.shards)]) for i in a]

    def __len__(self) -> int:
        return sum(ray.get([self._reader(s).count.remote() for s in range(self.shards)]))

    def get_current_count(self) -> int:
        return len(self)

    def shard_info(self) -> list:
        """Per replica: shard, replica, path, node id, process id, vectors, queries served."""
        rows = []
        for s, row in enumerate(self._replicas):
            for r, info in enumerate(ray.get([h.info.remote() for h in row])):
                rows.append(dict(info, shard=s, replica=r))
        return rows

    def actor(self, shard: int, replica: int = 0):
        """The Ray actor handle of one replica (to inspect it, or to kill it in a test)."""
        return self._replicas[shard][replica]

    def reshard(self, name: str, shards: int, root: Optional[str] = None, batch: int = 10_000, **kwargs) -> "ShardedIndex":
        """A new sharded index `name` with `shards` shards holding every vector of this
        one (which is left as it is): resharding is a copy, because changing the number of
        shards moves most ids. Stop writing to this index while it runs."""
        target = ShardedIndex.create(
            name,
            self.dim,
            self.space,
            shards=shards,
            root=root or os.path.dirname(os.path.dirname(self.manifest_path)),
            M=self.manifest["M"],
            ef_construction=self.manifest["ef_construction"],
            **kwargs,
        )

        def chunks():
            for s in range(self.shards):
                ids = ray.get(self._reader(s).ids.remote())
                for start in range(0, len(ids), batch):
                    part = ids[start : start + batch]
                    yield ray.get(self._reader(s).get_items.remote(part)), part

        target.add_batches(chunks())
        return target

    def close(self) -> None:
        """Closes every replica's index (a clean checkpoint) and stops the actors; returns
        once they are gone, so that the index can be opened again at once."""
        ray.get([h.close.remote() for row in self._replicas for h in row])
        for row in self._replicas:
            for h in row:
                ray.kill(h, no_restart=True)
        _await_gone(
            [_actor_name(self.manifest, s, r) for s, row in enumerate(self._replicas) for r in range(len(row))]
        )
        self._replicas = []

    def __enter__(self) -> "ShardedIndex":
        return self

    def __exit__(self, *exc) -> bool:
        if self._replicas:
            self.close()
        return False

    # ----- helpers ------------------------------------------------------------------------

    def _route(self, ids: np.ndarray) -> Iterable[Tuple[int, np.ndarray]]:
        """(shard, positions in `ids`) for every shard that holds some of `ids`."""
        owner = self.shard_of(ids)
        for s in range(self.shards):
            part = np.flatnonzero(owner == s)
            if len(part):
                yield s, part

    def _reader(self, shard: int):
        """The replica of `shard` whose turn it is to answer a read."""
        with self._lock:
            r = self._next_replica[shard]
            self._next_replica[shard] = (r + 1) % self.replicas
        return self._replicas[shard][r]


def _place(shards: int, replicas: int, nodes: Optional[Sequence[str]]) -> list:
    """The node of every replica, [shard][replica]."""
    if nodes is not None:
        nodes = list(nodes)
        if len(nodes) == shards:
            return [[nodes[s]] * replicas for s in range(shards)]
        if len(nodes) == shards * replicas:
            return [nodes[s * replicas : (s + 1) * replicas] for s in range(shards)]
        raise ValueError(f"nodes: give one per shard ({shards}) or one per replica ({shards * replicas})")
    alive = sorted(n["NodeID"] for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU", 0) > 0)
    if not alive:
        raise ShardError("no alive Ray node with CPUs")
    # Replica-major turns put the replicas of one shard on different nodes when there are
    # at least `replicas` nodes.
    return [[alive[(r * shards + s) % len(alive)] for r in range(replicas)] for s in range(shards)]


def _actor_name(manifest: dict, shard: int, replica: int) -> str:
    """The Ray name of a replica's actor: unique per sharded index (its uuid)."""
    return f"hnswdb:{manifest['name']}:{manifest['uuid'][:8]}:s{shard}r{replica}"


def _await_gone(names: Sequence[str], timeout: float = 60.0) -> None:
    """Returns once no actor holds any of `names`. `ray.kill` only starts an actor's
    death, and the name stays taken until it is over: an `open` of the same index right
    after `close` would otherwise fail with ActorAlreadyExistsError."""
    deadline = time.monotonic() + timeout
    for name in names:
        while True:
            try:
                ray.get_actor(name)
            except ValueError:
                break
            if time.monotonic() > deadline:
                raise ShardError(f"actor {name} still alive {timeout:.0f} s after it was killed")
            time.sleep(0.02)


def _start(
    manifest: dict,
    create: Optional[dict],
    num_cpus: float,
    resources: Optional[dict],
    max_restarts: int,
) -> list:
    """Starts one actor per replica, pinned to its node, and waits until every one has
    opened (or created) its directory."""
    identity = {k: manifest[k] for k in ("uuid", "name", "dim", "space", "shards")}
    threads = max(1, math.ceil(num_cpus))
    handles = []
    for s, row in enumerate(manifest["paths"]):
        handles.append([])
        for r, path in enumerate(row):
            actor = _ShardActor.options(
                name=_actor_name(manifest, s, r),
                num_cpus=num_cpus,
                resources=resources or {},
                max_restarts=max_restarts,
                # A call in flight when the actor dies runs again after the restart: every
                # write is idempotent (add_items replaces, delete skips absent ids).
                max_task_retries=-1 if max_restarts != 0 else 0,
                scheduling_strategy=NodeAffinitySchedulingStrategy(
                    node_id=manifest["nodes"][s][r], soft=False
                ),
            ).remote(path, dict(identity, shard=s, replica=r), create, threads)
            handles[-1].append(actor)
    # Surface a constructor's error (a foreign or lost directory) here, not on first use.
    ray.get([h.count.remote() for row in handles for h in row])
    return handles


def _vectors(data: Any, dim: int) -> np.ndarray:
    vectors = np.asarray(data, dtype=np.float32)
    if vectors.ndim == 1:
        vectors = vectors.reshape(1, -1)
    if vectors.ndim != 2 or vectors.shape[1] != dim:
        raise ValueError(f"expected vectors of dimension {dim}, got shape {vectors.shape}")
    if not np.isfinite(vectors).all():
        raise ValueError("vectors must be finite (no NaN or inf)")
    return vectors


def _ids(ids: Any) -> np.ndarray:
    ids = np.asarray(ids)
    if ids.size == 0:
        return np.empty(0, dtype=np.uint64)
    if ids.ndim == 0:
        ids = ids.reshape(1)
    if ids.dtype.kind not in "ui" or (ids.dtype.kind == "i" and (ids < 0).any()):
        raise ValueError("ids must be non-negative integers")
    return ids.astype(np.uint64)
