"""Python parity with the CLI and Rust: compact, verify, stats, backup, follow,
open_or_create, progress hooks, and pandas / Arrow input."""

import threading
import warnings

import numpy as np
import pytest

import hnswdb

DIM = 8


def vectors(n, seed=0, dim=DIM):
    return np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "idx")


def made(path, n=300, space="l2"):
    index = hnswdb.Index.open_or_create(path, space, DIM)
    if n:
        index.add_items(vectors(n), np.arange(n))
    return index


class Recorder:
    def __init__(self):
        self.calls = []
        self.lock = threading.Lock()

    def __call__(self, done, total):
        with self.lock:
            self.calls.append((done, total))

    def check(self, total):
        """Called at the start and the end, in order, with one total."""
        assert self.calls[0] == (0, total), self.calls[:3]
        assert self.calls[-1] == (total, total), self.calls[-3:]
        assert all(a[0] <= b[0] for a, b in zip(self.calls, self.calls[1:])), self.calls
        assert {t for _, t in self.calls} == {total}


# -- open_or_create -----------------------------------------------------------------------


def test_open_or_create_creates_then_opens_the_same_index(path):
    with hnswdb.Index.open_or_create(path, "cosine", DIM, M=8, fields={"lang": "keyword"}) as index:
        index.add_items(vectors(10), np.arange(10))
        assert (index.space, index.dim, index.M) == ("cosine", DIM, 8)
    with hnswdb.Index.open_or_create(path) as index:  # space and dim come from the files
        assert len(index) == 10 and index.fields == {"lang": "keyword"}
    with hnswdb.Index.open_or_create(path, "cosine", DIM, M=32) as index:  # settings of a new index only
        assert index.M == 8


def test_open_or_create_refuses_a_mismatch_and_needs_space_and_dim_to_create(path):
    made(path, 5).close()
    with pytest.raises(hnswdb.InvalidInputError, match="space"):
        hnswdb.Index.open_or_create(path, "ip", DIM)
    with pytest.raises(hnswdb.InvalidInputError, match="dim"):
        hnswdb.Index.open_or_create(path, "l2", DIM + 1)
    with pytest.raises(hnswdb.InvalidInputError, match="space and dim"):
        hnswdb.Index.open_or_create(path + "-new")
    # The mismatch closed what it opened: the index opens for writing again.
    with hnswdb.Index.open_or_create(path, "l2", DIM) as index:
        assert len(index) == 5


def test_open_or_create_read_only_and_memory_budget(path):
    with pytest.raises(hnswdb.IndexNotFoundError):
        hnswdb.Index.open_or_create(path, "l2", DIM, read_only=True)
    with hnswdb.Index.open_or_create(path, "l2", DIM, memory_budget=1 << 30) as index:
        assert index.stats()["residency"]["budget"] == 1 << 30
        index.add_items(vectors(3))
    with hnswdb.Index.open_or_create(path, read_only=True) as view:
        assert view.read_only and len(view) == 3


def test_open_or_create_takes_int_ids(path):
    with hnswdb.Index.open_or_create(path, "l2", DIM, ids="int") as index:
        index.add_items(vectors(2), [4, 5])
    with hnswdb.Index.open_or_create(path, ids="int") as index:
        assert sorted(index.get_ids_list()) == [4, 5]


