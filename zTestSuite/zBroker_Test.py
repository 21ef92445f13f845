"""zBroker: several zBifrost processes serving as one through one Redis (issue 12).

The messages on the broker channel and the pure bookkeeping first; then two bridges in
this event loop, each with its own Redis connection to one real ``redis-server`` and
real WebSocket clients: broadcasts, ``send_to``, rooms, presence and revocations cross
between them; Redis stopped mid-traffic and started again; hostile messages on the
channel. Then real ``zcli serve`` processes: presence that expires after a SIGKILL, and
``--workers 2`` on one port.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import re
import signal
import sys
import unittest
import urllib.request
from collections.abc import Awaitable, Callable
from typing import Any
from unittest import mock

import websockets

try:
    import redis.asyncio as aioredis

    from zCLI.bridge.redis_broker import RedisBroker
except ImportError:  # requires_service skips (or fails under ZTEST_STRICT=1), saying so
    pass

from zCLI import AuthError, ConfigError, StateError, load_config, zCLI
from zCLI.bridge import BrokerUnavailable, Delivery, Room, User
from zCLI.bridge.audience import LocalPresence, Rooms
from zCLI.bridge.broker import (
    BrokerMessageError,
    Deliver,
    InProcessBroker,
    PeerMessage,
    Revoke,
    encode_message,
    parse_message,
)
from zCLI.cli import main
from zTestSuite import RedisServer, ServerProcess, requires_network, requires_service, timeout
from zTestSuite.bridge import AuthTestCase
from zTestSuite.harness import run_zcli

SECRET = "a-secret-the-processes-share-0123456789"
CHANNEL = "zcli:bridge:events:0"  # the test Redis URLs name database 0


# --- the messages ----------------------------------------------------------------------


class BrokerMessagesTest(unittest.TestCase):
    def test_wire_shapes(self) -> None:
        """Each message has exactly one JSON form, and parses back to itself."""
        table = [
            (
                Deliver("n1", None, {"event": "news"}),
                {"v": 1, "type": "deliver", "origin": "n1", "to": "all",
                 "payload": {"event": "news"}},
            ),
            (
                Deliver("n1", User("ada"), {"event": "told", "n": 1}),
                {"v": 1, "type": "deliver", "origin": "n1", "to": "user", "name": "ada",
                 "payload": {"event": "told", "n": 1}},
            ),
            (
                Deliver("n1", Room("lobby"), {}),
                {"v": 1, "type": "deliver", "origin": "n1", "to": "room", "name": "lobby",
                 "payload": {}},
            ),
            (
                Revoke("n2", "jti-1", 1700000000.5),
                {"v": 1, "type": "revoke", "origin": "n2", "jti": "jti-1",
                 "expires": 1700000000.5},
            ),
            (
                PeerMessage("n3", "chat_server", {"kind": "ack", "id": 7}),
                {"v": 1, "type": "plugin", "origin": "n3", "plugin": "chat_server",
                 "data": {"kind": "ack", "id": 7}},
            ),
        ]  # fmt: skip
        for message, wire in table:
            with self.subTest(message=message):
                self.assertEqual(message.to_json(), wire)
                self.assertEqual(json.loads(encode_message(message)), wire)
                self.assertEqual(parse_message(encode_message(message).encode(), 10_000), message)

    def test_anything_else_is_refused_with_its_reason(self) -> None:
        """A message that is not exactly one of ours raises BrokerMessageError saying why."""
        deliver = {"v": 1, "type": "deliver", "origin": "x", "to": "all", "payload": {}}
        peer = {"v": 1, "type": "plugin", "origin": "x", "plugin": "p", "data": {}}
        table: list[tuple[bytes, str]] = [
            (b"not json", "The message is not JSON (Expecting value: line 1 column 1 (char 0))."),
            (b"[]", "The message is not a JSON object."),
            (b'{"v": 2, "type": "deliver"}', "The message is not of version 1."),
            (b'{"v": 1, "type": ["deliver"]}', "The message has no type."),
            (b'{"v": 1, "type": "shout", "origin": "x"}',
             "There is no broker message type 'shout'."),
            (_wire(deliver, payload=None), "A deliver message needs payload."),
            (_wire(deliver, payload=[1]), "payload must be a JSON object."),
            (_wire(deliver, to="everyone"), "to must be all, user or room, not 'everyone'."),
            (_wire(deliver, to="user"), "name must be a string of 1 to 256 characters."),
            (_wire(deliver, to="room", name=7), "name must be a string of 1 to 256 characters."),
            (_wire(deliver, to="user", name="u" * 257),
             "name must be a string of 1 to 256 characters."),
            (_wire(deliver, name="a"), "A delivery to all has no name."),
            (_wire(deliver, origin=""), "origin must be a string of 1 to 64 characters."),
            (_wire(deliver, extra=1), "A deliver message has unknown keys: extra."),
            (b'{"v": 1, "type": "revoke", "origin": "x", "jti": "j", "expires": "soon"}',
             "expires must be a number (Unix time)."),
            (b'{"v": 1, "type": "revoke", "origin": "x", "jti": "j", "expires": true}',
             "expires must be a number (Unix time)."),
            (b'{"v": 1, "type": "revoke", "origin": "x", "jti": "j", "expires": NaN}',
             "The message is not JSON (NaN is not JSON)."),
            (b"[" * 6000 + b"]" * 6000, "The message of 12000 bytes exceeds 10000 bytes."),
            (_wire(peer, data=None), "A plugin message needs data."),
            (_wire(peer, data=[]), "data must be a JSON object."),
            (_wire(peer, plugin="no-dashes"),
             "plugin must be a plugin's name (an identifier of 1 to 64)."),
            (_wire(peer, plugin="p" * 65),
             "plugin must be a plugin's name (an identifier of 1 to 64)."),
            (_wire(peer, plugin=3), "plugin must be a plugin's name (an identifier of 1 to 64)."),
            (_wire(peer, to="all"), "A plugin message has unknown keys: to."),
        ]  # fmt: skip
        for raw, reason in table:
            with self.subTest(raw=raw[:60]):
                with self.assertRaises(BrokerMessageError) as caught:
                    parse_message(raw, 10_000)
                self.assertEqual(str(caught.exception), reason)

    def test_deep_nesting_is_not_json(self) -> None:
        """Nesting deeper than the parser goes is refused, not a crash."""
        with self.assertRaises(BrokerMessageError) as caught:
            parse_message(b"[" * 5000 + b"]" * 5000, 100_000)
        self.assertTrue(str(caught.exception).startswith("The message is not JSON (maximum"))


def _wire(body: dict[str, Any], **change: Any) -> bytes:
    merged = {**body, **change}
    return json.dumps({k: v for k, v in merged.items() if v is not None}).encode()


class BookkeepingTest(unittest.TestCase):
    def test_local_presence_counts_connections(self) -> None:
        """A user comes online with their first connection and leaves with their last;
        members_of lists a user's connections in the order they came."""
        presence: LocalPresence[str] = LocalPresence()
        self.assertEqual(presence.set("c1", "ada"), (None, "ada"))
        self.assertEqual(presence.set("c2", "ada"), (None, None))
        self.assertEqual(presence.members_of("ada"), ["c1", "c2"])
        self.assertEqual(presence.members_of("bob"), [])
        self.assertEqual(presence.set("c1", None), (None, None))
        self.assertEqual(presence.members_of("ada"), ["c2"])
        self.assertEqual(presence.set("c2", "bob"), ("ada", "bob"))
        self.assertEqual(presence.users(), frozenset({"bob"}))
        self.assertEqual(presence.set("c2", None), ("bob", None))
        self.assertEqual(presence.users(), frozenset())

    def test_rooms(self) -> None:
        """Join, leave and discard; an empty room is forgotten; a bad name is refused."""
        rooms: Rooms[str] = Rooms()
        self.assertTrue(rooms.join("c1", "lobby"))
        self.assertFalse(rooms.join("c1", "lobby"))
        rooms.join("c2", "lobby")
        rooms.join("c1", "games")
        self.assertEqual(sorted(rooms.members("lobby")), ["c1", "c2"])
        self.assertEqual(rooms.rooms_of("c1"), frozenset({"lobby", "games"}))
        rooms.discard("c1")
        self.assertEqual(rooms.members("lobby"), ["c2"])
        self.assertEqual(rooms.members("games"), [])
        self.assertFalse(rooms.leave("c1", "lobby"))
        self.assertTrue(rooms.leave("c2", "lobby"))
        with self.assertRaises(ValueError) as caught:
            rooms.join("c1", "")
        self.assertEqual(
            str(caught.exception), "A room name is a string of 1 to 256 characters, not ''."
        )


