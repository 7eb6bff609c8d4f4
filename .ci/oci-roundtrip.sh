#!/usr/bin/env bash
# OCI round trip through a real registry: package the filter (twice: digests must be identical),
# start docker-registry on a free loopback port, push the CNCF layout with skopeo and the compat
# layout with our own push (and both again with `package --push`), pull everything back with skopeo,
# compare manifest digests and module bytes with the originals, and load the pulled .wasm in the
# harness. Ends with "oci roundtrip: N passed, N failed[, N skipped]"; exits non-zero on any failure.
# Env: OCI_ROUNDTRIP_WASM=FILE packages that module instead of building the filter.
set -uo pipefail
cd "$(dirname "$0")/.."
command -v docker-registry >/dev/null && command -v skopeo >/dev/null && command -v htpasswd >/dev/null \
  || bash .ci/setup.d/oci.sh

WORK=$(mktemp -d)
REG_PID=""
cleanup() {
  if [ -n "$REG_PID" ]; then kill "$REG_PID" 2>/dev/null; wait "$REG_PID" 2>/dev/null; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

passed=0; failed=0; skipped=0
ok()   { echo "ok    $1"; passed=$((passed + 1)); }
bad()  { echo "FAIL  $1" >&2; failed=$((failed + 1)); }
skip() { echo "skip  $1"; skipped=$((skipped + 1)); }
finish() {
  local line="oci roundtrip: $passed passed, $failed failed"
  [ "$skipped" -gt 0 ] && line="$line, $skipped skipped"
  echo "$line"
  [ "$failed" -eq 0 ]
  exit $?
}
die() { bad "$1"; finish; }

TAG=ci
pkg_args=()
[ -n "${OCI_ROUNDTRIP_WASM:-}" ] && pkg_args=(--wasm "$OCI_ROUNDTRIP_WASM")

# 1. Package twice (the second run reuses the build): identical digests and layouts.
cargo xtask package "${pkg_args[@]}" --tag "$TAG" --out "$WORK/pkg" || die "cargo xtask package"
cargo xtask package "${pkg_args[@]}" --tag "$TAG" --out "$WORK/pkg2" >/dev/null || die "second cargo xtask package"
if cmp -s "$WORK/pkg/digests.txt" "$WORK/pkg2/digests.txt" && diff -r "$WORK/pkg/oci" "$WORK/pkg2/oci" >/dev/null; then
  ok "package is reproducible ($(awk '{print $2": "$1}' "$WORK/pkg/digests.txt" | paste -sd' ' -))"
else
  bad "two package runs differ"
fi
WASM="$WORK/pkg/config_bridge.wasm"
# digests.txt: `<hex>  <name>` (bare hex, what Istio's and Envoy Gateway's sha256 fields take).
CNCF_HEX=$(awk '$2 == "oci/cncf" {print $1}' "$WORK/pkg/digests.txt")
COMPAT_HEX=$(awk '$2 == "oci/compat" {print $1}' "$WORK/pkg/digests.txt")
[[ "$CNCF_HEX" =~ ^[0-9a-f]{64}$ && "$COMPAT_HEX" =~ ^[0-9a-f]{64}$ ]] \
  || die "digests.txt: manifest digests are not bare sha256 hex"
CNCF_DIGEST="sha256:$CNCF_HEX"
COMPAT_DIGEST="sha256:$COMPAT_HEX"
# Each layout is tagged as in the registry: the CNCF image TAG, the compat image TAG-compat.
tagged_ok=1
for pair in "cncf:$TAG:$CNCF_HEX" "compat:$TAG-compat:$COMPAT_HEX"; do
  IFS=: read -r name tag hex <<<"$pair"
  got=$(skopeo inspect --raw "oci:$WORK/pkg/oci/$name:$tag" 2>/dev/null | sha256sum | cut -d' ' -f1)
  [ "$got" = "$hex" ] || { bad "oci/$name: no image tagged $tag with manifest $hex (skopeo saw $got)"; tagged_ok=0; }
done
[ "$tagged_ok" = 1 ] && ok "layouts tagged $TAG / $TAG-compat, digests.txt bare hex = manifest digests"

# 2. A registry on a free loopback port, storage under the temp dir, Basic auth (htpasswd) so that
#    the push's credential handling is exercised. Throwaway credentials, made up per run.
REG_USER=ci-user
REG_PASS="ci-$RANDOM-$RANDOM-$$"
htpasswd -Bbn "$REG_USER" "$REG_PASS" > "$WORK/htpasswd" 2>/dev/null || die "htpasswd"
export OCI_REGISTRY_USERNAME="$REG_USER" OCI_REGISTRY_PASSWORD="$REG_PASS"
CREDS="$REG_USER:$REG_PASS"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$WORK/registry"
cat > "$WORK/registry.yml" <<YML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $WORK/registry
http:
  addr: 127.0.0.1:$PORT
auth:
  htpasswd:
    realm: config-bridge-ci
    path: $WORK/htpasswd
YML
docker-registry serve "$WORK/registry.yml" >"$WORK/registry.log" 2>&1 &
REG_PID=$!
for _ in $(seq 1 100); do
  curl -fsS -u "$CREDS" "http://127.0.0.1:$PORT/v2/" >/dev/null 2>&1 && break
  kill -0 "$REG_PID" 2>/dev/null || { cat "$WORK/registry.log" >&2; die "docker-registry exited"; }
  sleep 0.1
done
curl -fsS -u "$CREDS" "http://127.0.0.1:$PORT/v2/" >/dev/null || die "docker-registry did not answer on 127.0.0.1:$PORT"
REG="127.0.0.1:$PORT"

# 3. Push: CNCF with skopeo, compat with our push, both with `package --push`.
skopeo copy -q --dest-tls-verify=false --dest-creds "$CREDS" "oci:$WORK/pkg/oci/cncf:$TAG" "docker://$REG/config-bridge:$TAG" \
  || die "skopeo push of the CNCF layout"
cargo xtask push "$WORK/pkg/oci/compat" "$REG/config-bridge:$TAG-compat" || die "xtask push of the compat layout"
cargo xtask package --wasm "$WASM" --tag "$TAG" --out "$WORK/pkg3" --push "$REG/own:$TAG" >/dev/null \
  || die "package --push"
# Without credentials the registry refuses, and the error names the problem without the password.
if OCI_REGISTRY_USERNAME= OCI_REGISTRY_PASSWORD= cargo xtask push "$WORK/pkg/oci/compat" "$REG/anon:$TAG" \
     >"$WORK/anon.out" 2>&1; then
  bad "push without credentials was accepted"
elif grep -q "$REG_PASS" "$WORK/anon.out"; then
  bad "push error output contains the password"
else
  ok "push without credentials is refused: $(grep -m1 -o 'registry wants Basic auth[^;]*' "$WORK/anon.out")"
fi

# Manifest digest of the only image in an OCI layout.
layout_digest() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]+"/index.json"))["manifests"][0]["digest"])' "$1"; }
# Digest of the first layer of that image.
layer_digest() {
  python3 -c 'import json,sys
d=sys.argv[1]; m=json.load(open(d+"/index.json"))["manifests"][0]["digest"].split(":")[1]
print(json.load(open(d+"/blobs/sha256/"+m))["layers"][0]["digest"].split(":")[1])' "$1"
}

