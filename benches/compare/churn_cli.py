"""Deletes through the CLI: QPS at recall@10 0.95 after deleting half of an index in
batches of `hnswdb delete`, against a fresh build of the rest (issue 26, "After deletes").

Builds DATA/base.fvecs through `hnswdb create` + `import`, copies the index twice and
deletes the same random half from both copies in --batches CLI calls: one copy with
`--relocate-above 1` (holes stay: the behaviour before relocation), one with the default
(`close` relocates once holes pass 10% of the slots). Then a fresh build of the remaining
rows, and a copy of it renumbered in breadth-first order (`compact --relocate`): does that
order pay on a fresh build? The exact ground truth of the remaining half is computed here with numpy (the
set's gt.ivecs is for the whole set). Every index is searched with `hnswdb search` (one
thread, one warm-up pass) in --rounds interleaved rounds; the median QPS per ef counts.

    python3 benches/compare/churn_cli.py --data /path/to/debian --metric cosine
    hnswdb synth /tmp/s200k --n 200000 --dim 128
    python3 benches/compare/churn_cli.py --data /tmp/s200k --metric l2
"""

import argparse
import json
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np


def read_fvecs(path):
    raw = np.fromfile(path, dtype=np.int32)
    dim = raw[0]
    return raw.reshape(-1, dim + 1)[:, 1:].view(np.float32)


def write_fvecs(path, rows):
    rows = np.ascontiguousarray(rows, dtype=np.float32)
    out = np.empty((rows.shape[0], rows.shape[1] + 1), dtype=np.int32)
    out[:, 0] = rows.shape[1]
    out[:, 1:] = rows.view(np.int32)
    out.tofile(path)


def write_ivecs(path, rows):
    out = np.empty((rows.shape[0], rows.shape[1] + 1), dtype=np.int32)
    out[:, 0] = rows.shape[1]
    out[:, 1:] = rows
    out.tofile(path)


def exact_top(base, queries, metric, k):
    """Row numbers in `base` of each query's k nearest, nearest first."""
    if metric == "cosine":
        base = base / np.linalg.norm(base, axis=1, keepdims=True)
        queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    out = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), 100):
        q = queries[start : start + 100]
        if metric == "l2":
            d = (q * q).sum(1)[:, None] - 2 * q @ base.T + (base * base).sum(1)[None, :]
        else:
            d = -(q @ base.T)
        part = np.argpartition(d, k, axis=1)[:, :k]
        order = np.take_along_axis(d, part, 1).argsort(1)
        out[start : start + 100] = np.take_along_axis(part, order, 1)
    return out


class Cli:
    def __init__(self, binary):
        self.binary = binary

    def __call__(self, *args):
        done = subprocess.run(
            [self.binary, "--json", *map(str, args)], capture_output=True, text=True
        )
        if done.returncode != 0:
            raise SystemExit(f"hnswdb {' '.join(map(str, args[:3]))}: {done.stdout}{done.stderr}")
        return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]

    def build(self, dir, rows_file, dim, metric):
        start = time.perf_counter()
        self("create", dir, "--dim", dim, "--metric", metric)
        self("import", dir, rows_file)
        return time.perf_counter() - start