class LinkTest(unittest.TestCase):
    @requires_service("redis")
    def test_an_illegal_transition_names_the_state_and_the_event(self) -> None:
        """The link's transitions live in one table; anything else is a StateError."""
        broker = RedisBroker("redis://127.0.0.1:1/0", 1.0, 1000)
        with self.assertRaises(StateError) as caught:
            broker._go("connected")
        self.assertEqual(
            str(caught.exception),
            "The Redis broker's link is stopped: 'connected' cannot happen now.",
        )


class BrokerConfigTest(unittest.TestCase):
    def test_broker_url_from_spark_and_environment(self) -> None:
        """websocket.broker takes a Redis URL from zSpark or ZCLI_WEBSOCKET_BROKER."""
        url = "redis://127.0.0.1:6379/2"
        spark = {"websocket": {"broker": url, "presence_ttl": 2}}
        self.assertEqual(load_config(spark, environ={}).websocket.broker, url)
        self.assertEqual(load_config(spark, environ={}).websocket.presence_ttl, 2.0)
        env = {"ZCLI_WEBSOCKET_BROKER": url, "ZCLI_WEBSOCKET_PRESENCE_TTL": "0.5"}
        config = load_config({}, environ=env)
        self.assertEqual((config.websocket.broker, config.websocket.presence_ttl), (url, 0.5))
        self.assertIsNone(load_config({}, environ={}).websocket.broker)

    def test_a_bad_broker_url_is_refused(self) -> None:
        """Anything but redis(s)://HOST[:PORT][/DB] is a configuration problem."""
        for bad in ["http://h:1/0", "redis://:6379/0", "redis://h:1/x", "redis://h:99999/0"]:
            with self.subTest(url=bad):
                with self.assertRaises(ConfigError) as caught:
                    load_config({"websocket": {"broker": bad}}, environ={})
                self.assertEqual(
                    caught.exception.problems,
                    [f"zSpark websocket.broker: expected redis://HOST:PORT/DB, got {bad!r}"],
                )

    def test_without_a_broker_the_bridge_is_in_process(self) -> None:
        """No broker: InProcessBroker, which has nothing to share."""
        z = zCLI({"zWorkspace": "."})
        self.assertIsInstance(z.comm.broker, InProcessBroker)
        self.assertIsNone(z.comm.broker.publish(Deliver("n", None, {})))
        self.assertEqual((z.comm.to_peers("app", {"n": 1}).shared), None)


