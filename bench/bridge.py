"""zBifrost against bare WebSocket servers, driven by one independent load generator.

    python bench/bridge.py [--quick] [--repeats N] [--servers a,b] [--seconds S]

Every server runs in its own process, and so does the load generator (this file with
``--generate``, one process per run): neither the bench's bookkeeping nor the servers
share its loop. The generator is a picows client on uvloop when both are installed
(``pip install zCLI[bench]``), else a client of this file's own: websockets' sans-I/O
``ClientProtocol`` on an asyncio Protocol, each frame handled as it arrives. Either way
it spends less CPU per request than any server measured, so the servers set the pace.

Servers, each answering ``{"event": "dispatch", "zKey": "^Ping", "_requestId": N}`` with
``{"result": {"message": "Pong!"}, "_requestId": N}``:

- ``zbifrost``: zBifrost on the standard asyncio loop, a zUI file whose ``^Ping`` says
  ``Pong!``, limits raised so only its speed is measured (``websocket.fast: false``);
- ``zbifrost-fast``: the same in fast mode (uvloop, orjson), whose replies are orjson's
  compact JSON, on websockets' asyncio server (``zcli serve --fast --adapter asyncio``);
- ``zbifrost-sansio``, ``zbifrost-fast-sansio``: the two above on zBifrost's own sans-I/O
  adapter (``websocket.adapter: sansio``); ``zbifrost-fast-sansio`` is what ``zcli serve
  --fast`` runs by default;
- ``bare``: a websockets asyncio server written the fastest way: ``async for`` over the
  frames, ``json.loads``, and the reply written synchronously through the connection's
  sans-I/O protocol, as zBifrost writes (no ``await send()``);
- ``bare-uvloop``: the same on uvloop;
- ``picows``: a picows server on uvloop, the practical limit of a Python server.

The generator counts only replies equal byte for byte to the expected ``Pong!`` with the
``_requestId`` it sent, in order per connection; anything else is a mismatch and is
reported. Load shapes: 1, 10 and 50 clients, each keeping 1 (a strict round trip) or 16
requests in flight; after a warm-up, a measured window. Per run: replies a second,
server CPU per reply (user + system of the server process from ``/proc/PID/stat``
around the window), the generator's own CPU, latency p50/p99 (at one client) and the
machine's load average at the end of the window.

Memory: a fresh server process; its resident memory (VmRSS) with 1,000 and 5,000 idle
connections minus with none, per connection; the clients (websockets' asyncio client,
in the generator's process) offer permessage-deflate or not.

Fan-out (``--fanout``): 1,000 and 10,000 idle connections subscribe (each waits for the
answer, so it is registered), then one more connection asks the server, round after
round, to send ``{"event": "tick", "n": N}`` to all of them: zBifrost through a plugin
event calling ``bridge.broadcast``, the bare servers through ``websockets.broadcast``. A
round ends when every subscriber has its tick N, checked byte for byte. Per run:
deliveries a second, server CPU per delivery and the median time a round takes.

Servers alternate within each repeat, the order rotated every repeat, so drift hits
each alike; figures are medians of ``--repeats``. CPU per request stays comparable on a
busy machine when rates do not: read it first.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import websockets
from procstat import cpu_seconds, load_average, log, median, percentile, rss_bytes, stop

ZUI = "Main:\n  ~Root*: [^Ping]\n  ^Ping: Pong!\n"
# zBifrost's side of the fan-out runs: a plugin in the bench's workspace
FANOUT_PLUGIN = """
from zCLI import Plugin

def subscribe(ctx, data):
    return None  # every client gets a broadcast; the answer says this one is registered

def fanout(ctx, data):
    ctx.bridge.broadcast({"event": "tick", "n": data["n"]})

