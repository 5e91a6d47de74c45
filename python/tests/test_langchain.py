"""hnswdb.langchain.HnswdbVectorStore: LangChain's standard vector store suite (sync,
async, get_by_ids), then what the suite does not cover: persistence, filters, scores,
MMR, deletes by filter and the errors."""

import asyncio

import numpy as np
import pytest

pytest.importorskip("langchain_core")
standard = pytest.importorskip("langchain_tests.integration_tests")

from langchain_core.documents import Document  # noqa: E402
from langchain_core.embeddings import Embeddings  # noqa: E402

import hnswdb  # noqa: E402
from hnswdb.langchain import HnswdbVectorStore  # noqa: E402

class TestStandardSuite(standard.VectorStoreIntegrationTests):
    @pytest.fixture
    def vectorstore(self, tmp_path):
        store = HnswdbVectorStore(embedding=self.get_embeddings(), path=tmp_path / "store")
        yield store
        store.close()


class Table(Embeddings):
    """Each text's embedding is the row of a table (a text "7" is row 7), so that tests
    know every vector and can compute the right answers."""

    def __init__(self, vectors):
        self.vectors = vectors

    def embed_documents(self, texts):
        return [self.vectors[int(t)].tolist() for t in texts]

    def embed_query(self, text):
        return self.vectors[int(text)].tolist()


DIM = 8


@pytest.fixture
def data():
    return np.random.default_rng(7).normal(size=(300, DIM)).astype(np.float32)


def fill(path, data, **options):
    store = HnswdbVectorStore(embedding=Table(data), path=path, **options)
    metadatas = [{"n": i, "parity": ["even", "odd"][i % 2], "tags": [f"t{i % 3}", f"u{i % 5}"]} for i in range(len(data))]
    ids = store.add_texts([str(i) for i in range(len(data))], metadatas, ids=[f"doc-{i}" for i in range(len(data))])
    assert ids == [f"doc-{i}" for i in range(len(data))]
    return store


def cosine_order(data, q, admitted):
    unit = data / np.linalg.norm(data, axis=1, keepdims=True)
    d = 1 - unit @ (q / np.linalg.norm(q))
    return [i for i in np.argsort(d, kind="stable") if i in admitted], d


def test_search_filters_and_scores_match_brute_force(tmp_path, data):
    store = fill(tmp_path / "s", data)
    for q in range(0, 300, 37):
        for flt, admitted in [
            (None, set(range(300))),
            ({"parity": "odd"}, {i for i in range(300) if i % 2}),
            ({"n": {"$gte": 100, "$lt": 140}}, set(range(100, 140))),
            ({"tags": "u3"}, {i for i in range(300) if i % 5 == 3}),
            ({"$or": [{"n": {"$lt": 5}}, {"tags": {"$in": ["t1"]}}]}, {i for i in range(300) if i < 5 or i % 3 == 1}),
            ({"$not": {"parity": "even"}, "n": {"$ne": 3}}, {i for i in range(300) if i % 2 and i != 3}),
        ]:
            order, d = cosine_order(data, data[q], admitted)
            found = store.similarity_search_with_score(str(q), k=5, filter=flt)
            assert [doc.id for doc, _ in found] == [f"doc-{i}" for i in order[:5]], flt
            for doc, score in found:
                i = int(doc.page_content)
                assert doc.metadata["n"] == i and doc.metadata["parity"] == ["even", "odd"][i % 2]
                assert score == pytest.approx(d[i], abs=1e-5)
            relevance = store.similarity_search_with_relevance_scores(str(q), k=5, filter=flt)
            assert [s for _, s in relevance] == pytest.approx([1 - s / 2 for _, s in found], abs=1e-6)


def test_reopen_keeps_everything(tmp_path, data):
    fill(tmp_path / "s", data).close()
    store = HnswdbVectorStore(embedding=Table(data), path=tmp_path / "s")
    assert store.similarity_search("12", k=1)[0] == Document(
        id="doc-12", page_content="12", metadata={"n": 12, "parity": "even", "tags": ["t0", "u2"]}
    )
    assert [d.id for d in store.get_by_ids(["doc-3", "nope", "doc-1"])] == ["doc-3", "doc-1"]
    store.add_texts(["12"], [{"n": -1}], ids=["doc-12"])  # replaces, as before the reopen
    assert store.get_by_ids(["doc-12"])[0].metadata == {"n": -1}
    store.close()


