"""Tests that need something outside Python: one way to skip them, and to say why.

``requirement(probe, label)`` builds a decorator like ``requires_network``: it wraps a
test (sync or ``async def``) or every test of a class, and a class's ``setUpClass`` too,
so a class that starts a browser or a server there skips before trying. ``probe()``
returns None when the thing is there, or a sentence saying what is missing.

A requirement made with ``strict=True`` (a browser, a database server) fails instead of
skipping when ``ZTEST_STRICT=1``: CI sets it so that a machine without Chromium cannot
pass by skipping the browser tests. Network skips are never strict: the suites must
pass with loopback down.
"""

from __future__ import annotations

import functools
import inspect
import os
import unittest
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["STRICT_ENV", "requirement"]

STRICT_ENV = "ZTEST_STRICT"
T = TypeVar("T")


def _strict() -> bool:
    return os.environ.get(STRICT_ENV, "") not in ("", "0")


def requirement(
    probe: Callable[[], str | None], label: str, strict: bool = False
) -> Callable[[T], T]:
    """A decorator that skips (or, when strict under ZTEST_STRICT=1, fails) a test whose
    ``probe()`` names something missing; the skip reason is ``requires LABEL: why``."""

    def check() -> None:
        missing = probe()
        if missing is None:
            return
        if strict and _strict():
            raise AssertionError(f"requires {label}: {missing} ({STRICT_ENV}=1 forbids skipping)")
        raise unittest.SkipTest(f"requires {label}: {missing}")

    def decorate(target: T) -> T:
        if isinstance(target, type):
            for name, member in list(vars(target).items()):
                if name.startswith("test") and callable(member):
                    setattr(target, name, decorate(member))
            # Guard setUpClass whether the class defines it or inherits it (a base
            # class such as BrowserTestCase may be what starts the missing thing).
            original = next(
                vars(klass)["setUpClass"].__func__
                for klass in target.__mro__
                if "setUpClass" in vars(klass)
            )

            def setUpClass(cls: type) -> None:  # noqa: N802 (unittest's name)
                check()
                original(cls)

            target.setUpClass = classmethod(setUpClass)  # type: ignore[attr-defined]
            return target
        func: Callable[..., Any] = target  # type: ignore[assignment]
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                check()
                return await func(*args, **kwargs)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            check()
            return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
