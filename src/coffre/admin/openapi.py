"""The OpenAPI 3.1 document of the admin API, built from the route table that serves it."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from coffre import __version__
from coffre.admin.schema import COMPONENTS, ref

if TYPE_CHECKING:
    from coffre.admin.api import Route

_REASONS = {200: "OK", 201: "Created", 202: "Accepted", 204: "No Content"}
_ERRORS = {
    "400": "Invalid request (validation, malformed JSON or signature header)",
    "401": "Not authenticated (no or bad signature, unknown key, invalid session, failed login)",
    "403": "Authenticated but refused (tenant credentials, suspended tenant)",
    "404": "No such resource",
    "409": "Conflict (already exists, still in use, limit reached)",
    "413": "Body larger than 64 KiB",
}


def document(routes: Sequence[Route]) -> dict[str, Any]:
    from coffre.admin.api import PREFIX

    paths: dict[str, dict[str, Any]] = {}
    for r in routes:
        op: dict[str, Any] = {"operationId": r.operation, "summary": r.summary, "tags": [r.tag]}
        params = [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
                  for n in re.findall(r"\{([a-z]+)\}", r.path)]
        params += [{"name": n, "in": "query", "required": False, "description": d, "schema": {"type": "string"}}
                   for n, d in r.query]
        if params:
            op["parameters"] = params
        if r.body is not None:
            op["requestBody"] = {"required": True, "content": {"application/json": {"schema": r.body}}}
        ok: dict[str, Any] = {"description": _REASONS[r.status]}
        if r.response is not None:
            ok["content"] = {"application/json": {"schema": r.response}}
        responses: dict[str, Any] = {str(r.status): ok}
        for status, text in _ERRORS.items():
            responses[status] = {"description": text, "content": {"application/json": {"schema": ref("Error")}}}
        op["responses"] = responses
        if not r.authenticated:
            op["security"] = []
        paths.setdefault(PREFIX + r.path, {})[r.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "coffre admin API", "version": __version__,
            "description": "The operator plane of coffre: tenants, their identities and keys, quotas. Served on "
                           "the admin listener only; tenant credentials are refused (docs/admin.md).",
        },
        "servers": [{"url": "/"}],
        "security": [{"sigv4": []}, {"session": []}],
        "paths": paths,
        "components": {
            "schemas": COMPONENTS,
            "securitySchemes": {
                "sigv4": {"type": "apiKey", "in": "header", "name": "Authorization",
                          "description": "AWS Signature Version 4 with an operator access key, credential scope "
                                         "service 'coffre-admin' (any region)."},
                "session": {"type": "http", "scheme": "bearer",
                            "description": "A session token from POST /admin/v1/login (password + TOTP)."},
            },
        },
        "tags": [{"name": t} for t in dict.fromkeys(r.tag for r in routes)],
    }
