"""The "hold your own key" client: a tenant key wrapped by a key service the tenant runs.

The tenant's key never reaches coffre's storage in a form coffre alone can open: the tenant
key is sent once to the tenant's service to be wrapped (``/v1/wrap``) and, whenever a gateway
needs it, sent back wrapped to be opened (``/v1/unwrap``). The service's own key never leaves
it. When the service refuses (key disabled or destroyed, token revoked) or cannot be reached,
the tenant's data cannot be read or written: that is the point. The protocol is in
docs/hyok-protocol.md; the reference service is ``coffre keyserver``.

Calls are blocking (http.client) with a strict timeout, made from a worker thread by the
keyring; a redirect is never followed (it could carry the token elsewhere), answers are
bounded in size, and neither the token nor any key material appears in an exception, a log
line or a repr.
"""

from __future__ import annotations

import base64
import binascii
import http.client
import ipaddress
import json
import re
import ssl
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from coffre.crypto.keys import KeyError_, KeyProvider, KeyVersionError

MAX_ANSWER = 64 * 1024  # bytes read from the service, at most
MAX_WRAP_INPUT = 4096  # plaintext bytes the protocol wraps (keys and secrets, never data)
KEY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")
TOKEN = re.compile(r"^[\x21-\x7e]{16,512}$")
USER_AGENT = "coffre-hyok/1"


class KeyServiceUnavailable(KeyError_):
    """The key service could not be reached, timed out, or answered something unusable.

    Transient as far as coffre knows: nothing is lost, and the next call tries again."""


