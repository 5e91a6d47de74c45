#!/usr/bin/env bash
# Shows that an index larger than the memory it may use opens and answers.
#
# Builds (once) a synthetic clustered index whose files are at least 4x CAP_MIB, evicts
# them from the page cache, then runs each step under ../shared/tools/memlimit CAP_MIB
# (a memory cgroup that counts the page cache too): open + 1,000 queries, insert 5,000
# vectors, delete those 5,000, and the queries again. Prints recall, QPS, p99 latency and
# each step's cgroup peak. Needs root (for the cgroup). Environment: N, DIM, CAP_MIB, WORK.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-1200000}
DIM=${DIM:-384}
CAP_MIB=${CAP_MIB:-512}
WORK=${WORK:-target/larger-than-ram}
MEMLIMIT=${MEMLIMIT:-../shared/tools/memlimit}
cargo build --release --quiet
BIN=$PWD/target/release/hnswdb
DATA=$WORK/data
IDX=$WORK/index

if [ ! -f "$DATA/gt.ivecs" ]; then
  "$BIN" synth "$DATA" --n "$N" --dim "$DIM" --queries 1000 --metric l2 --seed 1
  "$BIN" synth "$WORK/extra" --n 5000 --dim "$DIM" --queries 1 --metric l2 --seed 2
fi
if [ ! -f "$IDX/meta.redb" ]; then
  "$BIN" create "$IDX" --dim "$DIM" --metric l2
  "$BIN" import "$IDX" "$DATA/base.fvecs"
fi
# A checkpoint (uncapped) trains the SQ8 codes if the index has none yet (one built by an
# older version): the capped steps below then walk on codes.
"$BIN" checkpoint "$IDX"

# Allocated blocks.
kib=$(du -ck "$IDX"/vectors "$IDX"/graph0 "$IDX"/codes.* "$IDX"/meta.redb | tail -1 | cut -f1)
echo "index: $N x $DIM, files $((kib / 1024)) MiB on disk; memory cap $CAP_MIB MiB ($((kib / 1024 / CAP_MIB))x)"
evict() {
  sync
  for f in "$IDX"/vectors "$IDX"/graph0 "$IDX"/codes.* "$IDX"/meta.redb "$IDX"/wal/*; do
    dd if="$f" iflag=nocache count=0 status=none
  done
}
capped() { "$MEMLIMIT" "$CAP_MIB" "$@"; }

echo "== cold open + 1,000 queries (ef 64 and 128)"
evict
capped "$BIN" search "$IDX" --query "$DATA/query.fvecs" --gt "$DATA/gt.ivecs" --k 10 --ef 64,128 --json
echo "== insert 5,000 vectors"
evict
capped "$BIN" import "$IDX" "$WORK/extra/base.fvecs" --ids-from "$N" --threads 2
echo "== delete the same 5,000"
evict
capped "$BIN" delete "$IDX" $(seq "$N" $((N + 4999)))
echo "== verify the whole index under the cap"
evict
capped "$BIN" verify "$IDX"
echo "== queries again (same vectors as at first, so the ground truth holds)"
evict
capped "$BIN" search "$IDX" --query "$DATA/query.fvecs" --gt "$DATA/gt.ivecs" --k 10 --ef 64,128 --json
