"""Who is calling the admin API: an operator, by SigV4 signature or by session token.

Two ways in, both for operators only (tenant keys are refused by ``Coffre.credentials``):

- ``Authorization: AWS4-HMAC-SHA256 ...`` signed with an operator access key, for the service
  ``coffre-admin`` (a signature made for S3 is refused here, and one made here is refused by
  S3). The payload hash is computed from the body itself, so a signer need not send
  ``x-amz-content-sha256`` (botocore's generic signer does not); when sent, it must match.
  ``host`` and every ``x-amz-*`` header must be signed, as S3 requires.
- ``Authorization: Bearer cs1....``: a session token from ``POST /admin/v1/login`` (password
  and TOTP), see ``coffre.core.operators``.

The canonical-request arithmetic is ``coffre.crypto.sigv4``, shared with ``coffre admin``.
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
import re
import time
from urllib.parse import unquote

from coffre.core.coffre import OPERATOR_PLANE, Coffre
from coffre.core.errors import (
    AccessDenied,
    AuthorizationHeaderMalformed,
    CoffreError,
    RequestTimeTooSkewed,
    SignatureDoesNotMatch,
    XAmzContentSHA256Mismatch,
)
from coffre.core.identity import Operator
from coffre.crypto import sigv4

SERVICE = "coffre-admin"
_CRED = re.compile(r"^([A-Za-z0-9]{1,128})/(\d{8})/([A-Za-z0-9-]{1,32})/([A-Za-z0-9-]{1,32})/aws4_request$")
_AMZ_DATE = re.compile(r"^\d{8}T\d{6}Z$")


class MissingAuthentication(CoffreError):
    message = ("This API needs operator credentials: a SigV4 signature for the service "
               f"'{SERVICE}' or a session token (Authorization: Bearer ...).")


def claimed_key(authorization: str) -> str | None:
    """The access key id a request says it is signed with (an identifier, for the audit trail)."""
    m = re.search(r"Credential=([A-Za-z0-9]{1,128})/", authorization)
    return m.group(1) if m else None


def query_pairs(raw_query: str) -> list[tuple[str, str]]:
    """Decoded (name, value) pairs as sent, in order ('+' is not a space in SigV4)."""
    out = []
    for part in raw_query.split("&"):
        if part:
            k, _, v = part.partition("=")
            out.append((unquote(k), unquote(v)))
    return out


async def authenticate(coffre: Coffre, method: str, raw_path: str, raw_query: str,
                       headers: dict[str, str], body: bytes, max_skew: int) -> Operator:
    auth = headers.get("authorization", "")
    if auth.startswith("Bearer "):
        op = await coffre.operators.verify_session(auth[7:].strip())
        return Operator(name=op.name)
    if not auth.startswith(sigv4.ALGORITHM + " "):
        raise MissingAuthentication()
    fields: dict[str, str] = {}
    for part in auth[len(sigv4.ALGORITHM) + 1:].split(","):
        k, sep, v = part.strip().partition("=")
        if not sep:
            raise AuthorizationHeaderMalformed("The Authorization header is malformed.")
        fields[k] = v
    m = _CRED.match(fields.get("Credential", ""))
    signed = [h for h in fields.get("SignedHeaders", "").split(";") if h]
    given = fields.get("Signature", "")
    if m is None or not signed or not given:
        raise AuthorizationHeaderMalformed("The Authorization header needs Credential=AKID/DATE/REGION/"
                                           f"{SERVICE}/aws4_request, SignedHeaders and Signature.")
    akid, scope_date, region, service = m.groups()
    if service != SERVICE:
        raise AuthorizationHeaderMalformed(f'The credential scope names the service "{service}"; this API is '
                                           f'"{SERVICE}".')
    amz_date = headers.get("x-amz-date", "")
    if not _AMZ_DATE.match(amz_date) or amz_date[:8] != scope_date:
        raise AccessDenied("A signed request needs an x-amz-date header matching the credential scope date.")
    try:
        t = calendar.timegm(time.strptime(amz_date, "%Y%m%dT%H%M%SZ"))
    except ValueError as e:
        raise AccessDenied("The x-amz-date header is not a valid date.") from e
    if abs(time.time() - t) > max_skew:
        raise RequestTimeTooSkewed()
    missing = [h for h in headers if (h == "host" or h.startswith("x-amz-")) and h not in signed
               and h != "x-amz-content-sha256"]
    if missing:
        raise AccessDenied("These headers must be signed: " + ", ".join(sorted(missing)))
    payload = hashlib.sha256(body).hexdigest()
    sent = headers.get("x-amz-content-sha256")
    if sent is not None and sent != payload:
        raise XAmzContentSHA256Mismatch()
    creds = await coffre.credentials(akid, plane=OPERATOR_PLANE)
    assert creds.operator is not None
    normal = sigv4.uri_encode(unquote(raw_path), safe="/")
    query = query_pairs(raw_query)
    for path in dict.fromkeys((raw_path, normal)):
        try:
            canonical = sigv4.canonical_request(method, path, query, headers, signed, payload)
        except KeyError as e:
            raise SignatureDoesNotMatch(f"The signed header {e.args[0]} is missing from the request.") from e
        expected = sigv4.signature(creds.secret, amz_date, region, service, canonical)
        if hmac.compare_digest(expected.encode(), given.encode()):
            return creds.operator
    raise SignatureDoesNotMatch()
