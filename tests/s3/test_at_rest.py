"""Encryption at rest: what a client stores never lies on disk in plaintext, and a damaged
blob is never served as if it were whole.

These tests read the server's data directory, so they run their own server.
"""

from __future__ import annotations

import glob
import hashlib
import http.client
import os
import secrets
import sqlite3
import stat
import urllib.parse
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests import blobs_on_disk as on_disk
from tests.conftest import make_client
from tests.server import ACCESS_KEY, SECRET_KEY, Server

pytestmark = pytest.mark.skipif(bool(os.environ.get("COFFRE_TEST_ENDPOINT")),
                                reason="inspects a local server's data directory")

SEG = 64 * 1024
BUCKET = "at-rest"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory):
    # DEBUG logging: the log is checked for secrets too, so let it say as much as it can.
    server = Server(str(tmp_path_factory.mktemp("at-rest") / "data"), env={"COFFRE_LOG_LEVEL": "DEBUG"}).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(srv: Server):
    c = make_client(srv.endpoint, (ACCESS_KEY, SECRET_KEY))
    c.create_bucket(Bucket=BUCKET)
    return c


def all_files(root: str) -> list[str]:
    return [os.path.join(d, f) for d, _, files in os.walk(root) for f in files]


def files_containing(root: str, needle: bytes) -> list[str]:
    hits = []
    for path in all_files(root):
        try:
            with open(path, "rb") as fh:
                if needle in fh.read():
                    hits.append(os.path.relpath(path, root))
        except FileNotFoundError:  # a blob or journal that went away meanwhile
            pass
    return hits


def checkpoint(data_dir: str) -> None:
    """Fold the WALs (metadata, small blobs) into their database files, as SQLite does on its
    own sooner or later."""
    conn = sqlite3.connect(os.path.join(data_dir, "meta.sqlite3"), timeout=30)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    finally:
        conn.close()
    on_disk.checkpoint(data_dir)


def blob_of(data_dir: str, key: str) -> str:
    conn = sqlite3.connect(os.path.join(data_dir, "meta.sqlite3"), timeout=30)
    try:
        row = conn.execute("SELECT blob_id FROM objects WHERE bucket=? AND key=? AND is_latest=1",
                           (BUCKET, key.encode())).fetchone()
    finally:
        conn.close()
    assert row is not None and row[0], f"no blob for {key}"
    return str(row[0])


def blob_path(data_dir: str, key: str) -> str:
    return glob.glob(on_disk.file_path(data_dir, blob_of(data_dir, key)))[0]