PLUGIN = Plugin("bench", events={"bench.subscribe": subscribe, "bench.fanout": fanout})
"""
ZBIFROSTS = ("zbifrost", "zbifrost-fast", "zbifrost-sansio", "zbifrost-fast-sansio")
FAST_ZBIFROSTS = ("zbifrost-fast", "zbifrost-fast-sansio")  # orjson's replies, uvloop
FANOUT_SERVERS = (*ZBIFROSTS, "bare", "bare-uvloop")
SUBSCRIBE = b'{"event": "bench.subscribe", "_requestId": 0}'
FANOUT = b'{"event": "bench.fanout", "data": {"n": %d}, "_requestId": %d}'
TICK_EVENT = b'{"event": "tick", "n": %d}'  # json.dumps' form, which both sides write
SERVERS = (*ZBIFROSTS, "bare", "bare-uvloop", "picows")
# the report's ratio columns (numerator / denominator, when both were measured; label)
RATIOS = (("zbifrost", "bare", "z/bare"), ("zbifrost-fast", "bare", "fast/bare"),
          ("zbifrost-fast", "picows", "fast/picows"),
          ("zbifrost-sansio", "bare", "zs/bare"),
          ("zbifrost-fast-sansio", "bare", "fs/bare"),
          ("zbifrost-fast-sansio", "zbifrost-fast", "fs/fast"))  # fmt: skip
SHAPES = ((1, 1), (1, 16), (10, 1), (10, 16), (50, 1), (50, 16))  # (clients, in flight)
REQUEST = b'{"event": "dispatch", "zKey": "^Ping", "_requestId": %d}'
REPLY = b'{"result": {"message": "Pong!"}, "_requestId": %d}'
GREETING = b'{"event": "connection_info"'
FAST_REPLY = b'{"result":{"message":"Pong!"},"_requestId":%d}'  # orjson's form
FAST_GREETING = b'{"event":"connection_info"'


def have(*modules: str) -> bool:
    try:
        for module in modules:
            __import__(module)
    except ImportError:
        return False
    return True


# --- servers (each its own process) -------------------------------------------------------


def serve_zbifrost(workspace: str, compression: str, fast: bool, adapter: str) -> None:
    from zCLI import zCLI
    from zCLI.fast import run

    async def main() -> None:
        config: dict[str, Any] = {
            "port": 0,
            "require_auth": False,
            "max_connections": 20000,
            "rate_limit": 1e9,
            "rate_burst": 1_000_000,
            "fast": fast,
            "adapter": adapter,
        }
        if compression:
            config["compression"] = compression
        z = zCLI({"zWorkspace": workspace, "zVaFile": "@.zUI.bench", "websocket": config})
        async with z.comm as bridge:
            print(f"listening on {bridge.port}", flush=True)
            await asyncio.Event().wait()

    run(main(), fast)  # as zcli serve runs it: on uvloop when fast


def serve_bare(use_uvloop: bool) -> None:
    from websockets.asyncio.server import ServerConnection, broadcast, serve
    from websockets.exceptions import ConnectionClosed

    subscribers: set[ServerConnection] = set()

    async def handler(ws: ServerConnection) -> None:
        protocol = ws.protocol
        try:
            async for frame in ws:
                request = json.loads(frame)
                event = request["event"]
                if event == "bench.fanout":
                    broadcast(subscribers, json.dumps({"event": "tick", "n": request["data"]["n"]}))
                    continue
                if event == "bench.subscribe":
                    subscribers.add(ws)
                    reply = json.dumps({"result": None, "_requestId": request["_requestId"]})
                else:
                    reply = json.dumps(
                        {"result": {"message": "Pong!"}, "_requestId": request["_requestId"]}
                    )
                protocol.send_text(reply.encode())  # written now, as zBifrost writes
                ws.send_data()
        except ConnectionClosed:
            pass  # a generator that disconnects without closing
        finally:
            subscribers.discard(ws)

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0, max_size=2**20) as server:
            print(f"listening on {next(iter(server.sockets)).getsockname()[1]}", flush=True)
            await asyncio.Event().wait()

    if use_uvloop:
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())


def serve_picows() -> None:
    import uvloop
    from picows import WSListener, WSMsgType, ws_create_server

    class Pong(WSListener):  # type: ignore[misc]
        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            if frame.msg_type is WSMsgType.TEXT:
                request = json.loads(frame.get_payload_as_bytes())
                reply = {"result": {"message": "Pong!"}, "_requestId": request["_requestId"]}
                transport.send(WSMsgType.TEXT, json.dumps(reply).encode())
            elif frame.msg_type is WSMsgType.CLOSE:
                transport.send_close(frame.get_close_code())
                transport.disconnect()

    async def main() -> None:
        server = await ws_create_server(lambda request: Pong(), "127.0.0.1", 0)
        print(f"listening on {server.sockets[0].getsockname()[1]}", flush=True)
        await asyncio.Event().wait()

    uvloop.run(main())


class Server:
    """A server process; its port comes from the line it prints when it listens."""

    def __init__(self, kind: str, workspace: str, compression: str = "") -> None:
        self.kind = kind
        command = [sys.executable, __file__, "--serve", kind, "--workspace", workspace]
        if compression:
            command += ["--compression", compression]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("listening on "):
            self.process.wait()
            raise RuntimeError(f"{kind} exited before listening ({self.process.returncode})")
        self.url = f"ws://127.0.0.1:{int(line.split()[-1])}/"
        self.pid = self.process.pid

    def stop(self) -> None:
        stop(self.process)


# --- the load generator (its own process) -------------------------------------------------


class Counter:
    """One run's tally, shared by its connections."""

    def __init__(self, latencies: bool, reply: bytes, greeting: bytes) -> None:
        self.reply = reply  # the expected reply, with %d for its _requestId
        self.greeting = greeting
        self.counting = False
        self.sending = True
        self.replies = 0  # matching replies inside the window
        self.mismatched = 0
        self.outstanding = 0
        self.keep_latencies = latencies
        self.latencies: list[float] = []
        self.drained = asyncio.Event()


