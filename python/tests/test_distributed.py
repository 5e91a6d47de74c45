"""hnswdb.distributed on a local Ray cluster that the tests start themselves."""

import os
import signal
import threading

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'hnswdb[distributed]')")

import hnswdb  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    try:
        # Logical CPUs: the actors mostly wait; 2 physical cores run them all.
        ray.init(num_cpus=8, include_dashboard=False, log_to_driver=False)
    except Exception as e:  # pragma: no cover - depends on the machine
        pytest.skip(f"a local Ray cluster could not start here: {e}")
    from hnswdb import distributed

    yield distributed
    ray.shutdown()


def brute_force(base, ids, queries, k):
    d = ((queries[:, None, :] - base[None, :, :]) ** 2).sum(axis=2)
    order = np.argsort(d, axis=1, kind="stable")[:, :k]
    return ids[order], np.take_along_axis(d, order, axis=1)


def data(n, dim, seed):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, dim)).astype(np.float32)


def test_router_is_splitmix64_and_pinned(cluster):
    def splitmix64(x):
        m = 2**64 - 1
        z = (x + 0x9E3779B97F4A7C15) & m
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & m
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & m
        return z ^ (z >> 31)

    ids = [0, 1, 2, 41, 2**32, 2**63 + 5, 2**64 - 1]
    for shards in (1, 2, 3, 7, 64):
        expected = [splitmix64(i) % shards for i in ids]
        assert cluster.shard_of(ids, shards).tolist() == expected
    # Pinned: these shards are where existing indexes keep these ids.
    assert cluster.shard_of(ids, 7).tolist() == [splitmix64(i) % 7 for i in ids]
    assert cluster.shard_of(range(12), 4).tolist() == [splitmix64(i) % 4 for i in range(12)]


def test_merge_is_exact_and_routing_holds(cluster, tmp_path):
    dim, n = 12, 3000
    base = data(n, dim, 1)
    ids = np.arange(10_000, 10_000 + n, dtype=np.uint64) * 7  # sparse ids
    queries = data(50, dim, 2)
    with cluster.ShardedIndex.create("m", dim, "l2", shards=3, root=str(tmp_path), num_cpus=0.5) as ix:
        ix.add_items(base[:1000], ids[:1000])
        ix.add_items(base[1000:], ids[1000:])
        assert len(ix) == n
        # Every id sits on the shard the router names, and nowhere else.
        for s in range(3):
            held = ray.get(ix.actor(s).ids.remote())
            assert (cluster.shard_of(held, 3) == s).all()
        assert sorted(ix.get_ids_list()) == sorted(ids.tolist())
        labels, distances = ix.knn_query(queries, k=10, ef=n)
        exact_labels, exact_distances = brute_force(base, ids, queries, 10)
        assert (labels == exact_labels).all()
        np.testing.assert_allclose(distances, exact_distances, rtol=1e-4, atol=1e-4)
        # The vectors come back in the order asked, from their shards.
        pick = ids[[5, 2999, 17, 1500]]
        np.testing.assert_array_equal(ix.get_items(pick), base[[5, 2999, 17, 1500]])
        with pytest.raises(KeyError):
            ix.get_items([1])
        with pytest.raises(ValueError):
            ix.add_items(base[:2, :5], [1, 2])
        with pytest.raises(ValueError):
            ix.add_items(np.full((1, dim), np.nan), [1])


def test_one_shard_answers_as_a_plain_index(cluster, tmp_path):
    dim, n = 16, 2000
    base = data(n, dim, 3)
    queries = data(100, dim, 4)
    plain = hnswdb.Index("cosine", dim)
    plain.init_index(max_elements=n, M=8, ef_construction=50, path=str(tmp_path / "plain"))
    plain.set_num_threads(1)
    with cluster.ShardedIndex.create(
        "one", dim, "cosine", shards=1, root=str(tmp_path), M=8, ef_construction=50, num_cpus=1
    ) as ix:
        for start in range(0, n, 500):
            plain.add_items(base[start : start + 500], np.arange(start, start + 500))
            ix.add_items(base[start : start + 500], np.arange(start, start + 500))
        # A small ef, so that equal answers mean an equal graph, not just exact search.
        want = plain.knn_query(queries, k=10, ef=12)
        got = ix.knn_query(queries, k=10, ef=12)
        assert (got[0] == want[0]).all()
        np.testing.assert_array_equal(got[1], want[1])


def test_deletes_and_reopen(cluster, tmp_path):
    dim, n = 8, 600
    base = data(n, dim, 5)
    ix = cluster.ShardedIndex.create("d", dim, "l2", shards=2, root=str(tmp_path), num_cpus=0.5)
    ix.add_items(base, np.arange(n))
    assert ix.delete([3, 4, 5, 10_000]) == 3
    assert ix.delete([3]) == 0
    assert 3 not in ix and 6 in ix
    ix.close()
    ix = cluster.ShardedIndex.open("d", root=str(tmp_path), num_cpus=0.5)
    assert len(ix) == n - 3
    keep = np.setdiff1d(np.arange(n), [3, 4, 5])
    labels, _ = ix.knn_query(base, k=1, ef=200, strict=False)
    assert (labels[keep, 0] == keep).all()
    # A shard needs at least k of its own: fewer than k overall raises unless strict=False.
    with pytest.raises(RuntimeError):
        ix.knn_query(base[:1], k=n)
    labels, distances = ix.knn_query(base[:1], k=n, ef=n, strict=False)
    assert (labels[0] == cluster.MISSING_LABEL).sum() == 3 and np.isinf(distances[0, -3:]).all()
    with pytest.raises(FileExistsError):
        cluster.ShardedIndex.create("d", dim, "l2", shards=2, root=str(tmp_path))
    ix.close()


