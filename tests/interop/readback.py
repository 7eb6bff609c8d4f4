#!/usr/bin/env python3
"""Reads an object back with boto3 and reports what a real S3 client sees, as one JSON line.

Called by tests/tests/interop_s3.rs after the filter (in the host harness) exported a config:

    READBACK_ACCESS_KEY=.. READBACK_SECRET_KEY=.. python3 tests/interop/readback.py \
        --endpoint http://127.0.0.1:PORT --bucket B --key K [--expect FILE]

With `--list PREFIX` instead of `--key`, it lists the keys under PREFIX (every page) and prints
`{"ok": true, "objects": [{"key", "size", "last_modified", "content_type"}...]}` (the election's
registrations, as Kong Enterprise lists them). `--client-filter` lists the whole bucket and
filters by PREFIX locally (moto 5.2 miscomputes the signature of a list whose prefix holds a '/').
A list error prints `{"ok": false, "error_code": ...}`.

The keys come from the environment, never from argv (argv shows up in `ps`). Output fields:
`ok`, `length`, `sha256`, `bytes_equal` (with --expect), `metadata` (x-amz-meta-* without the
prefix), `server_side_encryption`, `storage_class`, `content_type`, `etag`; on a client error
`ok` is false and `error_code` holds S3's code. Exit status 0 in both cases; 2 on bad usage.
"""
import argparse
import hashlib
import json
import os
import sys


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--bucket", required=True)
    ap.add_argument("--key")
    ap.add_argument("--list", dest="list_prefix")
    ap.add_argument("--client-filter", action="store_true")
    ap.add_argument("--region", default="us-east-1")
    ap.add_argument("--expect", help="file holding the bytes the object must have")
    args = ap.parse_args()
    access_key = os.environ.get("READBACK_ACCESS_KEY")
    secret_key = os.environ.get("READBACK_SECRET_KEY")
    if not access_key or not secret_key:
        print("readback.py: READBACK_ACCESS_KEY / READBACK_SECRET_KEY not set", file=sys.stderr)
        return 2

    import boto3
    from botocore.config import Config
    from botocore.exceptions import ClientError

    s3 = boto3.client(
        "s3",
        endpoint_url=args.endpoint,
        region_name=args.region,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )
    if args.list_prefix is not None:
        objects = []
        server_prefix = "" if args.client_filter else args.list_prefix
        try:
            pages = list(s3.get_paginator("list_objects_v2").paginate(
                Bucket=args.bucket, Prefix=server_prefix))
        except ClientError as e:
            print(json.dumps({"ok": False, "error_code": e.response.get("Error", {}).get("Code")}))
            return 0
        for page in pages:
            for o in page.get("Contents", []):
                if not o["Key"].startswith(args.list_prefix):
                    continue
                head = s3.head_object(Bucket=args.bucket, Key=o["Key"])
                objects.append({"key": o["Key"], "size": o["Size"],
                                "last_modified": o["LastModified"].timestamp(),
                                "content_type": head.get("ContentType")})
        print(json.dumps({"ok": True, "objects": objects}))
        return 0
    if not args.key:
        print("readback.py: --key or --list is required", file=sys.stderr)
        return 2
    try:
        obj = s3.get_object(Bucket=args.bucket, Key=args.key)
    except ClientError as e:
        err = e.response.get("Error", {})
        print(json.dumps({"ok": False, "error_code": err.get("Code"),
                          "status": e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")}))
        return 0
    body = obj["Body"].read()
    out = {
        "ok": True,
        "length": len(body),
        "sha256": hashlib.sha256(body).hexdigest(),
        "metadata": obj.get("Metadata", {}),
        "server_side_encryption": obj.get("ServerSideEncryption"),
        "storage_class": obj.get("StorageClass"),
        "content_type": obj.get("ContentType"),
        "etag": obj.get("ETag"),
    }
    if args.expect:
        with open(args.expect, "rb") as f:
            out["bytes_equal"] = f.read() == body
    # A HEAD too: what the filter itself reads when a conditional write conflicts.
    head = s3.head_object(Bucket=args.bucket, Key=args.key)
    out["head_metadata"] = head.get("Metadata", {})
    out["head_server_side_encryption"] = head.get("ServerSideEncryption")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
