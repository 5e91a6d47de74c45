#!/usr/bin/env python3
"""hnswdb against DiskANN with the same memory, cold, on an index larger than it.

    python3 benches/compare/larger_than_ram.py DATA_DIR --budget-mib 9 [--queries 300]
        [--metric cosine] [--work target/ltr-NAME] [--diskann-python target/diskann-venv/bin/python]

DATA_DIR holds base.fvecs, query.fvecs, gt.ivecs (scripts/make_debian.py, or
`hnswdb synth`). Builds, once, in --work: hnswdb with SQ8 routing (M 16: the index as it
was before this benchmark existed), hnswdb with RaBitQ routing (M 8 and M 16), and a
DiskANN disk index (R 32, L 100, PQ codes in memory; `benches/compare/diskann_run.py`
in DiskANN's own virtualenv: `python3 -m venv target/diskann-venv &&
target/diskann-venv/bin/pip install diskannpy`). Then every query process runs under
`../shared/tools/memlimit` (root only) with the budget plus its own baseline (the peak of
the same program doing nothing: `hnswdb --version`, `python -c "import diskannpy"`),
from a cold cache (files evicted first), one query thread, one query at a time (or
--threads in flight):
  - hnswdb SQ8, no budget given (the kernel decides: how it ran before);
  - hnswdb RaBitQ (M 8 and 16, and M 8 with f16 vectors) with `--memory-budget` = the budget (routing codes, then layer-0 lists
    pinned while they fit; re-ranks read vectors from disk directly, in batches);
  - DiskANN, no node cache, beam width 4.
Prints one row per sweep point (recall@10, QPS, p50/p99) and, per method, the fastest
point at recall >= 0.95.
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HNSWDB = os.path.join(ROOT, "target", "release", "hnswdb")
MEMLIMIT = os.path.join(ROOT, "..", "shared", "tools", "memlimit")
DISKANN_RUN = os.path.join(ROOT, "benches", "compare", "diskann_run.py")


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, text=True, capture_output=True, **kw)


def evict(paths):
    subprocess.run(["sync"], check=True)
    for p in paths:
        for root, _, files in os.walk(p) if os.path.isdir(p) else [(os.path.dirname(p), [], [os.path.basename(p)])]:
            for f in files:
                subprocess.run(["dd", f"if={os.path.join(root, f)}", "iflag=nocache", "count=0", "status=none"])


def peak_mib(cmd, runs=2):
    """The largest memlimit peak of `runs` runs of `cmd`."""
    peaks = []
    for _ in range(runs):
        r = subprocess.run([MEMLIMIT, "4000"] + cmd, text=True, capture_output=True)
        line = [l for l in r.stderr.splitlines() if l.startswith("memlimit:")][-1]
        peaks.append(int(line.split("peak ")[1].split(" MiB")[0]))
    return max(peaks)


def capped(cap_mib, cmd, timeout=None):
    """The JSON lines `cmd` prints under a cap of `cap_mib`; those printed before `timeout`
    seconds if it runs longer (the rest of its sweep is then missing)."""
    # A session of its own, so that a timeout stops the whole tree (memlimit's child too).
    p = subprocess.Popen([MEMLIMIT, str(cap_mib)] + cmd, text=True, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, _ = p.communicate()
        print(f"  (stopped after {timeout} s under {cap_mib} MiB)", flush=True)
        return [json.loads(l) for l in out.splitlines() if l.startswith("{")]
    r = subprocess.CompletedProcess(p.args, p.returncode, out, err)
    if r.returncode != 0:
        raise RuntimeError(f"{cmd} failed under {cap_mib} MiB: {r.stderr[-2000:]}")
    return [json.loads(l) for l in r.stdout.splitlines() if l.startswith("{")]


def subset(data, work, queries):
    for name in ("query.fvecs", "gt.ivecs"):
        a = np.fromfile(os.path.join(data, name), dtype=np.int32)
        d = a[0]
        a.reshape(-1, d + 1)[:queries].tofile(os.path.join(work, name))


def build_hnswdb(work, name, data, metric, m, routing, storage):
    path = os.path.join(work, name)
    if os.path.exists(os.path.join(path, "meta.redb")):
        return path, None
    start = time.perf_counter()
    run([HNSWDB, "create", path, "--dim", str(dim_of(data)), "--metric", metric, "--m", str(m), "--routing", routing,
         "--storage", storage])
    run([HNSWDB, "import", path, os.path.join(data, "base.fvecs")])
    run([HNSWDB, "checkpoint", path])
    return path, time.perf_counter() - start


def dim_of(data):
    return int(np.fromfile(os.path.join(data, "base.fvecs"), dtype=np.int32, count=1)[0])


def files_mib(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            total += os.stat(os.path.join(root, f)).st_blocks * 512
    return total / 2**20


def ms(p, key):
    return f"{p[key] / 1000:.2f}" if p.get(key) is not None else "—"


def kib(p):
    r = p.get("read_bytes_per_query")
    return f"{r / 1024:.0f}" if r is not None else "—"


def row(p):
    return (f"recall {p['recall']:.3f}  {p['qps']:7.0f} QPS  p50 {ms(p, 'p50_us'):>6} ms  p99 {ms(p, 'p99_us'):>6} ms"
            f"  read {kib(p):>5} KiB/query")


def best(points):
    ok = [p for p in points if p["recall"] >= 0.95]
    return max(ok, key=lambda p: p["qps"]) if ok else None


def plot(results, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, points in results.items():
        ax.plot([p["recall"] for p in points], [p["qps"] for p in points], marker="o", label=name)
    ax.set_xlabel("recall@10")
    ax.set_ylabel("queries per second (1 thread)")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("--budget-mib", type=int, required=True)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--metric", default="cosine")
    ap.add_argument("--work", default=None)
    ap.add_argument("--diskann-python", default=os.path.join(ROOT, "target", "diskann-venv", "bin", "python"))
    ap.add_argument("--efs", default="16,24,32,48,64,96")
    ap.add_argument("--hnswdb-budget-mib", type=int, default=None,
                    help="the --memory-budget hnswdb is told (default: the budget); lower leaves "
                         "room under the same cap for its other memory")
    ap.add_argument("--plot", default=None, help="write a recall-vs-QPS plot here (needs matplotlib)")
    ap.add_argument("--indexes", default="sq8-m16,rabitq-m8,rabitq-m16,rabitq-m8-f16",
                    help="which hnswdb indexes to build and run (rabitq-m8-f16: vectors stored as f16; "
                         "rabitq2-m8, rabitq2-m16, rabitq2-m32: 2-bit extended RaBitQ codes)")
    ap.add_argument("--ls", default="16,24,32,48,64,96")
    ap.add_argument("--diskann-timeout", type=int, default=1200,
                    help="seconds DiskANN's sweep may take under the cap before it is stopped")
    ap.add_argument("--threads", type=int, default=1,
                    help="queries in flight: hnswdb's CLI searches on this many threads; DiskANN runs "
                         "batch_search on as many (which reports no per-query latency)")
    ap.add_argument("--diskann-degree", type=int, default=32, help="DiskANN's R")
    ap.add_argument("--diskann-complexity", type=int, default=100, help="DiskANN's build L")
    ap.add_argument("--diskann-pq-bytes", type=int, default=72, help="DiskANN's PQ bytes per vector")
    ap.add_argument("--skip-diskann", action="store_true",
                    help="run hnswdb only (DiskANN under the cap can take very long on large sets)")
    args = ap.parse_args()
    work = args.work or os.path.join(ROOT, "target", "ltr-" + os.path.basename(os.path.normpath(args.data)))
    os.makedirs(work, exist_ok=True)
    subset(args.data, work, args.queries)
    q, gt = os.path.join(work, "query.fvecs"), os.path.join(work, "gt.ivecs")
    builds = {}
    indexes = {}
    wanted = args.indexes.split(",")
    for name, m, routing, storage in [("sq8-m16", 16, "sq8", "f32"), ("rabitq-m8", 8, "rabitq", "f32"),
                                      ("rabitq-m16", 16, "rabitq", "f32"), ("rabitq-m8-f16", 8, "rabitq", "f16"),
                                      ("rabitq2-m8", 8, "rabitq:2", "f32"), ("rabitq2-m16", 16, "rabitq:2", "f32"),
                                      ("rabitq2-m32", 32, "rabitq:2", "f32")]:
        if name in wanted:
            indexes[name], builds[name] = build_hnswdb(work, name, args.data, args.metric, m, routing, storage)
    diskann = os.path.join(work, "diskann")
    if not args.skip_diskann and not os.path.exists(os.path.join(diskann, "ann_disk.index")):
        start = time.perf_counter()
        # DiskANN's cosine normalises; the sets here are unit length, where l2 ranks alike.
        run([args.diskann_python, DISKANN_RUN, "build", args.data, diskann, "--metric", "l2",
             "--degree", str(args.diskann_degree), "--complexity", str(args.diskann_complexity),
             "--pq-bytes", str(args.diskann_pq_bytes)])
        builds["diskann"] = time.perf_counter() - start
    # Baselines: each program's peak doing nothing, its code read cold (a warm binary is
    # charged to whoever read it first and would count as nothing): hnswdb's binary, and
    # DiskANN's Python package (numpy and diskannpy) imported.
    evict([HNSWDB])
    base_hnswdb = peak_mib([HNSWDB, "--version"], runs=1)
    site = subprocess.run([args.diskann_python, "-c", "import diskannpy, numpy, os; "
                           "print(os.path.dirname(diskannpy.__file__)); print(os.path.dirname(numpy.__file__))"],
                          text=True, capture_output=True, check=True).stdout.split()
    evict(site)
    base_diskann = peak_mib([args.diskann_python, "-c", "import diskannpy, numpy"], runs=1)
    print(f"budget {args.budget_mib} MiB; baselines: hnswdb {base_hnswdb} MiB, DiskANN process {base_diskann} MiB")
    for name, path in list(indexes.items()) + ([] if args.skip_diskann else [("diskann", diskann)]):
        built = builds.get(name)
        print(f"  {name}: files {files_mib(path):.1f} MiB" + (f", built in {built:.0f} s" if built else ""))
    results = {}
    for name in indexes:
        points = []
        for ef in args.efs.split(","):
            evict([indexes[name]])
            cmd = [HNSWDB, "--json", "search", indexes[name], "--query", q, "--gt", gt, "--k", "10", "--ef", ef,
                   "--threads", str(args.threads)]
            if name.startswith("rabitq"):
                cmd += ["--memory-budget", str(args.hnswdb_budget_mib or args.budget_mib)]
            try:
                p = capped(base_hnswdb + args.budget_mib, cmd)[-1]
            except RuntimeError as e:
                # Killed by the cgroup, or refused the budget: the sweep stops, the run goes on.
                print(f"  {name:<10} ef {ef:>4}  failed: {str(e)[-300:]}", flush=True)
                break
            points.append(p)
            print(f"  {name:<10} ef {ef:>4}  {row(p)}  resident {p['resident']}", flush=True)
        results[name] = points
    if not args.skip_diskann:
        evict([diskann])
        # DiskANN reads with O_DIRECT: what it keeps in memory is its own (PQ codes, graph
        # cache), inside the same budget.
        try:
            points = capped(base_diskann + args.budget_mib,
                            [args.diskann_python, DISKANN_RUN, "search", diskann, q, gt, "--ls", args.ls, "--beam", "4",
                             "--metric", "l2", "--threads", str(args.threads)],
                            timeout=args.diskann_timeout)
        except RuntimeError as e:
            print(f"  diskann    failed under the cap: {str(e)[-300:]}", flush=True)
            points = []
        for p in points:
            print(f"  {'diskann':<10} L {p['L']:>5}  {row(p)}", flush=True)
        results["diskann"] = points
    with open(os.path.join(work, "results.json"), "w") as f:
        json.dump({"budget_mib": args.budget_mib, "baselines": {"hnswdb": base_hnswdb, "diskann": base_diskann},
                   "results": results}, f, indent=1)
    if args.plot:
        plot(results, args.plot, f"{os.path.basename(os.path.normpath(args.data))}, {args.budget_mib} MiB budget, cold")
    print()
    print(f"{args.threads} queries in flight")
    print("| method | QPS at recall >= 0.95 | recall | p50 ms | p99 ms | KiB read per query | vs hnswdb SQ8 | vs DiskANN |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    ref, dk = best(results.get("sq8-m16", [])), best(results.get("diskann", []))
    for name, points in results.items():
        b = best(points)
        if not b:
            print(f"| {name} | — | — | — | — | — | — | — |")
            continue
        vs_ref = f"{b['qps'] / ref['qps']:.1f}×" if ref else "—"
        vs_dk = f"{b['qps'] / dk['qps']:.2f}×" if dk else "—"
        print(f"| {name} | {b['qps']:,.0f} | {b['recall']:.3f} | {ms(b, 'p50_us')} | {ms(b, 'p99_us')} | "
              f"{kib(b)} | {vs_ref} | {vs_dk} |")


if __name__ == "__main__":
    sys.exit(main())
