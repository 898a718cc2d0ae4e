"""Lifecycle rules without a server: date math, filter matching, what is due for a key,
validation (the errors AWS answers), the XML schema and the stored form."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from coffre.core import lifecycle
from coffre.core.errors import InvalidArgument, InvalidRequest, MalformedXML
from coffre.core.lifecycle import (
    DELETE_MARKER,
    EXPIRE,
    EXPIRED_DELETE_MARKER,
    NONCURRENT,
    Configuration,
    Filter,
    Rule,
    due,
    plan_key,
    upload_due,
)
from coffre.meta.records import ObjectRecord, UploadRecord
from coffre.s3.handlers.lifecycle import parse, render

DAY = 86400


def ts(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()  # type: ignore[misc]


def version(key: str, vid: str, modified: float, *, marker: bool = False, size: int = 10,
            tags: dict[str, str] | None = None) -> ObjectRecord:
    return ObjectRecord(bucket="b", key=key, version_id=vid, size=0 if marker else size, etag="" if marker else '"e"',
                        last_modified=modified, tenant_id="t", owner="o", is_delete_marker=marker,
                        tags=tags or {})


# -- date math --
def test_due_rounds_up_to_the_next_midnight_utc():
    # AWS's example: created 2014-01-15 10:30 UTC, 3 days -> 2014-01-19 00:00 UTC.
    assert due(ts(2014, 1, 15, 10, 30), 3) == ts(2014, 1, 19)
    # Already on a midnight: stays there.
    assert due(ts(2014, 1, 15), 1) == ts(2014, 1, 16)
    assert due(ts(2014, 1, 15, 0, 0, 1), 1) == ts(2014, 1, 17)


def test_due_with_shortened_days():
    # With 2-second days, boundaries are the even seconds since the epoch.
    assert due(101.5, 1, 2.0) == 104.0
    assert due(100.0, 1, 2.0) == 102.0
    assert due(100.0, 3, 2.0) == 106.0


# -- matching --
def test_filter_matching():
    r = Rule("r", "Enabled", Filter("logs/", (("env", "dev"),), 100, 1000, lifecycle.AND), expiration_days=1)
    assert r.matches("logs/a", {"env": "dev", "x": "y"}, 500)
    assert not r.matches("data/a", {"env": "dev"}, 500)
    assert not r.matches("logs/a", {"env": "prod"}, 500)
    assert not r.matches("logs/a", {}, 500)
    assert not r.matches("logs/a", {"env": "dev"}, 100)  # strictly greater
    assert not r.matches("logs/a", {"env": "dev"}, 1000)  # strictly less
    # A delete marker has no tags: a tag condition never selects it; sizes do not apply to it.
    assert not r.matches("logs/a", {}, 0, delete_marker=True)
    sized = Rule("s", "Enabled", Filter("logs/", (), 100, None), expiration_days=1)
    assert sized.matches("logs/a", {}, 0, delete_marker=True)
    assert Rule("all", "Enabled", Filter(), expiration_days=1).matches("anything", {}, 0)


# -- what is due --
def test_current_expiration_unversioned_and_versioned():
    rule = Rule("r", "Enabled", Filter("a"), expiration_days=2)
    v = version("a1", "null", ts(2020, 1, 1, 12))
    assert plan_key([rule], [v], "", ts(2020, 1, 3, 23, 59)) == []
    [a] = plan_key([rule], [v], "", ts(2020, 1, 4))
    assert a.kind == EXPIRE and a.rule_id == "r"
    [a] = plan_key([rule], [v], "Enabled", ts(2020, 1, 4))
    assert a.kind == DELETE_MARKER
    [a] = plan_key([rule], [v], "Suspended", ts(2020, 1, 4))
    assert a.kind == DELETE_MARKER
    # Disabled rules and other prefixes do nothing.
    assert plan_key([Rule("r", "Disabled", Filter("a"), expiration_days=2)], [v], "", ts(2030, 1, 1)) == []
    assert plan_key([rule], [version("b", "null", 0)], "", ts(2030, 1, 1)) == []


def test_date_expiration():
    rule = Rule("r", "Enabled", Filter(), expiration_date=ts(2025, 1, 1))
    v = version("k", "null", ts(2024, 12, 31, 23))
    assert plan_key([rule], [v], "", ts(2024, 12, 31, 23, 59)) == []
    assert plan_key([rule], [v], "", ts(2025, 1, 1))[0].kind == EXPIRE


def test_noncurrent_expiration_keeps_newer_versions():
    rule = Rule("r", "Enabled", Filter(), noncurrent_days=1, newer_noncurrent=1)
    t0 = ts(2020, 1, 1, 12)
    vs = [version("k", f"v{i}", t0 + (4 - i) * 3600) for i in range(4)]  # v0 newest (latest)
    now = ts(2020, 1, 10)
    plan = plan_key([rule], vs, "Enabled", now)
    # v1 is the newest noncurrent version: kept; v2 and v3 go.
    assert [(a.kind, a.version.version_id, a.min_newer) for a in plan] == [(NONCURRENT, "v2", 1), (NONCURRENT, "v3", 1)]
    # The time a version became noncurrent is its successor's write time.
    assert plan[0].successor_modified == vs[1].last_modified
    # Not yet a day noncurrent (rounded up to midnight): nothing.
    assert plan_key([Rule("r", "Enabled", Filter(), noncurrent_days=1)], vs, "Enabled", ts(2020, 1, 1, 23)) == []
    # Unversioned buckets have no noncurrent versions.
    assert plan_key([rule], vs, "", now) == []


def test_noncurrent_after_a_delete_marker():
    rule = Rule("r", "Enabled", Filter(), noncurrent_days=1)
    vs = [version("k", "m", ts(2020, 1, 5), marker=True), version("k", "v1", ts(2020, 1, 1))]
    assert plan_key([rule], vs, "Enabled", ts(2020, 1, 5, 12)) == []
    [a] = plan_key([rule], vs, "Enabled", ts(2020, 1, 6))
    assert a.kind == NONCURRENT and a.version.version_id == "v1"


def test_current_expiration_first_then_nothing_else_this_pass():
    rule = Rule("r", "Enabled", Filter(), expiration_days=1, noncurrent_days=1)
    vs = [version("k", "v2", ts(2020, 1, 2)), version("k", "v1", ts(2020, 1, 1))]
    assert [a.kind for a in plan_key([rule], vs, "Enabled", ts(2020, 2, 1))] == [DELETE_MARKER]


def test_expired_delete_marker():
    eodm = Rule("r", "Enabled", Filter(), expired_object_delete_marker=True)
    marker = version("k", "m", ts(2020, 1, 1), marker=True)
    [a] = plan_key([eodm], [marker], "Enabled", ts(2020, 1, 1, 1))
    assert a.kind == EXPIRED_DELETE_MARKER
    # Not the only version: stays.
    assert plan_key([eodm], [marker, version("k", "v1", 0)], "Enabled", ts(2030, 1, 1)) == []
    # A Days expiration removes it too, once it is as old as the rule says.
    days = Rule("d", "Enabled", Filter(), expiration_days=3)
    assert plan_key([days], [marker], "Enabled", ts(2020, 1, 3)) == []
    assert plan_key([days], [marker], "Enabled", ts(2020, 1, 4))[0].kind == EXPIRED_DELETE_MARKER
    # A tag filter never selects a delete marker.
    tagged = Rule("t", "Enabled", Filter("", (("a", "b"),)), expiration_days=1)
    assert plan_key([tagged], [marker], "Enabled", ts(2030, 1, 1)) == []


def test_upload_due():
    rule = Rule("r", "Enabled", Filter("tmp/"), abort_days=2)
    up = UploadRecord(upload_id="u", bucket="b", key="tmp/x", tenant_id="t", owner="o", initiated=ts(2020, 1, 1, 8))
    assert upload_due([rule], up, ts(2020, 1, 3, 23)) is None
    assert upload_due([rule], up, ts(2020, 1, 4)) is rule
    other = UploadRecord(upload_id="u", bucket="b", key="keep/x", tenant_id="t", owner="o", initiated=0)
    assert upload_due([rule], other, ts(2030, 1, 1)) is None


# -- validation --
def _rules(xml_rules: str) -> list[Rule]:
    return parse(f"<LifecycleConfiguration>{xml_rules}</LifecycleConfiguration>".encode())


def _check(xml_rules: str) -> None:
    lifecycle.validate(_rules(xml_rules))


EXP = "<Expiration><Days>1</Days></Expiration>"


@pytest.mark.parametrize("body", [
    "<Rule><ID>a</ID><Filter/><Status>enabled</Status>" + EXP + "</Rule>",  # Status is case-sensitive
    "<Rule><ID>a</ID><Filter/>" + EXP + "</Rule>",  # no Status
    "<Rule><ID>a</ID><Status>Enabled</Status>" + EXP + "</Rule>",  # neither Filter nor Prefix
    "<Rule><ID>a</ID><Prefix>x</Prefix><Filter/><Status>Enabled</Status>" + EXP + "</Rule>",  # both
    "<Rule><ID>a</ID><Filter><Prefix>x</Prefix><Tag><Key>k</Key><Value>v</Value></Tag></Filter>"
    "<Status>Enabled</Status>" + EXP + "</Rule>",  # two conditions outside And
    "<Rule><ID>a</ID><Filter/><Status>Enabled</Status><Expiration><Days>1</Days><Date>2030-01-01T00:00:00Z</Date>"
    "</Expiration></Rule>",
    "<Rule><ID>a</ID><Filter/><Status>Enabled</Status><Expiration><Days>1</Days>"
    "<ExpiredObjectDeleteMarker>true</ExpiredObjectDeleteMarker></Expiration></Rule>",
    "<Rule><ID>a</ID><Filter/><Status>Enabled</Status><Expiration><Days>x</Days></Expiration></Rule>",
    "<Rule><ID>a</ID><Filter/><Status>Enabled</Status><Expiration><Date>tomorrow</Date></Expiration></Rule>",
    "<Rule><ID>a</ID><Filter/><Status>Enabled</Status><Unknown/>" + EXP + "</Rule>",
    "",  # no rule at all
])
def test_malformed(body: str):
    with pytest.raises(MalformedXML):
        _check(body)


@pytest.mark.parametrize(("body", "error", "message"), [
    ("<Rule><ID>a</ID><Filter/><Status>Enabled</Status><Expiration><Days>0</Days></Expiration></Rule>",
     InvalidArgument, "'Days' for Expiration action must be a positive integer"),
    ("<Rule><ID>a</ID><Filter/><Status>Enabled</Status><Expiration><Date>2030-01-01T12:00:00Z</Date></Expiration>"
     "</Rule>", InvalidArgument, "'Date' must be at midnight GMT"),
    ("<Rule><ID>" + "a" * 256 + "</ID><Filter/><Status>Enabled</Status>" + EXP + "</Rule>",
     InvalidArgument, "ID length should not exceed allowed limit of 255"),
    ("<Rule><ID>a</ID><Filter/><Status>Enabled</Status>" + EXP + "</Rule>"
     "<Rule><ID>a</ID><Filter/><Status>Enabled</Status>" + EXP + "</Rule>",
     InvalidArgument, "Rule ID must be unique. Found same ID for more than one rule"),
    ("<Rule><ID>a</ID><Filter/><Status>Enabled</Status></Rule>",
     InvalidRequest, "At least one action needs to be specified in a rule"),
    ("<Rule><ID>a</ID><Filter/><Status>Enabled</Status><NoncurrentVersionExpiration><NoncurrentDays>0"
     "</NoncurrentDays></NoncurrentVersionExpiration></Rule>",
     InvalidArgument, "'NoncurrentDays' for NoncurrentVersionExpiration action must be a positive integer"),
    ("<Rule><ID>a</ID><Filter/><Status>Enabled</Status><NoncurrentVersionExpiration><NoncurrentDays>1"
     "</NoncurrentDays><NewerNoncurrentVersions>101</NewerNoncurrentVersions></NoncurrentVersionExpiration></Rule>",
     InvalidArgument, "'NewerNoncurrentVersions'"),
    ("<Rule><ID>a</ID><Filter/><Status>Enabled</Status><AbortIncompleteMultipartUpload><DaysAfterInitiation>0"
     "</DaysAfterInitiation></AbortIncompleteMultipartUpload></Rule>",
     InvalidArgument, "'DaysAfterInitiation' for AbortIncompleteMultipartUpload action must be a positive integer"),
    ("<Rule><ID>a</ID><Filter><Tag><Key>k</Key><Value>v</Value></Tag></Filter><Status>Enabled</Status>"
     "<AbortIncompleteMultipartUpload><DaysAfterInitiation>1</DaysAfterInitiation>"
     "</AbortIncompleteMultipartUpload></Rule>",
     InvalidRequest, "AbortIncompleteMultipartUpload cannot be specified with Tags."),
    ("<Rule><ID>a</ID><Filter><Tag><Key>k</Key><Value>v</Value></Tag></Filter><Status>Enabled</Status>"
     "<Expiration><ExpiredObjectDeleteMarker>true</ExpiredObjectDeleteMarker></Expiration></Rule>",
     InvalidRequest, "ExpiredObjectDeleteMarker cannot be specified with a tag-based filter"),
    ("<Rule><ID>a</ID><Filter><And><ObjectSizeGreaterThan>10</ObjectSizeGreaterThan><ObjectSizeLessThan>10"
     "</ObjectSizeLessThan></And></Filter><Status>Enabled</Status>" + EXP + "</Rule>",
     InvalidRequest, "ObjectSizeGreaterThan must be less than ObjectSizeLessThan"),
    ("<Rule><ID>a</ID><Filter><And><Tag><Key>k</Key><Value>1</Value></Tag><Tag><Key>k</Key><Value>2</Value></Tag>"
     "</And></Filter><Status>Enabled</Status>" + EXP + "</Rule>",
     InvalidRequest, "Duplicate Tag Keys are not allowed."),
    ("<Rule><ID>a</ID><Filter/><Status>Enabled</Status><Transition><Days>30</Days>"
     "<StorageClass>GLACIER</StorageClass></Transition>" + EXP + "</Rule>",
     InvalidRequest, "GLACIER"),
])
def test_refused(body: str, error: type[Exception], message: str):
    with pytest.raises(error) as e:
        _check(body)
    assert message in str(e.value)


def test_too_many_rules():
    one = "<Rule><Filter><Prefix>p{}</Prefix></Filter><Status>Enabled</Status>" + EXP + "</Rule>"
    rules = _rules("".join(one.format(i) for i in range(1000)))
    lifecycle.validate(rules)
    with pytest.raises(InvalidRequest):
        _check("".join(one.format(i) for i in range(1001)))


# -- the document, stored and given back --
def test_round_trip_keeps_the_shape():
    body = (
        "<Rule><ID>legacy</ID><Prefix>old/</Prefix><Status>Enabled</Status>" + EXP + "</Rule>"
        "<Rule><ID>empty</ID><Filter></Filter><Status>Disabled</Status>"
        "<Expiration><Date>2030-01-01T00:00:00.000Z</Date></Expiration></Rule>"
        "<Rule><ID>tag</ID><Filter><Tag><Key>k</Key><Value>v</Value></Tag></Filter><Status>Enabled</Status>"
        "<NoncurrentVersionExpiration><NoncurrentDays>3</NoncurrentDays><NewerNoncurrentVersions>2"
        "</NewerNoncurrentVersions></NoncurrentVersionExpiration></Rule>"
        "<Rule><ID>and</ID><Filter><And><Prefix>p/</Prefix><Tag><Key>a</Key><Value>1</Value></Tag>"
        "<ObjectSizeGreaterThan>5</ObjectSizeGreaterThan></And></Filter><Status>Enabled</Status>"
        "<Expiration><ExpiredObjectDeleteMarker>false</ExpiredObjectDeleteMarker></Expiration>"
        "<AbortIncompleteMultipartUpload><DaysAfterInitiation>7</DaysAfterInitiation>"
        "</AbortIncompleteMultipartUpload></Rule>"
        "<Rule><Filter><ObjectSizeLessThan>100</ObjectSizeLessThan></Filter><Status>Enabled</Status>"
        + EXP + "</Rule>"
    )
    rules = _rules(body)
    config = Configuration(tuple(rules))
    stored = Configuration.loads(config.dumps())
    assert stored == config
    again = parse(render(stored).bytes())
    assert again == rules
    # A rule given without an ID gets one.
    assert rules[-1].id and len(rules[-1].id) <= 255
    assert rules[1].expiration_date == ts(2030, 1, 1)


def test_date_parsing():
    assert lifecycle.parse_date("2030-01-01T00:00:00Z") == ts(2030, 1, 1)
    assert lifecycle.parse_date("2030-01-01T01:00:00+01:00") == ts(2030, 1, 1)
    assert lifecycle.parse_date("2030-01-01") == ts(2030, 1, 1)
    assert time.gmtime(lifecycle.parse_date("2030-01-01T00:00:00.000Z")).tm_hour == 0
