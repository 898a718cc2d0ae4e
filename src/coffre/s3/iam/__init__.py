"""The IAM and STS Query API, served on the S3 endpoint and scoped to the caller's tenant.

``aws iam ...`` and boto3's IAM and STS clients, pointed at coffre with ``--endpoint-url``,
send ``POST /`` with a ``application/x-www-form-urlencoded`` body (``Action=CreateUser&
Version=2010-05-08&...``) signed with SigV4 for the service "iam" or "sts", without an
x-amz-content-sha256 header: the signature covers the body, so the body is read (bounded)
and hashed before the signature is checked. Such a request never reaches the S3 dispatch,
and its errors take the Query API's shape (``ErrorResponse``), which is what those clients parse.

A browser's POST Object upload also posts to "/" under virtual-hosted addressing, but as
multipart/form-data and without an Authorization header signed for iam/sts: it is never
taken for a Query API call.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from dataclasses import replace
from urllib.parse import parse_qsl

from aiohttp import web

from coffre.core.errors import CoffreError, SignatureDoesNotMatch, ValidationError
from coffre.core.identity import Principal
from coffre.meta.records import OPERATOR_TENANT
from coffre.s3 import sigv4
from coffre.s3.context import Ctx
from coffre.s3.iam.actions import IAM_ACTIONS, STS_ACTIONS, Call
from coffre.s3.iam.query import (
    IAM_NS,
    IAM_VERSION,
    STS_NS,
    STS_VERSION,
    IncompleteSignature,
    InvalidAction,
    InvalidClientTokenId,
    MissingAction,
    MissingAuthenticationToken,
    Params,
    error_response,
    error_status,
    success_response,
)

log = logging.getLogger("coffre.s3.iam")

# A form body larger than this is refused before it is parsed. The largest legitimate call
# carries one policy document: 6,144 significant characters, URL-encoded (up to 3 bytes each)
# with the document's white space and the other parameters, stays well below.
MAX_BODY = 128 * 1024
MAX_FIELDS = 1000

_FORM = "application/x-www-form-urlencoded"
_SCOPE_SERVICE = re.compile(r"Credential=[^/,]*/\d{8}/[^/,]*/([^/,]*)/aws4_request")


def _signed_service(ctx: Ctx) -> str | None:
    """The service of a SigV4 credential scope (header or presigned query), if any."""
    auth = ctx.headers.get("authorization")
    if auth is not None:
        m = _SCOPE_SERVICE.search(auth)
        return m.group(1) if m else None
    cred = ctx.query.get("X-Amz-Credential")
    if cred is not None:
        parts = cred.split("/")
        return parts[3] if len(parts) == 5 else None
    return None


def is_query_request(ctx: Ctx) -> bool:
    """A POST to "/" with a form body, signed for iam/sts, or unsigned and not bucket-addressed."""
    if ctx.request.method != "POST" or ctx.raw_path != "/":
        return False
    if ctx.headers.get("content-type", "").split(";", 1)[0].strip().lower() != _FORM:
        return False
    service = _signed_service(ctx)
    if service is not None:
        return service in sigv4.QUERY_SERVICES
    return ctx.bucket is None


async def handle(ctx: Ctx) -> tuple[web.StreamResponse, str | None]:
    """Answer one Query API call; returns the response and, for an error, its code (audit)."""
    service = _signed_service(ctx)
    sts = service == "sts"
    ns = STS_NS if sts else IAM_NS
    # Audit and metrics name IAM calls "iam:<Action>" (set once the action is known), never by
    # the S3 operation the router guessed for a POST / (PostObject under virtual hosting).
    ctx.operation = "sts:Unknown" if sts else "iam:Unknown"
    try:
        ctx.expect_continue = ctx.headers.get("expect", "").lower() == "100-continue" \
            and ctx.request.version >= (1, 1)
        body = await ctx.read_small(MAX_BODY)
        params = _params(ctx, body)
        principal = await _authenticate(ctx, body)
        ctx.principal = principal
        action = params.get("Action")
        if not action:
            raise MissingAction()
        table, version = (STS_ACTIONS, STS_VERSION) if sts else (IAM_ACTIONS, IAM_VERSION)
        given_version = params.get("Version")
        handler = table.get(action)
        if handler is None or (given_version is not None and given_version != version):
            raise InvalidAction(f"Could not find operation {action[:64]} for version {(given_version or '')[:16]}")
        ctx.operation = f"{'sts' if sts else 'iam'}:{action}"
        result = await handler(Call(ctx, params, principal))
        return success_response(ns, action, result, ctx.request_id), None
    except CoffreError as exc:
        status, code = error_status(exc)
        if status >= 500:
            log.warning("IAM %s -> %s %s", ctx.operation, status, code)
        return error_response(ns, status, code, str(exc), ctx.request_id), code
    except Exception:
        log.exception("internal error in the IAM API", extra={"request_id": ctx.request_id})
        return error_response(ns, 500, "ServiceFailure", "We encountered an internal error. Please try again.",
                              ctx.request_id), "ServiceFailure"


def _params(ctx: Ctx, body: bytes) -> Params:
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=False, max_num_fields=MAX_FIELDS,
                          errors="strict")
    except (UnicodeDecodeError, ValueError) as e:
        raise ValidationError("The request body is not a valid UTF-8 form.") from e
    return Params([*ctx.query_list, *pairs])


async def _authenticate(ctx: Ctx, body: bytes) -> Principal:
    """SigV4 over the form body, for the service the credential scope names (iam or sts)."""
    req = sigv4.Request(method=ctx.request.method, raw_path=ctx.raw_path, query=ctx.query_list,
                        headers=ctx.headers)
    info = sigv4.parse_auth(req)
    if info is None:
        raise MissingAuthenticationToken()
    if info.version != 4 or info.presigned or info.service not in sigv4.QUERY_SERVICES:
        raise IncompleteSignature("The IAM and STS APIs of coffre accept Signature Version 4 in the "
                                  "Authorization header only.")
    digest = hashlib.sha256(body).hexdigest()
    if not info.payload_hash:
        info = replace(info, payload_hash=digest)
    elif info.payload_hash != digest:
        raise SignatureDoesNotMatch("The x-amz-content-sha256 header does not match the request body.")
    creds = await ctx.coffre.credentials(info.access_key_id)
    if creds.principal.tenant_id == OPERATOR_TENANT:
        # Operators act on tenants through the admin API, never as a tenant identity here.
        raise InvalidClientTokenId()
    sigv4.verify_v4(req, info, creds.secret, now=time.time(), max_skew=ctx.settings.max_clock_skew,
                    max_expires=ctx.settings.max_presign_expires, service=info.service)
    ctx.auth = info
    return creds.principal
