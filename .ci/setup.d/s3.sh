#!/usr/bin/env bash
# Python clients, moto and s3s-fs for tests/interop/test_s3*.py. Idempotent: pip skips what is
# installed; s3s-fs (a ~7 min build) is built only when it is not on PATH yet.
set -euo pipefail
python3 -m pip install --quiet --disable-pip-version-check 'moto[server]' boto3 pytest
export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v s3s-fs >/dev/null 2>&1; then
  # 0.15+ needs a newer rustc than this project's toolchain (rust-toolchain.toml).
  CARGO_TARGET_DIR="${S3S_BUILD_DIR:-/tmp/s3s-build}" \
    cargo install s3s-fs --version 0.14.1 --features binary --locked --quiet
fi