class Stream:
    """What one connection sends and expects: ids in order, ``depth`` in flight. The
    transport-specific client calls ``received`` with each text frame's payload and
    gives ``write`` (one frame's payload)."""

    def __init__(self, counter: Counter) -> None:
        self.counter = counter
        self.next_id = 0
        self.expected = 0
        self.sent_at: collections.deque[float] = collections.deque()
        self.greeted = asyncio.get_running_loop().create_future()

    def write(self, payload: bytes) -> None:
        raise NotImplementedError

    def start(self, depth: int) -> None:
        for _ in range(depth):
            self._send_one()

    def _send_one(self) -> None:
        counter = self.counter
        counter.outstanding += 1
        if counter.keep_latencies:
            self.sent_at.append(time.perf_counter())
        self.write(REQUEST % self.next_id)
        self.next_id += 1

    def received(self, payload: bytes) -> None:
        counter = self.counter
        if payload == counter.reply % self.expected:
            self.expected += 1
            counter.outstanding -= 1
            if counter.counting:
                counter.replies += 1
                if counter.keep_latencies:
                    counter.latencies.append(time.perf_counter() - self.sent_at[0])
            if counter.keep_latencies:
                self.sent_at.popleft()
            if counter.sending:
                self._send_one()
            elif counter.outstanding == 0:
                counter.drained.set()
        elif payload.startswith(counter.greeting):
            if not self.greeted.done():
                self.greeted.set_result(None)
        else:
            counter.mismatched += 1
            if counter.mismatched <= 3:
                log(f"  mismatched reply (expected id {self.expected}): {payload[:120]!r}")


async def open_picows(url: str, counter: Counter) -> tuple[Stream, Any]:
    from picows import WSCloseCode, WSListener, WSMsgType, ws_connect

    class PicowsStream(Stream, WSListener):  # type: ignore[misc]
        transport: Any

        def on_ws_connected(self, transport: Any) -> None:
            self.transport = transport

        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            if frame.msg_type is WSMsgType.TEXT:
                self.received(frame.get_payload_as_bytes())

        def write(self, payload: bytes) -> None:
            self.transport.send(WSMsgType.TEXT, payload)

    transport, stream = await ws_connect(lambda: PicowsStream(counter), url)

    def close() -> None:
        transport.send_close(WSCloseCode.OK)
        transport.disconnect()

    return stream, close


