"""scrypt password hashes, and the bounded thread pool zAuth hashes in.

A hash takes tens of milliseconds of CPU on purpose. ``hashlib.scrypt`` releases the
GIL while it works, so hashing in threads keeps the event loop and zServer's threads
responsive; the pool has a fixed number of workers and a fixed number of waiting
places, so a crowd of sign-ins is refused at once instead of queueing without end.

An unknown user is checked against ``DUMMY_HASH``, a hash with the same parameters, so
"no such user" takes as long as "wrong password" and names cannot be found by timing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

__all__ = ["DUMMY_HASH", "HashPool", "hash_password", "verify_password"]

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
DIGEST_SIZE = 32

T = TypeVar("T")


def _stored(salt: bytes, digest: bytes) -> str:
    """``scrypt$n$r$p$salt$hash``, the form the user stores keep."""
    b64 = base64.b64encode
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


def hash_password(password: str, salt: bytes | None = None) -> str:
    """The stored form of ``password`` with a random 16-byte salt."""
    salt = salt or os.urandom(16)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=DIGEST_SIZE
    )
    return _stored(salt, digest)


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored``; False for any malformed stored hash."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
        )
    except (ValueError, TypeError):  # includes a password that is not valid UTF-8
        return False
    return hmac.compare_digest(actual, expected)


def _dummy_hash() -> str:
    """A well-formed hash nobody knows the password of; made without hashing anything."""
    return _stored(os.urandom(16), os.urandom(DIGEST_SIZE))


DUMMY_HASH = _dummy_hash()


class HashPool:
    """``workers`` hashing threads and at most ``waiting`` sign-ins queued behind them.

    ``submit`` never blocks: when every place is taken it returns None and the caller
    refuses the sign-in. ``busy``, ``completed`` and ``refused`` say what is happening,
    for tests and metrics.
    """

    def __init__(self, workers: int, waiting: int) -> None:
        self.capacity = workers + waiting
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="zAuth-hash")
        self._lock = threading.Lock()
        self._taken = 0
        self.completed = 0
        self.refused = 0

    @property
    def busy(self) -> int:
        """Places taken: work running or waiting for a thread."""
        with self._lock:
            return self._taken

    def submit(self, work: Callable[[], T]) -> Future[T] | None:
        """Run ``work`` on a hashing thread, or return None at once when the pool is full."""
        with self._lock:
            if self._taken >= self.capacity:
                self.refused += 1
                return None
            self._taken += 1
        try:
            future = self._executor.submit(self._run, work)
        except BaseException:
            self._release()
            raise
        future.add_done_callback(self._release)
        return future

    def _run(self, work: Callable[[], T]) -> T:
        try:
            return work()
        finally:
            with self._lock:
                self.completed += 1

    def _release(self, _done: object = None) -> None:
        with self._lock:
            self._taken -= 1

    def close(self) -> None:
        """Stop the threads; sign-ins still waiting are cancelled."""
        self._executor.shutdown(wait=True, cancel_futures=True)
