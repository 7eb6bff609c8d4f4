#!/usr/bin/env bash
# The README's first command on a machine with nothing but rustup: the filter's wasm32 build graph
# must compile no C (docs/gcs.md: RS256 is pure Rust). Two checks:
#  1. no crate of the filter's wasm32 graph depends on `cc` (the crate every C build goes through);
#  2. the demo runs from a clean environment in which any C compiler for wasm32 is `false`, with a
#     wasm target directory of its own so the filter is really rebuilt, not taken from a cache.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$HOME/.cargo/bin:$PATH"

echo "== first touch: no C in the filter's wasm32 build graph"
for pkg in config-bridge; do
  if cargo tree -p "$pkg" --target wasm32-wasip1 -e normal,build --prefix none | grep -E '^cc v'; then
    echo "first-touch: $pkg's wasm32 build graph needs a C compiler (crate cc above)" >&2
    exit 1
  fi
done

echo "== first touch: the demo with no C compiler for wasm32 and no inherited environment"
wasm_dir="$(mktemp -d -t first-touch-wasm.XXXXXX)"
trap 'rm -rf "$wasm_dir"' EXIT
# `false` as every compiler cc-rs would pick for wasm32: any C build in the graph fails the run.
env -i HOME="$HOME" PATH="$HOME/.cargo/bin:/usr/local/bin:/usr/bin:/bin" \
  CC_wasm32_wasip1=false CXX_wasm32_wasip1=false AR_wasm32_wasip1=false \
  TARGET_CC=false TARGET_AR=false \
  HARNESS_WASM_TARGET_DIR="$wasm_dir" \
  cargo run --quiet -p host-harness -- demo >"$wasm_dir/demo.txt"
tail -n 1 "$wasm_dir/demo.txt"
