"""Delivery of each tenant's audit records into a bucket of its own, as verifiable exports.

A tenant names a bucket it owns (``PUT /_coffre/audit/delivery``); every
``audit_delivery_seconds`` the worker writes one export object (export.py) holding the
tenant's records since the last one delivered. Where it stands is one cursor per tenant (the
``seq`` of the signed checkpoint the last object ended at), kept in the metadata store with the
configuration, so a restart resumes where it stopped: nothing is delivered twice, nothing
skipped.

The worker's own writes are audited too (api ``delivery``, principal ``coffre:audit-delivery``,
in the tenant's view). They must not feed themselves: a delivery whose new records would all
be earlier deliveries' writes is not made. Those records wait, and go out with the next object
that has other activity in it, so an idle tenant gets no object at all and each object records
at most the previous one's write.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from coffre.audit import records as r
from coffre.audit.event import AuditEvent
from coffre.audit.export import DELIVERY_API, write_export
from coffre.audit.trail import AuditTrail
from coffre.core.body import BytesBody
from coffre.core.coffre import Coffre
from coffre.core.errors import CoffreError, InvalidArgument
from coffre.core.identity import Principal
from coffre.core.objects import Integrity, WriteMeta

log = logging.getLogger("coffre.audit")

SETTING = "audit.delivery"  # the metadata store setting: {tenant id: Delivery as JSON}
PRINCIPAL = "coffre:audit-delivery"
DEFAULT_PREFIX = "coffre-audit/"
_MAX_OWN = 50000  # records of the tenant in one object; more make several objects


@dataclass
class Delivery:
    bucket: str
    prefix: str
    cursor: int  # the seq the last delivered object ended at (-1: from the log's start)
    created: str
    last_key: str | None = None
    last_error: str | None = None
    # Records up to this seq are known to hold nothing to deliver (only others' records): the
    # next round reads from there, not from the cursor, so an idle tenant costs no re-reading.
    scanned: int = -1


class DeliveryService:
    def __init__(self, coffre: Coffre, trail: AuditTrail, interval: float,
                 status_of: Callable[[CoffreError], tuple[int, str]]) -> None:
        self.coffre = coffre
        self.status_of = status_of  # the S3 status and code of a domain error (the front end's table)
        self.trail = trail
        self.interval = interval
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    # -- configuration (the tenant API) --
    async def _load(self) -> dict[str, dict[str, Any]]:
        raw = await self.coffre.meta.get_setting(SETTING)
        return json.loads(raw) if raw else {}

    async def _save(self, doc: dict[str, dict[str, Any]]) -> None:
        await self.coffre.meta.set_setting(SETTING, json.dumps(doc, sort_keys=True))

    async def get(self, tenant: str) -> Delivery | None:
        doc = await self._load()
        return Delivery(**doc[tenant]) if tenant in doc else None

    async def configure(self, principal: Principal, bucket: str, prefix: str) -> Delivery:
        """Deliver ``principal``'s tenant's records into ``bucket`` (one of its own) from now on."""
        await self.coffre.buckets.authorize(principal, bucket)  # AccessDenied unless the tenant's own
        validate_prefix(prefix)
        async with self._lock:
            doc = await self._load()
            current = doc.get(principal.tenant_id)
            # Changing the bucket keeps the cursor: nothing is delivered twice or skipped.
            cursor = current["cursor"] if current is not None else self.trail.log.seq
            scanned = current.get("scanned", cursor) if current is not None else cursor
            d = Delivery(bucket=bucket, prefix=prefix, cursor=cursor, created=r.utc(time.time()), scanned=scanned)
            doc[principal.tenant_id] = asdict(d)
            await self._save(doc)
        return d

    async def remove(self, tenant: str) -> bool:
        async with self._lock:
            doc = await self._load()
            if doc.pop(tenant, None) is None:
                return False
            await self._save(doc)
        return True

    async def _update(self, tenant: str, **fields: Any) -> None:
        async with self._lock:
            doc = await self._load()
            if tenant in doc:
                doc[tenant].update(fields)
                await self._save(doc)

    # -- the worker --
    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="audit-delivery")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.run_once()
            except Exception:  # noqa: BLE001 - the next round tries again
                log.exception("audit delivery round failed")

    async def run_once(self) -> int:
        """Deliver every configured tenant's new records; the number of objects written."""
        doc = await self._load()
        if not doc:
            return 0
        await self.trail.seal()
        written = 0
        for tenant in sorted(doc):
            written += await self._deliver(tenant)
        return written

    async def _deliver(self, tenant: str) -> int:
        written = 0
        while True:
            d = await self.get(tenant)
            if d is None:
                return written
            rec = await self.coffre.meta.get_tenant(tenant)
            if rec is None or rec.status != "active":
                return written
            with tempfile.TemporaryFile() as fh:
                info = await asyncio.to_thread(write_export, self.trail.directory, self.trail.log.signer, tenant,
                                               fh, after_seq=d.cursor, max_own=_MAX_OWN, scan_after=d.scanned)
                if info.own_active == 0:
                    # Nothing but earlier deliveries' writes (or nothing): no object for it.
                    if info.idle_through > d.scanned:
                        await self._update(tenant, scanned=info.idle_through)
                    return written
                fh.seek(0)
                data = fh.read()
            h = info.header
            key = f"{d.prefix}{_stamp(h)}-seq{h['first_seq']:012d}-{h['last_seq']:012d}.jsonl"
            principal = Principal(tenant_id=tenant, canonical_id=rec.canonical_id, name="root",
                                  access_key_id="", user_id=tenant)
            started = time.time()
            status, code, version = 200, None, None
            try:
                obj = await self.coffre.objects.put_object(
                    principal, d.bucket, key, BytesBody(data), content_length=len(data),
                    wm=WriteMeta(content_type="application/x-ndjson"), integrity=Integrity())
                version = obj.version_id if obj.version_id != "null" else None
            except CoffreError as e:
                status, code = self.status_of(e)
                log.warning("audit delivery for tenant %s into bucket %s failed: %s", tenant, d.bucket, code)
            self.trail.record(AuditEvent(
                time=started, request_id=f"DELIVERY-{r.nonce()[:16].upper()}", principal=PRINCIPAL, tenant=tenant,
                access_key=None, operation="PutObject", bucket=d.bucket, key=key, version_id=version,
                status=status, error_code=code, bytes_in=len(data), bytes_out=0, source_ip=None,
                user_agent=None, duration_ms=int((time.time() - started) * 1000), api=DELIVERY_API))
            async with self._lock:
                doc = await self._load()
                cur = doc.get(tenant)
                if cur is None:
                    return written
                if code is None:
                    cur["cursor"], cur["last_key"], cur["last_error"] = h["last_seq"], key, None
                    cur["scanned"] = h["last_seq"]
                    written += 1
                else:
                    cur["last_error"] = f"{code} at {r.utc(started)}"
                await self._save(doc)
            if code is not None or not info.truncated:
                return written


def _stamp(header: dict[str, Any]) -> str:
    """The object's time in its key: when it was generated, sortable (YYYY/MM/DD/YYYYMMDDTHHMMSSZ)."""
    g = str(header["generated"])  # 2026-11-30T10:15:00.123Z
    day = g[:10].replace("-", "/")
    return f"{day}/{g[:19].replace('-', '').replace(':', '')}Z"


def validate_prefix(prefix: str) -> str:
    if len(prefix.encode("utf-8", "surrogateescape")) > 512 or "\x00" in prefix:
        raise InvalidArgument("The delivery prefix is too long or holds a NUL.", name="prefix", value="")
    return prefix