# 4. Pull back with skopeo and compare with the originals.
check_pull() { # name reference expected-digest original-layout
  local name=$1 ref=$2 want=$3 orig=$4 dir="$WORK/pull-$1"
  if ! skopeo copy -q --src-tls-verify=false --src-creds "$CREDS" "docker://$REG/$ref" "oci:$dir:$TAG"; then
    bad "$name: skopeo pull of $ref"; return 1
  fi
  local got; got=$(layout_digest "$dir")
  local hex=${want#sha256:}
  if [ "$got" = "$want" ] && cmp -s "$dir/blobs/sha256/$hex" "$orig/blobs/sha256/$hex"; then
    ok "$name: pulled manifest $got is byte-identical"
  else
    bad "$name: pulled manifest $got, expected $want"; return 1
  fi
}
check_pull cncf "config-bridge:$TAG" "$CNCF_DIGEST" "$WORK/pkg/oci/cncf"
check_pull compat "config-bridge:$TAG-compat" "$COMPAT_DIGEST" "$WORK/pkg/oci/compat"
check_pull own-cncf "own:$TAG" "$CNCF_DIGEST" "$WORK/pkg/oci/cncf"
check_pull own-compat "own:$TAG-compat" "$COMPAT_DIGEST" "$WORK/pkg/oci/compat"

# 5. The module inside the pulled images is the packaged one.
if [ -d "$WORK/pull-cncf" ]; then
  cp "$WORK/pull-cncf/blobs/sha256/$(layer_digest "$WORK/pull-cncf")" "$WORK/pulled-cncf.wasm"
  cmp "$WORK/pulled-cncf.wasm" "$WASM" && ok "cncf: pulled application/wasm layer equals the .wasm" \
    || bad "cncf: pulled layer differs from the .wasm"
fi
if [ -d "$WORK/pull-compat" ]; then
  mkdir -p "$WORK/unpacked"
  tar -xzf "$WORK/pull-compat/blobs/sha256/$(layer_digest "$WORK/pull-compat")" -C "$WORK/unpacked"
  if [ "$(ls -A "$WORK/unpacked")" = "plugin.wasm" ] && cmp "$WORK/unpacked/plugin.wasm" "$WASM"; then
    ok "compat: pulled layer holds exactly plugin.wasm, equal to the .wasm"
  else
    bad "compat: pulled layer is not exactly plugin.wasm = the .wasm ($(ls -A "$WORK/unpacked" | paste -sd' ' -))"
  fi
fi

# 6. The pulled module loads in the harness (compiles, every import provided). CI passes the
# binary it built ($HOST_HARNESS_BIN); otherwise cargo runs it.
if [ -f "$WORK/pulled-cncf.wasm" ]; then
  if [ -n "${HOST_HARNESS_BIN:-}" ]; then harness=("$HOST_HARNESS_BIN"); else harness=(cargo run -q -p host-harness --); fi
  "${harness[@]}" inspect "$WORK/pulled-cncf.wasm" \
    && ok "harness inspect loads the pulled .wasm" || bad "harness inspect rejected the pulled .wasm"
fi

finish
