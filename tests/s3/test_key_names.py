"""Object keys are opaque: no key reaches a path outside the blob directory, all round-trip distinct."""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata

import pytest

from tests.s3.chunked_client import send, sign

NFC = unicodedata.normalize("NFC", "café")
NFD = unicodedata.normalize("NFD", "café")

KEYS = [
    "../../etc/passwd", "a/../../b", "../", "..", ".", "./x", "/leading", "trailing/", "//double", "a//b",
    "%2e%2e", "%2e%2e/%2e%2e/etc/passwd", "a%2Fb", "a/b", "a\\b", "..\\..\\win", NFC, NFD,
    "nul\x00byte", "tab\tkey", "line\nfeed", "cr\rreturn", "space ", " lead", "?query", "#frag", "a+b",
    "a b", "a&b=c;d", "ünïcødé/日本語/😀", "\u202eRTL", "~tilde", "*", "blobs/00/00/x", "tmp/x",
]


def _body(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


@pytest.fixture
def stored(s3, bucket):
    for k in KEYS:
        s3.put_object(Bucket=bucket, Key=k, Body=_body(k))
    yield bucket
    # One by one: XML 1.0 cannot carry NUL, so DeleteObjects (the fixture's cleanup) cannot name it.
    for k in KEYS:
        s3.delete_object(Bucket=bucket, Key=k)


def test_keys_round_trip_distinct(s3, stored):
    assert NFC != NFD
    for k in KEYS:
        g = s3.get_object(Bucket=stored, Key=k)
        assert g["Body"].read() == _body(k), repr(k)
    listed = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=stored):
        listed += [o["Key"] for o in page.get("Contents", [])]
    assert sorted(listed) == sorted(KEYS)
    assert len(set(listed)) == len(KEYS)


def test_deleting_one_spelling_keeps_the_other(s3, stored):
    s3.delete_object(Bucket=stored, Key=NFD)
    assert s3.get_object(Bucket=stored, Key=NFC)["Body"].read() == _body(NFC)
    s3.delete_object(Bucket=stored, Key="a/b")
    assert s3.get_object(Bucket=stored, Key="a%2Fb")["Body"].read() == _body("a%2Fb")
    assert s3.get_object(Bucket=stored, Key="a//b")["Body"].read() == _body("a//b")


def test_copy_between_odd_keys(s3, stored):
    s3.copy_object(Bucket=stored, Key="../copied", CopySource={"Bucket": stored, "Key": "../../etc/passwd"})
    assert s3.get_object(Bucket=stored, Key="../copied")["Body"].read() == _body("../../etc/passwd")


def test_raw_dot_segments_are_not_normalised(endpoint, credentials, s3, bucket):
    # Sent literally (not percent-encoded), "/../" stays part of the key: it does not climb to another bucket.
    url = f"{endpoint}/{bucket}/x/../../y"
    s = sign("PUT", url, credentials, body=b"raw")
    r = send("PUT", url, s.headers, b"raw")
    assert r.status == 200, r.body
    assert s3.get_object(Bucket=bucket, Key="x/../../y")["Body"].read() == b"raw"


def test_nothing_lands_outside_the_blob_directory(server, s3, stored):
    if server is None:
        pytest.skip("needs the local server's data directory")
    data = os.path.realpath(server.data_dir)
    blobs = os.path.join(data, "blobs")
    allowed_top = {"meta.sqlite3", "meta.sqlite3-wal", "meta.sqlite3-shm", "root.key"}
    for root, dirs, files in os.walk(data):
        real = os.path.realpath(root)
        for name in files:
            path = os.path.join(real, name)
            assert not os.path.islink(path), path
            if real == data:
                assert name in allowed_top, path
                continue
            if real == os.path.join(data, "audit"):  # the audit trail: server-named files only
                assert name in ("signing.key", "signing.pub") or re.fullmatch(r"audit-\d{8}-\d{4,}\.jsonl", name), path
                continue
            if real == blobs and name in ("small.db", "small.db-wal", "small.db-shm"):
                continue  # small blobs' database: rows keyed by the same ids
            assert real.startswith(blobs + os.sep), path
            # Blob files are named by server-generated hex ids only, never by keys.
            assert all(c in "0123456789abcdef" for c in name), path
        for d in dirs:
            assert not os.path.islink(os.path.join(real, d))
            if real == data:
                assert d in ("blobs", "audit"), d
    # And nothing next to the data directory was created by a key climbing out of it.
    parent = os.path.dirname(data)
    for k in ("etc", "b", "win", "x", "copied"):
        assert not os.path.exists(os.path.join(parent, k))
        assert not os.path.exists(os.path.join(blobs, k))


def test_key_that_is_not_utf8(endpoint, credentials, bucket):
    # %FF decodes to no UTF-8 text: refused on write, simply absent on read, never a 500.
    url = f"{endpoint}/{bucket}/bad%FFkey"
    s = sign("PUT", url, credentials, body=b"x")
    r = send("PUT", url, s.headers, b"x")
    assert r.status == 400 and r.error_code() in ("InvalidArgument", "InvalidURI"), r.body
    s = sign("GET", url, credentials)
    r = send("GET", url, s.headers)
    assert r.status in (400, 404), r.body
