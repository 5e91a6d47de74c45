"""Data operations from Python: query() with payloads and vectors, get / count / delete /
update by ids or by filter, merging set_payload(s), upsert of one or many, and filters on
payload keys no field index declares (answered by a scan, same answers as an index)."""

import numpy as np
import pytest

import hnswdb

DIM = 4


@pytest.fixture
def index(tmp_path):
    """Ids 0..29, vector i = (i, 0, 0, 0), payload {"group": i % 3, "name": f"n{i}"};
    "group" is indexed, "name" is not; id 30 has no payload."""
    ix = hnswdb.Index("l2", DIM)
    ix.init_index(max_elements=0, path=str(tmp_path / "idx"), fields={"group": "int"})
    vectors = np.zeros((31, DIM), dtype=np.float32)
    vectors[:, 0] = np.arange(31)
    payloads = [{"group": i % 3, "name": f"n{i}"} for i in range(30)] + [None]
    ix.add_items(vectors, np.arange(31), payloads=payloads)
    yield ix
    ix.close()


def test_query_returns_dicts_with_what_include_asks(index):
    hits = index.query([2.2, 0, 0, 0], k=3)
    assert [h["id"] for h in hits] == [2, 3, 1]
    assert set(hits[0]) == {"id", "distance", "payload"}
    assert hits[0]["payload"] == {"group": 2, "name": "n2"}
    assert hits[0]["distance"] == pytest.approx(0.04, abs=1e-5)
    full = index.query(np.array([30.0, 0, 0, 0]), k=1, include=["payload", "vector"])
    assert full[0]["payload"] is None
    assert set(full[0]) == {"id", "payload", "vector"}
    assert full[0]["vector"].dtype == np.float32
    np.testing.assert_array_equal(full[0]["vector"], [30, 0, 0, 0])
    # 2-D: one list per row; fewer matches than k: a shorter list, never padding.
    rows = index.query(np.array([[0.0, 0, 0, 0], [29.8, 0, 0, 0]]), k=2, include=["distance"])
    assert [[h["id"] for h in row] for row in rows] == [[0, 1], [30, 29]]
    few = index.query([0.0, 0, 0, 0], k=10, filter={"name": {"$in": ["n4", "n7"]}})
    assert [h["id"] for h in few] == [4, 7]
    paged = index.query([0.0, 0, 0, 0], k=2, offset=2, include=[])
    assert paged == [{"id": 2}, {"id": 3}]
    with pytest.raises(hnswdb.InvalidInputError):
        index.query([0.0, 0, 0, 0], include=["nope"])
    with pytest.raises(hnswdb.InvalidInputError):
        index.query([0.0, 0, 0, 0], include="payload")
    with pytest.raises(hnswdb.InvalidInputError):
        index.query([0.0, 0, 0], k=1)


def test_get_and_count_by_ids_and_by_filter(index):
    assert index.count() == 31
    assert index.count(filter={"group": 1}) == 10
    assert index.count(filter={"name": "n5"}) == 1
    got = index.get([7, 999, 2])
    assert got == [{"id": 7, "payload": {"group": 1, "name": "n7"}}, {"id": 2, "payload": {"group": 2, "name": "n2"}}]
    by_filter = index.get(filter={"group": 0}, include=["payload", "vector"], limit=3, offset=1)
    assert [g["id"] for g in by_filter] == [3, 6, 9]
    np.testing.assert_array_equal(by_filter[0]["vector"], [3, 0, 0, 0])
    assert [g["id"] for g in index.get(limit=2)] == [0, 1]
    assert [g["id"] for g in index.get([9, 1, 3], filter={"group": 0})] == [9, 3]
    assert index.get(5, include=[]) == [{"id": 5}]


def test_explain_says_when_a_filter_is_answered_by_a_scan(index):
    scanned = index.explain({"name": "n4"})
    assert (scanned["filter"], scanned["unindexed"], scanned["matching"]) == ("scan", ["name"], 1)
    assert index.explain({"group": 1})["filter"] == "index"
    before = index.get(filter={"name": {"$gte": 0}})  # a string key compared to a number
    assert before == []
    index.create_field_index("name", "keyword")
    assert index.explain({"name": "n4"})["filter"] == "index"
    assert index.count(filter={"name": "n4"}) == 1


