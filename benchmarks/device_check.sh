#!/usr/bin/env bash
# The prepared device check: run this first when a GPU machine is lent (one call, about 8 minutes,
# no network). It uses the machine's own Python with the worktree on PYTHONPATH (nothing is
# installed), synthesizes the fixtures, runs the tests, the CLI and the timings stage by stage,
# and writes one results JSON and a log under $OUT (default benchmarks/results).
#
#   bash benchmarks/device_check.sh                          # the GPU run (--device cuda)
#   bash benchmarks/device_check.sh --device cpu --quick     # the dry run on the tiny fixtures (< 2 min)
#   bash benchmarks/device_check.sh --only ar-pro-7b,flow-1.3b   # a second try of some stages
#   bash benchmarks/device_check.sh --device cpu --quick --slack 5 --budget 900   # on a busy machine
#
# Exits 1 when a stage did not pass; the JSON says which and why. See benchmarks/device_check.py.
set -u
cd "$(dirname "$0")/.."
PY="${PYTHON:-$(command -v python3 || command -v python)}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" benchmarks/device_check.py "$@"