async def open_sansio(url: str, counter: Counter) -> tuple[Stream, Any]:
    from websockets.client import ClientProtocol
    from websockets.frames import Frame, Opcode
    from websockets.uri import parse_uri

    class SansIOStream(Stream, asyncio.Protocol):
        transport: asyncio.Transport

        def __init__(self) -> None:
            super().__init__(counter)
            self.protocol = ClientProtocol(parse_uri(url), max_size=2**20)
            self.opened = asyncio.get_running_loop().create_future()

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            assert isinstance(transport, asyncio.Transport)
            self.transport = transport
            self.protocol.send_request(self.protocol.connect())
            self._flush()

        def data_received(self, data: bytes) -> None:
            self.protocol.receive_data(data)
            for event in self.protocol.events_received():
                if isinstance(event, Frame):
                    if event.opcode is Opcode.TEXT:
                        self.received(bytes(event.data))
                elif not self.opened.done():
                    self.opened.set_result(self.protocol.handshake_exc)
            self._flush()

        def connection_lost(self, exc: Exception | None) -> None:
            if not self.opened.done():
                self.opened.set_result(exc or ConnectionError("closed in the handshake"))

        def write(self, payload: bytes) -> None:
            self.protocol.send_text(payload)
            self._flush()

        def _flush(self) -> None:
            for chunk in self.protocol.data_to_send():
                if chunk:
                    self.transport.write(chunk)

    host, port = url.split("//")[1].rstrip("/").split(":")
    loop = asyncio.get_running_loop()
    _transport, stream = await loop.create_connection(SansIOStream, host, int(port))
    error = await stream.opened
    if error is not None:
        raise error
    return stream, stream.transport.abort


async def load_run(target: dict[str, Any], clients: int, depth: int, timing: dict[str, float],
                   client_kind: str) -> dict[str, Any]:  # fmt: skip
    """``clients`` connections, each keeping ``depth`` requests in flight."""
    counter = Counter(clients == 1, target["reply"].encode(), target["greeting"].encode())
    opener = open_picows if client_kind == "picows" else open_sansio
    opened = await asyncio.gather(*(opener(target["url"], counter) for _ in range(clients)))
    streams = [stream for stream, _close in opened]
    if target["greets"]:
        await asyncio.wait_for(asyncio.gather(*(s.greeted for s in streams)), 10)
    for stream in streams:
        stream.start(depth)
    await asyncio.sleep(timing["warm"])  # a clock: the warm-up's end
    pid = target["pid"]
    cpu0, own0, t0 = cpu_seconds(pid), cpu_seconds("self"), time.perf_counter()
    counter.counting = True
    await asyncio.sleep(timing["seconds"])  # a clock: the window's end
    counter.counting = False
    cpu1, own1, t1 = cpu_seconds(pid), cpu_seconds("self"), time.perf_counter()
    load = load_average()
    counter.sending = False
    if counter.outstanding:
        try:
            await asyncio.wait_for(counter.drained.wait(), 10)
        except TimeoutError:
            log(f"  {counter.outstanding} requests never answered")
    for _stream, close in opened:
        close()
    ordered = sorted(counter.latencies)
    replies = counter.replies
    return {
        "rate": replies / (t1 - t0),
        "cpu_us": 1e6 * (cpu1 - cpu0) / replies if replies else float("inf"),
        "server_cpu_pct": 100 * (cpu1 - cpu0) / (t1 - t0),
        "generator_cpu_pct": 100 * (own1 - own0) / (t1 - t0),
        "p50_ms": percentile(ordered, 0.50) * 1000,
        "p99_ms": percentile(ordered, 0.99) * 1000,
        "mismatched": counter.mismatched,
        "load": load,
    }


