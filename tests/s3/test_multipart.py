"""Multipart uploads with boto3 against a real server: parts, completion rules, listings,
UploadPartCopy, checksums (COMPOSITE and FULL_OBJECT), conditional completes, s3transfer."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import socket
import threading
import time
import zlib
from pathlib import Path

import pytest
from awscrt import checksums as crt
from botocore.exceptions import ClientError

from tests import blobs_on_disk as on_disk
from tests.conftest import make_client
from tests.s3.chunked_client import (
    STREAMING_UNSIGNED_TRAILER,
    UNSIGNED,
    encode,
    object_url,
    send,
    sign,
    split,
)
from tests.server import Server

MiB = 1 << 20
PART = 5 * MiB  # the smallest size of a part that is not the last


def md5_etag(*chunks: bytes) -> str:
    """The multipart ETag computed here: md5 of the binary part md5s, then -N."""
    digests = b"".join(hashlib.md5(c).digest() for c in chunks)
    return f'"{hashlib.md5(digests).hexdigest()}-{len(chunks)}"'


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def crc32(data: bytes) -> bytes:
    return zlib.crc32(data).to_bytes(4, "big")


def crc32c(data: bytes) -> bytes:
    return crt.crc32c(data).to_bytes(4, "big")


def crc64nvme(data: bytes) -> bytes:
    return crt.crc64nvme(data).to_bytes(8, "big")


def error(e: pytest.ExceptionInfo[ClientError]) -> tuple[int, str]:
    r = e.value.response
    return r["ResponseMetadata"]["HTTPStatusCode"], r["Error"]["Code"]


def upload(s3, bucket: str, key: str, chunks: list[bytes], **create) -> tuple[str, list[dict]]:
    up = s3.create_multipart_upload(Bucket=bucket, Key=key, **create)
    parts = []
    # Parts must be sent in the upload's algorithm (boto3 would send CRC32 otherwise).
    algo = {"ChecksumAlgorithm": create["ChecksumAlgorithm"]} if "ChecksumAlgorithm" in create else {}
    for i, c in enumerate(chunks, 1):
        r = s3.upload_part(Bucket=bucket, Key=key, UploadId=up["UploadId"], PartNumber=i, Body=c, **algo)
        parts.append({"PartNumber": i, "ETag": r["ETag"]})
    return up["UploadId"], parts


@pytest.fixture(scope="module")
def chunks() -> list[bytes]:
    """Three parts: two over the minimum (one of them odd-sized) and a short last one."""
    return [os.urandom(PART + 1), os.urandom(PART), os.urandom(MiB + 3)]


def test_upload_download_byte_exact(s3, bucket, chunks):
    up = s3.create_multipart_upload(Bucket=bucket, Key="dir/big object", ContentType="video/mp4",
                                    Metadata={"color": "blue"}, CacheControl="max-age=60")
    assert up["Bucket"] == bucket and up["Key"] == "dir/big object"
    uid = up["UploadId"]
    parts = []
    for i, c in enumerate(chunks, 1):
        r = s3.upload_part(Bucket=bucket, Key="dir/big object", UploadId=uid, PartNumber=i, Body=c)
        assert r["ETag"] == f'"{hashlib.md5(c).hexdigest()}"'
        parts.append({"PartNumber": i, "ETag": r["ETag"]})
    done = s3.complete_multipart_upload(Bucket=bucket, Key="dir/big object", UploadId=uid,
                                        MultipartUpload={"Parts": parts})
    whole = b"".join(chunks)
    assert done["ETag"] == md5_etag(*chunks)
    assert re.fullmatch(r'"[0-9a-f]{32}-3"', done["ETag"])
    assert done["Bucket"] == bucket and done["Key"] == "dir/big object"
    assert done["Location"].endswith(f"/{bucket}/dir/big%20object")
    # Without a requested algorithm, the object gets S3's default: a full-object CRC64NVME.
    assert done["ChecksumCRC64NVME"] == b64(crc64nvme(whole))
    assert done["ChecksumType"] == "FULL_OBJECT"

    g = s3.get_object(Bucket=bucket, Key="dir/big object", ChecksumMode="ENABLED")
    assert g["Body"].read() == whole
    assert g["ETag"] == done["ETag"]
    assert g["ContentLength"] == len(whole)
    assert g["ContentType"] == "video/mp4" and g["Metadata"] == {"color": "blue"}
    assert g["CacheControl"] == "max-age=60"
    assert g["ChecksumCRC64NVME"] == b64(crc64nvme(whole))

    # A range across the boundary of parts 1 and 2.
    r = s3.get_object(Bucket=bucket, Key="dir/big object", Range=f"bytes={PART - 10}-{PART + 20}")
    assert r["Body"].read() == whole[PART - 10:PART + 21]

    # partNumber reads one part: 206, its Content-Range, the part count, and its own checksum.
    p2 = s3.get_object(Bucket=bucket, Key="dir/big object", PartNumber=2, ChecksumMode="ENABLED")
    assert p2["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert p2["PartsCount"] == 3
    assert p2["ContentRange"] == f"bytes {PART + 1}-{2 * PART}/{len(whole)}"
    assert p2["ChecksumCRC64NVME"] == b64(crc64nvme(chunks[1]))
    assert p2["Body"].read() == chunks[1]
    h = s3.head_object(Bucket=bucket, Key="dir/big object", PartNumber=3)
    assert h["ContentLength"] == len(chunks[2]) and h["PartsCount"] == 3
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="dir/big object", PartNumber=4)
    assert error(e) == (416, "InvalidPartNumber")

    # The upload is gone once completed.
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=bucket)
    with pytest.raises(ClientError) as e:
        s3.upload_part(Bucket=bucket, Key="dir/big object", UploadId=uid, PartNumber=1, Body=b"x")
    assert error(e) == (404, "NoSuchUpload")


def test_reupload_replaces_part(s3, bucket):
    up = s3.create_multipart_upload(Bucket=bucket, Key="k")
    uid = up["UploadId"]
    first = s3.upload_part(Bucket=bucket, Key="k", UploadId=uid, PartNumber=1, Body=b"first")["ETag"]
    second = s3.upload_part(Bucket=bucket, Key="k", UploadId=uid, PartNumber=1, Body=b"second!")["ETag"]
    listed = s3.list_parts(Bucket=bucket, Key="k", UploadId=uid)["Parts"]
    assert [(p["PartNumber"], p["ETag"], p["Size"]) for p in listed] == [(1, second, 7)]
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=uid,
                                     MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": first}]})
    assert error(e) == (400, "InvalidPart")
    # A single part may be small: only parts before the last have a minimum size.
    s3.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=uid,
                                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": second}]})
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"second!"


def test_complete_errors(s3, bucket):
    uid, parts = upload(s3, bucket, "k", [b"a" * 100, b"b" * 100])

    def complete(listed):
        with pytest.raises(ClientError) as e:
            s3.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=uid, MultipartUpload={"Parts": listed})
        return error(e)

    assert complete([parts[1], parts[0]]) == (400, "InvalidPartOrder")
    assert complete([parts[0], parts[0]]) == (400, "InvalidPartOrder")
    assert complete([parts[0], {"PartNumber": 3, "ETag": parts[1]["ETag"]}]) == (400, "InvalidPart")
    assert complete([{"PartNumber": 1, "ETag": '"' + "0" * 32 + '"'}]) == (400, "InvalidPart")
    assert complete([parts[0], parts[1]]) == (400, "EntityTooSmall")
    assert complete([]) == (400, "MalformedXML")
    # The upload survives failed completes; the last part alone may be small.
    s3.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=uid, MultipartUpload={"Parts": [parts[1]]})
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"b" * 100


def test_malformed_complete_body(endpoint, credentials, s3, bucket):
    uid, _ = upload(s3, bucket, "k", [b"x"])
    for body in (b"<CompleteMultipartUpload><Part><PartNumber>one</PartNumber><ETag>x</ETag></Part>"
                 b"</CompleteMultipartUpload>", b"not xml", b"<Other/>"):
        url = object_url(endpoint, bucket, "k", f"uploadId={uid}")
        s = sign("POST", url, credentials, headers={"Content-Length": str(len(body))}, body=body)
        r = send("POST", s.url, s.headers, body)
        assert (r.status, r.error_code()) == (400, "MalformedXML")


def test_no_such_upload(s3, bucket):
    uid, parts = upload(s3, bucket, "k", [b"data"])
    s3.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=uid)
    calls = [
        lambda: s3.upload_part(Bucket=bucket, Key="k", UploadId=uid, PartNumber=2, Body=b"x"),
        lambda: s3.list_parts(Bucket=bucket, Key="k", UploadId=uid),
        lambda: s3.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=uid,
                                             MultipartUpload={"Parts": parts}),
        lambda: s3.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=uid),
        lambda: s3.upload_part(Bucket=bucket, Key="k", UploadId="nonexistent", PartNumber=1, Body=b"x"),
    ]
    for call in calls:
        with pytest.raises(ClientError) as e:
            call()
        assert error(e) == (404, "NoSuchUpload")
    # An upload id belongs to its key.
    other = s3.create_multipart_upload(Bucket=bucket, Key="a")["UploadId"]
    with pytest.raises(ClientError) as e:
        s3.upload_part(Bucket=bucket, Key="b", UploadId=other, PartNumber=1, Body=b"x")
    assert error(e) == (404, "NoSuchUpload")
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="k")
    assert error(e) == (404, "NoSuchKey")


def test_part_number_bounds(s3, bucket):
    uid = s3.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]
    for n in (0, 10001):
        with pytest.raises(ClientError) as e:
            s3.upload_part(Bucket=bucket, Key="k", UploadId=uid, PartNumber=n, Body=b"x")
        assert error(e) == (400, "InvalidArgument")
    s3.upload_part(Bucket=bucket, Key="k", UploadId=uid, PartNumber=10000, Body=b"x")


def test_list_parts_pagination(s3, bucket, credentials):
    uid, _ = upload(s3, bucket, "k", [bytes([i]) * (i + 1) for i in range(5)], ChecksumAlgorithm="SHA256")
    first = s3.list_parts(Bucket=bucket, Key="k", UploadId=uid, MaxParts=2)
    assert [p["PartNumber"] for p in first["Parts"]] == [1, 2]
    assert first["IsTruncated"] is True and first["NextPartNumberMarker"] == 2 and first["MaxParts"] == 2
    assert first["Initiator"]["ID"] == first["Owner"]["ID"] and first["Owner"]["ID"]
    assert first["StorageClass"] == "STANDARD"
    assert first["ChecksumAlgorithm"] == "SHA256" and first["ChecksumType"] == "COMPOSITE"
    assert first["Parts"][1]["ChecksumSHA256"] == b64(hashlib.sha256(b"\x01\x01").digest())
    last = s3.list_parts(Bucket=bucket, Key="k", UploadId=uid, MaxParts=2, PartNumberMarker=4)
    assert [p["PartNumber"] for p in last["Parts"]] == [5]
    assert last["IsTruncated"] is False and last["PartNumberMarker"] == 4
    pages = s3.get_paginator("list_parts").paginate(Bucket=bucket, Key="k", UploadId=uid,
                                                    PaginationConfig={"PageSize": 2})
    assert [p["Size"] for page in pages for p in page["Parts"]] == [1, 2, 3, 4, 5]


def test_list_multipart_uploads(s3, bucket):
    ids = {}
    for key in ("a/1", "a/2", "b", "b", "c/x/y", "d"):
        ids.setdefault(key, []).append(s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"])
        time.sleep(0.002)  # distinct initiation times order the two uploads of "b"
    r = s3.list_multipart_uploads(Bucket=bucket)
    assert [(u["Key"], u["UploadId"]) for u in r["Uploads"]] == \
        [(k, u) for k in ("a/1", "a/2", "b", "c/x/y", "d") for u in ids[k]]
    u0 = r["Uploads"][0]
    assert u0["Initiator"]["ID"] == u0["Owner"]["ID"] and u0["StorageClass"] == "STANDARD"
    assert r["IsTruncated"] is False

    r = s3.list_multipart_uploads(Bucket=bucket, Delimiter="/")
    assert [u["Key"] for u in r["Uploads"]] == ["b", "b", "d"]
    assert [p["Prefix"] for p in r["CommonPrefixes"]] == ["a/", "c/"]
    r = s3.list_multipart_uploads(Bucket=bucket, Prefix="a/")
    assert [u["Key"] for u in r["Uploads"]] == ["a/1", "a/2"] and r["Prefix"] == "a/"
    r = s3.list_multipart_uploads(Bucket=bucket, Prefix="c/", Delimiter="/")
    assert "Uploads" not in r and [p["Prefix"] for p in r["CommonPrefixes"]] == ["c/x/"]

    # Markers: strictly after (key-marker, upload-id-marker).
    r = s3.list_multipart_uploads(Bucket=bucket, KeyMarker="b", UploadIdMarker=ids["b"][0])
    assert [(u["Key"], u["UploadId"]) for u in r["Uploads"]] == \
        [("b", ids["b"][1]), ("c/x/y", ids["c/x/y"][0]), ("d", ids["d"][0])]
    r = s3.list_multipart_uploads(Bucket=bucket, KeyMarker="b")
    assert [u["Key"] for u in r["Uploads"]] == ["c/x/y", "d"]

    # Pages of two, by hand and with the paginator, with and without a delimiter.
    seen, km, um = [], None, None
    while True:
        kw = {"KeyMarker": km, "UploadIdMarker": um} if km else {}
        page = s3.list_multipart_uploads(Bucket=bucket, MaxUploads=2, **kw)
        seen += [u["UploadId"] for u in page.get("Uploads", [])]
        assert len(page.get("Uploads", [])) <= 2 and page["MaxUploads"] == 2
        if not page["IsTruncated"]:
            break
        km, um = page["NextKeyMarker"], page["NextUploadIdMarker"]
    assert seen == [u for k in ("a/1", "a/2", "b", "c/x/y", "d") for u in ids[k]]
    pages = list(s3.get_paginator("list_multipart_uploads").paginate(
        Bucket=bucket, Delimiter="/", PaginationConfig={"PageSize": 1}))
    flat = [("P", p["Prefix"]) for pg in pages for p in pg.get("CommonPrefixes", [])] + \
           [("U", u["Key"]) for pg in pages for u in pg.get("Uploads", [])]
    assert sorted(flat) == [("P", "a/"), ("P", "c/"), ("U", "b"), ("U", "b"), ("U", "d")]
    assert len(pages) == 5


def test_list_multipart_uploads_url_encoding(s3, bucket):
    key = "dir/sp ace+é"
    s3.create_multipart_upload(Bucket=bucket, Key=key)
    r = s3.list_multipart_uploads(Bucket=bucket, EncodingType="url")
    assert r["EncodingType"] == "url"
    assert r["Uploads"][0]["Key"] == "dir/sp%20ace%2B%C3%A9"
    r = s3.list_multipart_uploads(Bucket=bucket, EncodingType="url", Delimiter=" ", Prefix="dir/")
    assert r["CommonPrefixes"][0]["Prefix"] == "dir/sp%20"


def test_upload_part_copy(s3, bucket, chunks):
    src = os.urandom(PART + 1000)
    put = s3.put_object(Bucket=bucket, Key="src", Body=src)
    mp_uid, mp_parts = upload(s3, bucket, "mp-src", chunks[:2])
    s3.complete_multipart_upload(Bucket=bucket, Key="mp-src", UploadId=mp_uid, MultipartUpload={"Parts": mp_parts})
    mp_whole = b"".join(chunks[:2])

    uid = s3.create_multipart_upload(Bucket=bucket, Key="dst")["UploadId"]
    c1 = s3.upload_part_copy(Bucket=bucket, Key="dst", UploadId=uid, PartNumber=1,
                             CopySource={"Bucket": bucket, "Key": "src"}, CopySourceRange=f"bytes=100-{PART + 99}",
                             CopySourceIfMatch=put["ETag"])
    assert c1["CopyPartResult"]["ETag"] == f'"{hashlib.md5(src[100:PART + 100]).hexdigest()}"'
    assert c1["CopyPartResult"]["ChecksumCRC64NVME"] == b64(crc64nvme(src[100:PART + 100]))
    # A range of a multipart source that spans its two parts.
    lo, hi = 100, PART + 200  # at least a minimum part, across the boundary at PART + 1
    c2 = s3.upload_part_copy(Bucket=bucket, Key="dst", UploadId=uid, PartNumber=2,
                             CopySource=f"{bucket}/mp-src", CopySourceRange=f"bytes={lo}-{hi}")
    # The whole of the source when there is no range.
    c3 = s3.upload_part_copy(Bucket=bucket, Key="dst", UploadId=uid, PartNumber=3,
                             CopySource={"Bucket": bucket, "Key": "src"})
    listed = [{"PartNumber": i, "ETag": c["CopyPartResult"]["ETag"]} for i, c in enumerate((c1, c2, c3), 1)]
    s3.complete_multipart_upload(Bucket=bucket, Key="dst", UploadId=uid, MultipartUpload={"Parts": listed})
    got = s3.get_object(Bucket=bucket, Key="dst")["Body"].read()
    assert got == src[100:PART + 100] + mp_whole[lo:hi + 1] + src

    uid = s3.create_multipart_upload(Bucket=bucket, Key="dst2")["UploadId"]

    def copy_error(**kw) -> tuple[int, str]:
        with pytest.raises(ClientError) as e:
            s3.upload_part_copy(Bucket=bucket, Key="dst2", UploadId=uid, PartNumber=1,
                                CopySource={"Bucket": bucket, "Key": "src"}, **kw)
        return error(e)

    assert copy_error(CopySourceIfMatch='"0123"') == (412, "PreconditionFailed")
    assert copy_error(CopySourceIfNoneMatch=put["ETag"]) == (412, "PreconditionFailed")
    assert copy_error(CopySourceRange="bytes=0-") == (400, "InvalidArgument")
    assert copy_error(CopySourceRange="0-10") == (400, "InvalidArgument")
    assert copy_error(CopySourceRange=f"bytes=0-{len(src)}") == (416, "InvalidRange")
    with pytest.raises(ClientError) as e:
        s3.upload_part_copy(Bucket=bucket, Key="dst2", UploadId=uid, PartNumber=1,
                            CopySource={"Bucket": bucket, "Key": "missing"})
    assert error(e) == (404, "NoSuchKey")
    with pytest.raises(ClientError) as e:
        s3.upload_part_copy(Bucket=bucket, Key="dst2", UploadId="nope", PartNumber=1,
                            CopySource={"Bucket": bucket, "Key": "src"})
    assert error(e) == (404, "NoSuchUpload")


def test_composite_checksum(s3, bucket, chunks):
    parts_data = chunks[:2] + [b"tail"]
    up = s3.create_multipart_upload(Bucket=bucket, Key="k", ChecksumAlgorithm="SHA256")
    assert up["ChecksumAlgorithm"] == "SHA256" and up["ChecksumType"] == "COMPOSITE"
    uid = up["UploadId"]
    parts = []
    for i, c in enumerate(parts_data, 1):
        r = s3.upload_part(Bucket=bucket, Key="k", UploadId=uid, PartNumber=i, Body=c, ChecksumAlgorithm="SHA256")
        assert r["ChecksumSHA256"] == b64(hashlib.sha256(c).digest())
        parts.append({"PartNumber": i, "ETag": r["ETag"], "ChecksumSHA256": r["ChecksumSHA256"]})
    # A wrong part checksum, then a missing one, are refused; the upload stays usable.
    bad = [dict(parts[0], ChecksumSHA256=b64(hashlib.sha256(b"other").digest())), *parts[1:]]
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=uid, MultipartUpload={"Parts": bad})
    assert error(e) == (400, "InvalidPart")
    missing = [{"PartNumber": p["PartNumber"], "ETag": p["ETag"]} for p in parts]
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=uid, MultipartUpload={"Parts": missing})
    assert error(e) == (400, "InvalidRequest")

    done = s3.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=uid, MultipartUpload={"Parts": parts})
    digests = b"".join(hashlib.sha256(c).digest() for c in parts_data)
    expected = f"{b64(hashlib.sha256(digests).digest())}-3"
    assert done["ChecksumSHA256"] == expected and done["ChecksumType"] == "COMPOSITE"
    h = s3.head_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
    assert h["ChecksumSHA256"] == expected and h["ChecksumType"] == "COMPOSITE"
    g = s3.get_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
    assert g["Body"].read() == b"".join(parts_data)
    p3 = s3.get_object(Bucket=bucket, Key="k", PartNumber=3, ChecksumMode="ENABLED")
    assert p3["ChecksumSHA256"] == b64(hashlib.sha256(b"tail").digest()) and p3["Body"].read() == b"tail"


def test_full_object_checksum(s3, bucket, chunks):
    up = s3.create_multipart_upload(Bucket=bucket, Key="k", ChecksumAlgorithm="CRC32C", ChecksumType="FULL_OBJECT")
    assert up["ChecksumType"] == "FULL_OBJECT"
    uid = up["UploadId"]
    parts = []
    for i, c in enumerate(chunks, 1):
        r = s3.upload_part(Bucket=bucket, Key="k", UploadId=uid, PartNumber=i, Body=c, ChecksumCRC32C=b64(crc32c(c)))
        parts.append({"PartNumber": i, "ETag": r["ETag"], "ChecksumCRC32C": r["ChecksumCRC32C"]})
    whole = b"".join(chunks)
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=uid, MultipartUpload={"Parts": parts},
                                     ChecksumCRC32C=b64(crc32c(b"something else")), ChecksumType="FULL_OBJECT")
    assert error(e) == (400, "BadDigest")
    done = s3.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=uid, MultipartUpload={"Parts": parts},
                                        ChecksumCRC32C=b64(crc32c(whole)), ChecksumType="FULL_OBJECT",
                                        MpuObjectSize=len(whole))
    assert done["ChecksumCRC32C"] == b64(crc32c(whole)) and done["ChecksumType"] == "FULL_OBJECT"
    g = s3.get_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")  # botocore checks the CRC too
    assert g["ChecksumCRC32C"] == b64(crc32c(whole)) and g["Body"].read() == whole


def test_checksum_rules(endpoint, credentials, s3, bucket):
    for algo, ctype in (("SHA256", "FULL_OBJECT"), ("SHA1", "FULL_OBJECT"), ("CRC64NVME", "COMPOSITE")):
        with pytest.raises(ClientError) as e:
            s3.create_multipart_upload(Bucket=bucket, Key="k", ChecksumAlgorithm=algo, ChecksumType=ctype)
        assert error(e) == (400, "InvalidRequest")
    up = s3.create_multipart_upload(Bucket=bucket, Key="k", ChecksumAlgorithm="CRC64NVME")
    assert up["ChecksumType"] == "FULL_OBJECT"
    uid = s3.create_multipart_upload(Bucket=bucket, Key="k", ChecksumAlgorithm="SHA1")["UploadId"]
    # A part in another algorithm than the upload's is refused...
    with pytest.raises(ClientError) as e:
        s3.upload_part(Bucket=bucket, Key="k", UploadId=uid, PartNumber=1, Body=b"abc", ChecksumAlgorithm="CRC32")
    assert error(e) == (400, "InvalidRequest")
    # ... a wrong value in the right one is a BadDigest, and nothing is stored.
    with pytest.raises(ClientError) as e:
        s3.upload_part(Bucket=bucket, Key="k", UploadId=uid, PartNumber=1, Body=b"abc",
                       ChecksumSHA1=b64(hashlib.sha1(b"abd").digest()))
    assert error(e) == (400, "BadDigest")
    assert "Parts" not in s3.list_parts(Bucket=bucket, Key="k", UploadId=uid)
    # A part sent without any checksum gets the upload's algorithm computed by the server.
    plain = make_client(endpoint, credentials, request_checksum_calculation="when_required")
    plain.upload_part(Bucket=bucket, Key="k", UploadId=uid, PartNumber=1, Body=b"abc")
    listed = s3.list_parts(Bucket=bucket, Key="k", UploadId=uid)["Parts"]
    assert listed[0]["ChecksumSHA1"] == b64(hashlib.sha1(b"abc").digest())


def test_part_checksum_in_trailer(endpoint, credentials, s3, bucket):
    uid = s3.create_multipart_upload(Bucket=bucket, Key="k", ChecksumAlgorithm="CRC32")["UploadId"]
    data = os.urandom(200_000)

    def put(trailer_value: str):
        url = object_url(endpoint, bucket, "k", f"partNumber=1&uploadId={uid}")
        trailers = [("x-amz-checksum-crc32", trailer_value)]
        chunks_ = split(data, 65536)
        probe = encode(chunks_, STREAMING_UNSIGNED_TRAILER, None, trailers)
        headers = {"Content-Encoding": "aws-chunked", "x-amz-decoded-content-length": str(len(data)),
                   "x-amz-trailer": "x-amz-checksum-crc32", "x-amz-sdk-checksum-algorithm": "CRC32",
                   "Content-Length": str(len(probe))}
        s = sign("PUT", url, credentials, headers=headers, payload_hash=STREAMING_UNSIGNED_TRAILER)
        return send("PUT", s.url, s.headers, probe)

    bad = put(b64(crc32(b"nope")))
    assert (bad.status, bad.error_code()) == (400, "BadDigest")
    ok = put(b64(crc32(data)))
    assert ok.status == 200, ok.body
    assert ok.headers["x-amz-checksum-crc32"] == b64(crc32(data))
    assert ok.headers["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
    done = s3.complete_multipart_upload(
        Bucket=bucket, Key="k", UploadId=uid,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": ok.headers["ETag"], "ChecksumCRC32": b64(crc32(data))}]})
    assert done["ChecksumCRC32"] == f"{b64(crc32(crc32(data)))}-1"


def test_conditional_complete(s3, bucket):
    uid, parts = upload(s3, bucket, "k", [b"new"])
    # If-None-Match: * succeeds while the key is free...
    s3.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=uid, MultipartUpload={"Parts": parts},
                                 IfNoneMatch="*")
    current = s3.head_object(Bucket=bucket, Key="k")["ETag"]
    # ... and fails once it is taken, leaving the upload in place.
    uid, parts = upload(s3, bucket, "k", [b"newer"])
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=uid, MultipartUpload={"Parts": parts},
                                     IfNoneMatch="*")
    assert error(e) == (412, "PreconditionFailed")
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=uid, MultipartUpload={"Parts": parts},
                                     IfMatch='"0123456789abcdef0123456789abcdef"')
    assert error(e) == (412, "PreconditionFailed")
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"new"
    s3.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=uid, MultipartUpload={"Parts": parts},
                                 IfMatch=current)
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"newer"
    # If-Match on a key that has no object.
    uid, parts = upload(s3, bucket, "absent", [b"x"])
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(Bucket=bucket, Key="absent", UploadId=uid, MultipartUpload={"Parts": parts},
                                     IfMatch=current)
    assert error(e) == (404, "NoSuchKey")


def test_upload_file_download_file_100mib(s3, bucket, tmp_path: Path):
    """s3transfer with default settings: CRC32 COMPOSITE, 8 MiB parts, checksums per part."""
    src = tmp_path / "src.bin"
    chunk_size = 8 * MiB
    part_crcs = []
    with open(src, "wb") as f:
        for _ in range(100 * MiB // chunk_size + 1):
            block = os.urandom(min(chunk_size, 100 * MiB - f.tell()))
            if not block:
                break
            part_crcs.append(crc32(block))
            f.write(block)
    s3.upload_file(str(src), bucket, "big")
    h = s3.head_object(Bucket=bucket, Key="big", ChecksumMode="ENABLED")
    assert h["ContentLength"] == 100 * MiB
    assert h["ETag"].endswith(f'-{len(part_crcs)}"')
    assert h["ChecksumType"] == "COMPOSITE"
    assert h["ChecksumCRC32"] == f"{b64(crc32(b''.join(part_crcs)))}-{len(part_crcs)}"
    dst = tmp_path / "dst.bin"
    s3.download_file(bucket, "big", str(dst))
    with open(src, "rb") as a, open(dst, "rb") as b:
        while True:
            x, y = a.read(MiB), b.read(MiB)
            assert x == y
            if not x:
                break


def test_delete_bucket_with_uploads(s3):
    name = "t-mpdel-" + os.urandom(6).hex()
    s3.create_bucket(Bucket=name)
    uid = s3.create_multipart_upload(Bucket=name, Key="k")["UploadId"]
    s3.upload_part(Bucket=name, Key="k", UploadId=uid, PartNumber=1, Body=b"part")
    # In-progress uploads do not keep a bucket alive on S3; they go with it.
    assert s3.delete_bucket(Bucket=name)["ResponseMetadata"]["HTTPStatusCode"] == 204
    s3.create_bucket(Bucket=name)
    try:
        assert "Uploads" not in s3.list_multipart_uploads(Bucket=name)
    finally:
        s3.delete_bucket(Bucket=name)


# -- blobs on disk, with a server of our own --
def blob_files(data_dir: str) -> list[str]:
    return sorted(on_disk.all_blobs(data_dir))  # files and small blobs' rows


@pytest.fixture(scope="module")
def own_server(tmp_path_factory: pytest.TempPathFactory):
    if os.environ.get("COFFRE_TEST_ENDPOINT"):
        pytest.skip("inspects the server's data directory")
    srv = Server(str(tmp_path_factory.mktemp("mp") / "data"), env={"COFFRE_GC_INTERVAL_SECONDS": "1",
                                                                                "COFFRE_GC_RELEASE_DELAY_SECONDS": "0"}).start()
    yield srv
    srv.stop()


def test_no_part_blob_survives_abort(own_server, credentials):
    """A part still streaming when its upload is aborted answers NoSuchUpload and leaves no blob."""
    s3 = make_client(own_server.endpoint, credentials)
    s3.create_bucket(Bucket="race")
    uid, _ = upload(s3, "race", "k", [b"first part"])
    data = os.urandom(3 * MiB)
    url = object_url(own_server.endpoint, "race", "k", f"partNumber=2&uploadId={uid}")
    s = sign("PUT", url, credentials, headers={"Content-Length": str(len(data))}, payload_hash=UNSIGNED)
    path = url[len(own_server.endpoint):]
    head = "".join([f"PUT {path} HTTP/1.1\r\n", f"Host: 127.0.0.1:{own_server.port}\r\n",
                    *(f"{k}: {v}\r\n" for k, v in s.headers.items()), "\r\n"]).encode()
    sock = socket.create_connection(("127.0.0.1", own_server.port), timeout=30)
    try:
        sock.sendall(head + data[:MiB])
        time.sleep(0.5)  # the server is now streaming the part into a blob
        aborter = threading.Thread(target=s3.abort_multipart_upload,
                                   kwargs={"Bucket": "race", "Key": "k", "UploadId": uid})
        aborter.start()
        aborter.join(10)
        sock.sendall(data[MiB:])
        reply = b""
        while b"</Error>" not in reply:
            more = sock.recv(65536)
            if not more:
                break
            reply += more
    finally:
        sock.close()
    assert reply.startswith(b"HTTP/1.1 404") and b"<Code>NoSuchUpload</Code>" in reply
    assert blob_files(own_server.data_dir) == []


def test_deleted_bucket_uploads_are_collected(own_server, credentials):
    s3 = make_client(own_server.endpoint, credentials)
    s3.create_bucket(Bucket="gone")
    upload(s3, "gone", "k", [b"a", b"b"])
    assert len(blob_files(own_server.data_dir)) == 2
    s3.delete_bucket(Bucket="gone")
    deadline = time.time() + 10
    while blob_files(own_server.data_dir) and time.time() < deadline:
        time.sleep(0.2)
    assert blob_files(own_server.data_dir) == []
