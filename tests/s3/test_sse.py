"""Server-side encryption with boto3 and raw requests against a real server: SSE-C (PUT, GET,
HEAD, ranges, copy with source and destination keys, multipart, attributes), SSE-S3, SSE-KMS
with tenant-scoped key ids, bucket default encryption, SSE-C over plain HTTP refused, SSE-C over
TLS, and the customer's key found nowhere in the data directory, the log or the audit trail.

The module starts its own server with allow_sse_c_over_http (the test servers speak HTTP), and
one with TLS and nothing allowed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from botocore.exceptions import ClientError

from tests.conftest import empty_bucket, make_client
from tests.server import ACCESS_KEY, SECRET_KEY, TENANT, Server
from tests.tenants import admin_client, create_tenant

MiB = 1 << 20

pytestmark = pytest.mark.skipif(bool(os.environ.get("COFFRE_TEST_ENDPOINT")),
                                reason="starts its own coffre servers (SSE-C over HTTP allowed, and TLS)")


def _error(exc: pytest.ExceptionInfo[ClientError]) -> tuple[int, str, str]:
    err = exc.value.response
    return (err["ResponseMetadata"]["HTTPStatusCode"], err.get("Error", {}).get("Code", ""),
            err.get("Error", {}).get("Message", ""))


def new_key() -> bytes:
    return secrets.token_bytes(32)


def ssec(key: bytes) -> dict[str, str]:
    """boto3's SSE-C parameters (it base64-encodes the key and adds its MD5)."""
    return {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": key}  # type: ignore[dict-item]


def ssec_encoded(key: bytes, md5: str | None = None) -> dict[str, str]:
    """SSE-C parameters already encoded, for the operations boto3 does not encode for
    (GetObjectAttributes), or with a chosen (wrong) MD5."""
    return {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": base64.b64encode(key).decode(),
            "SSECustomerKeyMD5": md5 or key_md5(key)}


def copy_ssec(key: bytes) -> dict[str, str]:
    return {"CopySourceSSECustomerAlgorithm": "AES256", "CopySourceSSECustomerKey": key}  # type: ignore[dict-item]


def key_md5(key: bytes) -> str:
    return base64.b64encode(hashlib.md5(key).digest()).decode()


# -- servers and clients --
@pytest.fixture(scope="module")
def sse_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(str(tmp_path_factory.mktemp("sse") / "data"), env={"COFFRE_ALLOW_SSE_C_OVER_HTTP": "1"}).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def s3c(sse_server):
    return make_client(sse_server.endpoint, (ACCESS_KEY, SECRET_KEY))


@pytest.fixture(scope="module")
def tenant_id(sse_server) -> str:
    return admin_client(sse_server).call("GET", f"/tenants/{TENANT}")["id"]


@pytest.fixture
def bkt(s3c) -> Iterator[str]:
    name = "sse-" + uuid.uuid4().hex[:20]
    s3c.create_bucket(Bucket=name)
    yield name
    empty_bucket(s3c, name)
    s3c.delete_bucket(Bucket=name)


# -- SSE-C --
def test_sse_c_round_trip_head_and_ranges(s3c, bkt):
    key = new_key()
    body = os.urandom(300_000)
    put = s3c.put_object(Bucket=bkt, Key="c", Body=body, **ssec(key))
    assert put["SSECustomerAlgorithm"] == "AES256"
    assert put["SSECustomerKeyMD5"] == key_md5(key)
    assert "ServerSideEncryption" not in put
    # The ETag is not the MD5 of the data (as on AWS), and is stable for the object.
    assert put["ETag"].strip('"') != hashlib.md5(body).hexdigest()
    got = s3c.get_object(Bucket=bkt, Key="c", **ssec(key))
    assert got["Body"].read() == body
    assert got["SSECustomerAlgorithm"] == "AES256" and got["SSECustomerKeyMD5"] == key_md5(key)
    assert got["ETag"] == put["ETag"]
    head = s3c.head_object(Bucket=bkt, Key="c", **ssec(key))
    assert head["ContentLength"] == len(body) and head["SSECustomerAlgorithm"] == "AES256"
    for rng, (lo, hi) in (("bytes=0-0", (0, 1)), ("bytes=65530-65600", (65530, 65601)),
                          ("bytes=-1000", (len(body) - 1000, len(body))), ("bytes=299990-", (299990, len(body)))):
        part = s3c.get_object(Bucket=bkt, Key="c", Range=rng, **ssec(key))
        assert part["Body"].read() == body[lo:hi], rng
    # Conditional reads compare with the stored (non-MD5) ETag.
    assert s3c.get_object(Bucket=bkt, Key="c", IfMatch=put["ETag"], **ssec(key))["Body"].read() == body


def test_sse_c_empty_object(s3c, bkt):
    key = new_key()
    s3c.put_object(Bucket=bkt, Key="e", Body=b"", **ssec(key))
    assert s3c.get_object(Bucket=bkt, Key="e", **ssec(key))["Body"].read() == b""


def test_sse_c_wrong_or_missing_key(s3c, bkt):
    key = new_key()
    s3c.put_object(Bucket=bkt, Key="c", Body=b"secret data", **ssec(key))
    with pytest.raises(ClientError) as e:
        s3c.get_object(Bucket=bkt, Key="c", **ssec(new_key()))
    assert _error(e)[:2] == (403, "AccessDenied")
    with pytest.raises(ClientError) as e:
        s3c.head_object(Bucket=bkt, Key="c", **ssec(new_key()))
    assert _error(e)[0] == 403
    with pytest.raises(ClientError) as e:
        s3c.get_object(Bucket=bkt, Key="c")
    status, code, message = _error(e)
    assert (status, code) == (400, "InvalidRequest")
    assert "stored using a form of Server Side Encryption" in message
    with pytest.raises(ClientError) as e:
        s3c.head_object(Bucket=bkt, Key="c")
    assert _error(e)[0] == 400
    with pytest.raises(ClientError) as e:
        s3c.get_object_attributes(Bucket=bkt, Key="c", ObjectAttributes=["ObjectSize"])
    assert _error(e)[:2] == (400, "InvalidRequest")
    attrs = s3c.get_object_attributes(Bucket=bkt, Key="c", ObjectAttributes=["ObjectSize"], **ssec_encoded(key))
    assert attrs["ObjectSize"] == len(b"secret data")
    # A key on an object that was not written with one.
    s3c.put_object(Bucket=bkt, Key="plain", Body=b"x")
    with pytest.raises(ClientError) as e:
        s3c.get_object(Bucket=bkt, Key="plain", **ssec(key))
    assert _error(e)[:2] == (400, "InvalidRequest")


def test_sse_c_malformed_headers(s3c, bkt):
    key = new_key()
    cases = [
        (ssec_encoded(key, key_md5(new_key())), "MD5 hash of the key did not match"),
        ({"SSECustomerAlgorithm": "AES128", "SSECustomerKey": key}, "valid encryption algorithm"),
        ({"SSECustomerAlgorithm": "AES256", "SSECustomerKey": key[:16]}, "secret key was invalid"),
        ({"SSECustomerAlgorithm": "AES256", "SSECustomerKey": key, "ServerSideEncryption": "AES256"},
         "incompatible"),
    ]
    for params, words in cases:
        with pytest.raises(ClientError) as e:
            s3c.put_object(Bucket=bkt, Key="m", Body=b"x", **params)
        status, code, message = _error(e)
        assert (status, code) == (400, "InvalidArgument"), params.keys()
        assert words in message
        # The key never comes back in an error.
        assert base64.b64encode(key).decode() not in str(e.value.response)
    with pytest.raises(ClientError):
        s3c.head_object(Bucket=bkt, Key="m")  # nothing was written


def test_copy_with_source_and_destination_keys(s3c, bkt):
    k1, k2 = new_key(), new_key()
    body = os.urandom(70_000)
    s3c.put_object(Bucket=bkt, Key="src", Body=body, **ssec(k1))
    # SSE-C to SSE-C under another key.
    out = s3c.copy_object(Bucket=bkt, Key="dst", CopySource={"Bucket": bkt, "Key": "src"},
                          **copy_ssec(k1), **ssec(k2))
    assert out["SSECustomerAlgorithm"] == "AES256" and out["SSECustomerKeyMD5"] == key_md5(k2)
    assert s3c.get_object(Bucket=bkt, Key="dst", **ssec(k2))["Body"].read() == body
    with pytest.raises(ClientError) as e:
        s3c.get_object(Bucket=bkt, Key="dst", **ssec(k1))
    assert _error(e)[0] == 403
    # SSE-C to SSE-S3, and SSE-S3 back to SSE-C.
    s3c.copy_object(Bucket=bkt, Key="plain", CopySource={"Bucket": bkt, "Key": "src"}, **copy_ssec(k1))
    got = s3c.get_object(Bucket=bkt, Key="plain")
    assert got["Body"].read() == body and got["ServerSideEncryption"] == "AES256"
    s3c.copy_object(Bucket=bkt, Key="again", CopySource={"Bucket": bkt, "Key": "plain"}, **ssec(k2))
    assert s3c.get_object(Bucket=bkt, Key="again", **ssec(k2))["Body"].read() == body
    # The source's key missing, or wrong.
    with pytest.raises(ClientError) as e:
        s3c.copy_object(Bucket=bkt, Key="x", CopySource={"Bucket": bkt, "Key": "src"})
    assert _error(e)[:2] == (400, "InvalidRequest")
    with pytest.raises(ClientError) as e:
        s3c.copy_object(Bucket=bkt, Key="x", CopySource={"Bucket": bkt, "Key": "src"}, **copy_ssec(k2))
    assert _error(e)[:2] == (403, "AccessDenied")
    # Re-keying an object in place is a change AWS accepts for a copy onto itself.
    s3c.copy_object(Bucket=bkt, Key="src", CopySource={"Bucket": bkt, "Key": "src"}, **copy_ssec(k1), **ssec(k2))
    assert s3c.get_object(Bucket=bkt, Key="src", **ssec(k2))["Body"].read() == body


def test_multipart_sse_c(s3c, bkt):
    key, other = new_key(), new_key()
    p1, p2 = os.urandom(5 * MiB), os.urandom(123_456)
    up = s3c.create_multipart_upload(Bucket=bkt, Key="mp", **ssec(key))
    assert up["SSECustomerAlgorithm"] == "AES256" and up["SSECustomerKeyMD5"] == key_md5(key)
    uid = up["UploadId"]
    with pytest.raises(ClientError) as e:
        s3c.upload_part(Bucket=bkt, Key="mp", UploadId=uid, PartNumber=1, Body=p1)
    assert _error(e)[:2] == (400, "InvalidRequest")
    with pytest.raises(ClientError) as e:
        s3c.upload_part(Bucket=bkt, Key="mp", UploadId=uid, PartNumber=1, Body=p1, **ssec(other))
    assert _error(e)[:2] == (400, "InvalidRequest")
    r1 = s3c.upload_part(Bucket=bkt, Key="mp", UploadId=uid, PartNumber=1, Body=p1, **ssec(key))
    assert r1["SSECustomerAlgorithm"] == "AES256"
    # UploadPartCopy from an SSE-C source (its own key) into this SSE-C upload.
    s3c.put_object(Bucket=bkt, Key="srcpart", Body=p2, **ssec(other))
    r2 = s3c.upload_part_copy(Bucket=bkt, Key="mp", UploadId=uid, PartNumber=2,
                              CopySource={"Bucket": bkt, "Key": "srcpart"}, **copy_ssec(other), **ssec(key))
    done = s3c.complete_multipart_upload(
        Bucket=bkt, Key="mp", UploadId=uid,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": r1["ETag"]},
                                   {"PartNumber": 2, "ETag": r2["CopyPartResult"]["ETag"]}]})
    assert done["ETag"].endswith('-2"')
    whole = p1 + p2
    assert s3c.get_object(Bucket=bkt, Key="mp", **ssec(key))["Body"].read() == whole
    lo, hi = 5 * MiB - 10, 5 * MiB + 10  # across the part boundary
    got = s3c.get_object(Bucket=bkt, Key="mp", Range=f"bytes={lo}-{hi - 1}", **ssec(key))
    assert got["Body"].read() == whole[lo:hi]
    with pytest.raises(ClientError) as e:
        s3c.get_object(Bucket=bkt, Key="mp", **ssec(other))
    assert _error(e)[0] == 403
    attrs = s3c.get_object_attributes(Bucket=bkt, Key="mp", ObjectAttributes=["ObjectParts", "ObjectSize"],
                                      **ssec_encoded(key))
    assert attrs["ObjectSize"] == len(whole) and attrs["ObjectParts"]["TotalPartsCount"] == 2


