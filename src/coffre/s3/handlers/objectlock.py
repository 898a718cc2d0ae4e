"""Object Lock: Put/GetObjectLockConfiguration, Put/GetObjectRetention, Put/GetObjectLegalHold.
(The x-amz-object-lock-* headers of writes, GET and HEAD are in handlers/objects.py.)

The rules live in core.objectlock; this module reads and writes the documents:

    <ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled>
      <Rule><DefaultRetention><Mode>GOVERNANCE</Mode><Days>1</Days></DefaultRetention></Rule>
    </ObjectLockConfiguration>
    <Retention><Mode>COMPLIANCE</Mode><RetainUntilDate>2030-01-01T00:00:00.000Z</RetainUntilDate></Retention>
    <LegalHold><Status>ON</Status></LegalHold>

AWS requires a digest (Content-MD5 or a flexible checksum) on all three PUTs; SDKs send one.
"""

from __future__ import annotations

from aiohttp import web
from lxml import etree

from coffre.core.errors import MalformedXML, MissingRequestBodyError
from coffre.core.objectlock import LEGAL_HOLD_STATUSES, MODES, LockConfiguration, check_rule, parse_date
from coffre.s3 import authz, xml
from coffre.s3.context import Ctx, operation
from coffre.s3.handlers.documents import MISSING_DIGEST, read_verified
from coffre.s3.handlers.tagging import version_header
from coffre.s3.xml import Doc, iso8601


def _children(el: etree._Element, allowed: tuple[str, ...]) -> dict[str, etree._Element]:
    """The element children of ``el`` by name: MalformedXML for an unknown or repeated one."""
    out: dict[str, etree._Element] = {}
    for child in el:
        if not isinstance(child.tag, str):
            continue
        if child.tag not in allowed or child.tag in out:
            raise MalformedXML()
        out[child.tag] = child
    return out


async def _document(ctx: Ctx, root_name: str) -> etree._Element:
    body = await read_verified(ctx, missing=MISSING_DIGEST)
    if not body.strip():
        raise MissingRequestBodyError()
    root = xml.parse(body)
    if root.tag != root_name:
        raise MalformedXML()
    return root


# -- bucket configuration --
def parse_configuration(root: etree._Element) -> LockConfiguration:
    parts = _children(root, ("ObjectLockEnabled", "Rule"))
    enabled = parts.get("ObjectLockEnabled")
    if enabled is None or (enabled.text or "").strip() != "Enabled":
        raise MalformedXML()
    rule = parts.get("Rule")
    if rule is None:
        return LockConfiguration()
    default = _children(rule, ("DefaultRetention",)).get("DefaultRetention")
    if default is None:
        raise MalformedXML()
    fields = _children(default, ("Mode", "Days", "Years"))
    return LockConfiguration(check_rule(
        (fields["Mode"].text or "").strip() if "Mode" in fields else None,
        fields["Days"].text or "" if "Days" in fields else None,
        fields["Years"].text or "" if "Years" in fields else None))


@operation("PutObjectLockConfiguration")
async def put_object_lock_configuration(ctx: Ctx) -> web.StreamResponse:
    # The bucket is checked first: a document for a bucket that is not there is NoSuchBucket.
    await ctx.coffre.buckets.authorize(ctx.p, ctx.b)
    config = parse_configuration(await _document(ctx, "ObjectLockConfiguration"))
    await ctx.coffre.objectlock.put_configuration(ctx.p, ctx.b, config)
    return ctx.empty()


@operation("GetObjectLockConfiguration")
async def get_object_lock_configuration(ctx: Ctx) -> web.StreamResponse:
    config = await ctx.coffre.objectlock.get_configuration(ctx.p, ctx.b)
    doc = Doc("ObjectLockConfiguration").leaf("ObjectLockEnabled", "Enabled")
    if config.rule is not None:
        r = config.rule
        doc.open("Rule").open("DefaultRetention").leaf("Mode", r.mode)
        doc.leaf("Days", r.days).leaf("Years", r.years)
        doc.close("DefaultRetention").close("Rule")
    return ctx.xml(doc.close("ObjectLockConfiguration"))


# -- retention --
@operation("PutObjectRetention")
async def put_object_retention(ctx: Ctx) -> web.StreamResponse:
    root = await _document(ctx, "Retention")
    fields = _children(root, ("Mode", "RetainUntilDate"))
    mode = (fields["Mode"].text or "").strip() if "Mode" in fields else None
    raw_until = fields["RetainUntilDate"].text or "" if "RetainUntilDate" in fields else None
    if (mode is None) != (raw_until is None) or (mode is not None and mode not in MODES):
        raise MalformedXML()
    until = parse_date(raw_until, "RetainUntilDate") if raw_until is not None else None
    version_id = ctx.query.get("versionId")
    bypass = await authz.bypass_governance(ctx, ctx.k, version_id)
    version = await ctx.coffre.objectlock.put_retention(ctx.p, ctx.b, ctx.k, version_id, mode, until,
                                                        bypass_governance=bypass)
    version_header(ctx, version)
    return ctx.empty()


@operation("GetObjectRetention")
async def get_object_retention(ctx: Ctx) -> web.StreamResponse:
    obj = await ctx.coffre.objectlock.get_retention(ctx.p, ctx.b, ctx.k, ctx.query.get("versionId"))
    assert obj.lock_mode is not None and obj.lock_until is not None
    doc = Doc("Retention").leaf("Mode", obj.lock_mode).leaf("RetainUntilDate", iso8601(obj.lock_until))
    return ctx.xml(doc.close("Retention"))


# -- legal hold --
@operation("PutObjectLegalHold")
async def put_object_legal_hold(ctx: Ctx) -> web.StreamResponse:
    root = await _document(ctx, "LegalHold")
    status = _children(root, ("Status",)).get("Status")
    value = (status.text or "").strip() if status is not None else None
    if value not in LEGAL_HOLD_STATUSES:
        raise MalformedXML()
    version = await ctx.coffre.objectlock.put_legal_hold(ctx.p, ctx.b, ctx.k, ctx.query.get("versionId"),
                                                         value == "ON")
    version_header(ctx, version)
    return ctx.empty()


@operation("GetObjectLegalHold")
async def get_object_legal_hold(ctx: Ctx) -> web.StreamResponse:
    obj = await ctx.coffre.objectlock.get_legal_hold(ctx.p, ctx.b, ctx.k, ctx.query.get("versionId"))
    doc = Doc("LegalHold").leaf("Status", "ON" if obj.legal_hold else "OFF").close("LegalHold")
    return ctx.xml(doc)
