"""zTunnel against a direct loopback connection and Debian's websockify, in the same run.

    python bench/tunnel.py [--quick] [--repeats N] [--size MB] [--memory-size MB]

Every part runs in a process of its own: the echo backend (this file with
``--serve-echo``), the three tunnel processes (``zcli tunnel server`` and two ``zcli
tunnel client``, on config files this bench writes into a temporary folder, ports free
below 32768), websockify with its shim (see below), and the load generator (this file
with ``--generate``), which measures and hands its figures back as JSON. Client 1 is
active; client 2 stands by, connected and idle (nothing touches its ports, so no
failover happens).

The generator drives four targets with the same blocking TCP code, all ending at the
same echo backend:

- ``zTunnel s->c``: the server's listen port; the server carries each connection to
  client 1, which dials the backend.
- ``zTunnel c->s``: client 1's listen port; client 1 carries it to the server, which
  dials the backend.
- ``direct``: the backend's own port (loopback TCP, no relay).
- ``websockify``: a TCP->WebSocket shim (this file with ``--serve-shim``, a plain
  ``websockets`` client sending 64 KiB binary messages) in front of ``websockify
  PORT 127.0.0.1:BACKEND`` (Debian's, 0.10). websockify only bridges WebSocket->TCP; the
  shim gives it the same shape as zTunnel (TCP in, one Python process, WebSocket, one
  Python process, TCP out), so the generator reaches all four the same way. websockify
  forks a process per connection; its CPU is that of its whole process tree.

Measurements, each target in turn, the order rotated every repeat so drift hits all:

- throughput: one connection echoes ``--size`` MB (the generator writes in one thread
  and reads and checks in another); MB/s of payload, 10^6 bytes a second. Each byte
  crosses the relay twice (out and back), so both WebSocket directions carry it.
- aggregate: 20 connections at once, ``--size`` MB in all, the same way.
- latency: 500-byte round trips, one at a time on one connection, p50 and p99.
- memory (zTunnel only, on three tunnel processes started afresh for it):
  ``--memory-size`` MB echoed through one stream of each tunnel while the resident
  memory of the server and both clients is sampled from /proc every 5 ms; their VmHWM
  (largest RSS since start) is read at the end. The reader starts only after the
  writer has written one window (or 2 s passed), so a relay holds up to a window
  before the echo drains: the figure shows what the configured window lets a process
  hold, not only what a fast reader leaves behind. The growth of the first tunnel
  processes over the speed runs (20 streams included) is printed too, against
  ``min(20 x window, memoryCapBytes)``.

CPU is read from /proc/PID/stat before and after each timed run: seconds of CPU per GB
(10^9 bytes) echoed, for the zTunnel server and client 1, websockify and the shim.
Figures are medians of ``--repeats``; the load average (1 minute) and the CPU pressure
(``/proc/pressure/cpu``, share of the last 10 s in which some task waited for a core)
are printed with every run, since other work on the machine shows in the tails first.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from procstat import TICK, load_average, log, rss_bytes, stat_fields, stop

GOAL_RATIO = 0.2  # the goals
GOAL_P99_MS = 1.0
ROUND_TRIP_BYTES = 500
STREAMS = 20
CHUNK = 256 * 1024  # the generator's writes and reads
MB = 1_000_000
GB = 1_000_000_000
MIB = 1024 * 1024
HOLD_TIMEOUT = 2.0  # memory run: the reader starts after a window, or after this
IO_TIMEOUT = 60.0  # a stalled connection fails the run instead of hanging it
S2C, C2S = "bench-s2c", "bench-c2s"
TARGETS = ("zTunnel s->c", "zTunnel c->s", "direct", "websockify")
CPU_ROWS = (  # the processes whose CPU each run reads: role, what it is for each target
    ("server", "zTunnel server | websockify"),
    ("client", "zTunnel client 1 | shim"),
    ("backend", "echo backend"),
    ("generator", "load generator"),
)


# --- what /proc says about a process ------------------------------------------------------


def tree_cpu(pid: int) -> float:
    """User + system CPU seconds of a process and its descendants, including children
    already reaped (websockify forks one per connection)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parents[int(entry)] = int(stat_fields(int(entry))[1])
            except (OSError, IndexError, ValueError):
                pass
    tree, todo = {pid}, [pid]
    while todo:
        parent = todo.pop()
        children = [child for child, ppid in parents.items() if ppid == parent]
        tree.update(children)
        todo.extend(children)
    ticks = 0
    for member in tree:
        try:
            fields = stat_fields(member)
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])
        if member == pid:
            ticks += int(fields[13]) + int(fields[14])
    return ticks / TICK


