#!/bin/sh
# Routing codes side by side on one data set (docs/benchmarks.md, "Routing bits"): builds
# one index per routing at M 8, then searches them in memory and under memory budgets,
# the routings interleaved in each of two rounds so that load drifts hit them alike.
# Usage: routing_bits.sh DATA_DIR WORK_DIR  (DATA_DIR holds base.fvecs, query.fvecs,
# gt.ivecs; HNSWDB names the binary, default target/release/hnswdb).
set -eu
data=$1
work=$2
hnswdb=${HNSWDB:-target/release/hnswdb}
routings="sq8 rabitq rabitq:2 rabitq:4 rabitq:8"
efs=10,16,24,32,48,64,96,128
budgets="9 16 24"
dim=$(od -An -t u4 -N 4 "$data/base.fvecs" | tr -d ' ')
mkdir -p "$work"
for r in $routings; do
    dir=$work/$(echo "$r" | tr : _)
    rm -rf "$dir"
    "$hnswdb" create "$dir" --dim "$dim" --metric cosine --m 8 --routing "$r" >/dev/null
    start=$(date +%s.%N)
    "$hnswdb" import "$dir" "$data/base.fvecs" >/dev/null 2>&1
    end=$(date +%s.%N)
    echo "{\"routing\":\"$r\",\"build_s\":$(echo "$end - $start" | bc),\"bytes\":$(du -sb "$dir" | cut -f1),\"codes\":$(du -b "$dir"/codes.* | cut -f1)}"
done
for round in 1 2; do
    for budget in none $budgets; do
        for r in $routings; do
            dir=$work/$(echo "$r" | tr : _)
            if [ "$budget" = none ]; then
                extra="--warmup 1"
            else
                extra="--memory-budget $budget"
            fi
            # shellcheck disable=SC2086
            "$hnswdb" search "$dir" --query "$data/query.fvecs" --gt "$data/gt.ivecs" \
                --ef $efs $extra --json |
                sed "s/^{/{\"round\":$round,\"routing\":\"$r\",\"budget\":\"$budget\",/"
        done
    done
done