def test_uuid_ids_dimension_from_first_add_and_from_texts(tmp_path, data):
    store = HnswdbVectorStore.from_texts(["1", "2"], Table(data), [{"a": 1}, {"a": 2}], path=tmp_path / "s")
    docs = store.similarity_search("1", k=2)
    assert [d.page_content for d in docs] == ["1", "2"]
    assert all(len(d.id) == 36 for d in docs)  # uuid4 strings
    index = hnswdb.Index.open(str(tmp_path / "s"), read_only=True)
    assert (index.dim, index.space, index.id_kind) == (DIM, "cosine", "str")
    index.close()
    with pytest.raises(ValueError, match="path"):
        HnswdbVectorStore.from_texts(["1"], Table(data))


def test_mmr(tmp_path):
    # Three near-copies of one vector and one other: MMR with diversity picks the other
    # second; with lambda 1 it is plain nearest-first.
    vectors = np.array([[1, 0, 0], [1, 0.01, 0], [1, 0, 0.01], [0.6, 0.8, 0]], dtype=np.float32)
    store = HnswdbVectorStore(embedding=Table(vectors), path=tmp_path / "s")
    store.add_texts(["0", "1", "2", "3"], ids=["a", "b", "c", "d"])
    nearest = [d.id for d in store.similarity_search("0", k=2)]
    assert [d.id for d in store.max_marginal_relevance_search("0", k=2, fetch_k=4, lambda_mult=1.0)] == nearest
    assert [d.id for d in store.max_marginal_relevance_search("0", k=2, fetch_k=4, lambda_mult=0.1)] == ["a", "d"]
    assert store.max_marginal_relevance_search("0", k=2, filter={"none": 1}) == []


def test_delete_by_ids_and_filter(tmp_path, data):
    store = fill(tmp_path / "s", data)
    assert store.delete(["doc-0", "doc-1", "missing"])
    assert store.get_by_ids(["doc-0", "doc-1", "doc-2"])[0].id == "doc-2"
    store.delete(filter={"parity": "odd"})
    assert all(d.metadata["parity"] == "even" for d in store.similarity_search("5", k=50))
    with pytest.raises(ValueError, match="ids or a filter"):
        store.delete()
    store.delete(filter={})
    assert store.similarity_search("5", k=3) == []


def test_bad_input_is_refused(tmp_path, data):
    store = HnswdbVectorStore(embedding=Table(data), path=tmp_path / "s")
    assert store.similarity_search("1") == [] and store.get_by_ids(["x"]) == []
    assert store.delete(["x"])  # nothing created yet: nothing to delete
    with pytest.raises(ValueError, match="reserved"):
        store.add_texts(["1"], [{"_page_content": "x"}])
    with pytest.raises(ValueError):
        store.add_texts(["1", "2"], [{}])
    store.add_texts(["1"])
    with pytest.raises(ValueError):
        store.similarity_search("1", filter={"n": {"$foo": 1}})
    store.close()
    with pytest.raises(ValueError, match="space"):
        HnswdbVectorStore(embedding=Table(data), path=tmp_path / "s", space="l2")
    ints = hnswdb.Index("cosine", DIM)
    ints.init_index(0, path=str(tmp_path / "ints"))
    ints.close()
    with pytest.raises(ValueError, match="integer ids"):
        HnswdbVectorStore(embedding=Table(data), path=tmp_path / "ints")


def test_async_methods(tmp_path, data):
    async def scenario():
        store = HnswdbVectorStore(embedding=Table(data), path=tmp_path / "s")
        ids = await store.aadd_texts([str(i) for i in range(20)], [{"n": i} for i in range(20)])
        found = await store.asimilarity_search("4", k=3, filter={"n": {"$gte": 4}})
        assert found[0].page_content == "4" and all(d.metadata["n"] >= 4 for d in found)
        mmr = await store.amax_marginal_relevance_search("4", k=3, fetch_k=10)
        assert mmr[0].page_content == "4"
        await store.adelete(ids[:10])
        assert len(await store.aget_by_ids(ids)) == 10
        store.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("space", ["cosine", "ip", "l2"])
def test_relevance_is_half_one_plus_cosine_in_every_space(tmp_path, data, space):
    unit = data / np.linalg.norm(data, axis=1, keepdims=True)
    store = HnswdbVectorStore(embedding=Table(unit), path=tmp_path / "s", space=space)
    store.add_texts([str(i) for i in range(50)])
    found = store.similarity_search_with_relevance_scores("3", k=50)
    assert found[0][0].page_content == "3"
    for doc, score in found:
        assert score == pytest.approx((1 + unit[3] @ unit[int(doc.page_content)]) / 2, abs=1e-5)
    store.close()
