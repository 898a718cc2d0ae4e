"""Multipart checksum and ETag rules, checked against values computed independently here."""

from __future__ import annotations

import base64
import hashlib
import os
import zlib

import pytest
from awscrt import checksums as crt

from coffre.core.errors import InvalidRequest
from coffre.core.multipart import multipart_etag, object_checksum, resolve_checksum

PARTS = [os.urandom(1000), os.urandom(4096), os.urandom(1), os.urandom(77)]
WHOLE = b"".join(PARTS)


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def crc(algorithm: str, data: bytes) -> bytes:
    if algorithm == "CRC32":
        return zlib.crc32(data).to_bytes(4, "big")
    if algorithm == "CRC32C":
        return crt.crc32c(data).to_bytes(4, "big")
    return crt.crc64nvme(data).to_bytes(8, "big")


@pytest.mark.parametrize(("algorithm", "ctype", "expected"), [
    (None, None, (None, None)),
    ("crc32", None, ("CRC32", "COMPOSITE")),
    ("CRC32", "FULL_OBJECT", ("CRC32", "FULL_OBJECT")),
    ("CRC32C", None, ("CRC32C", "COMPOSITE")),
    ("CRC32C", "full_object", ("CRC32C", "FULL_OBJECT")),
    ("CRC64NVME", None, ("CRC64NVME", "FULL_OBJECT")),
    ("CRC64NVME", "FULL_OBJECT", ("CRC64NVME", "FULL_OBJECT")),
    ("SHA1", None, ("SHA1", "COMPOSITE")),
    ("SHA256", "COMPOSITE", ("SHA256", "COMPOSITE")),
])
def test_resolve_checksum_accepts(algorithm, ctype, expected):
    assert resolve_checksum(algorithm, ctype) == expected


@pytest.mark.parametrize(("algorithm", "ctype"), [
    ("SHA1", "FULL_OBJECT"), ("SHA256", "FULL_OBJECT"), ("CRC64NVME", "COMPOSITE"),
    (None, "COMPOSITE"), ("CRC32", "PARTIAL"), ("MD5", None),
])
def test_resolve_checksum_refuses(algorithm, ctype):
    with pytest.raises(InvalidRequest):
        resolve_checksum(algorithm, ctype)


@pytest.mark.parametrize("algorithm", ["CRC32", "CRC32C", "CRC64NVME"])
def test_full_object_equals_checksum_of_whole(algorithm):
    parts = [(b64(crc(algorithm, p)), len(p)) for p in PARTS]
    assert object_checksum(algorithm, "FULL_OBJECT", parts) == b64(crc(algorithm, WHOLE))


def test_full_object_single_part():
    assert object_checksum("CRC32", "FULL_OBJECT", [(b64(crc("CRC32", WHOLE)), len(WHOLE))]) == \
        b64(crc("CRC32", WHOLE))


@pytest.mark.parametrize("algorithm", ["CRC32", "CRC32C"])
def test_composite_crc_is_crc_of_part_crcs(algorithm):
    raw = [crc(algorithm, p) for p in PARTS]
    got = object_checksum(algorithm, "COMPOSITE", [(b64(r), 0) for r in raw])
    assert got == f"{b64(crc(algorithm, b''.join(raw)))}-{len(PARTS)}"
    # Not the checksum of the whole object: it depends on where the parts were cut.
    assert not got.startswith(b64(crc(algorithm, WHOLE)))


@pytest.mark.parametrize(("algorithm", "fn"), [("SHA1", hashlib.sha1), ("SHA256", hashlib.sha256)])
def test_composite_sha_is_hash_of_part_hashes(algorithm, fn):
    raw = [fn(p).digest() for p in PARTS]
    got = object_checksum(algorithm, "COMPOSITE", [(b64(r), len(p)) for r, p in zip(raw, PARTS, strict=True)])
    assert got == f"{b64(fn(b''.join(raw)).digest())}-4"


def test_multipart_etag():
    md5s = [hashlib.md5(p).digest() for p in PARTS]
    etags = [f'"{m.hex()}"' for m in md5s]
    assert multipart_etag(etags) == f'"{hashlib.md5(b"".join(md5s)).hexdigest()}-4"'
    assert multipart_etag(etags[:1]) == f'"{hashlib.md5(md5s[0]).hexdigest()}-1"'
