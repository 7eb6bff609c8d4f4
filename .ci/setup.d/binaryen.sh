#!/usr/bin/env bash
# binaryen's wasm-opt for `cargo xtask package` (xtask/src/wasm_opt.rs): the shipped module is
# `wasm-opt` of cargo's build (`-Oz` and more passes: xtask/src/wasm_opt.rs's FLAGS), with binaryen 108 exactly (another version gives other bytes).
# Debian bookworm's package is that release. Idempotent.
set -euo pipefail
if command -v wasm-opt >/dev/null && wasm-opt --version | grep -qE 'version 108( |$)'; then
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends binaryen=108-1 >/dev/null
wasm-opt --version | grep -qE 'version 108( |$)' || {
  echo "setup: wasm-opt is not binaryen 108: $(wasm-opt --version)" >&2
  exit 1
}
