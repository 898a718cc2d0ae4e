"""Multipart upload operations: Create, UploadPart, UploadPartCopy, Complete, Abort, ListParts,
ListMultipartUploads (request parsing and AWS-shaped responses; the rules live in core.multipart)."""

from __future__ import annotations

from aiohttp import web

from coffre.core import checksums
from coffre.core.errors import InvalidArgument, MalformedXML
from coffre.core.multipart import CompletedPart, CopySpec, PartResult, effective_checksum
from coffre.meta.records import NULL_VERSION, SseRecord, UploadRecord
from coffre.s3 import authz, xml
from coffre.s3.context import Ctx, operation
from coffre.s3.copysource import parse_copy_source
from coffre.s3.handlers import encryption
from coffre.s3.handlers.documents import integrity
from coffre.s3.handlers.expiration import abort_date
from coffre.s3.handlers.objects import committed, write_meta
from coffre.s3.xml import Doc, iso8601, url_value

# XML element of each algorithm's checksum (ChecksumCRC32, ChecksumSHA256, ...).
_ELEMENT = {a: "Checksum" + a for a in checksums.ALGORITHMS}
_BY_ELEMENT = {v: k for k, v in _ELEMENT.items()}
# A complete request lists up to max_parts parts, each with an ETag and a checksum.
_COMPLETE_BYTES_PER_PART = 512


def _int_query(ctx: Ctx, name: str, default: int, message: str) -> int:
    raw = ctx.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as e:
        raise InvalidArgument(message, name=name) from e


def _upload_id(ctx: Ctx) -> str:
    return ctx.query.get("uploadId", "")


def _part_number(ctx: Ctx) -> int:
    msg = f"Part number must be an integer between 1 and {ctx.settings.max_parts}, inclusive"
    raw = ctx.query.get("partNumber", "")
    try:
        return int(raw)
    except ValueError as e:
        raise InvalidArgument(msg, name="partNumber") from e


def _sse(ctx: Ctx, record: SseRecord | None, tenant_id: str) -> None:
    encryption.response_headers(ctx, record, tenant_id)


def _owner(doc: Doc, tag: str, canonical_id: str) -> None:
    doc.open(tag).leaf("ID", canonical_id).leaf("DisplayName", "").close(tag)


@operation("CreateMultipartUpload")
async def create_multipart_upload(ctx: Ctx) -> web.StreamResponse:
    h = ctx.headers
    upload = await ctx.coffre.multipart.create_upload(
        ctx.p, ctx.b, ctx.k, await authz.owned(ctx, await encryption.with_sse(ctx, write_meta(ctx))),
        checksum_algorithm=h.get("x-amz-checksum-algorithm"),
        checksum_type=h.get("x-amz-checksum-type"))
    _sse(ctx, upload.sse, upload.tenant_id)
    abort_date(ctx, upload)
    if upload.checksum_algorithm is not None:
        ctx.response_headers["x-amz-checksum-algorithm"] = upload.checksum_algorithm
        ctx.response_headers["x-amz-checksum-type"] = upload.checksum_type or ""
    doc = Doc("InitiateMultipartUploadResult")
    doc.leaf("Bucket", ctx.b).leaf("Key", ctx.k).leaf("UploadId", upload.upload_id)
    doc.close("InitiateMultipartUploadResult")
    return ctx.xml(doc)


def _part_headers(ctx: Ctx, result: PartResult) -> None:
    if result.upload is not None:
        _sse(ctx, result.upload.sse, result.upload.tenant_id)
    ctx.response_headers[checksums.header_name(result.checksum_algorithm)] = result.checksum_value


@operation("UploadPart")
async def upload_part(ctx: Ctx) -> web.StreamResponse:
    result = await ctx.coffre.multipart.upload_part(
        ctx.p, ctx.b, ctx.k, _upload_id(ctx), _part_number(ctx), ctx.body(),
        content_length=ctx.payload_length(), integrity=integrity(ctx), customer=encryption.customer(ctx))
    ctx.response_headers["ETag"] = result.part.etag
    _part_headers(ctx, result)
    return ctx.empty()


