"""The S3 front end: one entry point per request — address, authenticate, dispatch, answer.

Errors from any layer become S3 XML here and only here (through s3/errors.py);
an unexpected exception is a 500 InternalError whose details stay in the log.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from coffre.audit.event import s3_event
from coffre.audit.trail import AuditTrail
from coffre.core import access
from coffre.core.coffre import Coffre
from coffre.core.errors import (
    CoffreError,
    InvalidRequest,
    MethodNotAllowed,
    NoSuchKey,
    NotImplementedOperation,
    RequestHeaderSectionTooLarge,
    ServiceUnavailable,
    SignatureDoesNotMatch,
)
from coffre.core.metering import Meter
from coffre.notify.service import Notifier
from coffre.observability.instruments import Metrics
from coffre.observability.logs import request_id_var
from coffre.s3 import authz, coffre_api, routing, sigv4
from coffre.s3 import iam as iam_api
from coffre.s3.context import HANDLERS, Ctx
from coffre.s3.errors import status_and_code
from coffre.s3.xml import Doc
from coffre.settings import Settings

# Importing the handler modules registers their operations.
from coffre.s3.handlers import attributes, buckets, copy, delete_objects, multipart, objects, service  # noqa: F401  isort: skip
from coffre.s3.handlers import tagging, versioning  # noqa: F401  isort: skip
from coffre.s3.handlers import cors as cors_handlers, post_object  # noqa: F401  isort: skip
from coffre.s3.handlers import acl, ownership, policy, public_access  # noqa: F401  isort: skip
from coffre.s3.handlers import notification  # noqa: F401  isort: skip
from coffre.s3.handlers import encryption  # noqa: F401  isort: skip
from coffre.s3.handlers import lifecycle as lifecycle_handlers  # noqa: F401  isort: skip
from coffre.s3.handlers import objectlock  # noqa: F401  isort: skip

log = logging.getLogger("coffre.s3")

# Operations that carry a payload worth a 100 Continue only once authenticated.
_WRITE_METHODS = frozenset({"PUT", "POST", "DELETE"})


def parse_query(raw: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if not raw:
        return out
    for part in raw.split("&"):
        if not part:
            continue
        k, _, v = part.partition("=")
        # surrogateescape keeps bytes that are not UTF-8, so signatures still see what was sent.
        out.append((sigv4.unquote_raw(k), sigv4.unquote_raw(v)))
    return out


def request_id() -> str:
    return secrets.token_hex(8).upper()


class S3App:
    def __init__(self, coffre: Coffre, settings: Settings, audit: AuditTrail | None = None,
                 metrics: Metrics | None = None, notifier: Notifier | None = None) -> None:
        self.coffre = coffre
        self.settings = settings
        self.audit = audit
        self.metrics = metrics
        self.notifier = notifier
        self.host_id = secrets.token_urlsafe(24)

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        rid = request_id()
        request_id_var.set(rid)  # every log line this request causes carries its id
        started = time.time()
        timer = self.metrics.request_started() if self.metrics is not None else 0.0
        code: str | None = None  # the S3 error code, for the audit record
        ctx: Ctx | None = None
        method = request.method
        expect = request.headers.get("Expect", "").lower() == "100-continue"
        access.begin_request()  # nothing authorised yet (a connection's requests share a task)
        try:
            ctx = self._context(request, rid)
            if self.audit is not None and method in _WRITE_METHODS and not self.audit.accepting_writes():
                # Never act unrecorded (audit_required): reads go on, writes wait for the log.
                raise ServiceUnavailable("audit log unavailable: refusing writes")
            if iam_api.is_query_request(ctx):
                # The IAM and STS Query API shares this endpoint (POST / with a form body signed for
                # "iam" or "sts"); it authenticates, authorises and answers its errors itself (s3/iam/).
                response, code = await iam_api.handle(ctx)
            elif coffre_api.is_coffre_request(ctx):
                # coffre's own tenant API (/_coffre/...: the audit trail), signed like S3 requests.
                await self._authenticate(ctx)
                response = await coffre_api.handle(ctx)
            else:
                await self._authenticate(ctx)
                await authz.authorize(ctx)
                handler = HANDLERS.get(ctx.operation)
                if handler is None:
                    if ctx.operation == "Unknown":
                        raise MethodNotAllowed(method=method)
                    raise NotImplementedOperation(f"{ctx.operation} is not implemented yet.",
                                                  operation=ctx.operation)
                # The 100 Continue goes out when the handler first reads the body (Ctx.reader), so a
                # request refused before then never makes the client send it.
                ctx.expect_continue = expect and request.version >= (1, 1)
                response = await handler(ctx)
        except CoffreError as exc:
            if isinstance(exc, NoSuchKey) and ctx is not None:
                exc = await authz.hide_missing(ctx, exc)
            code = status_and_code(exc)[1]
            response = self._error(request, ctx, exc, rid)
        except Exception:
            code = "InternalError"
            log.exception("internal error", extra={"request_id": rid})
            response = self._error_response(request, 500, "InternalError",
                                            "We encountered an internal error. Please try again.", rid, ctx)
        if ctx is not None and "origin" in ctx.headers:  # a browser's cross-origin request
            await cors_handlers.add_response_headers(ctx, response)
        if expect and not (ctx is not None and ctx.continued) and not request.content.is_eof():
            # The client is waiting for a 100 that will never come and holds its body back:
            # the connection cannot carry another request (its next bytes may be that body).
            response.force_close()
        response.headers["x-amz-request-id"] = rid
        response.headers["x-amz-id-2"] = self.host_id
        response.headers.setdefault("Server", "coffre")
        if self.notifier is not None and ctx is not None and ctx.changes:
            # Handlers record a change only once it is committed (a PostObject redirect is a 303;
            # a failure after the commit still changed the bucket): its events follow it.
            await self.notifier.emit(ctx.b, ctx.changes, ctx.principal, request.remote, rid, self.host_id)
        event = s3_event(request, response, ctx, rid, started, code)
        if self.audit is not None:  # after the commit; refused requests included
            self.audit.record(event)
        if self.metrics is not None:
            self.metrics.request_done(timer, event.operation, event.status, event.bytes_in, event.bytes_out)
        if ctx is not None:  # metering: an in-memory increment, flushed to the store in batches
            _meter(self.coffre.meter, ctx, event.status, event.bytes_in, event.bytes_out)
        if log.isEnabledFor(logging.DEBUG):  # presigned signatures in it are scrubbed by the log's filter
            log.debug("%s %s -> %d %s", method, request.raw_path, response.status, code or "")
        return response

    def _context(self, request: web.BaseRequest, rid: str) -> Ctx:
        raw = request.raw_path
        raw_path, _, raw_query = raw.partition("?")
        headers: dict[str, str] = {}
        total = 0
        for raw_name, raw_value in request.raw_headers:
            name = raw_name.decode("latin-1").lower()
            value = raw_value.decode("utf-8", "surrogateescape")
            line = len(raw_name) + len(raw_value) + 4
            if line > self.settings.max_header_size:
                raise RequestHeaderSectionTooLarge(size=line, max=self.settings.max_header_size)
            total += line
            headers[name] = f"{headers[name]},{value}" if name in headers else value
        if total > self.settings.max_headers_total:
            raise RequestHeaderSectionTooLarge(size=total, max=self.settings.max_headers_total)
        query_list = parse_query(raw_query)
        query: dict[str, str] = {}
        for k, v in query_list:
            query.setdefault(k, v)
        hb = routing.host_bucket(headers.get("host"), self.settings.virtual_host_domains)
        bucket, key = routing.split_path(raw_path, hb)
        op = routing.operation(request.method, bucket, key, query, headers)
        ctx = Ctx(request=request, request_id=rid, coffre=self.coffre, settings=self.settings, operation=op,
                  bucket=bucket, key=key, query=query, headers=headers, raw_path=raw_path,
                  query_list=query_list)
        return ctx

    async def _authenticate(self, ctx: Ctx) -> None:
        req = sigv4.Request(method=ctx.request.method, raw_path=ctx.raw_path, query=ctx.query_list,
                            headers=ctx.headers)
        info = sigv4.parse_auth(req)
        if info is None:
            return  # anonymous: authz.authorize decides what it may reach (ctx.p is ANONYMOUS)
        creds = await self.coffre.credentials(info.access_key_id)
        now = time.time()
        if info.version == 4:
            ctx.signing_key = sigv4.verify_v4(req, info, creds.secret, now=now,
                                              max_skew=self.settings.max_clock_skew,
                                              max_expires=self.settings.max_presign_expires)
            if info.payload_hash in sigv4.STREAMING_MODES and info.presigned:
                raise SignatureDoesNotMatch("Streaming payloads cannot be presigned")
        else:
            resource = ctx.raw_path
            hb = routing.host_bucket(ctx.headers.get("host"), self.settings.virtual_host_domains)
            if hb is not None:
                resource = "/" + hb + resource
            sigv4.verify_v2(req, info, creds.secret, resource, now=now, max_skew=self.settings.max_clock_skew)
        if info.version == 4 and ctx.headers.get("content-encoding", "").startswith("aws-chunked") \
                and info.payload_hash not in sigv4.STREAMING_MODES:
            raise InvalidRequest("aws-chunked content needs a STREAMING-* x-amz-content-sha256.")
        ctx.auth = info
        ctx.principal = creds.principal

    def _error(self, request: web.BaseRequest, ctx: Ctx | None, exc: CoffreError, rid: str) -> web.StreamResponse:
        status, code = status_and_code(exc)
        if status >= 500:
            log.warning("%s %s -> %s %s", request.method, request.path, status, code)
        extra = {k: v for k, v in exc.fields.items() if isinstance(v, (str, int, float))}
        if code == "NotModified":
            resp = web.Response(status=304)
            if "etag" in extra:
                resp.headers["ETag"] = str(extra["etag"])
            if ctx is not None:
                resp.headers.extend(ctx.response_headers)
            return resp
        return self._error_response(request, status, code, str(exc), rid, ctx, extra)

    def _error_response(self, request: web.BaseRequest, status: int, code: str, message: str, rid: str,
                        ctx: Ctx | None, extra: Mapping[str, object] | None = None) -> web.StreamResponse:
        headers: CIMultiDict[str] = CIMultiDict()
        if ctx is not None:
            # A handler may have set an object's headers (Content-Type, checksums, metadata)
            # before failing: an error carries only the headers meant for errors too.
            for name in _ERROR_HEADERS:
                if name in ctx.response_headers:
                    headers[name] = ctx.response_headers[name]
        if request.method == "HEAD":
            # HEAD errors carry no body; clients read the status alone.
            return web.Response(status=status, headers=headers)
        resource = request.path
        doc = Doc("Error", ns=False).leaf("Code", code).leaf("Message", _text(message))
        if ctx is not None and ctx.bucket is not None:
            doc.leaf("BucketName", _text(ctx.bucket))
            if ctx.key is not None:
                doc.leaf("Key", _text(ctx.key))
        for name, value in (extra or {}).items():
            tag = _EXTRA_TAGS.get(name)
            if tag:
                doc.leaf(tag, _text(value) if isinstance(value, str) else value)
        doc.leaf("Resource", _text(resource)).leaf("RequestId", rid).leaf("HostId", self.host_id).close("Error")
        return web.Response(body=doc.bytes(), status=status, content_type="application/xml", headers=headers)


def _meter(meter: Meter, ctx: Ctx, status: int, bytes_in: int, bytes_out: int) -> None:
    """Count a request for billing: to the tenant owning the bucket it addressed (as AWS bills
    the bucket owner, whoever calls), else to the caller's tenant (ListBuckets, CreateBucket,
    a missing bucket). Anonymous requests that reach no tenant's bucket are nobody's."""
    rec = ctx.bucket_record
    if rec is not None:
        tenant, bucket = rec.tenant_id, rec.name
    elif ctx.principal is not None and ctx.principal.tenant_id:
        tenant = ctx.principal.tenant_id
        bucket = ctx.bucket if ctx.bucket is not None and ctx.operation == "CreateBucket" and status < 300 else ""
    else:
        return
    # POST / unaddressed to a bucket is the IAM / STS Query API (free, as on AWS).
    operation = "IAM" if ctx.bucket is None and ctx.request.method == "POST" else ctx.operation
    meter.count(tenant, bucket, operation, status, bytes_in, bytes_out)


def _text(value: str) -> str:
    """Text safe to encode as UTF-8: bytes a client sent that were not UTF-8 become U+FFFD."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return value


