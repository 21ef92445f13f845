"""A real ``zcli olaf server`` against hostile and odd peers: the handshake is accepted
from any plain websockets client (no Origin, no subprotocol, ping_interval=10, any path,
the legacy client that got HTTP 400 in plan 000); bad JSON, unknown types, missing
fields, oversized frames and bad signatures are dropped with a logged reason, the
sender's connection stays open and the other clients see nothing of it."""

from __future__ import annotations

import asyncio
import json
import re
import sys
import tempfile
import unittest
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect
from websockets.legacy.client import connect as legacy_connect
from websockets.sync.client import connect as sync_connect

from zCLI.apps.olaf import crypto
from zCLI.apps.olaf.messages import PublicChat, Signed
from zTestSuite import ServerProcess, requires_network, timeout

from .support import Peer, data_of

MAX_FRAME = 4096


def start(folder: Path, *extra: str) -> tuple[ServerProcess, str]:
    command = [sys.executable, "-m", "zCLI", "olaf", "server", "--port", "0"]
    command += ["--key", str(folder / "server.pem"), "--max-frame", str(MAX_FRAME), *extra]
    process = ServerProcess(command, cwd=folder)
    port = process.wait_for(r"olaf server listening on ws://[^:]+:(\d+) ").group(1)
    return process, f"127.0.0.1:{port}"


class ServerCase(unittest.IsolatedAsyncioTestCase):
    extra: tuple[str, ...] = ("--rate", "0")
    folder_handle: tempfile.TemporaryDirectory[str]
    server: ServerProcess
    address: str

    @classmethod
    def setUpClass(cls) -> None:
        cls.folder_handle = tempfile.TemporaryDirectory(prefix="olaf-hostile-")
        folder = Path(cls.folder_handle.name)
        cls.server, cls.address = start(folder, *cls.extra)

    @classmethod
    def tearDownClass(cls) -> None:
        cls.server.stop()
        cls.folder_handle.cleanup()

    async def peer(self, **options: Any) -> Peer:
        peer = await Peer(**options).open(self.address)
        self.addAsyncCleanup(peer.close)
        await peer.wait_list(lambda pems: peer.pem in pems)
        return peer

    async def logged(self, text: str) -> str:
        """The next line the server logs containing ``text``."""
        found = await asyncio.to_thread(self.server.wait_for, _escape(text), 5)
        return found.string


def _escape(text: str) -> str:
    return re.escape(text)


@requires_network
class TestHandshake(ServerCase):
    async def test_plain_clients_are_accepted(self) -> None:
        """No Origin, no subprotocol, ping_interval=10, any path, any Origin, an offered
        subprotocol: each handshake succeeds and hello gets the client list."""
        cases: list[tuple[str, dict[str, Any]]] = [
            ("", {}),
            ("/any/path?x=1", {}),
            ("", {"origin": "http://elsewhere.example"}),
            ("", {"subprotocols": ["olaf"]}),
        ]
        for path, options in cases:
            with self.subTest(path=path, options=options):
                peer = Peer()
                async with connect(f"ws://{self.address}{path}", ping_interval=10, **options) as ws:
                    if "subprotocols" in options:
                        self.assertEqual(ws.subprotocol, "olaf")
                    await ws.send(peer.session.hello())
                    await ws.send(peer.session.client_list_request())
                    while True:
                        frame = json.loads(await asyncio.wait_for(ws.recv(), timeout(3)))
                        if peer.pem in frame["servers"][0]["clients"]:
                            break
                    self.assertEqual(frame["type"], "client_list")
                    self.assertEqual(frame["servers"][0]["address"], self.address)

    async def test_the_legacy_client_of_plan_000_is_accepted(self) -> None:
        """websockets.legacy.client.connect(url, ping_interval=10) -- what got HTTP 400
        in plan 000 -- connects, and client_list_request is answered."""
        async with legacy_connect(f"ws://{self.address}", ping_interval=10) as ws:
            await ws.send('{"type": "client_list_request"}')
            frame = json.loads(await asyncio.wait_for(ws.recv(), timeout(3)))
        self.assertEqual(frame["type"], "client_list")


def _bad_frames(attacker: Peer, victim: Peer) -> list[tuple[str, str | bytes, str]]:
    """(name, frame, the reason the server logs)."""
    me = attacker.identity
    counter = 1000

    def signed(body: Any, key: crypto.Identity = me, data: Any = None) -> str:
        nonlocal counter
        counter += 1
        inner = data if data is not None else body.to_json()
        signature = crypto.sign(key.key, inner, counter)
        return json.dumps(Signed(inner, counter, signature, body).to_json())

    public = PublicChat(me.fingerprint, "bad")
    return [
        ("not JSON", "{not json", "the frame is not JSON"),
        ("a list", "[1, 2]", "the frame is a JSON list, not an object."),
        ("unknown type", '{"type": "gossip"}', "unknown message type 'gossip'."),
        ("no type", '{"data": {}}', "unknown message type None."),
        ("binary", b"\x00\x01", "a binary frame is not an OLAF message"),
        ("no data", '{"type": "signed_data", "counter": 1, "signature": "x"}', "no 'data'"),
        (
            "no counter",
            json.dumps({"type": "signed_data", "data": public.to_json(), "signature": "x"}),
            "signed_data has no 'counter' field.",
        ),
        (
            "counter as text",
            json.dumps(
                {"type": "signed_data", "data": public.to_json(), "counter": "9", "signature": "x"}
            ),
            "signed_data field 'counter' is str, not int.",
        ),
        (
            "public_chat without message",
            signed(public, data={"type": "public_chat", "sender": me.fingerprint}),
            "public_chat has no 'message' field.",
        ),
        (
            "chat with a number for iv",
            signed(
                public,
                data={
                    "type": "chat",
                    "destination_servers": [],
                    "iv": 5,
                    "symm_keys": [],
                    "chat": "",
                },
            ),
            "chat field 'iv' is int, not str.",
        ),
        ("unknown data type", signed(public, data={"type": "nope"}), "unknown data type 'nope'"),
        ("signed by another key", signed(public, key=victim.identity), "under no known form"),
        ("bad Base64", json.dumps({**json.loads(signed(public)), "signature": "!!"}), "no known"),
        ("oversized", "x" * (MAX_FRAME + 1), f"over the limit of {MAX_FRAME}."),
        ("client_list from a client", '{"type":"client_list","servers":[]}', "server-to-client"),
        ("second hello", signed(None, data={"type": "hello", "public_key": me.pem}), "already a"),
    ]  # fmt: skip