# --- two bridges, one Redis ------------------------------------------------------------


class ClusterTestCase(AuthTestCase):
    """A real redis-server, and bridges in this loop that share it, its users file and
    the signing secret, each with a state folder of its own (so revocations cross only
    through the broker)."""

    async def asyncSetUp(self) -> None:
        await super().asyncSetUp()
        self.redis = RedisServer()
        self.addCleanup(self.redis.close)
        await asyncio.to_thread(self.redis.start)
        self.users_file = self.workspace / "users.yaml"

    def spark(self, name: str, **websocket: Any) -> dict[str, Any]:
        return {
            "state_dir": f".zcli-{name}",
            "auth": {"secret": SECRET, "users_file": str(self.users_file)},
            "websocket": {
                "require_auth": True,
                "broker": self.redis.url,
                "presence_ttl": 1.0,
                **websocket,
            },
        }

    async def bridge(self, name: str, **websocket: Any) -> zCLI:
        z = await self.start(**self.spark(name, **websocket))
        if not self.users_file.exists():
            z.auth.add_user("ada", "s3cret", "admin")
            z.auth.add_user("bob", "pa55word", "user")
        return z

    async def signed_in(self, z: zCLI, user: str, token: str | None = None) -> Any:
        """A client of ``z`` signed in as ``user`` (with ``token`` if given)."""
        password = {"ada": "s3cret", "bob": "pa55word"}[user]
        token = token or z.auth.login(user, password).token
        return await self.client(z, path=f"/?token={token}")

    async def eventually(
        self, look: Callable[[], Awaitable[Any]], expected: Any, units: float = 3
    ) -> None:
        """Ask ``look()`` until it answers ``expected`` (state another process writes)."""
        deadline = asyncio.get_running_loop().time() + timeout(units)
        seen = await look()
        while seen != expected:
            if asyncio.get_running_loop().time() > deadline:
                self.assertEqual(seen, expected, "not within the time allowed")
            await asyncio.sleep(0.005)  # a look every 5 ms at Redis, not a synchronising sleep
            seen = await look()


