"""When lifecycle rules will act, in the headers AWS answers with.

x-amz-expiration (when a rule will expire an object's current version) on PutObject,
PostObject, CopyObject, CompleteMultipartUpload, GetObject and HeadObject; x-amz-abort-date and
x-amz-abort-rule-id (when a rule will abort an incomplete multipart upload) on
CreateMultipartUpload and ListParts. The configuration comes with the bucket record the request
already read (``BucketRecord.lifecycle``), so these headers cost no read of their own.
"""

from __future__ import annotations

import re

from coffre.core import access, lifecycle
from coffre.meta.records import BucketRecord, ObjectRecord, UploadRecord
from coffre.s3.context import Ctx
from coffre.s3.xml import http_date

HEADER = "x-amz-expiration"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _configuration(bucket_name: str, bucket: BucketRecord | None = None) -> lifecycle.Configuration | None:
    """The lifecycle configuration of the bucket as read for this request (by default the one
    the request was authorised on: core.access), or None."""
    if bucket is None:
        bucket = access.granted(bucket_name)
    return None if bucket is None or bucket.lifecycle is None else lifecycle.parsed(bucket.lifecycle)


def expiration(ctx: Ctx, obj: ObjectRecord, bucket: BucketRecord | None = None) -> None:
    """Set x-amz-expiration when a rule of the bucket's lifecycle configuration will expire
    ``obj``, the current version (the earliest such rule's date and ID).

    ``bucket``: the bucket as read for this request, when the caller has it at hand."""
    if obj.is_delete_marker or not obj.is_latest:
        return
    config = _configuration(obj.bucket, bucket)
    found = None if config is None else lifecycle.expiration_of(config, obj, ctx.settings.lifecycle_day_seconds)
    if found is not None:
        ctx.response_headers[HEADER] = expiration_header(*found)


def abort_date(ctx: Ctx, upload: UploadRecord) -> None:
    """Set x-amz-abort-date and x-amz-abort-rule-id when a rule will abort ``upload`` (the
    earliest such rule), as AWS does on CreateMultipartUpload and ListParts."""
    config = _configuration(upload.bucket)
    found = None if config is None else lifecycle.abort_of(config, upload, ctx.settings.lifecycle_day_seconds)
    if found is not None:
        when, rule_id = found
        ctx.response_headers["x-amz-abort-date"] = http_date(when)
        ctx.response_headers["x-amz-abort-rule-id"] = _CONTROL.sub(_percent, rule_id)


def expiration_header(when: float, rule_id: str) -> str:
    """The header's value, as AWS writes it: expiry-date="<HTTP date>", rule-id="<id>".

    A rule ID may hold any character XML does. In the header's quoted string a backslash and a
    quote are escaped, and a control character (a line break would end the header) is written
    as %XX."""
    rid = _CONTROL.sub(_percent, rule_id.replace("\\", "\\\\").replace('"', '\\"'))
    return f'expiry-date="{http_date(when)}", rule-id="{rid}"'


def _percent(m: re.Match[str]) -> str:
    return f"%{ord(m.group()):02X}"
