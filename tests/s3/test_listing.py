"""ListObjects (v1) and ListObjectsV2 with boto3 against a real server, checked against a reference."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import unquote_plus

import pytest
from botocore.exceptions import ClientError

from tests.conftest import empty_bucket
from tests.listing_reference import reference
from tests.s3.test_buckets import raw

TREE = ["a", "a/", "a/b", "a/b/c", "a/b/d", "a/c", "a//x", "ab", "b/1", "b/2", "b/3/x", "c-d--e", "c--f",
        "c-d-g", "d", "é", "z\uffff", "z\U0001F600", "Z", "z", "z+plus", "sp ace", "\u00ff", "\u0100/x",
        "q%20", "photos/2024/01/a.jpg", "photos/2024/02/b.jpg", "photos/2025/c.jpg", "photos/x.jpg"]


def entries(r: dict) -> list[tuple[str, str]]:
    got = [("key", o["Key"]) for o in r.get("Contents", [])] + [("prefix", p["Prefix"])
                                                                for p in r.get("CommonPrefixes", [])]
    return sorted(got, key=lambda e: e[1].encode())


@pytest.fixture(scope="module")
def tree(s3):
    b = "list-" + uuid.uuid4().hex[:16]
    s3.create_bucket(Bucket=b)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: s3.put_object(Bucket=b, Key=k, Body=k.encode()), TREE))
    yield b
    for k in TREE:  # one by one: "\uffff" is no XML 1.0 character, so DeleteObjects cannot name it
        s3.delete_object(Bucket=b, Key=k)
    s3.delete_bucket(Bucket=b)


def list_v2(s3, bucket: str, prefix: str, delimiter: str, size: int, start_after: str = "") -> list[tuple[str, str]]:
    got: list[tuple[str, str]] = []
    kwargs: dict[str, object] = {"Bucket": bucket, "Prefix": prefix, "Delimiter": delimiter, "MaxKeys": size}
    if start_after:
        kwargs["StartAfter"] = start_after
    for _ in range(200):
        r = s3.list_objects_v2(**kwargs)
        page = entries(r)
        assert r["KeyCount"] == len(page) <= size
        assert r["MaxKeys"] == size
        got += page
        if not r["IsTruncated"]:
            assert "NextContinuationToken" not in r
            return got
        assert len(page) == size  # a truncated page is a full page
        kwargs["ContinuationToken"] = r["NextContinuationToken"]
    raise AssertionError("listing did not end")


def list_v1(s3, bucket: str, prefix: str, delimiter: str, size: int) -> list[tuple[str, str]]:
    got: list[tuple[str, str]] = []
    marker = ""
    for _ in range(200):
        r = s3.list_objects(Bucket=bucket, Prefix=prefix, Delimiter=delimiter, MaxKeys=size, Marker=marker)
        page = entries(r)
        assert len(page) <= size and r["MaxKeys"] == size
        assert r.get("Marker", "") == marker
        got += page
        if not r["IsTruncated"]:
            assert "NextMarker" not in r
            return got
        assert len(page) == size
        if delimiter:
            # NextMarker is returned only with a delimiter, and names the last entry.
            assert r["NextMarker"] == page[-1][1]
            marker = r["NextMarker"]
        else:
            assert "NextMarker" not in r
            marker = r["Contents"][-1]["Key"]  # what clients use without NextMarker
    raise AssertionError("listing did not end")


VARIANTS = [("", ""), ("", "/"), ("a", "/"), ("a/", "/"), ("photos/", "/"), ("photos/2024/", "/"),
            ("", "--"), ("c-", "-"), ("", "b"), ("z", ""), ("nothing", "/"), ("", "\U0001F600"), ("", "%"),
            ("", "2024/")]


@pytest.mark.parametrize("prefix,delimiter", VARIANTS)
def test_paging_matches_reference(s3, tree, prefix: str, delimiter: str) -> None:
    want = reference(TREE, prefix, delimiter, "")
    for size in range(1, 8):
        assert list_v2(s3, tree, prefix, delimiter, size) == want, ("v2", size)
        assert list_v1(s3, tree, prefix, delimiter, size) == want, ("v1", size)
    assert list_v2(s3, tree, prefix, delimiter, 1000) == want


@pytest.mark.parametrize("after", ["a", "a/", "a/b", "a/b/c", "b/", "b/2", "photos/2024", "photos/2024/",
                                   "photos/2024/01/a.jpg", "z", "zz", "\uffff", ""])
def test_start_after_matches_reference(s3, tree, after: str) -> None:
    for prefix, delimiter in [("", ""), ("", "/"), ("photos/", "/")]:
        want = reference(TREE, prefix, delimiter, after)
        assert list_v2(s3, tree, prefix, delimiter, 3, start_after=after) == want, (prefix, delimiter)
        r = s3.list_objects(Bucket=tree, Prefix=prefix, Delimiter=delimiter, Marker=after)
        assert entries(r) == want


def test_utf8_byte_order(s3, tree) -> None:
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=tree)["Contents"]]
    assert keys == sorted(TREE, key=lambda s: s.encode())
    assert keys.index("Z") < keys.index("a") < keys.index("z")  # upper case sorts first
    # UTF-16 order would put U+1F600 (surrogates 0xD83D...) before U+FFFF; UTF-8 puts it after.
    assert keys.index("z\uffff") < keys.index("z\U0001F600")
    r = s3.list_objects_v2(Bucket=tree, Prefix="z", StartAfter="z\uffff")
    assert [o["Key"] for o in r["Contents"]] == ["z\U0001F600"]


def test_listed_objects_carry_their_details(s3, tree) -> None:
    r = s3.list_objects_v2(Bucket=tree, Prefix="photos/x.jpg")
    [o] = r["Contents"]
    head = s3.head_object(Bucket=tree, Key="photos/x.jpg")
    assert o["ETag"] == head["ETag"] and o["Size"] == len(b"photos/x.jpg") == head["ContentLength"]
    assert o["StorageClass"] == "STANDARD"
    assert o["LastModified"].replace(microsecond=0) == head["LastModified"]  # HTTP dates have no milliseconds
    assert "Owner" not in o
    r = s3.list_objects_v2(Bucket=tree, Prefix="photos/x.jpg", FetchOwner=True)
    assert r["Contents"][0]["Owner"]["ID"] == s3.list_buckets()["Owner"]["ID"]
    r = s3.list_objects(Bucket=tree, Prefix="photos/x.jpg")  # v1 always tells the owner
    assert r["Contents"][0]["Owner"]["ID"] == s3.list_buckets()["Owner"]["ID"]


def test_echoed_parameters(s3, tree) -> None:
    r = s3.list_objects_v2(Bucket=tree, Prefix="photos/", Delimiter="/", StartAfter="photos/2024/", MaxKeys=1)
    assert (r["Name"], r["Prefix"], r["Delimiter"], r["StartAfter"], r["MaxKeys"]) == (
        tree, "photos/", "/", "photos/2024/", 1)
    assert r["IsTruncated"] and [p["Prefix"] for p in r["CommonPrefixes"]] == ["photos/2025/"]
    token = r["NextContinuationToken"]
    r = s3.list_objects_v2(Bucket=tree, Prefix="photos/", Delimiter="/", ContinuationToken=token, MaxKeys=5)
    assert r["ContinuationToken"] == token and [o["Key"] for o in r["Contents"]] == ["photos/x.jpg"]
    assert not r["IsTruncated"]


@pytest.mark.parametrize("v2", [True, False])
def test_max_keys_zero(s3, tree, v2: bool) -> None:
    r = (s3.list_objects_v2 if v2 else s3.list_objects)(Bucket=tree, MaxKeys=0)
    assert r["MaxKeys"] == 0 and not r["IsTruncated"]
    assert "Contents" not in r and "CommonPrefixes" not in r
    if v2:
        assert r["KeyCount"] == 0


@pytest.mark.parametrize("query", ["max-keys=-1", "max-keys=abc", "max-keys=", "max-keys=2147483648",
                                   "max-keys=1.5", "encoding-type=base64", "list-type=2&continuation-token=",
                                   "list-type=2&continuation-token=%21%21%21"])
def test_invalid_arguments(endpoint, credentials, tree, query: str) -> None:
    r = raw(endpoint, credentials, "GET", f"/{tree}?{query}")
    assert r.status_code == 400 and "<Code>InvalidArgument</Code>" in r.text, (query, r.text)


def test_listing_a_missing_bucket(s3) -> None:
    for call in (s3.list_objects, s3.list_objects_v2):
        with pytest.raises(ClientError) as exc:
            call(Bucket="missing-" + uuid.uuid4().hex[:12])
        assert exc.value.response["Error"]["Code"] == "NoSuchBucket"


# -- encoding-type=url --

ODD = ["ctl\x01\x02\x1f/x", "tab\there", "new\nline", "cr\rx", "sp ace/y", "plus+plus", "pct%41", "amp&lt;",
       "uni/é😀", "q?x=1#f", "star*", "tilde~_.-", "del\x7f"]


@pytest.fixture(scope="module")
def odd(s3):
    b = "odd-" + uuid.uuid4().hex[:16]
    s3.create_bucket(Bucket=b)
    for k in ODD:
        s3.put_object(Bucket=b, Key=k, Body=b"")
    yield b
    for k in ODD:  # one by one: XML 1.0 (DeleteObjects) cannot carry control characters
        s3.delete_object(Bucket=b, Key=k)
    s3.delete_bucket(Bucket=b)


def test_url_encoding_round_trips_with_sdk(s3, odd) -> None:
    # boto3 asks for encoding-type=url by itself and decodes the answer.
    r = s3.list_objects_v2(Bucket=odd)
    assert [o["Key"] for o in r["Contents"]] == sorted(ODD, key=lambda s: s.encode())
    r = s3.list_objects(Bucket=odd, Delimiter="/", Prefix="")
    assert sorted(p["Prefix"] for p in r["CommonPrefixes"]) == ["ctl\x01\x02\x1f/", "sp ace/", "uni/"]
    assert "ctl\x01\x02\x1f/x" in [o["Key"] for o in s3.list_objects(Bucket=odd, Prefix="ctl\x01")["Contents"]]


def test_url_encoding_raw(s3, odd) -> None:
    r = s3.list_objects_v2(Bucket=odd, EncodingType="url", Delimiter="/", StartAfter="a b", Prefix="")
    assert r["EncodingType"] == "url" and r["StartAfter"] == "a%20b"
    keys = [o["Key"] for o in r.get("Contents", [])] + [p["Prefix"] for p in r.get("CommonPrefixes", [])]
    for k in keys:
        assert all(0x20 < ord(c) < 0x7f for c in k), k  # nothing raw: no controls, spaces or non-ASCII
        assert "+" not in k.replace("%2B", "")  # a literal "+" would decode as a space
    assert sorted(unquote_plus(k) for k in keys) == sorted(
        {k if "/" not in k else k[: k.index("/") + 1] for k in ODD} - {"a b"})
    assert "plus%2Bplus" in keys and "pct%2541" in keys
    # v1: Marker and NextMarker are encoded too.
    r = s3.list_objects(Bucket=odd, EncodingType="url", Delimiter="/", Marker="plus+plus", MaxKeys=1)
    assert r["Marker"] == "plus%2Bplus" and r["IsTruncated"]
    assert unquote_plus(r["NextMarker"]) == "q?x=1#f" and r["NextMarker"] != "q?x=1#f"


# -- max-keys above 1000 --

@pytest.fixture(scope="module")
def thousand(s3):
    b = "many-" + uuid.uuid4().hex[:16]
    s3.create_bucket(Bucket=b)
    keys = [f"k{i:05d}" for i in range(1001)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: s3.put_object(Bucket=b, Key=k, Body=b""), keys))
    yield b, keys
    empty_bucket(s3, b)
    s3.delete_bucket(Bucket=b)


@pytest.mark.parametrize("max_keys", [None, 1000, 1001, 5000])
def test_pages_are_capped_at_1000(s3, thousand, max_keys: int | None) -> None:
    b, keys = thousand
    kwargs = {} if max_keys is None else {"MaxKeys": max_keys}
    r = s3.list_objects_v2(Bucket=b, **kwargs)
    assert r["KeyCount"] == 1000 and r["IsTruncated"] and r["MaxKeys"] == (max_keys or 1000)
    assert [o["Key"] for o in r["Contents"]] == keys[:1000]
    r2 = s3.list_objects_v2(Bucket=b, ContinuationToken=r["NextContinuationToken"], **kwargs)
    assert [o["Key"] for o in r2["Contents"]] == keys[1000:] and not r2["IsTruncated"]
    r = s3.list_objects(Bucket=b, **kwargs)
    assert len(r["Contents"]) == 1000 and r["IsTruncated"]


def test_exactly_max_keys_is_not_truncated(s3, thousand) -> None:
    b, keys = thousand
    r = s3.list_objects_v2(Bucket=b, StartAfter=keys[0])
    assert r["KeyCount"] == 1000 and not r["IsTruncated"] and "NextContinuationToken" not in r
    paged = [o["Key"] for p in s3.get_paginator("list_objects_v2").paginate(Bucket=b) for o in p["Contents"]]
    assert paged == keys
