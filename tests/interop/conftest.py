"""S3 servers for the interop tests, from the environment `.ci/servers/s3.sh` prints.

Each target is one server: our mock over TCP (MOCK_S3_*), s3s-fs (S3S_*) and moto with IAM auth
(MOTO_*). A missing server fails the test when CI is set (CI must not skip silently), and skips it
with the reason otherwise.
"""
import os
import uuid
from dataclasses import dataclass, field

import pytest


@dataclass
class S3Target:
    name: str
    endpoint: str
    access_key: str
    secret_key: str
    bucket: str
    ro_access_key: str | None = None
    ro_secret_key: str | None = None
    # Features this server does not have, with the reason (checked by `needs`).
    lacks: dict = field(default_factory=dict)

    def client(self, access_key=None, secret_key=None):
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=access_key or self.access_key,
            aws_secret_access_key=secret_key or self.secret_key,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )

    def needs(self, feature):
        if feature in self.lacks:
            pytest.skip(f"{self.name}: {self.lacks[feature]}")


# name -> (env prefix, features it lacks)
SERVERS = {
    "mock": ("MOCK_S3", {}),
    "s3s-fs": ("S3S", {
        "policies": "s3s-fs has a single key, no access policies",
        "no-such-bucket-code": "s3s-fs answers NoSuchKey for a missing bucket (real S3: NoSuchBucket)",
        "list-etag": "s3s-fs lists objects without their ETag",
        "storage-class": "s3s-fs refuses storage classes (InvalidStorageClass)",
        "unknown-key-code": "s3s-fs answers NotSignedUp for an unknown key (real S3: InvalidAccessKeyId)",
    }),
    "moto": ("MOTO", {
        "no-such-bucket-code": "moto's IAM policy covers one bucket, so another is AccessDenied (as on real S3)",
        "content-md5": "moto does not check Content-MD5",
    }),
}


def _target(name):
    prefix, lacks = SERVERS[name]
    env = {k: os.environ.get(f"{prefix}_{k}") for k in
           ("ENDPOINT", "ACCESS_KEY", "SECRET_KEY", "BUCKET", "RO_ACCESS_KEY", "RO_SECRET_KEY")}
    missing = [f"{prefix}_{k}" for k in ("ENDPOINT", "ACCESS_KEY", "SECRET_KEY", "BUCKET") if not env[k]]
    if missing:
        reason = f"{name}: {', '.join(missing)} not set (start servers with .ci/servers/s3.sh)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    lacks = dict(lacks)
    if not env["RO_ACCESS_KEY"] and "policies" not in lacks:
        lacks["policies"] = f"{prefix}_RO_ACCESS_KEY not set"
    return S3Target(name, env["ENDPOINT"], env["ACCESS_KEY"], env["SECRET_KEY"], env["BUCKET"],
                    env["RO_ACCESS_KEY"], env["RO_SECRET_KEY"], lacks)


@pytest.fixture(params=list(SERVERS))
def s3(request):
    return _target(request.param)


@pytest.fixture
def prefix():
    """A fresh key prefix, so tests neither see nor disturb each other's objects. No '/' in it:
    moto 5.2 miscomputes the signature of a ListObjectsV2 whose prefix holds a '/'."""
    return f"t-{uuid.uuid4().hex[:12]}-"
