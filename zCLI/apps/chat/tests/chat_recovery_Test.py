"""A zChat server killed with SIGKILL while messages flow: after a restart on the same
database every message whose sender heard "stored" or "delivered" reaches its
addressee (or already had), none comes back once acknowledged, and no id is reused."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import tempfile
import unittest
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

from zTestSuite import ServerProcess, requires_network, time_limit, timeout

ENV = {"ZCHAT_ACK_TIMEOUT": "0.2", "ZCHAT_MAX_RATE": "10000"}
RECIPIENTS = ("bea", "cid", "dot")  # bea acks, cid is offline, dot never acks
WAVE = 30  # messages per sender before it waits for their replies


def start_server(folder: Path, db: str | None = None) -> tuple[ServerProcess, str]:
    """``zcli chat -s 0`` in ``folder``; ``db`` is its ``--db`` (default: SQLite there)."""
    server = ServerProcess(
        [sys.executable, "-m", "zCLI", "chat", "-s", "0", "--workspace", str(folder)]
        + ["--db", db or str(folder / "chat.sqlite3")],
        cwd=folder,
        env=ENV,
    )
    port = server.wait_for(r"ws://127\.0\.0\.1:(\d+)").group(1)
    return server, f"ws://127.0.0.1:{port}"


@dataclass
class Peer:
    """One signed-in user: what it sent, heard and acknowledged."""

    name: str
    ws: ClientConnection
    acks: bool = True
    sent: dict[str, str] = field(default_factory=dict)  # request id -> text
    ids: dict[str, int] = field(default_factory=dict)  # request id -> message id
    status: dict[int, str] = field(default_factory=dict)  # message id -> last status
    received: list[tuple[int, str, bool]] = field(default_factory=list)  # id, text, offline
    acked: set[int] = field(default_factory=set)  # ids the server confirmed acked
    tables: int = 0  # chat.clients pushes: on sign-in, the last thing sent
    closed: bool = False
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def read(self) -> None:
        try:
            async for frame in self.ws:
                self.take(json.loads(frame))
        except websockets.ConnectionClosed:
            pass
        finally:
            self.closed = True
            self.changed.set()

    def take(self, message: dict[str, Any]) -> None:
        event, rid = message.get("event"), message.get("_requestId")
        data: Any = message.get("data")
        if event == "chat.message":
            self.received.append((data["id"], data["text"], data.get("offline", False)))
            if self.acks:
                frame = {"event": "chat.ack", "data": {"id": data["id"]}, "_requestId": data["id"]}
                asyncio.ensure_future(self._send(frame))
        elif event == "chat.status":
            self.status[data["id"]] = data["status"]
        elif event == "chat.clients":
            self.tables += 1
        elif isinstance(rid, str) and "result" in message:
            self.ids[rid] = message["result"]["id"]
        elif isinstance(rid, int) and message.get("result") == {"acked": True}:
            self.acked.add(rid)
        self.changed.set()

    async def _send(self, frame: dict[str, Any]) -> None:
        try:
            await self.ws.send(json.dumps(frame))
        except websockets.ConnectionClosed:
            pass

    async def wait(self, condition: Any, units: float = 5) -> None:
        async def until() -> None:
            while not condition():
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(until(), timeout(units))


async def sign_up(url: str, name: str) -> str:
    async with websockets.connect(url) as ws:
        frame = {"username": name, "password": "pw"}
        await ws.send(json.dumps({"event": "chat.register", "data": frame, "_requestId": 1}))
        return str(json.loads(await ws.recv())["result"]["token"])


async def sign_in(url: str, name: str, token: str, acks: bool = True) -> Peer:
    ws = await websockets.connect(f"{url}/?token={token}")
    info = json.loads(await ws.recv())
    assert info["event"] == "connection_info", info
    return Peer(name, ws, acks)


@requires_network
class KillTest(unittest.IsolatedAsyncioTestCase):
    db: str | None = None  # the server's --db (None: chat.sqlite3 in the test's folder)

    async def asyncSetUp(self) -> None:
        folder = tempfile.TemporaryDirectory()
        self.addCleanup(folder.cleanup)
        self.folder = Path(folder.name)

    def serve(self) -> str:
        server, url = start_server(self.folder, self.db)
        self.addCleanup(server.stop)
        self.server = server
        return url

    async def connect(self, url: str, name: str, token: str, acks: bool = True) -> Peer:
        peer = await sign_in(url, name, token, acks)
        task = asyncio.create_task(peer.read())
        self.addAsyncCleanup(asyncio.wait_for, task, timeout(5))
        self.addAsyncCleanup(peer.ws.close)  # cleanups run last first: this one, then that
        return peer

    @time_limit(60)
    async def test_kill_9_mid_traffic_loses_nothing_acknowledged(self) -> None:
        """kill -9 while two senders write to an acking, an offline and a silent user:
        after the restart every message reported stored or delivered arrives, none
        acknowledged comes back, and new ids continue past the old ones."""
        url = await asyncio.to_thread(self.serve)
        names = ("ann", "abe", *RECIPIENTS)
        tokens = dict(
            zip(names, await asyncio.gather(*(sign_up(url, n) for n in names)), strict=True)
        )
        senders = [await self.connect(url, n, tokens[n]) for n in ("ann", "abe")]
        peers = {"bea": await self.connect(url, "bea", tokens["bea"])}
        peers["dot"] = await self.connect(url, "dot", tokens["dot"], acks=False)

        async def wave(sender: Peer, number: int) -> None:
            for i in range(WAVE):
                rid = f"{number}-{i}"
                text = f"{sender.name} {rid}"
                sender.sent[rid] = text
                to = RECIPIENTS[i % len(RECIPIENTS)]
                frame = {"event": "chat.send", "data": {"to": to, "text": text}, "_requestId": rid}
                await sender.ws.send(json.dumps(frame))

        for number in range(3):  # three settled waves, then one cut short by the kill
            await asyncio.gather(*(wave(s, number) for s in senders))
            for sender in senders:
                await sender.wait(lambda s=sender: len(s.status) == len(s.sent))
        await asyncio.gather(*(wave(s, 3) for s in senders))
        await senders[0].wait(lambda: len(senders[0].status) > 3 * WAVE)
        await asyncio.to_thread(self.server.stop, signal.SIGKILL)
        for peer in (*senders, *peers.values()):
            await peer.wait(lambda p=peer: p.closed)

        told = {  # message id -> (text, status), for every message its sender heard about
            sender.ids[rid]: (text, sender.status[sender.ids[rid]])
            for sender in senders
            for rid, text in sender.sent.items()
            if rid in sender.ids and sender.ids[rid] in sender.status
        }
        self.assertGreater(len(told), 3 * 2 * WAVE)
        before = {name: list(peer.received) for name, peer in peers.items()}
        acked = {name: set(peer.acked) for name, peer in peers.items()}
        highest = max(max(s.ids.values()) for s in senders)

        url = await asyncio.to_thread(self.serve)
        again = {n: await self.connect(url, n, tokens[n]) for n in RECIPIENTS}
        for peer in again.values():  # stored messages come before the client table
            await peer.wait(lambda p=peer: p.tables > 0)

        for name, peer in again.items():
            with self.subTest(recipient=name):
                # "delivered": the server had the ack. "stored": acked before the kill,
                # or it comes now; either way with the text that was sent.
                done = acked.get(name, set())
                heard = {i: t for i, t, _ in before.get(name, []) if i in done}
                heard |= {i: t for i, t, _ in peer.received}
                ours = {i: told[i] for i in told if told[i][0].endswith(self.rids(name))}
                owed = {i: text for i, (text, status) in ours.items() if status == "stored"}
                self.assertEqual({i: heard.get(i) for i in owed}, owed)
                delivered = {i: text for i, (text, status) in ours.items() if status != "stored"}
                heard_live = {i: t for i, t, _ in before.get(name, [])}
                self.assertEqual({i: heard_live.get(i) for i in delivered}, delivered)
                self.assertEqual({i for i, _, _ in peer.received} & done, set())
                self.assertTrue(all(offline for _, _, offline in peer.received))
        writer = await self.connect(url, "ann", tokens["ann"])
        rid = "after"
        frame = {"event": "chat.send", "data": {"to": "bea", "text": "new"}, "_requestId": rid}
        await writer.ws.send(json.dumps(frame))
        await writer.wait(lambda: rid in writer.ids)
        self.assertGreater(writer.ids[rid], highest)

    @staticmethod
    def rids(recipient: str) -> tuple[str, ...]:
        """The request-id suffixes of the messages sent to ``recipient``."""
        index = RECIPIENTS.index(recipient)
        return tuple(f" {n}-{i}" for n in range(4) for i in range(WAVE) if i % 3 == index)
