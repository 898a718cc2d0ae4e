"""PostObject: browser uploads from an HTML form (multipart/form-data) signed by a SigV4 POST policy.

The form's fields come first and are read into memory (at most 20 KiB, as S3 allows); the
``file`` part is streamed into the object without being buffered, however large; fields after
it are ignored, as S3 ignores them. The request carries no Authorization header: the policy's
signature, made with the signing key of ``x-amz-credential``'s scope (or, SigV2, with the
secret of ``AWSAccessKeyId``), authenticates it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import re
import time
from collections.abc import AsyncIterator, Awaitable, Mapping
from typing import TypeVar
from urllib.parse import quote, urlencode, urlsplit

from aiohttp import BodyPartReader, MultipartReader, web
from multidict import CIMultiDict

from coffre.core import postpolicy
from coffre.core.errors import (
    CoffreError,
    EntityTooLarge,
    IncompleteBody,
    InvalidArgument,
    MalformedPOSTRequest,
    MaxPostPreDataLengthExceeded,
    PreconditionFailed,
    RequestTimeout,
    SignatureDoesNotMatch,
)
from coffre.core.objects import STORED_HEADERS, Integrity, WriteMeta
from coffre.meta.records import NULL_VERSION
from coffre.s3 import authz, routing, sigv4
from coffre.s3.context import Ctx, operation
from coffre.s3.handlers import encryption
from coffre.s3.handlers.objects import committed
from coffre.s3.xml import Doc

MAX_PRE_DATA = 20480  # bytes of fields before the file, as S3 counts them
READ_SIZE = 256 * 1024
_CREDENTIAL = re.compile(r"^([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request$")
_STORED_LOWER = {h.lower(): h for h in STORED_HEADERS}
T = TypeVar("T")


async def _timed(ctx: Ctx, aw: Awaitable[T]) -> T:
    """One read of the form, bounded like every body read (RequestTimeout), parse errors as S3's."""
    try:
        async with asyncio.timeout(ctx.settings.body_idle_timeout):
            return await aw
    except TimeoutError as e:
        raise RequestTimeout() from e
    except CoffreError:
        raise
    except (ValueError, AssertionError, RuntimeError, LookupError) as e:
        raise MalformedPOSTRequest() from e
    except Exception as e:  # the connection went away mid-form
        raise IncompleteBody() from e


class _FileBody:
    """The file part as a domain Body, refused past the policy's content-length-range as it streams."""

    def __init__(self, ctx: Ctx, part: BodyPartReader, bounds: tuple[int, int] | None) -> None:
        self._ctx = ctx
        self._part = part
        self._bounds = bounds
        self.received = 0

    @property
    def trailers(self) -> Mapping[str, str]:
        return {}

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            chunk = await _timed(self._ctx, self._part.read_chunk(READ_SIZE))
            if not chunk:
                break
            self.received += len(chunk)
            if self._bounds is not None and self.received > self._bounds[1]:
                raise EntityTooLarge(size=self.received, max=self._bounds[1])
            yield chunk
        # Raised before the stream ends, so the blob is discarded and nothing is committed.
        postpolicy.check_size(self.received, self._bounds)

    async def drain(self) -> int:
        """Read (and drop) the rest of the file: S3 reports the whole proposed size."""
        while chunk := await _timed(self._ctx, self._part.read_chunk(READ_SIZE)):
            self.received += len(chunk)
        return self.received


async def _read_form(ctx: Ctx, reader: MultipartReader) -> tuple[list[tuple[str, str]], BodyPartReader | None]:
    """The fields before the file part (names as sent, in order), and the file part if any."""
    fields: list[tuple[str, str]] = []
    size = 0
    while True:
        part = await _timed(ctx, reader.next())
        if part is None:
            return fields, None
        if not isinstance(part, BodyPartReader) or part.name is None:
            raise MalformedPOSTRequest()
        if part.name.lower() == "file":
            return fields, part
        size += len(part.name.encode("utf-8", "surrogateescape"))
        value = bytearray()
        while chunk := await _timed(ctx, part.read_chunk(8192)):
            size += len(chunk)
            if size > MAX_PRE_DATA:
                raise MaxPostPreDataLengthExceeded(max_pre_data=MAX_PRE_DATA)
            value += chunk
        fields.append((part.name, value.decode("utf-8", "surrogateescape")))