def peak_rss(pid: int) -> int:
    """VmHWM: the largest resident set the process has had since it started."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def cpu_pressure() -> float:
    """``some avg10`` of /proc/pressure/cpu (percent), or -1 without PSI."""
    try:
        first = Path("/proc/pressure/cpu").read_text().split()
    except OSError:
        return -1.0
    return float(first[1].split("=")[1])


# --- the echo backend and the websockify shim (each its own process) ----------------------


class Echo(asyncio.Protocol):
    """Writes back what it reads; stops reading while the kernel will not take more."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)

    def eof_received(self) -> bool:
        return False  # close our side too

    def pause_writing(self) -> None:
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.transport.resume_reading()


async def serve_echo(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Echo, "127.0.0.1", port, reuse_address=True)
    print(f"echo backend listening on 127.0.0.1:{port}", flush=True)
    async with server:
        await server.serve_forever()


async def serve_shim(port: int, url: str) -> None:
    """TCP in, one WebSocket per connection out to websockify: binary messages of at
    most 64 KiB each way, no compression."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with connect(url, compression=None, max_size=None) as ws:

                async def upstream() -> None:
                    while data := await reader.read(65536):
                        await ws.send(data)
                    await ws.close()

                async def downstream() -> None:
                    async for message in ws:
                        writer.write(message if isinstance(message, bytes) else message.encode())
                        await writer.drain()
                    writer.close()

                async with asyncio.TaskGroup() as group:
                    group.create_task(upstream())
                    group.create_task(downstream())
        except (OSError, ConnectionClosed, ExceptionGroup):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port, reuse_address=True)
    print(f"shim listening on 127.0.0.1:{port}", flush=True)
    async with server:
        await server.serve_forever()


# --- the processes under test (started by the main process) -------------------------------


class Process:
    """A process of the bench, its stderr (and stdout after the ready line) in a log."""

    def __init__(self, name: str, command: list[str], ready: str | None, logfile: Path) -> None:
        self.name = name
        self.logfile = logfile
        out = subprocess.PIPE if ready else logfile.with_suffix(".out").open("w")
        self.process = subprocess.Popen(
            command, stdout=out, stderr=logfile.open("w"), text=True, cwd=logfile.parent
        )
        self.pid = self.process.pid
        if ready is not None:
            assert self.process.stdout is not None
            for line in self.process.stdout:
                if ready in line:
                    break
            else:
                raise RuntimeError(f"{name} exited before {ready!r}:\n{self.log_tail()}")
            # Keep draining stdout so the process never blocks on a full pipe.
            threading.Thread(target=self.process.stdout.read, daemon=True).start()

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        stop(self.process)


def wait_port(port: int, process: Process, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.process.poll() is not None:
            raise RuntimeError(f"{process.name} exited:\n{process.log_tail()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)  # polling a port that is not open yet: nothing to wait on
    raise RuntimeError(f"{process.name}: port {port} not open after {seconds:g} s")


def free_ports(count: int) -> list[int]:
    """``count`` consecutive ports in 20000-32000 that bind now: below the ephemeral
    range, so no outgoing connection takes one."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20000, 32000 - count)
        ports = list(range(base, base + count))
        try:
            for port in ports:
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", port))
        except OSError:
            continue
        return ports
    raise RuntimeError(f"no {count} consecutive free ports between 20000 and 32000")