# -- SSE-S3 and SSE-KMS --
def test_sse_s3_explicit_and_default(s3c, bkt):
    put = s3c.put_object(Bucket=bkt, Key="a", Body=b"hello", ServerSideEncryption="AES256")
    assert put["ServerSideEncryption"] == "AES256"
    assert put["ETag"].strip('"') == hashlib.md5(b"hello").hexdigest()
    assert s3c.head_object(Bucket=bkt, Key="a")["ServerSideEncryption"] == "AES256"
    assert s3c.put_object(Bucket=bkt, Key="b", Body=b"x")["ServerSideEncryption"] == "AES256"
    with pytest.raises(ClientError) as e:
        s3c.put_object(Bucket=bkt, Key="z", Body=b"x", ServerSideEncryption="rot13")  # type: ignore[arg-type]
    assert _error(e)[:2] == (400, "InvalidArgument")


def test_sse_kms_default_key_context_and_bucket_key(s3c, bkt, tenant_id):
    ctx = base64.b64encode(json.dumps({"project": "alpha"}).encode()).decode()
    put = s3c.put_object(Bucket=bkt, Key="k", Body=b"kms data", ServerSideEncryption="aws:kms",
                         SSEKMSEncryptionContext=ctx, BucketKeyEnabled=True)
    assert put["ServerSideEncryption"] == "aws:kms"
    arn = put["SSEKMSKeyId"]
    assert arn.startswith(f"arn:aws:kms:us-east-1:{tenant_id}:key/")
    assert put["BucketKeyEnabled"] is True
    got = s3c.get_object(Bucket=bkt, Key="k")
    assert got["Body"].read() == b"kms data"
    assert got["ServerSideEncryption"] == "aws:kms" and got["SSEKMSKeyId"] == arn
    # The same default key by its ARN, its id, and the aws/s3 alias.
    for given in (arn, arn.rsplit("/", 1)[1], "alias/aws/s3"):
        out = s3c.put_object(Bucket=bkt, Key="k2", Body=b"y", ServerSideEncryption="aws:kms", SSEKMSKeyId=given)
        assert out["SSEKMSKeyId"] == arn
    assert s3c.get_object(Bucket=bkt, Key="k2")["Body"].read() == b"y"
    # Multipart under SSE-KMS.
    up = s3c.create_multipart_upload(Bucket=bkt, Key="kmp", ServerSideEncryption="aws:kms")
    assert up["ServerSideEncryption"] == "aws:kms" and up["SSEKMSKeyId"] == arn
    r = s3c.upload_part(Bucket=bkt, Key="kmp", UploadId=up["UploadId"], PartNumber=1, Body=b"part")
    assert r["ServerSideEncryption"] == "aws:kms"
    s3c.complete_multipart_upload(Bucket=bkt, Key="kmp", UploadId=up["UploadId"],
                                  MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": r["ETag"]}]})
    got = s3c.get_object(Bucket=bkt, Key="kmp")
    assert got["Body"].read() == b"part" and got["SSEKMSKeyId"] == arn


def test_sse_kms_errors(s3c, bkt, tenant_id):
    for given in ("no-such-key", str(uuid.uuid4()), f"arn:aws:kms:us-east-1:{tenant_id}:key/{uuid.uuid4()}",
                  f"arn:aws:kms:eu-west-3:{tenant_id}:key/{uuid.uuid4()}"):
        with pytest.raises(ClientError) as e:
            s3c.put_object(Bucket=bkt, Key="x", Body=b"x", ServerSideEncryption="aws:kms", SSEKMSKeyId=given)
        status, code, message = _error(e)
        assert (status, code) == (400, "KMS.NotFoundException")
        assert f"Invalid keyId '{given}'" in message
    with pytest.raises(ClientError) as e:
        s3c.put_object(Bucket=bkt, Key="x", Body=b"x", ServerSideEncryption="AES256", SSEKMSKeyId="alias/aws/s3")
    assert _error(e)[:2] == (400, "InvalidArgument")
    with pytest.raises(ClientError) as e:
        s3c.put_object(Bucket=bkt, Key="x", Body=b"x", ServerSideEncryption="aws:kms",
                       SSEKMSEncryptionContext=base64.b64encode(b"[1, 2]").decode())
    assert _error(e)[:2] == (400, "InvalidArgument")


def test_kms_keys_are_scoped_to_their_tenant(sse_server, s3c, bkt, tenant_id):
    admin = admin_client(sse_server)
    mine = admin.call("POST", f"/tenants/{TENANT}/kms-keys", {"description": "project alpha"})
    assert mine["arn"] == f"arn:aws:kms:us-east-1:{tenant_id}:key/{mine['key_id']}"
    listed = admin.call("GET", f"/tenants/{TENANT}/kms-keys")
    assert mine["key_id"] in [k["key_id"] for k in listed["kms_keys"]]
    put = s3c.put_object(Bucket=bkt, Key="own", Body=b"mine", ServerSideEncryption="aws:kms",
                         SSEKMSKeyId=mine["key_id"])
    assert put["SSEKMSKeyId"] == mine["arn"]
    assert s3c.get_object(Bucket=bkt, Key="own")["Body"].read() == b"mine"
    default_arn = s3c.put_object(Bucket=bkt, Key="d", Body=b"d", ServerSideEncryption="aws:kms")["SSEKMSKeyId"]

    other = make_client(sse_server.endpoint, create_tenant(sse_server))
    ob = "sse-other-" + uuid.uuid4().hex[:12]
    other.create_bucket(Bucket=ob)
    try:
        # Another tenant's keys do not exist for this one: by id, by ARN, default or created.
        for given in (mine["key_id"], mine["arn"], default_arn, default_arn.rsplit("/", 1)[1]):
            with pytest.raises(ClientError) as e:
                other.put_object(Bucket=ob, Key="x", Body=b"x", ServerSideEncryption="aws:kms", SSEKMSKeyId=given)
            assert _error(e)[:2] == (400, "KMS.NotFoundException"), given
            with pytest.raises(ClientError) as e:
                other.put_bucket_encryption(Bucket=ob, ServerSideEncryptionConfiguration={"Rules": [{
                    "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": given}}]})
            assert _error(e)[:2] == (400, "KMS.NotFoundException"), given
        theirs = other.put_object(Bucket=ob, Key="y", Body=b"y", ServerSideEncryption="aws:kms")["SSEKMSKeyId"]
        assert theirs != default_arn
    finally:
        empty_bucket(other, ob)
        other.delete_bucket(Bucket=ob)

    # A disabled key neither encrypts nor decrypts, until enabled again.
    admin.call("POST", f"/tenants/{TENANT}/kms-keys/{mine['key_id']}/disable")
    with pytest.raises(ClientError) as e:
        s3c.get_object(Bucket=bkt, Key="own")
    assert _error(e)[:2] == (400, "KMS.DisabledException")
    # Describing the object opens nothing: HEAD still answers, with the key's ARN.
    assert s3c.head_object(Bucket=bkt, Key="own")["SSEKMSKeyId"] == mine["arn"]
    with pytest.raises(ClientError) as e:
        s3c.put_object(Bucket=bkt, Key="own2", Body=b"x", ServerSideEncryption="aws:kms", SSEKMSKeyId=mine["arn"])
    assert _error(e)[:2] == (400, "KMS.DisabledException")
    admin.call("POST", f"/tenants/{TENANT}/kms-keys/{mine['key_id']}/enable")
    assert s3c.get_object(Bucket=bkt, Key="own")["Body"].read() == b"mine"


