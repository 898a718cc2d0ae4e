"""Server-side encryption as S3 names it: SSE-S3, SSE-KMS and SSE-C.

Every blob is encrypted under its own data key whatever the request says, and that data key
is always wrapped by the tenant key last (coffre.core.keyring): destroying the tenant key
erases everything of the tenant. What the SSE headers choose is an *inner* wrap of the data
key, applied before the tenant key's:

- SSE-S3 (``AES256``, and no header at all): no inner wrap.
- SSE-KMS (``aws:kms``): an inner wrap under a key derived from one of the tenant's KMS keys
  (random keys wrapped by the root key: the default one, made on first use, and those created
  through the admin API), with the SHA-256 of the encryption context bound as associated data.
- SSE-C: an inner wrap under a key derived (HKDF, the blob id as info) from the customer's
  key, which is never stored. Without that key nobody, the operator included, can open the
  data key. A salted HMAC of the key, keyed by a deployment secret, is stored so that a wrong
  key is refused with AWS's error before any byte is read.

Header parsing lives here (not in s3/) because it is where AWS's rules are: which header
combinations are valid and which error each mistake gets.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from coffre.core.blobio import KeyLayer
from coffre.core.errors import (
    AccessDenied,
    InvalidArgument,
    InvalidRequest,
    KMSDisabled,
    KMSNotFound,
    NoSuchBucket,
)
from coffre.core.keyring import Keyring
from coffre.crypto.keys import new_key, unwrap_with, wrap_with
from coffre.meta.base import MetadataStore
from coffre.meta.errors import AlreadyExists, NotFound
from coffre.meta.records import BucketRecord, KmsKeyRecord, SseRecord, UploadRecord
from coffre.settings import Settings

SSE_S3 = "AES256"
SSE_KMS = "aws:kms"
SSE_C = "SSE-C"
ALGORITHMS = (SSE_S3, SSE_KMS)
CUSTOMER_ALGORITHM = "AES256"
# The AWS-managed key alias: here, the tenant's default key.
DEFAULT_ALIAS = "alias/aws/s3"
ENABLED, DISABLED = "Enabled", "Disabled"

H_SSE = "x-amz-server-side-encryption"
H_KMS_KEY = "x-amz-server-side-encryption-aws-kms-key-id"
H_CONTEXT = "x-amz-server-side-encryption-context"
H_BUCKET_KEY = "x-amz-server-side-encryption-bucket-key-enabled"
CUSTOMER_PREFIX = "x-amz-server-side-encryption-customer-"
COPY_SOURCE_CUSTOMER_PREFIX = "x-amz-copy-source-server-side-encryption-customer-"

_SALT = 16
_MAX_CONTEXT = 4096  # bytes of base64: AWS bounds the header, so do we (before decoding)
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# Default key ids are UUIDv5 of the tenant id in this namespace: stable, nothing to store.
_DEFAULT_KEY_NS = uuid.UUID("6c0ff4e0-5e5e-4c0d-9b1e-4b4d53000001")
FINGERPRINT_SECRET = "sse-c-fingerprint"  # noqa: S105 - the name of a stored secret, not one

STORED_ENCRYPTED = ("The object was stored using a form of Server Side Encryption. The correct parameters "
                    "must be provided to retrieve the object.")
NOT_APPLICABLE = "The encryption parameters are not applicable to this object."
PART_MISSING = ("The multipart upload initiate requested encryption. Subsequent part requests must include "
                "the appropriate encryption parameters.")
PART_MISMATCH = "The provided encryption parameters did not match the ones used originally."
INSECURE = ("Requests specifying Server Side Encryption with Customer provided keys must be made over a "
            "secure connection.")
_KMS_REQUIRES = ("Server Side Encryption with AWS KMS managed key requires HTTP header "
                 "x-amz-server-side-encryption : aws:kms")
_BAD_CONTEXT = ("The header 'x-amz-server-side-encryption-context' shall be Base64-encoded UTF-8 string "
                "holding JSON which represents a string-string map")


# -- what a request asks (pure, unit-tested) --
@dataclass(frozen=True, slots=True)
class CustomerKey:
    """An SSE-C key as a request carried it. Never logged, stored or put in an error."""

    key: bytes = field(repr=False)
    key_md5: str  # base64, as sent (and checked): echoed in responses

    def __repr__(self) -> str:
        return "CustomerKey(<hidden>)"


@dataclass(frozen=True, slots=True)
class SseRequest:
    """The SSE headers of a write."""

    algorithm: str | None = None  # x-amz-server-side-encryption
    kms_key_id: str | None = None
    context: dict[str, str] | None = None  # decoded x-amz-server-side-encryption-context
    bucket_key: bool | None = None
    customer: CustomerKey | None = None

    @property
    def given(self) -> bool:
        return self.algorithm is not None or self.customer is not None


def parse_customer(headers: Mapping[str, str], prefix: str = CUSTOMER_PREFIX) -> CustomerKey | None:
    """The SSE-C key of a request (``prefix``: the copy source's headers for a copy), or None."""
    algo = headers.get(prefix + "algorithm")
    raw = headers.get(prefix + "key")
    md5 = headers.get(prefix + "key-md5")
    if algo is None and raw is None and md5 is None:
        return None
    if algo is None or algo != CUSTOMER_ALGORITHM:
        raise InvalidArgument("Requests specifying Server Side Encryption with Customer provided keys must "
                              "provide a valid encryption algorithm.", name=prefix + "algorithm")
    if raw is None:
        raise InvalidArgument("Requests specifying Server Side Encryption with Customer provided keys must "
                              "provide an appropriate secret key.", name=prefix + "key")
    if md5 is None:
        raise InvalidArgument("Requests specifying Server Side Encryption with Customer provided keys must "
                              "provide the client calculated MD5 of the secret key.", name=prefix + "key-MD5")
    try:
        key = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != 32:
        raise InvalidArgument("The secret key was invalid for the specified algorithm.", name=prefix + "key")
    want = base64.b64encode(hashlib.md5(key).digest()).decode()  # noqa: S324 - AWS's key checksum
    if not hmac.compare_digest(want.encode(), md5.strip().encode()):
        raise InvalidArgument("The calculated MD5 hash of the key did not match the hash that was provided.",
                              name=prefix + "key-MD5")
    return CustomerKey(key, want)


def parse_context(raw: str) -> dict[str, str]:
    if len(raw) > _MAX_CONTEXT:
        raise InvalidArgument(_BAD_CONTEXT, name=H_CONTEXT)
    try:
        doc = json.loads(base64.b64decode(raw, validate=True).decode("utf-8"))
    except (binascii.Error, ValueError, UnicodeDecodeError) as e:
        raise InvalidArgument(_BAD_CONTEXT, name=H_CONTEXT) from e
    if not isinstance(doc, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in doc.items()):
        raise InvalidArgument(_BAD_CONTEXT, name=H_CONTEXT)
    return doc


def parse_bool(name: str, raw: str | None) -> bool | None:
    if raw is None:
        return None
    v = raw.strip().lower()
    if v not in ("true", "false"):
        raise InvalidArgument(f"Invalid value for {name}: must be true or false.", name=name)
    return v == "true"


def parse_request(headers: Mapping[str, str]) -> SseRequest:
    """The SSE headers of a write, checked as AWS checks them."""
    algo = headers.get(H_SSE)
    key_id = headers.get(H_KMS_KEY)
    context = headers.get(H_CONTEXT)
    bucket_key = parse_bool(H_BUCKET_KEY, headers.get(H_BUCKET_KEY))
    customer = parse_customer(headers)
    if algo is not None and algo not in ALGORITHMS:
        raise InvalidArgument("The encryption method specified is not supported", name=H_SSE, value=algo)
    if customer is not None and algo is not None:
        raise InvalidArgument("Server Side Encryption with Customer provided key is incompatible with the "
                              "encryption method specified", name=H_SSE)
    if (key_id is not None or context is not None) and algo != SSE_KMS:
        raise InvalidArgument(_KMS_REQUIRES, name=H_SSE)
    if key_id is not None and not key_id.strip():
        raise KMSNotFound(f"Invalid keyId '{key_id}'")
    return SseRequest(algorithm=algo, kms_key_id=key_id, context=parse_context(context) if context else None,
                      bucket_key=bucket_key, customer=customer)


def context_hash(context: Mapping[str, str] | None) -> bytes:
    """SHA-256 of the canonical JSON of an encryption context (the empty context: of ``{}``)."""
    canon = json.dumps(dict(context or {}), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canon.encode("utf-8")).digest()


# -- bucket default encryption --
@dataclass(frozen=True, slots=True)
class BucketDefault:
    """A bucket's default encryption (PutBucketEncryption's one rule)."""

    algorithm: str = SSE_S3
    kms_key_id: str | None = None  # a key id (UUID), resolved when the rule was put
    bucket_key: bool = False

    def dumps(self) -> str:
        return json.dumps({"algorithm": self.algorithm, "kms_key_id": self.kms_key_id,
                           "bucket_key": self.bucket_key}, sort_keys=True)

    @staticmethod
    def loads(text: str | None) -> BucketDefault:
        if text is None:
            return BucketDefault()
        doc = json.loads(text)
        return BucketDefault(doc["algorithm"], doc.get("kms_key_id"), bool(doc.get("bucket_key")))


# -- inner wraps --
def _derive(ikm: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(ikm)


class CustomerLayer:
    """The SSE-C inner wrap: a key derived from the customer's key and the blob id."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        self._key = key

    def seal(self, dek: bytes, blob_id: str) -> bytes:
        b = blob_id.encode()
        return wrap_with(_derive(self._key, b"coffre sse-c dek|" + b), dek, b"sse-c|" + b)

    def open(self, sealed: bytes, blob_id: str) -> bytes:
        b = blob_id.encode()
        return unwrap_with(_derive(self._key, b"coffre sse-c dek|" + b), sealed, b"sse-c|" + b)

    def etag(self, md5: bytes) -> str:
        """SSE-C ETags are not the MD5 of the data (as on AWS): an MD5 would let anyone holding
        the listing confirm a guess of the content. A keyed MAC of it instead, so the same
        bytes under the same key keep the same ETag."""
        return '"' + hmac.new(_derive(self._key, b"coffre sse-c etag"), md5, hashlib.sha256).hexdigest()[:32] + '"'

    def __repr__(self) -> str:
        return "CustomerLayer(<hidden>)"


class KmsLayer:
    """The SSE-KMS inner wrap: a key derived from the KMS key, bound to the encryption context."""

    __slots__ = ("_kek", "_aad")

    def __init__(self, material: bytes, key_id: str, ctx_hash: bytes) -> None:
        self._kek = _derive(material, b"coffre sse-kms|" + key_id.encode())
        self._aad = b"kms|" + key_id.encode() + b"|" + ctx_hash + b"|"

    def seal(self, dek: bytes, blob_id: str) -> bytes:
        return wrap_with(self._kek, dek, self._aad + blob_id.encode())

    def open(self, sealed: bytes, blob_id: str) -> bytes:
        return unwrap_with(self._kek, sealed, self._aad + blob_id.encode())

    def __repr__(self) -> str:
        return "KmsLayer(<hidden>)"


@dataclass(frozen=True, slots=True)
class Encryption:
    """How one write encrypts: what to store, the inner wrap, and the SSE-C key to echo."""

    record: SseRecord | None = None
    layer: KeyLayer | None = None
    customer: CustomerKey | None = None

    def etag(self, md5: bytes) -> str:
        if isinstance(self.layer, CustomerLayer):
            return self.layer.etag(md5)
        return f'"{md5.hex()}"'


PLAIN = Encryption()


class SseService:
    def __init__(self, settings: Settings, meta: MetadataStore, keyring: Keyring) -> None:
        self.settings = settings
        self.meta = meta
        self.keyring = keyring
        self._kms_material: dict[str, bytes] = {}

    # -- KMS keys --
    @staticmethod
    def default_key_id(tenant_id: str) -> str:
        return str(uuid.uuid5(_DEFAULT_KEY_NS, "tenant|" + tenant_id))

    def key_arn(self, tenant_id: str, key_id: str) -> str:
        return f"arn:aws:kms:{self.settings.region}:{tenant_id}:key/{key_id}"

    @staticmethod
    def _kms_context(tenant_id: str, key_id: str) -> bytes:
        return f"kms|{tenant_id}|{key_id}".encode()

    async def resolve_key(self, tenant_id: str, given: str | None) -> str:
        """The id of the tenant's KMS key ``given`` names (None or the aws/s3 alias: the default).

        A key id, or a key ARN of this region and tenant. Anything else, another tenant's key
        included, is KMS.NotFoundException: a key of another tenant does not exist for this one.
        """
        if given is None or given == DEFAULT_ALIAS:
            return self.default_key_id(tenant_id)
        key_id = given
        if given.startswith("arn:"):
            parts = given.split(":", 5)
            if len(parts) != 6 or parts[:3] != ["arn", "aws", "kms"] or parts[3] != self.settings.region \
                    or parts[4] != tenant_id or not parts[5].startswith("key/"):
                raise KMSNotFound(f"Invalid keyId '{given}'")
            key_id = parts[5][4:]
        if key_id == self.default_key_id(tenant_id):
            return key_id
        rec = await self.meta.get_kms_key(key_id) if _UUID.match(key_id) else None
        if rec is None or rec.tenant_id != tenant_id:
            raise KMSNotFound(f"Invalid keyId '{given}'")
        if rec.state != ENABLED:
            raise KMSDisabled(f"{self.key_arn(tenant_id, key_id)} is disabled.")
        return key_id

    async def _material(self, tenant_id: str, key_id: str) -> bytes:
        # The record is read every time (its state may change: a disabled key neither encrypts
        # nor decrypts, as on AWS); only the root provider's unwrap is cached.
        rec = await self.meta.get_kms_key(key_id)
        if rec is None and key_id == self.default_key_id(tenant_id):
            rec = await self._create_default(tenant_id, key_id)
        if rec is None or rec.tenant_id != tenant_id:
            raise KMSNotFound(f"Invalid keyId '{key_id}'")
        if rec.state != ENABLED:
            raise KMSDisabled(f"{self.key_arn(tenant_id, key_id)} is disabled.")
        material = self._kms_material.get(key_id)
        if material is None:
            material = self.keyring.provider.unwrap(rec.wrapped_key, self._kms_context(tenant_id, key_id))
            self._kms_material[key_id] = material
        return material

    async def _create_default(self, tenant_id: str, key_id: str) -> KmsKeyRecord | None:
        """The tenant's default KMS key, made on its first use. Its own random key, not the
        tenant key: the tenant key rotates (coffre.core.rotation re-wraps the data keys' outer
        layer only), and an inner wrap derived from a retired tenant key version could no longer
        be opened."""
        try:
            return await self.create_key(tenant_id, "default key (alias/aws/s3)", key_id)
        except AlreadyExists:  # a concurrent first use made it
            return await self.meta.get_kms_key(key_id)

    async def create_key(self, tenant_id: str, description: str = "", key_id: str | None = None) -> KmsKeyRecord:
        key_id = key_id or str(uuid.uuid4())
        rec = KmsKeyRecord(key_id=key_id, tenant_id=tenant_id, created_at=time.time(), description=description,
                           wrapped_key=self.keyring.provider.wrap(new_key(), self._kms_context(tenant_id, key_id)))
        await self.meta.create_kms_key(rec)
        return rec

    async def list_keys(self, tenant_id: str) -> list[KmsKeyRecord]:
        return await self.meta.list_kms_keys(tenant_id)

    async def set_key_state(self, tenant_id: str, key_id: str, enabled: bool) -> None:
        rec = await self.meta.get_kms_key(key_id) if _UUID.match(key_id) else None
        if rec is None or rec.tenant_id != tenant_id:
            raise KMSNotFound(f"Invalid keyId '{key_id}'")
        await self.meta.set_kms_key_state(key_id, ENABLED if enabled else DISABLED)

    # -- SSE-C fingerprints --
    async def _fingerprint(self, key: bytes, salt: bytes) -> bytes:
        secret = await self.keyring.deployment_secret(FINGERPRINT_SECRET)
        return salt + hmac.new(secret, salt + key, hashlib.sha256).digest()

    async def _matches(self, key: bytes, check: bytes | None) -> bool:
        if check is None or len(check) <= _SALT:
            return False
        return hmac.compare_digest(await self._fingerprint(key, check[:_SALT]), check)

    # -- decisions --
    async def for_write(self, bucket: BucketRecord, req: SseRequest | None) -> Encryption:
        """How a new object (or upload) of ``bucket`` is encrypted: the request's choice, else the
        bucket's default. Costs nothing for a plain write into a bucket without a KMS default."""
        if req is not None and req.customer is not None:
            check = await self._fingerprint(req.customer.key, secrets.token_bytes(_SALT))
            return Encryption(SseRecord(SSE_C, customer_check=check), CustomerLayer(req.customer.key), req.customer)
        algo = req.algorithm if req is not None else None
        key_id = req.kms_key_id if req is not None else None
        bucket_key = req.bucket_key if req is not None else None
        if algo is None:
            if bucket.encryption is None:
                return PLAIN
            default = BucketDefault.loads(bucket.encryption)
            algo, key_id = default.algorithm, default.kms_key_id
            bucket_key = default.bucket_key if bucket_key is None else bucket_key
        if algo != SSE_KMS:
            return PLAIN
        key_id = await self.resolve_key(bucket.tenant_id, key_id)
        ctx_hash = context_hash(req.context if req is not None else None)
        material = await self._material(bucket.tenant_id, key_id)
        return Encryption(SseRecord(SSE_KMS, kms_key_id=key_id, bucket_key=bool(bucket_key), context_hash=ctx_hash),
                          KmsLayer(material, key_id, ctx_hash))

    async def for_read(self, tenant_id: str, sse: SseRecord | None, customer: CustomerKey | None,
                       decrypt: bool = True) -> KeyLayer | None:
        """The inner wrap to open an object's data keys with, checking the SSE-C key a read
        carries (400 without one, 403 for a wrong one, as AWS answers). ``decrypt`` False (HEAD,
        GetObjectAttributes): the SSE-C key is still checked, but no KMS key is touched, so a
        disabled KMS key still lets its objects be described, as on AWS."""
        if sse is None:
            if customer is not None:
                raise InvalidRequest(NOT_APPLICABLE)
            return None
        if sse.algorithm == SSE_C:
            if customer is None:
                raise InvalidRequest(STORED_ENCRYPTED)
            if not await self._matches(customer.key, sse.customer_check):
                raise AccessDenied()
            return CustomerLayer(customer.key)
        if customer is not None:
            raise InvalidRequest(NOT_APPLICABLE)
        if sse.algorithm == SSE_KMS and sse.kms_key_id is not None and decrypt:
            material = await self._material(tenant_id, sse.kms_key_id)
            return KmsLayer(material, sse.kms_key_id, sse.context_hash or context_hash(None))
        return None

    async def for_part(self, upload: UploadRecord, customer: CustomerKey | None) -> Encryption:
        """How a part of ``upload`` is encrypted: as its creation asked, with the same SSE-C key."""
        sse = upload.sse
        if sse is None or sse.algorithm != SSE_C:
            if customer is not None:
                raise InvalidRequest(PART_MISMATCH)
            if sse is not None and sse.algorithm == SSE_KMS and sse.kms_key_id is not None:
                material = await self._material(upload.tenant_id, sse.kms_key_id)
                return Encryption(sse, KmsLayer(material, sse.kms_key_id, sse.context_hash or context_hash(None)))
            return Encryption(sse)
        if customer is None:
            raise InvalidRequest(PART_MISSING)
        if not await self._matches(customer.key, sse.customer_check):
            raise InvalidRequest(PART_MISMATCH)
        return Encryption(sse, CustomerLayer(customer.key), customer)

    async def check_complete(self, upload: UploadRecord, customer: CustomerKey | None) -> None:
        """CompleteMultipartUpload may carry the SSE-C key (AWS asks for it only with checksums):
        when it does, it must be the upload's."""
        if customer is not None:
            await self.for_part(upload, customer)

    # -- bucket default encryption --
    async def put_bucket_default(self, bucket: BucketRecord, algorithm: str, kms_key_id: str | None,
                                 bucket_key: bool) -> None:
        """PutBucketEncryption: the key named must be one of the bucket's tenant's (stored by id)."""
        if algorithm not in ALGORITHMS:
            raise InvalidArgument("The SSEAlgorithm is not valid: it must be AES256 or aws:kms.",
                                  name="SSEAlgorithm", value=algorithm)
        if kms_key_id is not None and algorithm != SSE_KMS:
            raise InvalidArgument("a KMSMasterKeyID is not applicable if the default sse algorithm is not aws:kms",
                                  name="ApplyServerSideEncryptionByDefault")
        key_id = await self.resolve_key(bucket.tenant_id, kms_key_id) if kms_key_id is not None else None
        await self._set_default(bucket, BucketDefault(algorithm, key_id, bucket_key).dumps())

    async def delete_bucket_default(self, bucket: BucketRecord) -> None:
        """DeleteBucketEncryption: back to SSE-S3 (what AWS applies to every bucket)."""
        await self._set_default(bucket, None)

    async def _set_default(self, bucket: BucketRecord, document: str | None) -> None:
        try:
            await self.meta.set_bucket_encryption(bucket.name, document)
        except NotFound as e:
            raise NoSuchBucket(bucket=bucket.name) from e
