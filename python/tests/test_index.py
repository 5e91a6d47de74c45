"""The Python binding: hnswlib's API, persistence, numpy shapes and dtypes, errors, and
agreement with the Rust API (through the `hnswdb` command-line tool)."""

import json
import os
import subprocess
import threading

import numpy as np
import pytest

import hnswdb

DIM = 16


def clustered(n, dim=DIM, seed=0, clusters=20):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim)).astype(np.float32) * 4
    labels = rng.integers(0, clusters, size=n)
    return (centres[labels] + rng.normal(size=(n, dim))).astype(np.float32)


def brute_force(data, queries, k, space):
    if space == "l2":
        d = ((queries[:, None, :] - data[None, :, :]) ** 2).sum(-1)
    elif space == "ip":
        d = 1 - queries @ data.T
    else:
        dn = data / np.linalg.norm(data, axis=1, keepdims=True)
        qn = queries / np.linalg.norm(queries, axis=1, keepdims=True)
        d = 1 - qn @ dn.T
    return np.argsort(d, axis=1, kind="stable")[:, :k], np.sort(d, axis=1)[:, :k]


def recall(found, truth):
    return np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)])


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "idx")


def build(path, space="l2", n=2000, seed=0):
    data = clustered(n, seed=seed)
    if space == "ip":
        # Inner product is used on unit-length embeddings in practice; on raw clustered
        # vectors HNSW's recall under ip is low in any library (hnswlib: 0.87 at ef 100).
        data /= np.linalg.norm(data, axis=1, keepdims=True)
    index = hnswdb.Index(space=space, dim=DIM)
    index.init_index(max_elements=n, ef_construction=100, M=16, path=path)
    index.add_items(data, np.arange(n))
    return index, data


@pytest.mark.parametrize("space", ["l2", "ip", "cosine"])
def test_knn_query_shapes_dtypes_and_recall(path, space):
    index, data = build(path, space)
    queries = clustered(50, seed=9)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    index.set_ef(100)
    labels, distances = index.knn_query(queries, k=10)
    assert labels.shape == (50, 10) and labels.dtype == np.uint64
    assert distances.shape == (50, 10) and distances.dtype == np.float32
    assert np.all(np.diff(distances, axis=1) >= 0)
    truth, true_d = brute_force(data, queries, 10, space)
    assert recall(labels, truth) >= 0.95
    # Distances are the metric's (as hnswlib defines them), not some other scale.
    np.testing.assert_allclose(distances[:, 0], true_d[:, 0], rtol=1e-3, atol=1e-3)
    # One 1-D query gives a (1, k) answer, as in hnswlib.
    one, _ = index.knn_query(queries[0], k=3)
    assert one.shape == (1, 3)
    index.close()


def test_persistence_across_close_and_reopen(path):
    index, data = build(path)
    queries = clustered(20, seed=3)
    before = index.knn_query(queries, k=5)
    index.close()
    again = hnswdb.Index.open(path)
    assert again.space == "l2" and again.dim == DIM and len(again) == len(data)
    after = again.knn_query(queries, k=5)
    np.testing.assert_array_equal(before[0], after[0])
    np.testing.assert_array_equal(before[1], after[1])
    np.testing.assert_array_equal(again.get_items([0, 7]), data[[0, 7]])
    again.close()
    # hnswlib's way: construct, then load_index.
    loaded = hnswdb.Index(space="l2", dim=DIM)
    loaded.load_index(path)
    assert loaded.get_current_count() == len(data)
    loaded.close()


def test_writes_are_durable_without_close(path, tmp_path):
    """A write is durable when add_items returns: a copy of the directory taken then
    (as a crash would leave it) opens with everything in it."""
    index, data = build(path, n=300)
    index.add_items(clustered(1, seed=5), [1000])
    import shutil

    snapshot = str(tmp_path / "snapshot")
    shutil.copytree(path, snapshot)
    index.close()
    copy = hnswdb.Index.open(snapshot)
    assert len(copy) == 301 and 1000 in copy
    copy.close()


