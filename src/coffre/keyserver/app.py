"""The reference key service's HTTP API (docs/hyok-protocol.md): wrap, unwrap, health.

A tenant runs it on its own premises; coffre sends it a tenant key to wrap once, and the wrapped
key to open when a gateway needs it. The service's keys never leave it: no route returns one.
Every call but health needs ``Authorization: Bearer <token>`` (compared in constant time, never
logged); with ``client_ca`` the TLS listener also demands a client certificate signed by it.

A wrap binds the key id and the caller's context as associated data, so a ciphertext opens only
with the same key and context it was made with.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import ssl
from typing import Any

from aiohttp import web

from coffre.crypto.keys import KeyError_, unwrap_with, wrap_with
from coffre.keyserver.keyfile import KEY_ID, KeyFile

log = logging.getLogger("coffre.keyserver")

MAX_BODY = 16 * 1024
MAX_PLAINTEXT = 4096
MAX_CONTEXT = 1024


def aad(key_id: str, context: bytes) -> bytes:
    return b"coffre-keyserver|v1|" + key_id.encode() + b"|" + context


class ProtocolError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status,
                             headers={"Cache-Control": "no-store"})


def _unb64(doc: dict[str, Any], name: str, limit: int) -> bytes:
    value = doc.get(name)
    if not isinstance(value, str) or len(value) > 4 * limit:
        raise ProtocolError(400, "BadRequest", f"{name} is missing or too long")
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError(400, "BadRequest", f"{name} is not base64") from None
    if len(data) > limit:
        raise ProtocolError(400, "BadRequest", f"{name} is longer than {limit} bytes")
    return data


class KeyService:
    def __init__(self, keys: KeyFile, token: str) -> None:
        self.keys = keys
        # Only a digest is kept to compare with: equal-length inputs for compare_digest.
        self._token_digest = hashlib.sha256(token.encode()).digest()

    def application(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_post("/v1/wrap", self.wrap)
        app.router.add_post("/v1/unwrap", self.unwrap)
        app.router.add_get("/v1/health", self.health)
        app.router.add_route("*", "/{tail:.*}", self.unknown)  # errors are JSON everywhere
        return app

    async def unknown(self, request: web.Request) -> web.Response:
        if request.path in ("/v1/wrap", "/v1/unwrap", "/v1/health"):
            return _error(405, "MethodNotAllowed", f"{request.method} is not allowed on {request.path}")
        return _error(404, "NotFound", "there is no such resource")

    def _authorised(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, presented = header.partition(" ")
        digest = hashlib.sha256(presented.strip().encode()).digest()
        return scheme.lower() == "bearer" and hmac.compare_digest(digest, self._token_digest)

    async def _serve(self, request: web.Request, operation: str) -> web.Response:
        key_id = "-"
        try:
            if not self._authorised(request):
                raise ProtocolError(401, "Unauthorized", "a valid bearer token is required")
            if request.content_length is not None and request.content_length > MAX_BODY:
                raise ProtocolError(400, "BadRequest", "the request body is too large")
            try:
                doc = json.loads(await request.read())
            except (ValueError, web.HTTPRequestEntityTooLarge):
                raise ProtocolError(400, "BadRequest", "the request body is not a JSON object") from None
            if not isinstance(doc, dict):
                raise ProtocolError(400, "BadRequest", "the request body is not a JSON object")
            kid = doc.get("key_id")
            if not isinstance(kid, str) or not KEY_ID.match(kid):
                raise ProtocolError(400, "BadRequest", "key_id is missing or malformed")
            key_id = kid
            context = _unb64(doc, "context", MAX_CONTEXT)
            self.keys.refresh()  # a key disabled or destroyed a moment ago is refused now
            key = self.keys.get(kid)
            if key is None:
                raise ProtocolError(404, "KeyNotFound", f"there is no key {kid}")
            if key.state == "destroyed" or key.material is None:
                raise ProtocolError(410, "KeyDestroyed", f"key {kid} was destroyed")
            if key.state != "enabled":
                raise ProtocolError(403, "KeyDisabled", f"key {kid} is disabled")
            if operation == "wrap":
                plaintext = _unb64(doc, "plaintext", MAX_PLAINTEXT)
                out = {"key_id": kid, "ciphertext": base64.b64encode(
                    wrap_with(key.material, plaintext, aad(kid, context))).decode()}
            else:
                ciphertext = _unb64(doc, "ciphertext", MAX_PLAINTEXT + 64)
                try:
                    plain = unwrap_with(key.material, ciphertext, aad(kid, context))
                except KeyError_:
                    raise ProtocolError(400, "InvalidCiphertext",
                                        "the ciphertext does not open with this key and context") from None
                out = {"key_id": kid, "plaintext": base64.b64encode(plain).decode()}
        except ProtocolError as e:
            log.info("%s key_id=%s refused: %s (%s) from %s", operation, key_id, e.code, e.status, request.remote)
            return _error(e.status, e.code, e.message)
        except (OSError, ValueError) as e:  # the key file vanished or is damaged: the operator must look
            log.error("%s key_id=%s failed: cannot read the key file: %s", operation, key_id, e)
            return _error(503, "Unavailable", "the key service cannot read its keys")
        log.info("%s key_id=%s ok from %s", operation, key_id, request.remote)
        return web.json_response(out, headers={"Cache-Control": "no-store"})

    async def wrap(self, request: web.Request) -> web.Response:
        return await self._serve(request, "wrap")

    async def unwrap(self, request: web.Request) -> web.Response:
        return await self._serve(request, "unwrap")

    async def health(self, request: web.Request) -> web.Response:
        # Says nothing of the keys: it may be asked without a token.
        return web.json_response({"status": "ok"}, headers={"Cache-Control": "no-store"})


def client_verifying(ctx: ssl.SSLContext, client_ca: str) -> ssl.SSLContext:
    """Mutual TLS: a client certificate signed by ``client_ca`` is required to connect."""
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cafile=client_ca)
    return ctx
