#!/usr/bin/env bash
# Runs the whole test suite. Needs what .ci/setup.sh installs. Starts the servers the interop tests
# talk to (our mocks over TCP, s3s-fs, moto, fake-gcs-server) and stops them at the end.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$HOME/.cargo/bin:$PATH"
# Interop tests fail instead of skipping when a server is missing.
export CI="${CI:-true}"

echo "== formatting"
cargo fmt --all -- --check

echo "== clippy (host, and the filter's wasm32 shell which only exists on that target)"
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo clippy -p config-bridge -p config-bridge-bignum -p config-bridge-json-scan -p abi-probe --target wasm32-wasip1 --quiet -- -D warnings

echo "== build (host binaries; the tests build the .wasm themselves)"
cargo build --workspace --all-targets --quiet

logs="$(mktemp -d -t config-bridge-ci.XXXXXX)"
pids=()
cleanup() { local p; for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

echo "== start servers (logs in $logs)"
export S3_SERVERS_LOG_DIR="$logs/s3" GCS_SERVERS_LOG_DIR="$logs/gcs"
export HOST_HARNESS_BIN="$PWD/target/debug/host-harness"
# Assign first: `eval "$(cmd)"` would hide a failing script behind eval's own success.
s3_env="$(bash .ci/servers/s3.sh)"
eval "$s3_env"
gcs_env="$(bash .ci/servers/gcs.sh)"
eval "$gcs_env"
for v in $(compgen -v | grep -E '_PID$'); do pids+=("${!v}"); done

echo "== cargo test"
cargo test --workspace

echo "== real clients against our mocks and third-party servers"
python3 -m pytest -q tests/interop

echo "== OCI packaging round trip through a real registry"
bash .ci/oci-roundtrip.sh

echo "== the shipped module (cargo xtask package: wasm-opt of the build) in the harness and the real engine"
# The suites above ran cargo's build of the filter; this runs the export, GCS, sealed-export and
# import suites and a real-engine export on the packaged bytes (README, "Packaging").
cargo xtask package --out target/package >/dev/null
CONFIG_BRIDGE_WASM="$PWD/target/package/config_bridge.wasm" cargo test --workspace -q \
  --test export_faults --test gcs_export --test sealed_exports --test import
# Three of engine_export's cases (start, reload, 1,000 proxied requests) on the packaged bytes; the
# whole suite ran on cargo's build above and takes ~80 s.
CONFIG_BRIDGE_WASM="$PWD/target/package/config_bridge.wasm" cargo test -q -p config-bridge-tests \
  --test engine_export -- start_exports_once_with_the_full_body \
  reload_with_a_new_config_uploads_it_once a_thousand_requests_through_the_filter_location

echo "== the README's main job, as on a fresh machine (no C compiler for wasm32)"
bash .ci/first-touch.sh
echo "ci: all steps passed"
