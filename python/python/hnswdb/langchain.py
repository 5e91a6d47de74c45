"""``hnswdb.langchain.HnswdbVectorStore``: a LangChain vector store kept in an hnswdb
index directory (``pip install langchain-core``).

Each document is one string id of the index; its payload is the document's metadata with
its text under the reserved key ``"_page_content"``, so that a search's ``filter`` (a dict
in hnswdb's filter language, docs/filters.md) names metadata keys as they are::

    store = HnswdbVectorStore(embedding=embeddings, path="docs")
    store.add_texts(["..."], metadatas=[{"lang": "en"}])
    store.similarity_search("...", k=4, filter={"lang": "en"})
"""

import uuid
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

try:
    from langchain_core.documents import Document
    from langchain_core.embeddings import Embeddings
    from langchain_core.vectorstores import VectorStore
    from langchain_core.vectorstores.utils import maximal_marginal_relevance
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError("hnswdb.langchain needs langchain-core: pip install langchain-core") from e

from ._store import LazyIndex

# The payload key holding a document's text (its other keys are its metadata).
PAGE_CONTENT = "_page_content"


def _relevance(space: str) -> Callable[[float], float]:
    """LangChain's relevance score in [0, 1] (1: same direction) of a distance of
    `space`: (1 + cos) / 2 for unit vectors (what embedding models give) in every space,
    clamped against rounding."""
    # cosine: d = 1 - cos; ip: d = 1 - <a, b>; l2 (squared): d = 2 - 2 cos.
    scale = 4.0 if space == "l2" else 2.0
    return lambda d: min(1.0, max(0.0, 1.0 - d / scale))