def _missing(name: str) -> InvalidArgument:
    return InvalidArgument(f"Bucket POST must contain a field named '{name}'.  If it is specified, please check "
                           "the order of the fields.", name=name, value="")


async def _authenticate(ctx: Ctx, form: dict[str, str]) -> None:
    """Verify the policy's signature over the policy field as sent; the signer becomes the principal."""
    signed = ("x-amz-algorithm", "x-amz-credential", "x-amz-date", "x-amz-signature")
    if not any(n in form for n in signed):
        if "awsaccesskeyid" in form or "signature" in form:
            await _authenticate_v2(ctx, form)
            return
        return  # anonymous: only a bucket policy or ACL open to everyone lets it write (authz)
    missing = postpolicy.signed_fields_missing(form)
    if missing is not None:
        raise _missing(missing)
    algorithm = form["x-amz-algorithm"]
    if algorithm != sigv4.ALGORITHM:
        raise InvalidArgument('X-Amz-Algorithm only supports "AWS4-HMAC-SHA256"', name="X-Amz-Algorithm",
                              value=algorithm)
    credential = form["x-amz-credential"]
    m = _CREDENTIAL.match(credential)
    if m is None:
        raise InvalidArgument('the Credential is mal-formed; expecting "<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/'
                              'aws4_request".', name="X-Amz-Credential", value=credential)
    akid, date, region, service = m.groups()
    # Any region in the scope is accepted, as for every other request (s3-compatibility.md).
    if service != "s3":
        raise InvalidArgument(f'incorrect service "{service}". This endpoint belongs to "s3".',
                              name="X-Amz-Credential", value=credential)
    creds = await ctx.coffre.credentials(akid)
    policy = form["policy"]
    raw = policy.encode("utf-8", "surrogateescape")
    want = hmac.new(sigv4.signing_key(creds.secret, date, region, service), raw, hashlib.sha256).hexdigest()
    given = form["x-amz-signature"]
    if not hmac.compare_digest(want.encode(), given.strip().lower().encode("utf-8", "surrogateescape")):
        raise SignatureDoesNotMatch(access_key_id=akid, string_to_sign=policy, signature_provided=given,
                                    string_to_sign_bytes=" ".join(f"{b:02x}" for b in raw))
    ctx.principal = creds.principal


async def _authenticate_v2(ctx: Ctx, form: dict[str, str]) -> None:
    """SigV2: base64(HMAC-SHA1(secret, policy)). boto3's generate_presigned_post still signs this
    way unless its client is configured with signature_version="s3v4"."""
    for name, canon in (("awsaccesskeyid", "AWSAccessKeyId"), ("signature", "Signature"), ("policy", "Policy")):
        if name not in form:
            raise _missing(canon)
    akid = form["awsaccesskeyid"]
    creds = await ctx.coffre.credentials(akid)
    policy = form["policy"]
    raw = policy.encode("utf-8", "surrogateescape")
    want = base64.b64encode(hmac.new(creds.secret.encode(), raw, hashlib.sha1).digest())
    given = form["signature"]
    if not hmac.compare_digest(want, given.strip().encode("utf-8", "surrogateescape")):
        raise SignatureDoesNotMatch(access_key_id=akid, string_to_sign=policy, signature_provided=given,
                                    string_to_sign_bytes=" ".join(f"{b:02x}" for b in raw))
    ctx.principal = creds.principal


def _write_meta(form: dict[str, str]) -> WriteMeta:
    for name, value in form.items():
        if (name.startswith("x-amz-meta-") or name in _STORED_LOWER or name == "content-type") \
                and any("\udc80" <= c <= "\udcff" for c in value):
            raise InvalidArgument(f"The value of the {name} field is not valid UTF-8.", name=name)
    return WriteMeta(content_type=form.get("content-type") or None,
                     headers={canon: form[low] for low, canon in _STORED_LOWER.items() if low in form},
                     user_meta={k[len("x-amz-meta-"):]: v for k, v in form.items() if k.startswith("x-amz-meta-")},
                     storage_class=form.get("x-amz-storage-class", "STANDARD"))


