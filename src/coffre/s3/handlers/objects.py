"""Object operations: PutObject, GetObject, HeadObject, DeleteObject."""

from __future__ import annotations

import logging

from aiohttp import web

from coffre.core import checksums
from coffre.core.conditions import ReadConditions
from coffre.core.errors import (
    CoffreError,
    InvalidArgument,
    InvalidPartNumber,
    InvalidRange,
    InvalidRequest,
    NotModified,
)
from coffre.core.objectlock import LockRequest
from coffre.core.objects import STORED_HEADERS, Deleted, WriteMeta
from coffre.core.ranges import parse_range
from coffre.core.tagging import parse_header
from coffre.meta.records import NULL_VERSION, ObjectRecord
from coffre.notify.events import Change
from coffre.s3 import authz
from coffre.s3.context import Ctx, operation
from coffre.s3.handlers import encryption
from coffre.s3.handlers.documents import integrity
from coffre.s3.handlers.expiration import expiration
from coffre.s3.handlers.versioning import delete_marker_headers, deleted_headers
from coffre.s3.xml import http_date, iso8601

log = logging.getLogger("coffre.s3")

# Bodies up to this size are sent in one write, larger ones streamed.
SMALL_BODY = 256 * 1024
_STORED_LOWER = {h.lower(): h for h in STORED_HEADERS}
_RESPONSE_OVERRIDES = {
    "response-content-type": "Content-Type", "response-content-language": "Content-Language",
    "response-expires": "Expires", "response-cache-control": "Cache-Control",
    "response-content-disposition": "Content-Disposition", "response-content-encoding": "Content-Encoding",
}


def _utf8(name: str, value: str) -> str:
    """A stored header value must be valid UTF-8 to be returned byte for byte.

    Request headers were decoded with surrogateescape; a surrogate means bytes that are not
    UTF-8, which could never be written back. (Non-ASCII text is stored as sent: RFC 2047
    encoding, as boto3 requires for metadata, is the client's business and round-trips.)
    """
    if any("\udc80" <= c <= "\udcff" for c in value):
        raise InvalidArgument(f"The value of the {name} header is not valid UTF-8.", name=name)
    return value


def write_meta(ctx: Ctx) -> WriteMeta:
    """Content-Type, stored system headers and x-amz-meta-* from a request."""
    h = ctx.headers
    for name, value in h.items():
        if name.startswith("x-amz-meta-") or name in _STORED_LOWER or name == "content-type":
            _utf8(name, value)
    headers = {canon: h[low] for low, canon in _STORED_LOWER.items() if low in h}
    enc = headers.get("Content-Encoding")
    if enc is not None:
        # aws-chunked is transport framing, not a property of the object.
        kept = [e.strip() for e in enc.split(",") if e.strip() and e.strip().lower() != "aws-chunked"]
        if kept:
            headers["Content-Encoding"] = ",".join(kept)
        else:
            del headers["Content-Encoding"]
    user = {k[len("x-amz-meta-"):]: v for k, v in h.items() if k.startswith("x-amz-meta-")}
    storage = h.get("x-amz-storage-class", "STANDARD")
    tagging = h.get("x-amz-tagging")
    tags = dict(parse_header(tagging)) if tagging is not None else {}
    lock = LockRequest.from_headers(h.get("x-amz-object-lock-mode"), h.get("x-amz-object-lock-retain-until-date"),
                                    h.get("x-amz-object-lock-legal-hold"))
    return WriteMeta(content_type=h.get("content-type"), headers=headers, user_meta=user, storage_class=storage,
                     tags=tags, lock=lock)


def object_headers(ctx: Ctx, obj: ObjectRecord, *, checksum: bool = False) -> None:
    """Headers GET and HEAD return for an object (not Content-Length/Range)."""
    rh = ctx.response_headers
    rh["ETag"] = obj.etag
    rh["Last-Modified"] = http_date(obj.last_modified)
    rh["Content-Type"] = obj.content_type
    rh["Accept-Ranges"] = "bytes"
    for name, value in obj.headers.items():
        rh[name] = value
    for name, value in obj.user_meta.items():
        rh["x-amz-meta-" + name] = value
    encryption.response_headers(ctx, obj.sse, obj.tenant_id)
    if obj.version_id != NULL_VERSION:
        rh["x-amz-version-id"] = obj.version_id
    if obj.storage_class != "STANDARD":
        rh["x-amz-storage-class"] = obj.storage_class
    if obj.tags:
        rh["x-amz-tagging-count"] = str(len(obj.tags))
    if checksum and obj.checksum_algorithm and obj.checksum_value:
        rh[checksums.header_name(obj.checksum_algorithm)] = obj.checksum_value
        if obj.checksum_type:
            rh["x-amz-checksum-type"] = obj.checksum_type


