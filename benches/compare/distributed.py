"""Sharded hnswdb on a local Ray cluster against one plain index, on a real dataset.

    python benches/compare/distributed.py DATASET_DIR [--shards 1,2,4] [--ef 64]

DATASET_DIR holds base.fvecs, query.fvecs, gt.ivecs (scripts/make_debian.py). For a
plain `hnswdb.Index` and for a `ShardedIndex` of each shard count (every shard on this
machine, 2 search threads in all: one shard gets 2, more shards 1 each) the script
measures:
  - build: vectors/s of loading the base set (plain: add_items in 5,000-row batches;
    sharded: add_batches of the same batches, every shard inserting at once);
  - batched queries: QPS of knn_query over all queries in one call (k 10, the same ef);
  - single queries: p50/p99 latency of knn_query with one query per call; the sharded
    minus the plain p50 is the fan-out overhead per query (Ray task round trips to every
    shard, the object store, the merge);
  - recall@10 against gt.ivecs.
Needs the package with Ray: `pip install ".[distributed]"`.
"""

import argparse
import os
import tempfile
import time

import numpy as np
import ray

import hnswdb
from hnswdb.distributed import ShardedIndex


def read_vecs(path, dtype):
    raw = np.fromfile(path, dtype=np.int32)
    dim = raw[0]
    rows = raw.reshape(-1, dim + 1)[:, 1:]
    return rows.view(dtype) if dtype == np.float32 else rows


def recall(labels, gt, k=10):
    return float(np.mean([len(set(l[:k].tolist()) & set(g[:k].tolist())) / k for l, g in zip(labels, gt)]))


def measure(name, add, query, base, queries, gt, ef, single):
    batches = [(base[s : s + 5000], np.arange(s, min(s + 5000, len(base)))) for s in range(0, len(base), 5000)]
    start = time.perf_counter()
    add(batches)
    build = time.perf_counter() - start
    query(queries[:100], ef)  # warm up
    start = time.perf_counter()
    labels, _ = query(queries, ef)
    batched = len(queries) / (time.perf_counter() - start)
    latencies = []
    for q in queries[:single]:
        start = time.perf_counter()
        query(q.reshape(1, -1), ef)
        latencies.append(time.perf_counter() - start)
    p50, p99 = np.percentile(latencies, [50, 99]) * 1000
    row = {
        "index": name,
        "build_vps": len(base) / build,
        "batched_qps": batched,
        "p50_ms": p50,
        "p99_ms": p99,
        "recall": recall(labels, gt),
    }
    print(
        f"| {name:<10} | {row['build_vps']:>9,.0f} | {batched:>10,.0f} | {p50:>6.2f} | {p99:>6.2f} | {row['recall']:.4f} |",
        flush=True,
    )
    return row


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("data")
    parser.add_argument("--shards", default="1,2,4")
    parser.add_argument("--ef", type=int, default=64)
    parser.add_argument("--single", type=int, default=300, help="queries timed one per call")
    parser.add_argument("--space", default="cosine")
    args = parser.parse_args()
    base = read_vecs(os.path.join(args.data, "base.fvecs"), np.float32)
    queries = read_vecs(os.path.join(args.data, "query.fvecs"), np.float32)
    gt = read_vecs(os.path.join(args.data, "gt.ivecs"), np.int32)
    dim = base.shape[1]
    cores = os.cpu_count()
    print(f"{len(base):,} x {dim}, {len(queries):,} queries, ef {args.ef}, k 10, {cores} cores")
    print("| index      | build v/s | batched QPS | p50 ms | p99 ms | recall@10 |")
    print("|------------|----------:|------------:|-------:|-------:|----------:|")
    rows = []
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as root:
        plain = hnswdb.Index(args.space, dim)
        plain.init_index(max_elements=len(base), M=16, ef_construction=200, path=os.path.join(root, "plain"))
        plain.set_num_threads(cores)

        def plain_add(batches):
            for vectors, ids in batches:
                plain.add_items(vectors, ids)

        rows.append(
            measure("plain", plain_add, lambda q, ef: plain.knn_query(q, k=10, ef=ef), base, queries, gt, args.ef, args.single)
        )
        plain.close()
        ray.init(num_cpus=max(8, cores), include_dashboard=False, log_to_driver=False)
        for shards in [int(s) for s in args.shards.split(",")]:
            # Threads per shard: the machine's cores split between the shards, at least 1.
            ix = ShardedIndex.create(
                f"s{shards}", dim, args.space, shards=shards, root=root, num_cpus=max(1, cores // shards)
            )
            rows.append(
                measure(
                    f"{shards} shard{'s' if shards > 1 else ''}",
                    ix.add_batches,
                    lambda q, ef: ix.knn_query(q, k=10, ef=ef),
                    base,
                    queries,
                    gt,
                    args.ef,
                    args.single,
                )
            )
            ix.close()
        ray.shutdown()
    p50 = {r["index"]: r["p50_ms"] for r in rows}
    for r in rows[1:]:
        print(f"fan-out overhead per query, {r['index']}: {r['p50_ms'] - p50['plain']:.2f} ms at p50")


if __name__ == "__main__":
    main()
