#!/usr/bin/env bash
# Tools for .ci/oci-roundtrip.sh: a real OCI registry (distribution 2.8), skopeo, and htpasswd
# (apache2-utils) for the registry's bcrypt user file. Idempotent.
set -euo pipefail
if command -v docker-registry >/dev/null && command -v skopeo >/dev/null && command -v htpasswd >/dev/null; then
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# The package's post-install would start a registry on :5000 where an init system exists; the
# round trip starts its own on a free loopback port instead.
apt-get install -y -qq --no-install-recommends docker-registry skopeo apache2-utils >/dev/null
