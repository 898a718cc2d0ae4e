"""The AWS Query protocol as IAM and STS speak it: form parameters in, XML envelopes out.

Requests are ``Action=...&Version=...&Name=value`` forms, lists are ``Name.member.N`` and
structures ``Name.member.N.Field``; responses are ``<ActionResponse><ActionResult>...``
with a ``ResponseMetadata/RequestId``; errors are ``ErrorResponse/Error/{Type,Code,Message}``.
Shapes follow botocore's IAM and STS models, which is what every SDK parses.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from aiohttp import web

from coffre.core import errors as e
from coffre.core.iam import InvalidInput
from coffre.s3.errors import status_and_code
from coffre.s3.xml import Doc

IAM_NS = "https://iam.amazonaws.com/doc/2010-05-08/"
STS_NS = "https://sts.amazonaws.com/doc/2011-06-15/"
IAM_VERSION = "2010-05-08"
STS_VERSION = "2011-06-15"
DEFAULT_MAX_ITEMS = 100
MAX_ITEMS = 1000

T = TypeVar("T")


class QueryError(e.CoffreError):
    """An error of the Query protocol itself (no domain meaning): its code and status are its own."""

    status = 400

    def __init__(self, message: str | None = None, code: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self._code = code or type(self).__name__
        if status is not None:
            self.status = status

    @property
    def code(self) -> str:
        return self._code


class MissingAuthenticationToken(QueryError):
    status = 403
    message = "Request is missing Authentication Token"


class InvalidClientTokenId(QueryError):
    status = 403
    message = "The security token included in the request is invalid."


class IncompleteSignature(QueryError):
    status = 400
    message = "The request signature does not conform to AWS standards."


class InvalidAction(QueryError):
    status = 400
    message = "The action or operation requested is invalid."


class MissingAction(QueryError):
    status = 400
    message = "The request must contain the parameter Action."


# Domain and S3-layer errors as the Query API names them (others keep their S3 code and status).
_QUERY_STATUS: dict[type[e.CoffreError], tuple[int, str]] = {
    e.NoSuchEntity: (404, "NoSuchEntity"),
    e.EntityAlreadyExists: (409, "EntityAlreadyExists"),
    e.DeleteConflict: (409, "DeleteConflict"),
    e.LimitExceeded: (409, "LimitExceeded"),
    e.MalformedPolicyDocument: (400, "MalformedPolicyDocument"),
    InvalidInput: (400, "InvalidInput"),
    e.ValidationError: (400, "ValidationError"),
    e.AccessDenied: (403, "AccessDenied"),
    e.InvalidAccessKeyId: (403, "InvalidClientTokenId"),
    e.SignatureDoesNotMatch: (403, "SignatureDoesNotMatch"),
    # IAM answers a stale or future request date as a signature that does not match.
    e.RequestTimeTooSkewed: (403, "SignatureDoesNotMatch"),
    e.AuthorizationHeaderMalformed: (400, "IncompleteSignature"),
    e.AuthorizationQueryParametersError: (400, "IncompleteSignature"),
    e.InvalidRequest: (400, "InvalidRequest"),
    e.InvalidArgument: (400, "InvalidParameterValue"),
}


def error_status(exc: e.CoffreError) -> tuple[int, str]:
    if isinstance(exc, QueryError):
        return exc.status, exc.code
    for cls in type(exc).__mro__:
        hit = _QUERY_STATUS.get(cls)
        if hit is not None:
            return hit
    return status_and_code(exc)


def error_response(ns: str, status: int, code: str, message: str, request_id: str) -> web.Response:
    kind = "Receiver" if status >= 500 else "Sender"
    doc = Doc().raw(f'<ErrorResponse xmlns="{ns}">').open("Error").leaf("Type", kind).leaf("Code", code)
    doc.leaf("Message", message).close("Error").leaf("RequestId", request_id).close("ErrorResponse")
    return web.Response(body=doc.bytes(), status=status, content_type="text/xml")


def success_response(ns: str, action: str, result: Doc | None, request_id: str) -> web.Response:
    """``result`` holds the children of ``<ActionResult>``; None for an action with no output
    (AWS then sends the ResponseMetadata alone)."""
    doc = Doc().raw(f'<{action}Response xmlns="{ns}">')
    if result is not None:
        doc.open(f"{action}Result")
        doc.parts.extend(result.parts[1:])  # without the XML declaration of the fragment
        doc.close(f"{action}Result")
    doc.open("ResponseMetadata").leaf("RequestId", request_id).close("ResponseMetadata")
    doc.close(f"{action}Response")
    return web.Response(body=doc.bytes(), status=200, content_type="text/xml")


def timestamp(ts: float) -> str:
    """IAM's date format (ISO 8601, second precision, UTC)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def member(name: str) -> str:
    """The member name IAM's validation messages use: "UserName" -> "userName"."""
    return name[:1].lower() + name[1:]


