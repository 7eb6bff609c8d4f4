#!/usr/bin/env bash
# Installs the toolchain pieces and test dependencies. Idempotent; every step skips what is there.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$HOME/.cargo/bin:$PATH"
echo "== setup: rust target and components"
rustup target add wasm32-wasip1 >/dev/null
rustup component add rustfmt clippy >/dev/null
if ! command -v curl >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq curl >/dev/null
fi
for step in .ci/setup.d/*.sh; do
  echo "== setup: $step"
  bash "$step"
done
