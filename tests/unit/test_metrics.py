"""The Prometheus registry: exposition format, label escaping, cumulative histogram buckets."""

from __future__ import annotations

import asyncio
import math

import pytest

from coffre.observability.metrics import Counter, Histogram, Registry, escape_label, format_value
from coffre.observability.timing import instrument


def test_counter_renders_help_type_and_sorted_samples():
    r = Registry()
    c = r.counter("coffre_things_total", "Things.\nTwo lines \\ slash.", ("op", "status"))
    c.inc(("PutObject", "200"))
    c.inc(("PutObject", "200"), 2)
    c.inc(("GetObject", "404"))
    assert r.render() == (
        "# HELP coffre_things_total Things.\\nTwo lines \\\\ slash.\n"
        "# TYPE coffre_things_total counter\n"
        'coffre_things_total{op="GetObject",status="404"} 1\n'
        'coffre_things_total{op="PutObject",status="200"} 3\n'
    )


def test_counter_rules():
    with pytest.raises(ValueError):
        Counter("coffre_things", "no _total suffix")
    c = Counter("coffre_x_total", "x", ("a",))
    with pytest.raises(ValueError):
        c.inc(("a",), -1)
    with pytest.raises(ValueError):
        c.inc(("a", "b"))  # wrong label arity
    r = Registry()
    r.counter("coffre_x_total", "x")
    with pytest.raises(ValueError):
        r.counter("coffre_x_total", "again")


def test_label_values_are_escaped():
    assert escape_label('a"b\\c\nd') == 'a\\"b\\\\c\\nd'
    r = Registry()
    r.counter("coffre_e_total", "e", ("v",)).inc(('say "hi"\\\n',))
    assert 'coffre_e_total{v="say \\"hi\\"\\\\\\n"} 1\n' in r.render()


def test_values_format():
    assert format_value(3.0) == "3"
    assert format_value(0.25) == "0.25"
    assert format_value(math.inf) == "+Inf"
    assert format_value(-math.inf) == "-Inf"
    assert format_value(math.nan) == "NaN"


def test_histogram_buckets_are_cumulative_and_bounds_inclusive():
    h = Histogram("coffre_lat_seconds", "lat", ("op",), buckets=(0.1, 0.5, 1.0))
    for v in (0.05, 0.1, 0.3, 0.5, 0.7, 2.0, 5.0):
        h.observe(v, ("get",))
    lines = list(h.samples())
    assert lines == [
        'coffre_lat_seconds_bucket{op="get",le="0.1"} 2',  # 0.05 and 0.1 (le: less or equal)
        'coffre_lat_seconds_bucket{op="get",le="0.5"} 4',
        'coffre_lat_seconds_bucket{op="get",le="1"} 5',
        'coffre_lat_seconds_bucket{op="get",le="+Inf"} 7',
        'coffre_lat_seconds_sum{op="get"} 8.65',
        'coffre_lat_seconds_count{op="get"} 7',
    ]


def test_histogram_rejects_bad_buckets_and_le_label():
    with pytest.raises(ValueError):
        Histogram("coffre_h_seconds", "h", buckets=(1.0, 0.5))
    with pytest.raises(ValueError):
        Histogram("coffre_h_seconds", "h", buckets=())
    with pytest.raises(ValueError):
        Histogram("coffre_h_seconds", "h", ("le",))


def test_gauges_set_and_read_at_scrape_time():
    r = Registry()
    g = r.gauge("coffre_g", "g")
    g.inc()
    g.inc()
    g.dec()
    depth = [5]
    r.gauge("coffre_depth", "d", source=lambda: depth[0])
    r.gauge("coffre_broken", "b", source=lambda: 1 / 0)
    depth[0] = 7
    text = r.render()
    assert "\ncoffre_g 1\n" in text
    assert "\ncoffre_depth 7\n" in text
    assert "\ncoffre_broken NaN\n" in text  # a failing source does not fail the scrape


class _Store:
    async def ping(self) -> None:
        pass

    async def fail(self) -> None:
        raise OSError("down")

    def wrap(self, x: int) -> int:
        return x + 1

    def helper(self) -> None:  # not part of the interface: not timed
        pass


class _Interface:
    async def ping(self) -> None: ...
    async def fail(self) -> None: ...
    def wrap(self, x: int) -> int: ...


def test_instrument_times_interface_methods_and_counts_errors():
    h = Histogram("coffre_s_seconds", "s", ("method",))
    errors = Counter("coffre_e_total", "e", ("component", "method"))
    store = instrument(_Store(), _Interface, h, errors, "blob")

    async def calls() -> None:
        await store.ping()
        await store.ping()
        with pytest.raises(OSError):
            await store.fail()

    asyncio.run(calls())
    assert store.wrap(1) == 2
    store.helper()
    assert h.series[("ping",)].count == 2
    assert h.series[("wrap",)].count == 1
    assert h.series[("fail",)].count == 1
    assert ("helper",) not in h.series
    assert errors.values == {("blob", "fail"): 1}


def test_readiness_reports_each_failed_or_slow_component():
    from coffre.observability.health import readiness

    async def ok() -> None:
        pass

    async def broken() -> None:
        raise OSError("blob directory is not writable")

    async def hung() -> None:
        await asyncio.sleep(30)

    ready, doc = asyncio.run(readiness({"metadata": ok, "blob": broken, "key_provider": hung}, timeout=0.2))
    assert not ready
    assert doc["status"] == "not ready" and doc["failed"] == ["blob", "key_provider"]
    comps = doc["components"]
    assert comps["metadata"]["status"] == "ok"
    assert comps["blob"]["error"] == "OSError: blob directory is not writable"
    assert "no answer within 0.2 s" in comps["key_provider"]["error"]
    assert comps["key_provider"]["seconds"] < 5
    ready, doc = asyncio.run(readiness({"metadata": ok}, timeout=1))
    assert ready and doc == {"status": "ready", "components": {"metadata": {"status": "ok",
                                                                            "seconds": doc["components"]["metadata"]["seconds"]}}}