def test_deletes_upserts_and_hnswlib_update_semantics(path):
    index, data = build(path, n=500)
    index.mark_deleted(3)
    assert 3 not in index and len(index) == 499
    labels, _ = index.knn_query(data[3], k=5)
    assert 3 not in labels
    with pytest.raises(KeyError):
        index.mark_deleted(3)
    moved = np.full(DIM, 50.0, dtype=np.float32)
    index.upsert(4, moved)
    np.testing.assert_array_equal(index.get_items([4])[0], moved)
    # add_items of an existing id replaces its vector (hnswlib does the same).
    index.add_items(np.full((1, DIM), -50.0), [5])
    assert len(index) == 499
    assert index.knn_query(np.full(DIM, -50.0), k=1)[0][0, 0] == 5
    # Default ids continue after the largest id, never replacing a vector.
    index.add_items(clustered(2, seed=7))
    assert len(index) == 501
    assert sorted(index.get_ids_list())[-3:] == [499, 500, 501]
    index.close()


def test_filter(path):
    index, data = build(path, n=1000)
    index.set_ef(200)
    labels, _ = index.knn_query(data[:10], k=5, filter=lambda label: label % 3 == 0)
    assert np.all(labels % 3 == 0)
    with pytest.raises(ZeroDivisionError):
        index.knn_query(data[:1], k=5, filter=lambda label: 1 / 0)
    index.close()


def test_inputs_numpy_accepts(path):
    index = hnswdb.Index(space="cosine", dim=3)
    index.init_index(10, path=path)
    index.add_items([[1, 0, 0], [0, 1, 0]], ids=[10, 20])  # lists of ints
    index.add_items(np.array([[0, 0, 1]], dtype=np.float64), ids=np.array([30], np.int32))
    index.add_items(np.asfortranarray(np.eye(3)[:2] + 1), ids=(40, 50))  # not C-contiguous
    assert index.get_current_count() == 5
    assert index.knn_query([1, 0, 0], k=1)[0][0, 0] == 10
    index.close()


def test_every_float32_layout_answers_alike(path):
    # A C-contiguous float32 array is read without numpy's conversions; every other
    # layout is converted first. Both must give the same answers and the same errors.
    index, data = build(path, n=300)
    queries = clustered(8, seed=5)
    labels, distances = index.knn_query(queries, k=5)
    wide = np.zeros((8, 2 * DIM), np.float32)
    wide[:, ::2] = queries
    frozen = queries.copy()
    frozen.flags.writeable = False
    for layout in [
        wide[:, ::2],  # strided
        np.asfortranarray(queries),
        queries.astype(">f4"),  # big-endian
        frozen,
        queries.astype(np.float64),
        queries.tolist(),
    ]:
        got_labels, got_distances = index.knn_query(layout, k=5)
        assert (got_labels == labels).all()
        assert np.allclose(got_distances, distances)
    assert (index.knn_query(queries[3], k=5)[0] == labels[3:4]).all()  # one vector, 1-D
    for bad in [np.zeros((2, DIM + 1), np.float32), np.zeros((2, 2, DIM), np.float32)]:
        with pytest.raises(ValueError):
            index.knn_query(bad, k=1)
    index.close()


