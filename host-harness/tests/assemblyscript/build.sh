#!/usr/bin/env bash
# Rebuilds add_header.wasm from assembly/index.ts with the pinned AssemblyScript SDK and compiler
# (npm registry; Node.js only, no C compiler: the compiler and binaryen are JavaScript/wasm).
# The .wasm is checked in so the harness test needs no Node.js; CI does not run this.
set -euo pipefail
cd "$(dirname "$0")"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r package.json assembly "$work/"
(cd "$work" && npm install --no-audit --no-fund --silent \
    && npx asc assembly/index.ts -b add_header.wasm --use abort=abort_proc_exit --optimize)
cp "$work/add_header.wasm" add_header.wasm
sha256sum add_header.wasm
