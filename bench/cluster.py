"""What the broker costs and what two processes give: zBifrost with and without Redis.

    python bench/cluster.py [--quick] [--repeats N] [--seconds S] [--users N] [--depth D]

One run starts a real ``redis-server`` (Debian's, on a free port) and, in turn, three
setups of ``zcli serve`` serving the same plugin app, each server a process of its own:

- **1 process**: one ``zcli serve APP``, no broker;
- **1 process + Redis**: the same with ``--broker redis://...``;
- **2 processes + Redis**: two ``zcli serve APP --broker redis://...`` on two ports,
  sharing the Redis (two separate servers rather than ``--workers 2``, so the bench
  knows which process holds each user).

The app's plugin has two events: ``bench.dm {"to", "n"}`` calls
``ctx.bridge.send_to(to, {"event": "bench.dm", "from": SENDER, "n": n})`` and
``bench.fanout {"n"}`` calls ``ctx.bridge.broadcast({"event": "bench.tick", "n": n})``.

The load generator is this file with ``--generate``, a process of its own (picows on
uvloop, from ``pip install zCLI[bench]``). Per setup it connects users signed in with
tokens (``?token=``), spread evenly over the processes, and measures:

- **direct messages**, first with only their 100 users connected: each user sends to
  one other and receives from one other, ``--depth`` messages in flight per sender (a
  closed loop: the next goes when the recipient has the last one); then one pair with
  one message in flight (a strict round trip, for latency). On two processes twice:
  every pair within one process (**same**) and every pair across the two
  (**across**). Messages a second and latency from the send to the recipient's frame
  (p50/p99). Then, with all ``--users`` (2,000) connected, the closed loop again.
- **broadcast** to all ``--users``: one user asks for a broadcast, round after round;
  a round ends when every user has its tick. Deliveries a second and the median time
  a round takes to reach everyone.

Every frame is checked byte for byte: a direct message must come from its sender with
the next ``n`` of that pair, each user's replies must come in order, each user must get
each tick once; anything else is counted as mismatched and reported. Each measurement
is a warm-up, then a window. CPU is the scheduler's time on a CPU of every thread
(``/proc/PID/task/*/schedstat``, in nanoseconds: redis-server spends a few ms a window,
below ``/proc/PID/stat``'s 10 ms ticks) across the window, of the servers (summed), of
``redis-server`` and of the generator, per message or delivery, with the machine's load
average at the window's end. Setups alternate within each repeat, the order rotated
every repeat; figures are medians of ``--repeats`` (3). ``--quick``: one repeat of
short windows. Ctrl-C or SIGTERM stops every server and redis-server.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import importlib.util
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from procstat import load_average, log, median, percentile, stat_fields

PLUGIN = """
from zCLI import Plugin


def dm(ctx, data):
    sender = ctx.client.identity.user
    ctx.bridge.send_to(data["to"], {"event": "bench.dm", "from": sender, "n": data["n"]})


def fanout(ctx, data):
    ctx.bridge.broadcast({"event": "bench.tick", "n": data["n"]})


