"""The server log: one JSON object per line, the request id on every line a request causes,
and no secret ever written.

Redaction is a filter on every handler (not on loggers: a logger's filter misses the records
its children propagate, aiohttp's included). It rewrites the message, its arguments and the
exception text before any formatter sees them, so the text format is scrubbed the same way.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time
from collections.abc import Iterable
from typing import Any, TextIO

REDACTED = "[REDACTED]"

# Set by the S3 front end when a request arrives; aiohttp runs each request in its own task,
# so the value is scoped to that request and to what it calls.
request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("coffre_request_id", default=None)

_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    # An Authorization header however it is printed ("Authorization: v", 'authorization': 'v',
    # authorization=v): the value runs to a quote or the end of the line.
    (re.compile(r"""(?i)(\bauthorization["']?\s*[:=]\s*["']?)[^"'\r\n]*"""), r"\1" + REDACTED),
    # Authorization values on their own (SigV4 and SigV2 schemes).
    (re.compile(r"AWS4-HMAC-SHA256[ \t]+Credential=[^\r\n\"']*"), "AWS4-HMAC-SHA256 " + REDACTED),
    (re.compile(r"\bAWS [A-Za-z0-9]{8,128}:[A-Za-z0-9+/=]{20,}"), "AWS " + REDACTED),
    # Signatures and credentials in query strings, headers, chunk headers and form fields.
    (re.compile(r"""(?i)\b((?:x-amz-)?signature|chunk-signature|x-amz-credential|x-amz-security-token"""
                r"""|credential)(["']?\s*[=:]\s*["']?)[^\s&,;"'<>]+"""),
     r"\1\2" + REDACTED),
    # Anything named as a secret or a key (secret_key=..., "SecretAccessKey": "...").
    (re.compile(r"""(?i)\b([a-z_-]*(?:secret|password|passwd|private[_-]?key|signing[_-]?key|session[_-]?token)"""
                r"""[a-z_-]*)(["']?\s*[=:]\s*["']?)[^\s&,;"'<>]+"""),
     r"\1\2" + REDACTED),
    (re.compile(r"(?i)(<(?:SecretAccessKey|SessionToken|Signature)>)[^<]*"), r"\1" + REDACTED),
)


class Redactor:
    """Scrubs the fixed patterns above and the literal secrets this process knows (the root secret)."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        # Short strings are not secrets worth a substitution that would garble ordinary text.
        self.literals = sorted({s for s in secrets if s and len(s) >= 8}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for literal in self.literals:
            if literal in text:
                text = text.replace(literal, REDACTED)
        for pattern, repl in _RULES:
            text = pattern.sub(repl, text)
        return text


class RedactingFilter(logging.Filter):
    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redact = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_coffre_redacted", False):  # one record, several handlers
            return True
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string: log what there is
            message = f"{record.msg!r} {record.args!r}"
        record.msg = self.redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        if record.exc_info:
            # The formatter prints exc_text; the live exception object (whose str may hold a
            # secret) is dropped so no later formatter renders it again unscrubbed.
            record.exc_info = None
        record._coffre_redacted = True
        return True


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` from the current request when the call did not pass one."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id_var.get() or "-"
        return True


def _utc(created: float) -> str:
    seconds = int(created)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int((created - seconds) * 1000):03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC), level, logger, message, request_id, exception."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": _utc(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", None)
        if rid and rid != "-":
            out["request_id"] = rid
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exception"] = record.exc_text
        if record.stack_info:
            out["stack"] = record.stack_info
        # ensure_ascii: bytes a client sent that are not UTF-8 (kept as surrogates) stay printable.
        return json.dumps(out, ensure_ascii=True)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


def choose_format(setting: str, stream: TextIO) -> str:
    """``auto``: text on a terminal (a person reads it), JSON otherwise (a collector reads it)."""
    fmt = setting.lower()
    if fmt == "auto":
        return "text" if stream.isatty() else "json"
    if fmt not in ("json", "text"):
        raise ValueError(f"log_format must be auto, json or text, not {setting!r}")
    return fmt


def configure_logging(level: str = "INFO", fmt: str = "auto", secrets: Iterable[str | None] = (),
                      stream: TextIO | None = None) -> logging.Handler:
    """Install the one root handler (stderr by default); every handler on root gets the filters."""
    stream = stream or sys.stderr
    chosen = choose_format(fmt, stream)
    root = logging.getLogger()
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if chosen == "json" else logging.Formatter(TEXT_FORMAT))
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    redactor = Redactor(secrets)
    for h in root.handlers:
        h.addFilter(RequestIdFilter())
        h.addFilter(RedactingFilter(redactor))
    logging.captureWarnings(True)
    return handler
