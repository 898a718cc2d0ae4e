"""Objects: the write path, reads, deletes.

The write path (DESIGN.md §3): stream the body into a new encrypted blob,
make it durable, commit the metadata in one transaction (compare-and-set for
conditional writes), then acknowledge. Blobs released by the commit are
deleted after it; a crash in between leaves them queued for the collector.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field

from coffre.core import checksums
from coffre.core.blobio import BlobIO, KeyLayer, StoredBlob
from coffre.core.body import Body, StreamBody
from coffre.core.buckets import BucketService
from coffre.core.checksums import Checksum
from coffre.core.conditions import ReadConditions, etag_matches
from coffre.core.errors import (
    AccessDenied,
    BadDigest,
    CoffreError,
    ConditionalRequestConflict,
    EntityTooLarge,
    InvalidArgument,
    InvalidDigest,
    InvalidRequest,
    MetadataTooLarge,
    MethodNotAllowed,
    NoSuchKey,
    NoSuchVersion,
    NotImplementedOperation,
    PreconditionFailed,
    QuotaExceeded,
)
from coffre.core.identity import Principal
from coffre.core.names import check_key
from coffre.core.objectlock import LOCKED, LockRequest, ObjectLockService
from coffre.core.sse import CustomerKey, SseRequest, SseService
from coffre.core.tagging import MAX_OBJECT_TAGS, check_tags, copy_tags
from coffre.core.versioning import ENABLED, check_version_id, new_version_id, well_formed
from coffre.meta.base import MetadataStore
from coffre.meta.errors import ConditionFailed, Locked
from coffre.meta.errors import QuotaExceeded as MetaQuotaExceeded
from coffre.meta.records import NULL_VERSION, BucketRecord, ObjectRecord, WriteCondition
from coffre.settings import Settings


def quota_exceeded(e: MetaQuotaExceeded) -> QuotaExceeded:
    """The domain error for a write the store refused: which quota, and its limit (never
    the usage or the tenant's id, which a writer from another tenant must not learn)."""
    unit = "bytes" if e.limit == "bytes" else "objects"
    return QuotaExceeded(f"The {e.scope} quota of {e.maximum} {unit} would be exceeded by this write.",
                         scope=e.scope, limit=e.limit, maximum=e.maximum)


# System headers stored with an object and returned on GET/HEAD, canonical case.
STORED_HEADERS = ("Cache-Control", "Content-Disposition", "Content-Encoding", "Content-Language", "Expires")
DEFAULT_CONTENT_TYPE = "binary/octet-stream"


@dataclass(slots=True)
class WriteMeta:
    """What a client sets about an object when writing it."""

    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    user_meta: dict[str, str] = field(default_factory=dict)
    storage_class: str = "STANDARD"
    tags: dict[str, str] = field(default_factory=dict)  # x-amz-tagging, checked by check_write_meta
    sse: SseRequest | None = None  # x-amz-server-side-encryption* (None: none given; the bucket default)
    # Decided by the access layer (S3 Object Ownership, requested ACL): the owning tenant's
    # canonical id (None: the writer's) and the stored ACL (None: the owner's full control).
    owner: str | None = None
    acl: str | None = None
    lock: LockRequest = field(default_factory=LockRequest)  # x-amz-object-lock-* (Object Lock)


@dataclass(slots=True)
class Integrity:
    """Digests a client sent with a payload."""

    content_md5: str | None = None  # base64, from Content-MD5
    checksum_algorithm: str | None = None  # normalised algorithm name
    checksum_value: str | None = None  # base64 from a header; None if none or in a trailer
    checksum_in_trailer: bool = False


def metadata_size(user_meta: Mapping[str, str]) -> int:
    """Bytes of user metadata as AWS counts them: UTF-8 names (without x-amz-meta-) plus values."""
    return sum(len(k.encode("utf-8", "surrogateescape")) + len(v.encode("utf-8", "surrogateescape"))
               for k, v in user_meta.items())


COPY_TO_ITSELF = ("This copy request is illegal because it is trying to copy an object to itself without "
                  "changing the object's metadata, storage class, website redirect location or encryption "
                  "attributes.")
METADATA_DIRECTIVES = ("COPY", "REPLACE")


@dataclass(frozen=True, slots=True)
class CopyRequest:
    """What a CopyObject asks for, beyond the source and destination names."""

    directive: str = "COPY"  # COPY: metadata from the source; REPLACE: from ``wm``
    wm: WriteMeta = field(default_factory=WriteMeta)
    storage_class_given: bool = False
    checksum_algorithm: str | None = None  # x-amz-checksum-algorithm; None keeps the source's
    # The request changes something AWS counts as a change for a copy onto itself
    # (x-amz-server-side-encryption or x-amz-website-redirect-location given).
    other_changes: bool = False
    if_match: str | None = None
    if_none_match: str | None = None
    tagging_directive: str = "COPY"  # COPY: the source's tags; REPLACE: ``wm.tags``
    source_customer: CustomerKey | None = None  # x-amz-copy-source-server-side-encryption-customer-*


@dataclass(frozen=True, slots=True)
class Deleted:
    """What a delete did.

    ``version_id``: the version removed for good (a delete naming one), or the delete
    marker created (a simple delete in a versioning-enabled or suspended bucket); None
    for a simple delete in an unversioned bucket. ``delete_marker``: a marker was
    created, or the version removed was one.
    """

    version_id: str | None = None
    delete_marker: bool = False


@dataclass(frozen=True, slots=True)
class DeleteOutcome:
    """One key of a DeleteObjects request: deleted (error None) or the error it met."""

    key: str
    version_id: str | None
    error: CoffreError | None = None
    deleted: Deleted = field(default_factory=Deleted)


def check_digests(md5: bytes, checksum: Checksum | None, integrity: Integrity,
                  trailers: Mapping[str, str]) -> None:
    """Compare what a client declared about a payload with what was received (BadDigest...)."""
    if integrity.content_md5 is not None:
        try:
            want = base64.b64decode(integrity.content_md5, validate=True)
        except (binascii.Error, ValueError) as e:
            raise InvalidDigest() from e
        if len(want) != 16:
            raise InvalidDigest()
        if want != md5:
            raise BadDigest()
    algo = integrity.checksum_algorithm
    if algo is None or checksum is None:
        return
    value = integrity.checksum_value
    if value is None and integrity.checksum_in_trailer:
        value = trailers.get(checksums.header_name(algo))
        if value is None:
            raise InvalidRequest(f"The trailer {checksums.header_name(algo)} was declared but not sent.")
    if value is None:
        return
    checksums.validate_value(algo, value)
    if value != checksum.b64():
        raise BadDigest(f"The {algo} you specified did not match the calculated checksum.")


def _blob_spans(obj: ObjectRecord, start: int, end: int | None) -> Iterator[tuple[str, bytes, int, int, int]]:
    """The blobs holding plaintext [start, end) of ``obj`` (which carries its parts if multipart),
    in order: (blob id, wrapped data key, blob size, start and end within that blob)."""
    end = obj.size if end is None else end
    if obj.blob_id is not None:
        assert obj.dek is not None
        yield obj.blob_id, obj.dek, obj.size, start, end
        return
    pos = 0
    for part in obj.parts:
        p_start, p_end = pos, pos + part.size
        pos = p_end
        if p_end <= start or p_start >= end:
            continue
        yield part.blob_id, part.dek, part.size, max(start, p_start) - p_start, min(end, p_end) - p_start


class ObjectService:
    def __init__(self, settings: Settings, meta: MetadataStore, blobio: BlobIO, buckets: BucketService) -> None:
        self.settings = settings
        self.meta = meta
        self.blobio = blobio
        self.buckets = buckets
        self.sse = SseService(settings, meta, blobio.keyring)
        self.locks = ObjectLockService(meta, buckets)

    # -- helpers shared by writers (also used by multipart and copy) --
    def check_put_size(self, content_length: int | None) -> None:
        """A single PUT (or part) announcing more than max_put_size bytes is refused up front."""
        if content_length is not None and content_length > self.settings.max_put_size:
            raise EntityTooLarge(size=content_length, max=self.settings.max_put_size)

    def check_write_meta(self, wm: WriteMeta) -> None:
        if metadata_size(wm.user_meta) > self.settings.max_user_metadata:
            raise MetadataTooLarge(size=metadata_size(wm.user_meta), max=self.settings.max_user_metadata)
        check_tags(wm.tags.items(), MAX_OBJECT_TAGS)

    @staticmethod
    def new_checksum(integrity: Integrity, default: str | None = checksums.DEFAULT_ALGORITHM) -> Checksum | None:
        algo = integrity.checksum_algorithm or default
        return Checksum(algo) if algo else None

    @staticmethod
    def verify(stored: StoredBlob, integrity: Integrity, trailers: Mapping[str, str]) -> None:
        """Compare what the client declared with what was received; raise before any commit."""
        check_digests(stored.md5, stored.checksum, integrity, trailers)

    async def store(self, tenant_id: str, body: Body, *, content_length: int | None,
                    integrity: Integrity, max_size: int | None = None,
                    default_checksum: str | None = checksums.DEFAULT_ALGORITHM,
                    layer: KeyLayer | None = None) -> StoredBlob:
        """Stream and verify a payload into a durable blob (not yet referenced by anything),
        encrypted for ``tenant_id``: the bucket's tenant, whoever writes (``layer``: the inner
        SSE-C / SSE-KMS wrap of its data key)."""
        stored = await self.blobio.write(
            tenant_id, body, max_size=max_size or self.settings.max_put_size,
            expected_size=content_length, checksum=self.new_checksum(integrity, default_checksum), layer=layer)
        try:
            self.verify(stored, integrity, body.trailers)
        except BaseException:
            await self.blobio.blobs.delete(stored.blob_id)
            raise
        return stored

    async def release(self, blob_ids: list[str]) -> None:
        """Blobs a durable commit no longer references (the commit queued them for collection).

        They are kept for ``gc_release_delay_seconds`` (DESIGN.md §3.5): a GET or a copy
        already streaming the replaced version, part after part, must be able to finish.
        With no delay they are deleted now.
        """
        if not blob_ids or self.settings.gc_release_delay_seconds > 0:
            return
        for b in blob_ids:
            await self.blobio.blobs.delete(b)
        await self.meta.garbage_done(blob_ids)

    async def commit(self, obj: ObjectRecord, condition: WriteCondition | None,
                     new_blobs: list[str]) -> None:
        """Commit a version; on failure drop the new blobs. Releases replaced blobs on success."""
        try:
            released = await self.meta.put_object(obj, condition)
        except ConditionFailed as e:
            await self._drop(new_blobs)
            # The precondition held when the request started; a concurrent write changed it.
            raise ConditionalRequestConflict() from e
        except MetaQuotaExceeded as e:
            await self._drop(new_blobs)
            raise quota_exceeded(e) from e
        except Locked as e:
            # The version of the same id ("null") is under Object Lock: it is never replaced.
            await self._drop(new_blobs)
            raise AccessDenied(LOCKED) from e
        except BaseException:
            await self._drop(new_blobs)
            raise
        await self.release(released)

    async def _drop(self, blob_ids: list[str]) -> None:
        for b in blob_ids:
            await self.blobio.blobs.delete(b)

    async def precheck_write(self, bucket: str, key: str, if_match: str | None,
                             if_none_match: str | None) -> WriteCondition | None:
        """Evaluate a conditional write before accepting the body (412 / 404 early)."""
        if if_match is None and if_none_match is None:
            return None
        if if_none_match is not None and if_none_match.strip() != "*":
            raise NotImplementedOperation("If-None-Match on writes supports only '*'", header="If-None-Match")
        current = await self.meta.get_object(bucket, key)
        exists = current is not None and not current.is_delete_marker
        if if_none_match is not None and exists:
            raise PreconditionFailed(condition="If-None-Match")
        if if_match is not None:
            if not exists:
                raise NoSuchKey(key=key)
            assert current is not None
            if not etag_matches(if_match, current.etag):
                raise PreconditionFailed(condition="If-Match")
            return WriteCondition(if_match=current.etag, if_none_match_any=if_none_match is not None)
        return WriteCondition(if_none_match_any=True)

    @staticmethod
    def version_for(bucket: BucketRecord) -> str:
        """The version id a write creates: a new one when versioning is enabled, else "null".

        A "null" write replaces the stored "null" version (and only it): that is how an
        unversioned bucket overwrites and how a suspended one keeps older versions."""
        return new_version_id() if bucket.versioning == ENABLED else NULL_VERSION

    # -- operations --
    async def put_object(self, principal: Principal, bucket_name: str, key: str, body: Body, *,
                         content_length: int | None, wm: WriteMeta, integrity: Integrity,
                         if_match: str | None = None, if_none_match: str | None = None) -> ObjectRecord:
        bucket = await self.buckets.authorize(principal, bucket_name)
        check_key(key, self.settings.max_key_length)
        # Refused from the declared length alone, before a byte of the body is read.
        self.check_put_size(content_length)
        self.check_write_meta(wm)
        lock = await self.locks.for_write(bucket, wm.lock, time.time(),
                                          has_digest=bool(integrity.content_md5 or integrity.checksum_algorithm))
        condition = await self.precheck_write(bucket.name, key, if_match, if_none_match)
        enc = await self.sse.for_write(bucket, wm.sse)
        stored = await self.store(bucket.tenant_id, body, content_length=content_length, integrity=integrity,
                                  layer=enc.layer)
        assert stored.checksum is not None
        created = time.time()
        lock = lock.at_creation(created)
        obj = ObjectRecord(
            bucket=bucket.name, key=key, version_id=self.version_for(bucket), size=stored.size,
            etag=enc.etag(stored.md5), last_modified=created, tenant_id=bucket.tenant_id, sse=enc.record,
            owner=wm.owner or principal.canonical_id, acl=wm.acl, content_type=wm.content_type or DEFAULT_CONTENT_TYPE,
            headers=wm.headers, user_meta=wm.user_meta, checksum_algorithm=stored.checksum.algorithm,
            checksum_value=stored.checksum.b64(), checksum_type="FULL_OBJECT", blob_id=stored.blob_id,
            dek=stored.dek, storage_class=wm.storage_class, tags=dict(wm.tags),
            lock_mode=lock.mode, lock_until=lock.until, legal_hold=lock.legal_hold)
        await self.commit(obj, condition, [stored.blob_id])
        return obj

    async def head_object(self, principal: Principal, bucket_name: str, key: str,
                          version_id: str | None = None, with_parts: bool = False) -> ObjectRecord:
        """The latest version or the one named (see locate)."""
        return (await self.locate(principal, bucket_name, key, version_id, with_parts))[0]

    async def locate(self, principal: Principal, bucket_name: str, key: str, version_id: str | None = None,
                     with_parts: bool = False) -> tuple[ObjectRecord, BucketRecord]:
        """The latest version or the one named, and its bucket (whose versioning state decides
        whether a "null" version id is shown: it is in a bucket that has ever been versioned).

        A delete marker answers as AWS does: NoSuchKey when it is the latest version,
        MethodNotAllowed when named by its id. Both errors carry ``delete_marker=True`` and
        ``marker_version_id`` for the protocol layer's x-amz-delete-marker / x-amz-version-id.
        """
        bucket = await self.buckets.authorize(principal, bucket_name)
        check_version_id(version_id)
        obj = await self.meta.get_object(bucket.name, key, version_id, with_parts=with_parts)
        if obj is None:
            if version_id is not None:
                raise NoSuchVersion(key=key, version_id=version_id)
            raise NoSuchKey(key=key)
        if obj.is_delete_marker:
            if version_id is not None:
                raise MethodNotAllowed(resource_type="DeleteMarker", delete_marker=True,
                                       marker_version_id=obj.version_id, last_modified=obj.last_modified)
            raise NoSuchKey(key=key, delete_marker=True, marker_version_id=obj.version_id,
                            last_modified=obj.last_modified)
        return obj, bucket

    async def copy_source(self, principal: Principal, bucket_name: str, key: str,
                          version_id: str | None) -> ObjectRecord:
        """The source of a copy (with its parts): a delete marker named by id is InvalidRequest."""
        try:
            return await self.head_object(principal, bucket_name, key, version_id, with_parts=True)
        except MethodNotAllowed as e:
            raise InvalidRequest("The source of a copy request may not specifically refer to a delete marker "
                                 "by version id.") from e

    async def open(self, obj: ObjectRecord, start: int = 0, end: int | None = None,
                   layer: KeyLayer | None = None) -> AsyncIterator[bytearray | memoryview]:
        """Plaintext of ``obj`` over [start, end); ``obj`` must carry its parts if multipart.
        ``layer``: the inner wrap of its data keys (SseService.for_read), None for SSE-S3.

        Every chunk is a buffer of its own (never reused), so a caller may keep it."""
        for blob_id, dek, size, b_start, b_end in _blob_spans(obj, start, end):
            async for chunk in self.blobio.read(obj.tenant_id, blob_id, dek, size, b_start, b_end, layer):
                yield chunk

    async def read_span(self, obj: ObjectRecord, start: int = 0, end: int | None = None,
                        layer: KeyLayer | None = None) -> bytes | bytearray:
        """``open``'s plaintext in one buffer, for a small span (BlobIO.read_span): a small GET."""
        pieces = [await self.blobio.read_span(obj.tenant_id, blob_id, dek, size, b_start, b_end, layer)
                  for blob_id, dek, size, b_start, b_end in _blob_spans(obj, start, end)]
        if len(pieces) == 1 and not isinstance(pieces[0], memoryview):
            return pieces[0]  # usually: one blob's decrypted buffer, sent as it is
        return b"".join(pieces)

    async def delete_object(self, principal: Principal, bucket_name: str, key: str,
                            version_id: str | None = None, *, bypass_governance: bool = False) -> Deleted:
        """Remove a key or one version; succeeds whether or not it existed (S3 answers 204).

        ``bypass_governance``: the request asked to bypass GOVERNANCE retention and the
        caller holds s3:BypassGovernanceRetention (the protocol layer decided)."""
        bucket = await self.buckets.authorize(principal, bucket_name)
        check_version_id(version_id)
        return await self._delete(principal, bucket, key, version_id, bypass_governance)

    async def _delete(self, principal: Principal, bucket: BucketRecord, key: str,
                      version_id: str | None, bypass_governance: bool = False) -> Deleted:
        if version_id is not None:
            # A version named is removed for good; removing the latest delete marker
            # brings the newest remaining version back. Object Lock is enforced by the
            # store inside the deleting transaction (a locked version raises Locked).
            try:
                removed, released = await self.meta.delete_version(bucket.name, key, version_id,
                                                                   bypass_governance=bypass_governance)
            except Locked as e:
                raise AccessDenied(LOCKED) from e
            await self.release(released)
            return Deleted(version_id, removed is not None and removed.is_delete_marker)
        if not bucket.versioning:
            try:
                released = await self.meta.delete_object(bucket.name, key, NULL_VERSION,
                                                         bypass_governance=bypass_governance)
            except Locked as e:
                raise AccessDenied(LOCKED) from e
            await self.release(released)
            return Deleted()
        # Enabled: a new delete marker hides every version. Suspended: the marker is the
        # "null" version, so it replaces (removes the data of) the stored null version only.
        marker = ObjectRecord(
            bucket=bucket.name, key=key, version_id=self.version_for(bucket), size=0, etag="",
            last_modified=time.time(), tenant_id=bucket.tenant_id, owner=principal.canonical_id,
            is_delete_marker=True)
        await self.commit(marker, None, [])
        return Deleted(marker.version_id, True)

    async def delete_objects(self, principal: Principal, bucket_name: str,
                             items: list[tuple[str, str | None]],
                             bypass_governance: list[bool] | None = None) -> list[DeleteOutcome]:
        """DeleteObjects: each (key, version id) is deleted on its own; failures are reported per key.

        The bucket is checked once (a missing bucket fails the whole request); the count
        limit is the protocol layer's (it answers MalformedXML before calling here).
        """
        bucket = await self.buckets.authorize(principal, bucket_name)
        out: list[DeleteOutcome] = []
        for i, (key, version_id) in enumerate(items):
            try:
                if version_id == "":
                    check_version_id(version_id)
                elif version_id is not None and not well_formed(version_id):
                    # Unlike DeleteObject, AWS reports a malformed id here as a missing version.
                    raise NoSuchVersion(key=key, version_id=version_id)
                deleted = await self._delete(principal, bucket, key, version_id,
                                             bool(bypass_governance and bypass_governance[i]))
            except CoffreError as e:
                out.append(DeleteOutcome(key, version_id, e))
            else:
                out.append(DeleteOutcome(key, version_id, deleted=deleted))
        return out

    async def copy_object(self, principal: Principal, src_bucket: str, src_key: str, src_version: str | None,
                          src_conditions: ReadConditions, dst_bucket: str, dst_key: str,
                          req: CopyRequest) -> tuple[ObjectRecord, ObjectRecord]:
        """CopyObject: (new object, source object).

        The source plaintext streams through a new data key into a new blob (a copy never
        shares ciphertext, so destroying one never touches the other). The checksum keeps
        the source's algorithm unless the request names one, and is computed on the bytes
        actually copied.
        """
        bucket = await self.buckets.authorize(principal, dst_bucket)
        check_key(dst_key, self.settings.max_key_length)
        if req.directive not in METADATA_DIRECTIVES:
            raise InvalidArgument("Unknown metadata directive.", name="x-amz-metadata-directive",
                                  value=req.directive)
        src = await self.copy_source(principal, src_bucket, src_key, src_version)
        src_conditions.check(src.etag, src.last_modified, copy_source=True)
        src_layer = await self.sse.for_read(src.tenant_id, src.sse, req.source_customer)
        algo = req.checksum_algorithm or src.checksum_algorithm or checksums.DEFAULT_ALGORITHM
        same_key = src.bucket == bucket.name and src.key == dst_key and src.is_latest
        if same_key and req.directive == "COPY" and not req.other_changes \
                and (not req.storage_class_given or req.wm.storage_class == src.storage_class) \
                and (req.checksum_algorithm is None or req.checksum_algorithm == src.checksum_algorithm):
            raise InvalidRequest(COPY_TO_ITSELF)
        if src.size > self.settings.max_put_size:
            raise InvalidRequest("The specified copy source is larger than the maximum allowable size for a "
                                 f"copy source: {self.settings.max_put_size}")
        if req.directive == "REPLACE":
            content_type = req.wm.content_type or DEFAULT_CONTENT_TYPE
            headers, user_meta = dict(req.wm.headers), dict(req.wm.user_meta)
        else:
            content_type, headers, user_meta = src.content_type, dict(src.headers), dict(src.user_meta)
        tags = copy_tags(req.tagging_directive, src.tags, req.wm.tags)
        self.check_write_meta(WriteMeta(content_type, headers, user_meta, tags=tags))
        # The source's lock is not copied: the copy gets the request's, else the bucket's default.
        lock = await self.locks.for_write(bucket, req.wm.lock, time.time())
        condition = await self.precheck_write(bucket.name, dst_key, req.if_match, req.if_none_match)
        # The destination is encrypted as the request (or the bucket default) says, never as the source.
        enc = await self.sse.for_write(bucket, req.wm.sse)
        stored = await self.store(bucket.tenant_id, StreamBody(self.open(src, layer=src_layer)),
                                  content_length=src.size, integrity=Integrity(checksum_algorithm=algo),
                                  layer=enc.layer)
        assert stored.checksum is not None
        created = time.time()
        lock = lock.at_creation(created)
        obj = ObjectRecord(
            bucket=bucket.name, key=dst_key, version_id=self.version_for(bucket), size=stored.size,
            etag=enc.etag(stored.md5), last_modified=created, tenant_id=bucket.tenant_id, sse=enc.record,
            lock_mode=lock.mode, lock_until=lock.until, legal_hold=lock.legal_hold,
            owner=req.wm.owner or principal.canonical_id, acl=req.wm.acl, content_type=content_type,
            headers=headers, user_meta=user_meta,
            checksum_algorithm=stored.checksum.algorithm, checksum_value=stored.checksum.b64(),
            checksum_type="FULL_OBJECT", blob_id=stored.blob_id, dek=stored.dek,
            storage_class=req.wm.storage_class if req.storage_class_given else "STANDARD", tags=tags)
        await self.commit(obj, condition, [stored.blob_id])
        return obj, src

