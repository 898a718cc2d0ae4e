"""HTTP preconditions with AWS's precedence rules."""

from __future__ import annotations

from email.utils import formatdate

import pytest

from coffre.core.conditions import ReadConditions, etag_matches, parse_http_date
from coffre.core.errors import NotModified, PreconditionFailed

ETAG = '"abc123"'
LM = 1_700_000_000.4  # sub-second part: HTTP dates have one-second resolution
BEFORE = formatdate(LM - 3600, usegmt=True)
EXACT = formatdate(int(LM), usegmt=True)
AFTER = formatdate(LM + 3600, usegmt=True)


def check(copy_source: bool = False, **kw: str) -> None:
    ReadConditions(**kw).check(ETAG, LM, copy_source=copy_source)


def test_etag_matching():
    assert etag_matches('"abc123"', ETAG)
    assert etag_matches("abc123", ETAG)
    assert etag_matches('W/"abc123"', ETAG)
    assert etag_matches('"x", "abc123"', ETAG)
    assert etag_matches("*", ETAG)
    assert not etag_matches('"abc"', ETAG)
    assert not etag_matches("", ETAG)


def test_http_dates():
    assert parse_http_date(EXACT) == int(LM)
    assert parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT") == 784111777
    assert parse_http_date("not a date") is None
    assert parse_http_date(None) is None


def test_no_conditions():
    check()


def test_if_match():
    check(if_match=ETAG)
    with pytest.raises(PreconditionFailed):
        check(if_match='"other"')


def test_if_none_match():
    check(if_none_match='"other"')
    with pytest.raises(NotModified):
        check(if_none_match=ETAG)
    with pytest.raises(NotModified):
        check(if_none_match="*")


def test_if_modified_since():
    check(if_modified_since=BEFORE)
    with pytest.raises(NotModified):
        check(if_modified_since=EXACT)
    with pytest.raises(NotModified):
        check(if_modified_since=AFTER)
    check(if_modified_since="garbage")


def test_if_unmodified_since():
    check(if_unmodified_since=AFTER)
    check(if_unmodified_since=EXACT)
    with pytest.raises(PreconditionFailed):
        check(if_unmodified_since=BEFORE)


def test_if_match_true_overrides_if_unmodified_since_false():
    check(if_match=ETAG, if_unmodified_since=BEFORE)


def test_if_none_match_false_overrides_if_modified_since_true():
    with pytest.raises(NotModified):
        check(if_none_match=ETAG, if_modified_since=BEFORE)


def test_if_none_match_true_ignores_if_modified_since():
    check(if_none_match='"other"', if_modified_since=AFTER)


def test_412_before_304():
    with pytest.raises(PreconditionFailed):
        check(if_match='"other"', if_none_match=ETAG)
    with pytest.raises(PreconditionFailed):
        check(if_unmodified_since=BEFORE, if_modified_since=AFTER)


def test_copy_source_failures_are_all_412():
    with pytest.raises(PreconditionFailed):
        check(copy_source=True, if_none_match=ETAG)
    with pytest.raises(PreconditionFailed):
        check(copy_source=True, if_modified_since=AFTER)
    with pytest.raises(PreconditionFailed):
        check(copy_source=True, if_none_match=ETAG, if_modified_since=BEFORE)
    check(copy_source=True, if_match=ETAG, if_unmodified_since=BEFORE)


def test_failed_condition_names_the_header():
    with pytest.raises(PreconditionFailed) as e:
        check(if_match='"x"')
    assert e.value.fields["condition"] == "If-Match"
    with pytest.raises(PreconditionFailed) as e:
        check(if_unmodified_since=BEFORE)
    assert e.value.fields["condition"] == "If-Unmodified-Since"
