#!/bin/sh
# ExecStartPre of a hybrid-mode data plane (examples/kong/hybrid-dp/README.md), in place of the
# unit's `kong prepare`: imports the last export when the control plane does not answer and Kong has
# no persisted configuration, then runs `kong prepare` with declarative_config pointing at it.
# declarative_config is set only after a successful import: Kong refuses to start when the file is
# missing, and a file given at start is loaded over the persisted LMDB configuration.
#
# Settings: /etc/kong/config-bridge.env (the filter's variable names), read here only, so the
# storage credentials never reach Kong's own processes.
set -u

env_file="${CONFIG_BRIDGE_ENV_FILE:-/etc/kong/config-bridge.env}"
set -a
# shellcheck source=/dev/null
. "$env_file"
set +a

prefix="${KONG_PREFIX:-/usr/local/kong}"
out="${CONFIG_BRIDGE_OUT:-/var/lib/config-bridge/kong.json}"
mkdir -p "$(dirname "$out")"

/usr/local/bin/config-bridge import \
  --cp-probe "${CONFIG_BRIDGE_CP_PROBE:?set CONFIG_BRIDGE_CP_PROBE, e.g. https://kong-cp:8005/}" \
  --skip-if-exists "$prefix/dbless.lmdb" \
  --out "$out" \
  --timeout "${CONFIG_BRIDGE_TIMEOUT:-60}"
rc=$?

case $rc in
  0) export KONG_DECLARATIVE_CONFIG="$out" ;;
  # Skipped (CP up, persisted config), nothing exported yet, invalid object, storage or source
  # unreachable: Kong starts as it would without config-bridge and waits for its CP.
  10|11|12|13|14) ;;
  # 1, 2: a broken set-up must not go unnoticed.
  *) exit "$rc" ;;
esac

# Kong's own unit: `kong prepare -p /usr/local/kong` (add `-c /etc/kong/kong.conf` if you use one).
exec /usr/local/bin/kong prepare -p "$prefix" ${KONG_CONF:+-c "$KONG_CONF"}
