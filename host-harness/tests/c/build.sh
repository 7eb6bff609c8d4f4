#!/usr/bin/env bash
# Rebuilds filter.wasm from filter.c with Debian's clang 14 and lld 14 (`apt-get install clang-14
# lld-14`; no libc, no SDK). The .wasm is checked in so the harness test needs no C compiler; CI
# does not run this. Prints the module's SHA-256 (the same on every run).
set -euo pipefail
cd "$(dirname "$0")"
clang-14 --target=wasm32 -O2 -nostdlib -ffreestanding \
  -Wl,--no-entry -Wl,--strip-all -Wl,--initial-memory=131072 \
  -fuse-ld=lld -o filter.wasm filter.c
sha256sum filter.wasm
