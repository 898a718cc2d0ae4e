"""Bucket operations: create, head, delete, location, and object listings (v1 and v2)."""

from __future__ import annotations

import base64
import binascii

from aiohttp import web

from coffre.core.errors import InvalidArgument, MalformedXML
from coffre.meta.records import ListPage
from coffre.s3 import xml
from coffre.s3.context import Ctx, operation
from coffre.s3.handlers import ownership
from coffre.s3.xml import Doc, iso8601_second, url_value


@operation("CreateBucket")
async def create_bucket(ctx: Ctx) -> web.StreamResponse:
    location = None
    body = await ctx.read_small(ctx.settings.max_xml_body)
    if body.strip():
        root = xml.parse(body)
        if root.tag != "CreateBucketConfiguration":
            raise MalformedXML()
        # Absent or empty: no constraint (the deployment's region).
        location = xml.text(root, "LocationConstraint") or None
    await ctx.coffre.buckets.create_bucket(ctx.p, ctx.b, location, ownership.new_bucket_access(ctx),
                                           object_lock=_lock_enabled(ctx))
    ctx.response_headers["Location"] = "/" + ctx.b
    return ctx.empty()


def _lock_enabled(ctx: Ctx) -> bool:
    """x-amz-bucket-object-lock-enabled: a boolean header (SDKs send "true"/"True")."""
    raw = ctx.headers.get("x-amz-bucket-object-lock-enabled")
    if raw is None or raw.strip().lower() == "false":
        return False
    if raw.strip().lower() == "true":
        return True
    raise InvalidArgument("Invalid value for x-amz-bucket-object-lock-enabled", name="x-amz-bucket-object-lock-enabled",
                          value=raw)


@operation("HeadBucket")
async def head_bucket(ctx: Ctx) -> web.StreamResponse:
    bucket = await ctx.coffre.buckets.get(ctx.b)
    # S3 tells the region even when it refuses access (clients use it to redirect).
    ctx.response_headers["x-amz-bucket-region"] = bucket.region
    await ctx.coffre.buckets.authorize(ctx.p, ctx.b)
    ctx.response_headers["x-amz-access-point-alias"] = "false"
    return ctx.empty()


@operation("DeleteBucket")
async def delete_bucket(ctx: Ctx) -> web.StreamResponse:
    await ctx.coffre.buckets.delete_bucket(ctx.p, ctx.b)
    return ctx.empty(204)


@operation("GetBucketLocation")
async def get_bucket_location(ctx: Ctx) -> web.StreamResponse:
    bucket = await ctx.coffre.buckets.authorize(ctx.p, ctx.b)
    doc = Doc()
    # us-east-1 is reported as an empty constraint, as S3 does.
    region = "" if bucket.region == "us-east-1" else bucket.region
    doc.raw(f'<LocationConstraint xmlns="{xml.S3_NS}">{xml.esc(region)}</LocationConstraint>')
    return ctx.xml(doc)


def _max_keys(ctx: Ctx, name: str = "max-keys") -> int:
    raw = ctx.query.get(name)
    if raw is None:
        return 1000
    try:
        n = int(raw)
    except ValueError as e:
        raise InvalidArgument("Provided max-keys not an integer or within integer range", name=name) from e
    if not 0 <= n <= 2147483647:
        raise InvalidArgument("Argument maxKeys must be an integer between 0 and 2147483647", name=name)
    return n


def _contents(doc: Doc, page: ListPage, url: bool, owner: bool) -> None:
    # One pre-escaped string per entry, not a Doc.leaf call per field: this loop runs a
    # thousand times per page and was most of a listing's CPU. One check over the whole
    # page's text tells whether anything needs escaping at all; usually nothing does. The
    # text is gathered column by column (zip and join run in C), not row by row.
    objs = page.objects
    keys, _, etags, _, classes, owners, algorithms, ctypes = zip(*objs, strict=True) if objs else ((),) * 8
    text = "".join(keys) + "".join(etags) + "".join(classes) + "".join(owners) \
        + "".join(filter(None, algorithms)) + "".join(filter(None, ctypes))
    escaping = xml.needs_escape(text)
    esc = xml.esc
    rows: list[str] = []
    append = rows.append
    second, head = -1, ""  # LastModified: the second's text is reused while rows share it
    # One f-string per entry from the row's unpacked fields; escaping only when the page needs it.
    for key, modified, etag, size, storage_class, owner_id, algorithm, ctype in objs:
        ms = int(modified * 1000)
        if ms // 1000 != second:
            second = ms // 1000
            head = iso8601_second(second)
        if url:
            key = url_value(key, True)
        if escaping:
            key, etag, storage_class, owner_id = esc(key), esc(etag), esc(storage_class), esc(owner_id)
            algorithm, ctype = algorithm and esc(algorithm), ctype and esc(ctype)
        checksum = (f"<ChecksumAlgorithm>{algorithm}</ChecksumAlgorithm><ChecksumType>{ctype}</ChecksumType>"
                    if algorithm and ctype else "")
        who = f"<Owner><ID>{owner_id}</ID><DisplayName></DisplayName></Owner>" if owner else ""
        append(f"<Contents><Key>{key}</Key><LastModified>{head}{ms % 1000:03d}Z</LastModified><ETag>{etag}</ETag>"
               f"<Size>{size}</Size>{checksum}<StorageClass>{storage_class}</StorageClass>{who}</Contents>")
    doc.raw("".join(rows))
    for p in page.common_prefixes:
        doc.open("CommonPrefixes").leaf("Prefix", url_value(p, url)).close("CommonPrefixes")