# Response headers a handler sets that S3 also returns on an error.
_ERROR_HEADERS = ("x-amz-bucket-region", "x-amz-version-id", "x-amz-delete-marker", "Content-Range",
                  "Last-Modified")  # Last-Modified: of the delete marker a 404 / 405 was caused by

_EXTRA_TAGS = {
    "condition": "Condition", "max": "MaxSizeAllowed", "size": "ProposedSize", "access_key_id": "AWSAccessKeyId",
    "request_time": "RequestTime", "server_time": "ServerTime", "max_skew_ms": "MaxAllowedSkewMilliseconds",
    "x_amz_expires": "X-Amz-Expires", "expires_at": "Expires", "headers_not_signed": "HeadersNotSigned",
    "string_to_sign": "StringToSign", "signature_provided": "SignatureProvided",
    "canonical_request": "CanonicalRequest", "upload_id": "UploadId",
    "part_number": "PartNumber", "version_id": "VersionId", "method": "Method", "name": "ArgumentName",
    "location": "LocationConstraint", "range": "RangeRequested", "expected": "ExpectedSize",
    "received": "ReceivedSize", "actual_size": "ActualObjectSize", "value": "ArgumentValue",
    "min": "MinSizeAllowed", "resource_type": "ResourceType", "max_pre_data": "MaxPostPreDataLengthBytes",
    "string_to_sign_bytes": "StringToSignBytes",
    "tag_key": "TagKey", "tag_value": "TagValue",
}


def make_server(app: S3App, **kwargs: Any) -> web.Server:
    """The aiohttp low-level server; ``kwargs`` go to its connection handler (timeouts, access_log)."""
    # auto_decompress off: Content-Encoding (gzip...) describes the stored object, never to be undone here.
    return web.Server(app.handle, max_field_size=65536, max_line_size=65536, max_headers=256,
                      auto_decompress=False, **kwargs)