def at_recall(points, target):
    """QPS at `target` recall, interpolated linearly between the two efs around it."""
    points = sorted(points)
    for (r0, q0), (r1, q1) in zip(points, points[1:]):
        if r0 <= target <= r1 and r1 > r0:
            return q0 + (q1 - q0) * (target - r0) / (r1 - r0)
    return float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--metric", default="cosine")
    ap.add_argument("--cli", default="target/release/hnswdb")
    ap.add_argument("--batches", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--efs", default="10,12,16,20,24,32,48,64,96")
    ap.add_argument("--target", type=float, default=0.95)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    cli = Cli(args.cli)
    base = read_fvecs(args.data / "base.fvecs")
    queries = read_fvecs(args.data / "query.fvecs")
    n, dim = base.shape
    perm = np.random.default_rng(args.seed).permutation(n)
    dead, keep = perm[: n // 2], np.sort(perm[n // 2 :])
    with tempfile.TemporaryDirectory(dir="target") as tmp:
        tmp = Path(tmp)
        top = exact_top(base[keep], queries, args.metric, 10)
        write_ivecs(tmp / "gt_fresh.ivecs", top)
        write_ivecs(tmp / "gt_churned.ivecs", keep[top])
        write_fvecs(tmp / "keep.fvecs", base[keep])
        built = cli.build(tmp / "full", args.data / "base.fvecs", dim, args.metric)
        print(f"{n} x {dim} {args.metric}; built through the CLI in {built:.1f} s")
        for name in ["holes", "relocated"]:
            shutil.copytree(tmp / "full", tmp / name)
        seconds = {"holes": 0.0, "relocated": 0.0}
        for batch in np.array_split(dead, args.batches):
            for name, extra in [("holes", ["--relocate-above", "1"]), ("relocated", [])]:
                start = time.perf_counter()
                cli("delete", tmp / name, *batch.tolist(), *extra)
                seconds[name] += time.perf_counter() - start
        fresh_s = cli.build(tmp / "fresh", tmp / "keep.fvecs", dim, args.metric)
        # Does the breadth-first order pay on a fresh build too? The same graph, renumbered.
        shutil.copytree(tmp / "fresh", tmp / "fresh-bfs")
        moved = cli("compact", tmp / "fresh-bfs", "--relocate")[0]["seconds"]
        print(f"relocating the fresh build (compact --relocate): {moved:.1f} s")
        print(
            f"deleted {len(dead)} in {args.batches} CLI batches: {seconds['holes']:.1f} s "
            f"(holes kept), {seconds['relocated']:.1f} s (relocating); "
            f"fresh build of the {len(keep)} left: {fresh_s:.1f} s"
        )
        names = ["holes", "relocated", "fresh", "fresh-bfs"]
        for name in names:
            s = cli("stats", tmp / name)[0]
            print(f"  {name}: {s['len']} live, high-water {s['high_water']}")
        efs = [int(e) for e in args.efs.split(",")]
        # Wall-clock QPS, and the rate the median query latency gives (1 / p50): on a
        # shared machine a query thread descheduled for part of a pass drags the first
        # down, while most single queries still run undisturbed.
        qps = {(name, ef): [] for name in names for ef in efs}
        p50 = {(name, ef): [] for name in names for ef in efs}
        recall = {}
        for _ in range(args.rounds):
            for name in names:
                gt = tmp / ("gt_fresh.ivecs" if name.startswith("fresh") else "gt_churned.ivecs")
                for line in cli("search", tmp / name, "--query", args.data / "query.fvecs",
                                "--gt", gt, "--ef", args.efs, "--warmup", 1):
                    qps[(name, line["ef"])].append(line["qps"])
                    p50[(name, line["ef"])].append(1e6 / line["p50_us"])
                    recall[(name, line["ef"])] = line["recall"]
        print()
        print("| ef | " + " | ".join(f"{n} recall | QPS | 1/p50" for n in names) + " |")
        print("|---:|" + "---:|---:|---:|" * len(names))
        med = statistics.median
        for ef in efs:
            cells = [
                f"{recall[(n, ef)]:.4f} | {med(qps[(n, ef)]):,.0f} | {med(p50[(n, ef)]):,.0f}"
                for n in names
            ]
            print(f"| {ef} | " + " | ".join(cells) + " |")
        print()
        for label, rates in [("QPS", qps), ("1/p50", p50)]:
            at = {
                n: at_recall([(recall[(n, ef)], med(rates[(n, ef)])) for ef in efs], args.target)
                for n in names
            }
            print(
                f"{label} at recall@10 {args.target}: "
                + ", ".join(f"{n} {at[n]:,.0f}" for n in names)
                + f"; vs fresh: holes {at['holes'] / at['fresh']:.2f}x, "
                f"relocated {at['relocated'] / at['fresh']:.2f}x, "
                f"fresh in BFS order {at['fresh-bfs'] / at['fresh']:.2f}x"
            )

if __name__ == "__main__":
    main()