def test_delete_by_ids_filter_and_missing_ok(index):
    assert index.delete(3) == 1  # the old scalar form
    assert index.delete([4, 5]) == 2
    with pytest.raises(hnswdb.UnknownLabelError):
        index.delete([6, 4])
    assert 6 in index  # nothing deleted
    with pytest.raises(hnswdb.InvalidInputError, match="named twice"):
        index.delete([6, 6])
    assert 6 in index
    assert index.delete([6, 4, 4, 1000], missing_ok=True) == 1
    assert index.delete(filter={"group": 0}) == 8  # 0, 9, 12, ..., 27 (3 and 6 are gone)
    assert index.delete(filter={"group": 0}) == 0
    assert index.count() == 31 - 1 - 2 - 1 - 8
    assert index.count(filter={"group": 0}) == 0
    with pytest.raises(hnswdb.InvalidInputError):
        index.delete()
    with pytest.raises(hnswdb.InvalidInputError):
        index.delete([1], filter={"group": 1})
    with pytest.raises(hnswdb.InvalidInputError):
        index.delete(filter={"group": "x"})


def test_set_payload_merges_by_default_and_update_by_filter(index):
    index.set_payload(1, {"name": None, "extra": [1, 2]})
    assert index.get([1])[0]["payload"] == {"group": 1, "extra": [1, 2]}
    index.set_payload(1, {"only": True}, replace=True)
    assert index.get([1])[0]["payload"] == {"only": True}
    index.set_payload(1, None)
    assert index.get([1])[0]["payload"] is None
    index.set_payloads([2, 30], [{"x": 1}, {"x": 2}])
    assert [g["payload"] for g in index.get([2, 30])] == [{"group": 2, "name": "n2", "x": 1}, {"x": 2}]
    assert index.update(filter={"group": 2}, payload={"seen": True}) == 10
    assert index.count(filter={"seen": True}) == 10
    assert index.update([4, 5], payload={"group": 0}, replace=True) == 2
    assert index.get([4])[0]["payload"] == {"group": 0}
    with pytest.raises(hnswdb.UnknownLabelError):
        index.update([4, 999], payload={"a": 1})
    with pytest.raises(hnswdb.InvalidInputError):
        index.set_payload(4, {"group": "not an int"})
    with pytest.raises(hnswdb.InvalidInputError):
        index.set_payload(4, [1, 2])
    assert index.get([4])[0]["payload"] == {"group": 0}


def test_upsert_of_one_or_many(index):
    index.upsert(1, [100.0, 0, 0, 0])
    index.upsert([2, 50], np.array([[200.0, 0, 0, 0], [300.0, 0, 0, 0]]), payloads=[None, {"new": 1}])
    assert index.query([200.0, 0, 0, 0], k=1)[0] == {"id": 2, "distance": 0.0, "payload": {"group": 2, "name": "n2"}}
    assert index.get([50])[0]["payload"] == {"new": 1}
    np.testing.assert_array_equal(index.get([1], include=["vector"])[0]["vector"], [100, 0, 0, 0])
    with pytest.raises(hnswdb.InvalidInputError):
        index.upsert([1, 2], [1.0, 0, 0, 0])


def test_writes_survive_a_reopen(tmp_path):
    path = str(tmp_path / "idx")
    ix = hnswdb.Index("l2", DIM)
    ix.init_index(max_elements=0, path=path)
    ix.add_items(np.eye(DIM, dtype=np.float32), [0, 1, 2, 3], payloads=[{"k": i} for i in range(DIM)])
    ix.set_payload(0, {"j": 1})
    ix.update(filter={"k": 1}, payload={"j": 2})
    ix.delete(filter={"k": {"$gte": 2}})
    ix.close()
    again = hnswdb.Index.open(path)
    assert again.get() == [{"id": 0, "payload": {"k": 0, "j": 1}}, {"id": 1, "payload": {"k": 1, "j": 2}}]
    again.close()