def _object_url(ctx: Ctx, key: str) -> str:
    host = ctx.headers.get("host", "localhost")
    path = quote(key.encode("utf-8", "surrogateescape"), safe="")
    if routing.host_bucket(host, ctx.settings.virtual_host_domains) is None:
        path = f"{quote(ctx.b, safe='')}/{path}"
    return f"{ctx.request.scheme}://{host}/{path}"


def _redirect(target: str | None) -> bool:
    if not target:
        return False
    try:
        parts = urlsplit(target)
    except ValueError:
        return False
    # A relative or unusable URL falls back to success_action_status, as on S3.
    return parts.scheme.lower() in ("http", "https") and bool(parts.netloc)


@operation("PostObject")
async def post_object(ctx: Ctx) -> web.StreamResponse:
    content_type = ctx.headers.get("content-type", "")
    mime, _, params = content_type.partition(";")
    if mime.strip().lower() != "multipart/form-data":
        raise PreconditionFailed(condition="Bucket POST must be of the enclosure-type multipart/form-data")
    if "boundary=" not in params.lower():
        raise MalformedPOSTRequest()
    await ctx.coffre.buckets.get(ctx.b)
    await ctx.reader().read(0)  # sends the 100 Continue a client may be waiting for
    reader = MultipartReader(CIMultiDict({"Content-Type": content_type}), ctx.request.content)
    fields, file_part = await _read_form(ctx, reader)
    form: dict[str, str] = {}
    for name, value in fields:
        form.setdefault(name.lower(), value)
    if "key" not in form:
        raise _missing("key")
    await _authenticate(ctx, form)
    # An anonymous form carries no policy to obey; a signed one must.
    policy = postpolicy.decode(form["policy"]) if ctx.principal is not None else None
    if file_part is None:
        raise InvalidArgument("POST requires exactly one file upload per request.", name="file", value="0")
    key = form["key"]
    if file_part.filename is not None:
        key = key.replace("${filename}", file_part.filename)
    values = dict(form)
    values["bucket"] = ctx.b
    values["key"] = key
    exempt = postpolicy.EXEMPT_FIELDS_V2 if "x-amz-signature" not in form else postpolicy.EXEMPT_FIELDS
    if policy is not None:
        postpolicy.check(policy, fields, values, time.time(), exempt)
    await authz.authorize_post(ctx, key, form)
    acl_fields = {"x-amz-acl": form["acl"]} if "acl" in form else {}
    wm = await authz.owned(ctx, _write_meta(form), acl_fields)
    wm.sse = encryption.write_request(ctx, form)
    body = _FileBody(ctx, file_part, policy.length_range() if policy is not None else None)
    integ = Integrity(content_md5=form.get("content-md5"))
    try:
        obj = await ctx.coffre.objects.put_object(ctx.p, ctx.b, key, body, content_length=None,
                                                  wm=wm, integrity=integ)
    except EntityTooLarge as e:
        size = await body.drain()
        raise EntityTooLarge(str(e), size=size, max=e.fields.get("max")) from e
    committed(ctx, "ObjectCreated:Post", obj)
    encryption.response_headers(ctx, obj.sse, obj.tenant_id, form)
    drained = True
    try:
        # Fields after the file are ignored; read them so the connection can carry the next request.
        await _timed(ctx, reader.release())
    except CoffreError:
        drained = False
    response = _answer(ctx, form, key, obj.etag, obj.version_id)
    if not drained:
        response.force_close()
    return response


def _answer(ctx: Ctx, form: dict[str, str], key: str, etag: str, version_id: str) -> web.StreamResponse:
    rh = ctx.response_headers
    rh["ETag"] = etag
    rh["Location"] = _object_url(ctx, key)
    if version_id != NULL_VERSION:
        rh["x-amz-version-id"] = version_id
    target = form.get("success_action_redirect") or form.get("redirect")
    if target is not None and _redirect(target):
        query = urlencode([("bucket", ctx.b), ("key", key), ("etag", etag)])
        rh["Location"] = f"{target}{'&' if '?' in target else '?'}{query}"
        return ctx.empty(303)
    status = form.get("success_action_status")
    if status == "201":
        doc = Doc("PostResponse", ns=False)
        doc.leaf("Location", rh["Location"]).leaf("Bucket", ctx.b).leaf("Key", key).leaf("ETag", etag)
        doc.close("PostResponse")
        return ctx.xml(doc, 201)
    return ctx.empty(200 if status == "200" else 204)
