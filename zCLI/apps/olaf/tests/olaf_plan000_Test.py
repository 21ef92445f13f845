"""Test plan 000 (interoperability with another group's server), its four steps
between server A (always ours, ``zcli olaf server``) and server B (ours, or another
implementation given as a target), with a client on each.

1. server_hello: B connects to A's address and its signed server_hello is captured
   (the suite plays A first, as a fake neighbour).
2. client_update_request: the suite, as A (A's key), asks B and gets B's clients.
3. chat and public_chat from a client on one server arrive at a client on the other
   exactly once, as sent.
4. online users: a client connecting to B, then leaving, shows in the client list of
   the client on A.

Against another implementation: give its address (OLAF_PEER) and public key
(OLAF_PEER_KEY), and configure it with A as a neighbour: A listens on OLAF_OURS_PORT
with the key OLAF_OURS_KEY (created when missing; its ``.pub.pem`` goes to B's admin).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import sys
import tempfile
import unittest
from pathlib import Path
from typing import Any

from zCLI.apps.olaf import crypto
from zCLI.apps.olaf.messages import ClientUpdateRequest, ServerHello, Signed, normalise_address
from zTestSuite import ServerProcess, Target, requires_network

from .support import FakeNeighbour, Peer, data_of, free_port, make_key, start_server

OLAF_PEER = Target(
    "OLAF_PEER",
    "host:port of another implementation's server B; unset: the suite starts ours",
)
OLAF_PEER_KEY = Target("OLAF_PEER_KEY", "the PEM public key file of OLAF_PEER's server")
OLAF_OURS_PORT = Target(
    "OLAF_OURS_PORT", "the port our server A listens on (B's neighbour); unset: a free port"
)
OLAF_OURS_KEY = Target(
    "OLAF_OURS_KEY", "our server A's private key file (created when missing); unset: a new one"
)


def signed_frame(who: crypto.Identity, body: Any, counter: int) -> str:
    data = body.to_json()
    return json.dumps(Signed(data, counter, crypto.sign(who.key, data, counter), body).to_json())


@requires_network
class Plan000Test(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self) -> None:
        folder = tempfile.TemporaryDirectory(prefix="olaf-plan000-")
        self.addCleanup(folder.cleanup)
        self.folder = Path(folder.name)
        self.port_a = int(OLAF_OURS_PORT.value or free_port())
        self.address_a = f"127.0.0.1:{self.port_a}"
        self.key_a = Path(OLAF_OURS_KEY.value or self.folder / "a.pem")
        self.a = make_key(self.key_a)
        asyncio.get_running_loop().set_exception_handler(_quiet_accept_race)
        # Step 1 needs someone listening at A's address before B first tries it.
        self.fake = FakeNeighbour()
        await self.fake.start(self.port_a)
        self.addAsyncCleanup(self.fake.stop)
        self.processes: list[ServerProcess] = []
        if OLAF_PEER.value:
            if not OLAF_PEER_KEY.value:
                self.fail("OLAF_PEER needs OLAF_PEER_KEY (the PEM public key of that server)")
            self.address_b = OLAF_PEER.value
            self.b_key = crypto.load_public_key(Path(OLAF_PEER_KEY.value).read_bytes())
            self.b_pub = Path(OLAF_PEER_KEY.value)
        else:
            port_b = free_port()
            self.address_b = f"127.0.0.1:{port_b}"
            b_pub = crypto.public_path(self.folder / "b.pem")
            make_key(self.folder / "b.pem")
            self.b_key = crypto.load_public_key(b_pub.read_bytes())
            self.b_pub = b_pub
            neighbours = {self.address_a: crypto.public_path(self.key_a)}
            self.started(*start_server(self.folder, "b", port_b, neighbours))
        self.peers: list[Peer] = []
        self.fifos: dict[int, int] = {}

    def started(self, process: ServerProcess, port: int) -> None:
        self.processes.append(process)
        self.addCleanup(process.stop)

    async def peer(self, address: str, **options: Any) -> Peer:
        peer = await Peer(**options).open(address)
        self.peers.append(peer)
        self.addAsyncCleanup(peer.close)
        return peer

    async def become_a(self) -> None:
        """Stop playing A and start the real server A at A's address."""
        await self.fake.stop()
        command = [sys.executable, "-m", "zCLI", "olaf", "server", "--port", str(self.port_a)]
        command += ["--key", str(self.key_a), "--retry-max", "1"]
        command += ["--neighbour", f"{self.address_b}={self.b_pub}"]
        process = ServerProcess(command, cwd=self.folder)
        self.addCleanup(process.stop)
        self.processes.append(process)
        await asyncio.to_thread(process.wait_for, "olaf server listening on")

    async def linked_pair(self) -> tuple[Peer, Peer]:
        """A running, x on A and y on B, each seeing the other in its client list."""
        await self.become_a()
        x = await self.peer(self.address_a)
        y = await self.peer(self.address_b)
        await x.wait_list(lambda pems: y.pem in pems, units=15)
        await y.wait_list(lambda pems: x.pem in pems, units=15)
        return x, y

    # -- step 1 -------------------------------------------------------------------

    async def test_1_server_hello_captured(self) -> None:
        """B connects to A's address and sends a signed_data server_hello naming itself,
        signed with B's key, then client_update_request."""
        frame = await self.fake.inbox.take("server_hello", units=15)
        self.assertEqual(set(frame), {"type", "data", "counter", "signature"})
        self.assertEqual(frame["type"], "signed_data")
        data = data_of(frame)
        self.assertEqual(set(data), {"type", "sender"})
        self.assertEqual(normalise_address(data["sender"]), normalise_address(self.address_b))
        form = crypto.verify(self.b_key, frame["data"], frame["counter"], frame["signature"])
        self.assertIsNotNone(form, "B's server_hello does not verify with B's public key")
        logging.getLogger(__name__).info("B's server_hello signature form: %s", form)
        request = await self.fake.inbox.take("client_update_request", units=5)
        self.assertEqual(request, {"type": "client_update_request"})

    # -- step 2 -------------------------------------------------------------------

    async def test_2_client_update_request_answered(self) -> None:
        """As A (A's key and address), server_hello then client_update_request to B:
        B answers client_update listing exactly its clients' PEMs."""
        await self.fake.stop()
        y = await self.peer(self.address_b)
        await y.wait_list(lambda pems: y.pem in pems)
        a = await Peer(self.a).open(self.address_b, hello=False)
        self.addAsyncCleanup(a.close)
        await a.send(signed_frame(self.a, ServerHello(self.address_a), 1))
        await a.send(json.dumps(ClientUpdateRequest().to_json()))
        update = await a.inbox.take("client_update", units=5)
        self.assertEqual(update, {"type": "client_update", "clients": [y.pem]})

    # -- step 3 -------------------------------------------------------------------

    async def test_3_public_chat_arrives_once_as_sent(self) -> None:
        """A public_chat from x (on A) reaches y (on B) byte for byte, once: the next
        public_chat y gets is x's second one."""
        x, y = await self.linked_pair()
        first = x.session.public("hello neighbourhood")
        await x.send(first)
        got = await y.inbox.take("public_chat", units=5)
        self.assertEqual(got, json.loads(first))
        self.assertEqual(
            y.session.receive(json.dumps(got)),
            [f"public from {x.identity.fingerprint}: hello neighbourhood [verified]"],
        )
        await x.send(x.session.public("second"))
        self.assertEqual(data_of(await y.inbox.take("public_chat"))["message"], "second")
        self.assertEqual(x.inbox.pending("public_chat"), [])

    async def test_3_chat_arrives_once_and_decrypts(self) -> None:
        """A chat from y (on B) to x (on A) arrives unchanged, once, and decrypts to
        participants [y, x] and the message; x's reply reaches y the same way."""
        x, y = await self.linked_pair()
        sent = y.session.chat([x.identity.fingerprint], "to x")
        await y.send(sent)
        got = await x.inbox.take("chat", units=5)
        self.assertEqual(got, json.loads(sent))
        data = data_of(got)
        self.assertEqual(set(data), {"type", "destination_servers", "iv", "symm_keys", "chat"})
        self.assertEqual(
            crypto.open_chat(x.identity.key, data["iv"], data["symm_keys"], data["chat"]),
            {"chat": {"participants": [y.identity.fingerprint, x.identity.fingerprint],
                      "message": "to x"}},
        )  # fmt: skip
        reply = x.session.chat([y.identity.fingerprint], "to y")
        await x.send(reply)
        self.assertEqual(await y.inbox.take("chat", units=5), json.loads(reply))
        marker = y.session.public("marker")
        await y.send(marker)
        await x.inbox.take("public_chat", units=5)
        self.assertEqual(x.inbox.pending("chat"), [])

    # -- step 4 -------------------------------------------------------------------

    async def test_4_online_users_follow_a_distant_client(self) -> None:
        """When z connects to B, x's client list on A gains z under B's address; when
        z leaves, it loses it."""
        x, y = await self.linked_pair()
        z = await self.peer(self.address_b)
        listing = await x.wait_list(lambda pems: z.pem in pems)
        [b_entry] = [
            s for s in listing["servers"]
            if normalise_address(s["address"]) == normalise_address(self.address_b)
        ]  # fmt: skip
        self.assertEqual(sorted(b_entry["clients"]), sorted([y.pem, z.pem]))
        await z.close()
        await x.wait_list(lambda pems: z.pem not in pems and y.pem in pems)

    async def test_terminal_clients_exchange_messages(self) -> None:
        """Two ``zcli olaf client`` processes, one per server, send a public message
        and a private one; each line arrives decrypted and verified."""
        await self.become_a()
        left = self.terminal(self.address_a)
        right = self.terminal(self.address_b)
        me_left = await asyncio.to_thread(left.wait_for, r"^connected to \S+ as (\S+)$")
        me_right = await asyncio.to_thread(right.wait_for, r"^connected to \S+ as (\S+)$")
        fp_left, fp_right = me_left.group(1), me_right.group(1)
        await asyncio.to_thread(left.wait_for, rf"^online 2: .*{_re(fp_right)}", 15)
        await asyncio.to_thread(right.wait_for, rf"^online 2: .*{_re(fp_left)}", 15)
        self.type(left, f"public hi from the left\nmsg {fp_right} psst right\n")
        await asyncio.to_thread(
            right.wait_for, rf"^public from {_re(fp_left)}: hi from the left \[verified\]$"
        )
        await asyncio.to_thread(
            right.wait_for,
            rf"^chat from {_re(fp_left)} to {_re(fp_right)}: psst right \[verified\]$",
        )

    def terminal(self, address: str) -> ServerProcess:
        fifo = self.folder / f"stdin-{len(self.processes)}"
        os.mkfifo(fifo)
        command = [sys.executable, "-m", "zCLI", "olaf", "client", address]
        process = ServerProcess(["sh", "-c", 'exec "$@" < "$0"', str(fifo), *command])
        self.addCleanup(process.stop)
        self.processes.append(process)
        handle = os.open(fifo, os.O_WRONLY)
        self.addCleanup(os.close, handle)
        self.fifos[id(process)] = handle
        return process

    def type(self, process: ServerProcess, text: str) -> None:
        os.write(self.fifos[id(process)], text.encode())


def _quiet_accept_race(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """Python 3.11 asserts when a connection (B retrying every second) is accepted as
    the fake neighbour's server closes (CPython gh-109538); anything else is shown."""
    if "transport creation for incoming connection" in str(context.get("message")):
        return
    loop.default_exception_handler(context)


def _re(text: str) -> str:
    return re.escape(text)


if __name__ == "__main__":
    unittest.main()
