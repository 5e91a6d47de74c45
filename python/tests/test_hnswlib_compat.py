"""hnswdb.Index and hnswdb.BFIndex against hnswlib's behaviour (issue 24): snapshot files,
limits, tombstones, pickling, and each difference docs/python.md lists ("Coming from
hnswlib"). hnswlib's own tests run in hnswlib_upstream/."""

import gc
import hashlib
import os
import pickle
import threading

import numpy as np
import pytest

import hnswdb

DIM = 8


def vectors(n, seed=0):
    return np.random.default_rng(seed).random((n, DIM), dtype=np.float32)


def hnswlib_index(n=50, max_elements=100, **kwargs):
    index = hnswdb.Index(space="l2", dim=DIM)
    index.init_index(max_elements=max_elements, **kwargs)
    data = vectors(n)
    index.add_items(data)
    return index, data


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def tree_digest(directory):
    # Not the reader table: the read-only view that copies the index registers there (a
    # lock and its generation), which changes no data (docs/concurrency.md).
    return {
        os.path.relpath(os.path.join(root, name), directory): digest(os.path.join(root, name))
        for root, _, names in os.walk(directory)
        for name in names
        if name != "readers"
    }


# -- snapshot files ----------------------------------------------------------------------


def test_save_index_writes_one_file_replacing_it_atomically(tmp_path):
    index, data = hnswlib_index()
    target = tmp_path / "index.bin"
    target.write_bytes(b"an older file")
    index.save_index(str(target))
    assert target.is_file() and os.listdir(tmp_path) == ["index.bin"]  # nothing left beside it
    index.add_items(vectors(1, seed=9), [500])
    index.save_index(str(target))
    loaded = hnswdb.Index(space="l2", dim=DIM)
    loaded.load_index(str(target))
    assert loaded.get_current_count() == 51 and 500 in loaded
    os.remove(target)  # what hnswlib's tests do with a saved index


def test_load_index_never_modifies_the_snapshot(tmp_path):
    index, _ = hnswlib_index()
    index.mark_deleted(3)
    target = str(tmp_path / "index.bin")
    index.save_index(target)
    os.chmod(target, 0o444)  # a read-only snapshot loads too
    before = digest(target)
    loaded = hnswdb.Index(space="l2", dim=DIM)
    loaded.load_index(target)
    loaded.add_items(vectors(5, seed=1))
    loaded.mark_deleted(4)
    loaded.unmark_deleted(3)
    loaded.resize_index(1000)
    loaded.save_index(str(tmp_path / "other.bin"))
    del loaded
    gc.collect()
    assert digest(target) == before
    again = hnswdb.Index(space="l2", dim=DIM)
    again.load_index(target)
    assert again.get_current_count() == 50 and 3 not in again and 4 in again


def test_load_index_copies_an_hnswdb_directory(tmp_path):
    directory = str(tmp_path / "persistent")
    index = hnswdb.Index(space="l2", dim=DIM)
    index.init_index(max_elements=10, path=directory)
    index.add_items(vectors(20))
    index.close()
    before = tree_digest(directory)
    loaded = hnswdb.Index(space="l2", dim=DIM)
    loaded.load_index(directory)
    loaded.add_items(vectors(3, seed=2))
    loaded.mark_deleted(0)
    loaded.close()
    assert tree_digest(directory) == before


def test_temporary_index_goes_away_with_the_object():
    index, _ = hnswlib_index()
    temporary = str(index.path)
    assert os.path.isdir(temporary)
    del index
    gc.collect()
    assert not os.path.exists(temporary)
    closed, _ = hnswlib_index()
    temporary = str(closed.path)
    closed.close()
    assert not os.path.exists(temporary)


def test_load_index_replaces_the_index_already_there(tmp_path):
    small, _ = hnswlib_index(n=5)
    small.save_index(str(tmp_path / "small.bin"))
    index, _ = hnswlib_index(n=50)
    old = str(index.path)
    index.load_index(str(tmp_path / "small.bin"))
    assert index.get_current_count() == 5 and not os.path.exists(old)
    with pytest.raises(RuntimeError, match="already initiated"):
        index.init_index(max_elements=10)


