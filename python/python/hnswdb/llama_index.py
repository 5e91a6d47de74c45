"""``hnswdb.llama_index.HnswdbVectorStore``: a LlamaIndex vector store kept in an hnswdb
index directory (``pip install llama-index-core``).

Each node is one string id of the index (its node id); its payload is LlamaIndex's
metadata dict of the node (``node_to_metadata_dict``: the node's metadata at the top
level, the whole node, text included, under ``_node_content``, and its ``ref_doc_id``)
plus ``_node_id``. ``MetadataFilters`` become filters in hnswdb's filter language
(docs/filters.md); what that language cannot say (a substring, a string range) is
checked in Python on an over-fetched candidate set, so that answers stay exact.

Semantics of the operators, on a key holding one value or a list of values (where a
condition on the values holds if it holds for one of them, as in hnswdb's filters):
EQ, CONTAINS: a value equals it; NE: none does (a missing key matches); IN, ANY: a value
is one of them; NIN: none is; ALL: every one of them is a value; GT, GTE, LT, LTE: a
value compares so (numbers with numbers, strings with strings); TEXT_MATCH and
TEXT_MATCH_INSENSITIVE: a string value contains it; IS_EMPTY: no value (missing, null,
[]) or the value "". Numbers compare by exact value across int and float; a value of
another type (a string for a number) never matches.
"""

import asyncio
import operator
import os
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

try:
    from llama_index.core.bridge.pydantic import PrivateAttr
    from llama_index.core.indices.query.embedding_utils import get_top_k_mmr_embeddings
    from llama_index.core.schema import BaseNode
    from llama_index.core.vector_stores.types import (
        BasePydanticVectorStore,
        FilterCondition,
        FilterOperator,
        MetadataFilter,
        MetadataFilters,
        VectorStoreQuery,
        VectorStoreQueryMode,
        VectorStoreQueryResult,
    )
    from llama_index.core.vector_stores.utils import metadata_dict_to_node, node_to_metadata_dict
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError("hnswdb.llama_index needs llama-index-core: pip install llama-index-core") from e

from ._store import LazyIndex

# The payload key holding the node id (filters cannot name an index's ids, so a query
# restricted to node ids filters on this declared keyword field).
NODE_ID = "_node_id"
# The payload key LlamaIndex gives each node's document id.
REF_DOC_ID = "ref_doc_id"

# A filter in hnswdb's JSON form, or True / False for one admitting every node / none
# (kept apart until the end, so that `and` / `or` / `not` simplify them away).
Filter = Union[bool, Dict[str, Any]]


