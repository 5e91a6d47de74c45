#!/usr/bin/env python3
"""Interleaved A/B of search speed: two hnswdb binaries take turns querying the same index
(`hnswdb search --json`, one thread), round after round, so that the machine's drift
(other load, frequency, page cache) hits both alike. Prints the median QPS per ef of each
binary, their ratio, and the per-round ratios.

    python3 scripts/ab-search.py A_BIN B_BIN INDEX QUERIES.fvecs GT.ivecs [--rounds 7]
"""
import argparse
import json
import statistics
import subprocess

p = argparse.ArgumentParser()
p.add_argument("a")
p.add_argument("b")
p.add_argument("index")
p.add_argument("queries")
p.add_argument("gt")
p.add_argument("--rounds", type=int, default=7)
p.add_argument("--ef", default="16,24,32,48,64,96,128")
args = p.parse_args()


def run(binary):
    out = subprocess.run(
        [binary, "--json", "search", args.index, "--query", args.queries, "--gt", args.gt,
         "--k", "10", "--ef", args.ef, "--threads", "1", "--warmup", "1"],
        check=True, capture_output=True, text=True).stdout
    return {row["ef"]: row for row in map(json.loads, out.splitlines())}


qps = {"a": {}, "b": {}}
recall = {}
for r in range(args.rounds):
    # Alternate which binary goes first, so neither always runs on a warmer machine.
    order = ["a", "b"] if r % 2 == 0 else ["b", "a"]
    for side in order:
        for ef, row in run(getattr(args, side)).items():
            qps[side].setdefault(ef, []).append(row["qps"])
            recall.setdefault((side, ef), row["recall"])
print(f"A = {args.a}\nB = {args.b}\n{args.rounds} interleaved rounds, 1 query thread, k = 10")
print(f"{'ef':>5} {'recall A':>9} {'recall B':>9} {'QPS A':>9} {'QPS B':>9} {'B/A':>6}  per-round B/A")
for ef in sorted(qps["a"]):
    a, b = statistics.median(qps["a"][ef]), statistics.median(qps["b"][ef])
    rounds = " ".join(f"{y / x:.2f}" for x, y in zip(qps["a"][ef], qps["b"][ef]))
    print(f"{ef:>5} {recall[('a', ef)]:>9.4f} {recall[('b', ef)]:>9.4f} {a:>9.0f} {b:>9.0f} "
          f"{b / a:>6.3f}  {rounds}")