async def lock_headers(ctx: Ctx, obj: ObjectRecord) -> None:
    """x-amz-object-lock-mode / -retain-until-date / -legal-hold on GET and HEAD, each only
    when the caller may read it (s3:GetObjectRetention / s3:GetObjectLegalHold), as AWS does."""
    if obj.lock_mode is None and obj.legal_hold is None:
        return
    rh = ctx.response_headers
    version_id = ctx.query.get("versionId")
    if obj.lock_mode is not None and obj.lock_until is not None \
            and await authz.may(ctx, "s3:GetObjectRetention", obj.key, version_id):
        rh["x-amz-object-lock-mode"] = obj.lock_mode
        rh["x-amz-object-lock-retain-until-date"] = iso8601(obj.lock_until)
    if obj.legal_hold is not None and await authz.may(ctx, "s3:GetObjectLegalHold", obj.key, version_id):
        rh["x-amz-object-lock-legal-hold"] = "ON" if obj.legal_hold else "OFF"


def committed(ctx: Ctx, name: str, obj: ObjectRecord) -> None:
    """A new object version: recorded for event notifications (coffre.notify), and its
    x-amz-expiration when a lifecycle rule will expire it."""
    ctx.changes.append(Change(name, obj.key, obj.size, obj.etag,
                              obj.version_id if obj.version_id != NULL_VERSION else None))
    expiration(ctx, obj)


def read_conditions(ctx: Ctx) -> ReadConditions:
    h = ctx.headers
    return ReadConditions(if_match=h.get("if-match"), if_none_match=h.get("if-none-match"),
                          if_modified_since=h.get("if-modified-since"),
                          if_unmodified_since=h.get("if-unmodified-since"))


@operation("PutObject")
async def put_object(ctx: Ctx) -> web.StreamResponse:
    integ = integrity(ctx)
    obj = await ctx.coffre.objects.put_object(
        ctx.p, ctx.b, ctx.k, ctx.body(), content_length=ctx.payload_length(),
        wm=await authz.owned(ctx, await encryption.with_sse(ctx, write_meta(ctx))),
        integrity=integ, if_match=ctx.headers.get("if-match"), if_none_match=ctx.headers.get("if-none-match"))
    committed(ctx, "ObjectCreated:Put", obj)
    rh = ctx.response_headers
    rh["ETag"] = obj.etag
    encryption.response_headers(ctx, obj.sse, obj.tenant_id)
    if obj.version_id != NULL_VERSION:
        rh["x-amz-version-id"] = obj.version_id
    if obj.checksum_algorithm and obj.checksum_value:
        rh[checksums.header_name(obj.checksum_algorithm)] = obj.checksum_value
        rh["x-amz-checksum-type"] = "FULL_OBJECT"
    return ctx.empty()


def _part_number(ctx: Ctx) -> int | None:
    raw = ctx.query.get("partNumber")
    if raw is None:
        return None
    try:
        n = int(raw)
    except ValueError as e:
        raise InvalidArgument("Part number must be an integer between 1 and 10000, inclusive",
                              name="partNumber") from e
    if not 1 <= n <= 10000:
        raise InvalidArgument("Part number must be an integer between 1 and 10000, inclusive", name="partNumber")
    return n


async def _resolve(ctx: Ctx) -> tuple[ObjectRecord, tuple[int, int] | None, int | None]:
    """The object, the byte span to serve (None: all of it) and the part number asked for."""
    part_number = _part_number(ctx)
    if part_number is not None and "range" in ctx.headers:
        raise InvalidRequest("Cannot specify both Range header and partNumber query parameter")
    try:
        obj, bucket = await ctx.coffre.objects.locate(ctx.p, ctx.b, ctx.k, ctx.query.get("versionId"),
                                                      with_parts=True)
    except CoffreError as e:
        delete_marker_headers(ctx, e)
        raise
    try:
        read_conditions(ctx).check(obj.etag, obj.last_modified)
    except NotModified:
        # A 304 carries the validators (the ETag comes from the error's fields).
        ctx.response_headers["Last-Modified"] = http_date(obj.last_modified)
        raise
    if obj.version_id == NULL_VERSION and bucket.versioning:
        # A bucket ever versioned shows its null version's id; an unversioned one shows none.
        ctx.response_headers["x-amz-version-id"] = NULL_VERSION
    expiration(ctx, obj, bucket)
    span: tuple[int, int] | None = None
    if part_number is not None:
        if obj.parts:
            if part_number > len(obj.parts):
                raise InvalidPartNumber(part_number=part_number)
            start = sum(p.size for p in obj.parts[: part_number - 1])
            span = (start, start + obj.parts[part_number - 1].size)
            ctx.response_headers["x-amz-mp-parts-count"] = str(len(obj.parts))
            part = obj.parts[part_number - 1]
            if part.checksum and obj.checksum_algorithm \
                    and ctx.headers.get("x-amz-checksum-mode", "").upper() == "ENABLED":
                # A part GET answers with that part's own checksum: the one its bytes can be checked against.
                ctx.response_headers[checksums.header_name(obj.checksum_algorithm)] = part.checksum
                ctx.response_headers["x-amz-checksum-type"] = obj.checksum_type or "FULL_OBJECT"
        elif part_number != 1:
            raise InvalidPartNumber(part_number=part_number)
        elif obj.size > 0:
            # Part 1 of a simple object is the whole object, served as a range (206), as S3 does.
            span = (0, obj.size)
    else:
        try:
            span = parse_range(ctx.headers.get("range"), obj.size)
        except InvalidRange:
            ctx.response_headers["Content-Range"] = f"bytes */{obj.size}"
            raise
    return obj, span, part_number


