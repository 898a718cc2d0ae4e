"""The S3 listing rules written plainly in Python: the oracle listings are checked against."""

from __future__ import annotations


def reference(keys: list[str], prefix: str, delimiter: str, after: str) -> list[tuple[str, str]]:
    """What a listing holds, in UTF-8 byte order: ("key", k) and ("prefix", p) entries."""
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    a = after.encode()
    for k in sorted(keys, key=lambda s: s.encode()):
        if not k.startswith(prefix):
            continue
        i = k.find(delimiter, len(prefix)) if delimiter else -1
        if i >= 0:
            cp = k[: i + len(delimiter)]
            # A common prefix at or before the marker was listed before it.
            if cp.encode() > a and cp not in seen:
                seen.add(cp)
                out.append(("prefix", cp))
        elif k.encode() > a:
            out.append(("key", k))
    return out