def write_configs(folder: Path, ports: dict[str, int], window: int, cap: int) -> None:
    """server.json, client1.json and client2.json: one tunnel each way, to the backend."""
    backend = ports["backend"]

    def common(server: bool, client_id: int | None) -> dict[str, Any]:
        config: dict[str, Any] = {"weAreServer": server}
        if client_id is not None:
            config["clientId"] = client_id
        config["standbySocketCloseDurationSecs"] = 3
        config["dataExchange"] = {"serverUrl": f"ws://127.0.0.1:{ports['ws']}", "authToken": "b"}
        config["logging"] = {"level": "WARNING"}
        config["tuning"] = {"windowBytes": window, "memoryCapBytes": cap}
        return config

    def listen(name: str, port: int) -> dict[str, Any]:
        return {"tunnelName": name, "listenPort": port, "listenBindAddress": "127.0.0.1"}

    def connect(name: str) -> dict[str, Any]:
        return {"tunnelName": name, "connectToHost": "127.0.0.1", "connectToPort": backend}

    configs = {"server": common(True, None)}
    configs["server"]["tcpTunnelListens"] = [listen(S2C, ports["s2c"])]
    configs["server"]["tcpTunnelConnects"] = [connect(C2S)]
    for number in (1, 2):
        client = common(False, number)
        client["tcpTunnelListens"] = [listen(C2S, ports[f"c2s{number}"])]
        client["tcpTunnelConnects"] = [connect(S2C)]
        configs[f"client{number}"] = client
    for stem, config in configs.items():
        (folder / f"{stem}.json").write_text(json.dumps(config, indent=2) + "\n")


# --- the load generator (its own process) -------------------------------------------------


class Pattern:
    """The bytes every connection writes, repeated: checked as they come back."""

    def __init__(self, seed: int) -> None:
        self.block = random.Random(seed).randbytes(CHUNK)
        self.doubled = self.block + self.block

    def expected(self, offset: int, size: int) -> bytes:
        start = offset % CHUNK
        return self.doubled[start : start + size]


class EchoConnection:
    """One blocking TCP connection to an echo target."""

    def __init__(self, port: int, pattern: Pattern) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.pattern = pattern

    def close(self) -> None:
        self.sock.close()

    def receive_exactly(self, size: int) -> bytes:
        parts, got = [], 0
        while got < size:
            data = self.sock.recv(min(CHUNK, size - got))
            if not data:
                raise ConnectionError(f"EOF after {got} of {size} bytes")
            parts.append(data)
            got += len(data)
        return b"".join(parts)

    def round_trips(self, count: int) -> list[float]:
        times = []
        for i in range(count):
            message = self.pattern.expected(i * 7, ROUND_TRIP_BYTES)
            t0 = time.perf_counter()
            self.sock.sendall(message)
            reply = self.receive_exactly(ROUND_TRIP_BYTES)
            times.append(time.perf_counter() - t0)
            if reply != message:
                raise ValueError(f"round trip {i}: the echo differs from what was sent")
        return times

    def echo(self, size: int, hold: int = 0) -> None:
        """Write ``size`` bytes while another thread reads and checks the echo; with
        ``hold``, the reader starts once that much is written (or HOLD_TIMEOUT passed)."""
        failure: list[BaseException] = []
        start = threading.Event()
        if not hold:
            start.set()

        def read() -> None:
            start.wait(HOLD_TIMEOUT)
            got = 0
            try:
                while got < size:
                    data = self.sock.recv(CHUNK)
                    if not data:
                        raise ConnectionError(f"EOF after {got:,} of {size:,} bytes")
                    if data != self.pattern.expected(got, len(data)):
                        raise ValueError(f"the echo differs from what was sent at byte {got:,}")
                    got += len(data)
            except BaseException as error:  # handed to the writer's thread
                failure.append(error)

        reader = threading.Thread(target=read)
        reader.start()
        block, sent = memoryview(self.pattern.block), 0
        try:
            while sent < size and not failure:
                count = min(CHUNK, size - sent)
                self.sock.sendall(block[:count])
                sent += count
                if sent >= hold:
                    start.set()
        finally:
            start.set()
            reader.join()
        if failure:
            raise failure[0]


def run_threads(work: Sequence[Callable[[], None]]) -> None:
    failure: list[BaseException] = []

    def wrap(job: Callable[[], None]) -> None:
        try:
            job()
        except BaseException as error:
            failure.append(error)

    threads = [threading.Thread(target=wrap, args=(job,)) for job in work]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failure:
        raise failure[0]


