#!/usr/bin/env bash
# Runs every test of the workspace. The README's second quick-start command.
#
# Installs what the build needs first (the wasm32 target the rule modules are
# compiled to), so it works on a fresh machine with only rustup/cargo.
set -euo pipefail
cd "$(dirname "$0")/.."

if command -v rustup >/dev/null 2>&1; then
    rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown \
        || rustup target add wasm32-unknown-unknown
fi

cargo fmt --all -- --check
cargo test --workspace --locked "$@"
