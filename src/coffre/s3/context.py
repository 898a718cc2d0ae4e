"""Per-request state handed to every S3 operation handler, and response helpers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import web
from multidict import CIMultiDict

from coffre.core.body import Body
from coffre.core.errors import InvalidArgument, InvalidRequest, MissingContentLength
from coffre.core.identity import ANONYMOUS, Principal
from coffre.notify.events import Change
from coffre.s3 import sigv4
from coffre.s3.body import ChunkedBody, PlainBody, RequestReader
from coffre.s3.sigv4 import AuthInfo
from coffre.s3.xml import Doc

if TYPE_CHECKING:
    from coffre.core.coffre import Coffre
    from coffre.meta.records import BucketRecord
    from coffre.s3.authz import Asker
    from coffre.settings import Settings


@dataclass
class Ctx:
    request: web.BaseRequest
    request_id: str
    coffre: Coffre
    settings: Settings
    operation: str
    bucket: str | None
    key: str | None
    query: dict[str, str]  # first value of each name, decoded
    headers: dict[str, str]  # lower-case names
    raw_path: str = "/"  # percent-encoded path as sent, without the query
    query_list: list[tuple[str, str]] = field(default_factory=list)  # every (name, value), in order
    principal: Principal | None = None
    auth: AuthInfo | None = None
    signing_key: bytes | None = None
    response_headers: CIMultiDict[str] = field(default_factory=CIMultiDict)
    # Expect: 100-continue: the 100 goes out when a handler first reads the body.
    expect_continue: bool = False
    # What the request committed, for event notifications (coffre.notify), set by the handlers.
    changes: list[Change] = field(default_factory=list)
    _reader: RequestReader | None = None
    # Set by the authorisation step (s3/authz.py): the bucket addressed, read once per request,
    # and the questions asked so far (a handler asks more: DeleteObjects per key...).
    bucket_record: BucketRecord | None = None
    asker: Asker | None = None

    @property
    def p(self) -> Principal:
        """The caller; ANONYMOUS for an unsigned request."""
        return self.principal if self.principal is not None else ANONYMOUS

    @property
    def b(self) -> str:
        assert self.bucket is not None
        return self.bucket

    @property
    def k(self) -> str:
        assert self.key is not None
        return self.key

    def content_length(self) -> int | None:
        v = self.headers.get("content-length")
        if v is None:
            return None
        try:
            n = int(v)
        except ValueError as e:
            raise InvalidArgument("Content-Length must be a number", name="Content-Length") from e
        if n < 0:
            raise InvalidArgument("Content-Length must not be negative", name="Content-Length")
        return n

    def payload_length(self) -> int | None:
        """Length of the payload once de-framed (x-amz-decoded-content-length for aws-chunked)."""
        if self.is_chunked():
            v = self.headers.get("x-amz-decoded-content-length")
            if v is None:
                if self.headers.get("transfer-encoding", "").lower() == "chunked":
                    return None
                raise MissingContentLength("x-amz-decoded-content-length is required with aws-chunked")
            try:
                return int(v)
            except ValueError as e:
                raise InvalidArgument("x-amz-decoded-content-length must be a number") from e
        return self.content_length()

    def is_chunked(self) -> bool:
        payload = self.auth.payload_hash if self.auth is not None else ""
        return payload in sigv4.STREAMING_MODES

    def reader(self) -> RequestReader:
        """The body stream: 100 Continue on first read (if the client asked), idle-bounded reads."""
        if self._reader is None:
            send = None
            if self.expect_continue:
                # Not a method of this Ctx: the reader it holds would point back at it (a cycle).
                writer = self.request.writer

                async def send() -> None:
                    await writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")

            self._reader = RequestReader(self.request.content, self.settings.body_idle_timeout, send)
        return self._reader

    @property
    def continued(self) -> bool:
        """Whether the 100 Continue went out (the client then sends its body)."""
        return self._reader is not None and self._reader.continued

    def body(self) -> Body:
        """The request payload as a domain Body (de-framed and verified as it streams)."""
        reader = self.reader()
        if self.is_chunked():
            assert self.auth is not None
            return ChunkedBody(reader, self.auth, self.signing_key, self.payload_length())
        length = self.content_length()
        if length is None and self.headers.get("transfer-encoding", "").lower() != "chunked":
            raise MissingContentLength()
        sha = None
        # The signed payload hash (header, or X-Amz-Content-Sha256 in a presigned URL) binds the body.
        if self.auth is not None and self.auth.version == 4 and self.auth.payload_hash not in ("", sigv4.UNSIGNED):
            sha = self.auth.payload_hash
        return PlainBody(reader, length, sha)

    async def read_small(self, limit: int) -> bytes:
        """Read a whole (XML) body, refusing anything above ``limit`` bytes."""
        length = self.payload_length()
        if length is not None and length > limit:
            raise InvalidRequest(f"The request body is too large (over {limit} bytes).")
        out = bytearray()
        async for chunk in self.body():
            out += chunk
            if len(out) > limit:
                raise InvalidRequest(f"The request body is too large (over {limit} bytes).")
        return bytes(out)

    def url_encoding(self) -> bool:
        """Whether ``encoding-type=url`` asks for keys and prefixes URL-encoded in a listing."""
        enc = self.query.get("encoding-type")
        if enc is None:
            return False
        if enc.lower() != "url":
            raise InvalidArgument("Invalid Encoding Method specified in Request", name="encoding-type")
        return True

    # -- responses --
    def xml(self, doc: Doc, status: int = 200) -> web.Response:
        return web.Response(body=doc.bytes(), status=status, content_type="application/xml",
                            headers=self.response_headers)

    def empty(self, status: int = 200) -> web.Response:
        return web.Response(status=status, headers=self.response_headers)


Handler = Callable[[Ctx], Awaitable[web.StreamResponse]]
HANDLERS: dict[str, Handler] = {}


def operation(name: str) -> Callable[[Handler], Handler]:
    """Register the handler of one S3 operation."""

    def deco(fn: Handler) -> Handler:
        if name in HANDLERS:
            raise RuntimeError(f"duplicate handler for {name}")
        HANDLERS[name] = fn
        return fn

    return deco
