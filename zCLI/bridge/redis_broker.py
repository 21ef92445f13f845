"""``RedisBroker``: the processes of one service, joined through one Redis database.

Messages (``broker.Deliver``, ``broker.Revoke``) go over one pub/sub channel,
``zcli:bridge:events:<DB>`` (Redis pub/sub ignores the database number, so the channel
carries it: services on other databases of one Redis never hear each other); every
process subscribes and ignores its own. Presence is a
Redis set per process, ``zcli:bridge:node:<node>``, of the users signed in there; it
expires ``presence_ttl`` seconds after the process last refreshed it (every third of
that), so a process that dies without a word leaves no one online for long. A
revocation is also a key, ``zcli:bridge:revoked:<jti>``, that lives as long as the
token could, so a process that starts (or comes back) later refuses it too. Use one
Redis database per service: the names are the same for every service.

The link is a small state machine (``Link``, its transitions in ``TRANSITIONS``). One
supervisor task connects, subscribes, writes this process's presence and revocations
afresh, then runs the reader, the writer and the heartbeat until one of them loses
Redis; it then waits (doubling from ``BACKOFF_FIRST`` to ``BACKOFF_MOST``, with jitter)
and connects again. While Redis is away, ``publish`` answers a future that is already
False (nothing is queued to go later), presence calls are dropped (the reconnection
rewrites presence whole), and one warning says the broker is unavailable; one info
line says when it is back.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import logging
import random
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline, PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from ..exceptions import StateError
from .broker import (
    Broker,
    BrokerMessage,
    BrokerMessageError,
    BrokerUnavailable,
    Receiver,
    Revoke,
    encode_message,
    parse_message,
)
from .limits import LogThrottle

__all__ = ["BACKOFF_FIRST", "BACKOFF_MOST", "PREFIX", "TRANSITIONS", "Link", "RedisBroker"]

log = logging.getLogger("zCLI.zBifrost")
PREFIX = "zcli:bridge:"
BACKOFF_FIRST = 0.05  # seconds before the first reconnection attempt
BACKOFF_MOST = 2.0
SOCKET_TIMEOUT = 5.0  # a command Redis does not answer in this long: the link is lost
QUEUE_SIZE = 10_000  # messages waiting for the writer; past this, publish fails
BATCH = 256  # commands the writer sends in one round trip at most
Lost = (RedisError, OSError)


class Link(enum.Enum):
    STOPPED = "stopped"
    CONNECTING = "connecting"
    UP = "up"
    DOWN = "down"


# (state, what happened) -> the next state. Everything else is a StateError.
TRANSITIONS: dict[tuple[Link, str], Link] = {
    (Link.STOPPED, "start"): Link.CONNECTING,
    (Link.CONNECTING, "connected"): Link.UP,
    (Link.CONNECTING, "failed"): Link.DOWN,
    (Link.UP, "lost"): Link.DOWN,
    (Link.DOWN, "connected"): Link.UP,
    (Link.DOWN, "failed"): Link.DOWN,
    (Link.DOWN, "lost"): Link.DOWN,
    (Link.CONNECTING, "stop"): Link.STOPPED,
    (Link.UP, "stop"): Link.STOPPED,
    (Link.DOWN, "stop"): Link.STOPPED,
}

Command = tuple[Callable[[Pipeline], Any], "asyncio.Future[bool] | None"]


class RedisBroker(Broker):
    def __init__(self, url: str, presence_ttl: float, max_size: int) -> None:
        super().__init__()
        self.url = self._url = url
        self.presence_ttl = presence_ttl
        self.max_size = max_size  # a longer message on the channel is dropped
        self.channel = f"{PREFIX}events:{_database(url)}"
        self.node_key = f"{PREFIX}node:{self.node}"
        self.state = Link.STOPPED
        self.dropped = 0  # messages on the channel that were not ours: logged and dropped
        self._down_since = 0.0
        self._drops = LogThrottle()
        self._own_revocations: dict[str, float] = {}  # jti -> expires, published again
        self._receive: Receiver = _ignore
        self._local_users: Callable[[], frozenset[str]] = frozenset
        self._redis: Redis | None = None
        self._queue: asyncio.Queue[Command] = asyncio.Queue(QUEUE_SIZE)
        self._up = asyncio.Event()
        self._tried = asyncio.Event()  # the first connection attempt has ended
        self._task: asyncio.Task[None] | None = None
        self._links: list[asyncio.Task[None]] = []  # reader, writer, heartbeat while up

    # --- the link's state ---------------------------------------------------------------

    def _go(self, event: str, why: object = None) -> None:
        try:
            after = TRANSITIONS[self.state, event]
        except KeyError:
            raise StateError(
                f"The Redis broker's link is {self.state.value}: {event!r} cannot happen now."
            ) from None
        before, self.state = self.state, after
        if after is Link.UP:
            self._up.set()
            if before is Link.DOWN:
                away = time.monotonic() - self._down_since
                log.info("broker %s is back after %.1f s", self.url, away)
        else:
            self._up.clear()
        if after is Link.DOWN and before is not Link.DOWN:
            self._down_since = time.monotonic()
            log.warning(
                "broker %s is unavailable (%s): delivery to other processes fails until it is back",
                self.url,
                _reason(why),
            )
            self._fail_queued()

    @property
    def available(self) -> bool:
        return self.state is Link.UP

    async def wait_available(self) -> None:
        """Until the link is up (for tests and for plugins that would rather wait)."""
        await self._up.wait()

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self, receive: Receiver, local_users: Callable[[], frozenset[str]]) -> None:
        """Start the supervisor; return once the first attempt to connect has ended
        (up, or down and retrying: the bridge serves its own clients either way)."""
        self._receive, self._local_users = receive, local_users
        # made afresh in the loop that serves (a bridge may be started again in another)
        self._queue, self._up, self._tried = (
            asyncio.Queue(QUEUE_SIZE),
            asyncio.Event(),
            asyncio.Event(),
        )
        self._go("start")
        self._task = asyncio.create_task(self._supervise(), name="zBifrost broker")
        self._task.add_done_callback(_log_failure)
        await self._tried.wait()

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        redis = self._redis
        if redis is not None and self.state is Link.UP:
            try:  # leave at once rather than when the presence key expires
                await asyncio.wait_for(redis.delete(self.node_key), SOCKET_TIMEOUT)
            except (*Lost, TimeoutError):
                pass
        task.cancel()
        # redis-py can swallow a cancellation inside a command, and the task then waits
        # again (the writer on its queue): cancel the link tasks still running until the
        # supervisor has ended, for SOCKET_TIMEOUT at most
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SOCKET_TIMEOUT
        while not task.done() and loop.time() < deadline:
            await asyncio.wait({task}, timeout=0.05)
            for link in self._links:
                if not link.done():
                    link.cancel()
        if task.done():
            await asyncio.gather(task, return_exceptions=True)
        else:
            log.error("the broker's tasks did not stop within %g s", SOCKET_TIMEOUT)
        self._go("stop")
        self._fail_queued()

    async def _supervise(self) -> None:
        try:
            await self._connect_for_ever()
        finally:
            self._tried.set()  # start() never waits on a link that ended by a bug

    async def _connect_for_ever(self) -> None:
        delay = BACKOFF_FIRST
        while True:
            self._redis = Redis.from_url(
                self._url,
                retry=Retry(NoBackoff(), 0),  # we reconnect ourselves, and say so
                socket_timeout=SOCKET_TIMEOUT,
                socket_connect_timeout=SOCKET_TIMEOUT,
            )
            pubsub = self._redis.pubsub()
            try:
                written = await self._connect(self._redis, pubsub)
            except Lost as exc:
                self._go("failed", exc)
                self._tried.set()
            else:
                self._go("connected")
                self._tried.set()
                self._catch_up(*written)
                delay = BACKOFF_FIRST
                try:
                    async with asyncio.TaskGroup() as tasks:
                        self._links = [
                            tasks.create_task(self._read(pubsub)),
                            tasks.create_task(self._write(self._redis)),
                            tasks.create_task(self._heartbeat(self._redis)),
                        ]
                except* Lost as group:
                    self._go("lost", group.exceptions[0])
            finally:
                await _close(self._redis, pubsub)
            await asyncio.sleep(delay * random.uniform(0.5, 1.5))  # backoff, not a sync
            delay = min(delay * 2, BACKOFF_MOST)

    async def _connect(self, redis: Redis, pubsub: PubSub) -> tuple[frozenset[str], set[str]]:
        """Subscribe first, then write presence and revocations afresh and read the
        others' revocations: nothing said after this point is missed. Returns the
        users and revocations written (``_catch_up`` sends what changed meanwhile)."""
        await pubsub.subscribe(self.channel)
        ttl = int(self.presence_ttl * 1000)
        now = time.time()
        pipe = redis.pipeline(transaction=True)
        pipe.delete(self.node_key)
        users = self._local_users()
        if users:
            pipe.sadd(self.node_key, *users)
            pipe.pexpire(self.node_key, ttl)
        for jti, expires in list(self._own_revocations.items()):
            if expires <= now:
                del self._own_revocations[jti]
                continue
            self._revoke_commands(pipe, Revoke(self.node, jti, expires))
        await pipe.execute()
        keys = [key async for key in redis.scan_iter(match=f"{PREFIX}revoked:*", count=1000)]
        if keys:
            for key, value in zip(keys, await redis.mget(keys), strict=True):
                if value is not None:
                    jti = key.decode(errors="replace")[len(PREFIX) + len("revoked:") :]
                    self.remember_revoked(jti, _float(value))
        return users, set(self._own_revocations)

    def _catch_up(self, users: frozenset[str], revocations: set[str]) -> None:
        """What changed while ``_connect`` waited (its calls were refused: not up)."""
        if self._local_users() != users:
            ttl = int(self.presence_ttl * 1000)
            now_users = self._local_users()

            def rewrite(pipe: Pipeline) -> None:
                pipe.delete(self.node_key)
                if now_users:
                    pipe.sadd(self.node_key, *now_users)
                    pipe.pexpire(self.node_key, ttl)

            self._enqueue(rewrite, False)
        for jti in set(self._own_revocations) - revocations:
            message = Revoke(self.node, jti, self._own_revocations[jti])
            self._enqueue(functools.partial(self._revoke_commands, message=message), False)

    # --- the three tasks while connected --------------------------------------------------

    async def _read(self, pubsub: PubSub) -> None:
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=None)
            if message is None or message.get("type") != "message":
                continue
            self._on_message(message["data"])

    def _on_message(self, data: bytes) -> None:
        try:
            parsed = parse_message(data, self.max_size)
        except BrokerMessageError as exc:
            self.dropped += 1
            count = self._drops.hit(time.monotonic())
            if count:
                log.warning("dropped a message on %s: %s (%d dropped)", self.channel, exc, count)
            return
        if parsed.origin == self.node:
            return
        if isinstance(parsed, Revoke):
            self.remember_revoked(parsed.jti, parsed.expires)
        try:
            self._receive(parsed)
        except Exception:  # the bridge's bug: logged, and the link goes on
            log.exception("a %s message from %s could not be handled", parsed.type, parsed.origin)

    async def _write(self, redis: Redis) -> None:
        """Send what is queued, up to ``BATCH`` commands a round trip, in order."""
        while True:
            batch = [await self._queue.get()]
            while len(batch) < BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            pipe = redis.pipeline(transaction=False)
            for apply, _future in batch:
                apply(pipe)
            try:
                await pipe.execute()
            except BaseException:
                _settle(batch, False)
                raise
            _settle(batch, True)

    async def _heartbeat(self, redis: Redis) -> None:
        ttl = int(self.presence_ttl * 1000)
        while True:
            await asyncio.sleep(self.presence_ttl / 3)  # a period, not a sync
            await redis.pexpire(self.node_key, ttl)

    # --- what the bridge calls ------------------------------------------------------------

    def _enqueue(self, apply: Callable[[Pipeline], Any], want: bool) -> asyncio.Future[bool] | None:
        future = asyncio.get_running_loop().create_future() if want else None
        if self.state is not Link.UP:
            if future is not None:
                future.set_result(False)
            return future
        try:
            self._queue.put_nowait((apply, future))
        except asyncio.QueueFull:
            if future is not None:
                future.set_result(False)
            count = self._drops.hit(time.monotonic())
            if count:
                log.warning(
                    "broker %s: %d messages wait to go; refusing more", self.url, QUEUE_SIZE
                )
        return future

    def publish(self, message: BrokerMessage) -> asyncio.Future[bool]:
        if isinstance(message, Revoke):
            self._own_revocations[message.jti] = message.expires
            future = self._enqueue(functools.partial(self._revoke_commands, message=message), True)
        else:
            text = encode_message(message)
            future = self._enqueue(lambda pipe: pipe.publish(self.channel, text), True)
        assert future is not None
        return future

    def _revoke_commands(self, pipe: Pipeline, message: Revoke) -> None:
        ttl = max(int((message.expires - time.time()) * 1000), 1)
        pipe.set(f"{PREFIX}revoked:{message.jti}", repr(message.expires), px=ttl)
        pipe.publish(self.channel, encode_message(message))

    def user_online(self, user: str) -> None:
        ttl = int(self.presence_ttl * 1000)

        def apply(pipe: Pipeline) -> None:
            pipe.sadd(self.node_key, user)
            pipe.pexpire(self.node_key, ttl)

        self._enqueue(apply, False)

    def user_offline(self, user: str) -> None:
        self._enqueue(lambda pipe: pipe.srem(self.node_key, user), False)

    async def online_users(self) -> frozenset[str]:
        redis = self._redis
        if redis is None or self.state is not Link.UP:
            raise BrokerUnavailable(f"The broker {self.url} is unavailable: presence is unknown.")
        try:
            keys = [key async for key in redis.scan_iter(match=f"{PREFIX}node:*", count=1000)]
            members = await redis.sunion(keys) if keys else set()
        except Lost as exc:
            raise BrokerUnavailable(
                f"The broker {self.url} is unavailable: presence is unknown ({_reason(exc)})."
            ) from None
        users = {m.decode(errors="replace") if isinstance(m, bytes) else m for m in members}
        return frozenset(users) | self._local_users()

    def _fail_queued(self) -> None:
        while not self._queue.empty():
            _apply, future = self._queue.get_nowait()
            if future is not None and not future.done():
                future.set_result(False)


def _ignore(message: BrokerMessage) -> None:
    pass


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("the broker's link ended with an error", exc_info=task.exception())


def _settle(batch: list[Command], outcome: bool) -> None:
    for _apply, future in batch:
        if future is not None and not future.done():
            future.set_result(outcome)


def _float(value: bytes | str) -> float:
    try:
        return float(value)
    except ValueError:
        return 0.0  # not ours: remembered as already expired


def _reason(exc: object) -> str:
    if isinstance(exc, BaseException):
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return "not connected"


async def _close(redis: Redis, pubsub: PubSub) -> None:
    for closing in (pubsub.aclose(), redis.aclose()):
        try:
            await asyncio.wait_for(closing, SOCKET_TIMEOUT)
        except (*Lost, TimeoutError):
            pass


def _database(url: str) -> int:
    """The database number of a redis:// URL (0 when it names none)."""
    path = urlsplit(url).path.strip("/")
    return int(path) if path.isdigit() else 0