@operation("ListObjects")
async def list_objects(ctx: Ctx) -> web.StreamResponse:
    url = ctx.url_encoding()
    max_keys = _max_keys(ctx)
    prefix = ctx.query.get("prefix", "")
    delimiter = ctx.query.get("delimiter", "")
    marker = ctx.query.get("marker", "")
    page = await ctx.coffre.buckets.list_objects(ctx.p, ctx.b, prefix=prefix, delimiter=delimiter,
                                                 start_after=marker, max_keys=max_keys)
    doc = Doc("ListBucketResult")
    doc.leaf("Name", ctx.b).leaf("Prefix", url_value(prefix, url)).leaf("Marker", url_value(marker, url))
    doc.leaf("MaxKeys", max_keys)
    if delimiter:
        doc.leaf("Delimiter", url_value(delimiter, url))
    doc.leaf("IsTruncated", page.is_truncated)
    if page.is_truncated and delimiter and page.next_marker is not None:
        doc.leaf("NextMarker", url_value(page.next_marker, url))
    if url:
        doc.leaf("EncodingType", "url")
    _contents(doc, page, url, owner=True)
    doc.close("ListBucketResult")
    return ctx.xml(doc)


def encode_token(key: str) -> str:
    return base64.urlsafe_b64encode(b"k1:" + key.encode("utf-8", "surrogateescape")).decode()


def decode_token(token: str) -> str:
    try:
        raw = base64.urlsafe_b64decode(token.encode())
    except (binascii.Error, ValueError) as e:
        raise InvalidArgument("The continuation token provided is incorrect", name="continuation-token") from e
    if not raw.startswith(b"k1:"):
        raise InvalidArgument("The continuation token provided is incorrect", name="continuation-token")
    return raw[3:].decode("utf-8", "surrogateescape")


@operation("ListObjectsV2")
async def list_objects_v2(ctx: Ctx) -> web.StreamResponse:
    url = ctx.url_encoding()
    max_keys = _max_keys(ctx)
    prefix = ctx.query.get("prefix", "")
    delimiter = ctx.query.get("delimiter", "")
    start_after = ctx.query.get("start-after", "")
    token = ctx.query.get("continuation-token")
    fetch_owner = ctx.query.get("fetch-owner", "").lower() == "true"
    if token is not None:
        if token == "":
            raise InvalidArgument("The continuation token provided is incorrect", name="continuation-token")
        position = decode_token(token)
    else:
        position = start_after
    page = await ctx.coffre.buckets.list_objects(ctx.p, ctx.b, prefix=prefix, delimiter=delimiter,
                                                 start_after=position, max_keys=max_keys)
    doc = Doc("ListBucketResult")
    doc.leaf("Name", ctx.b).leaf("Prefix", url_value(prefix, url))
    if start_after:
        doc.leaf("StartAfter", url_value(start_after, url))
    if token is not None:
        doc.leaf("ContinuationToken", token)
    doc.leaf("KeyCount", len(page.objects) + len(page.common_prefixes)).leaf("MaxKeys", max_keys)
    if delimiter:
        doc.leaf("Delimiter", url_value(delimiter, url))
    doc.leaf("IsTruncated", page.is_truncated)
    if page.is_truncated and page.next_marker is not None:
        doc.leaf("NextContinuationToken", encode_token(page.next_marker))
    if url:
        doc.leaf("EncodingType", "url")
    _contents(doc, page, url, owner=fetch_owner)
    doc.close("ListBucketResult")
    return ctx.xml(doc)
