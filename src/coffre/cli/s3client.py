"""A small streaming S3 client for ``coffre cp`` / ``coffre sync`` (no AWS SDK at runtime).

Only what the transfer commands need: HEAD, ranged GET as a stream, PUT and multipart upload from
a body *factory* (a body is produced again, not buffered, when a request is retried, so memory
stays constant whatever the object's size), ListObjectsV2 and DeleteObject. Requests are
path-style and signed with SigV4 through ``coffre.crypto.sigv4``, the arithmetic the admin API
and ``coffre admin`` share. A streamed body is sent as UNSIGNED-PAYLOAD, as the AWS CLI does:
a client that must not hold a part in memory cannot hash it before sending it; the integrity of
client-side encrypted data rests on its own authentication anyway.

Each request opens its own connection: the client is used from several threads (concurrent
parts), and a fresh connection per request keeps that free of shared state.
"""

from __future__ import annotations

import configparser
import hashlib
import http.client
import os
import ssl
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

from coffre.crypto import sigv4
from coffre.s3 import xml

DEFAULT_ENDPOINT = "http://127.0.0.1:9000"
SERVICE = "s3"
UNSIGNED = "UNSIGNED-PAYLOAD"
RETRIES = 3
# Status codes worth another attempt: the server is busy or restarting, the request was fine.
_RETRY_STATUS = frozenset({500, 502, 503, 504})

Body = bytes | Callable[[], Iterable[bytes]] | None


