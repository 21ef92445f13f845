"""zNeighbourhood public_chat fan-out across two servers, against a bare websockets
fan-out of the same shape measured in the same run.

    python bench/olaf.py [--clients N] [--rate R] [--seconds S] [--burst K] [--repeats N]

Processes: this one starts two servers A and B, each the other's neighbour, and prints
the report; the servers are ``zcli olaf server`` (OLAF) or this file with
``--serve-bare`` (the baseline: one process per server, each forwards a client's frame
to its other clients with ``websockets.broadcast`` and to the other server over one
link); the load generator runs in its own process (this file with ``--generate``).

The generator connects N clients, half to each server (OLAF: each says a signed hello;
keys are shared between clients, 8 in all, since key generation is not what is
measured), then two senders, one per server, send signed public_chat frames. Both
setups get the same frames. Each message must reach the N - 1 other clients:

- steady: R messages a second for S seconds (open loop: message i is due at
  start + i / R, latency runs from then); delivered share and latency p50/p99 over
  every delivery.
- burst: K messages sent back to back; messages a second = K / (time until the last
  delivery), and deliveries a second.

Figures are medians of ``--repeats``, OLAF and bare alternating.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import websockets
from procstat import cpu_seconds, percentile, stop
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from zCLI.apps.olaf import crypto  # noqa: E402 (after the path is set)
from zCLI.apps.olaf.client import ClientSession  # noqa: E402


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- the baseline server ------------------------------------------------------------


async def serve_bare(port: int, peer: int) -> None:
    clients: set[ServerConnection] = set()
    link: list[ClientConnection] = []

    async def handler(ws: ServerConnection) -> None:
        from_peer = ws.request is not None and ws.request.path == "/peer"
        if not from_peer:
            clients.add(ws)
        try:
            async for frame in ws:
                websockets.broadcast([c for c in clients if c is not ws], frame)
                if not from_peer and link:
                    await link[0].send(frame)
        finally:
            clients.discard(ws)

    async with serve(handler, "127.0.0.1", port, compression=None, max_size=None):
        print("bare listening", flush=True)
        while True:
            try:
                async with connect(f"ws://127.0.0.1:{peer}/peer", compression=None) as ws:
                    link.append(ws)
                    await ws.wait_closed()
                    link.clear()
            except OSError:
                await asyncio.sleep(0.2)  # the other server is not up yet: poll its port


# -- the servers --------------------------------------------------------------------


def start_pair(kind: str, folder: Path) -> list[subprocess.Popen[str]]:
    ports = [free_port(), free_port()]
    processes = []
    for index, (port, other) in enumerate((ports, ports[::-1])):
        if kind == "bare":
            command = [sys.executable, __file__, "--serve-bare", str(port), "--peer", str(other)]
        else:
            name, peer = "ab"[index], "ab"[1 - index]
            command = [sys.executable, "-m", "zCLI", "olaf", "server", "--port", str(port)]
            command += ["--key", str(folder / f"{name}.pem"), "--rate", "0"]
            command += ["--max-clients", "5000", "--queue", "100000", "--retry-max", "0.5"]
            command += ["--neighbour", f"127.0.0.1:{other}={folder / f'{peer}.pub.pem'}"]
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT
        )
        assert process.stdout is not None
        process.stdout.readline()  # its "listening" line
        processes.append(process)
    processes[0].ports = ports  # type: ignore[attr-defined]
    return processes


# -- the load generator -------------------------------------------------------------


class Receiver:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.counts: dict[int, int] = {}
        self.changed = asyncio.Event()
        self.due: dict[int, float] = {}

    def on_frame(self, text: str) -> None:
        if '"public_chat"' not in text:
            return
        now = time.monotonic()
        frame = json.loads(text)
        data = frame["data"]
        seq = int((json.loads(data) if isinstance(data, str) else data)["message"])
        self.counts[seq] = self.counts.get(seq, 0) + 1
        self.latencies.append(now - self.due.get(seq, now))
        self.changed.set()

    async def wait_for(self, seqs: range, expected: int, limit: float) -> bool:
        deadline = time.monotonic() + limit
        while any(self.counts.get(s, 0) < expected for s in seqs):
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                return False
        return True


async def generate(args: argparse.Namespace) -> dict[str, Any]:
    keys = [crypto.Identity.generate() for _ in range(8)]
    urls = [f"ws://127.0.0.1:{port}" for port in args.ports]
    receiver = Receiver()
    sockets: list[ClientConnection] = []
    sessions: list[ClientSession] = []

    async def reader(ws: ClientConnection) -> None:
        async for frame in ws:
            receiver.on_frame(frame if isinstance(frame, str) else "")

    tasks = []
    for index in range(args.clients):
        ws = await connect(urls[index % 2], compression=None, max_size=None, ping_interval=None)
        session = ClientSession(keys[index % len(keys)])
        if args.kind == "olaf":
            await ws.send(session.hello())
        sockets.append(ws)
        sessions.append(session)
        tasks.append(asyncio.create_task(reader(ws)))
    senders = [0, 1]  # the first client on each server
    expected = args.clients - 1
    seq = 0

    async def send(seq: int) -> None:
        index = senders[seq % 2]
        await sockets[index].send(sessions[index].public(str(seq)))

    # Warm-up: until one message reaches everyone (every hello and the link are in).
    for _ in range(200):
        receiver.due[seq] = time.monotonic()
        await send(seq)
        seq += 1
        if await receiver.wait_for(range(seq - 1, seq), expected, 0.25):
            break
    else:
        raise SystemExit("warm-up: a message never reached every client")
    receiver.latencies.clear()

    # Steady: open loop at args.rate.
    first, count = seq, int(args.rate * args.seconds)
    start = time.monotonic() + 0.05
    for i in range(count):
        due = start + i / args.rate
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        receiver.due[seq] = due
        await send(seq)
        seq += 1
    await receiver.wait_for(range(first, seq), expected, 10.0)
    steady = sorted(receiver.latencies)
    delivered = sum(min(receiver.counts.get(s, 0), expected) for s in range(first, seq))

    # Burst: pre-signed frames back to back.
    first = seq
    frames = []
    for i in range(args.burst):
        index = senders[(first + i) % 2]
        frames.append((index, sessions[index].public(str(first + i))))
    began = time.monotonic()
    for i, (index, text) in enumerate(frames):
        receiver.due[first + i] = began
        await sockets[index].send(text)
    done = await receiver.wait_for(range(first, first + args.burst), expected, 60.0)
    elapsed = time.monotonic() - began
    for ws in sockets:
        await ws.close()
    for task in tasks:
        task.cancel()
    return {
        "steady_share": delivered / max(1, count * expected),
        "p50_ms": percentile(steady, 0.50) * 1000,
        "p99_ms": percentile(steady, 0.99) * 1000,
        "burst_msgs_per_s": args.burst / elapsed if done else 0.0,
        "burst_deliveries_per_s": args.burst * expected / elapsed if done else 0.0,
    }


def run_once(kind: str, args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    servers = start_pair(kind, folder)
    try:
        before = sum(cpu_seconds(s.pid) for s in servers)
        ports = servers[0].ports  # type: ignore[attr-defined]
        command = [sys.executable, __file__, "--generate", kind, "--ports", *map(str, ports)]
        command += ["--clients", str(args.clients), "--rate", str(args.rate)]
        command += ["--seconds", str(args.seconds), "--burst", str(args.burst)]
        out = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=ROOT)
        if out.returncode != 0:
            raise SystemExit(f"{kind} generator failed:\n{out.stderr[-2000:]}")
        result = dict(json.loads(out.stdout.splitlines()[-1]))
        result["server_cpu_s"] = sum(cpu_seconds(s.pid) for s in servers) - before
        return result
    finally:
        for server in servers:
            stop(server)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=10.0, help="messages a second (steady)")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--burst", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--serve-bare", type=int, metavar="PORT")
    parser.add_argument("--peer", type=int)
    parser.add_argument("--generate", choices=["olaf", "bare"])
    parser.add_argument("--ports", type=int, nargs=2)
    args = parser.parse_args()
    if args.serve_bare:
        asyncio.run(serve_bare(args.serve_bare, args.peer))
        return
    if args.generate:
        args.kind = args.generate
        print(json.dumps(asyncio.run(generate(args))), flush=True)
        return
    with tempfile.TemporaryDirectory(prefix="bench-olaf-") as name:
        folder = Path(name)
        for key in ("a", "b"):
            crypto.load_or_create_key(folder / f"{key}.pem")
        results: dict[str, list[dict[str, Any]]] = {"olaf": [], "bare": []}
        for repeat in range(args.repeats):
            for kind in ("olaf", "bare"):
                result = run_once(kind, args, folder)
                results[kind].append(result)
                print(f"# {kind} run {repeat + 1}: {json.dumps(result)}", file=sys.stderr)
    median = {
        kind: {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        for kind, runs in results.items()
    }
    print(
        f"public_chat fan-out, {args.clients} clients on 2 servers, {os.cpu_count()} CPUs, "
        f"median of {args.repeats}"
    )
    print(f"{'':24}{'olaf':>12}{'bare':>12}{'olaf/bare':>12}")
    for key, label in (
        ("burst_msgs_per_s", "burst messages/s"),
        ("burst_deliveries_per_s", "burst deliveries/s"),
        ("steady_share", f"steady {args.rate:g}/s delivered"),
        ("p50_ms", "steady p50 ms"),
        ("p99_ms", "steady p99 ms"),
        ("server_cpu_s", "server CPU s (2 servers)"),
    ):
        olaf, bare = median["olaf"][key], median["bare"][key]
        ratio = olaf / bare if bare else float("nan")
        print(f"{label:24}{olaf:12.2f}{bare:12.2f}{ratio:12.2f}")


if __name__ == "__main__":
    main()
