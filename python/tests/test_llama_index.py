"""hnswdb.llama_index.HnswdbVectorStore. LlamaIndex ships no contract suite, so: ranking
and every filter operator against a brute force over the same data (random metadata,
many random nested filters, each condition judged by LlamaIndex's own filter function),
then reopening, deletes, get_nodes/delete_nodes/clear, the async methods, and a
VectorStoreIndex end to end."""

import asyncio
import random

import numpy as np
import pytest

pytest.importorskip("llama_index.core")

from llama_index.core import Document, StorageContext, VectorStoreIndex  # noqa: E402
from llama_index.core.embeddings import MockEmbedding  # noqa: E402
from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode  # noqa: E402
from llama_index.core.vector_stores.types import (  # noqa: E402
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
)
from llama_index.core.vector_stores.utils import build_metadata_filter_fn  # noqa: E402

from hnswdb.llama_index import HnswdbVectorStore  # noqa: E402

DIM = 8
N = 400
GENRES = ["drama", "comedy", "news", "sci-fi", ""]
WORDS = ["Red", "river", "blue", "Moon", "stone", "sky", "rivers", "moonlight"]
TAGS = ["a", "b", "c", "d", "e"]


def random_metadata(rng):
    """Each key keeps one type (a number, a string or a list) or is missing / null."""
    meta = {}
    if rng.random() < 0.9:
        meta["year"] = rng.choice([None, rng.randint(1990, 2025)]) if rng.random() < 0.05 else rng.randint(1990, 2025)
    if rng.random() < 0.9:
        meta["score"] = round(rng.uniform(0, 10), 1)
    if rng.random() < 0.9:
        meta["genre"] = rng.choice(GENRES)
    if rng.random() < 0.95:
        meta["title"] = " ".join(rng.sample(WORDS, 2))
    if rng.random() < 0.9:
        meta["tags"] = rng.sample(TAGS, rng.randint(0, 3))
    return meta


def make_nodes(seed=0, n=N):
    rng = random.Random(seed)
    vectors = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    nodes = [
        TextNode(
            id_=f"n{i}",
            text=f"text of node {i}",
            metadata=random_metadata(rng),
            embedding=vectors[i].tolist(),
            relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=f"doc{i % 20}")},
        )
        for i in range(n)
    ]
    return nodes, vectors


def random_leaf(rng):
    """A condition of a random operator on a key of the type it is meant for (CONTAINS,
    ANY, ALL on the list key: on a string LlamaIndex's own function tests substrings)."""
    key = rng.choice(["year", "score", "genre", "title", "tags"])
    if key in ("year", "score"):
        op = rng.choice(["==", "!=", ">", ">=", "<", "<=", "in", "nin", "is_empty"])
        one = lambda: rng.randint(1990, 2025) if key == "year" else round(rng.uniform(0, 10), 1)  # noqa: E731
        # Across int and float too: 2000.0 equals 2000, 2000.5 nothing.
        value = rng.choice([one(), one(), float(rng.randint(1990, 2025)), 2000.5, rng.randint(0, 10)])
        if op in ("in", "nin"):
            value = [one() for _ in range(rng.randint(0, 4))]
            value = [float(v) for v in value] if key == "score" or rng.random() < 0.5 else value
    elif key in ("genre", "title"):
        op = rng.choice(["==", "!=", ">", ">=", "<", "<=", "in", "nin", "text_match", "text_match_insensitive", "is_empty"])
        pool = GENRES if key == "genre" else WORDS + ["Red river", "iver", "moon"]
        value = rng.choice(pool)
        if op in ("in", "nin"):
            value = rng.sample(pool, rng.randint(0, 3))
    else:
        op = rng.choice(["contains", "any", "all", "is_empty"])
        value = rng.choice(TAGS) if op == "contains" else rng.sample(TAGS, rng.randint(op == "all", 3))
    return MetadataFilter(key=key, value=value, operator=FilterOperator(op))


def random_filters(rng, depth=0):
    children = [
        random_filters(rng, depth + 1) if depth < 2 and rng.random() < 0.3 else random_leaf(rng)
        for _ in range(rng.randint(1, 3))
    ]
    return MetadataFilters(filters=children, condition=rng.choice(list(FilterCondition)))


def oracle(filters, metadata):
    """Whether `filters` admits `metadata`: each condition by LlamaIndex's own function,
    combined as AND, OR, NOT (none holds) say."""
    results = [
        oracle(f, metadata) if isinstance(f, MetadataFilters) else build_metadata_filter_fn(lambda _: metadata, MetadataFilters(filters=[f]))("")
        for f in filters.filters
    ]
    if filters.condition == FilterCondition.AND:
        return all(results)
    if filters.condition == FilterCondition.OR:
        return any(results)
    return not any(results)


def cosine_distances(vectors, q):
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return 1 - unit @ (q / np.linalg.norm(q))


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    nodes, vectors = make_nodes()
    store = HnswdbVectorStore(path=tmp_path_factory.mktemp("llama") / "store")
    assert store.add(nodes) == [n.node_id for n in nodes]
    yield store, nodes, vectors
    store.close()