class KeyServiceRefused(KeyError_):
    """The key service answered and refused: ``reason`` is the protocol's error code
    (KeyDisabled, KeyNotFound, KeyDestroyed, Unauthorized, InvalidCiphertext, BadRequest)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def check_token(token: str) -> None:
    if not TOKEN.match(token):
        raise ValueError("a key service token is 16 to 512 printable ASCII characters, without spaces")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class ExternalKeyConfig:
    """Where a tenant's key service is and how to trust it (nothing secret: the token is apart).

    ``url`` is https:// (http:// is accepted for a loopback address only, where nothing crosses
    a network). ``ca_pem`` is the PEM of the CA certificates that sign the service's certificate
    (None: the system's CAs). ``client_cert_file``/``client_key_file`` name a certificate and key
    on every gateway for mutual TLS (the service then knows coffre by its certificate too).
    """

    url: str
    key_id: str
    ca_pem: str | None = None
    client_cert_file: str | None = None
    client_key_file: str | None = None
    timeout: float = 5.0

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError(f"the key service URL {self.url!r} is not an https:// URL")
        if parts.scheme == "http" and not is_loopback(parts.hostname):
            raise ValueError("the key service must be reached over https:// (plain http:// only on a loopback "
                             "address, for development)")
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError("the key service URL takes no query, fragment or user information")
        if not KEY_ID.match(self.key_id):
            raise ValueError("a key id is 1 to 128 letters, digits and . _ : / -, starting with a letter or digit")
        if (self.client_cert_file is None) != (self.client_key_file is None):
            raise ValueError("mutual TLS needs both a client certificate and its key")
        if self.client_cert_file is not None and parts.scheme != "https":
            raise ValueError("mutual TLS needs an https:// URL")
        if not 0 < self.timeout <= 120:
            raise ValueError("the key service timeout is between 0 and 120 seconds")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "external", "url": self.url, "key_id": self.key_id}
        if self.ca_pem is not None:
            out["ca_pem"] = self.ca_pem
        if self.client_cert_file is not None:
            out["client_cert_file"] = self.client_cert_file
            out["client_key_file"] = self.client_key_file
        return out

    @classmethod
    def from_json(cls, doc: dict[str, Any], timeout: float = 5.0) -> ExternalKeyConfig:
        return cls(url=str(doc["url"]), key_id=str(doc["key_id"]), ca_pem=doc.get("ca_pem"),
                   client_cert_file=doc.get("client_cert_file"), client_key_file=doc.get("client_key_file"),
                   timeout=timeout)


def _remaining(conn: http.client.HTTPConnection, deadline: float) -> None:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError()
    if conn.sock is not None:
        conn.sock.settimeout(left)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: object, what: str) -> bytes:
    if not isinstance(text, str):
        raise KeyServiceUnavailable(f"the key service answered without {what}")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise KeyServiceUnavailable(f"the key service answered a malformed {what}") from None


class ExternalKeyProvider(KeyProvider):
    """Wraps and unwraps with one key of a tenant's key service (see the module docstring)."""

    kind = "external"

    def __init__(self, config: ExternalKeyConfig, token: str) -> None:
        check_token(token)
        super().__init__()
        self.config = config
        self._token = token
        parts = urlsplit(config.url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port
        self._base = parts.path.rstrip("/")
        self._context = self._tls_context() if self._https else None
        self._load_versions()

    def _tls_context(self) -> ssl.SSLContext:
        try:
            ctx = ssl.create_default_context(cadata=self.config.ca_pem) if self.config.ca_pem \
                else ssl.create_default_context()
        except ssl.SSLError as e:
            raise ValueError(f"the key service CA certificates cannot be used: {e.reason or e}") from None
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.config.client_cert_file is not None:
            try:
                ctx.load_cert_chain(self.config.client_cert_file, self.config.client_key_file)
            except (OSError, ssl.SSLError) as e:
                raise ValueError(f"the client certificate {self.config.client_cert_file} cannot be used: "
                                 f"{getattr(e, 'reason', None) or e.strerror or e}") from None
        return ctx

    # -- the protocol --
    def _call(self, method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        where = f"key service {self.config.url}"
        if self._https:
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                self._host, self._port, timeout=self.config.timeout, context=self._context)
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=self.config.timeout)
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": "Bearer " + self._token, "Accept": "application/json", "User-Agent": USER_AGENT}
        if data is not None:
            headers["Content-Type"] = "application/json"
        # One deadline for the whole call, not per socket operation: a service that answers a
        # byte at a time cannot hold a request (and the tenant's requests waiting on it) longer.
        deadline = time.monotonic() + self.config.timeout
        try:
            conn.request(method, self._base + path, body=data, headers=headers)
            _remaining(conn, deadline)
            resp = conn.getresponse()
            raw = b""
            while len(raw) <= MAX_ANSWER:
                _remaining(conn, deadline)
                chunk = resp.read1(min(16384, MAX_ANSWER + 1 - len(raw)))  # one socket read at most
                if not chunk:
                    break
                raw += chunk
            status = resp.status
        except ssl.SSLError as e:
            raise KeyServiceUnavailable(f"{where}: TLS failed ({e.reason or type(e).__name__})") from None
        except TimeoutError:
            raise KeyServiceUnavailable(f"{where}: no answer within {self.config.timeout:g} s") from None
        except (OSError, http.client.HTTPException) as e:
            raise KeyServiceUnavailable(f"{where}: unreachable ({type(e).__name__}: "
                                        f"{getattr(e, 'strerror', None) or e})") from None
        finally:
            conn.close()
        if len(raw) > MAX_ANSWER:
            raise KeyServiceUnavailable(f"{where}: the answer is larger than {MAX_ANSWER} bytes")
        try:
            doc = json.loads(raw) if raw else {}
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            raise KeyServiceUnavailable(f"{where}: answered HTTP {status} without a JSON object")
        if status == 200:
            return doc
        err = doc.get("error")
        code = str(err.get("code")) if isinstance(err, dict) and isinstance(err.get("code"), str) else ""
        if status >= 500 or status in (408, 429) or not re.fullmatch(r"[A-Za-z]{1,64}", code):
            raise KeyServiceUnavailable(f"{where}: answered HTTP {status}")
        # Only the code is repeated: the service's message is its own and may say anything.
        raise KeyServiceRefused(code, f"{where} refused key {self.config.key_id}: {code} (HTTP {status})")

    # -- KeyProvider: one key, whose versions (if any) are the service's own business --
    def _seal(self, version: int, plaintext: bytes, aad: bytes) -> bytes:
        if len(plaintext) > MAX_WRAP_INPUT:
            raise ValueError("the key service wraps keys, not data")
        doc = self._call("POST", "/v1/wrap", {"key_id": self.config.key_id, "plaintext": _b64(plaintext),
                                               "context": _b64(aad)})
        return _unb64(doc.get("ciphertext"), "ciphertext")

    def _open(self, version: int, body: bytes, aad: bytes) -> bytes:
        doc = self._call("POST", "/v1/unwrap", {"key_id": self.config.key_id, "ciphertext": _b64(body),
                                                 "context": _b64(aad)})
        return _unb64(doc.get("plaintext"), "plaintext")

    def _list_versions(self) -> list[int]:
        return [1]

    def _create_version(self, version: int) -> None:
        raise KeyVersionError("a tenant's own key is rotated at its key service, not by coffre")

    def _destroy_version(self, version: int) -> None:
        raise KeyVersionError("a tenant's own key is destroyed at its key service, not by coffre")

    def health(self) -> None:
        """Raise KeyServiceUnavailable unless the service says it is up (no key is used)."""
        doc = self._call("GET", "/v1/health", None)
        if doc.get("status") != "ok":
            raise KeyServiceUnavailable(f"key service {self.config.url}: not healthy")

    def __repr__(self) -> str:  # never the token
        return f"ExternalKeyProvider(url={self.config.url!r}, key_id={self.config.key_id!r})"

    __str__ = __repr__
