"""DiskANN's side of benches/compare/larger_than_ram.sh (run with the diskannpy virtualenv).

    python diskann_run.py build DATA_DIR INDEX_DIR [--degree 32] [--complexity 64]
    python diskann_run.py search INDEX_DIR QUERY.fvecs GT.ivecs --ls 16,32,64 [--beam 4]

`build` builds a disk index of base.fvecs (cosine, as the Debian set is unit length:
DiskANN's 'cosine' normalises, its 'l2' on unit vectors ranks the same); `search` opens it
with no node cache (cold, what memory the budget leaves is page cache) and runs every
query one at a time on one thread per search list size L, printing one JSON line each:
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
    # num_threads=1 hangs on open (an issue of diskannpy); 2 threads, one query at a time.
    index = diskannpy.StaticDiskIndex(index_directory=args.index, num_threads=2, num_nodes_to_cache=0,
                                      distance_metric=args.metric, vector_dtype=np.float32,
                                      dimensions=queries.shape[1])
    for L in [int(x) for x in args.ls.split(",")]:
        lat = []
        found = []
        start = time.perf_counter()
        for q in queries:
            t = time.perf_counter()
            ids, _ = index.search(q, k_neighbors=10, complexity=max(L, 10), beam_width=args.beam)
            lat.append(time.perf_counter() - t)
            found.append(ids)
        elapsed = time.perf_counter() - start
        recall = np.mean([len(set(map(int, f[:10])) & set(map(int, g[:10]))) / 10 for f, g in zip(found, gt)])
        lat = np.array(lat) * 1e6
        print(json.dumps({"L": L, "beam": args.beam, "recall": float(recall), "qps": len(queries) / elapsed,
                          "p50_us": float(np.percentile(lat, 50)), "p99_us": float(np.percentile(lat, 99))}),
              flush=True)


if __name__ == "__main__":
    main()
