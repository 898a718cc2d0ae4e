"""Multipart uploads: create, upload parts (or copy them), complete, abort, list.

Every part is its own encrypted blob, streamed and made durable before its
metadata row commits (DESIGN.md §3). Completing an upload writes no data: one
metadata transaction turns the chosen parts into an object made of those blobs
(compare-and-set for conditional completes) and releases the parts left out.

Checksums follow AWS: an upload has one algorithm (CRC64NVME full-object when the
client named none) and each part stores its checksum in that algorithm, so the
object's checksum is either COMPOSITE (the checksum of the parts' checksums, "-N")
or FULL_OBJECT (the parts' CRCs combined as if computed over the whole object).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass

from coffre.core import checksums
from coffre.core.body import Body, Chunk, StreamBody
from coffre.core.buckets import BucketService
from coffre.core.checksums import Checksum
from coffre.core.conditions import ReadConditions
from coffre.core.errors import (
    AccessDenied,
    BadDigest,
    ConditionalRequestConflict,
    EntityTooLarge,
    EntityTooSmall,
    InvalidArgument,
    InvalidPart,
    InvalidPartOrder,
    InvalidRequest,
    MalformedXML,
    NoSuchUpload,
)
from coffre.core.identity import Principal
from coffre.core.names import check_key
from coffre.core.objectlock import LOCKED, LockRequest
from coffre.core.objects import DEFAULT_CONTENT_TYPE, Integrity, ObjectService, WriteMeta, quota_exceeded
from coffre.core.ranges import parse_copy_range
from coffre.core.sse import CustomerKey
from coffre.meta.base import MetadataStore
from coffre.meta.errors import ConditionFailed, Locked, NotFound, QuotaExceeded
from coffre.meta.records import (
    ObjectPartRecord,
    ObjectRecord,
    PartRecord,
    UploadListPage,
    UploadRecord,
)
from coffre.settings import Settings

COMPOSITE = "COMPOSITE"
FULL_OBJECT = "FULL_OBJECT"
CHECKSUM_TYPES = (COMPOSITE, FULL_OBJECT)
MAX_LIST = 1000
# The ACL asked for at CreateMultipartUpload travels with the upload's stored headers under a
# name no request header can take (stored headers are a fixed set of canonical names), and
# lands on the completed object as its ACL, never as a header.
UPLOAD_ACL = "x-coffre-acl"
# Likewise the Object Lock headers of CreateMultipartUpload (validated then, applied at completion,
# when the bucket's default retention is counted from the object's creation).
UPLOAD_LOCK_MODE = "x-coffre-lock-mode"
UPLOAD_LOCK_UNTIL = "x-coffre-lock-until"
UPLOAD_LEGAL_HOLD = "x-coffre-legal-hold"
_INTERNAL_HEADERS = frozenset({UPLOAD_ACL, UPLOAD_LOCK_MODE, UPLOAD_LOCK_UNTIL, UPLOAD_LEGAL_HOLD})


def lock_headers(req: LockRequest) -> dict[str, str]:
    """An upload's stored form of the lock a write asked for."""
    out: dict[str, str] = {}
    if req.mode is not None and req.until is not None:
        out[UPLOAD_LOCK_MODE] = req.mode
        out[UPLOAD_LOCK_UNTIL] = repr(req.until)
    if req.legal_hold is not None:
        out[UPLOAD_LEGAL_HOLD] = "ON" if req.legal_hold else "OFF"
    return out


def lock_request(headers: Mapping[str, str]) -> LockRequest:
    until = headers.get(UPLOAD_LOCK_UNTIL)
    hold = headers.get(UPLOAD_LEGAL_HOLD)
    return LockRequest(headers.get(UPLOAD_LOCK_MODE), None if until is None else float(until),
                       None if hold is None else hold == "ON")


