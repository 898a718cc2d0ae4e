"""CORS: Put/Get/DeleteBucketCors, the OPTIONS preflight, and the headers of actual cross-origin requests."""

from __future__ import annotations

import logging

from aiohttp import web
from lxml import etree

from coffre.core import cors
from coffre.core.cors import CorsRule
from coffre.core.errors import CoffreError, CORSForbidden, MalformedXML
from coffre.s3 import xml
from coffre.s3.context import Ctx, operation
from coffre.s3.handlers.documents import read_verified
from coffre.s3.xml import Doc

log = logging.getLogger("coffre.s3")

_LISTS = {"AllowedOrigin": "origins", "AllowedMethod": "methods", "AllowedHeader": "headers",
          "ExposeHeader": "expose"}


def parse_rules(body: bytes) -> list[CorsRule]:
    """A <CORSConfiguration> document as rules; any departure from S3's schema is MalformedXML.

    Values are kept exactly as sent (S3 neither trims nor changes their case)."""
    root = xml.parse(body)
    if root.tag != "CORSConfiguration" or xml.has_text(root.text):
        raise MalformedXML()
    rules: list[CorsRule] = []
    for el in root:
        if not isinstance(el.tag, str):
            continue
        if el.tag != "CORSRule" or xml.has_text(el.tail) or xml.has_text(el.text):
            raise MalformedXML()
        rules.append(_rule(el))
    if not rules or len(rules) > cors.MAX_RULES:
        raise MalformedXML()
    return rules


def _rule(el: etree._Element) -> CorsRule:
    lists: dict[str, list[str]] = {"origins": [], "methods": [], "headers": [], "expose": []}
    rid: str | None = None
    max_age: int | None = None
    for child in el:
        if not isinstance(child.tag, str):
            continue
        if xml.has_text(child.tail) or len(child):
            raise MalformedXML()
        value = child.text or ""
        if child.tag in _LISTS:
            lists[_LISTS[child.tag]].append(value)
        elif child.tag == "ID":
            if rid is not None or len(value) > cors.MAX_ID_LENGTH:
                raise MalformedXML()
            rid = value
        elif child.tag == "MaxAgeSeconds":
            if max_age is not None or not value.isascii() or not value.isdigit() or int(value) > cors.MAX_AGE_LIMIT:
                raise MalformedXML()
            max_age = int(value)
        else:
            raise MalformedXML()
    if not lists["origins"] or not lists["methods"]:
        raise MalformedXML()
    return CorsRule(tuple(lists["origins"]), tuple(lists["methods"]), tuple(lists["headers"]),
                    tuple(lists["expose"]), max_age, rid)


@operation("PutBucketCors")
async def put_bucket_cors(ctx: Ctx) -> web.StreamResponse:
    await ctx.coffre.buckets.authorize(ctx.p, ctx.b)
    # Like DeleteObjects, S3 requires a Content-MD5 (or a flexible checksum) on this call.
    body = await read_verified(ctx)
    rules = parse_rules(body)
    cors.validate(rules)
    await cors.save(ctx.coffre.meta, ctx.b, rules)
    return ctx.empty()


@operation("GetBucketCors")
async def get_bucket_cors(ctx: Ctx) -> web.StreamResponse:
    await ctx.coffre.buckets.authorize(ctx.p, ctx.b)
    rules = await cors.get(ctx.coffre.meta, ctx.b)
    doc = Doc("CORSConfiguration")
    for r in rules:
        # S3's element order, which is not the order of its schema.
        doc.open("CORSRule")
        if r.id is not None:
            doc.leaf("ID", r.id)
        doc.leaves(("AllowedMethod", m) for m in r.allowed_methods)
        doc.leaves(("AllowedOrigin", o) for o in r.allowed_origins)
        doc.leaves(("AllowedHeader", h) for h in r.allowed_headers)
        if r.max_age is not None:
            doc.leaf("MaxAgeSeconds", r.max_age)
        doc.leaves(("ExposeHeader", h) for h in r.expose_headers)
        doc.close("CORSRule")
    doc.close("CORSConfiguration")
    return ctx.xml(doc)


@operation("DeleteBucketCors")
async def delete_bucket_cors(ctx: Ctx) -> web.StreamResponse:
    await ctx.coffre.buckets.authorize(ctx.p, ctx.b)
    await cors.save(ctx.coffre.meta, ctx.b, None)
    return ctx.empty(204)


@operation("OptionsObject")
async def options_object(ctx: Ctx) -> web.StreamResponse:
    """The browser's preflight: anonymous by nature (it never carries credentials)."""
    h = ctx.headers
    resource_type = "OBJECT" if ctx.key is not None else "BUCKET"
    origin = h.get("origin")
    method = h.get("access-control-request-method")
    if origin and method in cors.METHODS and await ctx.coffre.meta.get_bucket(ctx.b) is None:
        raise CORSForbidden("CORSResponse: Bucket not found", method=method, resource_type=resource_type)
    rules = await cors.load(ctx.coffre.meta, ctx.b) if origin and method in cors.METHODS else None
    headers = cors.preflight(rules, origin, method, h.get("access-control-request-headers"), resource_type)
    ctx.response_headers.extend(headers)
    return ctx.empty()


async def add_response_headers(ctx: Ctx, response: web.StreamResponse) -> None:
    """Access-Control-* on an actual cross-origin request (success or error) that a rule allows.

    Read from the store on every such request: another gateway may have changed the rules."""
    origin = ctx.headers.get("origin")
    if not origin or ctx.bucket is None or ctx.operation == "OptionsObject" or response.prepared:
        return
    try:
        rules = await cors.load(ctx.coffre.meta, ctx.bucket)
    except CoffreError:
        return
    except Exception:
        # The answer itself is ready; failing to decorate it must not turn it into a 500.
        log.exception("reading the CORS configuration of %s failed", ctx.bucket)
        return
    for name, value in cors.actual(rules, origin, ctx.request.method):
        response.headers[name] = value
