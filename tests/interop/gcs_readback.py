#!/usr/bin/env python3
"""Reads an object back from fake-gcs-server with google-cloud-storage; one JSON line out.

Called by tests/tests/interop_gcs.rs after the filter (in the host harness) exported a config:

    python3 tests/interop/gcs_readback.py --endpoint http://127.0.0.1:PORT --bucket B --key K \
        [--expect FILE]

fake-gcs-server checks no credentials, so the client is anonymous. Output fields: `ok`,
`length`, `sha256`, `bytes_equal` (with --expect), `metadata` (custom metadata), `content_type`,
`generation`; when the object is missing `ok` is false. Exit status 0 in both cases.
"""
import argparse
import hashlib
import json


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--bucket", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--expect", help="file holding the bytes the object must have")
    args = ap.parse_args()

    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(
        project="interop-project",
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": args.endpoint},
    )
    blob = client.bucket(args.bucket).get_blob(args.key)
    if blob is None:
        print(json.dumps({"ok": False}))
        return 0
    body = blob.download_as_bytes()
    out = {
        "ok": True,
        "length": len(body),
        "sha256": hashlib.sha256(body).hexdigest(),
        "metadata": blob.metadata or {},
        "content_type": blob.content_type,
        "generation": str(blob.generation),
    }
    if args.expect:
        with open(args.expect, "rb") as f:
            out["bytes_equal"] = f.read() == body
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