@requires_network
@requires_service("redis")
class TwoBridgesTest(ClusterTestCase):
    async def test_broadcast_reaches_every_process_once(self) -> None:
        """A broadcast to everyone reaches the clients of both processes, each once."""
        one, two = await self.bridge("A"), await self.bridge("B")
        ada, bob = await self.signed_in(one, "ada"), await self.signed_in(two, "bob")
        news = {"event": "app.news", "text": "hello"}
        delivery = one.comm.broadcast(news)
        self.assertEqual(delivery.local, 1)
        self.assertFalse(delivery.failed)
        self.assertTrue(await delivery.wait_shared())
        self.assertEqual(await self.recv(ada), news)
        self.assertEqual(await self.recv(bob), news)
        await self.assertQuiet(ada)
        await self.assertQuiet(bob)

    async def test_services_on_other_databases_never_hear_each_other(self) -> None:
        """Redis pub/sub ignores the database number: a bridge on /1 shares nothing with
        one on /0 of the same Redis (their channels differ), while /0 peers still do."""
        one, two = await self.bridge("A"), await self.bridge("B")
        other = await self.bridge("C", broker=self.redis.url[: -len("/0")] + "/1")
        ada, bob = await self.signed_in(two, "ada"), await self.signed_in(other, "bob")
        news = {"event": "app.news", "text": "only database 0"}
        self.assertTrue(await one.comm.broadcast(news).wait_shared())
        self.assertEqual(await self.recv(ada), news)
        await self.assertQuiet(bob)

    async def test_stop_ends_after_a_burst_of_broadcasts(self) -> None:
        """Stopping while the writer still sends a burst of 20,000 broadcasts ends
        within the time a stop allows (redis-py may swallow one cancellation)."""
        one = await self.bridge("A")
        for number in range(20_000):
            one.comm.broadcast({"event": "app.burst", "n": number})
        await asyncio.wait_for(one.comm.stop(), timeout(10))
        self.assertFalse(one.comm.running)

    async def test_send_to_reaches_the_user_wherever_connected(self) -> None:
        """send_to reaches every connection of the user, in every process, and no one else."""
        one, two = await self.bridge("A"), await self.bridge("B")
        ada_here, ada_there = await self.signed_in(one, "ada"), await self.signed_in(two, "ada")
        bob_there = await self.signed_in(two, "bob")
        told = {"event": "app.told", "text": "psst"}
        delivery = one.comm.send_to("ada", told)
        self.assertEqual(delivery.local, 1)
        self.assertTrue(await delivery.wait_shared())
        self.assertEqual([await self.recv(ada_here), await self.recv(ada_there)], [told, told])
        await self.assertQuiet(bob_there)
        nobody_here = one.comm.send_to("bob", told)
        self.assertEqual(nobody_here.local, 0)
        self.assertTrue(await nobody_here.wait_shared())
        self.assertEqual(await self.recv(bob_there), told)

    async def test_a_room_spans_the_processes(self) -> None:
        """A broadcast to a Room reaches its members in the other process, only them."""
        one, two = await self.bridge("A"), await self.bridge("B")
        ada, bob = await self.signed_in(two, "ada"), await self.signed_in(two, "bob")
        (bob_client,) = two.comm.clients_of("bob")
        self.assertTrue(two.comm.join(bob_client, "lobby"))
        said = {"event": "app.said", "room": "lobby"}
        delivery = one.comm.broadcast(said, to=Room("lobby"))
        self.assertEqual(delivery.local, 0)
        self.assertTrue(await delivery.wait_shared())
        self.assertEqual(await self.recv(bob), said)
        await self.assertQuiet(ada)
        self.assertTrue(two.comm.leave(bob_client, "lobby"))
        self.assertTrue(await one.comm.broadcast(said, to=Room("lobby")).wait_shared())
        await self.assertQuiet(bob)

    async def test_a_plugin_talks_to_its_peers_in_the_other_processes(self) -> None:
        """to_peers reaches the same plugin's listener in every other process, never
        its own process, another plugin or a client; the Delivery says it was taken."""
        one, two, three = await self.bridge("A"), await self.bridge("B"), await self.bridge("C")
        heard: dict[str, list[tuple[str, dict[str, Any]]]] = {"A": [], "B": [], "C": []}

        def listener(name: str) -> Callable[[str, dict[str, Any]], None]:
            def hear(origin: str, data: dict[str, Any]) -> None:
                heard[name].append((origin, data))

            return hear

        for name, z in (("A", one), ("B", two), ("C", three)):
            z.comm.on_peer_message("app", listener(name))
        three.comm.on_peer_message("other", listener("C"))
        bob = await self.signed_in(two, "bob")
        word = {"kind": "ack", "id": 42}
        delivery = one.comm.to_peers("app", word)
        self.assertEqual(delivery.local, 0)
        self.assertTrue(await delivery.wait_shared())
        await self.wait_until(lambda: len(heard["B"]) == 1 and len(heard["C"]) == 1)
        self.assertEqual(heard, {"A": [], "B": [(one.comm.node, word)],
                                 "C": [(one.comm.node, word)]})  # fmt: skip
        self.assertTrue(await two.comm.to_peers("nobody_listens", {}).wait_shared())
        self.assertTrue(await two.comm.to_peers("app", {"n": 2}).wait_shared())
        await self.wait_until(lambda: len(heard["A"]) == 1)
        self.assertEqual(heard["A"], [(two.comm.node, {"n": 2})])
        await self.assertQuiet(bob)
        with self.assertRaises(ValueError):
            one.comm.to_peers("app", {"n": float("nan")})
        with self.assertRaises(ValueError) as caught:
            one.comm.on_peer_message("not a name", listener("A"))
        self.assertEqual(str(caught.exception), "'not a name' is not a plugin's name.")

    async def test_a_payload_the_broker_cannot_carry_goes_nowhere(self) -> None:
        """NaN is not JSON: broadcast raises ValueError before anyone gets it."""
        one = await self.bridge("A")
        ada = await self.signed_in(one, "ada")
        with self.assertRaises(ValueError):
            one.comm.broadcast({"event": "app.x", "n": float("nan")})
        await self.assertQuiet(ada)

    async def test_a_list_of_clients_stays_in_this_process(self) -> None:
        """Clients given as a list are this process's: nothing goes to the broker."""
        one = await self.bridge("A")
        ada = await self.signed_in(one, "ada")
        delivery = one.comm.broadcast({"event": "app.x"}, to=one.comm.clients_of("ada"))
        self.assertEqual((delivery.local, delivery.shared), (1, None))
        self.assertEqual(delivery, Delivery(1))
        self.assertEqual(await self.recv(ada), {"event": "app.x"})

    async def test_presence_across_processes(self) -> None:
        """online_users is the same from both processes, and follows sign-outs."""
        one, two = await self.bridge("A"), await self.bridge("B")
        await self.signed_in(one, "ada")
        bob = await self.signed_in(two, "bob")
        everyone = frozenset({"ada", "bob"})
        await self.eventually(one.comm.online_users, everyone)
        await self.eventually(two.comm.online_users, everyone)
        self.assertEqual(one.comm.local_users(), frozenset({"ada"}))
        await bob.close()
        await self.eventually(one.comm.online_users, frozenset({"ada"}))

    async def test_a_revocation_closes_and_refuses_the_token_everywhere(self) -> None:
        """A token signed out on one process is closed and refused on the other at once,
        and refused by a process that starts later."""
        one, two = await self.bridge("A"), await self.bridge("B")
        token = one.auth.login("ada", "s3cret").token
        here = await self.signed_in(one, "ada", token)
        there = await self.signed_in(two, "ada", token)
        self.assertEqual(
            await self.request(here, {"event": "logout", "_requestId": 1}),
            {"result": {"message": "Signed out."}, "_requestId": 1},
        )
        await self.assertClosed(here, 1008, "Signed out.")
        await self.assertClosed(there, 1008, "The token has been revoked.")
        refused = {"error": "The token has been revoked.", "code": "unauthorized",
                   "_requestId": None}  # fmt: skip
        again = await self.connect(two, path=f"/?token={token}")
        self.assertEqual(await self.recv(again), refused)
        await self.assertClosed(again, 1008, "The token has been revoked.")
        with self.assertRaises(AuthError) as caught:  # what zServer's HTTP API asks
            two.auth.verify(token)
        self.assertEqual(str(caught.exception), "The token has been revoked.")
        later = await self.bridge("C")
        late = await self.connect(later, path=f"/?token={token}")
        self.assertEqual(await self.recv(late), refused)
        await self.assertClosed(late, 1008, "The token has been revoked.")

    async def test_redis_stopped_mid_traffic_then_back(self) -> None:
        """While Redis is away: local delivery goes on, every cross-process delivery is
        reported failed, presence raises, one warning per process; then it comes back."""
        one, two = await self.bridge("A"), await self.bridge("B")
        ada, bob = await self.signed_in(one, "ada"), await self.signed_in(two, "bob")
        brokers = [one.comm.broker, two.comm.broker]
        received: dict[str, list[int]] = {"ada": [], "bob": []}
        readers = [
            asyncio.create_task(_collect(ada, received["ada"])),
            asyncio.create_task(_collect(bob, received["bob"])),
        ]
        deliveries: list[Delivery] = []

        async def send() -> Delivery:
            number = len(deliveries)
            deliveries.append(one.comm.broadcast({"event": "app.n", "n": number}))
            await self.wait_until(lambda: number in received["ada"])  # local: at once
            return deliveries[-1]

        for _ in range(20):  # before the outage: every delivery reaches both processes
            self.assertTrue(await (await send()).wait_shared())
        await self.wait_until(lambda: len(received["bob"]) == 20)
        with self.assertLogs("zCLI.zBifrost", "WARNING") as logs:
            stopping = asyncio.create_task(asyncio.to_thread(self.redis.stop))
            while not stopping.done() or sum(d.failed for d in deliveries) < 5:  # mid-traffic
                await send()
                self.assertLess(len(deliveries), 100_000, "the outage was never noticed")
            outcomes = [await d.wait_shared() for d in deliveries]
            await self.wait_until(lambda: not any(b.available for b in brokers))
            late = one.comm.send_to("bob", {"event": "app.late"})
            self.assertEqual((late.local, late.failed), (0, True))
            self.assertFalse(await late.wait_shared())
            word = one.comm.to_peers("app", {"late": True})
            self.assertEqual((word.local, word.failed), (0, True))
            with self.assertRaises(BrokerUnavailable) as caught:
                await one.comm.online_users()
            self.assertEqual(
                str(caught.exception),
                f"The broker {self.redis.url} is unavailable: presence is unknown.",
            )
            await asyncio.to_thread(self.redis.start)
            await asyncio.wait_for(
                asyncio.gather(*(b.wait_available() for b in brokers)), timeout(5)
            )
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        self.assertEqual(received["ada"], list(range(len(deliveries))))
        self.assertEqual(received["bob"][:20], list(range(20)))
        self.assertEqual(outcomes[-5:], [False] * 5)
        shared = {n for n, ok in enumerate(outcomes) if ok}
        self.assertLessEqual(set(received["bob"]), shared)  # no failed one arrived
        unavailable = re.compile(
            rf"WARNING:zCLI\.zBifrost:broker {re.escape(self.redis.url)} is unavailable "
            r"\(\w+: .+\): delivery to other processes fails until it is back"
        )
        self.assertEqual(len(logs.output), 2, logs.output)  # one per process, for the outage
        for line in logs.output:
            self.assertRegex(line, unavailable)
        back = {"event": "app.back"}
        self.assertTrue(await one.comm.broadcast(back).wait_shared())
        self.assertEqual(await self.recv(bob), back)
        await self.eventually(two.comm.online_users, frozenset({"ada", "bob"}))

    async def test_redis_away_at_start(self) -> None:
        """A bridge whose Redis is away serves its own clients, warns once, and joins
        the others when Redis comes."""
        await asyncio.to_thread(self.redis.stop)
        with self.assertLogs("zCLI.zBifrost", "WARNING") as logs:
            one = await self.bridge("A")
            ada = await self.signed_in(one, "ada")
            delivery = one.comm.broadcast({"event": "app.alone"})
            self.assertEqual((delivery.local, delivery.failed), (1, True))
            self.assertEqual(await self.recv(ada), {"event": "app.alone"})
            await asyncio.to_thread(self.redis.start)
            await asyncio.wait_for(one.comm.broker.wait_available(), timeout(5))
        self.assertEqual(len(logs.output), 1, logs.output)
        self.assertRegex(logs.output[0], rf"broker {re.escape(self.redis.url)} is unavailable")
        two = await self.bridge("B")
        bob = await self.signed_in(two, "bob")
        await self.eventually(two.comm.online_users, frozenset({"ada", "bob"}))
        self.assertTrue(await one.comm.broadcast({"event": "app.together"}).wait_shared())
        self.assertEqual(await self.recv(bob), {"event": "app.together"})

    async def test_hostile_messages_on_the_channel_are_dropped(self) -> None:
        """Garbage on the channel is logged and dropped; the bridge goes on delivering."""
        one = await self.bridge("A")
        ada = await self.signed_in(one, "ada")
        broker = one.comm.broker
        assert isinstance(broker, RedisBroker)
        hostile = [
            b"[]",
            b"\xff\xfe\x00garbage",
            b"{",
            b'{"v": 1, "type": "deliver", "origin": "x", "to": "all", "payload": "<script>"}',
            b'{"v": 1, "type": "deliver", "origin": "x", "to": "user", "name": 1, "payload": {}}',
            b'{"v": 1, "type": "revoke", "origin": "x", "jti": "j", "expires": [1]}',
            b'{"v": 99, "type": "deliver"}',
            b"[" * 100_000,
            b"x" * (one.config.websocket.queue_bytes + 1),
        ]
        own = encode_message(Deliver(broker.node, None, {"event": "app.echo"}))
        fine = encode_message(Deliver("another-node", User("ada"), {"event": "app.fine"}))
        raw = aioredis.Redis.from_url(self.redis.url)
        self.addAsyncCleanup(raw.aclose)
        with self.assertLogs("zCLI.zBifrost", "WARNING") as logs:
            for message in [*hostile, own, fine]:
                await raw.publish(CHANNEL, message)
            self.assertEqual(await self.recv(ada), {"event": "app.fine"})
        await self.assertQuiet(ada)
        self.assertEqual(broker.dropped, len(hostile))
        self.assertEqual(
            logs.output,
            [
                f"WARNING:zCLI.zBifrost:dropped a message on {CHANNEL}: "
                "The message is not a JSON object. (1 dropped)"
            ],
        )

    async def test_a_revocation_from_another_process_closes_the_token(self) -> None:
        """A revoke message on the channel closes this process's connections with it."""
        one = await self.bridge("A")
        identity = one.auth.login("ada", "s3cret")
        ada = await self.signed_in(one, "ada", identity.token)
        raw = aioredis.Redis.from_url(self.redis.url)
        self.addAsyncCleanup(raw.aclose)
        assert identity.jti is not None and identity.expires is not None
        await raw.publish(CHANNEL, encode_message(Revoke("other", identity.jti, identity.expires)))
        await self.assertClosed(ada, 1008, "The token has been revoked.")
        self.assertTrue(one.comm.broker.revoked(identity.jti))