PLUGIN = Plugin("bench", events={"bench.dm": dm, "bench.fanout": fanout})
"""
SECRET = "cluster-bench-secret-shared-by-the-processes"
PASSWORD = "bench-password-1"  # hashed once; every user shares the hash
SETUPS = ("1 process", "1 process + Redis", "2 processes + Redis")
DM_USERS = 100  # users sending direct messages (half on each process when there are two)
# frames, as zBifrost writes them (json.dumps' separators) and as the generator sends them
DM_REQUEST = b'{"event": "bench.dm", "data": {"to": "%s", "n": %d}, "_requestId": %d}'
DM_EVENT = b'{"event": "bench.dm", "from": "%s", "n": %d}'
FANOUT_REQUEST = b'{"event": "bench.fanout", "data": {"n": %d}, "_requestId": %d}'
TICK_EVENT = b'{"event": "bench.tick", "n": %d}'
REPLY = b'{"result": null, "_requestId": %d}'
GREETING = b'{"event": "connection_info"'
CLOCK_TICK = os.sysconf("SC_CLK_TCK")
TEXT: Any = None  # picows' WSMsgType.TEXT, once the generator has imported picows


def cpu_seconds(pid: int | str) -> float:
    """CPU time of a process, all its threads: the scheduler's nanoseconds on a CPU
    (``/proc/PID/task/*/schedstat``), since ``/proc/PID/stat`` counts in clock ticks
    (10 ms) and redis-server spends a few ms a window; user + system from
    ``/proc/PID/stat`` where schedstat is missing."""
    try:
        return (
            sum(
                int(task.joinpath("schedstat").read_text().split()[0])
                for task in Path(f"/proc/{pid}/task").iterdir()
            )
            / 1e9
        )
    except (FileNotFoundError, ProcessLookupError):  # no schedstat (or a thread just ended)
        fields = stat_fields(pid)
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICK


# --- the load generator (its own process) -------------------------------------------------


class User:
    """One user's connection: what it sent and what it expects next."""

    def __init__(self, index: int, name: str, url: str) -> None:
        self.index = index
        self.name = name
        self.bname = name.encode()
        self.url = url
        self.transport: Any = None
        self.next_rid = 0  # the _requestId of its next request
        self.replied = 0  # the _requestId of the reply it expects next
        self.inbound: Pair | None = None  # the pair whose recipient it is, in a DM run
        self.ticked = -1  # the last broadcast round it got
        self.greeted = False

    def send(self, frame: bytes) -> None:
        self.transport.send(TEXT, frame)


class Pair:
    """A sender and its recipient; the messages in flight between them, oldest first."""

    def __init__(self, sender: User, recipient: User) -> None:
        self.sender = sender
        self.recipient = recipient
        self.in_flight: collections.deque[tuple[int, float]] = collections.deque()


class Traffic:
    """Every frame the generator receives is checked here against what was sent; the
    connections (thin picows listeners) only hand their text frames in."""

    def __init__(self) -> None:
        self.counting = False  # inside a measured window
        self.sending = False  # a DM run sends the next message when one arrives
        self.delivered = 0  # direct messages that arrived inside the window
        self.latencies: list[float] = []
        self.outstanding = 0  # direct messages and replies not yet received
        self.mismatched = 0
        self.greeted = 0
        self.changed = asyncio.Event()  # set when outstanding reaches 0, a round ends...
        self.round = -1
        self.tick = b""  # this round's tick, as every user must get it
        self.left = 0  # users still waiting for this round's tick

    def received(self, user: User, payload: bytes) -> None:
        if payload == self.tick and user.ticked != self.round:  # the broadcasts' fast path
            user.ticked = self.round
            self.left -= 1
            if self.left == 0:
                self.changed.set()
        elif payload.startswith(b'{"event": "bench.dm"'):
            self._direct(user, payload)
        elif payload.startswith(b'{"result"'):
            if payload == REPLY % user.replied:
                user.replied += 1
                self._settled()
            else:
                self._mismatch(user, payload, f"reply {user.replied}")
        elif payload.startswith(b'{"event": "bench.tick"'):
            self._mismatch(user, payload, f"tick {self.round} once")
        elif payload.startswith(GREETING) and not user.greeted:
            user.greeted = True
            self.greeted += 1
            self.changed.set()
        else:
            self._mismatch(user, payload, "nothing")

    def _direct(self, user: User, payload: bytes) -> None:
        pair = user.inbound
        if pair is None or not pair.in_flight:
            self._mismatch(user, payload, "no direct message")
            return
        n, sent = pair.in_flight[0]
        if payload != DM_EVENT % (pair.sender.bname, n):
            self._mismatch(user, payload, f"n {n} from {pair.sender.name}")
            return
        pair.in_flight.popleft()
        if self.counting:
            self.delivered += 1
            self.latencies.append(time.perf_counter() - sent)
        if self.sending:
            self.send_direct(pair)
        self._settled()

    def _settled(self) -> None:
        self.outstanding -= 1
        if self.outstanding == 0:
            self.changed.set()

    def _mismatch(self, user: User, payload: bytes, expected: str) -> None:
        self.mismatched += 1
        if self.mismatched <= 3:
            log(f"  {user.name}: mismatched frame (expected {expected}): {payload[:120]!r}")

    def send_direct(self, pair: Pair) -> None:
        sender = pair.sender
        rid = sender.next_rid
        sender.next_rid += 1
        pair.in_flight.append((rid, time.perf_counter()))
        self.outstanding += 2  # the recipient's message and the sender's reply
        sender.send(DM_REQUEST % (pair.recipient.bname, rid, rid))

    async def wait_settled(self, seconds: float) -> bool:
        """Until nothing is outstanding; False if something still is after ``seconds``."""
        try:
            async with asyncio.timeout(seconds):
                while self.outstanding:
                    self.changed.clear()
                    await self.changed.wait()
        except TimeoutError:
            return False
        return True


class Window:
    """CPU of the servers, Redis and the generator, and the clock, across one window."""

    def __init__(self, server_pids: list[int], redis_pid: int | None) -> None:
        self.server_pids, self.redis_pid = server_pids, redis_pid

    def _sample(self) -> tuple[float, float, float, float]:
        servers = sum(cpu_seconds(pid) for pid in self.server_pids)
        redis = cpu_seconds(self.redis_pid) if self.redis_pid else 0.0
        return servers, redis, cpu_seconds("self"), time.perf_counter()

    def open(self) -> None:
        self.start = self._sample()

    def close(self, count: int) -> dict[str, Any]:
        """Per-``count`` CPU (us) and shares of a core (%) since ``open``."""
        end = self._sample()
        servers, redis, own, seconds = (b - a for a, b in zip(self.start, end, strict=True))
        per = 1e6 / count if count else float("inf")
        return {
            "seconds": seconds,
            "server_us": servers * per,
            "redis_us": redis * per,
            "generator_us": own * per,
            "server_pct": 100 * servers / seconds,
            "redis_pct": 100 * redis / seconds,
            "generator_pct": 100 * own / seconds,
            "load": load_average(),
        }


async def direct_run(traffic: Traffic, pairs: list[Pair], depth: int, timing: dict[str, float],
                     window: Window) -> dict[str, Any]:  # fmt: skip
    """``depth`` messages in flight per pair, a warm-up, then the measured window."""
    for pair in pairs:
        pair.recipient.inbound = pair
    traffic.delivered, traffic.latencies = 0, []
    traffic.sending = True
    for pair in pairs:
        for _ in range(depth):
            traffic.send_direct(pair)
    await asyncio.sleep(timing["warm"])  # a clock: the warm-up's end
    window.open()
    traffic.counting = True
    await asyncio.sleep(timing["seconds"])  # a clock: the window's end
    traffic.counting = False
    result = window.close(traffic.delivered)
    traffic.sending = False
    if not await traffic.wait_settled(10):
        log(f"  {traffic.outstanding} direct messages or replies never arrived")
        result["lost"] = traffic.outstanding
    for pair in pairs:
        pair.recipient.inbound = None
    ordered = sorted(traffic.latencies)
    result.update(
        rate=traffic.delivered / result["seconds"],
        p50_ms=1000 * percentile(ordered, 0.50),
        p99_ms=1000 * percentile(ordered, 0.99),
    )
    return result


async def broadcast_run(traffic: Traffic, users: list[User], timing: dict[str, float],
                        window: Window) -> dict[str, Any]:  # fmt: skip
    """Rounds of one broadcast to every user, each round after the last has arrived."""
    trigger = users[0]

    async def one_round() -> float:
        traffic.round += 1
        traffic.tick = TICK_EVENT % traffic.round
        traffic.left = len(users)
        rid = trigger.next_rid
        trigger.next_rid += 1
        traffic.outstanding += 1  # the trigger's reply
        started = time.perf_counter()
        trigger.send(FANOUT_REQUEST % (traffic.round, rid))
        async with asyncio.timeout(30):
            while traffic.left:
                traffic.changed.clear()
                await traffic.changed.wait()
        return time.perf_counter() - started

    warm_until = time.perf_counter() + timing["warm"]
    while time.perf_counter() < warm_until:
        await one_round()
    rounds: list[float] = []
    window.open()
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timing["seconds"] or len(rounds) < 3:
        rounds.append(await one_round())
    deliveries = len(users) * len(rounds)
    result = window.close(deliveries)
    if not await traffic.wait_settled(10):
        log(f"  {traffic.outstanding} replies to the broadcasts never arrived")
        result["lost"] = traffic.outstanding
    result.update(
        rate=deliveries / result["seconds"],
        rounds=len(rounds),
        round_ms=1000 * median(rounds),
    )
    return result


async def connect(traffic: Traffic, users: list[User]) -> float:
    """Open ``users``' connections, 100 at a time; until each has its greeting."""
    from picows import WSListener, WSMsgType, ws_connect

    global TEXT
    TEXT = WSMsgType.TEXT

    class Connection(WSListener):  # type: ignore[misc]
        def __init__(self, user: User) -> None:
            self.user = user

        def on_ws_connected(self, transport: Any) -> None:
            self.user.transport = transport

        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            if frame.msg_type is WSMsgType.TEXT:
                traffic.received(self.user, frame.get_payload_as_bytes())

    started = time.perf_counter()
    greeted = traffic.greeted + len(users)
    for first in range(0, len(users), 100):  # within the listen backlog
        batch = users[first : first + 100]
        await asyncio.gather(*(ws_connect(lambda u=u: Connection(u), u.url) for u in batch))
    async with asyncio.timeout(60):
        while traffic.greeted < greeted:
            traffic.changed.clear()
            await traffic.changed.wait()
    return time.perf_counter() - started


def direct_pairs(users: list[User], processes: int, mode: str) -> list[Pair]:
    """DM_USERS users, each sending to one and receiving from one: within each process
    (``same``) or each to the user at the same place on the other process (``across``)."""
    per_process = len(users) // processes
    half = DM_USERS // processes
    blocks = [users[p * per_process : p * per_process + half] for p in range(processes)]
    if mode == "across":
        first, second = blocks
        return [Pair(a, b) for a, b in zip(first, second, strict=True)] + [
            Pair(b, a) for a, b in zip(first, second, strict=True)
        ]
    return [Pair(block[i], block[(i + 1) % len(block)]) for block in blocks for i in range(half)]


async def generate(config: dict[str, Any]) -> dict[str, Any]:
    """Direct messages with only their users connected, then with every user; then
    broadcasts to every user."""
    urls = config["urls"]
    per_process = len(config["users"]) // len(urls)
    users = [User(i, name, f"{urls[i // per_process]}/?token={token}")
             for i, (name, token) in enumerate(config["users"])]  # fmt: skip
    traffic = Traffic()
    window = Window(config["server_pids"], config["redis_pid"])
    timing, depth = config["timing"], config["depth"]
    modes = ("same", "across") if len(urls) == 2 else ("same",)
    senders = {id(p.sender): p.sender for p in direct_pairs(users, len(urls), "same")}
    results: dict[str, Any] = {}
    try:
        await connect(traffic, list(senders.values()))
        for mode in modes:
            pairs = direct_pairs(users, len(urls), mode)
            results[f"dm {mode}"] = await direct_run(traffic, pairs, depth, timing, window)
            results[f"dm {mode} 1x1"] = await direct_run(traffic, pairs[:1], 1, timing, window)
        results["connect_s"] = await connect(traffic, [u for u in users if id(u) not in senders])
        for mode in modes:
            pairs = direct_pairs(users, len(urls), mode)
            results[f"dm {mode} all"] = await direct_run(traffic, pairs, depth, timing, window)
        results["broadcast"] = await broadcast_run(traffic, users, timing, window)
    finally:
        for user in users:
            if user.transport is not None:
                user.transport.disconnect()
    results["mismatched"] = traffic.mismatched
    return results


# --- the run ------------------------------------------------------------------------------


def write_app(workspace: Path, users: int) -> list[tuple[str, str]]:
    """The bench's app (a plugin and a zcli.yaml) and ``users`` users in its users file;
    a token for each. Limits are raised so only speed is measured."""
    import yaml

    from zCLI import zCLI
    from zCLI.passwords import hash_password

    (workspace / "plugins").mkdir()
    (workspace / "plugins" / "bench.py").write_text(PLUGIN)
    config = {
        "auth": {"secret": SECRET, "token_ttl": 86400},
        "websocket": {"max_connections": users + 100, "rate_limit": 1e9,
                      "rate_burst": 1_000_000, "fast": False},
    }  # fmt: skip
    (workspace / "zcli.yaml").write_text(yaml.safe_dump(config))
    z = zCLI({"zWorkspace": str(workspace)})
    names = [f"u{i:05d}" for i in range(users)]
    stored = hash_password(PASSWORD)  # one scrypt; the same hash for every user
    document = {"users": {name: {"password": stored, "role": "user"} for name in names}}
    z.auth.users_path.write_text(yaml.safe_dump(document))
    tokens = [(name, z.auth.issue(name, "user").token or "") for name in names]
    z.auth.close()
    return tokens


def serve(workspace: Path, broker: str | None) -> Any:
    from zTestSuite import served_app

    return served_app(workspace, *(["--broker", broker] if broker else []), units=30)


def run_setup(setup: str, workspace: Path, redis: Any, config: dict[str, Any]) -> dict[str, Any]:
    """Start the setup's servers, run the generator against them, stop them."""
    broker = redis.url if "Redis" in setup else None
    servers = [serve(workspace, broker) for _ in range(2 if setup.startswith("2") else 1)]
    try:
        config = {**config, "urls": [s.ws_url for s in servers],
                  "server_pids": [s.pid for s in servers],
                  "redis_pid": redis.pid if broker else None}  # fmt: skip
        done = subprocess.run(
            [sys.executable, __file__, "--generate"],
            input=json.dumps(config),
            stdout=subprocess.PIPE,
            text=True,
        )
        if done.returncode != 0:
            for server in servers:
                log(f"--- {server.describe()} ---\n{server.tail()}")
            raise RuntimeError(f"the load generator failed ({done.returncode}) on {setup}")
        return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]
    finally:
        for server in servers:
            status = server.stop(units=2)  # SIGTERM; SIGKILL after 2 harness units
            if status != 0:
                log(f"  zcli serve (pid {server.pid}) did not stop cleanly on SIGTERM "
                    f"(status {status}); the measurements are unaffected")  # fmt: skip


# the rows of the report: (label, setup, the generator's result key)
DM_ROWS = (
    ("1 process", "1 process", "dm same"),
    ("1 process + Redis", "1 process + Redis", "dm same"),
    ("2 processes, same process", "2 processes + Redis", "dm same"),
    ("2 processes, across", "2 processes + Redis", "dm across"),
)


def report(results: dict[str, list[dict[str, Any]]], args: argparse.Namespace) -> None:
    def cell(setup: str, key: str, field: str) -> float:
        return median([r[key][field] for r in results[setup]])

    def load(setup: str, key: str) -> float:
        return median([r[key]["load"] for r in results[setup]])

    one, brokered, two = SETUPS
    print()
    print(f"direct messages between {DM_USERS} users, {args.depth} in flight per sender, "
          f"and one pair with 1 in flight (1x1); medians of {args.repeats}")  # fmt: skip
    print("CPU in us per message: the servers summed, and redis-server; gen %, srv %: the "
          "generator's and the servers' share of a core")  # fmt: skip
    for label, suffix, users in (("only they", "", DM_USERS), ("everyone", " all", args.users)):
        print()
        print(f"{users:,} users connected ({label}):")
        strict_header = f" {'1x1 p50/p99 ms':>15}" if not suffix else ""
        print(f"{'setup':28} {'msg/s':>8} {'p50/p99 ms':>13}{strict_header} {'server us':>9} "
              f"{'redis us':>8} {'gen %':>5} {'srv %':>5} {'load':>5}")  # fmt: skip
        for row, setup, key in DM_ROWS:
            key += suffix
            strict = ""
            if not suffix:
                strict = (f" {cell(setup, f'{key} 1x1', 'p50_ms'):7.3f}/"
                          f"{cell(setup, f'{key} 1x1', 'p99_ms'):<7.3f}")  # fmt: skip
            print(
                f"{row:28} {cell(setup, key, 'rate'):8,.0f} "
                f"{cell(setup, key, 'p50_ms'):6.2f}/{cell(setup, key, 'p99_ms'):<6.2f}{strict} "
                f"{cell(setup, key, 'server_us'):9.1f} {cell(setup, key, 'redis_us'):8.1f} "
                f"{cell(setup, key, 'generator_pct'):5.0f} {cell(setup, key, 'server_pct'):5.0f} "
                f"{load(setup, key):5.2f}"
            )
    ratios = [
        ("messages/s across / same (2 processes)",
         cell(two, "dm across", "rate") / cell(two, "dm same", "rate")),
        ("1x1 p50 across / same", cell(two, "dm across 1x1", "p50_ms")
         / cell(two, "dm same 1x1", "p50_ms")),
        ("messages/s 2 processes (same) / 1 process",
         cell(two, "dm same", "rate") / cell(one, "dm same", "rate")),
        ("messages/s 1 process + Redis / 1 process",
         cell(brokered, "dm same", "rate") / cell(one, "dm same", "rate")),
        ("server CPU 1 process + Redis / 1 process",
         cell(brokered, "dm same", "server_us") / cell(one, "dm same", "server_us")),
    ]  # fmt: skip
    print()
    print(f"ratios ({DM_USERS} users connected): "
          + "; ".join(f"{label} {value:.2f}" for label, value in ratios))  # fmt: skip
    extra = cell(brokered, "dm same", "server_us") - cell(one, "dm same", "server_us")
    redis_us = cell(brokered, "dm same", "redis_us")
    print(
        f"what the broker adds per direct message on one process ({DM_USERS} users "
        f"connected): server {extra:+.1f} us, redis-server {redis_us:.1f} us"
    )
    print()
    print(f"broadcast to {args.users:,} users (spread evenly over the processes), one round "
          f"after the other; medians of {args.repeats}")  # fmt: skip
    print(f"{'setup':28} {'deliveries/s':>12} {'round ms':>8} {'server us':>9} "
          f"{'redis %':>7} {'gen %':>5} {'srv %':>5} {'load':>5}")  # fmt: skip
    for setup in SETUPS:
        print(
            f"{setup:28} {cell(setup, 'broadcast', 'rate'):12,.0f} "
            f"{cell(setup, 'broadcast', 'round_ms'):8.2f} "
            f"{cell(setup, 'broadcast', 'server_us'):9.2f} "
            f"{cell(setup, 'broadcast', 'redis_pct'):7.2f} "
            f"{cell(setup, 'broadcast', 'generator_pct'):5.0f} "
            f"{cell(setup, 'broadcast', 'server_pct'):5.0f} {load(setup, 'broadcast'):5.2f}"
        )
    print("server us: CPU per delivery, the servers summed; redis %: redis-server's share of "
          "a core (one PUBLISH a round)")  # fmt: skip
    print(
        f"ratios: deliveries/s 2 processes / 1 process "
        f"{cell(two, 'broadcast', 'rate') / cell(one, 'broadcast', 'rate'):.2f}; "
        f"1 process + Redis / 1 process "
        f"{cell(brokered, 'broadcast', 'rate') / cell(one, 'broadcast', 'rate'):.2f}"
    )
    mismatched = sum(r["mismatched"] for rs in results.values() for r in rs)
    lost = sum(value.get("lost", 0) for rs in results.values() for r in rs
               for value in r.values() if isinstance(value, dict))  # fmt: skip
    print(f"mismatched frames in all runs: {mismatched}; messages or replies lost: {lost}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 repeat of short windows")
    parser.add_argument("--repeats", type=int, help="repeats of each setup (3; quick 1)")
    parser.add_argument("--seconds", type=float, help="measured seconds per run (2; quick 1)")
    parser.add_argument("--users", type=int, default=2000, help="connected users (2000)")
    parser.add_argument("--depth", type=int, default=2, help="direct messages in flight (2)")
    parser.add_argument("--generate", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate:
        import uvloop

        try:
            result = uvloop.run(generate(json.loads(sys.stdin.read())))
        except KeyboardInterrupt:
            sys.exit(130)
        print(json.dumps(result), flush=True)
        return

    missing = [m for m in ("picows", "uvloop", "redis") if importlib.util.find_spec(m) is None]
    if missing:
        sys.exit(f"bench/cluster.py needs {', '.join(missing)}: pip install 'zCLI[bench,cluster]'")
    from zTestSuite import RedisServer
    from zTestSuite.services import service_missing

    if service_missing("redis"):
        sys.exit(f"bench/cluster.py needs redis-server: {service_missing('redis')}")
    args.repeats = args.repeats or (1 if args.quick else 3)
    timing = {"warm": 0.5, "seconds": args.seconds or (1.0 if args.quick
              else 2.0)}  # fmt: skip
    if args.users < 2 * DM_USERS:
        sys.exit(f"--users must be at least {2 * DM_USERS}")
    # Ctrl-C (even when started where SIGINT is ignored, as in a background job) and
    # SIGTERM end the bench through the finally blocks, which stop every process
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    started = time.perf_counter()
    log(f"cluster bench: {args.users:,} users, load average {load_average():.2f}")
    results: dict[str, list[dict[str, Any]]] = {setup: [] for setup in SETUPS}
    try:
        with tempfile.TemporaryDirectory(prefix="cluster-bench-") as folder:
            workspace = Path(folder)
            began = time.perf_counter()
            tokens = write_app(workspace, args.users)
            log(f"  app and {args.users:,} tokens written in {time.perf_counter() - began:.1f} s")
            redis = RedisServer()
            try:
                redis.start()
                config = {"users": tokens, "depth": args.depth, "timing": timing}
                for repeat in range(args.repeats):
                    order = SETUPS[repeat % 3 :] + SETUPS[: repeat % 3]
                    for setup in order:
                        began = time.perf_counter()
                        result = run_setup(setup, workspace, redis, config)
                        log(f"  {setup}: {time.perf_counter() - began:.1f} s, of which "
                            f"{result['connect_s']:.1f} s connecting users")  # fmt: skip
                        results[setup].append(result)
                        log_result(f"{repeat + 1}/{args.repeats}", setup, result)
            finally:
                redis.close()
    except KeyboardInterrupt:
        sys.exit("interrupted: every server and redis-server stopped")
    report(results, args)
    print(
        f"{os.cpu_count()} cores; Python {platform.python_version()}; redis-server "
        f"{redis_version()}; commit {commit()}; load average at end {load_average():.2f}; "
        f"run time {time.perf_counter() - started:.0f} s"
    )


def log_result(label: str, setup: str, result: dict[str, Any]) -> None:
    for key, value in result.items():
        if not isinstance(value, dict):
            continue
        latency = f"p50/p99 {value['p50_ms']:.2f}/{value['p99_ms']:.2f} ms, " if "p50_ms" in value \
            else f"round {value['round_ms']:.1f} ms, "  # fmt: skip
        log(
            f"  {label} {setup:20} {key:15} {value['rate']:9,.0f}/s, {latency}"
            f"server {value['server_us']:6.1f} us ({value['server_pct']:3.0f}%), "
            f"redis {value['redis_us']:5.1f} us ({value['redis_pct']:3.0f}%), "
            f"generator {value['generator_pct']:3.0f}%, load {value['load']:.2f}"
        )
    if result["mismatched"]:
        log(f"  {label} {setup}: MISMATCHED {result['mismatched']}")


def commit() -> str:
    """The commit the servers ran (zCLI is installed editable), marked when zCLI/bridge
    has changes of its own."""
    repo = Path(__file__).resolve().parent.parent
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "zCLI/bridge"],
                           capture_output=True, text=True).stdout.strip()  # fmt: skip
    return (head or "?") + (" with zCLI/bridge modified" if dirty else "")


def redis_version() -> str:
    done = subprocess.run(["redis-server", "--version"], capture_output=True, text=True)
    return next((w.split("=")[1] for w in done.stdout.split() if w.startswith("v=")), "?")


if __name__ == "__main__":
    main()