async def memory_run(target: dict[str, Any], count: int, deflate: bool) -> dict[str, Any]:
    """Resident memory per idle connection: ``count`` connections opened and held."""
    from websockets.asyncio.client import connect

    pid = target["pid"]
    before = rss_bytes(pid)
    sockets: list[Any] = []
    compression = "deflate" if deflate else None
    while len(sockets) < count:
        batch = min(250, count - len(sockets))
        sockets += await asyncio.gather(
            *(connect(target["url"], compression=compression) for _ in range(batch))
        )
    if target["greets"]:
        for ws in sockets:
            assert (await ws.recv()).startswith(target["greeting"])
    negotiated = sum(1 for ws in sockets if ws.protocol.extensions)
    await asyncio.sleep(0.5)  # a measurement pause, not synchronisation: let RSS settle
    after = rss_bytes(pid)
    load = load_average()
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    return {"bytes": (after - before) / count, "deflated": negotiated, "load": load}


async def fanout_run(
    target: dict[str, Any], count: int, timing: dict[str, float]
) -> dict[str, Any]:
    """``count`` subscribers; rounds of one broadcast to all, each round after the last."""
    from picows import WSCloseCode, WSListener, WSMsgType, ws_connect

    loop = asyncio.get_running_loop()
    state = {"round": -1, "left": 0, "mismatched": 0}
    round_done = asyncio.Event()

    class Subscriber(WSListener):  # type: ignore[misc]
        def __init__(self) -> None:
            self.subscribed = loop.create_future()
            self.transport: Any = None

        def on_ws_connected(self, transport: Any) -> None:
            self.transport = transport
            transport.send(WSMsgType.TEXT, SUBSCRIBE)

        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            if frame.msg_type is not WSMsgType.TEXT:
                return
            payload = frame.get_payload_as_bytes()
            if payload == TICK_EVENT % state["round"]:
                state["left"] -= 1
                if state["left"] == 0:
                    round_done.set()
            elif b'"_requestId"' in payload and not self.subscribed.done():
                self.subscribed.set_result(None)
            elif not payload.startswith(target["greeting"].encode()):
                state["mismatched"] += 1

    subscribers: list[Subscriber] = []
    while len(subscribers) < count:
        batch = min(100, count - len(subscribers))  # within the listen backlog
        opened = await asyncio.gather(
            *(ws_connect(Subscriber, target["url"]) for _ in range(batch))
        )
        subscribers += [listener for _transport, listener in opened]
    await asyncio.wait_for(asyncio.gather(*(s.subscribed for s in subscribers)), 30)
    trigger_transport, _trigger = await ws_connect(WSListener, target["url"])  # answers unread

    async def one_round() -> float:
        state["round"] += 1
        state["left"] = count
        round_done.clear()
        started = time.perf_counter()
        trigger_transport.send(WSMsgType.TEXT, FANOUT % (state["round"], state["round"]))
        await asyncio.wait_for(round_done.wait(), 30)
        return time.perf_counter() - started

    warm_until = time.perf_counter() + timing["warm"]
    while time.perf_counter() < warm_until:
        await one_round()
    pid = target["pid"]
    rounds: list[float] = []
    cpu0, t0 = cpu_seconds(pid), time.perf_counter()
    while time.perf_counter() - t0 < timing["seconds"] or len(rounds) < 3:
        rounds.append(await one_round())
    cpu1, t1 = cpu_seconds(pid), time.perf_counter()
    load = load_average()
    for transport in [trigger_transport] + [s.transport for s in subscribers]:
        transport.send_close(WSCloseCode.OK)
        transport.disconnect()
    deliveries = count * len(rounds)
    return {
        "rate": deliveries / (t1 - t0),
        "cpu_us": 1e6 * (cpu1 - cpu0) / deliveries,
        "round_ms": 1000 * statistics.median(rounds),
        "mismatched": state["mismatched"],
        "load": load,
    }


def generate(config: dict[str, Any]) -> dict[str, Any]:
    client = config["client"]

    async def main() -> dict[str, Any]:
        if config["what"] == "memory":
            return await memory_run(config["target"], config["count"], config["deflate"])
        if config["what"] == "fanout":
            return await fanout_run(config["target"], config["count"], config["timing"])
        return await load_run(
            config["target"], config["clients"], config["depth"], config["timing"], client
        )

    if client == "picows":
        import uvloop

        return uvloop.run(main())  # type: ignore[no-any-return]
    return asyncio.run(main())


