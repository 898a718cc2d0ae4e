"""AWS Signature Version 4 (and 2) verification for S3 requests.

Covers the Authorization header, presigned URLs (query), the payload modes
(signed sha256, UNSIGNED-PAYLOAD, and the aws-chunked streaming modes, whose
per-chunk and trailer signatures are verified in ``coffre.s3.chunked``), and
legacy SigV2 (header and query). Signatures are compared in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from calendar import monthrange, timegm
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from functools import lru_cache
from urllib.parse import unquote

from coffre.core.errors import (
    AccessDenied,
    AuthorizationHeaderMalformed,
    AuthorizationQueryParametersError,
    InvalidArgument,
    InvalidRequest,
    RequestTimeTooSkewed,
    SignatureDoesNotMatch,
)
from coffre.crypto import sigv4 as sigv4_math
from coffre.crypto.sigv4 import canonical_query, uri_encode

ALGORITHM = sigv4_math.ALGORITHM
UNSIGNED = "UNSIGNED-PAYLOAD"
STREAMING_SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
STREAMING_MODES = (STREAMING_SIGNED, STREAMING_SIGNED_TRAILER, STREAMING_UNSIGNED_TRAILER)
# Services whose Query API (POST / with a form body) is served beside S3; their clients sign the
# body without an x-amz-content-sha256 header.
QUERY_SERVICES = ("iam", "sts")
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_SPACES = re.compile(r"\s+")
_CRED_RE = re.compile(r"^([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request$")

# Sub-resources that are part of a SigV2 canonical resource.
V2_SUBRESOURCES = frozenset((
    "acl", "cors", "delete", "lifecycle", "location", "logging", "notification", "partNumber", "policy",
    "requestPayment", "response-cache-control", "response-content-disposition", "response-content-encoding",
    "response-content-language", "response-content-type", "response-expires", "restore", "tagging",
    "torrent", "uploadId", "uploads", "versionId", "versioning", "versions", "website", "object-lock",
    "retention", "legal-hold", "attributes", "encryption", "ownershipControls", "publicAccessBlock",
    "policyStatus", "replication", "accelerate", "analytics", "inventory", "metrics", "intelligent-tiering",
))


@dataclass(frozen=True, slots=True)
class AuthInfo:
    """What the header or query said, before the secret is known."""

    version: int  # 4 or 2
    access_key_id: str
    signature: str
    presigned: bool
    # SigV4 only
    date: str = ""  # x-amz-date, yyyymmddThhmmssZ
    scope_date: str = ""
    region: str = ""
    service: str = ""
    signed_headers: tuple[str, ...] = ()
    payload_hash: str = ""  # what x-amz-content-sha256 said (or UNSIGNED-PAYLOAD)
    expires: int = 0  # presigned: seconds of validity (v4) / absolute epoch (v2)

    @property
    def scope(self) -> str:
        return f"{self.scope_date}/{self.region}/{self.service}/aws4_request"


@dataclass(frozen=True, slots=True)
class Request:
    """The parts of an HTTP request a signature covers."""

    method: str
    raw_path: str  # path as sent, percent-encoded, without the query
    query: Sequence[tuple[str, str]]  # decoded (name, value) pairs in order
    headers: Mapping[str, str]  # lower-case names; repeated headers joined with ","


def unquote_raw(value: str) -> str:
    """Percent-decode, keeping bytes that are not UTF-8 as surrogates (round-trips through uri_encode)."""
    return unquote(value, errors="surrogateescape")


def parse_auth(req: Request) -> AuthInfo | None:
    """Read the credentials a request carries; None for an anonymous request."""
    auth = req.headers.get("authorization")
    qnames = {k for k, _ in req.query}
    if auth is not None:
        if auth.startswith(ALGORITHM + " "):
            return _parse_v4_header(req, auth)
        if auth.startswith("AWS "):
            return _parse_v2_header(auth)
        raise AuthorizationHeaderMalformed("Unsupported Authorization type")
    if "X-Amz-Algorithm" in qnames or "X-Amz-Signature" in qnames or "X-Amz-Credential" in qnames:
        return _parse_v4_query(req)
    if "AWSAccessKeyId" in qnames or "Signature" in qnames:
        return _parse_v2_query(req)
    return None


def _parse_v4_header(req: Request, auth: str) -> AuthInfo:
    fields: dict[str, str] = {}
    for part in auth[len(ALGORITHM) + 1:].split(","):
        if "=" not in part:
            raise AuthorizationHeaderMalformed(
                "The authorization header is malformed; the authorization component is malformed.")
        k, v = part.strip().split("=", 1)
        fields[k.strip()] = v.strip()
    try:
        cred, signed, sig = fields["Credential"], fields["SignedHeaders"], fields["Signature"]
    except KeyError as e:
        raise AuthorizationHeaderMalformed(
            f"The authorization header is malformed; missing {e.args[0]}.") from e
    m = _CRED_RE.match(cred)
    if not m:
        raise AuthorizationHeaderMalformed(
            "The authorization header is malformed; the Credential is mal-formed; expecting "
            '"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request".')
    date = req.headers.get("x-amz-date") or ""
    if not date:
        d = req.headers.get("date")
        if d:
            try:
                date = time.strftime("%Y%m%dT%H%M%SZ", parsedate_to_datetime(d).utctimetuple())
            except (TypeError, ValueError):
                date = ""
    if not date:
        raise AccessDenied("AWS authentication requires a valid Date or x-amz-date header")
    payload = req.headers.get("x-amz-content-sha256")
    if payload is None:
        if m.group(4) in QUERY_SERVICES:
            payload = ""  # IAM and STS clients send none: the caller hashes the form body it read
        else:
            raise InvalidRequest("Missing required header for this request: x-amz-content-sha256")
    if payload and not (payload == UNSIGNED or payload in STREAMING_MODES or _HEX64.match(payload)):
        raise InvalidArgument("x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-..., or a valid "
                              "sha256 value.", name="x-amz-content-sha256")
    return AuthInfo(version=4, access_key_id=m.group(1), signature=sig, presigned=False, date=date,
                    scope_date=m.group(2), region=m.group(3), service=m.group(4),
                    signed_headers=tuple(signed.split(";")), payload_hash=payload)


def _parse_v4_query(req: Request) -> AuthInfo:
    q = dict(req.query)
    try:
        alg, cred, date = q["X-Amz-Algorithm"], q["X-Amz-Credential"], q["X-Amz-Date"]
        signed, sig = q["X-Amz-SignedHeaders"], q["X-Amz-Signature"]
    except KeyError as e:
        raise AuthorizationQueryParametersError(
            "Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, "
            "X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters.") from e
    if alg != ALGORITHM:
        raise AuthorizationQueryParametersError("X-Amz-Algorithm only supports \"AWS4-HMAC-SHA256\"")
    m = _CRED_RE.match(cred)
    if not m:
        raise AuthorizationQueryParametersError("Error parsing the X-Amz-Credential parameter")
    try:
        expires = int(q.get("X-Amz-Expires", ""))
    except ValueError as e:
        raise AuthorizationQueryParametersError("X-Amz-Expires should be a number") from e
    if expires < 0:
        raise AuthorizationQueryParametersError("X-Amz-Expires must be non-negative")
    return AuthInfo(version=4, access_key_id=m.group(1), signature=sig, presigned=True, date=date,
                    scope_date=m.group(2), region=m.group(3), service=m.group(4),
                    signed_headers=tuple(signed.split(";")),
                    # A presigned URL never covers the body: UNSIGNED-PAYLOAD, unless the URL itself
                    # names a payload hash (some SDKs add X-Amz-Content-Sha256=UNSIGNED-PAYLOAD).
                    payload_hash=q.get("X-Amz-Content-Sha256", UNSIGNED), expires=expires)


def _parse_v2_header(auth: str) -> AuthInfo:
    body = auth[4:]
    if ":" not in body:
        raise AuthorizationHeaderMalformed("The authorization header is malformed.")
    akid, sig = body.rsplit(":", 1)
    return AuthInfo(version=2, access_key_id=akid.strip(), signature=sig.strip(), presigned=False)


def _parse_v2_query(req: Request) -> AuthInfo:
    q = dict(req.query)
    try:
        akid, sig, expires = q["AWSAccessKeyId"], q["Signature"], int(q["Expires"])
    except (KeyError, ValueError) as e:
        raise AccessDenied("Query-string authentication requires the Signature, Expires and "
                           "AWSAccessKeyId parameters") from e
    return AuthInfo(version=2, access_key_id=akid, signature=sig, presigned=True, expires=expires)


# -- SigV4 --
# The derived key changes once a day per credential: cached, it saves four HMACs a request.
signing_key = lru_cache(maxsize=1024)(sigv4_math.signing_key)


def canonical_headers(headers: Mapping[str, str], signed: Sequence[str]) -> str:
    out = []
    for name in signed:
        value = headers.get(name)
        if value is None:
            raise SignatureDoesNotMatch(f"Signed header {name} is missing from the request")
        out.append(f"{name}:{_SPACES.sub(' ', value.strip())}\n")
    return "".join(out)


def _canonical_uris(raw_path: str) -> list[str]:
    """The path as sent, and its AWS-normalised encoding when that differs."""
    normal = uri_encode(unquote_raw(raw_path), safe="/")
    return [raw_path] if normal == raw_path else [raw_path, normal]


def string_to_sign(info: AuthInfo, canonical_request: str) -> str:
    return "\n".join((ALGORITHM, info.date, info.scope,
                      hashlib.sha256(canonical_request.encode("utf-8", "surrogateescape")).hexdigest()))


def iso8601(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _unsigned_headers(req: Request, info: AuthInfo) -> list[str]:
    """Headers S3 insists be signed but were not: host, and every x-amz-* but x-amz-content-sha256.

    An unsigned x-amz-* header would let whoever holds a presigned URL (or sits on the
    path) add metadata, tagging, ACLs or a copy source the signer never authorised.
    """
    signed = set(info.signed_headers)
    missing = [] if "host" in signed else ["host"]
    missing += sorted(name for name in req.headers
                      if name.startswith("x-amz-") and name not in signed and name != "x-amz-content-sha256")
    return missing


_AMZ_DATE = re.compile(r"([0-9]{4})([0-9]{2})([0-9]{2})T([0-9]{2})([0-9]{2})([0-9]{2})Z")


@lru_cache(maxsize=1024)
def parse_amz_date(value: str) -> int:
    """POSIX seconds of an ISO 8601 basic timestamp (20130524T000000Z); ValueError if not one.

    Sliced by a regex rather than ``time.strptime``, which took over 1 % of a small request's
    CPU; the calendar is still checked (month, day of that month, time of day). Cached: the
    requests of one second carry the same X-Amz-Date (a ValueError is never cached)."""
    m = _AMZ_DATE.fullmatch(value)
    if m is None:
        raise ValueError(value)
    y, mo, d, h, mi, s = map(int, m.groups())
    if not (1 <= mo <= 12 and 1 <= d <= monthrange(y, mo)[1] and h <= 23 and mi <= 59 and s <= 61):
        raise ValueError(value)
    return timegm((y, mo, d, h, mi, s, 0, 0, 0))


def verify_v4(req: Request, info: AuthInfo, secret: str, *, now: float, max_skew: int,
              max_expires: int, service: str = "s3") -> bytes:
    """Verify a SigV4 request; return the signing key (needed for streaming chunks).

    ``max_skew`` and ``max_expires`` are in seconds. ``service``: the one the request must be
    signed for; only the IAM/STS Query API (s3/iam/) passes one of QUERY_SERVICES.
    """
    malformed = AuthorizationQueryParametersError if info.presigned else AuthorizationHeaderMalformed
    if info.service != service:
        raise malformed(f'The authorization header is malformed; incorrect service "{info.service}". '
                        f'This endpoint belongs to "{service}".')
    if not info.payload_hash and not info.presigned:
        raise InvalidRequest("Missing required header for this request: x-amz-content-sha256")
    try:
        t = parse_amz_date(info.date)
    except ValueError as e:
        if info.presigned:
            raise AuthorizationQueryParametersError("X-Amz-Date must be in the ISO8601 Long Format") from e
        raise AccessDenied("AWS authentication requires a valid Date or x-amz-date header") from e
    if info.date[:8] != info.scope_date:
        raise SignatureDoesNotMatch("Date in Credential scope does not match YYYYMMDD from ISO-8601 version "
                                    "of date from HTTP")
    unsigned = _unsigned_headers(req, info)
    if unsigned:
        raise AccessDenied("There were headers present in the request which were not signed",
                           headers_not_signed=", ".join(unsigned))
    if info.presigned:
        if info.expires > max_expires:
            raise AuthorizationQueryParametersError(
                f"X-Amz-Expires must be less than a week (in seconds) that is {max_expires}")
        if now < t - max_skew:
            raise AccessDenied("Request is not valid yet")
        if now > t + info.expires:
            raise AccessDenied("Request has expired", x_amz_expires=info.expires,
                               expires_at=iso8601(t + info.expires), server_time=iso8601(now))
        payload = info.payload_hash or UNSIGNED
        query = canonical_query(req.query, skip="X-Amz-Signature")
    else:
        if abs(now - t) > max_skew:
            raise RequestTimeTooSkewed(request_time=info.date, server_time=iso8601(now),
                                       max_skew_ms=max_skew * 1000)
        payload = info.payload_hash
        query = canonical_query(req.query)
    headers = canonical_headers(req.headers, info.signed_headers)
    key = signing_key(secret, info.scope_date, info.region, info.service)
    given = info.signature.encode()
    first: tuple[str, str] | None = None
    for uri in _canonical_uris(req.raw_path):
        creq = "\n".join((req.method, uri, query, headers, ";".join(info.signed_headers), payload))
        sts = string_to_sign(info, creq)
        expected = hmac.new(key, sts.encode("utf-8", "surrogateescape"), hashlib.sha256).hexdigest().encode()
        if hmac.compare_digest(expected, given):
            return key
        first = first or (creq, sts)
    assert first is not None
    # As S3 does, say what was signed (never the key) so a client author can find the difference.
    raise SignatureDoesNotMatch(access_key_id=info.access_key_id, string_to_sign=first[1],
                                signature_provided=info.signature, canonical_request=first[0])


def chunk_signature(key: bytes, info: AuthInfo, previous: str, chunk_sha256: str) -> str:
    sts = "\n".join(("AWS4-HMAC-SHA256-PAYLOAD", info.date, info.scope, previous, EMPTY_SHA256, chunk_sha256))
    return hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()


def trailer_signature(key: bytes, info: AuthInfo, previous: str, trailer_sha256: str) -> str:
    sts = "\n".join(("AWS4-HMAC-SHA256-TRAILER", info.date, info.scope, previous, trailer_sha256))
    return hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()


# -- SigV2 --
# Sub-resources in the canonical resource differ between clients: botocore (aws cli v1,
# boto3 with signature_version "s3") signs its own list, others the full modern list.
# Both are tried; each is a superset of the ones AWS's SigV2 documentation names.
V2_BOTOCORE_SUBRESOURCES = frozenset((
    "accelerate", "acl", "cors", "defaultObjectAcl", "location", "logging", "partNumber", "policy",
    "requestPayment", "torrent", "versioning", "versionId", "versions", "website", "uploads", "uploadId",
    "response-content-type", "response-content-language", "response-expires", "response-cache-control",
    "response-content-disposition", "response-content-encoding", "delete", "lifecycle", "tagging", "restore",
    "storageClass", "notification", "replication", "analytics", "metrics", "inventory", "select",
    "select-type", "object-lock",
))
V2_ALL_SUBRESOURCES = V2_BOTOCORE_SUBRESOURCES | V2_SUBRESOURCES


def v2_string_to_sign(req: Request, bucket_path: str, expires: str | None = None,
                      subresources: frozenset[str] = V2_ALL_SUBRESOURCES) -> str:
    """Legacy SigV2: METHOD, Content-MD5, Content-Type, Date (or Expires), x-amz-*, resource.

    In a presigned URL (``expires`` given), x-amz-* query parameters stand for absent headers.
    """
    h = req.headers
    amz: dict[str, list[str]] = {}
    for k, v in h.items():
        if k.startswith("x-amz-"):
            amz.setdefault(k, []).append(_SPACES.sub(" ", v.strip()))
    if expires is not None:
        # botocore copies the signed x-amz-* headers into the URL; the client may send them as
        # headers too. Each counts once.
        for k, v in req.query:
            name = k.lower()
            if name.startswith("x-amz-") and name not in h:
                amz.setdefault(name, []).append(_SPACES.sub(" ", v.strip()))
    date = expires if expires is not None else ("" if "x-amz-date" in h else h.get("date", ""))
    canon_amz = "".join(f"{k}:{','.join(amz[k])}\n" for k in sorted(amz))
    sub = sorted((k, v) for k, v in req.query if k in subresources)
    resource = bucket_path
    if sub:
        resource += "?" + "&".join(k if v == "" else f"{k}={v}" for k, v in sub)
    return "\n".join((req.method, h.get("content-md5", ""), h.get("content-type", ""), date)) + "\n" + \
        canon_amz + resource


def verify_v2(req: Request, info: AuthInfo, secret: str, bucket_path: str, *, now: float, max_skew: int) -> None:
    expires: str | None = None
    if info.presigned:
        if now > info.expires:
            raise AccessDenied("Request has expired", expires_at=iso8601(info.expires), server_time=iso8601(now))
        expires = str(info.expires)
    else:
        date = req.headers.get("x-amz-date") or req.headers.get("date")
        try:
            t = parsedate_to_datetime(date).timestamp() if date else None
        except (TypeError, ValueError):
            t = None
        if t is None:
            raise AccessDenied("AWS authentication requires a valid Date or x-amz-date header")
        if abs(now - t) > max_skew:
            raise RequestTimeTooSkewed(request_time=date, server_time=iso8601(now), max_skew_ms=max_skew * 1000)
    given = info.signature.encode()
    first = ""
    # A bucket's own resource is "/bucket/" for AWS (and botocore, path style or not), "/bucket" for some.
    paths = [bucket_path]
    if bucket_path.count("/") == 1 and len(bucket_path) > 1:
        paths.insert(0, bucket_path + "/")
    for path in paths:
        for subresources in (V2_BOTOCORE_SUBRESOURCES, V2_ALL_SUBRESOURCES):
            sts = v2_string_to_sign(req, path, expires, subresources)
            expected = base64.b64encode(hmac.new(secret.encode(), sts.encode("utf-8", "surrogateescape"),
                                                 hashlib.sha1).digest())
            if hmac.compare_digest(expected, given):
                return
            first = first or sts
    raise SignatureDoesNotMatch(access_key_id=info.access_key_id, string_to_sign=first,
                                signature_provided=info.signature)
