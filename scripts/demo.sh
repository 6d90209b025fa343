#!/usr/bin/env bash
# Builds everything and runs the demo: generated data with hidden attacks,
# scored by the default policy with the rules as WASM. Extra arguments go to
# `authpulse demo` (see `--help`).
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v rustup >/dev/null 2>&1; then
    rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown \
        || rustup target add wasm32-unknown-unknown
fi
exec cargo run --release --locked -p authpulse -- demo "$@"
