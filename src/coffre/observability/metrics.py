"""A small Prometheus registry: counters, gauges and fixed-bucket histograms, text format 0.0.4.

Written here rather than taken from prometheus_client because recording sits on every request:
one record here is a dict lookup and a few additions, with no lock (all recording happens on
the event loop thread; a sample updated from a worker thread at worst loses an increment, it
never corrupts the registry). Rendering, which walks everything, happens only at scrape time.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

Labels = tuple[str, ...]
M = TypeVar("M", bound="Metric")

# Request latencies: from a cached HEAD (sub-millisecond) to a multi-GiB upload (minutes).
REQUEST_BUCKETS: tuple[float, ...] = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                      1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
# Store and key-provider calls: a cached SQLite read takes tens of microseconds.
STORE_BUCKETS: tuple[float, ...] = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def escape_label(value: str) -> str:
    """A label value as the text format writes it between double quotes."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 1 << 53:
        return str(int(value))
    return repr(float(value))


def _label_text(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{escape_label(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


class Metric:
    kind = "untyped"

    def __init__(self, name: str, help: str, labelnames: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help
        self.labelnames = tuple(labelnames)

    def samples(self) -> Iterable[str]:
        raise NotImplementedError

    def render(self) -> str:
        head = f"# HELP {self.name} {_escape_help(self.help)}\n# TYPE {self.name} {self.kind}\n"
        return head + "".join(line + "\n" for line in self.samples())

    def _check(self, labels: Labels) -> None:
        if len(labels) != len(self.labelnames):
            raise ValueError(f"{self.name}: expected labels {self.labelnames}, got {labels}")


class Counter(Metric):
    """A count the code increments, or one read from ``source`` at scrape time (a count kept by
    the runtime, such as the garbage collector's), which gives every series by its labels."""

    kind = "counter"

    def __init__(self, name: str, help: str, labelnames: Sequence[str] = (),
                 source: Callable[[], dict[Labels, float]] | None = None) -> None:
        if not name.endswith("_total"):
            raise ValueError(f"counter {name} must end in _total")
        super().__init__(name, help, labelnames)
        self.values: dict[Labels, float] = {}
        self.source = source

    def inc(self, labels: Labels = (), amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError("a counter only goes up")
        values = self.values
        if labels in values:
            values[labels] += amount
        else:
            self._check(labels)
            values[labels] = amount

    def samples(self) -> Iterable[str]:
        values = self.values
        if self.source is not None:
            try:
                values = self.source()
            except Exception:  # noqa: BLE001 - a broken source must not break the whole scrape
                return
            for labels in values:
                self._check(labels)
        for labels, value in sorted(values.items()):
            yield f"{self.name}{_label_text(self.labelnames, labels)} {format_value(value)}"


class Gauge(Metric):
    """A value set by the code, or read from ``source`` at scrape time (queue depths)."""

    kind = "gauge"

    def __init__(self, name: str, help: str, labelnames: Sequence[str] = (),
                 source: Callable[[], float] | None = None) -> None:
        super().__init__(name, help, labelnames)
        if source is not None and labelnames:
            raise ValueError("a gauge read from a source has no labels")
        self.source = source
        self.values: dict[Labels, float] = {}

    def set(self, value: float, labels: Labels = ()) -> None:
        self._check(labels)
        self.values[labels] = value

    def inc(self, labels: Labels = (), amount: float = 1.0) -> None:
        values = self.values
        if labels in values:
            values[labels] += amount
        else:
            self._check(labels)
            values[labels] = amount

    def dec(self, labels: Labels = (), amount: float = 1.0) -> None:
        self.inc(labels, -amount)

    def samples(self) -> Iterable[str]:
        if self.source is not None:
            try:
                value = float(self.source())
            except Exception:  # noqa: BLE001 - a broken source must not break the whole scrape
                value = math.nan
            yield f"{self.name} {format_value(value)}"
            return
        for labels, value in sorted(self.values.items()):
            yield f"{self.name}{_label_text(self.labelnames, labels)} {format_value(value)}"


class _Series:
    __slots__ = ("counts", "sum", "count")

    def __init__(self, n: int) -> None:
        self.counts = [0] * n  # per bucket, not cumulative (cumulated when rendered)
        self.sum = 0.0
        self.count = 0


class Histogram(Metric):
    kind = "histogram"

    def __init__(self, name: str, help: str, labelnames: Sequence[str] = (),
                 buckets: Sequence[float] = REQUEST_BUCKETS) -> None:
        super().__init__(name, help, labelnames)
        bounds = [float(b) for b in buckets if not math.isinf(b)]
        if not bounds or bounds != sorted(set(bounds)):
            raise ValueError(f"{name}: buckets must be strictly increasing")
        if "le" in self.labelnames:
            raise ValueError("'le' is reserved for histogram buckets")
        self.bounds = tuple(bounds)
        self.series: dict[Labels, _Series] = {}

    def observe(self, value: float, labels: Labels = ()) -> None:
        s = self.series.get(labels)
        if s is None:
            self._check(labels)
            s = self.series[labels] = _Series(len(self.bounds) + 1)
        # bisect_left: a value equal to a bound belongs to that bucket (le = "less or equal").
        s.counts[bisect_left(self.bounds, value)] += 1
        s.sum += value
        s.count += 1

    def samples(self) -> Iterable[str]:
        names = self.labelnames
        for labels, s in sorted(self.series.items()):
            running = 0
            for bound, n in zip((*self.bounds, math.inf), s.counts, strict=True):
                running += n
                le = 'le="' + format_value(bound) + '"'
                yield f"{self.name}_bucket{_label_text(names, labels, le)} {running}"
            yield f"{self.name}_sum{_label_text(names, labels)} {format_value(s.sum)}"
            yield f"{self.name}_count{_label_text(names, labels)} {s.count}"


class Registry:
    CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

    def __init__(self) -> None:
        self.metrics: dict[str, Metric] = {}

    def register(self, metric: M) -> M:
        if metric.name in self.metrics:
            raise ValueError(f"metric {metric.name} registered twice")
        self.metrics[metric.name] = metric
        return metric

    def counter(self, name: str, help: str, labelnames: Sequence[str] = (),
                source: Callable[[], dict[Labels, float]] | None = None) -> Counter:
        return self.register(Counter(name, help, labelnames, source))

    def gauge(self, name: str, help: str, labelnames: Sequence[str] = (),
              source: Callable[[], float] | None = None) -> Gauge:
        return self.register(Gauge(name, help, labelnames, source))

    def histogram(self, name: str, help: str, labelnames: Sequence[str] = (),
                  buckets: Sequence[float] = REQUEST_BUCKETS) -> Histogram:
        return self.register(Histogram(name, help, labelnames, buckets))

    def render(self) -> str:
        return "".join(m.render() for m in self.metrics.values())