# -- pure rules (unit-tested) --
def resolve_checksum(algorithm: str | None, checksum_type: str | None) -> tuple[str | None, str | None]:
    """Validate CreateMultipartUpload's x-amz-checksum-algorithm / -type; return (algorithm, type).

    CRC64NVME exists only as FULL_OBJECT, SHA1/SHA256 only as COMPOSITE; CRC32/CRC32C take
    either and default to COMPOSITE. (None, None) when the client asked for nothing.
    """
    algo = checksums.normalize(algorithm)
    ctype = checksum_type.upper() if checksum_type else None
    if ctype is not None and ctype not in CHECKSUM_TYPES:
        raise InvalidRequest("Value for x-amz-checksum-type header is invalid.")
    if algo is None:
        if ctype is not None:
            raise InvalidRequest("The x-amz-checksum-type header can only be used with the "
                                 "x-amz-checksum-algorithm header.")
        return None, None
    if ctype is None:
        ctype = FULL_OBJECT if algo == "CRC64NVME" else COMPOSITE
    if ctype == FULL_OBJECT and algo not in checksums.CRCS:
        raise InvalidRequest(f"The FULL_OBJECT checksum type cannot be used with the {algo.lower()} "
                             "checksum algorithm.")
    if ctype == COMPOSITE and algo == "CRC64NVME":
        raise InvalidRequest("The COMPOSITE checksum type cannot be used with the crc64nvme checksum algorithm.")
    return algo, ctype


def effective_checksum(upload: UploadRecord) -> tuple[str, str]:
    """The algorithm and type an upload's parts and object carry (AWS's default when none was asked)."""
    if upload.checksum_algorithm is None:
        return checksums.DEFAULT_ALGORITHM, FULL_OBJECT
    return upload.checksum_algorithm, upload.checksum_type or COMPOSITE


def multipart_etag(part_etags: Sequence[str]) -> str:
    """S3's multipart ETag: the MD5 of the parts' binary MD5s, suffixed with the part count."""
    md5 = hashlib.md5()  # noqa: S324 - the S3 ETag, not a security hash
    for etag in part_etags:
        md5.update(bytes.fromhex(etag.strip('"')))
    return f'"{md5.hexdigest()}-{len(part_etags)}"'


def object_checksum(algorithm: str, checksum_type: str, parts: Sequence[tuple[str, int]]) -> str:
    """The object's checksum from (base64 part checksum, part size) pairs, in part order."""
    if checksum_type == COMPOSITE:
        return checksums.composite(algorithm, [v for v, _ in parts])
    return checksums.combine_full_object(algorithm, parts)


def new_upload_id() -> str:
    # Opaque and unguessable; URL-safe so clients need not encode it.
    return secrets.token_urlsafe(48)


@dataclass(frozen=True, slots=True)
class CompletedPart:
    """One <Part> of a CompleteMultipartUpload request."""

    part_number: int
    etag: str
    checksums: Mapping[str, str]  # algorithm -> base64 value, as listed by the client


@dataclass(frozen=True, slots=True)
class CopySpec:
    bucket: str
    key: str
    version_id: str | None
    conditions: ReadConditions
    range: str | None  # x-amz-copy-source-range, verbatim
    customer: CustomerKey | None = None  # x-amz-copy-source-server-side-encryption-customer-*


@dataclass(frozen=True, slots=True)
class PartResult:
    part: PartRecord
    # The checksum to report: the algorithm the client declared for this part, else the upload's.
    checksum_algorithm: str
    checksum_value: str
    source: ObjectRecord | None = None  # UploadPartCopy's source
    upload: UploadRecord | None = None  # the upload (its encryption is the part's)


@dataclass(frozen=True, slots=True)
class PartsPage:
    upload: UploadRecord
    parts: list[PartRecord]
    is_truncated: bool
    next_marker: int


class _TeeChecksum:
    """A Body that also feeds a second checksum as it streams (the upload's own algorithm,
    when the client declared another one for this part)."""

    def __init__(self, body: Body, checksum: Checksum) -> None:
        self._body = body
        self._checksum = checksum

    async def __aiter__(self) -> AsyncIterator[Chunk]:
        async for chunk in self._body:
            self._checksum.update(chunk)
            yield chunk

    @property
    def trailers(self) -> Mapping[str, str]:
        return self._body.trailers


def check_part_number(n: int, max_parts: int) -> int:
    if not 1 <= n <= max_parts:
        raise InvalidArgument(f"Part number must be an integer between 1 and {max_parts}, inclusive",
                              name="partNumber")
    return n


