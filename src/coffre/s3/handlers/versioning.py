"""Versioning: PutBucketVersioning, GetBucketVersioning, ListObjectVersions, and the
response headers every object operation shares about versions and delete markers."""

from __future__ import annotations

from aiohttp import web

from coffre.core.errors import CoffreError, InvalidArgument, MalformedXML
from coffre.core.objects import Deleted
from coffre.meta.records import ObjectRecord
from coffre.s3 import xml
from coffre.s3.context import Ctx, operation
from coffre.s3.xml import Doc, http_date, iso8601, url_value


def delete_marker_headers(ctx: Ctx, exc: CoffreError) -> None:
    """x-amz-delete-marker / x-amz-version-id (and Last-Modified) on a 404 or 405 caused by a
    delete marker, as AWS sends them; the error response keeps these headers."""
    if not exc.fields.get("delete_marker"):
        return
    ctx.response_headers["x-amz-delete-marker"] = "true"
    version = exc.fields.get("marker_version_id")
    if isinstance(version, str):
        ctx.response_headers["x-amz-version-id"] = version
    when = exc.fields.get("last_modified")
    if isinstance(when, float):
        ctx.response_headers["Last-Modified"] = http_date(when)
    if exc.code == "MethodNotAllowed":
        exc.fields.setdefault("method", ctx.request.method)


def deleted_headers(ctx: Ctx, deleted: Deleted) -> None:
    """DeleteObject's x-amz-version-id and x-amz-delete-marker."""
    if deleted.version_id is not None:
        ctx.response_headers["x-amz-version-id"] = deleted.version_id
    if deleted.delete_marker:
        ctx.response_headers["x-amz-delete-marker"] = "true"


@operation("PutBucketVersioning")
async def put_bucket_versioning(ctx: Ctx) -> web.StreamResponse:
    body = await ctx.read_small(ctx.settings.max_xml_body)
    root = xml.parse(body)
    if root.tag != "VersioningConfiguration":
        raise MalformedXML()
    for el in root:
        if isinstance(el.tag, str) and el.tag not in ("Status", "MfaDelete"):
            raise MalformedXML()
    await ctx.coffre.versioning.put_bucket_versioning(ctx.p, ctx.b, xml.text(root, "Status"),
                                                      xml.text(root, "MfaDelete"))
    return ctx.empty()


@operation("GetBucketVersioning")
async def get_bucket_versioning(ctx: Ctx) -> web.StreamResponse:
    status = await ctx.coffre.versioning.get_bucket_versioning(ctx.p, ctx.b)
    # A bucket never versioned answers an empty configuration (no Status at all).
    doc = Doc("VersioningConfiguration").leaf("Status", status or None).close("VersioningConfiguration")
    return ctx.xml(doc)


def _max_keys(ctx: Ctx) -> int:
    raw = ctx.query.get("max-keys")
    if raw is None:
        return 1000
    try:
        n = int(raw)
    except ValueError as e:
        raise InvalidArgument("Provided max-keys not an integer or within integer range", name="max-keys") from e
    if not 0 <= n <= 2147483647:
        raise InvalidArgument("Argument maxKeys must be an integer between 0 and 2147483647", name="max-keys")
    return n


def _owner(doc: Doc, o: ObjectRecord) -> None:
    doc.open("Owner").leaf("ID", o.owner).leaf("DisplayName", "").close("Owner")


@operation("ListObjectVersions")
async def list_object_versions(ctx: Ctx) -> web.StreamResponse:
    url = ctx.url_encoding()
    max_keys = _max_keys(ctx)
    q = ctx.query
    prefix, delimiter = q.get("prefix", ""), q.get("delimiter", "")
    key_marker, version_id_marker = q.get("key-marker", ""), q.get("version-id-marker", "")
    page = await ctx.coffre.versioning.list_object_versions(
        ctx.p, ctx.b, prefix=prefix, delimiter=delimiter, key_marker=key_marker,
        version_id_marker=version_id_marker, max_keys=max_keys)
    doc = Doc("ListVersionsResult")
    doc.leaf("Name", ctx.b).leaf("Prefix", url_value(prefix, url)).leaf("KeyMarker", url_value(key_marker, url))
    doc.leaf("VersionIdMarker", version_id_marker)
    if page.is_truncated:
        doc.leaf("NextKeyMarker", url_value(page.next_key_marker or "", url))
        doc.leaf("NextVersionIdMarker", page.next_version_id_marker)
    doc.leaf("MaxKeys", max_keys)
    if delimiter:
        doc.leaf("Delimiter", url_value(delimiter, url))
    doc.leaf("IsTruncated", page.is_truncated)
    if url:
        doc.leaf("EncodingType", "url")
    for o in page.entries:
        tag = "DeleteMarker" if o.is_delete_marker else "Version"
        doc.open(tag).leaf("Key", url_value(o.key, url)).leaf("VersionId", o.version_id)
        doc.leaf("IsLatest", o.is_latest).leaf("LastModified", iso8601(o.last_modified))
        if not o.is_delete_marker:
            doc.leaf("ETag", o.etag).leaf("Size", o.size)
            if o.checksum_algorithm and o.checksum_type:
                doc.leaf("ChecksumAlgorithm", o.checksum_algorithm).leaf("ChecksumType", o.checksum_type)
            doc.leaf("StorageClass", o.storage_class)
        _owner(doc, o)
        doc.close(tag)
    for p in page.common_prefixes:
        doc.open("CommonPrefixes").leaf("Prefix", url_value(p, url)).close("CommonPrefixes")
    doc.close("ListVersionsResult")
    return ctx.xml(doc)