@operation("UploadPartCopy")
async def upload_part_copy(ctx: Ctx) -> web.StreamResponse:
    part_number = _part_number(ctx)
    src = parse_copy_source(ctx)
    spec = CopySpec(bucket=src.bucket, key=src.key, version_id=src.version_id, conditions=src.conditions,
                    range=ctx.headers.get("x-amz-copy-source-range"), customer=encryption.source_customer(ctx))
    result = await ctx.coffre.multipart.upload_part_copy(ctx.p, ctx.b, ctx.k, _upload_id(ctx), part_number, spec,
                                                         customer=encryption.customer(ctx))
    _part_headers(ctx, result)
    if result.source is not None and result.source.version_id != NULL_VERSION:
        ctx.response_headers["x-amz-copy-source-version-id"] = result.source.version_id
    doc = Doc("CopyPartResult")
    doc.leaf("ETag", result.part.etag).leaf("LastModified", iso8601(result.part.last_modified))
    doc.leaf(_ELEMENT[result.checksum_algorithm], result.checksum_value)
    doc.close("CopyPartResult")
    return ctx.xml(doc)


def _parse_complete(body: bytes) -> list[CompletedPart]:
    if not body.strip():
        raise MalformedXML()
    root = xml.parse(body)
    if root.tag != "CompleteMultipartUpload":
        raise MalformedXML()
    parts: list[CompletedPart] = []
    for el in root:
        if not isinstance(el.tag, str):
            continue
        if el.tag != "Part":
            raise MalformedXML()
        number = xml.text(el, "PartNumber")
        etag = xml.text(el, "ETag")
        if number is None or etag is None:
            raise MalformedXML()
        try:
            n = int(number.strip())
        except ValueError as e:
            raise MalformedXML() from e
        sums = {algo: (xml.text(el, tag) or "").strip() for tag, algo in _BY_ELEMENT.items()
                if el.find(tag) is not None}
        parts.append(CompletedPart(part_number=n, etag=etag, checksums=sums))
    return parts


def _location(ctx: Ctx) -> str:
    host = ctx.headers.get("host", "")
    scheme = "https" if ctx.request.secure else "http"
    return f"{scheme}://{host}{ctx.raw_path}"


@operation("CompleteMultipartUpload")
async def complete_multipart_upload(ctx: Ctx) -> web.StreamResponse:
    limit = max(ctx.settings.max_xml_body, ctx.settings.max_parts * _COMPLETE_BYTES_PER_PART)
    listed = _parse_complete(await ctx.read_small(limit))
    h = ctx.headers
    whole = next(((a, h[checksums.header_name(a)]) for a in checksums.ALGORITHMS
                  if checksums.header_name(a) in h), None)
    size_header = h.get("x-amz-mp-object-size")
    try:
        mpu_size = int(size_header) if size_header is not None else None
    except ValueError as e:
        raise InvalidArgument("Value for x-amz-mp-object-size header is invalid.",
                              name="x-amz-mp-object-size") from e
    obj = await ctx.coffre.multipart.complete_upload(
        ctx.p, ctx.b, ctx.k, _upload_id(ctx), listed, if_match=h.get("if-match"),
        if_none_match=h.get("if-none-match"), checksum_type=h.get("x-amz-checksum-type"),
        whole_checksum=whole, mpu_object_size=mpu_size, customer=encryption.customer(ctx))
    committed(ctx, "ObjectCreated:CompleteMultipartUpload", obj)
    _sse(ctx, obj.sse, obj.tenant_id)
    if obj.version_id != NULL_VERSION:
        ctx.response_headers["x-amz-version-id"] = obj.version_id
    doc = Doc("CompleteMultipartUploadResult")
    doc.leaf("Location", _location(ctx)).leaf("Bucket", ctx.b).leaf("Key", ctx.k).leaf("ETag", obj.etag)
    if obj.checksum_algorithm and obj.checksum_value:
        doc.leaf(_ELEMENT[obj.checksum_algorithm], obj.checksum_value)
        doc.leaf("ChecksumType", obj.checksum_type)
    doc.close("CompleteMultipartUploadResult")
    return ctx.xml(doc)


