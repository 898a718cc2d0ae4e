"""x-amz-expiration: when a lifecycle rule will expire an object's current version.

AWS returns it on PutObject, PostObject, CopyObject, CompleteMultipartUpload, GetObject and
HeadObject. The configuration comes with the bucket record the request already read
(``BucketRecord.lifecycle``), so the header costs no read of its own.
"""

from __future__ import annotations

import re

from coffre.core import access, lifecycle
from coffre.meta.records import BucketRecord, ObjectRecord
from coffre.s3.context import Ctx
from coffre.s3.xml import http_date

HEADER = "x-amz-expiration"
_CONTROL = re.compile("[\x00-\x1f\x7f]")


def expiration(ctx: Ctx, obj: ObjectRecord, bucket: BucketRecord | None = None) -> None:
    """Set x-amz-expiration when a rule of the bucket's lifecycle configuration will expire
    ``obj``, the current version (the earliest such rule's date and ID).

    ``bucket``: the bucket as read for this request; by default the one the request was
    authorised on (core.access)."""
    if bucket is None:
        bucket = access.granted(obj.bucket)
    if bucket is None or bucket.lifecycle is None or obj.is_delete_marker or not obj.is_latest:
        return
    found = lifecycle.expiration_of(lifecycle.parsed(bucket.lifecycle), obj, ctx.settings.lifecycle_day_seconds)
    if found is not None:
        ctx.response_headers[HEADER] = expiration_header(*found)


def expiration_header(when: float, rule_id: str) -> str:
    """The header's value, as AWS writes it: expiry-date="<HTTP date>", rule-id="<id>".

    A rule ID may hold any character XML does. In the header's quoted string a backslash and a
    quote are escaped, and a control character (a line break would end the header) is written
    as %XX."""
    rid = _CONTROL.sub(lambda m: f"%{ord(m.group()):02X}", rule_id.replace("\\", "\\\\").replace('"', '\\"'))
    return f'expiry-date="{http_date(when)}", rule-id="{rid}"'