def test_errors(path):
    index, data = build(path, n=200)
    with pytest.raises(ValueError, match="dimensionality"):
        index.add_items(np.zeros((2, DIM + 1)))
    with pytest.raises(ValueError, match="NaN"):
        index.add_items(np.full((1, DIM), np.nan), [999])
    with pytest.raises(ValueError, match="inf"):
        index.knn_query(np.full(DIM, np.inf))
    with pytest.raises(ValueError):
        index.add_items(data[:2], [1, 2, 3])
    with pytest.raises(ValueError, match="non-negative"):
        index.add_items(data[:1], [-1])
    # numpy would drop imaginary parts with only a warning.
    with pytest.raises(TypeError, match="complex"):
        index.add_items(data[:1] + 1j, [998])
    with pytest.raises(TypeError, match="complex"):
        index.knn_query(data[0] + 1j)
    with pytest.raises(TypeError):
        index.add_items(data[:1], ["a"])
    with pytest.raises(KeyError):
        index.get_items([123456])
    with pytest.raises(RuntimeError, match="found only"):
        index.knn_query(data[0], k=500)
    # A mixed add_items that fails validation writes nothing.
    bad = np.vstack([data[:1], np.full((1, DIM), np.nan)])
    with pytest.raises(ValueError):
        index.add_items(bad, [5000, 1])
    assert 5000 not in index
    assert len(index) == 200
    # A second writer is refused while the first has the index open.
    with pytest.raises(hnswdb.LockedError):
        hnswdb.Index.open(path)
    with pytest.raises(ValueError, match="unknown metric"):
        hnswdb.Index(space="hamming", dim=4)
    index.close()
    with pytest.raises(hnswdb.HnswdbError, match="not open"):
        index.knn_query(data[0])
    with pytest.raises(ValueError, match="holds a l2 index"):
        hnswdb.Index(space="cosine", dim=DIM).load_index(path)
    with pytest.raises(FileNotFoundError):
        hnswdb.Index.open(path + "-missing")


def test_corrupt_file_is_a_typed_error(path):
    build(path, n=100)[0].close()
    with open(os.path.join(path, "vectors"), "r+b") as f:
        f.write(b"NOTHNSW!")
    with pytest.raises(hnswdb.CorruptError):
        hnswdb.Index.open(path)


def test_context_manager_and_temporary_index(tmp_path):
    index = hnswdb.Index(space="l2", dim=DIM)
    index.init_index(max_elements=100)  # no path: a temporary directory
    data = clustered(100)
    with index:
        index.add_items(data)
        saved = str(tmp_path / "saved")
        index.save_index(saved)
        temporary = index.path
    assert not os.path.exists(temporary)
    assert os.path.isfile(saved)  # a snapshot file, as hnswlib's save_index writes
    with hnswdb.Index(space="l2", dim=DIM) as reopened:
        reopened.load_index(saved)
        assert len(reopened) == 100


def test_gil_is_released_during_search(path):
    index, data = build(path, n=3000)
    index.set_ef(400)
    ticks = []
    stop = threading.Event()

    def tick():
        while not stop.is_set():
            ticks.append(1)

    t = threading.Thread(target=tick)
    t.start()
    try:
        for _ in range(5):
            index.knn_query(data, k=10, num_threads=1)
    finally:
        stop.set()
        t.join()
    # With the GIL held for the whole search, the other thread could not run at all
    # during it (and could only tick between calls).
    assert len(ticks) > 1000
    index.close()


def cli():
    exe = os.environ.get("HNSWDB_CLI")
    if not exe or not os.path.exists(exe):
        pytest.skip("set HNSWDB_CLI to the hnswdb binary to compare with the Rust API")
    return exe


