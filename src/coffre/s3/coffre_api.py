"""coffre's own tenant API on the S3 listener, under ``/_coffre/`` (no bucket name starts with "_").

Requests are signed with SigV4 by a tenant's credentials, like S3 requests, and authorised
from the same table (authz.ACTIONS: ``coffre:GetAuditRecords``...), so IAM policies grant
them to a tenant's users. Served here:

- ``GET /_coffre/audit?since=&until=&after-seq=&max-records=``: the caller's tenant's audit
  records, as a verifiable export (audit/export.py, JSON lines);
- ``GET /_coffre/audit/public-key``: the deployment's audit public key (PEM), to anyone;
- ``GET|PUT|DELETE /_coffre/audit/delivery``: delivery of those records into a bucket of
  the tenant's (audit/delivery.py), configured with a small JSON document.

What the caller asks about is always its own tenant: no parameter names another.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
import weakref
from dataclasses import asdict, dataclass

from aiohttp import web

from coffre.audit.delivery import DEFAULT_PREFIX, DeliveryService
from coffre.audit.export import parse_time, write_export
from coffre.audit.trail import AuditTrail
from coffre.core.coffre import Coffre
from coffre.core.errors import InvalidArgument, InvalidRequest, MethodNotAllowed, ServiceUnavailable
from coffre.s3 import authz
from coffre.s3.authz import arn
from coffre.s3.context import Ctx

PREFIX = "_coffre"
_DAY = 86400.0
_MAX_RECORDS = 100000
_MAX_RANGE_DAYS = 400  # more than any retention worth asking in one call
_MAX_CONFIG = 4096


@dataclass
class Services:
    trail: AuditTrail
    delivery: DeliveryService | None


# The audit services of each running Coffre (server.py attaches them); a server without them
# (embedded in a test) answers 503.
_SERVICES: weakref.WeakKeyDictionary[Coffre, Services] = weakref.WeakKeyDictionary()


def attach(coffre: Coffre, trail: AuditTrail, delivery: DeliveryService | None) -> None:
    _SERVICES[coffre] = Services(trail, delivery)


def is_coffre_request(ctx: Ctx) -> bool:
    return ctx.bucket == PREFIX


async def handle(ctx: Ctx) -> web.StreamResponse:
    """Answer one authenticated request under /_coffre/ (errors are raised, as for S3)."""
    handler = _HANDLERS.get(ctx.operation)
    if handler is None:
        raise MethodNotAllowed(method=ctx.request.method)
    await authz.authorize(ctx)
    services = _SERVICES.get(ctx.coffre)
    if services is None:
        raise ServiceUnavailable("The audit trail is not available on this server.")
    return await handler(ctx, services)


def _int(ctx: Ctx, name: str, default: int, low: int, high: int) -> int:
    raw = ctx.query.get(name)
    if raw is None:
        return default
    if not raw.isdigit() and not (raw.startswith("-") and raw[1:].isdigit()):
        raise InvalidArgument(f"{name} must be an integer.", name=name, value=raw[:64])
    v = int(raw)
    if not low <= v <= high:
        raise InvalidArgument(f"{name} must be between {low} and {high}.", name=name, value=raw[:64])
    return v


def _time(ctx: Ctx, name: str) -> float | None:
    raw = ctx.query.get(name)
    if raw is None:
        return None
    try:
        return parse_time(raw[:64])
    except (ValueError, OverflowError):
        raise InvalidArgument(f"{name} must be an ISO 8601 time (2026-11-30T10:00:00Z) or epoch seconds.",
                              name=name, value=raw[:64]) from None


async def get_records(ctx: Ctx, services: Services) -> web.StreamResponse:
    now = time.time()
    until = _time(ctx, "until")
    since = _time(ctx, "since")
    after_seq = _int(ctx, "after-seq", -1, -1, 2**62)
    if until is None:
        until = now + 1
    if since is None:
        since = until - _DAY
    if since > until or until - since > _MAX_RANGE_DAYS * _DAY:
        raise InvalidArgument(f"since must be before until, at most {_MAX_RANGE_DAYS} days apart.", name="since",
                              value=ctx.query.get("since", "")[:64])
    max_records = _int(ctx, "max-records", 10000, 1, _MAX_RECORDS)
    trail = services.trail
    if not trail.log.ready:
        raise ServiceUnavailable("audit log unavailable")
    if until > now - trail.checkpoint_seconds:
        # The records of the caller's last requests are queued or written but maybe not yet under
        # a signed checkpoint: have one written now, so that they are in this export.
        await trail.seal()
    fh = tempfile.TemporaryFile()  # noqa: SIM115 - closed below, after streaming
    try:
        info = await asyncio.to_thread(write_export, trail.directory, trail.log.signer, ctx.p.tenant_id, fh,
                                       since=since, until=until, after_seq=after_seq, max_own=max_records)
        size = fh.tell()
        fh.seek(0)
        resp = web.StreamResponse(status=200, headers=ctx.response_headers)
        resp.content_type = "application/x-ndjson"
        resp.content_length = size
        resp.headers["x-coffre-audit-records"] = str(info.own)
        resp.headers["x-coffre-audit-truncated"] = "true" if info.truncated else "false"
        if info.next_after_seq is not None:
            resp.headers["x-coffre-audit-next-after-seq"] = str(info.next_after_seq)
        await resp.prepare(ctx.request)
        if ctx.request.method != "HEAD":
            while chunk := await asyncio.to_thread(fh.read, 1 << 20):
                await resp.write(chunk)
        await resp.write_eof()
        return resp
    finally:
        fh.close()


async def get_public_key(ctx: Ctx, services: Services) -> web.StreamResponse:
    pem = services.trail.public_key_pem()
    if pem is None:
        raise ServiceUnavailable("audit log unavailable")
    return web.Response(body=pem, content_type="application/x-pem-file", headers=ctx.response_headers)


def _delivery(services: Services) -> DeliveryService:
    if services.delivery is None:
        raise ServiceUnavailable("Audit delivery is not available on this server.")
    return services.delivery


async def get_delivery(ctx: Ctx, services: Services) -> web.StreamResponse:
    d = await _delivery(services).get(ctx.p.tenant_id)
    return web.json_response({"delivery": asdict(d) if d is not None else None}, headers=ctx.response_headers)


async def put_delivery(ctx: Ctx, services: Services) -> web.StreamResponse:
    service = _delivery(services)
    body = bytearray()
    async for chunk in ctx.body():
        body += chunk
        if len(body) > _MAX_CONFIG:
            raise InvalidRequest(f"The request body is too large (over {_MAX_CONFIG} bytes).")
    try:
        doc = json.loads(bytes(body))
    except ValueError:
        raise InvalidArgument("The delivery configuration is not JSON.", name="body", value="") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("bucket"), str) or \
            not isinstance(doc.get("prefix", DEFAULT_PREFIX), str) or set(doc) - {"bucket", "prefix"}:
        raise InvalidArgument('The delivery configuration is {"bucket": NAME, "prefix": PREFIX}.', name="body",
                              value="")
    bucket, prefix = doc["bucket"], doc.get("prefix", DEFAULT_PREFIX)
    principal = ctx.p
    if not principal.is_root:
        # A user who may configure delivery must also be allowed to write where it goes.
        record = await ctx.coffre.buckets.get(bucket)
        assert ctx.asker is not None
        await ctx.asker.check(record, "s3:PutObject", arn(bucket, prefix), prefix)
    d = await service.configure(principal, bucket, prefix)
    return web.json_response({"delivery": asdict(d)}, headers=ctx.response_headers)


async def delete_delivery(ctx: Ctx, services: Services) -> web.StreamResponse:
    await _delivery(services).remove(ctx.p.tenant_id)
    return ctx.empty(204)


_HANDLERS = {
    "GetAuditRecords": get_records,
    "GetAuditPublicKey": get_public_key,
    "GetAuditDelivery": get_delivery,
    "PutAuditDelivery": put_delivery,
    "DeleteAuditDelivery": delete_delivery,
}
