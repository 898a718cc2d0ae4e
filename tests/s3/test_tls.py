"""HTTPS: a real `coffre serve` with a certificate made by `coffre dev-cert`, real clients over TLS.

Over https, botocore (and the aws cli v1 and v2, and the other SDKs) stop hashing the payload:
PutObject and UploadPart bodies go aws-chunked, STREAMING-UNSIGNED-PAYLOAD-TRAILER, with the
checksum (x-amz-checksum-crc32 by default) in a trailer. That is the production path of every
SDK, so it is exercised here with each client rather than assumed from the http tests.
"""

from __future__ import annotations

import hashlib
import http.client
import ipaddress
import os
import ssl
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import botocore.auth
import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError, EndpointConnectionError, SSLError

from tests.compat.helpers import clean_env, require_binary, run, venv_binary
from tests.conftest import empty_bucket, make_client
from tests.s3 import chunked_client as cc
from tests.server import ACCESS_KEY, SECRET_KEY, Server
from tests.unit.test_tlsconfig import (
    REFUSED_OFFERS,
    assert_refused_by_server,
    handshake,
    offer,
    permissive_context,
    tls_listener,
)

MiB = 1 << 20

pytestmark = pytest.mark.skipif(bool(os.environ.get("COFFRE_TEST_ENDPOINT")),
                                reason="starts its own coffre server with TLS settings")


@pytest.fixture(scope="module")
def credentials() -> tuple[str, str]:
    """The root credentials of the TLS server this module starts."""
    return ACCESS_KEY, SECRET_KEY


