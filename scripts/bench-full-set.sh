#!/usr/bin/env bash
# The LANL set's full size (708M events, 58 days) generated on the fly into
# `authpulse run -` with all tables; prints events/s over time, peak RSS and
# table sizes. Options: scripts/bench_full_set.py --help. Builds the release
# binary first unless AUTHPULSE_BIN names one (a cold release build takes
# ~44 minutes on two cores); the run itself takes about half an hour here.
set -euo pipefail
cd "$(dirname "$0")/.."
binary=${AUTHPULSE_BIN:-}
if [ -z "$binary" ]; then
    cargo build --release --locked -p authpulse
    target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
    binary="$target_dir/release/authpulse"
fi
exec python3 scripts/bench_full_set.py --binary "$binary" "$@"
