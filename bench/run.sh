#!/usr/bin/env bash
# Kiln benchmark driver. Prints a small table; details in bench/bench.py.
#
#   bench/run.sh [--runs N] [--duration S] [--connections C] [--cmd-runs N] [--ctx-runs N] [--keep]
#
# KILN_BIN           binary to measure (default: target/release/kiln if built, else target/debug/kiln)
# KILN_BENCH_PYTHON  python with requests + pyspark-client (default: .venv, else a venv made in .venv-bench)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")

if [[ -z "${KILN_BIN:-}" ]]; then
    if [[ -x "$repo/target/release/kiln" ]]; then
        KILN_BIN="$repo/target/release/kiln"
    else
        KILN_BIN="$repo/target/debug/kiln"
    fi
fi
export KILN_BIN
if [[ ! -x "$KILN_BIN" ]]; then
    echo "kiln binary not found at $KILN_BIN (cargo build --release, or set KILN_BIN)" >&2
    exit 2
fi

if ! command -v wrk >/dev/null 2>&1; then
    echo "wrk not found; installing it with apt-get" >&2
    if [[ $(id -u) -eq 0 ]]; then
        apt-get update -qq && apt-get install -y -qq wrk >/dev/null
    else
        sudo apt-get update -qq && sudo apt-get install -y -qq wrk >/dev/null
    fi
fi

has_deps() { "$1" -c 'import requests, pyspark, pandas, pyarrow, grpc' >/dev/null 2>&1; }

py="${KILN_BENCH_PYTHON:-}"
if [[ -z "$py" ]]; then
    if [[ -x "$repo/.venv/bin/python" ]] && has_deps "$repo/.venv/bin/python"; then
        py="$repo/.venv/bin/python"
    else
        venv="$repo/.venv-bench"
        if [[ ! -x "$venv/bin/python" ]] || ! has_deps "$venv/bin/python"; then
            echo "creating $venv (requests, pyspark-client)" >&2
            python3 -m venv "$venv"
            "$venv/bin/pip" install -q -r "$repo/tests/conformance/requirements.txt"
        fi
        py="$venv/bin/python"
    fi
fi

exec "$py" "$here/bench.py" "$@"
