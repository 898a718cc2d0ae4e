"""GetObjectAttributes: GET /bucket/key?attributes, the attributes named in x-amz-object-attributes."""

from __future__ import annotations

from aiohttp import web

from coffre.core.errors import CoffreError, InvalidArgument, InvalidRequest
from coffre.meta.records import NULL_VERSION, ObjectRecord
from coffre.s3.context import Ctx, operation
from coffre.s3.handlers import encryption
from coffre.s3.handlers.versioning import delete_marker_headers
from coffre.s3.xml import Doc, http_date

ATTRIBUTES = ("ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize")
MAX_PARTS = 1000


def _requested(ctx: Ctx) -> set[str]:
    raw = ctx.headers.get("x-amz-object-attributes", "")
    names = [n.strip() for n in raw.split(",") if n.strip()]
    if not names:
        raise InvalidRequest("The x-amz-object-attributes header specifying the attributes to be retrieved "
                             "is either missing or empty")
    for n in names:
        if n not in ATTRIBUTES:
            raise InvalidArgument("Invalid attribute name specified.", name="x-amz-object-attributes", value=n)
    return set(names)


def _int_header(ctx: Ctx, name: str, default: int) -> int:
    """S3 ignores unparsable x-amz-max-parts / x-amz-part-number-marker values."""
    try:
        n = int(ctx.headers.get(name, ""))
    except ValueError:
        return default
    return n if n >= 0 else default


def _parts(ctx: Ctx, doc: Doc, obj: ObjectRecord) -> None:
    max_parts = min(_int_header(ctx, "x-amz-max-parts", MAX_PARTS), MAX_PARTS)
    marker = _int_header(ctx, "x-amz-part-number-marker", 0)
    after = [p for p in obj.parts if p.part_number > marker]
    page = after[:max_parts]
    truncated = len(after) > len(page)
    doc.open("ObjectParts").leaf("PartsCount", len(obj.parts)).leaf("PartNumberMarker", marker)
    doc.leaf("NextPartNumberMarker", page[-1].part_number if page else marker)
    doc.leaf("MaxParts", max_parts).leaf("IsTruncated", truncated)
    for p in page:
        doc.open("Part").leaf("PartNumber", p.part_number).leaf("Size", p.size)
        if p.checksum and obj.checksum_algorithm:
            doc.leaf("Checksum" + obj.checksum_algorithm, p.checksum)
        doc.close("Part")
    doc.close("ObjectParts")


@operation("GetObjectAttributes")
async def get_object_attributes(ctx: Ctx) -> web.StreamResponse:
    wanted = _requested(ctx)
    try:
        obj = await ctx.coffre.objects.head_object(ctx.p, ctx.b, ctx.k, ctx.query.get("versionId"),
                                                   with_parts="ObjectParts" in wanted)
    except CoffreError as e:
        delete_marker_headers(ctx, e)
        raise
    await encryption.read_layer(ctx, obj, decrypt=False)  # an SSE-C object's attributes need its key, as on AWS
    rh = ctx.response_headers
    rh["Last-Modified"] = http_date(obj.last_modified)
    if obj.version_id != NULL_VERSION:
        rh["x-amz-version-id"] = obj.version_id
    doc = Doc("GetObjectAttributesResponse")
    if "ETag" in wanted:
        # Unlike every other place, GetObjectAttributes gives the ETag without its quotes.
        doc.leaf("ETag", obj.etag.strip('"'))
    if "Checksum" in wanted and obj.checksum_algorithm and obj.checksum_value:
        doc.open("Checksum").leaf("Checksum" + obj.checksum_algorithm, obj.checksum_value)
        doc.leaf("ChecksumType", obj.checksum_type or "FULL_OBJECT").close("Checksum")
    if "ObjectParts" in wanted and obj.parts:
        _parts(ctx, doc, obj)
    if "StorageClass" in wanted:
        doc.leaf("StorageClass", obj.storage_class)
    if "ObjectSize" in wanted:
        doc.leaf("ObjectSize", obj.size)
    doc.close("GetObjectAttributesResponse")
    return ctx.xml(doc)
