"""Byte ranges as S3 applies them (RFC 9110 single ranges; the rest ignored)."""

from __future__ import annotations

import pytest

from coffre.core.errors import InvalidArgument, InvalidRange
from coffre.core.ranges import parse_copy_range, parse_range


@pytest.mark.parametrize(("header", "size", "span"), [
    ("bytes=0-0", 10, (0, 1)),
    ("bytes=0-9", 10, (0, 10)),
    ("bytes=2-5", 10, (2, 6)),
    ("bytes=5-", 10, (5, 10)),
    ("bytes=9-", 10, (9, 10)),
    ("bytes=-1", 10, (9, 10)),
    ("bytes=-10", 10, (0, 10)),
    ("bytes=-100", 10, (0, 10)),
    ("bytes=3-1000", 10, (3, 10)),
    (" bytes=1-2 ", 10, (1, 3)),
])
def test_satisfiable(header, size, span):
    assert parse_range(header, size) == span


@pytest.mark.parametrize("header", [None, "", "bytes=", "bytes=-", "bytes=a-b", "bytes=5-2", "bits=0-1",
                                    "bytes=0-1,3-4", "bytes=1-2-3", "bytes 0-1"])
def test_ignored(header):
    assert parse_range(header, 10) is None


@pytest.mark.parametrize(("header", "size"), [
    ("bytes=10-", 10), ("bytes=10-20", 10), ("bytes=-0", 10), ("bytes=0-", 0), ("bytes=-5", 0),
])
def test_unsatisfiable(header, size):
    with pytest.raises(InvalidRange) as e:
        parse_range(header, size)
    assert e.value.fields["range"] == header
    assert e.value.fields["actual_size"] == size


def test_copy_range():
    assert parse_copy_range("bytes=0-4", 10) == (0, 5)
    assert parse_copy_range("bytes=9-9", 10) == (9, 10)
    for bad in ("bytes=5-", "bytes=-5", "0-4", "bytes=a-b"):
        with pytest.raises(InvalidArgument):
            parse_copy_range(bad, 10)
    for out in ("bytes=5-10", "bytes=6-5"):
        with pytest.raises(InvalidRange):
            parse_copy_range(out, 10)