@pytest.fixture(scope="module")
def devcert(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A pair made by the real command, as a person would: `coffre dev-cert --out DIR --host ...`."""
    out = tmp_path_factory.mktemp("tls") / "certs"
    proc = subprocess.run([sys.executable, "-m", "coffre", "dev-cert", "--out", str(out), "--host", "s3.test",
                           "--host", "10.1.2.3"], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc
    return {"cert": str(out / "coffre-dev.crt"), "key": str(out / "coffre-dev.key"), "stdout": proc.stdout,
            "dir": str(out)}


@pytest.fixture(scope="module")
def tls_server(devcert, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(str(tmp_path_factory.mktemp("tls-server") / "data"),
                 env={"COFFRE_TLS_CERT": devcert["cert"], "COFFRE_TLS_KEY": devcert["key"]}).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def https_endpoint(tls_server) -> str:
    return f"https://127.0.0.1:{tls_server.port}"


@pytest.fixture(params=["crt", "python"])
def tls_s3(request, https_endpoint, credentials, devcert, monkeypatch):
    """boto3 over https, verifying with the dev certificate; signing with awscrt (as installed) or without."""
    if request.param == "python":
        monkeypatch.setitem(botocore.auth.AUTH_TYPE_MAPS, "s3v4", botocore.auth.S3SigV4Auth)
    else:
        assert botocore.auth.AUTH_TYPE_MAPS["s3v4"].__module__.startswith("botocore.crt"), \
            "awscrt is expected to be installed for the tests"
    return https_client(https_endpoint, credentials, devcert["cert"])


def https_client(endpoint: str, credentials: tuple[str, str], cafile: str | bool = True):
    """boto3 as a user writes it for a private endpoint: verify=<the certificate file>."""
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", verify=cafile,
                        aws_access_key_id=credentials[0], aws_secret_access_key=credentials[1],
                        config=Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"},
                                      signature_version="s3v4"))


@pytest.fixture
def tls_bucket(https_endpoint, credentials, devcert) -> Iterator[str]:
    s3 = https_client(https_endpoint, credentials, devcert["cert"])
    name = "tls-" + uuid.uuid4().hex[:20]
    s3.create_bucket(Bucket=name)
    yield name
    empty_bucket(s3, name)
    s3.delete_bucket(Bucket=name)


def capture_headers(client, operation: str) -> list[dict[str, str]]:
    seen: list[dict[str, str]] = []

    def hook(request, **kw):
        seen.append({k.lower(): (v.decode() if isinstance(v, bytes) else v) for k, v in request.headers.items()})

    client.meta.events.register(f"before-send.s3.{operation}", hook)
    return seen


def assert_streaming_trailer(headers: dict[str, str], checksum: str = "x-amz-checksum-crc32") -> None:
    """The SDK took the https path: unsigned aws-chunked body, checksum in a trailer."""
    assert headers["x-amz-content-sha256"] == cc.STREAMING_UNSIGNED_TRAILER, headers
    assert "aws-chunked" in headers["content-encoding"]
    assert headers["x-amz-trailer"] == checksum
    assert checksum not in headers  # the value travels after the body, not as a header


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# -- coffre dev-cert --
def test_dev_cert_files_modes_and_names(devcert):
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

    assert stat.S_IMODE(os.stat(devcert["key"]).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(devcert["cert"]).st_mode) == 0o644
    cert = x509.load_pem_x509_certificate(Path(devcert["cert"]).read_bytes())
    key = cert.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost", "s3.test"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1"),
                                                       ipaddress.ip_address("::1"),
                                                       ipaddress.ip_address("10.1.2.3")]
    assert cert.issuer == cert.subject  # self-signed: the file is its own trust anchor
    out = devcert["stdout"]
    for needed in (devcert["cert"], devcert["key"], f"--tls-cert {devcert['cert']}", f"--ca-bundle {devcert['cert']}",
                   f"AWS_CA_BUNDLE={devcert['cert']}", f'verify="{devcert["cert"]}"'):
        assert needed in out, needed


def test_dev_cert_does_not_overwrite_without_force(tmp_path: Path):
    cmd = [sys.executable, "-m", "coffre", "dev-cert", "--out", str(tmp_path)]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert first.returncode == 0, first
    key = (tmp_path / "coffre-dev.key").read_bytes()
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert again.returncode == 2 and "already exists" in again.stderr
    assert (tmp_path / "coffre-dev.key").read_bytes() == key
    forced = subprocess.run(cmd + ["--force"], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert forced.returncode == 0, forced
    assert (tmp_path / "coffre-dev.key").read_bytes() != key
    assert stat.S_IMODE(os.stat(tmp_path / "coffre-dev.key").st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["coffre-dev.crt", "coffre-dev.key"]  # no temp left


# -- the listener --
def test_banner_says_https(tls_server):
    with open(tls_server.log_path) as fh:
        assert f"coffre listening on https://127.0.0.1:{tls_server.port} " in fh.read()


def test_plain_http_to_the_tls_port_fails(tls_server, credentials):
    conn = http.client.HTTPConnection("127.0.0.1", tls_server.port, timeout=10)
    with pytest.raises((http.client.HTTPException, ConnectionError)):
        conn.request("GET", "/")
        conn.getresponse()
    conn.close()
    s3 = make_client(f"http://127.0.0.1:{tls_server.port}", credentials)
    with pytest.raises((EndpointConnectionError, ClientError, botocore.exceptions.ConnectionClosedError)):
        s3.list_buckets()


def test_client_without_the_certificate_refuses_the_server(https_endpoint, credentials):
    """Verification is real: the self-signed certificate is not trusted unless given to the client."""
    with pytest.raises(SSLError):
        https_client(https_endpoint, credentials).list_buckets()


@pytest.mark.parametrize("name", sorted(REFUSED_OFFERS))
def test_weak_protocols_and_suites_are_refused(devcert, tls_server, name):
    spec = offer(REFUSED_OFFERS[name])
    with tls_listener(permissive_context(devcert["cert"], devcert["key"])) as control:
        handshake(control, devcert["cert"], **spec)  # this client can negotiate it...
    assert_refused_by_server(tls_server.port, devcert["cert"], **spec)  # ...coffre refuses


@pytest.mark.parametrize("ciphers", ["AES128-SHA", "AES256-GCM-SHA384", "AES128-GCM-SHA256:AES256-SHA256"])
def test_rsa_key_exchange_is_refused(devcert, tls_server, ciphers):
    assert_refused_by_server(tls_server.port, devcert["cert"], ciphers=f"{ciphers}:@SECLEVEL=0",
                             version=ssl.TLSVersion.TLSv1_2)


def test_tls12_ecdhe_ecdsa_aes_gcm_is_accepted(devcert, tls_server):
    assert handshake(tls_server.port, devcert["cert"], ciphers="ECDHE-ECDSA-AES128-GCM-SHA256",
                     version=ssl.TLSVersion.TLSv1_2, http=True) == ("TLSv1.2", "ECDHE-ECDSA-AES128-GCM-SHA256")


def test_tls13_is_accepted(devcert, tls_server):
    assert handshake(tls_server.port, devcert["cert"], version=ssl.TLSVersion.TLSv1_3, http=True)[0] == "TLSv1.3"
    assert handshake(tls_server.port, devcert["cert"], http=True)[0] == "TLSv1.3"  # preferred when offered


# -- boto3 over https: the streaming-trailer path --
def test_boto3_put_get_over_https(tls_s3, tls_bucket):
    sent = capture_headers(tls_s3, "PutObject")
    data = os.urandom(3 * MiB + 17)
    r = tls_s3.put_object(Bucket=tls_bucket, Key="k", Body=data)
    assert_streaming_trailer(sent[-1])
    assert r["ChecksumCRC32"] == cc.crc32_b64(data)
    got = tls_s3.get_object(Bucket=tls_bucket, Key="k", ChecksumMode="ENABLED")
    assert got["Body"].read() == data
    assert got["ChecksumCRC32"] == cc.crc32_b64(data)
    # Another algorithm travels in its own trailer.
    r = tls_s3.put_object(Bucket=tls_bucket, Key="s", Body=data[:1000], ChecksumAlgorithm="SHA256")
    assert_streaming_trailer(sent[-1], "x-amz-checksum-sha256")
    assert r["ChecksumSHA256"] == cc.sha256_b64(data[:1000])
    # An empty body goes the same way.
    tls_s3.put_object(Bucket=tls_bucket, Key="empty", Body=b"")
    assert tls_s3.get_object(Bucket=tls_bucket, Key="empty")["Body"].read() == b""


def test_boto3_upload_file_multipart_over_https(tls_s3, tls_bucket, tmp_path: Path):
    src = tmp_path / "ten.bin"
    src.write_bytes(os.urandom(10 * MiB + 123))
    parts = capture_headers(tls_s3, "UploadPart")
    cfg = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB, max_concurrency=2)
    tls_s3.upload_file(str(src), tls_bucket, "ten.bin", Config=cfg)
    assert len(parts) == 3
    for headers in parts:
        assert_streaming_trailer(headers)
    head = tls_s3.head_object(Bucket=tls_bucket, Key="ten.bin")
    assert head["ContentLength"] == src.stat().st_size and head["ETag"].endswith('-3"')
    dst = tmp_path / "back.bin"
    tls_s3.download_file(tls_bucket, "ten.bin", str(dst), Config=cfg)
    assert sha256_file(dst) == sha256_file(src)


def test_complete_multipart_location_is_https(tls_s3, tls_bucket, https_endpoint):
    up = tls_s3.create_multipart_upload(Bucket=tls_bucket, Key="m")
    part = tls_s3.upload_part(Bucket=tls_bucket, Key="m", UploadId=up["UploadId"], PartNumber=1, Body=b"x" * 1000)
    done = tls_s3.complete_multipart_upload(Bucket=tls_bucket, Key="m", UploadId=up["UploadId"],
                                            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
    assert done["Location"] == f"{https_endpoint}/{tls_bucket}/m"


def _https_send(url: str, headers: dict[str, str], body: bytes, cafile: str) -> cc.Response:
    u = urlsplit(url)
    ctx = ssl.create_default_context(cafile=cafile)
    conn = http.client.HTTPSConnection(u.hostname, u.port, timeout=30, context=ctx)
    try:
        conn.putrequest("PUT", u.path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", u.netloc)
        for k, v in headers.items():
            conn.putheader(k, v)
        conn.endheaders(body)
        r = conn.getresponse()
        return cc.Response(r.status, r.headers, r.read())
    finally:
        conn.close()


@pytest.mark.parametrize("correct", [True, False])
def test_streaming_trailer_checksum_is_verified_over_https(https_endpoint, credentials, devcert, tls_bucket,
                                                           tls_s3, correct):
    """A trailer that does not match the bytes received through TLS fails with BadDigest, nothing stored."""
    data = os.urandom(300_000)
    checksum = cc.crc32_b64(data if correct else data[:-1] + bytes([data[-1] ^ 1]))
    trailers = [("x-amz-checksum-crc32", checksum)]
    chunks = cc.split(data, 64 * 1024)
    body = cc.encode(chunks, cc.STREAMING_UNSIGNED_TRAILER, None, trailers)
    headers = {"Content-Encoding": "aws-chunked", "x-amz-decoded-content-length": str(len(data)),
               "x-amz-trailer": "x-amz-checksum-crc32", "Content-Length": str(len(body))}
    url = cc.object_url(https_endpoint, tls_bucket, "trailer")
    s = cc.sign("PUT", url, credentials, headers=headers, payload_hash=cc.STREAMING_UNSIGNED_TRAILER)
    r = _https_send(s.url, s.headers, body, devcert["cert"])
    if correct:
        assert r.status == 200, r.body
        assert tls_s3.get_object(Bucket=tls_bucket, Key="trailer")["Body"].read() == data
    else:
        assert (r.status, r.error_code()) == (400, "BadDigest")
        with pytest.raises(ClientError) as info:
            tls_s3.head_object(Bucket=tls_bucket, Key="trailer")
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


# -- the aws cli over https (a 20 MiB file: multipart, 8 MiB parts) --
def _aws_env(credentials: tuple[str, str], tmp_path: Path, **extra: str) -> dict[str, str]:
    cfg = tmp_path / "aws-config"
    cfg.write_text("[default]\nregion = us-east-1\ns3 =\n    addressing_style = path\n")
    return clean_env(AWS_ACCESS_KEY_ID=credentials[0], AWS_SECRET_ACCESS_KEY=credentials[1],
                     AWS_CONFIG_FILE=str(cfg), AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
                     AWS_EC2_METADATA_DISABLED="true", AWS_PAGER="", AWS_MAX_ATTEMPTS="1", **extra)


@pytest.mark.compat
@pytest.mark.parametrize("which", ["v1", "v2"])
def test_aws_cli_cp_over_https(which, https_endpoint, credentials, devcert, tls_bucket, tls_server,
                               tmp_path: Path):
    src = tmp_path / "twenty.bin"
    src.write_bytes(os.urandom(20 * MiB + 5))
    if which == "v1":
        # v1: the certificate given with --ca-bundle.
        exe = venv_binary("aws")
        env = _aws_env(credentials, tmp_path)
        aws = [exe, "--endpoint-url", https_endpoint, "--ca-bundle", devcert["cert"]]
    else:
        # v2: the certificate given with AWS_CA_BUNDLE, and the host name (not the IP) verified.
        exe = require_binary("/usr/bin/aws")
        env = _aws_env(credentials, tmp_path, AWS_CA_BUNDLE=devcert["cert"])
        aws = [exe, "--endpoint-url", f"https://localhost:{tls_server.port}"]
    major = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout
    assert major.startswith(f"aws-cli/{which[1]}."), major
    url = f"s3://{tls_bucket}/twenty.bin"
    run(aws + ["s3", "cp", "--only-show-errors", str(src), url], env=env, log_path=tls_server.log_path)
    back = tmp_path / "back.bin"
    run(aws + ["s3", "cp", "--only-show-errors", url, str(back)], env=env, log_path=tls_server.log_path)
    assert sha256_file(back) == sha256_file(src)
    head = run(aws + ["s3api", "head-object", "--bucket", tls_bucket, "--key", "twenty.bin"], env=env,
               log_path=tls_server.log_path).stdout
    assert '-3\\""' in head or '-3"' in head, head  # three 8 MiB parts, each sent as a streaming trailer
    # A single PutObject (below the multipart threshold) takes the trailer path too.
    small = tmp_path / "small.bin"
    small.write_bytes(os.urandom(100_000))
    run(aws + ["s3api", "put-object", "--bucket", tls_bucket, "--key", "small.bin", "--body", str(small)],
        env=env, log_path=tls_server.log_path)
    run(aws + ["s3", "cp", "--only-show-errors", f"s3://{tls_bucket}/small.bin", str(tmp_path / "s2")], env=env,
        log_path=tls_server.log_path)
    assert (tmp_path / "s2").read_bytes() == small.read_bytes()


@pytest.mark.compat
def test_rclone_over_https(https_endpoint, credentials, devcert, tls_bucket, tls_server, tmp_path: Path):
    """A Go client (rclone, aws-sdk-go-v2, Go's own TLS stack), trusting the certificate with --ca-cert."""
    exe = venv_binary("rclone")
    env = clean_env(RCLONE_CONFIG=str(tmp_path / "rclone.conf"), RCLONE_CONFIG_C_TYPE="s3",
                    RCLONE_CONFIG_C_PROVIDER="Other", RCLONE_CONFIG_C_ACCESS_KEY_ID=credentials[0],
                    RCLONE_CONFIG_C_SECRET_ACCESS_KEY=credentials[1], RCLONE_CONFIG_C_ENDPOINT=https_endpoint,
                    RCLONE_CONFIG_C_REGION="us-east-1", RCLONE_CONFIG_C_FORCE_PATH_STYLE="true",
                    RCLONE_S3_UPLOAD_CUTOFF="5M", RCLONE_S3_CHUNK_SIZE="5M")  # 12 MiB: a 3-part upload
    common = ["--ca-cert", devcert["cert"], "--retries", "1", "--low-level-retries", "1"]
    src = tmp_path / "twelve.bin"
    src.write_bytes(os.urandom(12 * MiB + 9))
    run([exe, "copyto", str(src), f"c:{tls_bucket}/twelve.bin", *common], env=env, log_path=tls_server.log_path)
    head = https_client(https_endpoint, credentials, devcert["cert"]).head_object(Bucket=tls_bucket, Key="twelve.bin")
    assert head["ETag"].endswith('-3"'), head["ETag"]
    back = tmp_path / "back.bin"
    run([exe, "copyto", f"c:{tls_bucket}/twelve.bin", str(back), *common], env=env, log_path=tls_server.log_path)
    assert sha256_file(back) == sha256_file(src)
    # Without the certificate, Go refuses the server.
    refused = run([exe, "lsd", "c:", "--retries", "1", "--low-level-retries", "1"], env=env, check=False)
    assert refused.returncode != 0 and "certificate" in refused.stderr
