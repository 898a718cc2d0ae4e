"""One request as the audit trail records it.

What is recorded is who touched what and how it ended, never a secret: no Authorization
value, no signature, no secret key, no presigned query string. Object keys are recorded
(the trail exists to say who touched which object); metering exports, not this log, are
the ones that must carry no names.
"""

from __future__ import annotations

import dataclasses
import re
import time
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from coffre.core.identity import Principal
from coffre.meta.records import BucketRecord

# The access key id a refused request claimed (it is an identifier, not a secret): the trail
# of failed attempts is what shows a brute force or a leaked key being tried.
_CREDENTIAL = re.compile(r"Credential=([A-Za-z0-9]{1,128})/|^AWS ([A-Za-z0-9]{1,128}):")
_QUERY_KEY = re.compile(r"(?:^|&)(?:X-Amz-Credential=([A-Za-z0-9]{1,128})(?:%2F|/)|AWSAccessKeyId=([A-Za-z0-9]{1,128}))")


@dataclass(slots=True)  # not frozen: a frozen init costs 2 us more, and one is built per request
class AuditEvent:
    time: float  # when the request arrived (epoch seconds; written as UTC)
    request_id: str
    principal: str  # ARN of the authenticated principal, or "anonymous"
    tenant: str | None
    access_key: str | None  # the key the request was signed with, even when refused
    operation: str  # the S3 operation name (PutObject...), "Unknown" when unroutable
    bucket: str | None
    key: str | None
    version_id: str | None
    status: int
    error_code: str | None
    bytes_in: int
    bytes_out: int
    source_ip: str | None
    user_agent: str | None
    duration_ms: int
    api: str = "s3"
    # An operator acting through the admin API (api "admin"): recorded as such.
    operator_action: bool = False
    # The tenant owning the bucket addressed, when it is not the caller's (or the caller is not
    # known): that tenant sees the record in its own export too (docs/audit.md, "Tenants").
    bucket_owner: str | None = None

    def fields(self) -> dict[str, Any]:
        """The record's fields (all but ``time``); text a client sent made encodable."""
        # Not dataclasses.asdict: it deep-copies every value, and this runs once per request.
        out = {name: getattr(self, name) for name in _RECORDED}
        for name in ("key", "bucket", "user_agent", "version_id"):
            if isinstance(out[name], str):
                out[name] = _text(out[name])
        return out


_RECORDED = tuple(f.name for f in dataclasses.fields(AuditEvent) if f.name != "time")


def _text(value: str) -> str:
    """Keys may hold bytes that are not UTF-8 (kept as surrogates): written as \\xNN escapes."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return value


def claimed_access_key(headers: dict[str, str] | None, raw_query: str) -> str | None:
    if headers:
        m = _CREDENTIAL.search(headers.get("authorization", ""))
        if m:
            return m.group(1) or m.group(2)
    m = _QUERY_KEY.search(raw_query)
    if m:
        return m.group(1) or m.group(2)
    return None


class RequestView(Protocol):
    """What the front end knows of a request once routed and authenticated (s3's Ctx)."""

    operation: str
    bucket: str | None
    key: str | None
    principal: Principal | None
    headers: dict[str, str]
    query: dict[str, str]
    bucket_record: BucketRecord | None


def s3_event(request: web.BaseRequest, response: web.StreamResponse, ctx: RequestView | None,
             request_id: str, started: float, error_code: str | None) -> AuditEvent:
    """The event of one S3 request, from what the front end knows once it has answered."""
    # Bytes in: what arrived on the connection for the body (framing of aws-chunked included).
    bytes_in = int(getattr(request.content, "total_bytes", 0) or 0)
    if request.method == "HEAD":  # Content-Length describes the object; no body is sent
        bytes_out = 0
    elif response.prepared:  # streamed by the handler (GetObject): what was actually sent
        bytes_out = response.body_length
    else:
        bytes_out = response.content_length or 0
    principal = ctx.principal if ctx is not None else None
    headers = ctx.headers if ctx is not None else {"authorization": request.headers.get("Authorization", "")}
    access_key = principal.access_key_id if principal is not None else \
        claimed_access_key(headers, request.raw_path.partition("?")[2])
    owner = ctx.bucket_record.tenant_id if ctx is not None and ctx.bucket_record is not None else None
    return AuditEvent(
        time=started, request_id=request_id,
        principal=principal.arn if principal is not None else "anonymous",
        tenant=principal.tenant_id if principal is not None else None,
        access_key=access_key, operation=ctx.operation if ctx is not None else "Unknown",
        bucket=ctx.bucket if ctx is not None else None, key=ctx.key if ctx is not None else None,
        version_id=response.headers.get("x-amz-version-id") or (ctx.query.get("versionId") if ctx else None),
        status=response.status, error_code=error_code, bytes_in=bytes_in, bytes_out=bytes_out,
        source_ip=request.remote, user_agent=request.headers.get("User-Agent"),
        duration_ms=int((time.time() - started) * 1000),
        bucket_owner=owner if owner is not None and (principal is None or owner != principal.tenant_id) else None,
    )


def admin_event(request: web.BaseRequest, response: web.StreamResponse, *, operator: str | None,
                access_key: str | None, operation: str, tenant: str | None, bucket: str | None,
                request_id: str, started: float, error_code: str | None, bytes_in: int) -> AuditEvent:
    """The event of one admin API request: the operator (by name) is the principal, and the event
    says it was an operator's act (``operator_action``), on which tenant when there is one."""
    return AuditEvent(
        time=started, request_id=request_id, principal=operator if operator is not None else "anonymous",
        tenant=tenant, access_key=access_key, operation=operation, bucket=bucket, key=None, version_id=None,
        status=response.status, error_code=error_code, bytes_in=bytes_in,
        bytes_out=response.content_length or 0, source_ip=request.remote,
        user_agent=request.headers.get("User-Agent"), duration_ms=int((time.time() - started) * 1000),
        api="admin", operator_action=True,
    )