def test_queries_and_every_operator_match_brute_force(filled):
    store, nodes, vectors = filled
    rng = random.Random(1)
    queries = np.random.default_rng(2).normal(size=(300, DIM)).astype(np.float32)
    seen_ops, nonempty = set(), 0
    for q in queries:
        filters = random_filters(rng)
        admitted = [i for i, node in enumerate(nodes) if oracle(filters, node.metadata)]
        d = cosine_distances(vectors, q)
        expected = sorted(admitted, key=lambda i: d[i])[:7]
        result = store.query(VectorStoreQuery(query_embedding=q.tolist(), similarity_top_k=7, filters=filters))
        assert result.ids == [f"n{i}" for i in expected], filters
        assert result.similarities == pytest.approx([1 - d[i] for i in expected], abs=1e-5)
        assert [n.get_content() for n in result.nodes] == [f"text of node {i}" for i in expected]
        assert [n.metadata for n in result.nodes] == [nodes[i].metadata for i in expected]
        got = store.get_nodes(filters=filters)
        assert sorted(n.node_id for n in got) == sorted(f"n{i}" for i in admitted), filters
        seen_ops |= {f.operator for f in _leaves(filters)}
        nonempty += bool(admitted)
    assert seen_ops == set(FilterOperator)  # the random filters tried every operator
    assert nonempty > 150  # and most of them admit something


def _leaves(filters):
    for f in filters.filters:
        yield from _leaves(f) if isinstance(f, MetadataFilters) else [f]


def test_node_ids_doc_ids_and_unrestricted_empty_lists(filled):
    store, nodes, vectors = filled
    q = vectors[5].tolist()
    every = store.query(VectorStoreQuery(query_embedding=q, similarity_top_k=4))
    assert every.ids[0] == "n5"
    # node_ids=[] (what VectorStoreIndex.as_retriever() sends) restricts nothing.
    assert store.query(VectorStoreQuery(query_embedding=q, similarity_top_k=4, node_ids=[], doc_ids=[])).ids == every.ids
    some = store.query(VectorStoreQuery(query_embedding=q, similarity_top_k=10, node_ids=["n1", "n2", "n3", "zz"]))
    assert sorted(some.ids) == ["n1", "n2", "n3"]
    docs = store.query(VectorStoreQuery(query_embedding=q, similarity_top_k=100, doc_ids=["doc3"]))
    assert sorted(docs.ids) == sorted(f"n{i}" for i in range(3, N, 20))
    assert [n.node_id for n in store.get_nodes(node_ids=["n7", "n9", "missing"])] == ["n7", "n9"]
    assert store.get_nodes(node_ids=[]) == []


def test_mmr_query(filled):
    store, nodes, vectors = filled
    q = vectors[11].tolist()
    plain = store.query(VectorStoreQuery(query_embedding=q, similarity_top_k=5))
    mmr = store.query(VectorStoreQuery(query_embedding=q, similarity_top_k=5, mode=VectorStoreQueryMode.MMR, mmr_threshold=1.0))
    assert mmr.ids == plain.ids  # threshold 1: relevance only
    diverse = store.query(VectorStoreQuery(query_embedding=q, similarity_top_k=5, mode=VectorStoreQueryMode.MMR, mmr_threshold=0.2))
    assert diverse.ids[0] == "n11" and len(diverse.ids) == 5 and set(diverse.ids) <= {f"n{i}" for i in range(N)}
    with pytest.raises(ValueError, match="DEFAULT and MMR"):
        store.query(VectorStoreQuery(query_embedding=q, mode=VectorStoreQueryMode.SVM))


def test_bad_filters_are_refused(filled):
    store, _, vectors = filled
    q = vectors[0].tolist()
    for f in [
        MetadataFilter(key="year", value=2000, operator=FilterOperator.IN),
        MetadataFilter(key="tags", value=["a"], operator=FilterOperator.EQ),
        MetadataFilter(key="year", value=None, operator=FilterOperator.EQ),
        MetadataFilter(key="title", value=3, operator=FilterOperator.TEXT_MATCH),
        MetadataFilter(key="tags", value=[], operator=FilterOperator.ALL),
    ]:
        with pytest.raises(ValueError, match=f.key):
            store.query(VectorStoreQuery(query_embedding=q, filters=MetadataFilters(filters=[f])))


def test_a_value_of_another_type_never_matches(filled):
    store, nodes, _ = filled
    for f, expected in [
        (MetadataFilter(key="genre", value=5, operator=FilterOperator.EQ), set()),
        (MetadataFilter(key="year", value="2000", operator=FilterOperator.EQ), set()),
        (MetadataFilter(key="year", value="2000", operator=FilterOperator.GT), set()),
        (MetadataFilter(key="genre", value=5, operator=FilterOperator.NE), {n.node_id for n in nodes}),
    ]:
        assert {n.node_id for n in store.get_nodes(filters=MetadataFilters(filters=[f]))} == expected, f