def run_generator(config: dict[str, Any]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--generate"],
        input=json.dumps(config),
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


# --- the run ------------------------------------------------------------------------------


def target_of(server: Server) -> dict[str, Any]:
    fast = server.kind in FAST_ZBIFROSTS
    return {
        "url": server.url,
        "pid": server.pid,
        "greets": server.kind.startswith("zbifrost"),
        "reply": (FAST_REPLY if fast else REPLY).decode(),
        "greeting": (FAST_GREETING if fast else GREETING).decode(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs, 1 repeat, 500 conns")
    parser.add_argument("--repeats", type=int, help="repeats of each measurement (3; quick 1)")
    parser.add_argument("--seconds", type=float, help="measured seconds per run (3; quick 1)")
    parser.add_argument("--servers", help=f"comma-separated, of {','.join(SERVERS)}")
    parser.add_argument("--client", choices=("picows", "sansio"), help="the generator's client")
    parser.add_argument("--shapes", help="clients x in flight, e.g. 10x1,10x16 (all six)")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory runs")
    parser.add_argument("--no-load", action="store_true", help="skip the request-reply runs")
    parser.add_argument("--fanout", action="store_true", help="also the fan-out runs")
    parser.add_argument("--json", metavar="FILE", help="also write the medians here")
    parser.add_argument("--zbifrost-compression", default="", help="websocket.compression")
    parser.add_argument("--serve", choices=SERVERS, help=argparse.SUPPRESS)
    parser.add_argument("--workspace", help=argparse.SUPPRESS)
    parser.add_argument("--compression", default="", help=argparse.SUPPRESS)
    parser.add_argument("--generate", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve in ZBIFROSTS:
        adapter = "sansio" if args.serve.endswith("-sansio") else "asyncio"
        return serve_zbifrost(
            args.workspace, args.compression, args.serve in FAST_ZBIFROSTS, adapter
        )
    if args.serve in ("bare", "bare-uvloop"):
        return serve_bare(args.serve == "bare-uvloop")
    if args.serve == "picows":
        return serve_picows()
    if args.generate:
        print(json.dumps(generate(json.loads(sys.stdin.read()))), flush=True)
        return

    quick = args.quick
    repeats = args.repeats or (1 if quick else 3)
    timing = {"warm": 0.5 if quick else 1.0, "seconds": args.seconds or (1.0 if quick else 3.0)}
    counts = (500,) if quick else (1_000, 5_000)
    fanout_counts = (1_000,) if quick else (1_000, 10_000)
    shapes = SHAPES
    if args.shapes:
        shapes = tuple(
            (int(c), int(d)) for c, d in (shape.split("x") for shape in args.shapes.split(","))
        )
    fast = have("uvloop", "picows")
    client = args.client or ("picows" if fast else "sansio")
    wanted = args.servers.split(",") if args.servers else list(SERVERS)
    servers = [s for s in wanted if fast or s in ("zbifrost", "zbifrost-sansio", "bare")]
    if not have("uvloop", "orjson"):
        servers = [s for s in servers if s not in FAST_ZBIFROSTS]
    if servers != wanted:
        log(f"uvloop, orjson or picows missing: measuring {', '.join(servers)} only")
    started = time.perf_counter()
    log(f"bridge bench: client {client}, load average {load_average():.2f}")
    load_results: dict[tuple[str, int, int], list[dict[str, Any]]] = collections.defaultdict(list)
    memory_results: dict[tuple[str, int, bool], list[dict[str, Any]]] = collections.defaultdict(
        list
    )
    fanout_results: dict[tuple[str, int], list[dict[str, Any]]] = collections.defaultdict(list)
    with tempfile.TemporaryDirectory(prefix="bridge-bench-") as workspace:
        Path(workspace, "zUI.bench.yaml").write_text(ZUI)
        Path(workspace, "plugins").mkdir()
        Path(workspace, "plugins", "bench.py").write_text(FANOUT_PLUGIN)
        for repeat in range(repeats):
            order = servers[repeat % len(servers) :] + servers[: repeat % len(servers)]
            if args.fanout and client == "picows":
                fanout_repeat(order, fanout_counts, workspace, args.zbifrost_compression,
                              timing, fanout_results, f"{repeat + 1}/{repeats}")  # fmt: skip
            loaded = [] if args.no_load else order
            running = {kind: Server(kind, workspace, args.zbifrost_compression) for kind in loaded}
            try:
                for clients, depth in shapes:
                    for kind in loaded:
                        config = {"what": "load", "client": client, "clients": clients,
                                  "depth": depth, "timing": timing,
                                  "target": target_of(running[kind])}  # fmt: skip
                        result = run_generator(config)
                        load_results[kind, clients, depth].append(result)
                        log(
                            f"  {repeat + 1}/{repeats} {kind:12} {clients:2} x {depth:2}: "
                            f"{result['rate']:8,.0f}/s, {result['cpu_us']:5.1f} us CPU/req, "
                            f"server {result['server_cpu_pct']:3.0f}%, generator "
                            f"{result['generator_cpu_pct']:3.0f}%, load {result['load']:.2f}"
                            + (
                                f", MISMATCHED {result['mismatched']}"
                                if result["mismatched"]
                                else ""
                            )
                        )
            finally:
                for server in running.values():
                    server.stop()
            if args.no_memory:
                continue
            for count in counts:
                for deflate in (False, True):
                    for kind in order:
                        server = Server(kind, workspace, args.zbifrost_compression)
                        try:
                            config = {"what": "memory", "client": client, "count": count,
                                      "deflate": deflate, "target": target_of(server)}  # fmt: skip
                            result = run_generator(config)
                        finally:
                            server.stop()
                        memory_results[kind, count, deflate].append(result)
                        log(
                            f"  {repeat + 1}/{repeats} {kind:12} memory {count:,} "
                            f"{'deflate offered' if deflate else 'no deflate':15}: "
                            f"{result['bytes']:8,.0f} B/conn ({result['deflated']:,} deflated), "
                            f"load {result['load']:.2f}"
                        )
    if not args.no_load or not args.no_memory:
        report(servers, shapes, load_results, memory_results, repeats, counts)
    if fanout_results:
        report_fanout(servers, fanout_counts, fanout_results, repeats)
    if args.json:
        medians = {
            f"{kind} {clients}x{depth}": {
                key: median([r[key] for r in results])
                for key in ("rate", "cpu_us", "p50_ms", "p99_ms", "load")
            }
            | {"mismatched": sum(r["mismatched"] for r in results)}
            for (kind, clients, depth), results in load_results.items()
        }
        Path(args.json).write_text(json.dumps({"client": client, "load": medians}, indent=1))
    print(
        f"client {client}; {os.cpu_count()} cores; Python {platform.python_version()}, "
        f"websockets {websockets.__version__}; load average at end {load_average():.2f}; "
        f"run time {time.perf_counter() - started:.0f} s"
    )


def fanout_repeat(order: list[str], counts: tuple[int, ...], workspace: str, compression: str,
                  timing: dict[str, float], results: dict[tuple[str, int], list[dict[str, Any]]],
                  label: str) -> None:  # fmt: skip
    """One repeat of the fan-out runs: a fresh server per count and kind."""
    for count in counts:
        for kind in (k for k in order if k in FANOUT_SERVERS):
            server = Server(kind, workspace, compression)
            try:
                config = {"what": "fanout", "client": "picows", "count": count,
                          "timing": timing, "target": target_of(server)}  # fmt: skip
                result = run_generator(config)
            finally:
                server.stop()
            results[kind, count].append(result)
            log(
                f"  {label} {kind:12} fan-out to {count:6,}: {result['rate']:9,.0f} deliveries/s, "
                f"{result['cpu_us']:5.2f} us CPU each, round {result['round_ms']:6.1f} ms, "
                f"load {result['load']:.2f}"
                + (f", MISMATCHED {result['mismatched']}" if result["mismatched"] else "")
            )


def report_fanout(servers: list[str], counts: tuple[int, ...],
                  results: dict[tuple[str, int], list[dict[str, Any]]],
                  repeats: int) -> None:  # fmt: skip
    kinds = [k for k in servers if k in FANOUT_SERVERS]
    print()
    print(f"fan-out, medians of {repeats}: deliveries/s, server CPU per delivery, round time")
    print(f"{'subscribers':28}" + "".join(f" {kind:>30}" for kind in kinds))
    for count in counts:
        cells = []
        for kind in kinds:
            runs = results[kind, count]
            rate, cpu = median([r["rate"] for r in runs]), median([r["cpu_us"] for r in runs])
            round_ms = median([r["round_ms"] for r in runs])
            cells.append(f"{rate:9,.0f}/s {cpu:5.2f} us {round_ms:6.1f} ms")
        print(f"{count:<28,}" + "".join(f" {c:>30}" for c in cells))
    loads = [r["load"] for rs in results.values() for r in rs]
    mismatched = sum(r["mismatched"] for rs in results.values() for r in rs)
    print(f"load average (median) {median(loads):.2f}; mismatched ticks: {mismatched}")


def report(servers: list[str], shapes: tuple[tuple[int, int], ...],
           loads: dict[Any, list[dict[str, Any]]],
           memory: dict[Any, list[dict[str, Any]]], repeats: int,
           counts: tuple[int, ...]) -> None:  # fmt: skip
    def cell(results: list[dict[str, Any]], key: str) -> float:
        return median([r[key] for r in results])

    def ratios(values: dict[str, float]) -> str:
        return "".join(
            f" {values[a] / values[b]:9.2f}x" if {a, b} <= values.keys() else f" {'-':>10}"
            for a, b, _label in RATIOS
        )

    print()
    print(f"medians of {repeats}; ratios of CPU per request (lower is better for zbifrost)")
    header = "".join(f" {kind:>22}" for kind in servers)
    ratio_header = "".join(f" {label:>10}" for _a, _b, label in RATIOS)
    print(f"{'shape (clients x in flight)':28}{header}{ratio_header}")
    for clients, depth in shapes:
        cells, rows = [], {}
        for kind in servers:
            results = loads[kind, clients, depth]
            rows[kind] = cell(results, "cpu_us")
            cells.append(f"{cell(results, 'rate'):9,.0f}/s {rows[kind]:5.1f} us")
        print(f"{f'{clients} x {depth}':28}" + "".join(f" {c:>22}" for c in cells)
              + ratios(rows))  # fmt: skip
    for depth in sorted({d for c, d in shapes if c == 1}):
        latencies = [(cell(loads[k, 1, depth], "p50_ms"), cell(loads[k, 1, depth], "p99_ms"))
                     for k in servers]  # fmt: skip
        line = "".join(f" {f'{p50:.3f}/{p99:.3f} ms':>22}" for p50, p99 in latencies)
        print(f"{f'latency p50/p99, 1 x {depth}':28}{line}")
    runs_of = {kind: [r for (k, _c, _d), rs in loads.items() if k == kind for r in rs]
               for kind in servers}  # fmt: skip
    load_line = "".join(f" {median([r['load'] for r in runs_of[k]]):22.2f}" for k in servers)
    print(f"{'load average (median)':28}{load_line}")
    mismatched = sum(r["mismatched"] for rs in loads.values() for r in rs)
    print(f"mismatched replies in all runs: {mismatched}")
    if not memory:
        return
    print()
    print(f"{'memory per idle connection':28}" + header + ratio_header)
    for count in counts:
        for deflate in (False, True):
            values = {k: cell(memory[k, count, deflate], "bytes") for k in servers}
            label = f"{count:,}, {'deflate offered' if deflate else 'no deflate'}"
            print(f"{label:28}" + "".join(f" {values[k]:20,.0f} B" for k in servers)
                  + ratios(values))  # fmt: skip


if __name__ == "__main__":
    main()