def test_same_answers_as_the_rust_api(path):
    """The Rust API (through the CLI) and the binding answer the same on the same files."""
    exe = cli()
    index, data = build(path, space="cosine", n=1500)
    queries = clustered(5, seed=11)
    labels, distances = index.knn_query(queries, k=10)
    index.close()
    text = "\n".join(",".join(str(float(x)) for x in q) for q in queries)
    out = subprocess.run(
        [exe, "--json", "search", path, "--vector", "-", "--k", "10", "--ef", "64"],
        input=text,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    answers = [json.loads(line) for line in out.splitlines()]
    assert len(answers) == len(queries)
    for row, answer in enumerate(answers):
        assert [h["id"] for h in answer["results"]] == labels[row].tolist()
        np.testing.assert_allclose([h["distance"] for h in answer["results"]], distances[row], rtol=1e-6)


def test_read_only_processes_beside_a_writer(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "multiprocess_readers",
        os.path.join(os.path.dirname(__file__), "..", "..", "examples", "multiprocess_readers.py"),
    )
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    added, answers = example.main(str(tmp_path / "idx"), batches=5)
    assert added == 2000
    assert len(answers) == 4 and all(served > 0 for served, _ in answers)
    # A refresh after the writer's last acknowledged write shows every reader all of it.
    assert all(seen == added for _, seen in answers)


def test_read_only_open_refuses_writes(path):
    index, data = build(path, n=300)
    reader = hnswdb.Index.open(path, read_only=True)
    assert reader.get_current_count() == 300
    with pytest.raises(hnswdb.HnswdbError):
        reader.add_items(data[:1], np.array([999]))
    index.add_items(data[:1], np.array([999]))
    assert reader.get_current_count() == 300
    reader.refresh()
    assert reader.get_current_count() == 301
    index.close()
    reader.close()


def test_a_calls_num_threads_is_for_that_call_only(path):
    index, data = build(path, n=500)
    index.set_num_threads(2)
    index.knn_query(data[:50], k=3, num_threads=1)
    index.add_items(data[:10] + 0.5, np.arange(500, 510), num_threads=1)
    assert index.num_threads == 2
    index.set_num_threads(1)
    assert index.num_threads == 1


def test_add_items_is_one_write_all_or_nothing(path):
    index, data = build(path, n=100)
    before = index.get_items([5])
    rows = np.stack([data[0] + 1, data[1] + 1])
    # An id twice in one call rejects the whole call: nothing replaced, nothing added.
    with pytest.raises(Exception):
        index.add_items(rows, np.array([5, 5]))
    assert index.get_current_count() == 100
    np.testing.assert_array_equal(index.get_items([5]), before)
    # A replaced id and a new one, in one durable write.
    index.add_items(rows, np.array([5, 500]))
    assert index.get_current_count() == 101
    np.testing.assert_allclose(index.get_items([5, 500]), rows, rtol=1e-6)
    index.close()
    reopened = hnswdb.Index.open(path, read_only=True)
    np.testing.assert_allclose(reopened.get_items([5, 500]), rows, rtol=1e-6)


def test_per_call_ef_padding_and_batch_delete(path):
    index, data = build(path, n=500)
    index.set_ef(10)
    # A per-call ef leaves the index's default alone and reaches exact answers here.
    exact, _ = brute_force(data, data[:20], 10, "l2")
    labels, _ = index.knn_query(data[:20], k=10, ef=500)
    assert recall(labels, exact) == 1.0 and index.ef == 10
    with pytest.raises(RuntimeError):
        index.knn_query(data[:1], k=5, filter=lambda label: label < 3)
    labels, distances = index.knn_query(data[:1], k=5, filter=lambda label: label < 3, strict=False)
    assert sorted(labels[0, :3]) == [0, 1, 2]
    assert (labels[0, 3:] == 2**64 - 1).all() and np.isinf(distances[0, 3:]).all()
    # So no vector may have that id: padding would pass for it.
    with pytest.raises(hnswdb.InvalidInputError, match="reserved"):
        index.add_items(data[:1], [2**64 - 1])
    # Default ids count on from the largest id: none are left after the largest valid one
    # (they wrapped around to 0 and were refused as "0 ids for 2 vectors").
    index.add_items(data[:1], [2**64 - 2])
    with pytest.raises(hnswdb.InvalidInputError, match="default ids"):
        index.add_items(data[1:3])
    index.delete_items([2**64 - 2])
    with pytest.raises(KeyError):
        index.delete_items([1, 2, 10_000])
    assert len(index) == 500  # all or nothing
    index.delete_items([1, 2])
    assert len(index) == 498 and 1 not in index
    index.close()


def test_payloads_filters_paging_range_and_tune(tmp_path):
    n = 3000
    data = clustered(n, seed=4)
    index = hnswdb.Index(space="l2", dim=DIM)
    index.init_index(
        max_elements=n, path=str(tmp_path / "p"), fields={"lang": "keyword", "year": "int", "ok": "bool"}
    )
    assert index.fields == {"lang": "keyword", "ok": "bool", "year": "int"}
    payloads = [{"lang": ["en", "de", "fr"][i % 3], "year": 2000 + i % 25, "ok": i % 2 == 0, "n": 1.5} for i in range(n)]
    payloads[7] = None
    index.add_items(data, np.arange(n), payloads=payloads)
    assert index.get_payloads([0, 7]) == [payloads[0], None]
    index.set_payload(7, {"lang": "xx", "nested": {"a": [1, 2, None]}})
    assert index.get_payloads([7])[0]["nested"] == {"a": [1, 2, None]}
    # A dict filter goes through the planner; every answer is admitted and there are k.
    for flt, admit in [
        ({"lang": "de", "year": {"$gte": 2020}}, lambda i: i % 3 == 1 and 2000 + i % 25 >= 2020),
        ({"year": 2003}, lambda i: i % 25 == 3),
        ({"$or": [{"ok": True}, {"lang": {"$in": ["fr"]}}]}, lambda i: i % 2 == 0 or i % 3 == 2),
    ]:
        labels, distances = index.knn_query(data[:20], k=10, filter=flt, ef=100)
        assert all(admit(int(l)) for l in labels.ravel() if l != 7), flt
        ok = np.array([admit(i) and i != 7 for i in range(n)])
        exact, _ = brute_force(data[ok], data[:20], 10, "l2")
        truth = np.flatnonzero(ok)[exact]
        assert recall(labels, truth) >= 0.9, flt
        assert index.explain(flt)["matching"] == ok.sum()
    with pytest.raises(ValueError):
        index.knn_query(data[:1], k=3, filter={"lang": 1})
    # A forced plan: each answers alike; a plan without a dict filter, or an unknown one,
    # is refused (both were ignored).
    flt = {"lang": "de"}
    scanned = index.knn_query(data[:5], k=5, filter=flt, ef=200, plan="scan")[0]
    assert (index.knn_query(data[:5], k=5, filter=flt, ef=200, plan="walk")[0] == scanned).all()
    for plan, flt in [("scan", None), ("walk", lambda label: True), ("bogus", flt)]:
        with pytest.raises(ValueError, match="plan"):
            index.knn_query(data[:1], k=3, filter=flt, plan=plan)
    # A key no field index declares is answered by a scan (here it matches nothing).
    assert index.knn_query(data[:1], k=3, filter={"missing": 1}, strict=False)[0][0, 0] == 2**64 - 1
    with pytest.raises(ValueError):
        index.add_items(data[:1], [n + 1], payloads=[{"year": "soon"}])
    # Paging: page 2 is the second slice of one ranking.
    top, _ = index.knn_query(data[:5], k=20, ef=200)
    page, _ = index.knn_query(data[:5], k=10, ef=200, offset=10)
    assert (page == top[:, 10:20]).all()
    # Range search returns what lies within the radius, nearest first.
    _, d = index.knn_query(data[0], k=50, ef=200)
    radius = float(d[0, 30])
    labels, distances = index.search_within(data[0], radius)
    assert len(labels) >= 29 and (distances <= radius).all() and (np.diff(distances) >= 0).all()
    tuned = index.tune(0.95, k=10)
    assert tuned["reached"] and tuned["recall"] >= 0.95 and index.ef == tuned["ef"]
    index.close()
    # Payloads and fields are durable.
    index = hnswdb.Index.open(str(tmp_path / "p"))
    assert index.get_payloads([0])[0] == payloads[0]
    assert index.explain({"lang": "xx"})["matching"] == 1
    index.create_field_index("n", "float")
    assert index.explain({"n": {"$gt": 1}})["matching"] == n - 1
    index.close()


@pytest.mark.parametrize("routing", ["rabitq", "rabitq:4"])
def test_rabitq_routing_under_a_memory_budget(tmp_path, routing):
    n = 4000
    data = clustered(n, seed=6)
    index = hnswdb.Index(space="l2", dim=DIM)
    index.init_index(max_elements=n, path=str(tmp_path / "r"), routing=routing)
    for start in range(0, n, 1000):  # checkpoints between chunks train the RaBitQ codes
        index.add_items(data[start:start + 1000], np.arange(start, start + 1000))
        index.flush()
    index.close()
    # Above what the index holds whatever it pins (~1.4 MiB with 2 threads).
    index = hnswdb.Index.open(str(tmp_path / "r"), memory_budget=4_000_000)
    assert index.stats()["routing"] == routing
    labels, _ = index.knn_query(data[:50], k=10, ef=100)
    truth, _ = brute_force(data, data[:50], 10, "l2")
    assert recall(labels, truth) >= 0.9
    index.close()


def test_routing_auto_plans_from_the_memory_budget(tmp_path):
    n = 3000
    data = clustered(n, seed=9)
    roomy = hnswdb.Index(space="l2", dim=DIM)
    roomy.init_index(max_elements=n, path=str(tmp_path / "roomy"), routing="auto", memory_budget=1 << 30)
    assert roomy.stats()["routing"] == "sq8"  # everything fits: the fastest walk
    roomy.close()
    # Above the ~1.4 MiB the index keeps whatever it pins, below what SQ8 needs.
    budget = 1_700_000
    tight = str(tmp_path / "tight")
    index = hnswdb.Index.open_or_create(tight, "l2", DIM, routing="auto", memory_budget=budget, expected=n)
    routing = index.stats()["routing"]
    assert routing.startswith("rabitq"), routing
    for start in range(0, n, 1000):  # checkpoints between chunks train the RaBitQ codes
        index.add_items(data[start:start + 1000], np.arange(start, start + 1000))
        index.flush()
    index.close()
    index = hnswdb.Index.open(tight, memory_budget=budget)
    assert "codes" in index.stats()["residency"]["resident"]  # the plan's codes fit
    labels, _ = index.knn_query(data[:50], k=10, ef=100)
    truth, _ = brute_force(data, data[:50], 10, "l2")
    assert recall(labels, truth) >= 0.9
    index.close()
    with pytest.raises(hnswdb.InvalidInputError, match="memory_budget"):
        hnswdb.Index(space="l2", dim=DIM).init_index(max_elements=n, path=str(tmp_path / "x"), routing="auto")
    with pytest.raises(hnswdb.InvalidInputError, match="expected"):
        hnswdb.Index.open_or_create(str(tmp_path / "y"), "l2", DIM, routing="auto", memory_budget=budget)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def to_bf16(x):
    """float32 rounded to bfloat16 (to nearest even, as the index stores it), as float32."""
    bits = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16 << 16
    return rounded.astype(np.uint32).view(np.float32)


def test_16_bit_storage_halves_the_vectors_and_keeps_recall(tmp_path):
    n = 3000
    data = clustered(n, seed=8)
    sizes = {}
    for storage in ("f32", "f16", "bf16"):
        index = hnswdb.Index(space="l2", dim=DIM)
        index.init_index(max_elements=n, path=str(tmp_path / storage), storage=storage)
        index.add_items(data, np.arange(n))
        labels, _ = index.knn_query(data[:50], k=10, ef=100)
        truth, _ = brute_force(data, data[:50], 10, "l2")
        assert recall(labels, truth) >= 0.9
        got = index.get_items([7])[0]
        want = {"f16": data[7].astype(np.float16).astype(np.float32), "bf16": to_bf16(data[7])}
        assert np.array_equal(got, want.get(storage, data[7]))
        assert index.stats()["storage"] == storage
        index.close()
        sizes[storage] = os.path.getsize(tmp_path / storage / "vectors")
    assert sizes["f16"] < 0.6 * sizes["f32"]
    assert sizes["bf16"] == sizes["f16"]
    with pytest.raises(ValueError):
        hnswdb.Index(space="l2", dim=DIM).init_index(max_elements=1, path=str(tmp_path / "x"), storage="f8")


def test_adding_nothing_is_nothing_on_both_kinds(tmp_path):
    # `[]` is a float array to numpy: the path kind refused it (TypeError) where
    # hnswlib's kind took it.
    for path in (None, str(tmp_path / "idx")):
        index = hnswdb.Index(space="l2", dim=DIM)
        if path is None:
            index.init_index(max_elements=10)
        else:
            index.init_index(max_elements=10, path=path)
        index.add_items(np.zeros((0, DIM), dtype=np.float32), [])
        assert index.get_current_count() == 0
