#!/usr/bin/env bash
# Installs the toolchain pieces and test dependencies. Idempotent; every step skips what is there.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$HOME/.cargo/bin:$PATH"
echo "== setup: rust toolchain 1.95.0 (rust-toolchain.toml), target and components"
# The toolchain file names 1.95.0 exactly. A machine whose rustup calls it "stable" gets the
# exact name as a link to the same toolchain (run outside the repository so the file does not
# apply yet); any other version is an error, not a silent switch.
if ! (cd / && rustup toolchain list | grep -q '^1\.95\.0-'); then
  stable_version="$(cd / && rustc +stable --version | awk '{print $2}')"
  if [ "$stable_version" != "1.95.0" ]; then
    echo "setup: rust 1.95.0 is needed (rust-toolchain.toml); stable is $stable_version" >&2
    exit 1
  fi
  (cd / && rustup toolchain link 1.95.0 "$(rustc +stable --print sysroot)")
fi
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
