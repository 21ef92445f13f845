"""Harness for tests of zAuth on its own: real files, real threads, a clock the test moves.

``AuthCase`` gives each test a temporary workspace, builds zAuth instances that close at
cleanup, and checks refusals exactly (error class, code and sentence).
"""

from __future__ import annotations

import contextlib
import resource
import tempfile
import threading
import unittest
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from zCLI.auth import AuthError, zAuth
from zCLI.config import AuthConfig
from zCLI.exceptions import RequestError, StorageError

from .harness import timeout, wait_until

__all__ = ["AuthCase", "Clock", "file_size_limit"]


class Clock:
    """A monotonic clock the test sets; zAuth's throttle reads it."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class AuthCase(unittest.IsolatedAsyncioTestCase):
    """A temporary workspace, zAuth instances closed at cleanup, exact refusal checks."""

    def setUp(self) -> None:
        tmp = tempfile.TemporaryDirectory(prefix="ztest-auth-")
        self.addCleanup(tmp.cleanup)
        self.workspace = Path(tmp.name)
        self.state = self.workspace / ".zcli"
        self.clock = Clock()

    def auth(
        self, state: Path | None = None, *, clock: Clock | None = None, **config: Any
    ) -> zAuth:
        """A zAuth on ``state`` (default ``<workspace>/.zcli``) with these auth keys."""
        auth = (
            zAuth(AuthConfig(**config), state or self.state)
            if clock is None
            else zAuth(AuthConfig(**config), state or self.state, clock=clock)
        )
        self.addCleanup(auth.close)
        return auth

    @contextlib.contextmanager
    def assertRefused(
        self, code: str, message: str, kind: type[RequestError] = AuthError
    ) -> Iterator[None]:
        """The block raises ``kind`` with exactly this code and sentence."""
        with self.assertRaises(kind) as caught:
            yield
        self.assertEqual((caught.exception.code, caught.exception.message), (code, message))

    def assertStorageError(self, message: str) -> Any:
        return self.assertRefused("storage_error", message, StorageError)

    async def wait_until(self, condition: Callable[[], bool], units: float = 2) -> None:
        """Yield to the loop until ``condition()`` holds; fail after ``units`` timeouts."""
        await wait_until(condition, units)

    def hold_the_hash_worker(self, auth: zAuth) -> threading.Event:
        """Occupy a hashing thread until the returned event is set (at cleanup at the latest)."""
        gate = threading.Event()
        self.addCleanup(gate.set)
        self.assertIsNotNone(auth.hash_pool.submit(lambda: gate.wait(timeout(5))))
        return gate


@contextlib.contextmanager
def file_size_limit(size: int) -> Iterator[None]:
    """No file may grow past ``size`` bytes, as on a full disk; unlike modes, binds root.

    Python ignores SIGXFSZ, so a write past the limit fails with EFBIG. Nothing inside the
    block may print: a redirected stdout is a file too.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
