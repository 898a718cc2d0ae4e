"""AWS general-purpose bucket naming rules, as CreateBucket enforces them."""

from __future__ import annotations

import pytest

from coffre.core.errors import InvalidBucketName
from coffre.core.names import check_bucket_name

VALID = ["abc", "a" * 63, "a.b-c", "1abc", "123", "0-0", "my.bucket.name", "a--b", "xn-abc", "sthree",
         "192.168.5.4x", "1.2.3", "1.2.3.4.5", "abc-s3alia", "amzn-s3-demo", "x-s3", "b.mrap1"]
INVALID = ["", "a", "ab", "a" * 64, "Abc", "abC", "a_b", "a b", "a/b", "a:b", "-abc", "abc-", ".abc", "abc.",
           "a..b", "a.-b", "a-.b", "192.168.5.4", "10.0.0.1", "1.1.1.1", "xn--abc", "sthree-abc",
           "sthree-configurator", "amzn-s3-demo-bucket", "abc-s3alias", "abc--ol-s3", "abc.mrap", "abc--x-s3",
           "abc--table-s3", "ab\u00e9", "abc\n", "\nabc"]


@pytest.mark.parametrize("name", VALID)
def test_valid(name: str) -> None:
    assert check_bucket_name(name) == name


@pytest.mark.parametrize("name", INVALID)
def test_invalid(name: str) -> None:
    with pytest.raises(InvalidBucketName):
        check_bucket_name(name)
