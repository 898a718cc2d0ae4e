"""Put/GetBucketNotificationConfiguration: which events of a bucket go to which operator target."""

from __future__ import annotations

from aiohttp import web
from lxml import etree

from coffre.core.errors import InvalidArgument, MalformedXML
from coffre.notify import config as cfg
from coffre.s3 import xml
from coffre.s3.context import Ctx, operation
from coffre.s3.handlers.documents import read_verified
from coffre.s3.xml import Doc

_ARN_ELEMENT = dict(cfg.KINDS)


def parse(body: bytes) -> list[cfg.Rule]:
    """A <NotificationConfiguration> as rules (Ids generated where none was sent, as S3 does)."""
    root = xml.parse(body)
    if root.tag != "NotificationConfiguration":
        raise MalformedXML()
    rules: list[cfg.Rule] = []
    for el in xml.children(root):
        if el.tag == "EventBridgeConfiguration":
            raise InvalidArgument("EventBridge is not available on this server; name an operator target "
                                  "in a QueueConfiguration.", name="EventBridgeConfiguration")
        if el.tag not in _ARN_ELEMENT:
            raise MalformedXML()
        rules.append(_rule(el))
    return rules


def _rule(el: etree._Element) -> cfg.Rule:
    arn_tag = _ARN_ELEMENT[str(el.tag)]
    rid: str | None = None
    arn: str | None = None
    events: list[str] = []
    prefix: str | None = None
    suffix: str | None = None
    seen_filter = False
    for child in xml.children(el):
        if child.tag == "Id":
            if rid is not None:
                raise MalformedXML()
            rid = xml.leaf(child)
            if len(rid) > cfg.MAX_ID_LENGTH:
                raise InvalidArgument(f"The Id is longer than {cfg.MAX_ID_LENGTH} characters.", name="Id")
        elif child.tag == arn_tag:
            if arn is not None:
                raise MalformedXML()
            arn = xml.leaf(child).strip()
        elif child.tag == "Event":
            events.append(xml.leaf(child).strip())
        elif child.tag == "Filter":
            if seen_filter:
                raise MalformedXML()
            seen_filter = True
            prefix, suffix = _filter(child)
        else:
            raise MalformedXML()
    if arn is None or not events:
        raise MalformedXML()
    return cfg.Rule(rid or cfg.new_rule_id(), str(el.tag), arn, tuple(dict.fromkeys(events)), prefix, suffix)


def _filter(el: etree._Element) -> tuple[str | None, str | None]:
    prefix: str | None = None
    suffix: str | None = None
    for key in xml.children(el):
        if key.tag != "S3Key":
            raise MalformedXML()
        for rule in xml.children(key):
            if rule.tag != "FilterRule":
                raise MalformedXML()
            name = value = None
            for part in xml.children(rule):
                if part.tag == "Name" and name is None:
                    name = xml.leaf(part)
                elif part.tag == "Value" and value is None:
                    value = xml.leaf(part)
                else:
                    raise MalformedXML()
            if name is None or value is None:
                raise MalformedXML()
            if len(value) > cfg.MAX_FILTER_VALUE:
                raise InvalidArgument("The filter value is too long.", name="FilterRule", value=name)
            kind = name.lower()
            if kind == "prefix":
                if prefix is not None:
                    raise InvalidArgument("Cannot specify more than one prefix rule in a filter.",
                                          name="FilterRule", value=name)
                prefix = value
            elif kind == "suffix":
                if suffix is not None:
                    raise InvalidArgument("Cannot specify more than one suffix rule in a filter.",
                                          name="FilterRule", value=name)
                suffix = value
            else:
                raise InvalidArgument("filter rule name must be either prefix or suffix",
                                      name="FilterRule", value=name)
    return prefix, suffix


@operation("PutBucketNotificationConfiguration")
async def put_bucket_notification_configuration(ctx: Ctx) -> web.StreamResponse:
    bucket = await ctx.coffre.buckets.authorize(ctx.p, ctx.b)
    rules = parse(await read_verified(ctx, missing=None))
    # Only the operator's targets can be destinations, and of those only the ones open to the
    # bucket's tenant: an ARN naming anything else is refused, with the same words either way.
    targets = cfg.parse_targets(ctx.settings.notify_targets)
    if rules and any(t.restricted for t in targets.values()):
        tenant = await ctx.coffre.meta.get_tenant(bucket.tenant_id)
        targets = cfg.available(targets, bucket.tenant_id, tenant.name if tenant is not None else None)
    cfg.validate(rules, targets, ctx.settings.region)
    await ctx.coffre.meta.put_bucket_config(ctx.b, "notification", cfg.dumps(rules) if rules else None)
    return ctx.empty()


@operation("GetBucketNotificationConfiguration")
async def get_bucket_notification_configuration(ctx: Ctx) -> web.StreamResponse:
    await ctx.coffre.buckets.authorize(ctx.p, ctx.b)
    rules = cfg.loads(await ctx.coffre.meta.get_bucket_config(ctx.b, "notification"))
    doc = Doc("NotificationConfiguration")
    for kind, arn_tag in cfg.KINDS:
        for r in rules:
            if r.kind != kind:
                continue
            doc.open(kind).leaf("Id", r.id).leaf(arn_tag, r.arn)
            doc.leaves(("Event", e) for e in r.events)
            if r.prefix is not None or r.suffix is not None:
                doc.open("Filter").open("S3Key")
                for name, value in (("Prefix", r.prefix), ("Suffix", r.suffix)):
                    if value is not None:
                        doc.open("FilterRule").leaf("Name", name).leaf("Value", value).close("FilterRule")
                doc.close("S3Key").close("Filter")
            doc.close(kind)
    doc.close("NotificationConfiguration")
    return ctx.xml(doc)