def test_kms_key_cli(sse_server):
    env = dict(os.environ, COFFRE_ADMIN_ENDPOINT=sse_server.admin_endpoint,
               COFFRE_ROOT_ACCESS_KEY="COTESTOPERATOR000001",
               COFFRE_ROOT_SECRET_KEY="test-operator-secret-long-enough-00000")
    out = subprocess.run([sys.executable, "-m", "coffre", "admin", "kms-key", "create", "--tenant", TENANT,
                          "--description", "from the cli", "--json"], capture_output=True, text=True, env=env,
                         timeout=60, stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    listed = subprocess.run([sys.executable, "-m", "coffre", "admin", "kms-key", "list", "--tenant", TENANT],
                            capture_output=True, text=True, env=env, timeout=60, stdin=subprocess.DEVNULL)
    assert listed.returncode == 0 and doc["key_id"] in listed.stdout and "from the cli" in listed.stdout


# -- bucket default encryption --
def test_bucket_default_encryption(s3c, bkt, tenant_id):
    # Every bucket has a default, SSE-S3, as on AWS.
    cfg = s3c.get_bucket_encryption(Bucket=bkt)["ServerSideEncryptionConfiguration"]
    rule = cfg["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert rule["BucketKeyEnabled"] is False
    s3c.put_bucket_encryption(Bucket=bkt, ServerSideEncryptionConfiguration={"Rules": [{
        "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"}, "BucketKeyEnabled": True}]})
    rule = s3c.get_bucket_encryption(Bucket=bkt)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms" and rule["BucketKeyEnabled"]
    # PUT, multipart and copy without headers follow the default.
    put = s3c.put_object(Bucket=bkt, Key="p", Body=b"default")
    assert put["ServerSideEncryption"] == "aws:kms" and put["BucketKeyEnabled"] is True
    arn = put["SSEKMSKeyId"]
    assert arn.startswith(f"arn:aws:kms:us-east-1:{tenant_id}:key/")
    up = s3c.create_multipart_upload(Bucket=bkt, Key="m")
    assert up["ServerSideEncryption"] == "aws:kms"
    r = s3c.upload_part(Bucket=bkt, Key="m", UploadId=up["UploadId"], PartNumber=1, Body=b"mp")
    s3c.complete_multipart_upload(Bucket=bkt, Key="m", UploadId=up["UploadId"],
                                  MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": r["ETag"]}]})
    assert s3c.head_object(Bucket=bkt, Key="m")["ServerSideEncryption"] == "aws:kms"
    cp = s3c.copy_object(Bucket=bkt, Key="c", CopySource={"Bucket": bkt, "Key": "p"})
    assert cp["ServerSideEncryption"] == "aws:kms"
    # A request's own choice wins over the default; SSE-C too.
    assert s3c.put_object(Bucket=bkt, Key="s3", Body=b"x", ServerSideEncryption="AES256")["ServerSideEncryption"] \
        == "AES256"
    key = new_key()
    assert "ServerSideEncryption" not in s3c.put_object(Bucket=bkt, Key="sc", Body=b"x", **ssec(key))
    # A named key is stored by id and shown as its ARN.
    s3c.put_bucket_encryption(Bucket=bkt, ServerSideEncryptionConfiguration={"Rules": [{
        "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "alias/aws/s3"}}]})
    rule = s3c.get_bucket_encryption(Bucket=bkt)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"]["KMSMasterKeyID"] == arn
    with pytest.raises(ClientError) as e:
        s3c.put_bucket_encryption(Bucket=bkt, ServerSideEncryptionConfiguration={"Rules": [{
            "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256", "KMSMasterKeyID": arn}}]})
    assert _error(e)[:2] == (400, "InvalidArgument")
    # Delete: back to SSE-S3, for new writes; what was written stays as it was.
    s3c.delete_bucket_encryption(Bucket=bkt)
    rule = s3c.get_bucket_encryption(Bucket=bkt)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}
    assert s3c.put_object(Bucket=bkt, Key="after", Body=b"x")["ServerSideEncryption"] == "AES256"
    got = s3c.get_object(Bucket=bkt, Key="p")
    assert got["Body"].read() == b"default" and got["ServerSideEncryption"] == "aws:kms"


def test_bucket_encryption_malformed(sse_server, bkt):
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    def put(body: bytes, extra: dict[str, str] | None = None) -> requests.Response:
        url = f"{sse_server.endpoint}/{bkt}?encryption"
        req = AWSRequest(method="PUT", url=url, data=body,
                         headers={"x-amz-content-sha256": hashlib.sha256(body).hexdigest(), **(extra or {})})
        SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", "us-east-1").add_auth(req)
        return requests.put(url, data=body, headers=dict(req.headers), timeout=30)

    for body in (b"<nope/>", b"<ServerSideEncryptionConfiguration/>",
                 b"<ServerSideEncryptionConfiguration><Rule/></ServerSideEncryptionConfiguration>"):
        r = put(body)
        assert r.status_code == 400 and b"<Code>MalformedXML</Code>" in r.content, body
    r = put(b"<ServerSideEncryptionConfiguration><Rule><ApplyServerSideEncryptionByDefault><SSEAlgorithm>DES"
            b"</SSEAlgorithm></ApplyServerSideEncryptionByDefault></Rule></ServerSideEncryptionConfiguration>")
    assert r.status_code == 400 and b"<Code>InvalidArgument</Code>" in r.content
    # A digest is optional, but one that was sent must match the body; nothing is set otherwise.
    good = (b"<ServerSideEncryptionConfiguration><Rule><ApplyServerSideEncryptionByDefault><SSEAlgorithm>"
            b"AES256</SSEAlgorithm></ApplyServerSideEncryptionByDefault><BucketKeyEnabled>true</BucketKeyEnabled>"
            b"</Rule></ServerSideEncryptionConfiguration>")
    md5 = lambda b: base64.b64encode(hashlib.md5(b).digest()).decode()  # noqa: E731, S324
    s3 = make_client(sse_server.endpoint, (ACCESS_KEY, SECRET_KEY))

    def bucket_key() -> bool:
        rule = s3.get_bucket_encryption(Bucket=bkt)["ServerSideEncryptionConfiguration"]["Rules"][0]
        return bool(rule.get("BucketKeyEnabled"))

    assert not bucket_key()
    r = put(good, {"Content-MD5": md5(b"another body")})
    assert r.status_code == 400 and b"<Code>BadDigest</Code>" in r.content
    r = put(good, {"Content-MD5": "not base64!"})
    assert r.status_code == 400 and b"<Code>InvalidDigest</Code>" in r.content
    assert not bucket_key()  # nothing was set by the refused requests
    assert put(good, {"Content-MD5": md5(good)}).status_code == 200
    assert bucket_key()


# -- transport --
def test_sse_c_refused_over_plain_http(s3, bucket):
    """The shared server does not allow SSE-C over HTTP: refused as AWS refuses it, nothing written."""
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="c", Body=b"x", **ssec(new_key()))
    status, code, message = _error(e)
    assert (status, code) == (400, "InvalidRequest")
    assert message == ("Requests specifying Server Side Encryption with Customer provided keys must be made over "
                       "a secure connection.")
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="c")


@pytest.fixture(scope="module")
def tls_sse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str]]:
    out = tmp_path_factory.mktemp("sse-tls") / "certs"
    proc = subprocess.run([sys.executable, "-m", "coffre", "dev-cert", "--out", str(out)], capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc
    cert = str(out / "coffre-dev.crt")
    srv = Server(str(tmp_path_factory.mktemp("sse-tls-server") / "data"),
                 env={"COFFRE_TLS_CERT": cert, "COFFRE_TLS_KEY": str(out / "coffre-dev.key")}).start()
    yield srv, cert
    srv.stop()


def test_sse_c_over_tls(tls_sse):
    srv, cert = tls_sse
    import boto3
    from botocore.config import Config

    s3 = boto3.client("s3", endpoint_url=f"https://127.0.0.1:{srv.port}", region_name="us-east-1",
                      aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                      verify=cert,  # the dev certificate alone is trusted
                      config=Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"}))
    name = "sse-tls-" + uuid.uuid4().hex[:12]
    s3.create_bucket(Bucket=name)
    try:
        key = new_key()
        body = os.urandom(200_000)
        put = s3.put_object(Bucket=name, Key="c", Body=body, **ssec(key))
        assert put["SSECustomerKeyMD5"] == key_md5(key)
        assert s3.get_object(Bucket=name, Key="c", **ssec(key))["Body"].read() == body
        with pytest.raises(ClientError) as e:
            s3.get_object(Bucket=name, Key="c", **ssec(new_key()))
        assert _error(e)[:2] == (403, "AccessDenied")
    finally:
        empty_bucket(s3, name)
        s3.delete_bucket(Bucket=name)


# -- the key is never kept --
def test_customer_key_found_nowhere(sse_server, s3c, bkt):
    key = new_key()
    s3c.put_object(Bucket=bkt, Key="secret", Body=b"top secret " * 1000, **ssec(key))
    up = s3c.create_multipart_upload(Bucket=bkt, Key="mp", **ssec(key))
    r = s3c.upload_part(Bucket=bkt, Key="mp", UploadId=up["UploadId"], PartNumber=1, Body=b"part", **ssec(key))
    s3c.complete_multipart_upload(Bucket=bkt, Key="mp", UploadId=up["UploadId"],
                                  MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": r["ETag"]}]})
    s3c.copy_object(Bucket=bkt, Key="copy", CopySource={"Bucket": bkt, "Key": "secret"}, **copy_ssec(key), **ssec(key))
    with pytest.raises(ClientError):
        s3c.get_object(Bucket=bkt, Key="secret", **ssec(new_key()))
    assert s3c.get_object(Bucket=bkt, Key="secret", **ssec(key))["Body"].read().startswith(b"top secret")
    needles = [key, base64.b64encode(key), key.hex().encode(), key.hex().upper().encode(),
               base64.urlsafe_b64encode(key)]
    files = [p for p in Path(sse_server.data_dir).rglob("*") if p.is_file()]
    if sse_server.log_path:
        files.append(Path(sse_server.log_path))
    assert any(p.name.startswith("meta.sqlite3") for p in files)
    assert any("audit" in p.parts for p in files)
    for p in files:
        data = p.read_bytes()
        for needle in needles:
            assert needle not in data, f"the customer key is in {p}"


# -- rotation re-wraps the outer layer only --
def test_sse_objects_survive_root_and_tenant_key_rotation(tmp_path: Path):
    """SSE-C and SSE-KMS inner wraps sit under the tenant key's: rotating and retiring the root
    key and the tenant key re-wraps around them (the customer's key is never needed), and every
    object still reads back after a restart, with its key where it needs one."""
    data = str(tmp_path / "data")
    env = {"COFFRE_ALLOW_SSE_C_OVER_HTTP": "1", "COFFRE_KEY_RETIRE_GRACE_SECONDS": "0"}
    srv = Server(data, env=env).start()
    try:
        s3 = make_client(srv.endpoint, (ACCESS_KEY, SECRET_KEY))
        s3.create_bucket(Bucket="rot")
        admin = admin_client(srv)
        made = admin.call("POST", f"/tenants/{TENANT}/kms-keys", {})
        key = new_key()
        bodies = {"c": os.urandom(5000), "kms": os.urandom(3000), "kms2": os.urandom(2000), "plain": b"p"}
        s3.put_object(Bucket="rot", Key="c", Body=bodies["c"], **ssec(key))
        s3.put_object(Bucket="rot", Key="kms", Body=bodies["kms"], ServerSideEncryption="aws:kms",
                      SSEKMSEncryptionContext=base64.b64encode(b'{"a":"b"}').decode())
        s3.put_object(Bucket="rot", Key="kms2", Body=bodies["kms2"], ServerSideEncryption="aws:kms",
                      SSEKMSKeyId=made["key_id"])
        s3.put_object(Bucket="rot", Key="plain", Body=bodies["plain"])

        def read_all(client) -> None:
            for k, b in bodies.items():
                extra = ssec(key) if k == "c" else {}
                assert client.get_object(Bucket="rot", Key=k, **extra)["Body"].read() == b, k

        admin.call("POST", "/key-versions/rotate", {}, query={"wait": "true"})
        admin.call("POST", "/key-versions/1/retire", {})
        admin.call("POST", f"/tenants/{TENANT}/key-versions/rotate", {}, query={"wait": "true"})
        admin.call("POST", f"/tenants/{TENANT}/key-versions/1/retire", {})
        read_all(s3)
        srv.stop()
        srv = Server(data, port=srv.port, admin_port=srv.admin_port, env=env).start()
        read_all(make_client(srv.endpoint, (ACCESS_KEY, SECRET_KEY)))
    finally:
        srv.stop()


def test_kms_actions_asked_when_policies_name_them(sse_server, s3c, bkt):
    """A user's policy that names kms actions is asked for them: kms:GenerateDataKey to write under
    SSE-KMS, kms:Decrypt to read; a policy that names none is not (S3 permissions suffice)."""
    import boto3

    iam = boto3.client("iam", endpoint_url=sse_server.endpoint, region_name="us-east-1",
                       aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)
    user = "kms-" + uuid.uuid4().hex[:8]
    iam.create_user(UserName=user)
    key = iam.create_access_key(UserName=user)["AccessKey"]
    as_user = make_client(sse_server.endpoint, (key["AccessKeyId"], key["SecretAccessKey"]))
    s3_only = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
    iam.put_user_policy(UserName=user, PolicyName="p", PolicyDocument=json.dumps(s3_only))
    as_user.put_object(Bucket=bkt, Key="k", Body=b"kms", ServerSideEncryption="aws:kms")
    assert as_user.get_object(Bucket=bkt, Key="k")["Body"].read() == b"kms"
    with_kms = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:*", "kms:GenerateDataKey"], "Resource": "*"},
        {"Effect": "Deny", "Action": "kms:Decrypt", "Resource": "arn:aws:kms:*:*:key/*"}]}
    iam.put_user_policy(UserName=user, PolicyName="p", PolicyDocument=json.dumps(with_kms))
    as_user.put_object(Bucket=bkt, Key="k2", Body=b"kms2", ServerSideEncryption="aws:kms")
    as_user.put_object(Bucket=bkt, Key="plain", Body=b"plain")
    with pytest.raises(ClientError) as e:
        as_user.get_object(Bucket=bkt, Key="k2")
    assert _error(e)[:2] == (403, "AccessDenied")
    assert as_user.get_object(Bucket=bkt, Key="plain")["Body"].read() == b"plain"
    no_generate = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:*", "kms:Decrypt"], "Resource": "*"}]}
    iam.put_user_policy(UserName=user, PolicyName="p", PolicyDocument=json.dumps(no_generate))
    with pytest.raises(ClientError) as e:
        as_user.put_object(Bucket=bkt, Key="k3", Body=b"x", ServerSideEncryption="aws:kms")
    assert _error(e)[:2] == (403, "AccessDenied")
    assert as_user.get_object(Bucket=bkt, Key="k2")["Body"].read() == b"kms2"


def test_bucket_policy_can_require_sse_c(s3c, bkt):
    """AWS's documented policy: deny uploads without x-amz-server-side-encryption-customer-algorithm."""
    policy = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Deny", "Principal": "*", "Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{bkt}/*",
        "Condition": {"Null": {"s3:x-amz-server-side-encryption-customer-algorithm": "true"}}}]}
    s3c.put_bucket_policy(Bucket=bkt, Policy=json.dumps(policy))
    try:
        with pytest.raises(ClientError) as e:
            s3c.put_object(Bucket=bkt, Key="plain", Body=b"x")
        assert _error(e)[:2] == (403, "AccessDenied")
        key = new_key()
        s3c.put_object(Bucket=bkt, Key="c", Body=b"x", **ssec(key))
        assert s3c.get_object(Bucket=bkt, Key="c", **ssec(key))["Body"].read() == b"x"
    finally:
        s3c.delete_bucket_policy(Bucket=bkt)


def test_post_object_with_sse_fields(sse_server, s3c, bkt):
    """A browser form's x-amz-server-side-encryption* fields, as the headers of a PUT."""
    from tests.s3.test_post_object import post

    signer = make_client(sse_server.endpoint, (ACCESS_KEY, SECRET_KEY), signature_version="s3v4")
    fields = {"x-amz-server-side-encryption": "aws:kms"}
    p = signer.generate_presigned_post(bkt, "form-kms", Fields=fields, Conditions=[fields])
    r = post(p, b"posted")
    assert r.status_code == 204, r.text
    assert r.headers["x-amz-server-side-encryption"] == "aws:kms"
    got = s3c.get_object(Bucket=bkt, Key="form-kms")
    assert got["Body"].read() == b"posted" and got["ServerSideEncryption"] == "aws:kms"
    key = new_key()
    fields = {"x-amz-server-side-encryption-customer-algorithm": "AES256",
              "x-amz-server-side-encryption-customer-key": base64.b64encode(key).decode(),
              "x-amz-server-side-encryption-customer-key-MD5": key_md5(key)}
    p = signer.generate_presigned_post(bkt, "form-c", Fields=fields, Conditions=[{k: v} for k, v in fields.items()])
    r = post(p, b"customer")
    assert r.status_code == 204, r.text
    assert r.headers["x-amz-server-side-encryption-customer-algorithm"] == "AES256"
    assert s3c.get_object(Bucket=bkt, Key="form-c", **ssec(key))["Body"].read() == b"customer"
