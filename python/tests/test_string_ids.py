"""String ids: an index created with ids="str" takes and returns str ids in every method,
keeps them across reopens, and refuses ids of the other kind with a clear error."""

import numpy as np
import pytest

import hnswdb

DIM = 4


def vectors(n, seed=0):
    return np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)


def keyed(path):
    index = hnswdb.Index("l2", DIM)
    index.init_index(100, path=str(path), ids="str")
    return index


def test_string_ids_go_in_and_come_out_everywhere(tmp_path):
    data = vectors(6)
    keys = [f"doc-{i}" for i in range(6)]
    index = keyed(tmp_path / "idx")
    assert index.id_kind == "str"
    index.add_items(data, keys, payloads=[{"n": i} for i in range(6)])
    assert len(index) == 6

    labels, distances = index.knn_query(data[:2], k=3)
    assert labels.dtype == object and labels.shape == (2, 3)
    assert labels[0, 0] == "doc-0" and labels[1, 0] == "doc-1"
    assert np.allclose(distances[:, 0], 0, atol=1e-5)
    # A callable filter sees keys too.
    labels, _ = index.knn_query(data[0], k=1, filter=lambda key: key == "doc-5")
    assert labels[0, 0] == "doc-5"
    # Padding of a short answer is None.
    labels, distances = index.knn_query(data[0], k=8, strict=False)
    assert labels[0, 6] is None and np.isinf(distances[0, 6])

    assert np.allclose(index.get_items(["doc-3", "doc-1"]), data[[3, 1]])
    assert index.get_payloads(np.array(["doc-2"])) == [{"n": 2}]
    assert sorted(index.get_ids_list()) == keys
    assert "doc-4" in index and "nope" not in index and 4 not in index
    within, _ = index.search_within(data[2], 1e-6)
    assert within.tolist() == ["doc-2"]

    index.set_payload("doc-2", {"n": 20})
    index.set_payloads(["doc-3", "doc-4"], [{"n": 30}, None])
    assert index.get_payloads(["doc-2", "doc-3", "doc-4"]) == [{"n": 20}, {"n": 30}, None]

    # Re-adding a key replaces its vector; upsert does too.
    index.add_items(data[5], ["doc-0"])
    assert np.allclose(index.get_items(["doc-0"]), data[5])
    index.upsert("doc-9", data[1])
    assert len(index) == 7

    index.mark_deleted("doc-9")
    index.delete_items(["doc-1", "doc-2"])
    assert "doc-1" not in index and len(index) == 4
    with pytest.raises(hnswdb.UnknownLabelError):
        index.delete_items(["doc-3", "doc-1"])
    assert "doc-3" in index  # all or nothing
    # A deleted key comes back with its new vector.
    index.add_items(data[4], ["doc-1"])
    assert np.allclose(index.get_items(["doc-1"]), data[4])

    index.close()
    reopened = hnswdb.Index.open(str(tmp_path / "idx"))
    assert reopened.id_kind == "str"
    assert sorted(reopened.get_ids_list()) == ["doc-0", "doc-1", "doc-3", "doc-4", "doc-5"]
    assert reopened.get_payloads(["doc-3"]) == [{"n": 30}]
    view = hnswdb.Index.open(str(tmp_path / "idx"), read_only=True)
    reopened.add_items(data[:1], ["late"])
    view.refresh()
    assert view.knn_query(data[0], k=1)[0][0, 0] == "late"


def test_the_wrong_kind_of_id_is_an_error(tmp_path):
    index = keyed(tmp_path / "idx")
    data = vectors(2)
    with pytest.raises(TypeError):
        index.add_items(data, [1, 2])
    with pytest.raises(hnswdb.InvalidInputError):
        index.add_items(data)  # no default ids for keys
    with pytest.raises(hnswdb.InvalidInputError):
        index.add_items(data, ["a", ""])
    with pytest.raises(hnswdb.InvalidInputError):
        index.add_items(data, ["a", "x" * 1025])
    with pytest.raises(hnswdb.InvalidInputError):
        index.add_items(data, ["a", "a"])
    with pytest.raises(hnswdb.InvalidInputError, match="not valid Unicode"):
        index.add_items(data, ["a", "\ud800"])  # a lone surrogate is a str, not text
    assert len(index) == 0
    with pytest.raises(hnswdb.UnknownLabelError):
        index.get_items(["absent"])

    ints = hnswdb.Index("l2", DIM)
    ints.init_index(10, path=str(tmp_path / "ints"))
    assert ints.id_kind == "int"
    with pytest.raises(TypeError):
        ints.add_items(data, ["a", "b"])
    ints.add_items(data, [7, 8])
    labels, _ = ints.knn_query(data, k=1)
    assert labels.dtype == np.uint64 and labels[:, 0].tolist() == [7, 8]
    with pytest.raises(hnswdb.InvalidInputError):
        hnswdb.Index("l2", DIM).init_index(10, ids="str")  # hnswlib's kind: integer labels
    with pytest.raises(hnswdb.InvalidInputError):
        hnswdb.Index("l2", DIM).init_index(10, path=str(tmp_path / "bad"), ids="uuid")


def test_data_operations_speak_keys(tmp_path):
    """query, get, count, update, upsert and delete (by keys and by filter) take and give
    the keys of a string-id index, checked against a dict model."""
    data = vectors(20, seed=3)
    keys = [f"k{i:02d}" for i in range(20)]
    index = keyed(tmp_path / "idx")
    index.add_items(data, keys, payloads=[{"n": i, "even": i % 2 == 0} for i in range(20)])

    hits = index.query(data[5], k=3, include=["distance", "payload", "vector"])
    assert hits[0]["id"] == "k05" and hits[0]["payload"] == {"n": 5, "even": False}
    np.testing.assert_allclose(hits[0]["vector"], data[5], rtol=1e-6)
    batch = index.query(data[:2], k=2, filter={"even": True})
    assert [h["id"] for h in batch[0]][0] == "k00"
    assert all(h["payload"]["even"] for row in batch for h in row)

    got = index.get(["k03", "absent", "k01"], include=["payload"])
    assert [g["id"] for g in got] == ["k03", "k01"]
    assert index.count({"even": True}) == 10
    assert [g["id"] for g in index.get(filter={"n": {"$lt": 3}})] == ["k00", "k01", "k02"]

    assert index.update(["k01", "k02"], payload={"tag": "x"}) == 2
    assert index.get(["k01"])[0]["payload"] == {"n": 1, "even": False, "tag": "x"}
    index.set_payload("k01", {"tag": None})
    assert index.get(["k01"])[0]["payload"] == {"n": 1, "even": False}

    index.upsert(["k00", "new"], data[:2] * 2, payloads=[None, {"n": 99}])
    assert index.get(["new"])[0]["payload"] == {"n": 99}
    assert index.get(["k00"])[0]["payload"] == {"n": 0, "even": True}

    with pytest.raises(KeyError):
        index.delete(["k02", "absent"])
    with pytest.raises(hnswdb.InvalidInputError, match="k02"):
        index.delete(["k02", "k02"])
    assert "k02" in index
    assert index.delete(["k02", "absent", "k02"], missing_ok=True) == 1
    assert index.delete(filter={"even": True}) == 9
    model = {k for i, k in enumerate(keys) if i % 2 == 1 and k != "k02"} | {"new"}
    model.discard("k02")
    assert sorted(index.get_ids_list()) == sorted(model)
    assert index.count() == len(model)
    index.close()

    reopened = hnswdb.Index.open(str(tmp_path / "idx"))
    assert sorted(g["id"] for g in reopened.get()) == sorted(model)
    reopened.close()
