"""DeleteObjects: POST /bucket?delete with a <Delete> document of up to 1000 keys."""

from __future__ import annotations

import hashlib

from aiohttp import web

from coffre.core.checksums import Checksum
from coffre.core.errors import InvalidRequest, MalformedXML
from coffre.core.objects import check_digests
from coffre.s3 import xml
from coffre.s3.context import Ctx, operation
from coffre.s3.errors import status_and_code
from coffre.s3.handlers.objects import integrity
from coffre.s3.xml import Doc

MISSING_DIGEST = "Missing required header for this request: Content-Md5"


async def _read_verified(ctx: Ctx) -> bytes:
    """The request body, refused unless a Content-MD5 or a flexible checksum vouches for it.

    AWS requires one of them on every DeleteObjects so a corrupted body cannot delete the
    wrong keys; the digest is checked before anything is parsed.
    """
    integ = integrity(ctx)
    has_value = integ.checksum_value is not None or integ.checksum_in_trailer
    if integ.content_md5 is None and not has_value:
        raise InvalidRequest(MISSING_DIGEST)
    limit = ctx.settings.max_xml_body
    length = ctx.payload_length()
    if length is not None and length > limit:
        raise InvalidRequest(f"The request body is too large (over {limit} bytes).")
    md5 = hashlib.md5()  # noqa: S324 - Content-MD5 is what the protocol specifies
    checksum = Checksum(integ.checksum_algorithm) if integ.checksum_algorithm and has_value else None
    body = ctx.body()
    out = bytearray()
    async for chunk in body:
        out += chunk
        if len(out) > limit:
            raise InvalidRequest(f"The request body is too large (over {limit} bytes).")
        md5.update(chunk)
        if checksum is not None:
            checksum.update(chunk)
    check_digests(md5.digest(), checksum, integ, body.trailers)
    return bytes(out)


def _items(body: bytes, max_keys: int) -> tuple[list[tuple[str, str | None]], bool]:
    root = xml.parse(body)
    if root.tag != "Delete":
        raise MalformedXML()
    quiet = (xml.text(root, "Quiet") or "").strip().lower() == "true"
    items: list[tuple[str, str | None]] = []
    for el in root.findall("Object"):
        key = xml.text(el, "Key")
        if key is None:
            raise MalformedXML()
        items.append((key, xml.text(el, "VersionId")))
    # An empty list or more than the limit: AWS rejects the document as a whole.
    if not items or len(items) > max_keys:
        raise MalformedXML()
    return items, quiet


@operation("DeleteObjects")
async def delete_objects(ctx: Ctx) -> web.StreamResponse:
    body = await _read_verified(ctx)
    items, quiet = _items(body, ctx.settings.max_delete_objects)
    outcomes = await ctx.coffre.objects.delete_objects(ctx.p, ctx.b, items)
    doc = Doc("DeleteResult")
    for o in outcomes:
        if o.error is None:
            if not quiet:
                doc.open("Deleted").leaf("Key", o.key).leaf("VersionId", o.version_id)
                if o.deleted.delete_marker:
                    # The marker created (simple delete) or the marker version removed.
                    doc.leaf("DeleteMarker", True).leaf("DeleteMarkerVersionId", o.deleted.version_id)
                doc.close("Deleted")
            continue
        _, code = status_and_code(o.error)
        doc.open("Error").leaf("Key", o.key).leaf("VersionId", o.version_id)
        doc.leaf("Code", code).leaf("Message", str(o.error)).close("Error")
    doc.close("DeleteResult")
    return ctx.xml(doc)
