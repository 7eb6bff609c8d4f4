# Shared by the server scripts (sourced): free ports and readiness checks. Messages go to stderr;
# stdout is reserved for the `export` lines the CI evals.

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# wait_http URL PID NAME LOG: waits until URL gets any HTTP answer (403/404 are fine) while PID lives.
wait_http() {
  local url="$1" pid="$2" name="$3" log="$4" i
  for i in $(seq 1 600); do
    if curl -s -o /dev/null --max-time 1 "$url"; then return 0; fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "$(basename "$0"): $name exited early; log follows" >&2; cat "$log" >&2; return 1
    fi
    sleep 0.5
  done
  echo "$(basename "$0"): $name not ready after 300 s" >&2; return 1
}

# harness_serve KIND LOG ARGS...: starts `host-harness serve KIND` in the background; sets
# $server_pid. Uses $HOST_HARNESS_BIN when set (CI builds the workspace first): `cargo run -p
# host-harness` would resolve different wasmtime features than the workspace build and recompile it.
harness_serve() {
  local kind="$1" log="$2"; shift 2
  if [ -n "${HOST_HARNESS_BIN:-}" ]; then
    "$HOST_HARNESS_BIN" serve "$kind" "$@" >"$log" 2>&1 &
  else
    (cd "$root" && exec cargo run -q -p host-harness -- serve "$kind" "$@") >"$log" 2>&1 &
  fi
  server_pid=$!
}
