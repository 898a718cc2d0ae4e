"""AWS Signature Version 4 arithmetic, without HTTP and without errors of any layer.

Shared by the admin API (which verifies operators' signed requests) and ``coffre admin``
(which signs them): both sides build the canonical request the same way from the same code,
and neither depends on the S3 front end (a sibling layer). Scope and header rules that are a
protocol's own (which service name, which headers must be signed, clock skew) stay with it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Mapping, Sequence
from urllib.parse import quote

ALGORITHM = "AWS4-HMAC-SHA256"
_SPACES = re.compile(r"\s+")


def uri_encode(value: str, safe: str = "") -> str:
    """AWS URI encoding: everything but unreserved characters is %XX (upper case).

    Values decoded with ``surrogateescape`` (bytes that were not UTF-8) encode back
    to the very bytes the client sent.
    """
    return quote(value.encode("utf-8", "surrogateescape"), safe="-_.~" + safe)


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    k = hmac.new(("AWS4" + secret).encode(), date.encode(), hashlib.sha256).digest()
    k = hmac.new(k, region.encode(), hashlib.sha256).digest()
    k = hmac.new(k, service.encode(), hashlib.sha256).digest()
    return hmac.new(k, b"aws4_request", hashlib.sha256).digest()


def canonical_query(query: Sequence[tuple[str, str]], skip: str | None = None) -> str:
    """The sorted, encoded query; ``skip`` leaves out one name (X-Amz-Signature of a presigned URL)."""
    pairs = sorted((uri_encode(k), uri_encode(v)) for k, v in query if k != skip)
    return "&".join(f"{k}={v}" for k, v in pairs)


def canonical_request(method: str, path: str, query: Sequence[tuple[str, str]], headers: Mapping[str, str],
                      signed_headers: Sequence[str], payload_sha256: str) -> str:
    """``path`` is already URI-encoded, as sent; ``headers`` has lower-case names.

    Raises KeyError naming a signed header the request does not carry."""
    lines = []
    for name in signed_headers:
        lines.append(f"{name}:{_SPACES.sub(' ', headers[name].strip())}\n")
    return "\n".join((method, path or "/", canonical_query(query), "".join(lines), ";".join(signed_headers),
                      payload_sha256))


def string_to_sign(amz_date: str, scope: str, canonical: str) -> str:
    return "\n".join((ALGORITHM, amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()))


def signature(secret: str, amz_date: str, region: str, service: str, canonical: str) -> str:
    scope = f"{amz_date[:8]}/{region}/{service}/aws4_request"
    key = signing_key(secret, amz_date[:8], region, service)
    return hmac.new(key, string_to_sign(amz_date, scope, canonical).encode(), hashlib.sha256).hexdigest()


def sign(method: str, path: str, query: Sequence[tuple[str, str]], headers: dict[str, str], body: bytes,
         access_key_id: str, secret: str, region: str, service: str, now: float | None = None) -> dict[str, str]:
    """The headers to add to a request so that it is signed: x-amz-date, x-amz-content-sha256,
    Authorization. ``headers`` (lower-case names) must hold ``host``; all of them are signed."""
    amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
    payload = hashlib.sha256(body).hexdigest()
    all_headers = dict(headers, **{"x-amz-date": amz_date, "x-amz-content-sha256": payload})
    return {"x-amz-date": amz_date, "x-amz-content-sha256": payload,
            "authorization": authorization(method, path, query, all_headers, payload, amz_date, access_key_id,
                                           secret, region, service)}


def authorization(method: str, path: str, query: Sequence[tuple[str, str]], headers: Mapping[str, str],
                  payload_hash: str, amz_date: str, access_key_id: str, secret: str, region: str,
                  service: str) -> str:
    """The Authorization header value signing all of ``headers`` (lower-case names, with ``host``
    and ``x-amz-date``), for a body whose SHA-256 (or UNSIGNED-PAYLOAD) is ``payload_hash``."""
    signed = sorted(headers)
    canonical = canonical_request(method, path, query, headers, signed, payload_hash)
    sig = signature(secret, amz_date, region, service, canonical)
    scope = f"{amz_date[:8]}/{region}/{service}/aws4_request"
    return f"{ALGORITHM} Credential={access_key_id}/{scope}, SignedHeaders={';'.join(signed)}, Signature={sig}"
