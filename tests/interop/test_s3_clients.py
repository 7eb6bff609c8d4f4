"""The same boto3 scenarios against our mock S3, s3s-fs and moto: where a server supports a
feature, all of them must answer alike."""
import base64
import hashlib

import pytest
from botocore.exceptions import ClientError


def error_of(excinfo):
    e = excinfo.value
    return e.response["ResponseMetadata"]["HTTPStatusCode"], e.response["Error"]["Code"]


def test_put_get_head_delete(s3, prefix):
    c = s3.client()
    key = prefix + "config.json"
    body = b'{"_format_version":"3.0"}'
    put = c.put_object(Bucket=s3.bucket, Key=key, Body=body, ContentType="application/json")
    assert put["ETag"] == '"%s"' % hashlib.md5(body).hexdigest()
    got = c.get_object(Bucket=s3.bucket, Key=key)
    assert got["Body"].read() == body
    assert got["ETag"] == put["ETag"]
    assert got["ContentType"] == "application/json"
    head = c.head_object(Bucket=s3.bucket, Key=key)
    assert head["ContentLength"] == len(body)
    assert head["LastModified"] is not None
    c.delete_object(Bucket=s3.bucket, Key=key)
    with pytest.raises(ClientError) as ei:
        c.get_object(Bucket=s3.bucket, Key=key)
    assert error_of(ei) == (404, "NoSuchKey")


def test_missing_bucket_is_no_such_bucket(s3):
    s3.needs("no-such-bucket-code")
    with pytest.raises(ClientError) as ei:
        s3.client().get_object(Bucket="no-such-bucket-for-interop", Key="k")
    assert error_of(ei) == (404, "NoSuchBucket")


def test_list_prefix_pagination_and_start_after(s3, prefix):
    c = s3.client()
    keys = [f"{prefix}election-{i:02d}-node" for i in range(5)]
    for k in keys:
        c.put_object(Bucket=s3.bucket, Key=k, Body=b"x")
    c.put_object(Bucket=s3.bucket, Key=prefix + "config.json", Body=b"{}")

    seen, token, pages = [], None, 0
    while True:
        kw = {"ContinuationToken": token} if token else {}
        page = c.list_objects_v2(Bucket=s3.bucket, Prefix=prefix + "election-", MaxKeys=2, **kw)
        pages += 1
        assert page["KeyCount"] == len(page.get("Contents", []))
        seen += [o["Key"] for o in page.get("Contents", [])]
        if not page["IsTruncated"]:
            break
        token = page["NextContinuationToken"]
    assert seen == keys
    assert pages == 3

    after = c.list_objects_v2(Bucket=s3.bucket, Prefix=prefix, StartAfter=keys[2])
    assert [o["Key"] for o in after["Contents"]] == keys[3:]

    listed = c.list_objects_v2(Bucket=s3.bucket, Prefix=prefix + "config")
    assert [(o["Key"], o["Size"]) for o in listed["Contents"]] == [(prefix + "config.json", 2)]
    s3.needs("list-etag")
    assert listed["Contents"][0]["ETag"] == '"%s"' % hashlib.md5(b"{}").hexdigest()


def test_conditional_writes(s3, prefix):
    c = s3.client()
    key = prefix + "config.json"
    first = c.put_object(Bucket=s3.bucket, Key=key, Body=b"v1", IfNoneMatch="*")
    with pytest.raises(ClientError) as ei:
        c.put_object(Bucket=s3.bucket, Key=key, Body=b"v2", IfNoneMatch="*")
    assert error_of(ei) == (412, "PreconditionFailed")
    with pytest.raises(ClientError) as ei:
        c.put_object(Bucket=s3.bucket, Key=key, Body=b"v2", IfMatch='"0123456789abcdef0123456789abcdef"')
    assert error_of(ei) == (412, "PreconditionFailed")
    c.put_object(Bucket=s3.bucket, Key=key, Body=b"v3", IfMatch=first["ETag"])
    assert c.get_object(Bucket=s3.bucket, Key=key)["Body"].read() == b"v3"


def test_metadata_sse_and_storage_class_are_echoed(s3, prefix):
    s3.needs("storage-class")
    c = s3.client()
    key = prefix + "meta.json"
    put = c.put_object(Bucket=s3.bucket, Key=key, Body=b"{}", Metadata={"uploader": "node-1"},
                       ServerSideEncryption="AES256", StorageClass="STANDARD_IA")
    assert put.get("ServerSideEncryption") == "AES256"
    head = c.head_object(Bucket=s3.bucket, Key=key)
    assert head["Metadata"] == {"uploader": "node-1"}
    assert head.get("ServerSideEncryption") == "AES256"
    assert head.get("StorageClass") == "STANDARD_IA"


def test_bad_content_md5_is_bad_digest(s3, prefix):
    s3.needs("content-md5")
    wrong = base64.b64encode(hashlib.md5(b"something else").digest()).decode()
    with pytest.raises(ClientError) as ei:
        s3.client().put_object(Bucket=s3.bucket, Key=prefix + "k", Body=b"payload", ContentMD5=wrong)
    assert error_of(ei) == (400, "BadDigest")


def test_wrong_secret_is_signature_does_not_match(s3, prefix):
    c = s3.client(secret_key=s3.secret_key + "x")
    with pytest.raises(ClientError) as ei:
        c.put_object(Bucket=s3.bucket, Key=prefix + "k", Body=b"x")
    assert error_of(ei) == (403, "SignatureDoesNotMatch")


def test_unknown_access_key_is_rejected(s3, prefix):
    s3.needs("unknown-key-code")
    c = s3.client(access_key="AKIANOSUCHKEY0000000")
    with pytest.raises(ClientError) as ei:
        c.get_object(Bucket=s3.bucket, Key=prefix + "k")
    assert error_of(ei) == (403, "InvalidAccessKeyId")


def test_read_only_key_reads_but_cannot_write(s3, prefix):
    s3.needs("policies")
    key = prefix + "config.json"
    s3.client().put_object(Bucket=s3.bucket, Key=key, Body=b"{}")
    ro = s3.client(s3.ro_access_key, s3.ro_secret_key)
    assert ro.get_object(Bucket=s3.bucket, Key=key)["Body"].read() == b"{}"
    assert [o["Key"] for o in ro.list_objects_v2(Bucket=s3.bucket, Prefix=prefix)["Contents"]] == [key]
    with pytest.raises(ClientError) as ei:
        ro.put_object(Bucket=s3.bucket, Key=key, Body=b"overwrite")
    assert error_of(ei) == (403, "AccessDenied")
    with pytest.raises(ClientError) as ei:
        ro.delete_object(Bucket=s3.bucket, Key=key)
    assert error_of(ei) == (403, "AccessDenied")
    assert s3.client().get_object(Bucket=s3.bucket, Key=key)["Body"].read() == b"{}"
