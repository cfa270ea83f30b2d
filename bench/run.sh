#!/usr/bin/env bash
# Runs the benchmark suite and writes BENCHMARKS.md (see bench/README.md).
# Arguments go to bench/run.py, e.g. `bench/run.sh --servers iobus-rust,socketioxide --reps 5`.
set -euo pipefail
cd "$(dirname "$0")/.."
# Thousands of idle connections: lift the soft open-file limit to the hard one.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
exec "${PYTHON:-python3}" bench/run.py "$@"
