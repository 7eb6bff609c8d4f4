#!/usr/bin/env bash
# Starts three S3 servers on free 127.0.0.1 ports, in the background, and waits until each
# answers: our mock S3 (over TCP), s3s-fs and moto_server with IAM auth on. Prints only
# `export VAR=value` lines on stdout (the CI evals them); progress and failures go to stderr.
# Logs and s3s-fs data: $S3_SERVERS_LOG_DIR (default: a fresh temp dir).
# The keys are throwaway test values for local servers, not secrets.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
logs="${S3_SERVERS_LOG_DIR:-$(mktemp -d -t s3-servers.XXXXXX)}"
mkdir -p "$logs"
export PATH="$HOME/.cargo/bin:$PATH"
bucket="interop"

# On any failure, stop what this script started so a retry does not find stale servers.
started=()
stop_started() { local p; for p in "${started[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap 'stop_started' ERR

# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# --- our mock: `host-harness serve s3` ---
mock_port="$(free_port)"
mock_log="$logs/mock-s3.log"
mock_args=(--port "$mock_port" --region us-east-1 --bucket "$bucket"
  --access-key MOCKRW --secret-key mock-rw-secret
  --read-only-access-key MOCKRO --read-only-secret-key mock-ro-secret)
harness_serve s3 "$mock_log" "${mock_args[@]}"
mock_pid=$server_pid
started+=("$mock_pid")
wait_http "http://127.0.0.1:$mock_port/" "$mock_pid" "mock S3" "$mock_log"
echo "export MOCK_S3_ENDPOINT=http://127.0.0.1:$mock_port"
echo "export MOCK_S3_ACCESS_KEY=MOCKRW MOCK_S3_SECRET_KEY=mock-rw-secret"
echo "export MOCK_S3_RO_ACCESS_KEY=MOCKRO MOCK_S3_RO_SECRET_KEY=mock-ro-secret"
echo "export MOCK_S3_BUCKET=$bucket MOCK_S3_PID=$mock_pid"

# --- s3s-fs: one key, buckets are directories ---
if ! command -v s3s-fs >/dev/null 2>&1; then echo "s3.sh: s3s-fs not installed (run .ci/setup.d/s3.sh)" >&2; exit 1; fi
s3s_port="$(free_port)"
s3s_log="$logs/s3s-fs.log"
mkdir -p "$logs/s3s-data/$bucket"
s3s-fs --host 127.0.0.1 --port "$s3s_port" --access-key S3SKEY --secret-key s3s-secret \
  "$logs/s3s-data" >"$s3s_log" 2>&1 &
s3s_pid=$!
started+=("$s3s_pid")
wait_http "http://127.0.0.1:$s3s_port/" "$s3s_pid" "s3s-fs" "$s3s_log"
echo "export S3S_ENDPOINT=http://127.0.0.1:$s3s_port"
echo "export S3S_ACCESS_KEY=S3SKEY S3S_SECRET_KEY=s3s-secret S3S_BUCKET=$bucket S3S_PID=$s3s_pid"

# --- moto: IAM users made while auth is off, then auth switched on ---
moto_port="$(free_port)"
moto_log="$logs/moto.log"
moto_server -H 127.0.0.1 -p "$moto_port" >"$moto_log" 2>&1 &
moto_pid=$!
started+=("$moto_pid")
wait_http "http://127.0.0.1:$moto_port/moto-api/" "$moto_pid" "moto" "$moto_log"
moto_env="$(MOTO_URL="http://127.0.0.1:$moto_port" BUCKET="$bucket" python3 - <<'PY'
import json, os, urllib.request
import boto3
url, bucket = os.environ["MOTO_URL"], os.environ["BUCKET"]
kw = dict(endpoint_url=url, region_name="us-east-1", aws_access_key_id="setup", aws_secret_access_key="setup")
iam = boto3.client("iam", **kw)
def user(name, actions):
    iam.create_user(UserName=name)
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions,
              "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]}]}
    iam.put_user_policy(UserName=name, PolicyName=f"{name}-s3", PolicyDocument=json.dumps(policy))
    k = iam.create_access_key(UserName=name)["AccessKey"]
    return k["AccessKeyId"], k["SecretAccessKey"]
rw = user("interop-rw", ["s3:*"])
ro = user("interop-ro", ["s3:GetObject", "s3:ListBucket", "s3:HeadObject"])
boto3.client("s3", **kw).create_bucket(Bucket=bucket)
# From now on every request must be signed by a known user (moto's IAM auth).
# (text/plain, or Flask parses the body as a form and moto sees nothing.)
urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset-auth", data=b"0", method="POST",
                                              headers={"Content-Type": "text/plain"})).read()
print(f"export MOTO_ACCESS_KEY={rw[0]} MOTO_SECRET_KEY={rw[1]}")
print(f"export MOTO_RO_ACCESS_KEY={ro[0]} MOTO_RO_SECRET_KEY={ro[1]}")
PY
)"
echo "export MOTO_ENDPOINT=http://127.0.0.1:$moto_port"
echo "$moto_env"
echo "export MOTO_BUCKET=$bucket MOTO_PID=$moto_pid"