def test_snapshot_errors(tmp_path):
    garbage = tmp_path / "hnswlib.bin"
    garbage.write_bytes(b"\0" * 4096)  # e.g. an index file hnswlib wrote
    with pytest.raises(hnswdb.CorruptError, match="not an hnswdb snapshot"):
        hnswdb.Index(space="l2", dim=DIM).load_index(str(garbage))
    with pytest.raises(RuntimeError) as missing:
        hnswdb.Index(space="l2", dim=DIM).load_index(str(tmp_path / "absent.bin"))
    assert isinstance(missing.value, FileNotFoundError)
    index, _ = hnswlib_index()
    with pytest.raises(hnswdb.IndexNotFoundError):  # hnswlib writes nothing, silently
        index.save_index(str(tmp_path / "no-such-dir" / "x.bin"))
    bf = hnswdb.BFIndex(space="l2", dim=DIM)
    bf.init_index(10)
    bf.save_index(str(tmp_path / "bf.bin"))
    with pytest.raises(hnswdb.CorruptError, match="BFIndex"):
        hnswdb.Index(space="l2", dim=DIM).load_index(str(tmp_path / "bf.bin"))
    # A snapshot cut short anywhere is damaged, not a tar error or a missing temp index
    # (an adversarial run saw tarfile.ReadError and IndexNotFoundError).
    index.save_index(str(tmp_path / "whole.bin"))
    whole = (tmp_path / "whole.bin").read_bytes()
    for size in [0, 10, 100, 512, 1024, 5000, len(whole) // 4, len(whole) // 2]:
        (tmp_path / "cut.bin").write_bytes(whole[:size])
        with pytest.raises(hnswdb.CorruptError):
            hnswdb.Index(space="l2", dim=DIM).load_index(str(tmp_path / "cut.bin"))


def test_load_index_refuses_another_space_or_dimension(tmp_path):
    index, _ = hnswlib_index()
    index.save_index(str(tmp_path / "l2.bin"))
    with pytest.raises(ValueError, match="holds a l2 index") as other_space:
        hnswdb.Index(space="ip", dim=DIM).load_index(str(tmp_path / "l2.bin"))
    assert isinstance(other_space.value, RuntimeError)
    with pytest.raises(RuntimeError, match="dimension 8"):
        hnswdb.Index(space="l2", dim=DIM + 1).load_index(str(tmp_path / "l2.bin"))


# -- pickling ----------------------------------------------------------------------------


def test_pickle_round_trips_state_and_tombstones():
    blank = hnswdb.Index(space="cosine", dim=DIM)
    blank.ef, blank.num_threads = 33, 3
    copy = pickle.loads(pickle.dumps(blank))
    assert (copy.ef, copy.num_threads, copy.space, copy.max_elements) == (33, 3, "cosine", 0)
    index, data = hnswlib_index(allow_replace_deleted=True)
    index.set_ef(77)
    index.mark_deleted(7)
    index.set_payload(8, {"tag": "x"})
    copy = pickle.loads(pickle.dumps(index))
    assert (copy.ef, copy.max_elements, copy.element_count) == (77, 100, 50)
    assert copy.get_payloads([8]) == [{"tag": "x"}]
    np.testing.assert_array_equal(copy.get_items(), index.get_items())
    with pytest.raises(RuntimeError, match="Can't use addPoint"):  # allow_replace_deleted kept
        copy.add_items(data[7], [7])
    copy.unmark_deleted(7)
    np.testing.assert_array_equal(copy.get_items([7])[0], data[7])


def test_pickled_persistent_index_becomes_a_private_copy(tmp_path):
    directory = str(tmp_path / "persistent")
    index = hnswdb.Index(space="l2", dim=DIM)
    index.init_index(max_elements=10, path=directory)
    index.add_items(vectors(20))
    copy = pickle.loads(pickle.dumps(index))
    copy.add_items(vectors(1, seed=3), [99])
    assert 99 not in index and copy.get_current_count() == 21
    assert os.path.dirname(str(copy.path)) != os.path.dirname(directory)


# -- tombstones, limits, ids -------------------------------------------------------------


def test_mark_and_unmark_deleted_as_hnswlib():
    index, data = hnswlib_index()
    index.mark_deleted(3)
    assert index.element_count == index.get_current_count() == 50  # a tombstone counts
    assert 3 in index.get_ids_list() and 3 not in index and len(index) == 49
    labels, _ = index.knn_query(data[3], k=5)
    assert 3 not in labels
    with pytest.raises(RuntimeError, match="not in the index"):  # hnswlib: "Label not found"
        index.get_items([3])
    with pytest.raises(RuntimeError, match="already deleted"):
        index.mark_deleted(3)
    with pytest.raises(RuntimeError, match="not deleted"):
        index.unmark_deleted(4)
    with pytest.raises(RuntimeError) as unknown:
        index.mark_deleted(1000)
    assert isinstance(unknown.value, KeyError)  # hnswdb's type, and hnswlib's RuntimeError
    index.unmark_deleted(3)
    assert index.knn_query(data[3], k=1)[0][0, 0] == 3


def test_adding_a_deleted_label_revives_it():
    index, data = hnswlib_index()
    index.mark_deleted(3)
    index.add_items(data[4], [3])
    np.testing.assert_array_equal(index.get_items([3])[0], data[4])
    assert index.element_count == 50


def test_max_elements_is_a_limit_that_resize_raises():
    index, _ = hnswlib_index(n=10, max_elements=10)
    assert index.get_max_elements() == index.max_elements == 10
    with pytest.raises(RuntimeError, match="exceeds the specified limit"):
        index.add_items(vectors(3, seed=1))
    assert index.get_current_count() == 10  # all or nothing (hnswlib adds up to the limit)
    index.add_items(vectors(1, seed=2), [0])  # replacing a vector adds no element
    with pytest.raises(RuntimeError, match="Cannot resize"):
        index.resize_index(9)
    index.resize_index(13)
    index.add_items(vectors(3, seed=1))
    assert index.get_current_count() == 13


def test_concurrent_writers_never_pass_the_limit():
    index = hnswdb.Index(space="l2", dim=DIM)
    index.init_index(max_elements=50)
    refused = []

    def add(thread):
        for i in range(10):
            try:
                index.add_items(vectors(1, seed=thread * 100 + i), [thread * 100 + i])
            except RuntimeError:
                refused.append(i)

    threads = [threading.Thread(target=add, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert index.get_current_count() == len(index) == 50 and len(refused) == 30


def test_replace_deleted_reuses_tombstones():
    index, _ = hnswlib_index(n=10, max_elements=10, allow_replace_deleted=True)
    for label in (2, 5):
        index.mark_deleted(label)
    with pytest.raises(RuntimeError, match="exceeds the specified limit"):
        index.add_items(vectors(2, seed=1), [20, 21])
    index.add_items(vectors(1, seed=1), [20], replace_deleted=True)  # takes the oldest
    assert sorted(index.get_ids_list()) == [0, 1, 3, 4, 5, 6, 7, 8, 9, 20]
    index.add_items(vectors(1, seed=2), [21], replace_deleted=True)
    assert sorted(index.get_ids_list()) == [0, 1, 3, 4, 6, 7, 8, 9, 20, 21]
    with pytest.raises(RuntimeError, match="not in the index"):
        index.unmark_deleted(2)
    plain, _ = hnswlib_index(n=10)
    with pytest.raises(RuntimeError, match="disabled in constructor"):
        plain.add_items(vectors(1), [30], replace_deleted=True)


def test_default_ids_continue_as_hnswlib(tmp_path):
    index, _ = hnswlib_index(n=10)
    index.add_items(vectors(2, seed=1), [100, 101])
    index.add_items(vectors(1, seed=2))  # hnswlib: rows added so far (12), not max id + 1
    assert 12 in index
    index.mark_deleted(12)
    index.save_index(str(tmp_path / "i.bin"))
    loaded = hnswdb.Index(space="l2", dim=DIM)
    loaded.load_index(str(tmp_path / "i.bin"))
    loaded.add_items(vectors(1, seed=3))  # after a load: the element count, tombstones too
    assert 13 in loaded


def test_get_items_forms():
    index, data = hnswlib_index(n=5)
    np.testing.assert_array_equal(index.get_items(), data)
    assert index.get_items([1], return_type="list") == [data[1].tolist()]
    with pytest.raises(ValueError, match="list of indices"):
        index.get_items(1)
    with pytest.raises(ValueError, match="return_type"):
        index.get_items([1], return_type="tuple")
    assert index.get_items([]).shape == (0, DIM)  # hnswlib: (0,)


def test_settings_before_init_and_counts_before_init():
    index = hnswdb.Index(space="l2", dim=DIM)
    assert (index.ef, index.M, index.ef_construction, index.max_elements) == (10, 0, 0, 0)
    assert index.get_current_count() == 0 and index.num_threads == os.cpu_count()
    index.set_ef(40)
    index.num_threads = 2
    index.init_index(max_elements=10, M=12, ef_construction=50)
    assert (index.ef, index.num_threads, index.M, index.ef_construction) == (40, 2, 12, 50)
    with pytest.raises(RuntimeError, match="not open"):  # hnswlib: a segmentation fault
        hnswdb.Index(space="l2", dim=DIM).knn_query(vectors(1))
    with pytest.raises(RuntimeError, match="not open"):
        hnswdb.Index(space="l2", dim=DIM).add_items(vectors(1))
    with pytest.raises(RuntimeError, match="not initiated"):
        hnswdb.BFIndex(space="l2", dim=DIM).knn_query(vectors(1))
    index.set_ef(0)
    assert index.ef == 1  # hnswlib: 0
    assert not hasattr(index, "index_file_size")


def test_k_zero_answers_empty_rows():
    index, data = hnswlib_index(n=5)
    labels, distances = index.knn_query(data[:2], k=0)
    assert labels.shape == distances.shape == (2, 0)


# -- input hnswlib accepts silently ------------------------------------------------------


def test_bad_input_is_a_typed_error():
    index, _ = hnswlib_index(n=5)
    row = vectors(1)
    with pytest.raises(RuntimeError, match="dimensionality") as wrong_dim:
        index.add_items(np.zeros((1, DIM + 1)))
    assert isinstance(wrong_dim.value, ValueError)
    with pytest.raises(ValueError, match="NaN"):
        index.add_items(np.full(DIM, np.nan))
    with pytest.raises(TypeError, match="integers"):  # hnswlib truncates 1.5 to 1
        index.add_items(row, [1.5])
    with pytest.raises(ValueError, match="non-negative"):  # hnswlib: OverflowError
        index.add_items(row, [-1])
    with pytest.raises(ValueError, match="named twice in one call"):  # hnswlib: either row wins
        index.add_items(vectors(2), [9, 9])
    cosine = hnswdb.Index(space="cosine", dim=DIM)
    cosine.init_index(max_elements=5)
    with pytest.raises(ValueError, match="all-zero"):
        cosine.add_items(np.zeros(DIM))
    with pytest.raises(RuntimeError, match="Space|metric"):
        hnswdb.Index(space="hamming", dim=DIM)


# -- hnswdb's own kind ---------------------------------------------------------------------


def test_an_index_opened_in_place_keeps_hnswdb_semantics(tmp_path):
    directory = str(tmp_path / "persistent")
    index = hnswdb.Index(space="l2", dim=DIM)
    index.init_index(max_elements=4, path=directory)
    index.add_items(vectors(10))  # no limit: the files grow
    index.mark_deleted(3)  # a real delete
    assert index.element_count == 9 and 3 not in index.get_ids_list()
    with pytest.raises(RuntimeError, match="deletes in place"):
        index.unmark_deleted(3)
    index.save_index(directory)  # its own directory: a checkpoint
    index.close()
    assert hnswdb.Index.open(directory).get_current_count() == 9


# -- BFIndex -------------------------------------------------------------------------------


@pytest.mark.parametrize("space", ["l2", "ip", "cosine"])
def test_bf_index_is_exact(space):
    data, queries = vectors(300), vectors(20, seed=1)
    bf = hnswdb.BFIndex(space=space, dim=DIM)
    bf.init_index(max_elements=300)
    bf.add_items(data)
    labels, distances = bf.knn_query(queries, k=5)
    if space == "cosine":
        data = data / np.linalg.norm(data, axis=1, keepdims=True)
        queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    if space == "l2":
        exact = ((queries[:, None, :] - data[None, :, :]) ** 2).sum(-1)
    else:
        exact = 1 - queries @ data.T
    np.testing.assert_array_equal(labels, np.argsort(exact, axis=1, kind="stable")[:, :5])
    np.testing.assert_allclose(distances, np.sort(exact, axis=1)[:, :5], atol=1e-5)


def test_bf_index_delete_filter_limit_and_snapshot(tmp_path):
    data = vectors(10)
    bf = hnswdb.BFIndex(space="l2", dim=DIM)
    bf.init_index(max_elements=10)
    bf.add_items(data)
    with pytest.raises(RuntimeError, match="exceeds the specified limit"):
        bf.add_items(vectors(1, seed=1))
    bf.delete_vector(4)
    assert bf.get_current_count() == 9 and bf.knn_query(data[4], k=9)[0].tolist()[0].count(4) == 0
    with pytest.raises(RuntimeError, match="not in the index"):  # hnswlib ignores it
        bf.delete_vector(4)
    calls = []
    labels, _ = bf.knn_query(data, k=1, filter=lambda label: calls.append(label) or label % 2 == 0)
    assert set(labels.ravel()) <= {0, 2, 6, 8}
    assert sorted(calls) == [0, 1, 2, 3, 5, 6, 7, 8, 9]  # once per label, not per query row
    with pytest.raises(RuntimeError, match="fewer than the k=10"):  # hnswlib: garbage rows
        bf.knn_query(data[0], k=10)
    bf.save_index(str(tmp_path / "bf.bin"))
    loaded = hnswdb.BFIndex(space="l2", dim=DIM)
    loaded.load_index(str(tmp_path / "bf.bin"), max_elements=20)
    assert (loaded.get_current_count(), loaded.get_max_elements()) == (9, 20)
    np.testing.assert_array_equal(loaded.knn_query(data, k=3)[0], bf.knn_query(data, k=3)[0])
