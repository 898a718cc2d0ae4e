"""Validation of bucket names and object keys (AWS rules)."""

from __future__ import annotations

import re

from coffre.core.errors import InvalidArgument, InvalidBucketName, KeyTooLongError

# Used with fullmatch: "$" would also match before a trailing newline ("abc\n").
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_IPV4 = re.compile(r"\d{1,3}(\.\d{1,3}){3}")
_BAD_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_BAD_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")


def check_bucket_name(name: str) -> str:
    """General-purpose bucket naming rules, as AWS enforces them for new buckets."""
    if (not _BUCKET.fullmatch(name) or ".." in name or ".-" in name or "-." in name or _IPV4.fullmatch(name)
            or name.startswith(_BAD_PREFIXES) or name.endswith(_BAD_SUFFIXES)):
        raise InvalidBucketName(bucket=name)
    return name


def looks_like_bucket(name: str) -> bool:
    """Loose check used for routing (legacy names may contain upper case or underscores)."""
    return 0 < len(name) <= 255


def check_key(key: str, max_length: int = 1024) -> str:
    if key == "":
        raise InvalidArgument("Object key must not be empty", name="key")
    try:
        n = len(key.encode("utf-8"))
    except UnicodeEncodeError as e:
        raise InvalidArgument("Object key is not valid UTF-8", name="key") from e
    if n > max_length:
        raise KeyTooLongError(size=n, max=max_length)
    return key
