"""Last-Modified's HTTP date: the fast formatter agrees with the standard library's."""

from __future__ import annotations

import random
from email.utils import formatdate

import pytest

from coffre.s3.xml import http_date


@pytest.mark.parametrize("ts", [0, 0.999, 784111777, 951782400.5, 1709164800, 2147483647, 4102444799, 4102444800])
def test_known_instants(ts: float) -> None:
    # Leap days, the 32-bit rollover, the last second of a year; fractions are dropped.
    assert http_date(ts) == formatdate(int(ts), usegmt=True)


def test_agrees_with_formatdate_everywhere() -> None:
    rnd = random.Random(7)
    for _ in range(20_000):
        ts = rnd.uniform(0, 2**33)
        assert http_date(ts) == formatdate(int(ts), usegmt=True)


def test_rfc_example() -> None:
    assert http_date(784111777) == "Sun, 06 Nov 1994 08:49:37 GMT"  # RFC 9110's example