def test_replicas_spread_reads_and_agree(cluster, tmp_path):
    dim, n = 8, 800
    base = data(n, dim, 6)
    with cluster.ShardedIndex.create(
        "r", dim, "l2", shards=2, replicas=2, root=str(tmp_path), num_cpus=0.25
    ) as ix:
        ix.add_items(base, np.arange(n))
        for row in range(2):
            counts = ray.get([ix.actor(s, row).count.remote() for s in range(2)])
            assert sum(counts) == n  # each replica row holds a whole copy
        first = ix.knn_query(base[:40], k=5, ef=100)
        for _ in range(3):
            again = ix.knn_query(base[:40], k=5, ef=100)
            assert (again[0] == first[0]).all()
        served = [info["queries"] for info in ix.shard_info()]
        assert all(q > 0 for q in served), served


def test_ray_dataset_bulk_load(cluster, tmp_path):
    dim, n = 8, 5000
    base = data(n, dim, 7)
    ds = ray.data.from_items([{"id": i, "vector": base[i]} for i in range(n)])
    with cluster.ShardedIndex.create("b", dim, "l2", shards=2, root=str(tmp_path), num_cpus=0.5) as ix:
        assert ix.add_batches(ds, batch_size=700) == n
        assert len(ix) == n
        np.testing.assert_array_equal(ix.get_items([0, 4999, 1234]), base[[0, 4999, 1234]])


def test_killed_actor_restarts_and_loses_nothing_acknowledged(cluster, tmp_path):
    dim, batch = 8, 200
    rng = np.random.default_rng(8)
    with cluster.ShardedIndex.create("k", dim, "l2", shards=2, root=str(tmp_path), num_cpus=0.5) as ix:
        acknowledged = {}
        stop = threading.Event()
        progress = threading.Condition()
        errors = []

        def writer():
            start = 0
            while not stop.is_set():
                vectors = rng.standard_normal((batch, dim)).astype(np.float32)
                ids = np.arange(start, start + batch)
                try:
                    ix.add_items(vectors, ids)
                except Exception as e:  # noqa: BLE001 - reported below
                    errors.append(e)
                    return
                with progress:
                    acknowledged.update(zip(ids.tolist(), vectors))
                    progress.notify_all()
                start += batch

        def acknowledged_beyond(count):
            # Kills follow writes, not the clock: each waits for a batch acknowledged
            # since the last one, so that every restart is written through whatever the
            # machine's speed (the timeout only stops a hang).
            with progress:
                assert progress.wait_for(
                    lambda: len(acknowledged) > count or errors, timeout=300
                ), "no write was acknowledged after a restart"
                return len(acknowledged)

        thread = threading.Thread(target=writer)
        thread.start()
        pids = set()
        seen = 0
        for round in range(4):
            seen = acknowledged_beyond(seen)
            victim = round % 2
            pid = ray.get(ix.actor(victim).info.remote())["pid"]
            pids.add(pid)
            os.kill(pid, signal.SIGKILL)  # mid-write, most likely
        acknowledged_beyond(seen)
        stop.set()
        thread.join(timeout=120)
        assert not thread.is_alive()
        assert not errors, errors  # calls in flight were retried after each restart
        after = {info["pid"] for info in ix.shard_info()}
        assert not (after & pids)  # both actors are new processes
        ids = np.array(sorted(acknowledged))
        np.testing.assert_array_equal(ix.get_items(ids), np.stack([acknowledged[i] for i in ids]))
        assert len(ix) == len(acknowledged)


def test_reshard_copies_every_vector(cluster, tmp_path):
    dim, n = 8, 900
    base = data(n, dim, 9)
    ids = np.arange(n) * 3 + 1
    with cluster.ShardedIndex.create("from", dim, "l2", shards=2, root=str(tmp_path), num_cpus=0.5) as ix:
        ix.add_items(base, ids)
        with ix.reshard("to", shards=3, batch=250, num_cpus=0.5) as wider:
            assert wider.shards == 3 and len(wider) == n and len(ix) == n
            for s in range(3):
                held = ray.get(wider.actor(s).ids.remote())
                assert (cluster.shard_of(held, 3) == s).all()
            np.testing.assert_array_equal(wider.get_items(ids), base)


def test_payloads_and_dict_filters_pass_through(cluster, tmp_path):
    dim, n = 8, 1200
    base = data(n, dim, 10)
    payloads = [{"group": i % 10, "tag": "a" if i % 2 else "b"} for i in range(n)]
    with cluster.ShardedIndex.create(
        "p", dim, "l2", shards=3, root=str(tmp_path), num_cpus=0.5, fields={"group": "int", "tag": "keyword"}
    ) as ix:
        ix.add_items(base, np.arange(n), payloads=payloads)
        assert ix.get_payloads([5, 1100]) == [payloads[5], payloads[1100]]
        flt = {"group": {"$lt": 3}, "tag": "a"}
        labels, distances = ix.knn_query(base[:10], k=5, ef=400, filter=flt)
        ok = np.array([p["group"] < 3 and p["tag"] == "a" for p in payloads])
        exact_labels, _ = brute_force(base[ok], np.flatnonzero(ok).astype(np.uint64), base[:10], 5)
        assert (labels == exact_labels).all()
        ix.set_payloads([1], [{"group": 0, "tag": "a"}])
        assert ix.get_payloads([1]) == [{"group": 0, "tag": "a"}]
