"""Calls to the admin API signed by botocore (an implementation independent of coffre's)."""

from __future__ import annotations

import json
from typing import Any

import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials


def call(endpoint: str, creds: tuple[str, str] | None, method: str, path: str, body: Any = None,
         service: str = "coffre-admin", token: str | None = None, raw: bytes | None = None) -> requests.Response:
    url = endpoint + "/admin/v1" + path
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
    headers = {"Content-Type": "application/json"} if data else {}
    if token is not None:
        headers["Authorization"] = "Bearer " + token
    elif creds is not None:
        req = AWSRequest(method=method, url=url, data=data, headers=headers)
        SigV4Auth(Credentials(*creds), service, "eu-west-3").add_auth(req)
        headers = dict(req.headers.items())
    return requests.request(method, url, data=data, headers=headers, timeout=30)


def ok(resp: requests.Response, status: int = 200) -> Any:
    assert resp.status_code == status, (resp.status_code, resp.text)
    return resp.json() if resp.content else None


def error(resp: requests.Response, status: int, code: str) -> str:
    assert resp.status_code == status, (resp.status_code, resp.text)
    doc = resp.json()
    assert doc["error"]["code"] == code, doc
    return doc["error"]["message"]
