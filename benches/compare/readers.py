"""Reader processes beside a writer, measured with the real binaries on a real dataset.

    python3 benches/compare/readers.py DATASET_DIR [--seconds 8]

DATASET_DIR holds base.fvecs, query.fvecs, gt.ivecs (scripts/make_debian.py). The
script builds an index with the CLI, then:
  - runs 1, 2 and 4 reader processes (`hnswdb search --query`, 1 thread each, ef 64,
    read-only opens) beside an idle writer and beside a busy one (a Python process that
    upserts 1,000-vector batches of random vectors under ids of its own in a loop, through
    the binding), and reports the readers' summed QPS and recall;
  - times the busy writer's upserts alone and beside 4 readers.
Every process takes a CPU: on a machine with fewer cores than processes the figures
measure how the cores are shared as much as any contention between readers and writer.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
CLI = os.environ.get("HNSWDB_CLI", os.path.join(ROOT, "target", "release", "hnswdb"))

WRITER = r'''
import sys, time, json, numpy as np, hnswdb
path, dim, seconds, out = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
index = hnswdb.Index.open(path)
rng = np.random.default_rng(0)
done, start = 0, time.time()
while time.time() - start < seconds:
    # Ids outside the dataset's: the base vectors (and so the ground truth) stay as they
    # are, while the writer inserts, then keeps replacing, 50,000 vectors of its own.
    ids = np.unique(rng.integers(10**7, 10**7 + 50_000, size=1000, dtype=np.uint64))
    index.add_items(rng.normal(size=(len(ids), dim)).astype(np.float32), ids)
    done += len(ids)
elapsed = time.time() - start
index.close()
open(out, "w").write('{"upserts": %d, "seconds": %f}' % (done, elapsed))
'''


def readers(index, data, n, seconds):
    """Starts `n` reader processes that each search the query file for `seconds`."""
    procs = []
    for _ in range(n):
        procs.append(subprocess.Popen(
            [CLI, "--json", "search", index, "--query", os.path.join(data, "query.fvecs"),
             "--gt", os.path.join(data, "gt.ivecs"), "--k", "10", "--ef",
             ",".join(["64"] * max(1, int(seconds * 4))), "--threads", "1", "--warmup", "1"],
            stdout=subprocess.PIPE, text=True))
    return procs


def collect(procs):
    if not procs:
        return 0.0, float("nan")
    qps, recall = 0.0, []
    for p in procs:
        out, _ = p.communicate()
        assert p.returncode == 0, out
        rows = [json.loads(l) for l in out.splitlines()]
        qps += float(np.median([r["qps"] for r in rows]))
        recall.append(rows[0]["recall"])
    return qps, float(np.mean(recall))


def writer(index, dim, seconds, python):
    out = tempfile.mktemp()
    proc = subprocess.Popen([python, "-c", WRITER, index, str(dim), str(seconds), out])
    return proc, out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("data")
    p.add_argument("--seconds", type=float, default=8)
    p.add_argument("--python", default=sys.executable)
    args = p.parse_args()
    dim = int(np.fromfile(os.path.join(args.data, "query.fvecs"), dtype=np.int32, count=1)[0])
    work = tempfile.mkdtemp()
    index = os.path.join(work, "idx")
    subprocess.run([CLI, "create", index, "--dim", str(dim), "--metric", "cosine"], check=True,
                   stdout=subprocess.DEVNULL)
    subprocess.run([CLI, "import", index, os.path.join(args.data, "base.fvecs")], check=True,
                   stdout=subprocess.DEVNULL)
    print(f"index: {args.data} ({dim}-d), {os.cpu_count()} cores, {args.seconds:.0f} s per run")
    print("| readers | writer | readers' QPS (sum) | recall@10 |")
    print("|---:|---|---:|---:|")
    for busy in (False, True):
        for n in (1, 2, 4):
            w = writer(index, dim, args.seconds + 2, args.python) if busy else None
            qps, recall = collect(readers(index, args.data, n, args.seconds))
            if w:
                w[0].wait()
            print(f"| {n} | {'busy' if busy else 'idle'} | {qps:,.0f} | {recall:.4f} |")
    print()
    print("| readers beside the writer | upserts/s |")
    print("|---:|---:|")
    for n in (0, 4):
        procs = readers(index, args.data, n, args.seconds + 2)
        proc, out = writer(index, dim, args.seconds, args.python)
        proc.wait()
        collect(procs)
        r = json.load(open(out))
        print(f"| {n} | {r['upserts'] / r['seconds']:,.0f} |")


if __name__ == "__main__":
    main()