class HnswdbVectorStore(VectorStore):
    """A persistent LangChain vector store in the directory `path`.

    Opens the index in `path` if there is one, else creates it (string ids, `space`:
    "cosine", "ip" or "l2") at the first add, with the dimension of its embeddings.
    `fields` declares payload fields to index ({"lang": "keyword"}: docs/filters.md), which
    makes filters on them fast; filters work on any metadata key without it. `M`,
    `ef_construction` and `fields` apply when the store creates the index.
    """

    def __init__(
        self,
        embedding: Embeddings,
        path: Any,
        *,
        space: Optional[str] = None,
        M: int = 16,
        ef_construction: int = 200,
        fields: Optional[Dict[str, str]] = None,
    ) -> None:
        self._embedding = embedding
        options = dict(M=M, ef_construction=ef_construction, fields=fields)
        self._store = LazyIndex(path, space, options)

    @property
    def embeddings(self) -> Embeddings:
        return self._embedding

    @property
    def path(self) -> str:
        return self._store.path

    def close(self) -> None:
        """Closes the index (checkpointing it). The store is unusable afterwards."""
        self._store.close()

    def __enter__(self) -> "HnswdbVectorStore":
        return self

    def __exit__(self, *exc: object) -> bool:
        self.close()
        return False

    # -- writes --------------------------------------------------------------------------

    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: Optional[List[Dict[str, Any]]] = None,
        *,
        ids: Optional[List[Optional[str]]] = None,
        **kwargs: Any,
    ) -> List[str]:
        """Embeds and writes the texts; an id already in the store is replaced. Ids not
        given (or None) are new uuid4s."""
        texts = list(texts)
        metadatas = [{} for _ in texts] if metadatas is None else list(metadatas)
        ids = [None] * len(texts) if ids is None else list(ids)
        if not len(texts) == len(metadatas) == len(ids):
            raise ValueError(f"{len(texts)} texts, {len(metadatas)} metadatas and {len(ids)} ids")
        for metadata in metadatas:
            if PAGE_CONTENT in metadata:
                raise ValueError(f"metadata key {PAGE_CONTENT!r} is reserved for the document's text")
        keys = [key if key is not None else str(uuid.uuid4()) for key in ids]
        if not texts:
            return []
        vectors = np.asarray(self._embedding.embed_documents(texts), dtype=np.float32)
        payloads = [{**metadata, PAGE_CONTENT: text} for text, metadata in zip(texts, metadatas)]
        self._store.upsert(keys, vectors, payloads)
        return keys

    def delete(self, ids: Optional[List[str]] = None, *, filter: Optional[dict] = None, **kwargs: Any) -> bool:
        """Deletes the documents of `ids` (ids not in the store are skipped) and, with
        `filter`, every document it matches (`filter={}` deletes all). One of the two is
        required, so that a forgotten argument never empties the store."""
        if ids is None and filter is None:
            raise ValueError("delete needs ids or a filter (filter={} deletes every document)")
        index = self._store.index
        if index is None:
            return True
        if ids:
            index.delete(list(ids), missing_ok=True)
        if filter is not None:
            index.delete(filter=filter)
        return True

    # -- reads ---------------------------------------------------------------------------

    def get_by_ids(self, ids: Sequence[str], /) -> List[Document]:
        """The documents of `ids` in that order; ids not in the store are left out."""
        index = self._store.index
        if index is None or not ids:
            return []
        return [_document(row) for row in index.get(list(ids), include=("payload",))]

    def similarity_search(
        self, query: str, k: int = 4, filter: Optional[dict] = None, **kwargs: Any
    ) -> List[Document]:
        return self.similarity_search_by_vector(self._embedding.embed_query(query), k, filter=filter)

    def similarity_search_with_score(
        self, query: str, k: int = 4, filter: Optional[dict] = None, **kwargs: Any
    ) -> List[Tuple[Document, float]]:
        """The `k` nearest documents with their distances (smaller is closer)."""
        vector = self._embedding.embed_query(query)
        return self.similarity_search_with_score_by_vector(vector, k, filter=filter)

    def similarity_search_by_vector(
        self, embedding: List[float], k: int = 4, filter: Optional[dict] = None, **kwargs: Any
    ) -> List[Document]:
        return [doc for doc, _ in self.similarity_search_with_score_by_vector(embedding, k, filter=filter)]

    def similarity_search_with_score_by_vector(
        self, embedding: List[float], k: int = 4, filter: Optional[dict] = None
    ) -> List[Tuple[Document, float]]:
        """The `k` nearest documents to `embedding` (that `filter` admits) with their
        distances."""
        hits = self._query(embedding, k, filter, ("distance", "payload"))
        return [(_document(hit), hit["distance"]) for hit in hits]

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        return _relevance(self._store.space)

    def max_marginal_relevance_search(
        self,
        query: str,
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: Optional[dict] = None,
        **kwargs: Any,
    ) -> List[Document]:
        vector = self._embedding.embed_query(query)
        return self.max_marginal_relevance_search_by_vector(vector, k, fetch_k, lambda_mult, filter=filter)

    def max_marginal_relevance_search_by_vector(
        self,
        embedding: List[float],
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: Optional[dict] = None,
        **kwargs: Any,
    ) -> List[Document]:
        """`k` of the `fetch_k` nearest documents, picked by maximal marginal relevance
        (`lambda_mult` 1: nearest only, 0: most diverse)."""
        hits = self._query(embedding, max(fetch_k, k), filter, ("payload", "vector"))
        if not hits:
            return []
        chosen = maximal_marginal_relevance(
            np.asarray(embedding, dtype=np.float32), [hit["vector"] for hit in hits], lambda_mult, k
        )
        return [_document(hits[i]) for i in chosen]

    def _query(self, embedding: List[float], k: int, filter: Optional[dict], include: Tuple[str, ...]) -> List[dict]:
        index = self._store.index
        if index is None or k <= 0:
            return []
        return index.query(np.asarray(embedding, dtype=np.float32), k=k, filter=filter, include=include)

    # -- construction --------------------------------------------------------------------

    @classmethod
    def from_texts(
        cls,
        texts: List[str],
        embedding: Embeddings,
        metadatas: Optional[List[Dict[str, Any]]] = None,
        *,
        ids: Optional[List[str]] = None,
        path: Any = None,
        **kwargs: Any,
    ) -> "HnswdbVectorStore":
        """A store in `path` (required) holding `texts` (added to what it holds already);
        the other keyword arguments are the constructor's."""
        if path is None:
            raise ValueError("HnswdbVectorStore.from_texts needs path= (the index directory)")
        store = cls(embedding, path, **kwargs)
        store.add_texts(texts, metadatas, ids=ids)
        return store


def _document(row: dict) -> Document:
    """The Document of an index row (its id and payload)."""
    metadata = dict(row["payload"] or {})
    text = metadata.pop(PAGE_CONTENT, "")
    return Document(id=row["id"], page_content=text, metadata=metadata)
