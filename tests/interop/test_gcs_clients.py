"""The google-cloud-storage client against our mock GCS and against fake-gcs-server.

The same storage scenarios run on both servers (parametrized), which shows that the mock and a
real third-party implementation agree. The auth scenarios run on the mock only: fake-gcs-server
checks no credentials.

Environment (`.ci/servers/gcs.sh` prints it):
  MOCK_GCS_ENDPOINT  our mock, e.g. http://127.0.0.1:PORT. Keys: the test generates an RSA key
                     with `cryptography` and registers its public half through the mock's
                     test-only `POST /_mock/service-accounts`; the key file's token_uri is the
                     mock's `/token`, so the client runs the real JWT-bearer token flow.
  FAKE_GCS_ENDPOINT  fake-gcs-server (anonymous credentials).
A missing variable skips the tests that need it, or fails them when CI is set.
"""

import json
import os
import uuid

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.api_core import exceptions as gexc
from google.auth import exceptions as auth_exc
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

READ_ONLY = "https://www.googleapis.com/auth/devstorage.read_only"
PROJECT = "interop-project"


def _endpoint(var):
    value = os.environ.get(var)
    if not value:
        msg = f"{var} is not set (start the servers with .ci/servers/gcs.sh)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return value.rstrip("/")


def _new_key(endpoint, email, register=True):
    """A service-account key file (dict) whose token_uri is the mock's; registered unless told."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    kid = uuid.uuid4().hex
    if register:
        pub = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()
        r = requests.post(
            f"{endpoint}/_mock/service-accounts",
            json={"client_email": email, "private_key_id": kid, "public_key_pem": pub},
            timeout=10,
        )
        assert r.status_code == 201, r.text
    return {
        "type": "service_account",
        "project_id": PROJECT,
        "private_key_id": kid,
        "private_key": key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode(),
        "client_email": email,
        "client_id": "100000000000000000001",
        "token_uri": f"{endpoint}/token",
    }


def _client_from_key_file(endpoint, key, tmp_path, scopes=None):
    path = tmp_path / "key.json"
    path.write_text(json.dumps(key))
    if scopes is None:
        return storage.Client.from_service_account_json(
            str(path), client_options={"api_endpoint": endpoint}
        )
    from google.oauth2 import service_account

    creds = service_account.Credentials.from_service_account_file(str(path), scopes=scopes)
    return storage.Client(
        project=PROJECT, credentials=creds, client_options={"api_endpoint": endpoint}
    )


@pytest.fixture(params=["mock", "fake-gcs-server"])
def client(request, tmp_path):
    """A storage client for one server (the mock through a real key file and token flow)."""
    if request.param == "mock":
        endpoint = _endpoint("MOCK_GCS_ENDPOINT")
        key = _new_key(endpoint, f"exporter-{uuid.uuid4().hex[:8]}@{PROJECT}.iam.gserviceaccount.com")
        return _client_from_key_file(endpoint, key, tmp_path)
    endpoint = _endpoint("FAKE_GCS_ENDPOINT")
    return storage.Client(
        project=PROJECT,
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": endpoint},
    )


@pytest.fixture
def bucket(client):
    return client.create_bucket(f"cb-{uuid.uuid4().hex[:12]}")


def test_upload_then_download_round_trips_bytes_and_metadata(bucket):
    body = json.dumps({"_format_version": "3.0", "services": []}).encode()
    blob = bucket.blob("kong/3.9.1/config.json")
    blob.upload_from_string(body, content_type="application/json")
    assert blob.generation and int(blob.generation) > 0

    fetched = bucket.get_blob("kong/3.9.1/config.json")
    assert fetched is not None
    assert fetched.size == len(body)
    assert fetched.content_type == "application/json"
    assert fetched.generation == blob.generation
    assert fetched.download_as_bytes() == body  # the client also checks the crc32c


def test_list_by_prefix_pages_through_everything(client, bucket):
    names = [f"p/{i:02d}" for i in range(5)] + ["other/x"]
    for n in names:
        bucket.blob(n).upload_from_string(n.encode())
    pages = list(client.list_blobs(bucket, prefix="p/", max_results=None, page_size=2).pages)
    listed = [b.name for page in pages for b in page]
    assert listed == [f"p/{i:02d}" for i in range(5)]
    assert len(pages) == 3


def test_if_generation_match_zero_lets_only_the_first_create(bucket):
    bucket.blob("election/node-a").upload_from_string(b"first", if_generation_match=0)
    with pytest.raises(gexc.PreconditionFailed):
        bucket.blob("election/node-a").upload_from_string(b"second", if_generation_match=0)
    assert bucket.blob("election/node-a").download_as_bytes() == b"first"


def test_if_generation_match_current_generation_replaces(bucket):
    blob = bucket.blob("config.json")
    blob.upload_from_string(b"v1")
    gen1 = blob.generation
    blob2 = bucket.blob("config.json")
    blob2.upload_from_string(b"v2", if_generation_match=gen1)
    assert blob2.generation != gen1
    with pytest.raises(gexc.PreconditionFailed):
        bucket.blob("config.json").upload_from_string(b"stale", if_generation_match=gen1)
    assert bucket.blob("config.json").download_as_bytes() == b"v2"


def test_delete_removes_the_object(bucket):
    blob = bucket.blob("gone.json")
    blob.upload_from_string(b"{}")
    blob.delete()
    assert bucket.get_blob("gone.json") is None
    with pytest.raises(gexc.NotFound):
        bucket.blob("gone.json").download_as_bytes()


def test_chunked_resumable_upload(bucket):
    data = bytes(range(256)) * 3000  # 768000 bytes: three 256 KiB chunks
    blob = bucket.blob("big.bin")
    blob.chunk_size = 256 * 1024
    blob.upload_from_string(data, content_type="application/octet-stream")
    assert bucket.blob("big.bin").download_as_bytes() == data


# --- auth: our mock only -----------------------------------------------------------------


def test_unknown_key_is_rejected_by_the_token_endpoint(tmp_path):
    endpoint = _endpoint("MOCK_GCS_ENDPOINT")
    key = _new_key(endpoint, f"stranger@{PROJECT}.iam.gserviceaccount.com", register=False)
    client = _client_from_key_file(endpoint, key, tmp_path)
    with pytest.raises(auth_exc.RefreshError) as err:
        client.create_bucket(f"cb-{uuid.uuid4().hex[:12]}")
    assert "invalid_grant" in str(err.value)


def test_read_only_scope_reads_but_cannot_write(tmp_path):
    endpoint = _endpoint("MOCK_GCS_ENDPOINT")
    email = f"rw-{uuid.uuid4().hex[:8]}@{PROJECT}.iam.gserviceaccount.com"
    key = _new_key(endpoint, email)
    writer = _client_from_key_file(endpoint, key, tmp_path)
    bucket = writer.create_bucket(f"cb-{uuid.uuid4().hex[:12]}")
    bucket.blob("config.json").upload_from_string(b"{}")

    reader = _client_from_key_file(endpoint, key, tmp_path, scopes=[READ_ONLY])
    rbucket = reader.bucket(bucket.name)
    assert rbucket.blob("config.json").download_as_bytes() == b"{}"
    with pytest.raises(gexc.Forbidden):
        rbucket.blob("config.json").upload_from_string(b"overwrite")


def test_requests_without_a_token_get_401():
    endpoint = _endpoint("MOCK_GCS_ENDPOINT")
    r = requests.get(f"{endpoint}/storage/v1/b/any/o", timeout=10)
    assert r.status_code == 401
    assert r.json()["error"]["code"] == 401