class S3Error(Exception):
    """The server answered with an S3 error."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message} (HTTP {status})" if message else f"{code} (HTTP {status})")
        self.status, self.code, self.message = status, code, message


class ConnectionFailed(Exception):
    """The endpoint could not be reached."""


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    secret_access_key: str
    session_token: str | None = None

    def __repr__(self) -> str:  # never the secret
        return f"Credentials({self.access_key_id})"


def _credentials_file() -> str:
    return os.environ.get("AWS_SHARED_CREDENTIALS_FILE") or os.path.expanduser("~/.aws/credentials")


def _profile_section(name: str, required: bool) -> dict[str, str]:
    path = _credentials_file()
    parser = configparser.RawConfigParser()
    try:
        with open(path, encoding="utf-8") as f:
            parser.read_file(f)
    except FileNotFoundError:
        if required:
            raise ValueError(f"no credentials file {path} (for --profile {name})") from None
        return {}
    except configparser.Error as e:
        raise ValueError(f"{path}: {e.message}") from None
    if not parser.has_section(name):
        if required:
            raise ValueError(f"{path} has no [{name}] profile")
        return {}
    return dict(parser.items(name))


def resolve_credentials(profile: str | None) -> Credentials:
    """``--profile`` (a section of ~/.aws/credentials), else the AWS_* environment, else the
    AWS_PROFILE or ``default`` section: the order the AWS CLI follows."""
    env = os.environ
    if profile:
        section = _profile_section(profile, True)
    elif env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
        return Credentials(env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"], env.get("AWS_SESSION_TOKEN"))
    else:
        section = _profile_section(env.get("AWS_PROFILE") or "default", bool(env.get("AWS_PROFILE")))
    akid, secret = section.get("aws_access_key_id"), section.get("aws_secret_access_key")
    if not akid or not secret:
        raise ValueError("no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or use --profile")
    return Credentials(akid, secret, section.get("aws_session_token"))


def resolve_endpoint(arg: str | None) -> str:
    return arg or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or DEFAULT_ENDPOINT


class Response:
    """A response whose body is read as a stream; close it (or use ``with``) when done."""

    def __init__(self, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse) -> None:
        self._conn, self._resp = conn, resp
        self.status = resp.status
        self.headers = {k.lower(): v for k, v in resp.getheaders()}

    def read(self, n: int = -1) -> bytes:
        return self._resp.read(n) if n >= 0 else self._resp.read()

    def read_exactly(self, n: int) -> bytes:
        """Up to ``n`` bytes, fewer only at the end of the body."""
        chunks, got = [], 0
        while got < n:
            chunk = self._resp.read(n - got)
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        self._resp.close()
        self._conn.close()

    def __enter__(self) -> Response:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class S3Client:
    def __init__(self, endpoint: str, credentials: Credentials, region: str | None = None,
                 ca_file: str | None = None, timeout: float = 120) -> None:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"the endpoint {endpoint!r} is not an http:// or https:// URL")
        self.endpoint = endpoint.rstrip("/")
        self.scheme, self.netloc = parts.scheme, parts.netloc
        self.host = parts.hostname
        self.port = parts.port
        self.credentials = credentials
        self.region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        self.timeout = timeout
        ca = ca_file or os.environ.get("AWS_CA_BUNDLE")
        self._tls = ssl.create_default_context(cafile=ca) if self.scheme == "https" else None

    # -- the transport --
    def _connect(self) -> http.client.HTTPConnection:
        if self._tls is not None:
            return http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout, context=self._tls)
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    @staticmethod
    def _path(bucket: str, key: str) -> str:
        return "/" + sigv4.uri_encode(bucket) + ("/" + sigv4.uri_encode(key, safe="/") if key else "")

    def _signed_headers(self, method: str, path: str, query: list[tuple[str, str]], headers: dict[str, str],
                        payload_hash: str) -> dict[str, str]:
        amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        out = {k.lower(): v for k, v in headers.items()}
        out.update({"host": self.netloc, "x-amz-date": amz_date, "x-amz-content-sha256": payload_hash})
        if self.credentials.session_token:
            out["x-amz-security-token"] = self.credentials.session_token
        out["authorization"] = sigv4.authorization(method, path, query, out, payload_hash, amz_date,
                                                   self.credentials.access_key_id,
                                                   self.credentials.secret_access_key, self.region, SERVICE)
        return out

    def request(self, method: str, bucket: str, key: str = "", query: Iterable[tuple[str, str]] = (),
                headers: dict[str, str] | None = None, body: Body = None, length: int | None = None,
                ok: Iterable[int] = (200, 204, 206)) -> Response:
        """Send a request and return its response once the status is one of ``ok``; otherwise raise
        S3Error (after retrying what a retry can fix). ``body`` is bytes, or a function that makes
        the body's chunks afresh for each attempt (``length`` bytes in all)."""
        path = self._path(bucket, key)
        q = list(query)
        qs = sigv4.canonical_query(q)
        target = path + ("?" + qs if qs else "")
        if isinstance(body, bytes):
            length, payload_hash = len(body), hashlib.sha256(body).hexdigest()
        elif body is None:
            length, payload_hash = (0 if method in ("PUT", "POST") else None), hashlib.sha256(b"").hexdigest()
        else:
            if length is None:
                raise ValueError("a streamed body needs its length")
            payload_hash = UNSIGNED
        accepted = frozenset(ok)
        last_error: Exception | None = None
        for attempt in range(RETRIES):
            if attempt:
                time.sleep(0.2 * 4 ** attempt)
            all_headers = self._signed_headers(method, path, q, headers or {}, payload_hash)
            if length is not None:
                all_headers["content-length"] = str(length)
            conn = self._connect()
            try:
                conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
                for name, value in all_headers.items():
                    conn.putheader(name, value)
                conn.endheaders()
                if isinstance(body, bytes):
                    if body:
                        conn.send(body)
                elif body is not None:
                    sent = 0
                    for chunk in body():
                        conn.send(chunk)
                        sent += len(chunk)
                    if sent != length:
                        raise ValueError(f"the body was {sent} bytes, not {length}")
                resp = conn.getresponse()
            except ssl.SSLCertVerificationError as e:  # another attempt would fail the same way
                conn.close()
                raise ConnectionFailed(f"cannot reach {self.endpoint}: its certificate is not trusted "
                                       f"({e.verify_message}); see --ca-bundle") from None
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                last_error = e
                continue
            except BaseException:  # the body could not be produced (a file changed): no retry
                conn.close()
                raise
            if resp.status in accepted:
                return Response(conn, resp)
            raw = resp.read(64 * 1024) if method != "HEAD" else b""
            conn.close()
            error = _error(resp.status, raw)
            if resp.status in _RETRY_STATUS:
                last_error = error
                continue
            raise error
        if isinstance(last_error, S3Error):
            raise last_error
        raise ConnectionFailed(f"cannot reach {self.endpoint}: {last_error}")

    # -- operations --
    def head_object(self, bucket: str, key: str) -> dict[str, str] | None:
        """The object's headers (lower-case names), or None when there is no such key."""
        try:
            with self.request("HEAD", bucket, key) as resp:
                return resp.headers
        except S3Error as e:
            if e.status == 404:
                return None
            raise

    def get_object(self, bucket: str, key: str, first: int | None = None, last: int | None = None) -> Response:
        headers = {}
        if first is not None:
            headers["range"] = f"bytes={first}-{'' if last is None else last}"
        return self.request("GET", bucket, key, headers=headers)

    def put_object(self, bucket: str, key: str, body: Body, length: int, headers: dict[str, str]) -> str:
        with self.request("PUT", bucket, key, headers=headers, body=body, length=length) as resp:
            resp.read()
            return resp.headers.get("etag", "")

    def create_multipart_upload(self, bucket: str, key: str, headers: dict[str, str]) -> str:
        with self.request("POST", bucket, key, query=[("uploads", "")], headers=headers) as resp:
            doc = xml.parse(resp.read())
        upload_id = xml.text(doc, "UploadId")
        if not upload_id:
            raise S3Error(200, "MalformedResponse", "CreateMultipartUpload answered no UploadId")
        return upload_id

    def upload_part(self, bucket: str, key: str, upload_id: str, number: int, body: Body, length: int) -> str:
        query = [("partNumber", str(number)), ("uploadId", upload_id)]
        with self.request("PUT", bucket, key, query=query, body=body, length=length) as resp:
            resp.read()
            return resp.headers.get("etag", "")

    def complete_multipart_upload(self, bucket: str, key: str, upload_id: str, etags: list[str]) -> None:
        parts = "".join(f"<Part><PartNumber>{n}</PartNumber><ETag>{xml.esc(etag)}</ETag></Part>"
                        for n, etag in enumerate(etags, 1))
        body = f"<CompleteMultipartUpload>{parts}</CompleteMultipartUpload>".encode()
        with self.request("POST", bucket, key, query=[("uploadId", upload_id)], body=body) as resp:
            raw = resp.read()
        # S3 may answer 200 with an error document once the body is under way.
        doc = xml.parse(raw)
        if doc.tag == "Error":
            raise S3Error(200, xml.text(doc, "Code") or "InternalError", xml.text(doc, "Message") or "")

    def abort_multipart_upload(self, bucket: str, key: str, upload_id: str) -> None:
        with self.request("DELETE", bucket, key, query=[("uploadId", upload_id)]) as resp:
            resp.read()

    def delete_object(self, bucket: str, key: str) -> None:
        with self.request("DELETE", bucket, key) as resp:
            resp.read()

    def list_objects(self, bucket: str, prefix: str) -> Iterator[tuple[str, int]]:
        """(key, size) of every object under ``prefix``, page after page."""
        token: str | None = None
        while True:
            query = [("list-type", "2"), ("prefix", prefix)]
            if token:
                query.append(("continuation-token", token))
            with self.request("GET", bucket, query=query) as resp:
                doc = xml.parse(resp.read())
            for item in doc.findall("Contents"):
                yield xml.text(item, "Key") or "", int(xml.text(item, "Size") or 0)
            token = xml.text(doc, "NextContinuationToken")
            if xml.text(doc, "IsTruncated") != "true" or not token:
                return


def _error(status: int, raw: bytes) -> S3Error:
    code, message = {301: "PermanentRedirect", 403: "AccessDenied", 404: "NotFound",
                     412: "PreconditionFailed", 416: "InvalidRange"}.get(status, f"HTTP{status}"), ""
    if raw:
        try:
            doc = xml.parse(raw)
            code = xml.text(doc, "Code") or code
            message = xml.text(doc, "Message") or ""
        except Exception:  # noqa: S110 -- not XML (a proxy's page): the status says enough
            pass
    return S3Error(status, code, message)

