"""Latency of the stores and the key provider, measured around their public calls.

The wiring wraps each instance's public methods (instance attributes shadowing the class's),
so the backends stay untouched and a method added to a backend later is timed too. The label
is the method name: a fixed, small set.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any

from coffre.observability.metrics import Counter, Histogram

# Not timed: the life cycle, and async generators (blob reads), whose time is paced by the
# client reading the response rather than by the store.
_SKIP = frozenset({"open", "close"})


def instrument(obj: Any, interface: type, histogram: Histogram, errors: Counter, store: str) -> Any:
    """Time the calls ``obj`` serves as an ``interface`` into ``histogram``; count the ones that raise.

    Only the interface's methods: a backend's own helpers would add labels no dashboard expects.
    """
    names = sorted({n for klass in interface.__mro__ if klass is not object
                    for n, v in vars(klass).items() if not n.startswith("_") and callable(v)} - _SKIP)
    for name in names:
        member = inspect.getattr_static(obj, name, None)
        if isinstance(member, (staticmethod, classmethod)):
            member = member.__func__
        if member is None or inspect.isasyncgenfunction(member):
            continue
        bound = getattr(obj, name)
        if inspect.iscoroutinefunction(member):
            setattr(obj, name, _timed_async(bound, histogram, errors, (store, name), (name,)))
        elif callable(member):
            setattr(obj, name, _timed_sync(bound, histogram, errors, (store, name), (name,)))
    return obj


def _timed_async(fn: Callable[..., Awaitable[Any]], histogram: Histogram, errors: Counter,
                 error_labels: tuple[str, str], labels: tuple[str]) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(fn)
    async def timed(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return await fn(*args, **kwargs)
        except Exception:
            errors.inc(error_labels)
            raise
        finally:
            histogram.observe(time.perf_counter() - t0, labels)
    return timed


def _timed_sync(fn: Callable[..., Any], histogram: Histogram, errors: Counter,
                error_labels: tuple[str, str], labels: tuple[str]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def timed(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        except Exception:
            errors.inc(error_labels)
            raise
        finally:
            histogram.observe(time.perf_counter() - t0, labels)
    return timed