class Params:
    """The parameters of one call (the form body, after the query string's)."""

    def __init__(self, pairs: Sequence[tuple[str, str]]) -> None:
        self._values: dict[str, str] = {}
        for k, v in pairs:
            self._values[k] = v  # the body comes last: its values win

    def get(self, name: str) -> str | None:
        return self._values.get(name)

    def required(self, name: str) -> str:
        value = self._values.get(name)
        if value is None:
            raise e.ValidationError(f"1 validation error detected: Value null at '{member(name)}' failed to "
                                    "satisfy constraint: Member must not be null")
        return value

    def integer(self, name: str, low: int, high: int) -> int | None:
        raw = self._values.get(name)
        if raw is None:
            return None
        try:
            value = int(raw)
        except ValueError as exc:
            raise e.ValidationError(f"Value '{raw[:64]}' for parameter {name} is not a valid integer.") from exc
        if not low <= value <= high:
            raise e.ValidationError(f"1 validation error detected: Value '{value}' at '{member(name)}' failed to "
                                    f"satisfy constraint: Member must have value between {low} and {high}")
        return value

    def boolean(self, name: str) -> bool | None:
        raw = self._values.get(name)
        if raw is None:
            return None
        if raw.lower() not in ("true", "false"):
            raise e.ValidationError(f"Value '{raw[:64]}' for parameter {name} is not a valid boolean.")
        return raw.lower() == "true"

    def members(self, name: str) -> list[str]:
        """``Name.member.1``, ``Name.member.2``... in order, stopping at the first gap."""
        out: list[str] = []
        while (value := self._values.get(f"{name}.member.{len(out) + 1}")) is not None:
            out.append(value)
        return out

    def pairs(self, name: str) -> list[tuple[str, str]]:
        """``Tags.member.N.Key`` / ``.Value`` pairs in order."""
        out: list[tuple[str, str]] = []
        while (key := self._values.get(f"{name}.member.{len(out) + 1}.Key")) is not None:
            out.append((key, self._values.get(f"{name}.member.{len(out) + 1}.Value", "")))
        return out


def page(items: Sequence[T], params: Params, key: Callable[[T], str]) -> tuple[list[T], str | None]:
    """One page of a list call (Marker / MaxItems): the items after the marker, in the order
    IAM lists names (``key`` case-insensitively, ties broken by case), and the marker of the
    next page (None when this page is the last). The marker names the last item returned, so
    deletions between pages skip nothing."""
    limit = params.integer("MaxItems", 1, MAX_ITEMS) or DEFAULT_MAX_ITEMS
    items = sorted(items, key=lambda item: _order(key(item)))
    raw = params.get("Marker")
    start = 0
    if raw is not None:
        try:
            after = base64.urlsafe_b64decode(raw.encode("ascii")).decode("utf-8")
        except (ValueError, binascii.Error, UnicodeError) as exc:
            raise e.ValidationError("Invalid Marker.") from exc
        start = len(items)
        for i, item in enumerate(items):
            if _order(key(item)) > _order(after):
                start = i
                break
    chunk = list(items[start:start + limit])
    if start + limit < len(items):
        return chunk, base64.urlsafe_b64encode(key(chunk[-1]).encode("utf-8")).decode("ascii")
    return chunk, None


def _order(name: str) -> tuple[str, str]:
    """IAM lists names case-insensitively (ties broken by case, so the order is total)."""
    return name.lower(), name


def truncation(doc: Doc, marker: str | None) -> Doc:
    doc.leaf("IsTruncated", marker is not None)
    if marker is not None:
        doc.leaf("Marker", marker)
    return doc
