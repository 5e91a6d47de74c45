#!/usr/bin/env python3
"""f32 against f16 against bf16 vector storage on one dataset, in one run: builds one
index of each (`hnswdb create --storage S` + `import`, timed), then queries them in turn,
round after round (the order rotating), so that the machine's drift hits all alike. Prints
a markdown table of recall@10 and median QPS per ef (one query thread), the vectors
file's size and the build time of each.

    python3 benches/compare/storage.py DATA_DIR [--metric cosine] [--rounds 3] [--bin target/release/hnswdb]

DATA_DIR holds base.fvecs, query.fvecs and gt.ivecs (scripts/make_debian.py).
"""
import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time

STORAGES = ["f32", "f16", "bf16"]

p = argparse.ArgumentParser()
p.add_argument("data")
p.add_argument("--metric", default="cosine")
p.add_argument("--rounds", type=int, default=3)
p.add_argument("--ef", default="10,16,24,32,48,64,96,128,256")
p.add_argument("--bin", default="target/release/hnswdb")
p.add_argument("--work", default=None,
               help="where the indexes go (default: a temporary directory); ones already there are reused")
args = p.parse_args()


def hnswdb(*argv):
    return subprocess.run([args.bin, *argv], check=True, capture_output=True, text=True).stdout


def build(work, storage):
    index = os.path.join(work, storage)
    if os.path.exists(index):
        return index, None
    hnswdb("create", index, "--dim", str(dim()), "--metric", args.metric, "--storage", storage)
    start = time.monotonic()
    hnswdb("import", index, os.path.join(args.data, "base.fvecs"))
    return index, time.monotonic() - start


def dim():
    with open(os.path.join(args.data, "base.fvecs"), "rb") as f:
        return int.from_bytes(f.read(4), "little")


def search(index):
    out = hnswdb("--json", "search", index, "--query", os.path.join(args.data, "query.fvecs"),
                 "--gt", os.path.join(args.data, "gt.ivecs"), "--k", "10", "--ef", args.ef,
                 "--threads", "1", "--warmup", "1")
    return {row["ef"]: row for row in map(json.loads, out.splitlines())}


def main():
    work = args.work or tempfile.mkdtemp(prefix="hnswdb-storage-")
    indexes, builds = {}, {}
    for s in STORAGES:
        indexes[s], builds[s] = build(work, s)
    qps = {s: {} for s in STORAGES}
    recall = {s: {} for s in STORAGES}
    for r in range(args.rounds):
        for s in STORAGES[r % 3:] + STORAGES[:r % 3]:
            for ef, row in search(indexes[s]).items():
                qps[s].setdefault(ef, []).append(row["qps"])
                recall[s][ef] = row["recall"]
    print("| storage | vectors file (MiB) | build (s) |\n|---|---:|---:|")
    for s in STORAGES:
        size = os.path.getsize(os.path.join(indexes[s], "vectors")) / 2**20
        built = "reused" if builds[s] is None else f"{builds[s]:.1f}"
        print(f"| {s} | {size:.1f} | {built} |")
    print("\n| ef | " + " | ".join(f"{s} recall / QPS" for s in STORAGES) + " | f16 ÷ f32 | bf16 ÷ f32 |")
    print("|---:|" + "---|" * len(STORAGES) + "---:|---:|")
    for ef in sorted(qps["f32"]):
        med = {s: statistics.median(qps[s][ef]) for s in STORAGES}
        cells = " | ".join(f"{recall[s][ef]:.4f} / {med[s]:,.0f}" for s in STORAGES)
        print(f"| {ef} | {cells} | {med['f16'] / med['f32']:.2f}× | {med['bf16'] / med['f32']:.2f}× |")


main()
