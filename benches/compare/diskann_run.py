"""DiskANN's side of benches/compare/larger_than_ram.sh (run with the diskannpy virtualenv).

    python diskann_run.py build DATA_DIR INDEX_DIR [--degree 32] [--complexity 64]
    python diskann_run.py search INDEX_DIR QUERY.fvecs GT.ivecs --ls 16,32,64 [--beam 4] [--threads 8]

`build` builds a disk index of base.fvecs (cosine, as the Debian set is unit length:
DiskANN's 'cosine' normalises, its 'l2' on unit vectors ranks the same); `search` opens it
with no node cache (cold, what memory the budget leaves is page cache) and runs every
query one at a time on one thread (or, with --threads, a batch_search on that many threads) per
search list size L, printing one JSON line each:
recall@10, QPS, p50/p99 latency in microseconds.
"""
import argparse
import json
import os
import time

import numpy as np


def vecs(path, dtype):
    a = np.fromfile(path, dtype=np.int32)
    d = a[0]
    return a.reshape(-1, d + 1)[:, 1:].view(dtype).copy()


def read_bytes():
    """Bytes this process has fetched from storage (/proc/self/io; O_DIRECT reads count)."""
    with open("/proc/self/io") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("read_bytes:"))


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("data")
    b.add_argument("index")
    b.add_argument("--degree", type=int, default=32)
    b.add_argument("--complexity", type=int, default=100)
    b.add_argument("--metric", default="l2")
    b.add_argument("--pq-bytes", type=int, default=72,
                   help="PQ bytes per vector kept in memory (hnswdb's RaBitQ code is 72 at 384-d)")
    s = sub.add_parser("search")
    s.add_argument("index")
    s.add_argument("query")
    s.add_argument("gt")
    s.add_argument("--ls", default="16,32,64,128")
    s.add_argument("--beam", type=int, default=4)
    s.add_argument("--metric", default="l2")
    s.add_argument("--threads", type=int, default=1,
                   help="queries in flight: each of this many threads searches one query at a time")
    args = p.parse_args()
    import diskannpy

    if args.cmd == "build":
        base = vecs(os.path.join(args.data, "base.fvecs"), np.float32)
        os.makedirs(args.index, exist_ok=True)
        start = time.perf_counter()
        diskannpy.build_disk_index(
            data=base, distance_metric=args.metric, index_directory=args.index,
            complexity=args.complexity, graph_degree=args.degree,
            # GB of PQ codes kept in memory: DiskANN sizes its codes from it.
            search_memory_maximum=args.pq_bytes * len(base) / 2**30,
            build_memory_maximum=4.0, num_threads=2, vector_dtype=np.float32)
        print(json.dumps({"build_seconds": time.perf_counter() - start}))
        return
    queries = vecs(args.query, np.float32)
    gt = vecs(args.gt, np.int32)
    # num_threads=1 hangs on open (an issue of diskannpy); it is also the number of
    # per-thread scratch spaces, so at least the threads that search at once.
    index = diskannpy.StaticDiskIndex(index_directory=args.index, num_threads=max(2, args.threads),
                                      num_nodes_to_cache=0,
                                      distance_metric=args.metric, vector_dtype=np.float32,
                                      dimensions=queries.shape[1])
    for L in [int(x) for x in args.ls.split(",")]:
        def one(q):
            t = time.perf_counter()
            ids, _ = index.search(q, k_neighbors=10, complexity=max(L, 10), beam_width=args.beam)
            return ids, time.perf_counter() - t

        before = read_bytes()
        start = time.perf_counter()
        if args.threads == 1:
            out = [one(q) for q in queries]
            found = [ids for ids, _ in out]
            lat = np.array([t for _, t in out]) * 1e6
        else:
            # diskannpy's search holds the GIL (threads calling it run one at a time), so
            # queries in flight go through batch_search, which reports no per-query latency.
            found = index.batch_search(queries, k_neighbors=10, complexity=max(L, 10), num_threads=args.threads,
                                       beam_width=args.beam)[0]
            lat = None
        elapsed = time.perf_counter() - start
        read_per_query = (read_bytes() - before) / len(queries)
        recall = np.mean([len(set(map(int, f[:10])) & set(map(int, g[:10]))) / 10 for f, g in zip(found, gt)])
        pct = {} if lat is None else {"p50_us": float(np.percentile(lat, 50)), "p99_us": float(np.percentile(lat, 99))}
        print(json.dumps({"L": L, "beam": args.beam, "threads": args.threads, "recall": float(recall),
                          "qps": len(queries) / elapsed, "read_bytes_per_query": read_per_query, **pct}),
              flush=True)

if __name__ == "__main__":
    main()