class MultipartService:
    def __init__(self, settings: Settings, meta: MetadataStore, objects: ObjectService,
                 buckets: BucketService) -> None:
        self.settings = settings
        self.meta = meta
        self.objects = objects
        self.buckets = buckets

    async def _upload(self, bucket: str, key: str, upload_id: str) -> UploadRecord:
        upload = await self.meta.get_upload(bucket, upload_id)
        if upload is None or upload.key != key:
            raise NoSuchUpload(upload_id=upload_id)
        return upload

    # -- create --
    async def create_upload(self, principal: Principal, bucket_name: str, key: str, wm: WriteMeta,
                            checksum_algorithm: str | None = None,
                            checksum_type: str | None = None) -> UploadRecord:
        bucket = await self.buckets.authorize(principal, bucket_name)
        check_key(key, self.settings.max_key_length)
        self.objects.check_write_meta(wm)
        algo, ctype = resolve_checksum(checksum_algorithm, checksum_type)
        # Decided once for the upload (an SSE-C upload keeps the key's fingerprint: every part
        # must come with that same key).
        enc = await self.objects.sse.for_write(bucket, wm.sse)
        await self.objects.locks.for_write(bucket, wm.lock, time.time())  # refused now, not at completion
        headers = dict(wm.headers, **lock_headers(wm.lock))
        if wm.acl is not None:
            headers[UPLOAD_ACL] = wm.acl
        upload = UploadRecord(
            upload_id=new_upload_id(), bucket=bucket.name, key=key, tenant_id=bucket.tenant_id,
            owner=wm.owner or principal.canonical_id, initiated=time.time(),
            content_type=wm.content_type or DEFAULT_CONTENT_TYPE,
            headers=headers,
            user_meta=wm.user_meta,
            checksum_algorithm=algo, checksum_type=ctype, storage_class=wm.storage_class, tags=dict(wm.tags),
            sse=enc.record)
        await self.meta.create_upload(upload)
        return upload

    # -- parts --
    async def upload_part(self, principal: Principal, bucket_name: str, key: str, upload_id: str,
                          part_number: int, body: Body, *, content_length: int | None,
                          integrity: Integrity, customer: CustomerKey | None = None) -> PartResult:
        bucket = await self.buckets.authorize(principal, bucket_name)
        check_part_number(part_number, self.settings.max_parts)
        if content_length is not None and content_length > self.settings.max_put_size:
            # Refused from the declared length alone, before a byte of the body is read.
            raise EntityTooLarge(size=content_length, max=self.settings.max_put_size)
        upload = await self._upload(bucket.name, key, upload_id)
        algo, _ = effective_checksum(upload)
        declared = integrity.checksum_algorithm
        if declared is not None and declared != algo and upload.checksum_algorithm is not None:
            raise InvalidRequest(f"Checksum Type mismatch occurred, expected checksum Type: {algo.lower()}, "
                                 f"actual checksum Type: {declared.lower()}")
        # The blob writer computes (and verifies) the declared algorithm; when the client declared
        # another one than the upload's default, the upload's is computed alongside.
        extra = Checksum(algo) if declared is not None and declared != algo else None
        stream: Body = _TeeChecksum(body, extra) if extra is not None else body
        enc = await self.objects.sse.for_part(upload, customer)
        stored = await self.objects.store(bucket.tenant_id, stream, content_length=content_length,
                                          integrity=integrity, max_size=self.settings.max_put_size, layer=enc.layer,
                                          default_checksum=algo)
        assert stored.checksum is not None
        part_checksum = extra.b64() if extra is not None else stored.checksum.b64()
        part = PartRecord(upload_id=upload.upload_id, part_number=part_number, size=stored.size,
                          etag=enc.etag(stored.md5), blob_id=stored.blob_id, dek=stored.dek,
                          last_modified=time.time(), checksum=part_checksum)
        await self._commit_part(part)
        return PartResult(part, stored.checksum.algorithm, stored.checksum.b64(), upload=upload)

    async def _commit_part(self, part: PartRecord) -> None:
        try:
            released = await self.meta.put_part(part)
        except NotFound as e:
            # Aborted or completed while the part streamed: its blob must not outlive the answer.
            await self.objects.blobio.blobs.delete(part.blob_id)
            raise NoSuchUpload(upload_id=part.upload_id) from e
        except BaseException:
            await self.objects.blobio.blobs.delete(part.blob_id)
            raise
        await self.objects.release(released)

    async def upload_part_copy(self, principal: Principal, bucket_name: str, key: str, upload_id: str,
                               part_number: int, source: CopySpec,
                               customer: CustomerKey | None = None) -> PartResult:
        bucket = await self.buckets.authorize(principal, bucket_name)
        check_part_number(part_number, self.settings.max_parts)
        upload = await self._upload(bucket.name, key, upload_id)
        src = await self.objects.copy_source(principal, source.bucket, source.key, source.version_id)
        source.conditions.check(src.etag, src.last_modified, copy_source=True)
        src_layer = await self.objects.sse.for_read(src.tenant_id, src.sse, source.customer)
        enc = await self.objects.sse.for_part(upload, customer)
        if source.range is not None:
            start, end = parse_copy_range(source.range, src.size)
        else:
            start, end = 0, src.size
        if end - start > self.settings.max_put_size:
            raise InvalidRequest("The specified copy source is larger than the maximum allowable size for a "
                                 f"copy source: {self.settings.max_put_size}")
        algo, _ = effective_checksum(upload)
        # Decrypt the source range and re-encrypt it under a fresh data key: blobs are never shared.
        stored = await self.objects.store(bucket.tenant_id,
                                          StreamBody(self.objects.open(src, start, end, src_layer)),
                                          content_length=end - start, integrity=Integrity(),
                                          max_size=self.settings.max_put_size, default_checksum=algo,
                                          layer=enc.layer)
        assert stored.checksum is not None
        part = PartRecord(upload_id=upload.upload_id, part_number=part_number, size=stored.size,
                          etag=enc.etag(stored.md5), blob_id=stored.blob_id, dek=stored.dek,
                          last_modified=time.time(), checksum=stored.checksum.b64())
        await self._commit_part(part)
        return PartResult(part, algo, stored.checksum.b64(), src, upload)

    # -- complete --
    async def complete_upload(self, principal: Principal, bucket_name: str, key: str, upload_id: str,
                              listed: Sequence[CompletedPart], *, if_match: str | None = None,
                              if_none_match: str | None = None, checksum_type: str | None = None,
                              whole_checksum: tuple[str, str] | None = None,
                              mpu_object_size: int | None = None,
                              customer: CustomerKey | None = None) -> ObjectRecord:
        bucket = await self.buckets.authorize(principal, bucket_name)
        upload = await self._upload(bucket.name, key, upload_id)
        await self.objects.sse.check_complete(upload, customer)
        condition = await self.objects.precheck_write(bucket.name, key, if_match, if_none_match)
        if not listed:
            raise MalformedXML()
        previous = 0
        for cp in listed:
            if cp.part_number <= previous:
                raise InvalidPartOrder(upload_id=upload_id)
            previous = cp.part_number
        algo, ctype = effective_checksum(upload)
        if checksum_type is not None and checksum_type.upper() != ctype:
            raise BadDigest(f"The upload was created using the {ctype} checksum mode. The complete request "
                            f"must use the same checksum mode.")
        stored = {p.part_number: p for p in await self.meta.list_parts(upload.upload_id, 0, self.settings.max_parts)}
        chosen: list[PartRecord] = []
        for cp in listed:
            part = stored.get(cp.part_number)
            if part is None or cp.etag.strip().strip('"') != part.etag.strip('"'):
                raise InvalidPart(upload_id=upload_id, part_number=cp.part_number)
            self._check_listed_checksum(upload, algo, ctype, cp, part)
            chosen.append(part)
        for part in chosen[:-1]:
            if part.size < self.settings.min_part_size:
                raise EntityTooSmall(size=part.size, part_number=part.part_number)
        total = sum(p.size for p in chosen)
        if total > self.settings.max_object_size:
            raise EntityTooLarge(size=total, max=self.settings.max_object_size)
        if mpu_object_size is not None and mpu_object_size != total:
            raise InvalidRequest(f"The provided 'x-amz-mp-object-size' header value {mpu_object_size} does not "
                                 f"match what was computed: {total}")
        value: str | None = None
        if all(p.checksum for p in chosen):
            value = object_checksum(algo, ctype, [(p.checksum or "", p.size) for p in chosen])
        if whole_checksum is not None:
            self._check_whole(algo, whole_checksum, value)
        created = time.time()
        lock = await self.objects.locks.for_write(bucket, lock_request(upload.headers), created, completing=True)
        obj = ObjectRecord(
            bucket=bucket.name, key=key, version_id=self.objects.version_for(bucket), size=total,
            etag=multipart_etag([p.etag for p in chosen]), last_modified=created, tenant_id=bucket.tenant_id,
            sse=upload.sse,
            lock_mode=lock.mode, lock_until=lock.until, legal_hold=lock.legal_hold,
            owner=upload.owner, content_type=upload.content_type,
            headers={k: v for k, v in upload.headers.items() if k not in _INTERNAL_HEADERS},
            acl=upload.headers.get(UPLOAD_ACL),
            user_meta=upload.user_meta, checksum_algorithm=algo if value else None, checksum_value=value,
            checksum_type=ctype if value else None, blob_id=None, dek=None, parts_count=len(chosen),
            storage_class=upload.storage_class, tags=dict(upload.tags),
            parts=tuple(ObjectPartRecord(part_number=p.part_number, size=p.size, etag=p.etag, blob_id=p.blob_id,
                                         dek=p.dek, checksum=p.checksum) for p in chosen))
        try:
            released = await self.meta.complete_upload(upload.upload_id, obj, obj.parts, condition)
        except NotFound as e:
            raise NoSuchUpload(upload_id=upload_id) from e
        except ConditionFailed as e:
            if condition is None:
                # No condition was asked: a part listed was replaced by a concurrent UploadPart.
                raise InvalidPart(upload_id=upload_id) from e
            raise ConditionalRequestConflict() from e
        except QuotaExceeded as e:  # the upload stays: the client may abort it or free space and retry
            raise quota_exceeded(e) from e
        except Locked as e:  # the "null" version it would replace is under Object Lock
            raise AccessDenied(LOCKED) from e
        await self.objects.release(released)
        return obj

    @staticmethod
    def _check_listed_checksum(upload: UploadRecord, algo: str, ctype: str, cp: CompletedPart,
                               part: PartRecord) -> None:
        for name, value in cp.checksums.items():
            if name != algo:
                if upload.checksum_algorithm is not None:
                    raise InvalidPart(f"The upload was created using a {algo.lower()} checksum. The complete "
                                      f"request must not include a {name.lower()} checksum.",
                                      part_number=cp.part_number)
                continue  # a default upload keeps only its own algorithm; nothing to compare with
            if value != part.checksum:
                raise InvalidPart(part_number=cp.part_number)
        if upload.checksum_algorithm is not None and ctype == COMPOSITE and algo not in cp.checksums:
            raise InvalidRequest(f"The upload was created using a {algo.lower()} checksum. The complete request "
                                 f"must include the checksum for each part. It was missing for part "
                                 f"{cp.part_number} in the request.")

    @staticmethod
    def _check_whole(algo: str, whole: tuple[str, str], computed: str | None) -> None:
        name, value = whole
        if name != algo:
            raise BadDigest(f"The upload was created using a {algo.lower()} checksum; the complete request "
                            f"sent a {name.lower()} checksum.")
        want = value.strip()
        got = computed or ""
        # A COMPOSITE value may be given with or without its "-N" suffix.
        if want != got and want != got.split("-", 1)[0]:
            raise BadDigest(f"The {algo.lower()} you specified did not match the calculated checksum.")

    # -- abort --
    async def abort_upload(self, principal: Principal, bucket_name: str, key: str, upload_id: str) -> None:
        bucket = await self.buckets.authorize(principal, bucket_name)
        upload = await self._upload(bucket.name, key, upload_id)
        try:
            released = await self.meta.abort_upload(upload.upload_id)
        except NotFound as e:
            raise NoSuchUpload(upload_id=upload_id) from e
        await self.objects.release(released)

    # -- listings --
    async def list_parts(self, principal: Principal, bucket_name: str, key: str, upload_id: str, *,
                         part_number_marker: int = 0, max_parts: int = MAX_LIST) -> PartsPage:
        bucket = await self.buckets.authorize(principal, bucket_name)
        upload = await self._upload(bucket.name, key, upload_id)
        if max_parts < 0:
            raise InvalidArgument("Argument max-parts must be an integer between 0 and 2147483647",
                                  name="max-parts")
        if part_number_marker < 0:
            raise InvalidArgument("Argument part-number-marker must be an integer between 0 and 2147483647",
                                  name="part-number-marker")
        limit = min(max_parts, MAX_LIST)
        parts = await self.meta.list_parts(upload.upload_id, part_number_marker, limit + 1)
        truncated = len(parts) > limit
        parts = parts[:limit]
        next_marker = parts[-1].part_number if parts else 0
        return PartsPage(upload, parts, truncated, next_marker)

    async def list_uploads(self, principal: Principal, bucket_name: str, *, prefix: str = "",
                           delimiter: str = "", key_marker: str = "", upload_id_marker: str = "",
                           max_uploads: int = MAX_LIST) -> UploadListPage:
        bucket = await self.buckets.authorize(principal, bucket_name)
        if max_uploads < 0:
            raise InvalidArgument("Argument max-uploads must be an integer between 0 and 2147483647",
                                  name="max-uploads")
        # The upload-id marker means something only next to a key marker (as on S3).
        return await self.meta.list_uploads(bucket.name, prefix=prefix, delimiter=delimiter, key_marker=key_marker,
                                            upload_id_marker=upload_id_marker if key_marker else "",
                                            max_uploads=min(max_uploads, MAX_LIST))

