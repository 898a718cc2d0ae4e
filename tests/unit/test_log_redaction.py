"""The server log: JSON lines, the request id, and redaction of every secret on every handler."""

from __future__ import annotations

import io
import json
import logging

import pytest

from coffre.observability.logs import (
    REDACTED,
    JsonFormatter,
    RedactingFilter,
    Redactor,
    RequestIdFilter,
    choose_format,
    configure_logging,
    request_id_var,
)

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
SIG = "fe5f80f77d5fa3beca038a248ff027d0445342fe2855ddc963176630326f1024"
AUTH_V4 = ("AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
           f"SignedHeaders=host;range;x-amz-date, Signature={SIG}")
AUTH_V2 = "AWS AKIAIOSFODNN7EXAMPLE:bWq2s1WEIj+Ydj0vQ697zp+IXMU="

CASES = [
    # (text, what must disappear, what must stay)
    (f"Authorization: {AUTH_V4}", [SIG, "AKIAIOSFODNN7EXAMPLE/2013"], ["Authorization: "]),
    (f"headers={{'Authorization': '{AUTH_V4}', 'Host': 'h'}}", [SIG, "SignedHeaders"], ["'Host': 'h'"]),
    (f'{{"authorization": "{AUTH_V2}", "x": 1}}', ["bWq2s1WEIj"], ['"x": 1']),
    (f"sent {AUTH_V4}", [SIG], ["sent AWS4-HMAC-SHA256 " + REDACTED]),
    (f"v2 {AUTH_V2} end", ["bWq2s1WEIj"], ["v2 AWS " + REDACTED]),
    (f"GET /b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1"
     f"&X-Amz-Date=20130524T000000Z&X-Amz-Signature={SIG} -> 200",
     [SIG, "AKIAIOSFODNN7EXAMPLE%2F"], ["X-Amz-Date=20130524T000000Z", "X-Amz-Signature=" + REDACTED, "-> 200"]),
    ("GET /b/k?AWSAccessKeyId=AKID&Signature=bWq2s1WEIj%2BYdj0v&Expires=1 -> 403",
     ["bWq2s1WEIj"], ["Expires=1", "Signature=" + REDACTED]),
    (f"10000;chunk-signature={SIG}\r\n", [SIG], ["10000;chunk-signature=" + REDACTED]),
    ("x-amz-security-token: FQoGZXIvYXdzEBYaDH", ["FQoGZXIvYXdzEBYaDH"], []),
    (f"aws_secret_access_key={SECRET}", [SECRET], ["aws_secret_access_key="]),
    (f'{{"SecretAccessKey": "{SECRET}"}}', [SECRET], []),
    (f"<SecretAccessKey>{SECRET}</SecretAccessKey>", [SECRET], ["</SecretAccessKey>"]),
    (f'form field x-amz-signature="{SIG}"', [SIG], []),
    ("nothing to hide: GET /bucket/key -> 404 NoSuchKey", [], ["nothing to hide: GET /bucket/key -> 404 NoSuchKey"]),
]


@pytest.mark.parametrize(("text", "gone", "kept"), CASES)
def test_patterns(text: str, gone: list[str], kept: list[str]):
    out = Redactor()(text)
    for g in gone:
        assert g not in out, out
    for k in kept:
        assert k in out, out


def test_literal_secrets_anywhere():
    r = Redactor(["my-root-secret-value", None, "short"])
    assert r("the value my-root-secret-value leaked") == f"the value {REDACTED} leaked"
    assert r("short stays") == "short stays"  # too short to be a secret worth garbling text for


def _logger(stream: io.StringIO, fmt: logging.Formatter) -> logging.Logger:
    logger = logging.getLogger("coffre.test.redaction")
    logger.handlers.clear()
    logger.propagate = False
    h = logging.StreamHandler(stream)
    h.setFormatter(fmt)
    h.addFilter(RequestIdFilter())
    h.addFilter(RedactingFilter(Redactor([SECRET])))
    logger.addHandler(h)
    logger.setLevel(logging.DEBUG)
    return logger


def test_args_exceptions_and_json_lines_are_scrubbed():
    stream = io.StringIO()
    log = _logger(stream, JsonFormatter())
    log.debug("request headers %s", {"Authorization": AUTH_V4})
    try:
        raise ValueError(f"bad key {SECRET}")
    except ValueError:
        log.exception("failed with %s", SECRET, extra={"request_id": "RID1"})
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) == 2
    text = stream.getvalue()
    assert SECRET not in text and SIG not in text
    assert lines[0]["level"] == "DEBUG" and lines[0]["logger"] == "coffre.test.redaction"
    assert "request_id" not in lines[0]
    assert lines[1]["request_id"] == "RID1"
    assert "ValueError: bad key " + REDACTED in lines[1]["exception"]
    assert lines[1]["message"] == f"failed with {REDACTED}"
    assert lines[1]["time"].endswith("Z")


def test_request_id_from_the_current_request():
    stream = io.StringIO()
    log = _logger(stream, JsonFormatter())
    token = request_id_var.set("RIDCTX")
    try:
        log.warning("inside")
    finally:
        request_id_var.reset(token)
    log.warning("outside")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["request_id"] == "RIDCTX"
    assert "request_id" not in second


def test_configure_logging_covers_every_handler_and_text_format():
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        configure_logging("DEBUG", "text", secrets=[SECRET], stream=stream)
        logging.getLogger("aiohttp.server").debug("raw %s", f"Authorization: {AUTH_V4}")  # a foreign logger
        logging.getLogger("coffre.x").info("secret %s", SECRET)
        text = stream.getvalue()
        assert SIG not in text and SECRET not in text
        assert "aiohttp.server [-] raw Authorization: " + REDACTED in text
        assert all(any(isinstance(f, RedactingFilter) for f in h.filters) for h in root.handlers)
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        logging.captureWarnings(False)


def test_choose_format():
    tty, pipe = io.StringIO(), io.StringIO()
    tty.isatty = lambda: True  # type: ignore[method-assign]
    assert choose_format("auto", tty) == "text"
    assert choose_format("auto", pipe) == "json"
    assert choose_format("JSON", tty) == "json"
    with pytest.raises(ValueError):
        choose_format("xml", pipe)
