"""Small XML request documents whose integrity a digest vouches for (DeleteObjects, CORS, tagging)."""

from __future__ import annotations

import hashlib

from coffre.core.checksums import Checksum
from coffre.core.errors import InvalidRequest
from coffre.core.objects import check_digests
from coffre.s3.context import Ctx
from coffre.s3.handlers.objects import integrity

# AWS words the missing-digest error differently per operation.
MISSING_MD5 = "Missing required header for this request: Content-Md5"
MISSING_DIGEST = "Missing required header for this request: Content-MD5 OR x-amz-checksum-*"


async def read_verified(ctx: Ctx, *, missing: str | None = MISSING_MD5) -> bytes:
    """The request body, checked against its Content-MD5 or flexible checksum before any parsing.

    With ``missing`` set, a request carrying neither is refused with that message (AWS requires
    one where a corrupted body could do harm, e.g. delete the wrong keys); without it a digest is
    optional, but one that was sent must match.
    """
    integ = integrity(ctx)
    has_value = integ.checksum_value is not None or integ.checksum_in_trailer
    if missing is not None and integ.content_md5 is None and not has_value:
        raise InvalidRequest(missing)
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