class HnswdbVectorStore(BasePydanticVectorStore):
    """A persistent LlamaIndex vector store in the directory `path`.

    Opens the index in `path` if there is one, else creates it (string ids, `space`:
    "cosine", "ip" or "l2") at the first add, with the dimension of its embeddings.
    `fields` declares metadata keys to index ({"year": "int"}: docs/filters.md), which
    makes filters on them fast (filters work on every key without it). `M`,
    `ef_construction` and `fields` apply when the store creates the index.
    """

    stores_text: bool = True
    flat_metadata: bool = False

    path: str
    space: Optional[str] = None
    M: int = 16
    ef_construction: int = 200
    fields: Optional[Dict[str, str]] = None

    _store: LazyIndex = PrivateAttr()

    def __init__(self, path: Any, **kwargs: Any) -> None:
        super().__init__(path=os.fspath(path), **kwargs)
        # The store's own keys are indexed: queries by node or document filter on them.
        fields = {NODE_ID: "keyword", REF_DOC_ID: "keyword", **(self.fields or {})}
        options = dict(M=self.M, ef_construction=self.ef_construction, fields=fields)
        self._store = LazyIndex(self.path, self.space, options)

    @classmethod
    def class_name(cls) -> str:
        return "HnswdbVectorStore"

    @property
    def client(self) -> Any:
        """The `hnswdb.Index` (None until the first add creates it)."""
        return self._store.index

    def close(self) -> None:
        """Closes the index (checkpointing it). The store is unusable afterwards."""
        self._store.close()

    # -- writes --------------------------------------------------------------------------

    def add(self, nodes: Sequence[BaseNode], **kwargs: Any) -> List[str]:
        """Writes the nodes (with their embeddings); a node id already stored is replaced."""
        ids = [node.node_id for node in nodes]
        if not nodes:
            return ids
        vectors = np.asarray([node.get_embedding() for node in nodes], dtype=np.float32)
        self._store.upsert(ids, vectors, [self._payload(node) for node in nodes])
        return ids

    def _payload(self, node: BaseNode) -> Dict[str, Any]:
        payload = node_to_metadata_dict(node, remove_text=False, flat_metadata=self.flat_metadata)
        payload[NODE_ID] = node.node_id
        return payload

    def delete(self, ref_doc_id: str, **kwargs: Any) -> None:
        """Deletes every node of the document `ref_doc_id`."""
        index = self._store.index
        if index is not None:
            index.delete(filter={REF_DOC_ID: ref_doc_id})

    def delete_nodes(
        self,
        node_ids: Optional[List[str]] = None,
        filters: Optional[MetadataFilters] = None,
        **kwargs: Any,
    ) -> None:
        """Deletes the nodes among `node_ids` (all if None) that `filters` admits (all if
        None): with neither, every node, as LlamaIndex's SimpleVectorStore does."""
        index = self._store.index
        where = _Where.of(filters, node_ids=node_ids)
        if index is None or where.filter is False:
            return
        if where.check is None:
            index.delete(filter={} if where.filter is True else where.filter)
        else:
            index.delete([row["id"] for row in self._rows(where)], missing_ok=True)

    def clear(self) -> None:
        """Deletes every node."""
        self.delete_nodes()

    # -- reads ---------------------------------------------------------------------------

    def get_nodes(
        self,
        node_ids: Optional[List[str]] = None,
        filters: Optional[MetadataFilters] = None,
    ) -> List[BaseNode]:
        """The nodes among `node_ids` (all if None) that `filters` admits (all if None)."""
        return [metadata_dict_to_node(row["payload"]) for row in self._rows(_Where.of(filters, node_ids=node_ids))]

    def _rows(self, where: "_Where") -> List[dict]:
        """Every stored row (id and payload) `where` admits."""
        index = self._store.index
        if index is None or where.filter is False:
            return []
        rows = index.get(filter=None if where.filter is True else where.filter, include=("payload",))
        return [row for row in rows if where.admits(row)]

    def query(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        """The `similarity_top_k` nodes nearest to the query embedding that its filters,
        `doc_ids` and `node_ids` admit (an empty list of ids: no restriction, as
        `VectorStoreIndex.as_retriever()` sends it), with their similarities (cosine,
        ip: 1 - distance; l2: 1 / (1 + squared distance)). Mode DEFAULT or MMR
        (`mmr_threshold`; `mmr_prefetch_k` candidates, 4 x top_k by default)."""
        if query.mode not in (VectorStoreQueryMode.DEFAULT, VectorStoreQueryMode.MMR):
            raise ValueError(f"HnswdbVectorStore answers DEFAULT and MMR queries, not {query.mode.value}")
        if query.query_embedding is None:
            raise ValueError("HnswdbVectorStore needs a query embedding")
        where = _Where.of(query.filters, node_ids=query.node_ids or None, doc_ids=query.doc_ids or None)
        vector = np.asarray(query.query_embedding, dtype=np.float32)
        k = query.similarity_top_k
        if query.mode == VectorStoreQueryMode.MMR:
            return self._mmr(vector, k, where, query.mmr_threshold or kwargs.get("mmr_threshold"), kwargs)
        hits = self._search(vector, k, where, ("distance", "payload"))
        similarity = self._similarity()
        return VectorStoreQueryResult(
            nodes=[metadata_dict_to_node(hit["payload"]) for hit in hits],
            similarities=[similarity(hit["distance"]) for hit in hits],
            ids=[hit["id"] for hit in hits],
        )

    def _mmr(
        self, vector: np.ndarray, k: int, where: "_Where", threshold: Optional[float], kwargs: Dict[str, Any]
    ) -> VectorStoreQueryResult:
        hits = self._search(vector, kwargs.get("mmr_prefetch_k") or 4 * k, where, ("payload", "vector"))
        similarities, ids = get_top_k_mmr_embeddings(
            vector.tolist(),
            [hit["vector"].tolist() for hit in hits],
            similarity_top_k=k,
            embedding_ids=[hit["id"] for hit in hits],
            mmr_threshold=threshold,
        )
        payloads = {hit["id"]: hit["payload"] for hit in hits}
        nodes = [metadata_dict_to_node(payloads[id_]) for id_ in ids]
        return VectorStoreQueryResult(nodes=nodes, similarities=list(similarities), ids=list(ids))

    def _search(self, vector: np.ndarray, k: int, where: "_Where", include: Tuple[str, ...]) -> List[dict]:
        """The `k` nearest rows `where` admits. A filter checked in Python over-fetches
        from the index's (wider) filter until `k` pass or the index has no more: exact,
        as the nearest rows that pass are among the nearest rows of a superset."""
        index = self._store.index
        if index is None or k <= 0 or where.filter is False:
            return []
        hnsw_filter = None if where.filter is True else where.filter
        fetch = k
        while True:
            hits = index.query(vector, k=fetch, filter=hnsw_filter, include=include)
            kept = [hit for hit in hits if where.admits(hit)]
            if len(kept) >= k or len(hits) < fetch:
                return kept[:k]
            fetch *= 4

    def _similarity(self) -> Callable[[float], float]:
        if self._store.space == "l2":
            return lambda d: 1.0 / (1.0 + d)
        return lambda d: 1.0 - d

    # -- async: the engine releases the GIL, so a thread keeps the event loop free -------

    async def async_add(self, nodes: Sequence[BaseNode], **kwargs: Any) -> List[str]:
        return await asyncio.to_thread(self.add, nodes, **kwargs)

    async def adelete(self, ref_doc_id: str, **kwargs: Any) -> None:
        await asyncio.to_thread(self.delete, ref_doc_id, **kwargs)

    async def adelete_nodes(
        self, node_ids: Optional[List[str]] = None, filters: Optional[MetadataFilters] = None, **kwargs: Any
    ) -> None:
        await asyncio.to_thread(self.delete_nodes, node_ids, filters, **kwargs)

    async def aclear(self) -> None:
        await asyncio.to_thread(self.clear)

    async def aget_nodes(
        self, node_ids: Optional[List[str]] = None, filters: Optional[MetadataFilters] = None
    ) -> List[BaseNode]:
        return await asyncio.to_thread(self.get_nodes, node_ids, filters)

    async def aquery(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        return await asyncio.to_thread(self.query, query, **kwargs)


# -- filters ---------------------------------------------------------------------------


@dataclass
class _Where:
    """What a read or delete admits: `filter` for the index (True: everything, False:
    nothing) and, when it is wider than the request, `check`, the exact condition on a
    payload, tested in Python on the rows the index returns."""

    filter: Filter
    check: Optional[Callable[[Dict[str, Any]], bool]]

    @staticmethod
    def of(
        filters: Optional[MetadataFilters],
        node_ids: Optional[Sequence[str]] = None,
        doc_ids: Optional[Sequence[str]] = None,
    ) -> "_Where":
        upper, lower = _bounds(filters) if filters is not None else (True, True)
        scope = []
        if node_ids is not None:
            scope.append({NODE_ID: {"$in": list(node_ids)}})
        if doc_ids is not None:
            scope.append({REF_DOC_ID: {"$in": list(doc_ids)}})
        check = None if upper == lower else (lambda payload: _admits(filters, payload))
        return _Where(_and([upper, *scope]), check)

    def admits(self, row: dict) -> bool:
        return self.check is None or self.check(row["payload"] or {})


def _and(parts: List[Filter]) -> Filter:
    if any(part is False for part in parts):
        return False
    parts = [part for part in parts if part is not True]
    return True if not parts else parts[0] if len(parts) == 1 else {"$and": parts}


def _or(parts: List[Filter]) -> Filter:
    if any(part is True for part in parts):
        return True
    parts = [part for part in parts if part is not False]
    return False if not parts else parts[0] if len(parts) == 1 else {"$or": parts}


def _not(part: Filter) -> Filter:
    return (not part) if isinstance(part, bool) else {"$not": part}


def _bounds(filters: MetadataFilters) -> Tuple[Filter, Filter]:
    """(upper, lower): hnswdb filters admitting at least and at most what `filters`
    admits; the same filter when the language can say it exactly. (NOT turns a lower
    bound into an upper one.) No conditions admit everything, whatever the condition,
    as in LlamaIndex."""
    if not filters.filters:
        return True, True
    pairs = [_bounds(f) if isinstance(f, MetadataFilters) else _leaf_bounds(f) for f in filters.filters]
    uppers, lowers = [u for u, _ in pairs], [lo for _, lo in pairs]
    condition = filters.condition or FilterCondition.AND
    if condition == FilterCondition.AND:
        return _and(uppers), _and(lowers)
    if condition == FilterCondition.OR:
        return _or(uppers), _or(lowers)
    if condition == FilterCondition.NOT:
        return _not(_or(lowers)), _not(_or(uppers))
    raise ValueError(f"unknown filter condition {condition}")


_LIST_OPERATORS = {FilterOperator.IN, FilterOperator.NIN, FilterOperator.ANY, FilterOperator.ALL}
_RANGES = {
    FilterOperator.GT: ("$gt", operator.gt),
    FilterOperator.GTE: ("$gte", operator.ge),
    FilterOperator.LT: ("$lt", operator.lt),
    FilterOperator.LTE: ("$lte", operator.le),
}
_TEXT_MATCHES = {FilterOperator.TEXT_MATCH, FilterOperator.TEXT_MATCH_INSENSITIVE}


def _check_value(f: MetadataFilter) -> None:
    """A clear error for a value the operator cannot take."""
    op, value = f.operator, f.value
    if op == FilterOperator.IS_EMPTY:
        return
    if op in _LIST_OPERATORS:
        if not isinstance(value, list):
            raise ValueError(f"filter on {f.key!r}: {op.name} takes a list of values, not {value!r}")
        if op == FilterOperator.ALL and not value:
            # Vacuously true for a key holding [] but not for a missing one, in
            # LlamaIndex: hnswdb's filters see no value in either.
            raise ValueError(f"filter on {f.key!r}: ALL takes at least one value")
    elif value is None or isinstance(value, list):
        hint = " (use IS_EMPTY for a missing value)" if value is None else " (use IN for one of several)"
        raise ValueError(f"filter on {f.key!r}: {op.name} takes one value, not {value!r}{hint}")
    elif op in _TEXT_MATCHES and not isinstance(value, str):
        raise ValueError(f"filter on {f.key!r}: {op.name} takes a string, not {value!r}")


def _leaf_bounds(f: MetadataFilter) -> Tuple[Filter, Filter]:
    """(upper, lower) of one condition (see `_bounds`)."""
    _check_value(f)
    key, op, value = f.key, f.operator, f.value
    exact: Filter
    if op in (FilterOperator.EQ, FilterOperator.CONTAINS):
        exact = {key: {"$eq": value}}
    elif op == FilterOperator.NE:
        exact = {key: {"$ne": value}}
    elif op in (FilterOperator.IN, FilterOperator.ANY):
        exact = {key: {"$in": value}}
    elif op == FilterOperator.NIN:
        exact = {key: {"$nin": value}}
    elif op == FilterOperator.ALL:
        exact = _and([{key: {"$eq": v}} for v in value])
    elif op == FilterOperator.IS_EMPTY:
        exact = _or([{key: {"$exists": False}}, {key: {"$eq": ""}}])
    elif op in _RANGES and _kind(value) == "number":
        exact = {key: {_RANGES[op][0]: value}}
    elif op in _RANGES:
        # hnswdb's ranges are numeric: a string range is checked in Python.
        return {key: {"$exists": True}}, False
    elif op in _TEXT_MATCHES:
        # No substring operator: a value equal to the text certainly contains it.
        return {key: {"$exists": True}}, {key: {"$eq": value}}
    else:
        raise ValueError(f"unknown filter operator {op}")
    return exact, exact


def _kind(x: Any) -> Optional[str]:
    """The type a filter compares by (bool before int: True is no 1 here)."""
    if isinstance(x, bool):
        return "bool"
    if isinstance(x, (int, float)):
        return "number"
    if isinstance(x, str):
        return "string"
    return None


def _same(x: Any, v: Any) -> bool:
    return _kind(x) is not None and _kind(x) == _kind(v) and x == v


def _admits(filters: MetadataFilters, payload: Dict[str, Any]) -> bool:
    """Whether `filters` admits a node with `payload`, in Python (the module's docstring
    gives the semantics; hnswdb's filters, where they can say it, agree)."""
    if not filters.filters:
        return True
    results = (
        _admits(f, payload) if isinstance(f, MetadataFilters) else _leaf_admits(f, payload) for f in filters.filters
    )
    condition = filters.condition or FilterCondition.AND
    if condition == FilterCondition.AND:
        return all(results)
    if condition == FilterCondition.OR:
        return any(results)
    return not any(results)


def _leaf_admits(f: MetadataFilter, payload: Dict[str, Any]) -> bool:
    stored = payload.get(f.key)
    # As hnswdb's filters: a list gives its elements, and null is no value.
    values = [x for x in (stored if isinstance(stored, list) else [stored]) if x is not None]
    op, value = f.operator, f.value

    def has(v: Any) -> bool:
        return any(_same(x, v) for x in values)

    if op in (FilterOperator.EQ, FilterOperator.CONTAINS):
        return has(value)
    if op == FilterOperator.NE:
        return not has(value)
    if op in (FilterOperator.IN, FilterOperator.ANY):
        return any(has(v) for v in value)
    if op == FilterOperator.NIN:
        return not any(has(v) for v in value)
    if op == FilterOperator.ALL:
        return all(has(v) for v in value)
    if op == FilterOperator.IS_EMPTY:
        return not values or has("")
    if op in _RANGES:
        compare = _RANGES[op][1]
        return any(_kind(x) == _kind(value) and _kind(x) in ("number", "string") and compare(x, value) for x in values)
    if op == FilterOperator.TEXT_MATCH:
        return any(isinstance(x, str) and value in x for x in values)
    if op == FilterOperator.TEXT_MATCH_INSENSITIVE:
        return any(isinstance(x, str) and value.lower() in x.lower() for x in values)
    raise ValueError(f"unknown filter operator {op}")