def test_reopen_delete_by_document_and_clear(tmp_path):
    nodes, vectors = make_nodes(seed=3, n=120)
    store = HnswdbVectorStore(path=tmp_path / "s")
    store.add(nodes)
    store.close()
    store = HnswdbVectorStore(path=tmp_path / "s")
    model = {n.node_id: n.metadata for n in nodes}  # what the store should hold

    def holds():
        return {n.node_id: n.metadata for n in store.get_nodes()}

    q = VectorStoreQuery(query_embedding=vectors[8].tolist(), similarity_top_k=3)
    assert store.query(q).ids[0] == "n8" and holds() == model
    assert store.get_nodes(node_ids=["n8"])[0].get_content() == "text of node 8"
    store.delete("doc8")
    model = {k: m for k, m in model.items() if int(k[1:]) % 20 != 8}
    assert "n8" not in store.query(q).ids and holds() == model
    store.add([TextNode(id_="n9", text="new text", metadata={"year": 1}, embedding=vectors[9].tolist())])
    model["n9"] = {"year": 1}
    assert [n.get_content() for n in store.get_nodes(node_ids=["n9"])] == ["new text"] and holds() == model
    before_2000 = MetadataFilters(filters=[MetadataFilter(key="year", value=2000, operator=FilterOperator.LT)])
    store.delete_nodes(filters=before_2000)
    model = {k: m for k, m in model.items() if not oracle(before_2000, m)}
    assert holds() == model
    # A substring is checked in Python: the delete goes through the ids that pass.
    moon = MetadataFilters(filters=[MetadataFilter(key="title", value="moon", operator=FilterOperator.TEXT_MATCH_INSENSITIVE)])
    some = [f"n{i}" for i in range(10, 40)]
    store.delete_nodes(node_ids=some, filters=moon)
    model = {k: m for k, m in model.items() if not (k in some and oracle(moon, m))}
    assert holds() == model and len(model) < 100
    store.delete_nodes(node_ids=[])  # no ids: nothing
    assert holds() == model
    store.clear()
    assert store.get_nodes() == [] and store.query(q).ids == []
    store.close()


def test_async_methods(tmp_path):
    nodes, vectors = make_nodes(seed=4, n=50)

    async def scenario():
        store = HnswdbVectorStore(path=tmp_path / "s")
        assert await store.async_add(nodes) == [n.node_id for n in nodes]
        q = VectorStoreQuery(query_embedding=vectors[2].tolist(), similarity_top_k=2)
        assert (await store.aquery(q)).ids[0] == "n2"
        await store.adelete("doc2")
        assert "n2" not in (await store.aquery(q)).ids
        assert len(await store.aget_nodes(node_ids=["n3", "n4"])) == 2
        await store.adelete_nodes(node_ids=["n3"])
        assert [n.node_id for n in await store.aget_nodes(node_ids=["n3", "n4"])] == ["n4"]
        await store.aclear()
        assert await store.aget_nodes() == []
        store.close()

    asyncio.run(scenario())


def test_vector_store_index_end_to_end(tmp_path):
    embed = MockEmbedding(embed_dim=DIM)
    documents = [
        Document(text=f"document number {i}", metadata={"lang": ["en", "de"][i % 2], "i": i}, doc_id=f"d{i}")
        for i in range(6)
    ]
    store = HnswdbVectorStore(path=tmp_path / "s")
    index = VectorStoreIndex.from_documents(
        documents, storage_context=StorageContext.from_defaults(vector_store=store), embed_model=embed
    )
    found = index.as_retriever(similarity_top_k=10).retrieve("anything")
    assert sorted(n.node.get_content() for n in found) == sorted(d.text for d in documents)
    german = MetadataFilters(filters=[MetadataFilter(key="lang", value="de")])
    found = index.as_retriever(similarity_top_k=10, filters=german).retrieve("anything")
    assert sorted(n.node.metadata["i"] for n in found) == [1, 3, 5]
    index.delete_ref_doc("d3")
    store.close()

    store = HnswdbVectorStore(path=tmp_path / "s")
    index = VectorStoreIndex.from_vector_store(store, embed_model=embed)
    found = index.as_retriever(similarity_top_k=10, filters=german).retrieve("anything")
    assert sorted(n.node.metadata["i"] for n in found) == [1, 5]
    assert all(n.node.ref_doc_id in {"d1", "d5"} for n in found)
    store.close()


@pytest.mark.parametrize("space", ["cosine", "ip", "l2"])
def test_similarities_in_every_space(tmp_path, space):
    nodes, vectors = make_nodes(seed=5, n=40)
    store = HnswdbVectorStore(path=tmp_path / "s", space=space)
    store.add(nodes)
    q = vectors[0]
    result = store.query(VectorStoreQuery(query_embedding=q.tolist(), similarity_top_k=40))
    found = vectors[[int(i[1:]) for i in result.ids]]
    if space == "l2":
        expected = 1 / (1 + ((found - q) ** 2).sum(1))
    elif space == "ip":
        expected = found @ q
    else:
        expected = 1 - cosine_distances(found, q)
    assert result.similarities == pytest.approx(expected.tolist(), rel=1e-4, abs=1e-4)
    assert result.similarities == sorted(result.similarities, reverse=True)
    store.close()
