"""Byte ranges (RFC 9110) as S3 applies them to GET and UploadPartCopy."""

from __future__ import annotations

import re

from coffre.core.errors import InvalidArgument, InvalidRange

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """Return [start, end) for a satisfiable single range, None to serve the whole object.

    A syntactically invalid header or several ranges are ignored (the whole object is
    served), as S3 does; an unsatisfiable one raises InvalidRange (416).
    """
    if not header:
        return None
    m = _RANGE.match(header.strip())
    if not m or (m.group(1) == "" and m.group(2) == ""):
        return None
    first, last = m.group(1), m.group(2)
    if first == "":
        n = int(last)
        if n == 0 or size == 0:
            raise InvalidRange(range=header, actual_size=size)
        return max(0, size - n), size
    start = int(first)
    if last != "" and int(last) < start:
        return None
    if start >= size:
        raise InvalidRange(range=header, actual_size=size)
    end = size if last == "" else min(size, int(last) + 1)
    return start, end


def parse_copy_range(header: str, size: int) -> tuple[int, int]:
    """x-amz-copy-source-range: must be bytes=first-last, inside the source object."""
    m = _RANGE.match(header.strip())
    if not m or m.group(1) == "" or m.group(2) == "":
        raise InvalidArgument("The x-amz-copy-source-range value must be of the form bytes=first-last "
                              "where first and last are the zero-based offsets of the first and last bytes to copy")
    start, last = int(m.group(1)), int(m.group(2))
    if last < start or last >= size:
        raise InvalidRange(range=header, actual_size=size)
    return start, last + 1
