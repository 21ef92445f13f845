"""zBifrost against a bare websockets server, measured in the same run.

    python bench/bridge.py [--quick] [--repeats N]

Each server runs in its own process; the clients run in this one. Printed per metric:
the median of the repeats for zBifrost, for the baseline, and their ratio.

- dispatch: ``^Ping`` round trips a second with 1 and 50 clients, against a bare
  websockets server that parses the JSON and answers the same reply.
- fan-out: one event to N idle clients, from the trigger until every client has it,
  against ``websockets.broadcast`` to the same N clients.
- memory: the server's resident memory per idle connection, against the bare server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import websockets

ZUI = "Main:\n  ~Root*: [^Ping]\n  ^Ping: Pong!\n"
PLUGIN = """
from zCLI import Plugin

def fanout(ctx, data):
    return {"sent": ctx.bridge.broadcast({"event": "bench.tick", "n": data["n"]})}

PLUGIN = Plugin("bench", events={"bench.fanout": fanout})
"""


# --- servers (run as child processes) -----------------------------------------------


async def serve_zbifrost(workspace: str) -> None:
    from zCLI import zCLI

    z = zCLI(
        {
            "zWorkspace": workspace,
            "zVaFile": "@.zUI.bench",
            "websocket": {
                "port": 0,
                "require_auth": False,
                "max_connections": 20000,
                "rate_limit": 1e9,
                "rate_burst": 1_000_000,
            },
        }
    )
    async with z.comm as bridge:
        print(bridge.port, flush=True)
        await asyncio.Event().wait()


async def serve_bare() -> None:
    from websockets.asyncio.server import broadcast, serve

    connections: set[Any] = set()

    async def handler(ws: Any) -> None:
        connections.add(ws)
        sequence = 0
        try:
            async for frame in ws:
                request = json.loads(frame)
                if request.get("event") == "bench.fanout":
                    broadcast(
                        connections, json.dumps({"event": "bench.tick", "n": request["data"]["n"]})
                    )
                    continue
                await ws.send(json.dumps({"result": {"message": "Pong!"}, "_requestId": sequence}))
                sequence += 1
        finally:
            connections.discard(ws)

    async with serve(handler, "127.0.0.1", 0, max_size=2**20) as server:
        print(next(iter(server.sockets)).getsockname()[1], flush=True)
        await asyncio.Event().wait()


class Server:
    def __init__(self, kind: str, workspace: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, __file__, f"--serve-{kind}", workspace],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.url = f"ws://127.0.0.1:{int(self.process.stdout.readline())}"

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait()


# --- clients ----------------------------------------------------------------------------


async def open_clients(url: str, count: int, batch: int = 200) -> list[Any]:
    clients: list[Any] = []
    while len(clients) < count:
        size = min(batch, count - len(clients))
        opened = await asyncio.gather(
            *(websockets.connect(url, compression=None, max_size=2**20) for _ in range(size))
        )
        clients.extend(opened)
    await asyncio.gather(*(skip_greeting(ws) for ws in clients))
    return clients


async def skip_greeting(ws: Any) -> None:
    """zBifrost greets with connection_info; the bare server says nothing first."""
    try:
        first = await asyncio.wait_for(ws.recv(), 0.05)
    except TimeoutError:
        return
    assert json.loads(first)["event"] == "connection_info"


async def close_all(clients: list[Any]) -> None:
    await asyncio.gather(*(ws.close() for ws in clients), return_exceptions=True)


async def dispatch_rate(url: str, clients: int, seconds: float) -> float:
    sockets = await open_clients(url, clients)
    frame = json.dumps({"event": "dispatch", "zKey": "^Ping"})
    deadline = time.perf_counter() + seconds
    counts = [0] * clients

    async def loop(index: int, ws: Any) -> None:
        while time.perf_counter() < deadline:
            await ws.send(frame)
            reply = json.loads(await ws.recv())
            assert reply["result"] == {"message": "Pong!"}, reply
            counts[index] += 1

    started = time.perf_counter()
    await asyncio.gather(*(loop(i, ws) for i, ws in enumerate(sockets)))
    elapsed = time.perf_counter() - started
    await close_all(sockets)
    return sum(counts) / elapsed


async def fanout_seconds(url: str, clients: int, rounds: int) -> float:
    sockets = await open_clients(url, clients)
    trigger = sockets[0]
    times = []
    for n in range(rounds):
        started = time.perf_counter()
        await trigger.send(json.dumps({"event": "bench.fanout", "data": {"n": n}}))

        async def tick(ws: Any, n: int = n) -> None:
            while True:
                message = json.loads(await ws.recv())
                if message.get("event") == "bench.tick" and message["n"] == n:
                    return

        await asyncio.gather(*(tick(ws) for ws in sockets))
        times.append(time.perf_counter() - started)
    await close_all(sockets)
    return statistics.median(times)


async def memory_per_connection(server: Server, clients: int) -> float:
    before = server.rss_kib()
    sockets = await open_clients(server.url, clients)
    await asyncio.sleep(0.5)  # a measurement pause, not synchronisation: let RSS settle
    after = server.rss_kib()
    await close_all(sockets)
    return (after - before) * 1024 / clients


# --- the run ------------------------------------------------------------------------------


def measure(kind: str, workspace: str, what: str, *args: Any) -> float:
    server = Server(kind, workspace)
    try:
        if what == "memory":
            return asyncio.run(memory_per_connection(server, *args))
        return asyncio.run(globals()[what](server.url, *args))
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer, shorter runs")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--serve-zbifrost", metavar="WORKSPACE")
    parser.add_argument("--serve-bare", metavar="WORKSPACE")
    args = parser.parse_args()
    if args.serve_zbifrost:
        asyncio.run(serve_zbifrost(args.serve_zbifrost))
        return
    if args.serve_bare:
        asyncio.run(serve_bare())
        return

    seconds = 1.0 if args.quick else 3.0
    big = 2_000 if args.quick else 10_000
    cases = [
        ("dispatch, 1 client (round trips/s)", "dispatch_rate", (1, seconds), True),
        ("dispatch, 50 clients (round trips/s)", "dispatch_rate", (50, seconds), True),
        ("fan-out to 1,000 clients (ms)", "fanout_seconds", (1_000, 5), False),
        (f"fan-out to {big:,} clients (ms)", "fanout_seconds", (big, 3), False),
        ("memory per idle connection (bytes)", "memory", (1_000,), False),
    ]
    with tempfile.TemporaryDirectory() as workspace:
        Path(workspace, "zUI.bench.yaml").write_text(ZUI)
        Path(workspace, "plugins").mkdir()
        Path(workspace, "plugins", "bench.py").write_text(PLUGIN)
        print(
            f"{'metric':42} {'zBifrost':>12} {'baseline':>12} {'ratio':>7}  "
            f"(median of {args.repeats}; ratio >= 1 is zBifrost ahead)"
        )
        for label, what, params, higher_is_better in cases:
            ours, base = [], []
            for _ in range(args.repeats):  # alternate, so drift hits both alike
                ours.append(measure("zbifrost", workspace, what, *params))
                base.append(measure("bare", workspace, what, *params))
            mine, theirs = statistics.median(ours), statistics.median(base)
            ratio = mine / theirs if higher_is_better else theirs / mine
            scale = 1000 if what == "fanout_seconds" else 1
            print(
                f"{label:42} {mine * scale:12.1f} {theirs * scale:12.1f} {ratio:7.2f}", flush=True
            )


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