def _overrides(ctx: Ctx) -> dict[str, str]:
    """response-* query parameters: headers replacing the stored ones in this one response.

    Validated before any header is set (an error response must not carry object headers).
    """
    out: dict[str, str] = {}
    for q, header in _RESPONSE_OVERRIDES.items():
        if q in ctx.query:
            value = ctx.query[q]
            # A decoded query value may hold CR/LF or other controls: never let it split a header.
            if any(ord(c) < 0x20 and c != "\t" or c == "\x7f" for c in value):
                raise InvalidArgument(f"Invalid value for {q}", name=q)
            out[header] = _utf8(q, value)
    return out


@operation("GetObject")
async def get_object(ctx: Ctx) -> web.StreamResponse:
    overrides = _overrides(ctx)
    obj, span, part_number = await _resolve(ctx)
    layer = await encryption.read_layer(ctx, obj)
    whole = span is None or (span == (0, obj.size) and part_number is None)
    object_headers(ctx, obj, checksum=whole and ctx.headers.get("x-amz-checksum-mode", "").upper() == "ENABLED")
    await lock_headers(ctx, obj)
    ctx.response_headers.update(overrides)
    start, end = span if span is not None else (0, obj.size)
    status = 200
    if span is not None:
        status = 206
        ctx.response_headers["Content-Range"] = f"bytes {start}-{end - 1}/{obj.size}"
    length = end - start
    if length <= SMALL_BODY:
        data = await ctx.coffre.objects.read_span(obj, start, end, layer)  # whole, authenticated
        resp = web.Response(body=data, status=status, headers=ctx.response_headers)
        if "Content-Type" in ctx.response_headers:
            resp.headers["Content-Type"] = ctx.response_headers["Content-Type"]
        return resp
    # The tenant key before the status line: a tenant key service that refuses or is down gives a
    # clean error answer here, rather than a body cut after its headers (a cached key costs nothing).
    await ctx.coffre.keyring.tenant_key(obj.tenant_id)
    stream = web.StreamResponse(status=status, headers=ctx.response_headers)
    stream.content_length = length
    await stream.prepare(ctx.request)
    try:
        async for chunk in ctx.coffre.objects.open(obj, start, end, layer):
            await stream.write(chunk)
    except Exception:
        # The status line and part of the body are already sent, so no error response can
        # follow (it would land inside the body). Cutting the connection is the one signal
        # left: the client sees a short read, never a body that is silently wrong.
        log.exception("GetObject failed after the response started", extra={"request_id": ctx.request_id})
        if ctx.request.transport is not None:
            ctx.request.transport.abort()
        return stream
    await stream.write_eof()
    return stream


@operation("HeadObject")
async def head_object(ctx: Ctx) -> web.StreamResponse:
    overrides = _overrides(ctx)
    obj, span, part_number = await _resolve(ctx)
    await encryption.read_layer(ctx, obj, decrypt=False)  # an SSE-C object's HEAD needs its key too
    object_headers(ctx, obj, checksum=ctx.headers.get("x-amz-checksum-mode", "").upper() == "ENABLED"
                   and part_number is None and span is None)
    await lock_headers(ctx, obj)
    ctx.response_headers.update(overrides)
    status = 200
    length = obj.size
    if span is not None:
        start, end = span
        length = end - start
        status = 206
        ctx.response_headers["Content-Range"] = f"bytes {start}-{end - 1}/{obj.size}"
    resp = web.Response(status=status, headers=ctx.response_headers)
    resp.headers["Content-Length"] = str(length)
    return resp


@operation("DeleteObject")
async def delete_object(ctx: Ctx) -> web.StreamResponse:
    version = ctx.query.get("versionId")
    bypass = await authz.bypass_governance(ctx, ctx.k, version)
    deleted = await ctx.coffre.objects.delete_object(ctx.p, ctx.b, ctx.k, version, bypass_governance=bypass)
    deleted_headers(ctx, deleted)
    ctx.changes.append(removed(ctx.k, version, deleted))
    return ctx.empty(204)


def removed(key: str, version_requested: str | None, deleted: Deleted) -> Change:
    """The event of a delete: a marker created by a simple delete, or a removal."""
    if version_requested is None and deleted.delete_marker:
        return Change("ObjectRemoved:DeleteMarkerCreated", key, version_id=deleted.version_id)
    return Change("ObjectRemoved:Delete", key, version_id=deleted.version_id)