def _get(url: str) -> int:
    with urllib.request.urlopen(url, timeout=timeout(2)) as answer:
        return int(answer.status)


async def _collect(ws: Any, numbers: list[int]) -> None:
    """Append the ``n`` of every app.n event ``ws`` receives."""
    while True:
        message = json.loads(await ws.recv())
        if message.get("event") == "app.n":
            numbers.append(message["n"])


# --- real processes ------------------------------------------------------------------

WHERE = """
import os

from zCLI import Plugin
from zCLI.bridge import Room


def pid(ctx, data):
    return {"pid": os.getpid()}


def shout(ctx, data):
    delivery = ctx.bridge.broadcast({"event": "where.shouted", "text": data["text"]})
    return {"local": delivery.local}


PLUGIN = Plugin(name="where", events={"where.pid": pid, "where.shout": shout}, public_events=[])
"""


@requires_network
@requires_service("redis")
class ProcessesTest(ClusterTestCase):
    def serve(self, *args: str, env: dict[str, str] | None = None) -> ServerProcess:
        command = [sys.executable, "-m", "zCLI", "--log-level", "INFO", "serve",
                   str(self.workspace), "--ws-port", "0", "--http-port", "0", *args]  # fmt: skip
        process = self.start_process(command, env=env)
        return process

    def start_process(self, command: list[str], env: dict[str, str] | None = None) -> ServerProcess:
        process = ServerProcess(command, cwd=self.workspace, env=env)
        self.addCleanup(process.stop)
        return process

    def shared_env(self) -> dict[str, str]:
        return {
            "ZCLI_AUTH_SECRET": SECRET,
            "ZCLI_AUTH_USERS_FILE": str(self.users_file),
            "ZCLI_WEBSOCKET_PRESENCE_TTL": "1",
        }

    async def test_presence_expires_after_a_process_is_killed(self) -> None:
        """Users of a process killed without a word leave presence when its TTL runs out;
        a process stopped with SIGTERM takes its users away at once."""
        here = await self.bridge("A")
        for signum in (signal.SIGKILL, signal.SIGTERM):
            with self.subTest(signal=signum.name):
                served = self.serve("--broker", self.redis.url, env=self.shared_env())
                url = (await asyncio.to_thread(served.wait_for, r"zBifrost listening on (\S+)$"))[1]
                token = here.auth.login("bob", "pa55word").token
                bob = await websockets.connect(f"{url}/?token={token}")
                self.addAsyncCleanup(bob.close)
                self.assertEqual(json.loads(await bob.recv())["event"], "connection_info")
                await self.eventually(here.comm.online_users, frozenset({"bob"}))
                await asyncio.to_thread(served.stop, signum)
                if signum is signal.SIGKILL:  # still there until the TTL runs out
                    self.assertEqual(await here.comm.online_users(), frozenset({"bob"}))
                    await self.eventually(here.comm.online_users, frozenset(), units=3)
                else:
                    self.assertEqual(await here.comm.online_users(), frozenset())

    async def test_two_workers_on_one_port(self) -> None:
        """--workers 2: both workers take connections on one port, share the broker, tag
        their lines; SIGTERM to the parent stops both cleanly (exit 0)."""
        self.write("plugins/where.py", WHERE)
        served = self.serve("--workers", "2", "--broker", self.redis.url, "--no-auth")
        url = (await asyncio.to_thread(served.wait_for, r"^zBifrost listening on (\S+)$"))[1]
        http = (await asyncio.to_thread(served.wait_for, r"^zServer listening on (\S+)$"))[1]
        workers = await asyncio.to_thread(served.wait_for, r"^Workers: 2 \(pids (\d+), (\d+)\)\.$")
        pids = {int(workers[1]), int(workers[2])}
        by_pid: dict[int, Any] = {}
        opened: dict[int, int] = {}  # pid -> connections open to it
        for number in range(64):  # the kernel spreads connections by their address
            ws = await websockets.connect(url)
            self.addAsyncCleanup(ws.close)
            self.assertEqual(json.loads(await ws.recv())["event"], "connection_info")
            reply = await self.request(ws, {"event": "where.pid", "_requestId": number})
            by_pid.setdefault(reply["result"]["pid"], ws)
            opened[reply["result"]["pid"]] = opened.get(reply["result"]["pid"], 0) + 1
            if len(by_pid) == 2:
                break
        self.assertEqual(set(by_pid), pids)
        health = await asyncio.to_thread(_get, f"{http}health")
        self.assertEqual(health, 200)
        first_pid, second_pid = sorted(pids)
        first, second = by_pid[first_pid], by_pid[second_pid]
        shout = {"event": "where.shout", "data": {"text": "hi"}, "_requestId": "s"}
        await first.send(json.dumps(shout))
        shouted = {"event": "where.shouted", "text": "hi"}
        self.assertEqual(await self.recv(first), shouted)
        self.assertEqual(
            await self.recv(first), {"result": {"local": opened[first_pid]}, "_requestId": "s"}
        )
        self.assertEqual(await self.recv(second), shouted)
        lines = list(served.lines)
        port = url.rsplit(":", 1)[1]
        for number in (1, 2):
            self.assertIn(
                f"INFO [worker {number}] websockets.server: server listening on 127.0.0.1:{port}",
                lines,
            )
            self.assertIn(f"[worker {number}] zBifrost listening on {url}", lines)
        os.kill(served.pid, signal.SIGTERM)  # the parent only
        status = await asyncio.to_thread(served.process.wait, timeout(10))
        self.assertEqual(status, 0, served.tail())
        shutdown = {"event": "server_shutdown", "message": "The server is shutting down."}
        for ws in (first, second):
            self.assertEqual(await self.recv(ws), shutdown)
            await self.assertClosed(ws, 1001, "Server shutdown.")
        for pid in pids:
            with self.assertRaises(ProcessLookupError):
                os.kill(pid, 0)
        self.assertEqual(list(served.lines)[-1], "Stopped.")

    def test_workers_need_a_broker(self) -> None:
        """--workers 2 without a broker is refused with the reason (exit 2)."""
        done = run_zcli("serve", str(self.workspace), "--workers", "2", cwd=self.workspace)
        self.assertEqual(done.returncode, 2)
        self.assertEqual(
            done.stderr,
            "zcli: error: --workers 2 needs a broker (--broker redis://HOST:PORT/DB, or "
            "websocket.broker): without one, each worker's broadcasts, send_to and presence "
            "would reach only its own connections.\n",
        )

    def test_workers_without_so_reuseport(self) -> None:
        """Where SO_REUSEPORT is missing, --workers 2 is an error that says so (exit 2)."""
        stderr = io.StringIO()
        with mock.patch("zCLI.workers.REUSE_PORT", None), contextlib.redirect_stderr(stderr):
            status = main(["serve", str(self.workspace), "--workers", "2",
                           "--broker", self.redis.url])  # fmt: skip
        self.assertEqual(status, 2)
        self.assertEqual(
            stderr.getvalue(),
            "zcli: error: --workers 2 needs SO_REUSEPORT and fork, which this system does not "
            "have; run one zcli serve per port behind a proxy instead.\n",
        )