@requires_network
class TestHostileFrames(ServerCase):
    async def test_bad_frames_dropped_connection_kept_others_undisturbed(self) -> None:
        """Each bad frame is dropped with its reason logged; the sender can still chat
        and the other client receives only the sender's next valid public_chat."""
        attacker, victim = await self.peer(), await self.peer()
        for name, frame, reason in _bad_frames(attacker, victim):
            with self.subTest(name=name):
                await attacker.send(frame)
                line = await self.logged("dropped a frame: ")
                self.assertIn(reason, line)
                good = attacker.session.public(f"after {name}")
                await attacker.send(good)
                got = await victim.inbox.take("public_chat")
                self.assertEqual(got, json.loads(good))
                self.assertEqual(victim.inbox.pending("public_chat"), [])

    async def test_replayed_frame_dropped(self) -> None:
        """The same signed public_chat sent twice reaches the other client once."""
        attacker, victim = await self.peer(), await self.peer()
        frame = attacker.session.public("once")
        await attacker.send(frame)
        await attacker.send(frame)
        await self.logged("is not above")
        marker = attacker.session.public("marker")
        await attacker.send(marker)
        self.assertEqual(data_of(await victim.inbox.take("public_chat"))["message"], "once")
        self.assertEqual(data_of(await victim.inbox.take("public_chat"))["message"], "marker")

    async def test_frame_beyond_the_hard_limit_closes_only_that_connection(self) -> None:
        """A frame over 4x max_frame closes its connection with 1009; others go on."""
        attacker, victim = await self.peer(), await self.peer()
        await attacker.send("x" * (MAX_FRAME * 4 + 1))
        assert attacker.socket is not None
        await asyncio.wait_for(attacker.socket.wait_closed(), timeout(3))
        self.assertEqual(attacker.socket.close_code, 1009)
        third = await self.peer()
        frame = third.session.public("still here")
        await third.send(frame)
        self.assertEqual(await victim.inbox.take("public_chat"), json.loads(frame))

    def test_random_json_never_breaks_the_connection(self) -> None:
        """Property: any JSON value (or any text) is dropped or answered, and the
        connection then still answers client_list_request."""
        session = Peer().session
        with sync_connect(f"ws://{self.address}", open_timeout=timeout(3)) as ws:
            ws.send(session.hello())

            json_values = st.recursive(
                st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                lambda inner: (
                    st.lists(inner, max_size=4)
                    | st.dictionaries(
                        st.sampled_from(["type", "data", "counter", "signature", "clients", "x"]),
                        inner,
                        max_size=5,
                    )
                ),
                max_leaves=12,
            )
            types = st.sampled_from(
                ["signed_data", "hello", "chat", "public_chat", "client_update", "client_list"]
            )
            frames = (
                st.text(max_size=60)
                | json_values.map(json.dumps)
                | st.builds(lambda t, rest: json.dumps({**rest, "type": t}), types,
                            st.dictionaries(st.text(max_size=8), json_values, max_size=4))
            )  # fmt: skip

            @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
            @given(frames)
            def check(frame: str) -> None:
                ws.send(frame)
                ws.send(session.client_list_request())
                while True:
                    reply = json.loads(ws.recv(timeout=timeout(3)))
                    if reply.get("type") == "client_list":
                        return

            check()


@requires_network
class TestRate(ServerCase):
    extra = ("--rate", "5")

    async def test_flood_dropped_over_the_rate_connection_kept(self) -> None:
        """Over --rate, frames are dropped with 'over the rate' logged; the connection
        stays open and answers once the rate allows again."""
        flooder = await Peer().open(self.address)
        self.addAsyncCleanup(flooder.close)
        for _ in range(40):
            await flooder.send(flooder.session.client_list_request())
        await self.logged("over the rate of 5 messages per second")
        self.assertFalse(flooder.socket is None or flooder.socket.close_code is not None)
        await flooder.wait_list(lambda pems: flooder.pem in pems, units=10)


if __name__ == "__main__":
    unittest.main()


@requires_network
class TestSilentConnection(ServerCase):
    extra = ("--rate", "0", "--hello-timeout", "0.5")

    async def test_a_connection_that_never_says_hello_is_closed_without_another_arriving(
        self,
    ) -> None:
        """With no other connection to prompt the check, a silent one is closed 1008
        "no hello within 0.5 s" by the server's own timer."""
        async with connect(f"ws://{self.address}", open_timeout=timeout(2)) as ws:
            await asyncio.wait_for(ws.wait_closed(), timeout(3))
            self.assertEqual((ws.close_code, ws.close_reason), (1008, "no hello within 0.5 s"))
