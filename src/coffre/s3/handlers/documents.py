"""What a request declares about its payload's integrity (Content-MD5, one flexible checksum), and
the small XML request documents a digest vouches for (DeleteObjects, CORS, tagging).

Below the object handlers (which import it), so that it imports none of them."""

from __future__ import annotations

import hashlib

from coffre.core import checksums
from coffre.core.checksums import Checksum
from coffre.core.errors import InvalidRequest
from coffre.core.objects import Integrity, check_digests
from coffre.s3.context import Ctx

# AWS words the missing-digest error differently per operation.
MISSING_MD5 = "Missing required header for this request: Content-Md5"
MISSING_DIGEST = "Missing required header for this request: Content-MD5 OR x-amz-checksum-*"


def integrity(ctx: Ctx) -> Integrity:
    """What the client declared about its payload: Content-MD5 and one flexible checksum."""
    h = ctx.headers
    found = [(a, h[checksums.header_name(a)]) for a in checksums.ALGORITHMS if checksums.header_name(a) in h]
    if len(found) > 1:
        raise InvalidRequest("Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed.")
    sdk = checksums.normalize(h.get("x-amz-sdk-checksum-algorithm"))
    trailer = h.get("x-amz-trailer", "").strip().lower()
    algo: str | None = None
    value: str | None = None
    in_trailer = False
    if found:
        algo, value = found[0]
        checksums.validate_value(algo, value)
        if sdk is not None and sdk != algo:
            raise InvalidRequest("Value for x-amz-sdk-checksum-algorithm header is invalid.")
    elif trailer:
        if not trailer.startswith("x-amz-checksum-"):
            raise InvalidRequest(f"The trailer {trailer} is not supported.")
        algo = checksums.normalize(trailer[len("x-amz-checksum-"):])
        in_trailer = True
    elif sdk is not None:
        algo = sdk
    return Integrity(content_md5=h.get("content-md5"), checksum_algorithm=algo, checksum_value=value,
                     checksum_in_trailer=in_trailer)


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