def test_concurrent_open_or_create_gives_one_index(path):
    errors, opened = [], []

    def create():
        try:
            index = hnswdb.Index.open_or_create(path, "l2", DIM, durable=False)
            opened.append(index)
        except Exception as e:  # the loser of the writer lock may get LockedError
            errors.append(e)

    threads = [threading.Thread(target=create) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert opened and all(isinstance(e, hnswdb.LockedError) for e in errors), errors
    for index in opened:
        index.close()


# -- stats, verify, compact, backup ---------------------------------------------------------


def test_stats_has_every_field_of_the_rust_stats(path):
    with made(path, 50) as index:
        stats = index.stats()
    assert set(stats) == {
        "len", "capacity", "high_water", "free_slots", "held_slots", "tombstones", "upper_nodes",
        "max_level", "dim", "metric", "M", "ef_construction", "kernels", "wal_bytes",
        "codes_generation", "misfits", "routing", "storage", "ids", "residency",
    }
    assert (stats["len"], stats["dim"], stats["metric"], stats["M"]) == (50, DIM, "l2", 16)
    assert (stats["routing"], stats["storage"], stats["residency"]) == ("sq8", "f32", None)
    assert stats["ids"] == "int"


def test_verify_reports_a_sound_index(path):
    with made(path, 50) as index:
        index.delete_items(np.arange(10))
        report = index.verify()
    assert report["ok"] and report["problems"] == []
    assert report["live"] == 40 and report["tombstones"] + report["free"] == 10


def test_compact_keeps_the_object_working_with_its_settings(path):
    index = made(path, 400)
    index.delete_items(np.arange(300))
    index.set_ef(77)
    before = index.knn_query(vectors(5, seed=3), k=5)
    progress = Recorder()
    report = index.compact(progress=progress)
    assert report["live"] == 100 and report["bytes_after"] < report["bytes_before"]
    progress.check(100)
    # The same object, now on the compacted files.
    assert len(index) == 100 and index.ef == 77 and index.stats()["high_water"] == 100
    after = index.knn_query(vectors(5, seed=3), k=5)
    np.testing.assert_array_equal(before[0], after[0])
    index.add_items(vectors(1, seed=4), [1000])
    assert 1000 in index and index.verify()["ok"]
    index.close()
    with hnswdb.Index.open(path) as reopened:
        assert len(reopened) == 101


def test_compact_by_relocation_keeps_the_graph_and_the_object_working(path):
    index = made(path, 400)
    index.delete_items(np.arange(0, 400, 2))
    queries = vectors(5, seed=3)
    before = index.knn_query(queries, k=5)
    report = index.compact(relocate=True)
    assert report["live"] == 200 and report["bytes_after"] < report["bytes_before"]
    assert len(index) == 200 and index.stats()["high_water"] == 200
    # The same graph, renumbered: the same answers.
    after = index.knn_query(queries, k=5)
    np.testing.assert_array_equal(before[0], after[0])
    index.add_items(vectors(1, seed=4), [1000])
    assert 1000 in index and 0 not in index and index.verify()["ok"]
    index.close()
    with hnswdb.Index.open(path) as reopened:
        assert len(reopened) == 201


def test_compact_is_refused_while_another_thread_uses_the_index(path):
    index = made(path, 20)
    engine = index._engine
    started, release = threading.Event(), threading.Event()

    def slow(done, total):
        started.set()
        release.wait(10)

    worker = threading.Thread(target=lambda: engine.add_items(vectors(5, seed=1), np.arange(100, 105), progress=slow))
    worker.start()
    assert started.wait(10)
    with pytest.raises(hnswdb.HnswdbError, match="in use"):
        index.compact()
    release.set()
    worker.join()
    assert len(index) == 25  # still open, nothing lost
    assert index.compact()["live"] == 25
    index.close()


def test_compact_of_a_read_only_view_fails_and_the_view_stays_open(path):
    made(path, 20).close()
    with hnswdb.Index.open(path, read_only=True) as view:
        with pytest.raises(hnswdb.HnswdbError):
            view.compact()
        assert len(view) == 20


def test_backup_with_progress(path, tmp_path):
    with made(path, 200) as index:
        progress = Recorder()
        copied = index.backup(str(tmp_path / "copy"), progress=progress)
    total = progress.calls[-1][1]
    progress.check(total)
    assert copied > 0 and total > 0
    with hnswdb.Index.open(str(tmp_path / "copy")) as copy:
        assert len(copy) == 200 and copy.verify()["ok"]


# -- progress -----------------------------------------------------------------------------


def test_add_items_reports_progress_in_order(path):
    with made(path, 0) as index:
        progress = Recorder()
        index.add_items(vectors(3000, seed=2), progress=progress, num_threads=2)
        progress.check(3000)
        assert len(progress.calls) <= 102
        # Replacing present ids (an upsert) reports too; so does an empty batch.
        progress = Recorder()
        index.add_items(vectors(10, seed=5), np.arange(10), progress=progress)
        progress.check(10)
        progress = Recorder()
        index.add_items(np.zeros((0, DIM), np.float32), progress=progress)
        assert progress.calls == [(0, 0)]


def test_hnswlib_kind_reports_progress_too():
    index = hnswdb.Index("l2", DIM)
    index.init_index(max_elements=100)
    progress = Recorder()
    index.add_items(vectors(50), progress=progress)
    progress.check(50)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_failing_callback_does_not_fail_the_write(path):
    def broken(done, total):
        raise ValueError("a bug in the callback")

    with made(path, 0) as index:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            index.add_items(vectors(20), progress=broken)
        assert len(index) == 20


def test_bad_progress_is_a_type_error(path):
    with made(path, 0) as index:
        with pytest.raises(TypeError, match="progress"):
            index.add_items(vectors(2), progress=42)
        assert len(index) == 0


def test_progress_true_and_a_tqdm_bar(path):
    tqdm = pytest.importorskip("tqdm")
    with made(path, 0) as index:
        index.add_items(vectors(500), progress=True)
        bar = tqdm.tqdm(disable=False)
        index.add_items(vectors(300, seed=1), progress=bar)
        assert (bar.n, bar.total) == (300, 300)
        bar.close()
        assert len(index) == 800


# -- follow -------------------------------------------------------------------------------


def test_follow_yields_after_each_change_and_ends_when_closed(path):
    writer = made(path, 10)
    view = hnswdb.Index.open(path, read_only=True)
    seen = []

    def watch():
        for change in view.follow(interval=0.01):
            seen.append(change["count"])

    watcher = threading.Thread(target=watch)
    watcher.start()
    for i in range(3):
        writer.add_items(vectors(5, seed=10 + i), np.arange(100 + 5 * i, 105 + 5 * i))
        deadline = threading.Event()
        for _ in range(500):
            if seen and seen[-1] == 15 + 5 * i:
                break
            deadline.wait(0.01)
    assert seen and seen[-1] == 25 and seen == sorted(seen), seen
    view.close()
    watcher.join(10)
    assert not watcher.is_alive()
    writer.close()


def test_follow_needs_a_read_only_view(path):
    with made(path, 1) as index:
        with pytest.raises(hnswdb.HnswdbError, match="read_only"):
            next(index.follow())


# -- pandas and Arrow ---------------------------------------------------------------------


def test_arrow_fixed_size_list_list_and_chunked(path):
    pa = pytest.importorskip("pyarrow")
    data = vectors(30)
    fixed = pa.FixedSizeListArray.from_arrays(pa.array(data.reshape(-1)), DIM)
    listed = pa.array(list(data), type=pa.list_(pa.float32()))
    chunked = pa.chunked_array([fixed[:10], fixed[10:]])
    with made(path, 0) as index:
        index.add_items(fixed, np.arange(30))
        np.testing.assert_array_equal(index.get_items(np.arange(30)), data)
        index.add_items(listed[5:15], np.arange(100, 110))  # a slice: offsets honoured
        np.testing.assert_array_equal(index.get_items(np.arange(100, 110)), data[5:15])
        labels, _ = index.knn_query(chunked, k=1)
        np.testing.assert_array_equal(labels[:, 0][:5], np.arange(5))
        assert labels.shape == (30, 1)


def test_arrow_refuses_ragged_null_and_non_numeric(path):
    pa = pytest.importorskip("pyarrow")
    with made(path, 0) as index:
        with pytest.raises(hnswdb.InvalidInputError, match="row 1"):
            index.add_items(pa.array([[1.0] * DIM, [1.0] * (DIM - 1)]))
        with pytest.raises(hnswdb.InvalidInputError, match="row 1 .* null"):
            index.add_items(pa.array([[1.0] * DIM, None], type=pa.list_(pa.float32())))
        with pytest.raises(hnswdb.InvalidInputError, match="null component"):
            index.add_items(pa.array([[1.0] * (DIM - 1) + [None]], type=pa.list_(pa.float32())))
        with pytest.raises(hnswdb.InvalidInputError, match="not vectors"):
            index.add_items(pa.array(["a", "b"]))
        assert len(index) == 0


def test_pandas_series_and_dataframe(path):
    pd = pytest.importorskip("pandas")
    data = vectors(20)
    with made(path, 0) as index:
        index.add_items(pd.Series(list(data)), np.arange(20))
        np.testing.assert_array_equal(index.get_items(np.arange(20)), data)
        frame = pd.DataFrame(data[:5].astype(np.float64), columns=[f"c{i}" for i in range(DIM)])
        labels, _ = index.knn_query(frame, k=1)
        np.testing.assert_array_equal(labels[:, 0], np.arange(5))
        labels, _ = index.knn_query(pd.Series(data[3]), k=1)  # one vector, a row per component
        assert labels[0, 0] == 3
        with pytest.raises(hnswdb.InvalidInputError, match="column 'name'"):
            index.add_items(frame.assign(name="x"))
        with pytest.raises(hnswdb.InvalidInputError, match="row 1"):
            index.add_items(pd.Series([data[0], None]))
        with pytest.raises(hnswdb.InvalidInputError, match="differ in length"):
            index.add_items(pd.Series([data[0], data[1][:3]]))
        assert len(index) == 20


def test_pandas_series_of_arrow_lists(path):
    pd = pytest.importorskip("pandas")
    pa = pytest.importorskip("pyarrow")
    data = vectors(6)
    series = pd.Series(list(data), dtype=pd.ArrowDtype(pa.list_(pa.float32())))
    with made(path, 0) as index:
        index.add_items(series, np.arange(6))
        np.testing.assert_array_equal(index.get_items(np.arange(6)), data)
