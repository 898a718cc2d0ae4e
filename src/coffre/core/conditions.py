"""HTTP preconditions on reads and copies, with the precedence AWS documents.

If-Match that holds wins over a failing If-Unmodified-Since; If-None-Match
that fails (the ETag matches) wins over a holding If-Modified-Since.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from coffre.core.errors import NotModified, PreconditionFailed


def parse_http_date(value: str | None) -> float | None:
    """Seconds since the epoch, or None when absent or unparsable (S3 then ignores the header)."""
    if not value:
        return None
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def etag_matches(header: str, etag: str) -> bool:
    """True when a comma-separated If-Match / If-None-Match list names ``etag`` (or is "*")."""
    bare = etag.strip('"')
    for item in header.split(","):
        item = item.strip()
        if item.startswith("W/"):
            item = item[2:]
        if item == "*" or item.strip('"') == bare:
            return True
    return False


@dataclass(frozen=True, slots=True)
class ReadConditions:
    if_match: str | None = None
    if_none_match: str | None = None
    if_modified_since: str | None = None
    if_unmodified_since: str | None = None

    def check(self, etag: str, last_modified: float, *, copy_source: bool = False) -> None:
        """Raise PreconditionFailed (412) or NotModified (304) as S3 does.

        For copy sources every failed condition is a 412: there is no 304 for a copy.
        """
        lm = int(last_modified)  # HTTP dates have one-second resolution
        if self.if_match is not None:
            if not etag_matches(self.if_match, etag):
                raise PreconditionFailed(condition="If-Match")
        else:
            t = parse_http_date(self.if_unmodified_since)
            if t is not None and lm > t:
                raise PreconditionFailed(condition="If-Unmodified-Since")
        if self.if_none_match is not None:
            if etag_matches(self.if_none_match, etag):
                if copy_source:
                    raise PreconditionFailed(condition="If-None-Match")
                raise NotModified(etag=etag, last_modified=last_modified)
        else:
            t = parse_http_date(self.if_modified_since)
            if t is not None and lm <= t:
                if copy_source:
                    raise PreconditionFailed(condition="If-Modified-Since")
                raise NotModified(etag=etag, last_modified=last_modified)
