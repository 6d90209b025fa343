#!/usr/bin/env bash
# Runs every test of the workspace. The README's second quick-start command.
#
# Installs what the tests need first: the wasm32 target the rule modules are
# compiled to, and a Python venv (.venv) with PyIceberg and DuckDB, the
# independent readers that check the Iceberg tables, moto, the local AWS
# server (Kinesis, S3, Glue, SNS, SQS, DynamoDB) the AWS tests run against, and cbor2,
# which decodes the CloudWatch requests in the metrics test; and Debian's
# Chromium, which the dashboard test loads the page in.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

if command -v rustup >/dev/null 2>&1; then
    rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown \
        || rustup target add wasm32-unknown-unknown
fi

# The dashboard test drives Debian's Chromium, headless.
if ! command -v chromium >/dev/null 2>&1; then
    echo "installing chromium (the dashboard test's browser) ..."
    sudo_if_needed=""
    [ "$(id -u)" -eq 0 ] || sudo_if_needed="sudo"
    $sudo_if_needed apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_if_needed apt-get install -y -qq chromium >/dev/null
fi

# shellcheck source=scripts/venv.sh
. "$root/scripts/venv.sh"

cargo fmt --all -- --check
# The AWS paths' tests start tests/lakehouse/moto_server.py on the venv's
# Python (daemon/tests/common/moto.rs).
cargo test --workspace --locked "$@"

# The tables `authpulse run` writes, read by PyIceberg and DuckDB. The binary
# is the one `cargo test` built for the CLI tests: a separate `cargo build`
# would resolve features without the dev-dependencies and compile much of the
# dependency tree a second time.
target_dir=$(cargo metadata --format-version 1 --no-deps | "$venv/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
test -x "$target_dir/debug/authpulse"

# A rule author's workflow on the template crate: build the module (one
# command), then replay its test events and compare with its expected hits.
"$target_dir/debug/authpulse" rules build rules/template -o "$target_dir/rule-template/dormant_return.wasm"
"$target_dir/debug/authpulse" rules test "$target_dir/rule-template/dormant_return.wasm" \
    --input rules/template/tests/events.csv --expect rules/template/tests/expected.csv

AUTHPULSE_BIN="$target_dir/debug/authpulse" "$venv/bin/python" -m pytest -q -p no:cacheprovider tests/lakehouse
