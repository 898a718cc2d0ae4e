"""SSE rules without a server: header parsing as AWS checks it, the inner key wraps, defaults."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets

import pytest

from coffre.core import sse
from coffre.core.errors import InvalidArgument, KMSNotFound
from coffre.crypto.keys import KeyError_


def customer_headers(raw: bytes, prefix: str = sse.CUSTOMER_PREFIX, **over: str) -> dict[str, str]:
    h = {prefix + "algorithm": "AES256", prefix + "key": base64.b64encode(raw).decode(),
         prefix + "key-md5": base64.b64encode(hashlib.md5(raw).digest()).decode()}
    h.update({prefix + k.replace("_", "-"): v for k, v in over.items()})
    return h


def test_parse_customer() -> None:
    key = secrets.token_bytes(32)
    got = sse.parse_customer(customer_headers(key))
    assert got is not None and got.key == key
    assert "key=" not in repr(got) and base64.b64encode(key).decode() not in repr(got)
    assert sse.parse_customer({}) is None
    src = sse.parse_customer(customer_headers(key, sse.COPY_SOURCE_CUSTOMER_PREFIX), sse.COPY_SOURCE_CUSTOMER_PREFIX)
    assert src is not None and src.key == key
    bad = [customer_headers(key, algorithm="AES128"), customer_headers(key, key_md5="AAAA"),
           customer_headers(key[:31]), {sse.CUSTOMER_PREFIX + "algorithm": "AES256"},
           {k: v for k, v in customer_headers(key).items() if not k.endswith("md5")},
           customer_headers(key, key="not base64!")]
    for headers in bad:
        with pytest.raises(InvalidArgument) as e:
            sse.parse_customer(headers)
        assert base64.b64encode(key).decode() not in str(e.value.fields) + str(e.value)


def test_parse_request() -> None:
    assert not sse.parse_request({}).given
    assert sse.parse_request({sse.H_SSE: "AES256"}).algorithm == "AES256"
    ctx = base64.b64encode(json.dumps({"a": "b"}).encode()).decode()
    req = sse.parse_request({sse.H_SSE: "aws:kms", sse.H_KMS_KEY: "alias/aws/s3", sse.H_CONTEXT: ctx,
                             sse.H_BUCKET_KEY: "TRUE"})
    assert req.kms_key_id == "alias/aws/s3" and req.context == {"a": "b"} and req.bucket_key is True
    for headers in ({sse.H_SSE: "aws:kms:dsse"}, {sse.H_SSE: "AES256", sse.H_KMS_KEY: "k"},
                    {sse.H_KMS_KEY: "k"}, {sse.H_SSE: "aws:kms", sse.H_CONTEXT: "bm90IGpzb24="},
                    {sse.H_SSE: "aws:kms", sse.H_CONTEXT: base64.b64encode(b'{"a": 1}').decode()},
                    {sse.H_SSE: "aws:kms", sse.H_BUCKET_KEY: "maybe"},
                    {sse.H_SSE: "AES256", **customer_headers(secrets.token_bytes(32))}):
        with pytest.raises(InvalidArgument):
            sse.parse_request(headers)
    with pytest.raises(KMSNotFound):
        sse.parse_request({sse.H_SSE: "aws:kms", sse.H_KMS_KEY: " "})


def test_context_hash_is_canonical() -> None:
    assert sse.context_hash({"a": "1", "b": "2"}) == sse.context_hash({"b": "2", "a": "1"})
    assert sse.context_hash(None) == sse.context_hash({})
    assert sse.context_hash({"a": "1"}) != sse.context_hash({"a": "2"})


def test_customer_layer_binds_key_and_blob() -> None:
    key, dek = secrets.token_bytes(32), secrets.token_bytes(32)
    layer = sse.CustomerLayer(key)
    sealed = layer.seal(dek, "blob-1")
    assert key not in sealed and dek not in sealed
    assert layer.open(sealed, "blob-1") == dek
    with pytest.raises(KeyError_):
        sse.CustomerLayer(secrets.token_bytes(32)).open(sealed, "blob-1")
    with pytest.raises(KeyError_):
        layer.open(sealed, "blob-2")  # cannot be moved to another blob
    md5 = hashlib.md5(b"data").digest()
    etag = layer.etag(md5)
    assert etag == layer.etag(md5) and md5.hex() not in etag and len(etag) == 34
    assert sse.CustomerLayer(secrets.token_bytes(32)).etag(md5) != etag


def test_kms_layer_binds_context() -> None:
    material, dek = secrets.token_bytes(32), secrets.token_bytes(32)
    a = sse.KmsLayer(material, "k1", sse.context_hash({"p": "x"}))
    sealed = a.seal(dek, "b")
    assert a.open(sealed, "b") == dek
    for other in (sse.KmsLayer(material, "k1", sse.context_hash({"p": "y"})),
                  sse.KmsLayer(material, "k2", sse.context_hash({"p": "x"})),
                  sse.KmsLayer(secrets.token_bytes(32), "k1", sse.context_hash({"p": "x"}))):
        with pytest.raises(KeyError_):
            other.open(sealed, "b")


def test_bucket_default_round_trip() -> None:
    d = sse.BucketDefault("aws:kms", "0b8c1a4e-0000-4000-8000-000000000000", True)
    assert sse.BucketDefault.loads(d.dumps()) == d
    assert sse.BucketDefault.loads(None) == sse.BucketDefault("AES256", None, False)
    assert sse.SseService.default_key_id("123456789012") == sse.SseService.default_key_id("123456789012")
    assert sse.SseService.default_key_id("123456789012") != sse.SseService.default_key_id("123456789013")