def test_object_bodies_never_appear_in_plaintext(srv: Server, client) -> None:
    body_marker = b"BODY-" + secrets.token_hex(8).encode() + b"-PLAINTEXT"
    key_marker = "KEY-" + secrets.token_hex(8)
    meta_marker = "META-" + secrets.token_hex(8)
    bodies = {
        f"{key_marker}/tiny": body_marker,
        f"{key_marker}/small": body_marker * 200,
        f"{key_marker}/segments": body_marker * (3 * SEG // len(body_marker) + 7),
        f"{key_marker}/large": (body_marker + b"\n") * ((2 << 20) // len(body_marker)),
    }
    for key, body in bodies.items():
        client.put_object(Bucket=BUCKET, Key=key, Body=body, Metadata={"note": meta_marker},
                          ContentType="text/plain")
    # Every path that writes bodies encrypts: multipart parts and copies too.
    up = client.create_multipart_upload(Bucket=BUCKET, Key=f"{key_marker}/multipart")["UploadId"]
    part = body_marker * 3000
    etag = client.upload_part(Bucket=BUCKET, Key=f"{key_marker}/multipart", UploadId=up, PartNumber=1,
                              Body=part)["ETag"]
    client.complete_multipart_upload(Bucket=BUCKET, Key=f"{key_marker}/multipart", UploadId=up,
                                     MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
    pending = client.create_multipart_upload(Bucket=BUCKET, Key=f"{key_marker}/pending")["UploadId"]
    client.upload_part(Bucket=BUCKET, Key=f"{key_marker}/pending", UploadId=pending, PartNumber=1, Body=part)
    client.copy_object(Bucket=BUCKET, Key=f"{key_marker}/copy", CopySource={"Bucket": BUCKET,
                       "Key": f"{key_marker}/segments"})
    # Overwritten and deleted objects leave no plaintext behind either.
    client.put_object(Bucket=BUCKET, Key=f"{key_marker}/gone", Body=body_marker * 50)
    client.delete_object(Bucket=BUCKET, Key=f"{key_marker}/gone")
    for key, body in bodies.items():
        got = client.get_object(Bucket=BUCKET, Key=key)
        assert got["Body"].read() == body
        assert got["Metadata"] == {"note": meta_marker}
        assert got["ServerSideEncryption"] == "AES256"
    assert client.get_object(Bucket=BUCKET, Key=f"{key_marker}/multipart")["Body"].read() == part
    assert client.get_object(Bucket=BUCKET, Key=f"{key_marker}/copy")["Body"].read() == \
        bodies[f"{key_marker}/segments"]

    data = srv.data_dir
    # The small bodies are rows of blobs/small.db, the larger ones files: both are scanned,
    # with small.db's WAL, where the newest rows live before a checkpoint.
    small_rows = on_disk.rows(data)
    assert blob_of(data, f"{key_marker}/tiny") in small_rows
    assert blob_of(data, f"{key_marker}/small") in small_rows
    assert blob_of(data, f"{key_marker}/large") not in small_rows
    assert os.path.getsize(on_disk.small_db(data) + "-wal") > 0
    # Before a checkpoint, the newest metadata lives in the WAL: it is scanned too.
    assert files_containing(data, body_marker) == []
    # Nor can a fragment smaller than a segment be found: every segment is encrypted.
    assert files_containing(data, body_marker[:12]) == []
    checkpoint(data)
    assert files_containing(data, body_marker) == []
    assert files_containing(data, body_marker[:12]) == []
    # Names and user metadata are stored in the metadata database only (as on AWS,
    # SSE covers object data, not keys or metadata); never in a blob. Keys, not metadata, are
    # also in the audit trail, whose purpose is to say who touched which object (docs/audit.md).
    for marker, allowed in ((key_marker.encode(), ("meta.sqlite3", "audit/")), (meta_marker.encode(), ("meta.sqlite3",))):
        assert [f for f in files_containing(data, marker) if not f.startswith(allowed)] == []
    with open(srv.log_path, "rb") as fh:
        assert body_marker not in fh.read()


def test_blob_files_hold_ciphertext_of_the_expected_size(srv: Server, client) -> None:
    body = os.urandom(3 * SEG + 5)
    client.put_object(Bucket=BUCKET, Key="sized", Body=body)
    raw = Path(blob_path(srv.data_dir, "sized")).read_bytes()
    assert raw[:4] == b"CFRB"
    assert len(raw) == 8 + len(body) + 16 * 4  # header + data + one tag per segment
    assert body[:64] not in raw


def test_state_is_private_to_the_server_user(srv: Server, client) -> None:
    client.put_object(Bucket=BUCKET, Key="perm/one", Body=b"x" * 100)
    data = srv.data_dir
    key_file = os.path.join(data, "root.key")
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert os.path.getsize(key_file) == 32
    assert stat.S_IMODE(os.stat(data).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(os.path.join(data, "blobs")).st_mode) == 0o700
    exposed = []
    for d, dirs, files in os.walk(data):
        for name in dirs + files:
            path = os.path.join(d, name)
            if os.stat(path).st_mode & (stat.S_IRWXG | stat.S_IRWXO):
                exposed.append((os.path.relpath(path, data), oct(stat.S_IMODE(os.stat(path).st_mode))))
    assert exposed == []


def test_secrets_are_never_stored_or_logged(srv: Server, client) -> None:
    client.put_object(Bucket=BUCKET, Key="secrets/probe", Body=b"probe")
    client.list_objects_v2(Bucket=BUCKET)
    bad = make_client(srv.endpoint, (ACCESS_KEY, SECRET_KEY[:-1] + "X"))
    with pytest.raises(ClientError):
        bad.list_buckets()  # a failed signature must not log the expected secret either
    checkpoint(srv.data_dir)
    root_key = Path(srv.data_dir, "root.key").read_bytes()
    with open(srv.log_path, "rb") as fh:
        log = fh.read()
    for form in (SECRET_KEY.encode(), SECRET_KEY.encode().hex().encode(), SECRET_KEY[:16].encode()):
        assert files_containing(srv.data_dir, form) == []
        assert form not in log
    # The root key itself lives in its file only.
    assert [f for f in files_containing(srv.data_dir, root_key) if f != "root.key"] == []
    assert root_key.hex().encode() not in log


# -- damaged blobs -----------------------------------------------------------------------

def raw_get(srv: Server, client, key: str, headers: dict[str, str] | None = None) -> tuple[int, int | None, bytes, bool]:
    """GET over a bare connection: status, declared length, bytes received, whether the body was cut."""
    url = urllib.parse.urlsplit(client.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": key}))
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        conn.request("GET", url.path + "?" + url.query, headers=headers or {})
        resp = conn.getresponse()
        length = resp.getheader("Content-Length")
        try:
            body = resp.read()
            cut = False
        except http.client.IncompleteRead as e:
            body, cut = e.partial, True
        return resp.status, int(length) if length is not None else None, body, cut
    finally:
        conn.close()


def assert_not_served(srv: Server, client, key: str, original: bytes) -> None:
    """The client must see an error or a cut connection, never a complete body."""
    status, length, body, cut = raw_get(srv, client, key)
    if status == 200:
        assert length == len(original)
        assert cut, "a damaged object was served as a complete 200 response"
        assert len(body) < len(original)
        assert original.startswith(body)  # what did arrive was true
    else:
        assert status == 500, status
        assert not body.startswith(original[:100])
    # The same through boto3.
    with pytest.raises(Exception) as info:  # noqa: B017 - ClientError or a streaming read error
        client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    assert "IncompleteRead" in repr(info.value) or isinstance(info.value, ClientError) \
        or "Connection broken" in str(info.value), repr(info.value)


@pytest.mark.parametrize("size", [10_000, 3 * 1024 * 1024 + 100], ids=["small", "large"])
def test_damaged_blobs_are_never_served(srv: Server, client, size: int) -> None:
    # The small object's blob is a row of blobs/small.db, the large one's a file: both are
    # damaged where they lie.
    def put(key: str) -> tuple[bytes, str]:
        body = os.urandom(size)
        client.put_object(Bucket=BUCKET, Key=key, Body=body)
        blob_id = blob_of(srv.data_dir, key)
        assert on_disk.is_row(srv.data_dir, blob_id) == (size <= 65_000)
        return body, blob_id

    def damage(blob_id: str, change) -> None:
        raw = bytearray(on_disk.read_blob(srv.data_dir, blob_id))
        on_disk.write_blob(srv.data_dir, blob_id, bytes(change(raw)))

    def flip_at(offset: int):
        def change(raw: bytearray) -> bytearray:
            raw[offset] ^= 0x01
            return raw
        return change

    stride = SEG + 16
    assert size % SEG
    last_seg = 8 + (size // SEG) * stride  # offset of the final, short segment
    blob_size = 8 + size + 16 * (size // SEG + 1)
    tag = f"{size}-"

    # A flipped byte in a segment: near the end, so a large object fails after its
    # response has started (the status line and first megabytes are already sent).
    body, bid = put(tag + "flip")
    damage(bid, flip_at(last_seg + 3))
    assert_not_served(srv, client, tag + "flip", body)
    if size > SEG:
        # Undamaged segments are still served by range.
        got = client.get_object(Bucket=BUCKET, Key=tag + "flip", Range="bytes=0-99999")["Body"].read()
        assert got == body[:100000]

    # Two segments swapped.
    if size > 2 * SEG:
        body, bid = put(tag + "swap")

        def swap(raw: bytearray) -> bytearray:
            a = raw[8 + stride:8 + 2 * stride]
            b = raw[8 + 2 * stride:8 + 3 * stride]
            raw[8 + stride:8 + 3 * stride] = b + a
            return raw

        damage(bid, swap)
        assert_not_served(srv, client, tag + "swap", body)

    # The last segment truncated (partly, then wholly).
    for cut in (1, blob_size - last_seg):
        body, bid = put(tag + f"trunc{cut}")
        damage(bid, lambda raw, cut=cut: raw[:len(raw) - cut])
        assert_not_served(srv, client, tag + f"trunc{cut}", body)

    # Another blob's bytes moved over this blob.
    body, bid = put(tag + "victim")
    _, other = put(tag + "other")
    on_disk.write_blob(srv.data_dir, bid, on_disk.read_blob(srv.data_dir, other))
    assert_not_served(srv, client, tag + "victim", body)

    # The server is still healthy and serves intact objects.
    client.put_object(Bucket=BUCKET, Key=tag + "fine", Body=body)
    assert hashlib.md5(client.get_object(Bucket=BUCKET, Key=tag + "fine")["Body"].read()).digest() == \
        hashlib.md5(body).digest()