class Generator:
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.pattern = Pattern(config["seed"])
        self.targets: dict[str, dict[str, Any]] = config["targets"]

    def timed(self, name: str, moved: int, run: Callable[[], Any]) -> dict[str, Any]:
        """Run one measurement with the CPU of the target's relays around it."""
        pids: dict[str, int] = {**self.targets[name]["cpu"], "generator": os.getpid()}
        before = {role: tree_cpu(pid) for role, pid in pids.items()}
        t0 = time.perf_counter()
        value = run()
        seconds = time.perf_counter() - t0
        after = {role: tree_cpu(pid) for role, pid in pids.items()}
        result: dict[str, Any] = {
            "seconds": seconds,
            "load": load_average(),
            "pressure": cpu_pressure(),
        }
        if moved:
            result["mb_s"] = moved / seconds / MB
            for role in pids:
                result[f"{role}_s_per_gb"] = (after[role] - before[role]) / (moved / GB)
        if value is not None:
            result.update(value)
        return result

    def single(self, name: str, size: int) -> dict[str, Any]:
        connection = EchoConnection(self.targets[name]["port"], self.pattern)
        try:
            connection.round_trips(3)  # the stream is open end to end before the clock
            return self.timed(name, size, lambda: connection.echo(size))
        finally:
            connection.close()

    def aggregate(self, name: str, size: int) -> dict[str, Any]:
        port = self.targets[name]["port"]
        connections = [EchoConnection(port, self.pattern) for _ in range(STREAMS)]
        try:
            for connection in connections:
                connection.round_trips(1)
            each = size // STREAMS // CHUNK * CHUNK
            work = [functools.partial(c.echo, each) for c in connections]
            return self.timed(name, each * STREAMS, lambda: run_threads(work))
        finally:
            for connection in connections:
                connection.close()

    def latency(self, name: str, count: int) -> dict[str, Any]:
        connection = EchoConnection(self.targets[name]["port"], self.pattern)
        try:
            connection.round_trips(max(50, count // 10))  # warm-up

            def measure() -> dict[str, float]:
                times = sorted(connection.round_trips(count))
                return {
                    "p50_ms": 1000 * times[len(times) // 2],
                    "p99_ms": 1000 * times[min(len(times) - 1, int(0.99 * len(times)))],
                }

            return self.timed(name, 0, measure)
        finally:
            connection.close()

    def memory(self, name: str, size: int, hold: int) -> dict[str, Any]:
        """Echo ``size`` bytes, the reader held back by ``hold``, sampling RSS."""
        watched: dict[str, int] = self.config["memory_pids"]
        peaks = {role: rss_bytes(pid) for role, pid in watched.items()}
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.005):
                for role, pid in watched.items():
                    peaks[role] = max(peaks[role], rss_bytes(pid))

        sampler = threading.Thread(target=sample)
        sampler.start()
        connection = EchoConnection(self.targets[name]["port"], self.pattern)
        try:
            connection.round_trips(1)
            result = self.timed(name, size, lambda: connection.echo(size, hold))
        finally:
            connection.close()
            done.set()
            sampler.join()
        for role in watched:
            result[f"{role}_rss_peak"] = peaks[role]
        return result

    def run(self) -> dict[str, Any]:
        """The speed phase (throughput, aggregate, latency: every target) or the memory
        phase (zTunnel only, on tunnel processes started for it)."""
        config = self.config
        names = [name for name in TARGETS if name in self.targets]
        watched: dict[str, int] = config["memory_pids"]
        rss = {role: {"idle": rss_bytes(pid)} for role, pid in watched.items()}
        if config["phase"] == "speed":
            kinds = {
                "single": lambda n: self.single(n, config["size"]),
                "aggregate": lambda n: self.aggregate(n, config["size"]),
                "latency": lambda n: self.latency(n, config["round_trips"]),
            }
            for name in names:  # warm-up: every path opened, the interpreters warm
                self.single(name, 16 * MIB)
                self.latency(name, 100)
        else:
            names = [name for name in names if name.startswith("zTunnel")]
            kinds = {"memory": lambda n: self.memory(n, config["memory_size"], config["hold"])}
        results: dict[str, Any] = {kind: {name: [] for name in names} for kind in kinds}
        for repeat in range(config["repeats"]):
            order = names[repeat % len(names) :] + names[: repeat % len(names)]
            log(
                f"{config['phase']} repeat {repeat + 1}/{config['repeats']} "
                f"(load average {load_average():.2f})"
            )
            for kind, run in kinds.items():
                for name in order:
                    result = run(name)
                    results[kind][name].append(result)
                    line = f"  {kind:9} {name:13} {describe(result)}"
                    if kind == "memory":
                        line += "; RSS peak " + ", ".join(
                            f"{role} {result[f'{role}_rss_peak'] / MIB:.0f} MiB" for role in watched
                        )
                    log(line)
        for role, pid in watched.items():
            rss[role]["lifetime_peak"] = peak_rss(pid)
        results[f"rss_{config['phase']}"] = rss
        return results


def describe(result: dict[str, Any]) -> str:
    parts = []
    if "mb_s" in result:
        parts.append(f"{result['mb_s']:8.1f} MB/s")
    if "p50_ms" in result:
        parts.append(f"p50 {result['p50_ms']:.3f} ms, p99 {result['p99_ms']:.3f} ms")
    for key, value in result.items():
        if key.endswith("_s_per_gb"):
            parts.append(f"{key.removesuffix('_s_per_gb')} {value:.2f} s/GB")
    parts.append(f"load {result['load']:.2f}, pressure {result['pressure']:.0f}%")
    return ", ".join(parts)


# --- the report (main process) ------------------------------------------------------------


def median(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [run[key] for run in runs if key in run]
    return statistics.median(values) if values else None


def cell(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def ratio(ours: float | None, theirs: float | None, time_like: bool = False) -> str:
    if ours is None or theirs is None or not ours or not theirs:
        return "-"
    return f"{(theirs / ours if time_like else ours / theirs):.2f}x"


def report(args: argparse.Namespace, results: dict[str, Any], setup: dict[str, Any]) -> None:
    print()
    print(
        f"zTunnel vs direct loopback TCP vs websockify+shim, one echo backend; medians of "
        f"{args.repeats}; 1 stream {args.size:g} MB, {STREAMS} streams {args.size:g} MB in "
        f"all, {args.round_trips:,} round trips of {ROUND_TRIP_BYTES} bytes"
    )
    print(
        "MB/s = 10^6 payload bytes echoed a second (each crosses the relays out and back); "
        "CPU = seconds per GB (10^9 bytes) echoed; ratios above 1: zTunnel ahead"
    )
    print(
        f"{'metric':42} {'zTunnel':>9} {'direct':>9} {'websockify':>10} "
        f"{'vs direct':>9} {'vs websockify':>13}"
    )

    def row(label: str, kind: str, name: str, key: str, digits: int, time_like: bool) -> None:
        ours = median(results[kind][name], key)
        direct = median(results[kind].get("direct", []), key)
        ws = median(results[kind].get("websockify", []), key)
        print(
            f"{label:42} {cell(ours, digits):>9} {cell(direct, digits):>9} "
            f"{cell(ws, digits):>10} {ratio(ours, direct, time_like):>9} "
            f"{ratio(ours, ws, time_like):>13}"
        )

    for name, arrow in (("zTunnel s->c", "s->c"), ("zTunnel c->s", "c->s")):
        for kind, label in (("single", "1 stream"), ("aggregate", f"{STREAMS} streams")):
            row(f"{arrow} throughput, {label} (MB/s)", kind, name, "mb_s", 1, False)
            for role, what in CPU_ROWS:
                row(f"  CPU s/GB: {what}", kind, name, f"{role}_s_per_gb", 2, True)
        for key in ("p50_ms", "p99_ms"):
            label = f"{arrow} round trip {ROUND_TRIP_BYTES} B, {key[:3]} (ms)"
            row(label, "latency", name, key, 3, True)
    if "websockify" in results["single"]:
        print(
            f"websockify = Debian's websockify {setup['websockify']} behind a TCP->WebSocket "
            f"shim in this file (websockets {setup['websockets']}, 64 KiB binary messages)"
        )
    else:
        print(f"websockify: {setup['websockify']}")
    print("direct and websockify are measured once a repeat: both zTunnel rows quote them")

    print()
    window, cap = args.window, args.memory_cap
    bound = min(window, cap) + setup["congested"] + setup["ws_write_limit"]
    print(
        f"memory: {args.memory_size:g} MB echoed through one stream of each tunnel, the "
        f"reader starting once one window is written; windowBytes {window / MIB:.0f} MiB, "
        f"memoryCapBytes {cap / MIB:.0f} MiB"
    )
    print(
        f"bound on growth per process: min(window, cap) + link backlog "
        f"{setup['congested'] / MIB:.0f} MiB + WebSocket buffer "
        f"{setup['ws_write_limit'] / MIB:.0f} MiB = {bound / MIB:.0f} MiB"
    )
    roles = ("server", "client1", "client2")
    print(f"{'RSS (MiB)':42} {'server':>14} {'client 1':>14} {'client 2':>14} {'MB/s':>8}")
    rss = results["rss_memory"]
    label = f"{'  idle, fresh processes':42}"
    print(label + "".join(f" {rss[role]['idle'] / MIB:>14.0f}" for role in roles))
    for name, runs in results["memory"].items():
        cells = "".join(
            f" {statistics.median(r[f'{role}_rss_peak'] for r in runs) / MIB:>8.0f} "
            f"[{max(r[f'{role}_rss_peak'] for r in runs) / MIB:>4.0f}]"
            for role in roles
        )
        print(f"  peak during {name}, median [max]{'':4}{cells} {cell(median(runs, 'mb_s')):>8}")
    label = f"{'  VmHWM, largest over the memory runs':42}"
    print(label + "".join(f" {rss[role]['lifetime_peak'] / MIB:>14.0f}" for role in roles))
    growth = {role: rss[role]["lifetime_peak"] - rss[role]["idle"] for role in roles}
    label = f"{'  growth, VmHWM - idle':42}"
    print(label + "".join(f" {growth[role] / MIB:>14.0f}" for role in roles))
    speed = results["rss_speed"]
    speed_growth = {role: speed[role]["lifetime_peak"] - speed[role]["idle"] for role in roles}
    label = f"{'  growth over the speed runs (20 streams)':42}"
    print(label + "".join(f" {speed_growth[role] / MIB:>14.0f}" for role in roles))
    wide = min(STREAMS * window, cap) + setup["congested"] + setup["ws_write_limit"]
    print(
        f"  (the speed runs' tunnel processes; bound with {STREAMS} streams: "
        f"min({STREAMS} x window, cap) + {(wide - min(STREAMS * window, cap)) / MIB:.0f} MiB "
        f"= {wide / MIB:.0f} MiB)"
    )

    print()
    runs = [
        run for kind in ("single", "aggregate", "latency", "memory")
        for by_target in results[kind].values() for run in by_target
    ]  # fmt: skip
    loads = [run["load"] for run in runs]
    pressures = [run["pressure"] for run in runs]
    print(
        f"load average: at start {setup['load_start']:.2f}, during runs "
        f"{min(loads):.2f}-{max(loads):.2f} (median {statistics.median(loads):.2f}), at end "
        f"{load_average():.2f}; CPU pressure during runs {min(pressures):.0f}-"
        f"{max(pressures):.0f}% (median {statistics.median(pressures):.0f}%)"
    )
    print(f"{os.cpu_count()} cores; Python {platform.python_version()}")
    print()
    for name, arrow in (("zTunnel s->c", "s->c"), ("zTunnel c->s", "c->s")):
        ours = median(results["single"][name], "mb_s")
        theirs = median(results["single"]["direct"], "mb_s")
        share = ours / theirs if ours and theirs else float("nan")
        print(
            f"goal {arrow} 1 stream >= {GOAL_RATIO}x direct loopback TCP: {share:.2f}x -> "
            f"{'met' if share >= GOAL_RATIO else 'NOT met'}"
        )
    for name, arrow in (("zTunnel s->c", "s->c"), ("zTunnel c->s", "c->s")):
        p99 = median(results["latency"][name], "p99_ms") or float("nan")
        print(
            f"goal {arrow} round trip p99 < {GOAL_P99_MS:g} ms: {p99:.3f} ms -> "
            f"{'met' if p99 < GOAL_P99_MS else 'NOT met'}"
        )
    worst = max(growth.values())
    print(
        f"goal memory bounded by the window, one stream: largest growth {worst / MIB:.0f} MiB, "
        f"bound {bound / MIB:.0f} MiB -> {'met' if worst <= bound else 'NOT met'}"
    )
    worst = max(speed_growth.values())
    print(
        f"goal memory bounded by the windows, {STREAMS} streams: largest growth "
        f"{worst / MIB:.0f} MiB, bound {wide / MIB:.0f} MiB -> "
        f"{'met' if worst <= wide else 'NOT met'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, 1 repeat")
    parser.add_argument("--repeats", type=int, help="repeats of each measurement (5; quick 1)")
    parser.add_argument("--size", type=float, help="MB echoed per throughput run (1000; quick 64)")
    parser.add_argument("--memory-size", type=float, help="MB of the memory run (1000; quick 200)")
    parser.add_argument("--round-trips", type=int, help="per latency run (10000; quick 1000)")
    parser.add_argument("--window", type=int, default=128 * MIB, help="tuning.windowBytes")
    parser.add_argument("--memory-cap", type=int, default=2048 * MIB, help="memoryCapBytes")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--serve-echo", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--serve-shim", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--generate", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_echo:
        asyncio.run(serve_echo(args.serve_echo))
        return
    if args.serve_shim:
        asyncio.run(serve_shim(int(args.serve_shim[0]), args.serve_shim[1]))
        return
    if args.generate:
        config = json.loads(sys.stdin.read())
        print(json.dumps(Generator(config).run()), flush=True)
        return

    import websockets

    from zCLI.apps.tunnel.pump import WS_WRITE_LIMIT
    from zCLI.apps.tunnel.tcp import CONGESTED

    quick = args.quick
    args.repeats = args.repeats or (1 if quick else 5)
    args.size = args.size or (64.0 if quick else 1000.0)
    args.memory_size = args.memory_size or (200.0 if quick else 1000.0)
    args.round_trips = args.round_trips or (1000 if quick else 10000)
    started = time.perf_counter()
    setup: dict[str, Any] = {
        "load_start": load_average(),
        "congested": CONGESTED,
        "ws_write_limit": WS_WRITE_LIMIT,
        "websockets": websockets.__version__,
    }
    log(f"zTunnel bench: load average {setup['load_start']:.2f}, {os.cpu_count()} cores")
    websockify = shutil.which("websockify")
    if websockify is None:
        setup["websockify"] = "not installed (apt-get install websockify): column skipped"
        print("websockify is not installed (apt-get install websockify): column skipped")
    else:
        version = subprocess.run(
            ["dpkg-query", "-W", "-f", "${Version}", "websockify"], capture_output=True, text=True
        )
        setup["websockify"] = version.stdout.strip() or "(version unknown)"
    with tempfile.TemporaryDirectory(prefix="ztunnel-bench-") as tmp:
        bench = Bench(Path(tmp), args, websockify)
        try:
            bench.start()
            results = bench.generate("speed")
            # Memory on tunnel processes of its own: the 20-stream runs may leave the
            # first ones holding what their windows allowed (reported separately).
            bench.restart_tunnel()
            results.update(bench.generate("memory"))
            warnings = bench.warnings()
        finally:
            bench.stop()
    report(args, results, setup)
    for name, tail in warnings.items():
        print(f"{name} log (last lines):\n{tail}")
    print(f"run time {time.perf_counter() - started:.0f} s")


class Bench:
    """The processes under test and the generator runs against them."""

    def __init__(self, folder: Path, args: argparse.Namespace, websockify: str | None) -> None:
        self.folder = folder
        self.args = args
        self.websockify = websockify
        names = ("ws", "s2c", "c2s1", "c2s2", "backend", "websockify", "shim")
        self.ports = dict(zip(names, free_ports(len(names)), strict=True))
        write_configs(folder, self.ports, args.window, args.memory_cap)
        self.me = [sys.executable, __file__]
        self.processes: dict[str, Process] = {}

    def start(self) -> None:
        ports, folder = self.ports, self.folder
        self.processes["backend"] = Process(
            "echo backend",
            [*self.me, "--serve-echo", str(ports["backend"])],
            "echo backend listening",
            folder / "backend.log",
        )
        self.start_tunnel()
        if self.websockify is not None:
            self.processes["websockify"] = Process(
                "websockify",
                [
                    self.websockify,
                    f"127.0.0.1:{ports['websockify']}",
                    f"127.0.0.1:{ports['backend']}",
                ],
                None,
                folder / "websockify.log",
            )
            wait_port(ports["websockify"], self.processes["websockify"])
            websocket = f"ws://127.0.0.1:{ports['websockify']}/"
            self.processes["shim"] = Process(
                "shim",
                [*self.me, "--serve-shim", str(ports["shim"]), websocket],
                "shim listening",
                folder / "shim.log",
            )

    def start_tunnel(self) -> None:
        """The server, then client 1 (which the server makes active), then client 2."""
        zcli = [sys.executable, "-m", "zCLI", "tunnel"]
        for name, role, ready in (
            ("server", "server", "zTunnel server listening on"),
            ("client1", "client", "zTunnel client 1 connected"),
            ("client2", "client", "zTunnel client 2 connected"),
        ):
            config = self.folder / f"{name}.json"
            log_file = self.folder / f"{name}-{time.monotonic_ns()}.log"
            self.processes[name] = Process(
                f"zTunnel {name}", [*zcli, role, "--config", str(config)], ready, log_file
            )
            port = self.ports["s2c" if name == "server" else f"c2s{name[-1]}"]
            wait_port(port, self.processes[name])

    def restart_tunnel(self) -> None:
        for name in ("client2", "client1", "server"):
            self.processes.pop(name).stop()
        self.start_tunnel()

    def targets(self) -> dict[str, dict[str, Any]]:
        pids = {name: process.pid for name, process in self.processes.items()}
        relays = {"server": pids["server"], "client": pids["client1"], "backend": pids["backend"]}
        targets: dict[str, dict[str, Any]] = {
            "zTunnel s->c": {"port": self.ports["s2c"], "cpu": relays},
            "zTunnel c->s": {"port": self.ports["c2s1"], "cpu": relays},
            "direct": {"port": self.ports["backend"], "cpu": {"backend": pids["backend"]}},
        }
        if "shim" in pids:
            targets["websockify"] = {
                "port": self.ports["shim"],
                "cpu": {
                    "server": pids["websockify"],
                    "client": pids["shim"],
                    "backend": pids["backend"],
                },
            }
        return targets

    def generate(self, phase: str) -> dict[str, Any]:
        args = self.args
        config = {
            "phase": phase,
            "seed": args.seed,
            "repeats": args.repeats,
            "size": int(args.size * MB) // CHUNK * CHUNK,
            "memory_size": int(args.memory_size * MB) // CHUNK * CHUNK,
            "hold": min(args.window, args.memory_cap),
            "round_trips": args.round_trips,
            "targets": self.targets(),
            "memory_pids": {r: self.processes[r].pid for r in ("server", "client1", "client2")},
        }
        generator = subprocess.run(
            [*self.me, "--generate"], input=json.dumps(config), stdout=subprocess.PIPE, text=True
        )
        for process in self.processes.values():
            if process.process.poll() is not None:
                log(f"{process.name} exited ({process.process.returncode}):")
                log(process.log_tail())
        if generator.returncode != 0:
            for process in self.processes.values():
                log(f"--- {process.name} log tail ---\n{process.log_tail()}")
            sys.exit(f"the load generator failed ({generator.returncode})")
        result: dict[str, Any] = json.loads(generator.stdout.strip().splitlines()[-1])
        return result

    def warnings(self) -> dict[str, str]:
        """The last lines the tunnel processes logged (WARNING and above), if any."""
        tails = {}
        for log_file in sorted(self.folder.glob("*-*.log")):
            text = "\n".join(log_file.read_text(errors="replace").splitlines()[-5:])
            if text.strip():
                tails[log_file.stem] = text
        return tails

    def stop(self) -> None:
        for process in reversed(list(self.processes.values())):
            process.stop()


if __name__ == "__main__":
    main()
