#!/usr/bin/env bash
# `authpulse run` (all tables) beside a DuckDB script computing the same
# per-event features from the same file; prints medians and the ratio.
# Options: scripts/bench_peer.py --help. Builds the release binary first
# unless AUTHPULSE_BIN names one (a cold release build takes ~44 minutes on
# two cores).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
# shellcheck source=scripts/venv.sh
. "$root/scripts/venv.sh"
binary=${AUTHPULSE_BIN:-}
if [ -z "$binary" ]; then
    cargo build --release --locked -p authpulse
    target_dir=$(cargo metadata --format-version 1 --no-deps | "$venv/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
    binary="$target_dir/release/authpulse"
fi
exec "$venv/bin/python" scripts/bench_peer.py --binary "$binary" "$@"