@operation("AbortMultipartUpload")
async def abort_multipart_upload(ctx: Ctx) -> web.StreamResponse:
    await ctx.coffre.multipart.abort_upload(ctx.p, ctx.b, ctx.k, _upload_id(ctx))
    return ctx.empty(204)


def _upload_checksum(doc: Doc, upload: UploadRecord) -> None:
    algo, ctype = effective_checksum(upload)
    doc.leaf("ChecksumAlgorithm", algo).leaf("ChecksumType", ctype)


@operation("ListParts")
async def list_parts(ctx: Ctx) -> web.StreamResponse:
    url = ctx.url_encoding()
    max_parts = _int_query(ctx, "max-parts", 1000, "Provided max-parts not an integer or within integer range")
    marker = _int_query(ctx, "part-number-marker", 0,
                        "Provided part-number-marker not an integer or within integer range")
    page = await ctx.coffre.multipart.list_parts(ctx.p, ctx.b, ctx.k, _upload_id(ctx),
                                                 part_number_marker=marker, max_parts=max_parts)
    upload = page.upload
    abort_date(ctx, upload)
    algo, _ = effective_checksum(upload)
    doc = Doc("ListPartsResult")
    doc.leaf("Bucket", ctx.b).leaf("Key", url_value(ctx.k, url)).leaf("UploadId", upload.upload_id)
    doc.leaf("PartNumberMarker", marker).leaf("NextPartNumberMarker", page.next_marker)
    doc.leaf("MaxParts", max_parts).leaf("IsTruncated", page.is_truncated)
    if url:
        doc.leaf("EncodingType", "url")
    for p in page.parts:
        doc.open("Part").leaf("PartNumber", p.part_number).leaf("LastModified", iso8601(p.last_modified))
        doc.leaf("ETag", p.etag).leaf("Size", p.size)
        if p.checksum:
            doc.leaf(_ELEMENT[algo], p.checksum)
        doc.close("Part")
    _owner(doc, "Initiator", upload.owner)
    _owner(doc, "Owner", upload.owner)
    doc.leaf("StorageClass", upload.storage_class)
    _upload_checksum(doc, upload)
    doc.close("ListPartsResult")
    return ctx.xml(doc)


@operation("ListMultipartUploads")
async def list_multipart_uploads(ctx: Ctx) -> web.StreamResponse:
    url = ctx.url_encoding()
    max_uploads = _int_query(ctx, "max-uploads", 1000,
                             "Provided max-uploads not an integer or within integer range")
    q = ctx.query
    prefix, delimiter = q.get("prefix", ""), q.get("delimiter", "")
    key_marker, upload_id_marker = q.get("key-marker", ""), q.get("upload-id-marker", "")
    page = await ctx.coffre.multipart.list_uploads(
        ctx.p, ctx.b, prefix=prefix, delimiter=delimiter, key_marker=key_marker,
        upload_id_marker=upload_id_marker, max_uploads=max_uploads)
    doc = Doc("ListMultipartUploadsResult")
    doc.leaf("Bucket", ctx.b).leaf("KeyMarker", url_value(key_marker, url))
    doc.leaf("UploadIdMarker", upload_id_marker if key_marker else "")
    doc.leaf("NextKeyMarker", url_value(page.next_key_marker or "", url))
    doc.leaf("NextUploadIdMarker", page.next_upload_id_marker or "")
    if delimiter:
        doc.leaf("Delimiter", url_value(delimiter, url))
    doc.leaf("Prefix", url_value(prefix, url)).leaf("MaxUploads", max_uploads).leaf("IsTruncated", page.is_truncated)
    if url:
        doc.leaf("EncodingType", "url")
    for u in page.uploads:
        doc.open("Upload").leaf("Key", url_value(u.key, url)).leaf("UploadId", u.upload_id)
        _owner(doc, "Initiator", u.owner)
        _owner(doc, "Owner", u.owner)
        doc.leaf("StorageClass", u.storage_class).leaf("Initiated", iso8601(u.initiated))
        _upload_checksum(doc, u)
        doc.close("Upload")
    for p in page.common_prefixes:
        doc.open("CommonPrefixes").leaf("Prefix", url_value(p, url)).close("CommonPrefixes")
    doc.close("ListMultipartUploadsResult")
    return ctx.xml(doc)
