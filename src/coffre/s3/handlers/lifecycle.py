"""Lifecycle: Put/Get/DeleteBucketLifecycleConfiguration, and how the worker's actions are
reported as requests are (audit trail, metrics, event notifications).

Parsing answers MalformedXML for anything outside S3's schema (an unknown element, a Status
other than Enabled/Disabled, a Filter with two conditions outside And, Days with Date or with
ExpiredObjectDeleteMarker...); what S3 refuses once the shape is right is core's (validate).
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable

from aiohttp import web
from lxml import etree

from coffre.audit.event import AuditEvent
from coffre.core import lifecycle
from coffre.core.errors import InvalidArgument, MalformedXML
from coffre.core.lifecycle import (
    AND,
    FILTER,
    LEGACY_PREFIX,
    Configuration,
    Filter,
    LifecycleEvent,
    Listener,
    Rule,
)
from coffre.notify import events as ev
from coffre.notify.service import Notifier
from coffre.observability.instruments import Metrics
from coffre.s3 import xml
from coffre.s3.context import Ctx, operation
from coffre.s3.handlers.documents import MISSING_DIGEST, read_verified
from coffre.s3.xml import Doc

MIN_SIZE_HEADER = "x-amz-transition-default-minimum-object-size"
_INT = re.compile(r"-?[0-9]{1,19}")
_REPEATABLE = ("Transition", "NoncurrentVersionTransition")


def _children(el: etree._Element) -> list[etree._Element]:
    """Element children; stray text between them is MalformedXML (text alone is let be)."""
    return xml.children(el, text_without_children=True)


def _int(el: etree._Element) -> int:
    value = xml.leaf(el).strip()
    if not _INT.fullmatch(value):
        raise MalformedXML()
    return int(value)


def parse(body: bytes) -> list[Rule]:
    root = xml.parse(body)
    if root.tag != "LifecycleConfiguration":
        raise MalformedXML()
    rules: list[Rule] = []
    for el in _children(root):
        if el.tag != "Rule":
            raise MalformedXML()
        rules.append(_rule(el))
        if len(rules) > lifecycle.MAX_RULES:
            break  # validate says how many are allowed
    if not rules:
        raise MalformedXML()
    return rules


def _rule(el: etree._Element) -> Rule:
    seen: set[str] = set()
    rid: str | None = None
    status: str | None = None
    flt: Filter | None = None
    legacy: str | None = None
    fields: dict[str, object] = {}
    transitions: list[str] = []
    for child in _children(el):
        tag = child.tag
        if tag not in _REPEATABLE:  # every other element at most once
            if tag in seen:
                raise MalformedXML()
            seen.add(tag)
        if tag == "ID":
            rid = xml.leaf(child)
        elif tag == "Status":
            status = xml.leaf(child)
            if status not in (lifecycle.ENABLED, lifecycle.DISABLED):
                raise MalformedXML()
        elif tag == "Prefix":
            legacy = xml.leaf(child)
        elif tag == "Filter":
            flt = _filter(child)
        elif tag == "Expiration":
            fields.update(_expiration(child))
        elif tag == "NoncurrentVersionExpiration":
            for c in _children(child):
                if c.tag == "NoncurrentDays" and "noncurrent_days" not in fields:
                    fields["noncurrent_days"] = _int(c)
                elif c.tag == "NewerNoncurrentVersions" and "newer_noncurrent" not in fields:
                    fields["newer_noncurrent"] = _int(c)
                else:
                    raise MalformedXML()
            if "noncurrent_days" not in fields:
                raise MalformedXML()
        elif tag == "AbortIncompleteMultipartUpload":
            kids = _children(child)
            if len(kids) != 1 or kids[0].tag != "DaysAfterInitiation":
                raise MalformedXML()
            fields["abort_days"] = _int(kids[0])
        elif tag in _REPEATABLE:
            storage_class = ""
            for c in _children(child):
                if c.tag == "StorageClass":
                    storage_class = xml.leaf(c)
                elif c.tag not in ("Days", "Date", "NoncurrentDays", "NewerNoncurrentVersions"):
                    raise MalformedXML()
            transitions.append(storage_class)
        else:
            raise MalformedXML()
    if status is None or (flt is not None and legacy is not None) or (flt is None and legacy is None):
        raise MalformedXML()
    if flt is None:
        flt = Filter(prefix=legacy or "", form=LEGACY_PREFIX)
    return Rule(id=rid if rid else lifecycle.new_rule_id(), status=status, filter=flt,
                transitions=tuple(transitions), **fields)  # type: ignore[arg-type]


def _expiration(el: etree._Element) -> dict[str, object]:
    out: dict[str, object] = {}
    for c in _children(el):
        if c.tag == "Days" and "expiration_days" not in out:
            out["expiration_days"] = _int(c)
        elif c.tag == "Date" and "expiration_date" not in out:
            try:
                out["expiration_date"] = lifecycle.parse_date(xml.leaf(c))
            except ValueError as e:
                raise MalformedXML() from e
        elif c.tag == "ExpiredObjectDeleteMarker" and "expired_object_delete_marker" not in out:
            value = xml.leaf(c).strip().lower()
            if value not in ("true", "false"):
                raise MalformedXML()
            out["expired_object_delete_marker"] = value == "true"
        else:
            raise MalformedXML()
    # One of Days, Date, ExpiredObjectDeleteMarker: S3's schema allows no combination.
    if len(out) != 1:
        raise MalformedXML()
    return out


def _conditions(kids: list[etree._Element], allow_many: bool) -> Filter:
    prefix: str | None = None
    tags: list[tuple[str, str]] = []
    gt: int | None = None
    lt: int | None = None
    for c in kids:
        if c.tag == "Prefix" and prefix is None:
            prefix = xml.leaf(c)
        elif c.tag == "Tag":
            key: str | None = None
            value: str | None = None
            for t in _children(c):
                if t.tag == "Key" and key is None:
                    key = xml.leaf(t)
                elif t.tag == "Value" and value is None:
                    value = xml.leaf(t)
                else:
                    raise MalformedXML()
            if key is None or value is None:
                raise MalformedXML()
            tags.append((key, value))
        elif c.tag == "ObjectSizeGreaterThan" and gt is None:
            gt = _int(c)
        elif c.tag == "ObjectSizeLessThan" and lt is None:
            lt = _int(c)
        else:
            raise MalformedXML()
    if not allow_many and len(kids) > 1:
        raise MalformedXML()
    return Filter(prefix or "", tuple(tags), gt, lt, AND if allow_many else FILTER)


def _filter(el: etree._Element) -> Filter:
    kids = _children(el)
    if len(kids) == 1 and kids[0].tag == "And":
        return _conditions(_children(kids[0]), allow_many=True)
    return _conditions(kids, allow_many=False)


def _min_size(ctx: Ctx) -> str:
    value = ctx.headers.get(MIN_SIZE_HEADER)
    if value is None:
        return lifecycle.MIN_SIZE_DEFAULT
    if value not in lifecycle.MIN_SIZE_VALUES:
        raise InvalidArgument(f"Invalid value for {MIN_SIZE_HEADER}", name=MIN_SIZE_HEADER, value=value[:64])
    return value


@operation("PutBucketLifecycleConfiguration")
async def put_bucket_lifecycle(ctx: Ctx) -> web.StreamResponse:
    await ctx.coffre.buckets.authorize(ctx.p, ctx.b)
    min_size = _min_size(ctx)
    # As AWS: a Content-MD5 or a flexible checksum must vouch for the body (a corrupted rule
    # could delete data).
    rules = parse(await read_verified(ctx, missing=MISSING_DIGEST))
    lifecycle.validate(rules)
    await lifecycle.save(ctx.coffre.meta, ctx.b, Configuration(tuple(rules), min_size))
    ctx.response_headers[MIN_SIZE_HEADER] = min_size
    return ctx.empty()


def _render_filter(doc: Doc, f: Filter) -> None:
    if f.form == LEGACY_PREFIX:
        doc.leaf("Prefix", f.prefix)
        return
    doc.open("Filter")
    if f.form == AND:
        doc.open("And")
        if f.prefix:
            doc.leaf("Prefix", f.prefix)
    elif not (f.tags or f.size_gt is not None or f.size_lt is not None):
        doc.leaf("Prefix", f.prefix)  # the one condition (possibly empty: every object)
    for k, v in f.tags:
        doc.open("Tag").leaf("Key", k).leaf("Value", v).close("Tag")
    if f.size_gt is not None:
        doc.leaf("ObjectSizeGreaterThan", f.size_gt)
    if f.size_lt is not None:
        doc.leaf("ObjectSizeLessThan", f.size_lt)
    if f.form == AND:
        doc.close("And")
    doc.close("Filter")


def render(config: Configuration) -> Doc:
    doc = Doc("LifecycleConfiguration")
    for r in config.rules:
        doc.open("Rule")
        if r.expiration_days is not None or r.expiration_date is not None or r.expired_object_delete_marker is not None:
            doc.open("Expiration")
            if r.expiration_days is not None:
                doc.leaf("Days", r.expiration_days)
            elif r.expiration_date is not None:
                doc.leaf("Date", xml.iso8601(r.expiration_date))
            else:
                doc.leaf("ExpiredObjectDeleteMarker", "true" if r.expired_object_delete_marker else "false")
            doc.close("Expiration")
        doc.leaf("ID", r.id)
        _render_filter(doc, r.filter)
        doc.leaf("Status", r.status)
        if r.noncurrent_days is not None:
            doc.open("NoncurrentVersionExpiration").leaf("NoncurrentDays", r.noncurrent_days)
            if r.newer_noncurrent is not None:
                doc.leaf("NewerNoncurrentVersions", r.newer_noncurrent)
            doc.close("NoncurrentVersionExpiration")
        if r.abort_days is not None:
            doc.open("AbortIncompleteMultipartUpload").leaf("DaysAfterInitiation", r.abort_days)
            doc.close("AbortIncompleteMultipartUpload")
        doc.close("Rule")
    doc.close("LifecycleConfiguration")
    return doc


@operation("GetBucketLifecycleConfiguration")
async def get_bucket_lifecycle(ctx: Ctx) -> web.StreamResponse:
    await ctx.coffre.buckets.authorize(ctx.p, ctx.b)
    config = await lifecycle.get(ctx.coffre.meta, ctx.b)
    ctx.response_headers[MIN_SIZE_HEADER] = config.min_size
    return ctx.xml(render(config))


@operation("DeleteBucketLifecycle")
async def delete_bucket_lifecycle(ctx: Ctx) -> web.StreamResponse:
    await ctx.coffre.buckets.authorize(ctx.p, ctx.b)
    await lifecycle.save(ctx.coffre.meta, ctx.b, None)
    return ctx.empty(204)


# -- reporting the worker's actions --
# Audit operation names: those of S3's server access logs for the same actions.
OPERATIONS = {
    lifecycle.EXPIRE: "S3.EXPIRE.OBJECT",
    lifecycle.NONCURRENT: "S3.EXPIRE.OBJECT",
    lifecycle.EXPIRED_DELETE_MARKER: "S3.EXPIRE.OBJECT",
    lifecycle.DELETE_MARKER: "S3.CREATE.DELETEMARKER",
    lifecycle.ABORT_UPLOAD: "S3.DELETE.UPLOAD",
}
PRINCIPAL = "lifecycle"


def listener(record: Callable[[AuditEvent], None], metrics: Metrics | None, notifier: Notifier | None, host_id: str = "") -> Listener:
    """What the worker calls after each committed action: an audit record (principal
    "lifecycle", api "lifecycle"), a count in coffre_lifecycle_actions_total, and the
    s3:LifecycleExpiration:* event where the bucket asks for it."""
    counter = metrics.registry.counter(
        "coffre_lifecycle_actions_total", "Lifecycle actions committed by this gateway, by action.",
        ("action",)) if metrics is not None else None

    async def on_action(event: LifecycleEvent) -> None:
        request_id = uuid.uuid4().hex[:16].upper()
        record(AuditEvent(
            time=time.time(), request_id=request_id, principal=PRINCIPAL, tenant=event.tenant_id, access_key=None,
            operation=OPERATIONS[event.kind], bucket=event.bucket, key=event.key,
            version_id=event.version_id if event.upload_id is None else event.upload_id,
            status=204, error_code=None, bytes_in=0, bytes_out=0,
            source_ip=None, user_agent=None, duration_ms=0, api="lifecycle"))
        if counter is not None:
            counter.inc((event.kind,))
        if notifier is not None and event.kind != lifecycle.ABORT_UPLOAD:
            name = "LifecycleExpiration:DeleteMarkerCreated" if event.kind == lifecycle.DELETE_MARKER \
                else "LifecycleExpiration:Delete"
            await notifier.emit(event.bucket, [ev.Change(name, event.key, version_id=event.version_id)],
                                None, None, request_id, host_id)

    return on_action
