"""zBifrost_Hostile: one real `zcli serve` process under attack, a clean client watching.

Each test attacks the same server process (fuzzed frames from several connections,
slow-header HTTP connections, half-open WebSocket handshakes, a burst of sign-ins, a
client that never reads) while a clean client keeps pinging; the test asserts the
server stays up, answers only in documented shapes, cuts what it must within its
configured bounds, and that the clean client is undisturbed. The figures (frames
tried, worst clean-client latency, peak RSS) are recorded as metrics.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import unittest
import urllib.request
from pathlib import Path
from typing import Any

import websockets
from websockets.sync.client import connect as connect_sync

try:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
except ImportError:  # a test extra: pip install 'zCLI[test]'
    raise unittest.SkipTest(
        "requires hypothesis, which zCLI's test extra installs: pip install 'zCLI[test]'"
    ) from None

from zTestSuite import record_metric, timeout
from zTestSuite.bridge import PING_ZUI, masked_text_frame, raw_websocket
from zTestSuite.network import network_unavailable
from zTestSuite.process import ServedApp, served_app

# Under -j this suite runs alone: its floods would slow its neighbours, and theirs
# would skew its latency and memory figures.
SERIAL = "floods a real server and measures its latency and memory"

CONFIG = """
websocket:
  require_auth: false
  handshake_timeout: 1
  queue_bytes: 1000000
  rate_limit: 100000
  rate_burst: 100000
  max_connections: 2000
http_server:
  header_timeout: 1
  idle_timeout: 1
  max_connections: 128
auth:
  max_failed_logins_per_address: 1000000
  hash_queue: 128
"""
PASSWORD = "correct horse battery staple"
ERROR_CODES = {
    "invalid_json",
    "invalid_message",
    "missing_field",
    "unknown_event",
    "unknown_key",
    "no_back",
    "unauthorized",
    "rate_limited",
}
WORKSPACE: Path
SERVER: ServedApp
WS_URL = ""
HTTP_URL = ""


def setUpModule() -> None:  # noqa: N802 (unittest's name)
    start_server("--adapter", "asyncio")  # zBifrost_Hostile_SansIO: the other adapter


def start_server(*args: str) -> None:
    """The one served process every test attacks (``args``: more for ``zcli serve``:
    the adapter, ``asyncio`` here and ``sansio`` in zBifrost_Hostile_SansIO)."""
    global WORKSPACE, SERVER, WS_URL, HTTP_URL
    problem = network_unavailable()
    if problem is not None:
        raise unittest.SkipTest(f"requires network: {problem}")
    WORKSPACE = Path(tempfile.mkdtemp(prefix="ztest-hostile-"))
    (WORKSPACE / "zUI.app.yaml").write_text(textwrap.dedent(PING_ZUI).lstrip())
    (WORKSPACE / "zcli.yaml").write_text(CONFIG)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "zCLI",
            "user",
            "add",
            "ada",
            "--workspace",
            str(WORKSPACE),
            "--password-stdin",
        ],
        input=PASSWORD + "\n",
        text=True,
        check=True,
        capture_output=True,
        timeout=timeout(15),
    )
    SERVER = served_app(WORKSPACE, *args)
    WS_URL, HTTP_URL = SERVER.ws_url, SERVER.http_url


def tearDownModule() -> None:  # noqa: N802 (unittest's name)
    status = SERVER.stop()
    shutil.rmtree(WORKSPACE, ignore_errors=True)
    if status != 0:
        raise AssertionError(f"zcli serve exited {status}:\n{SERVER.tail()}")


def _port(url: str) -> int:
    return int(url.rstrip("/").rsplit(":", 1)[1])


def assert_documented(test: unittest.TestCase, reply: dict[str, Any]) -> None:
    """A reply in one of the shapes docs/protocol.md lists, with a documented code."""
    request_id = reply.get("_requestId")
    test.assertIsInstance(request_id, str | int | float | type(None), reply)
    if "error" in reply:
        test.assertEqual(set(reply), {"error", "code", "_requestId"}, reply)
        test.assertIn(reply["code"], ERROR_CODES, reply)
        test.assertRegex(reply["error"], r"^[A-Z].*\.$", reply)
    elif "result" in reply:
        test.assertEqual(set(reply), {"result", "_requestId"}, reply)
    elif reply.get("event") == "pong":
        test.assertLessEqual(set(reply), {"event", "_requestId"}, reply)
    else:
        test.assertEqual(reply.get("event"), "connection_info", reply)
        test.assertLessEqual(set(reply), {"event", "data", "_requestId"}, reply)


class CleanClient:
    """A client that pings throughout an attack and must see nothing but its pongs."""

    def __init__(self, test: unittest.IsolatedAsyncioTestCase) -> None:
        self.test = test
        self.worst = 0.0
        self.pings = 0
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.ws: Any = None

    async def __aenter__(self) -> CleanClient:
        self.ws = await websockets.connect(WS_URL)
        info = json.loads(await asyncio.wait_for(self.ws.recv(), timeout(2)))
        self.test.assertEqual(info["event"], "connection_info")
        self._task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        while not self._stop.is_set():
            started = time.perf_counter()
            await self.ws.send(json.dumps({"event": "ping", "_requestId": self.pings}))
            reply = json.loads(await asyncio.wait_for(self.ws.recv(), timeout(2)))
            self.test.assertEqual(reply, {"event": "pong", "_requestId": self.pings})
            self.worst = max(self.worst, time.perf_counter() - started)
            self.pings += 1
            try:
                await asyncio.wait_for(self._stop.wait(), 0.01)
            except TimeoutError:
                pass

    async def __aexit__(self, *exc_info: object) -> None:
        self._stop.set()
        assert self._task is not None
        await self._task  # raises what the pings found
        await self.ws.close()
        self.test.assertGreater(self.pings, 0)


# --- fuzzing -----------------------------------------------------------------------

EVENTS = [
    "dispatch",
    "menu",
    "ping",
    "connection_info",
    "input_response",
    "login",
    "auth",
    "logout",
    "teleport",
    "",
]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
request_ids = st.none() | st.integers() | st.floats() | st.text(max_size=140) | json_values
fields = st.fixed_dictionaries(
    {"event": st.sampled_from(EVENTS) | st.text(max_size=140) | json_values},
    optional={
        "_requestId": request_ids,
        "zKey": st.sampled_from(["^Ping", "Echo", "Settings", "zBack", "^Theme"]) | json_values,
        "token": st.text(max_size=300) | json_values,
        "username": st.sampled_from(["ada", "bo"]) | json_values,
        "password": st.text(max_size=20) | json_values,
        "requestId": st.text(max_size=70) | json_values,
        "value": json_values,
        "data": json_values,
    },
)
frames = (
    fields.map(lambda obj: json.dumps(obj))  # NaN and Infinity included, as a peer may send
    | st.text(max_size=200)
    | st.binary(max_size=200)
    | st.integers(1, 5000).map(lambda depth: "[" * depth)
    | json_values.map(json.dumps)
)


class TestFuzz(unittest.TestCase):
    tried = 0

    @classmethod
    def setUpClass(cls) -> None:
        cls.sockets = [connect_sync(WS_URL) for _ in range(4)]
        for ws in cls.sockets:
            json.loads(ws.recv(timeout=timeout(2)))
        cls.clean = connect_sync(WS_URL)
        json.loads(cls.clean.recv(timeout=timeout(2)))
        cls.worst = 0.0

    @classmethod
    def tearDownClass(cls) -> None:
        for ws in [*cls.sockets, cls.clean]:
            ws.close()

    @settings(
        max_examples=600,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(st.lists(st.tuples(st.integers(0, 3), frames), min_size=1, max_size=16))
    def test_fuzzed_frames_get_documented_replies(self, batch: list[tuple[int, Any]]) -> None:
        """Random frames on four connections: each gets one reply in a documented shape,
        and a clean fifth client sees only its pongs, promptly."""
        for which, frame in batch:
            ws = self.sockets[which]
            ws.send(frame)
            reply = json.loads(ws.recv(timeout=timeout(2)))
            assert_documented(self, reply)
            type(self).tried += 1
        started = time.perf_counter()
        self.clean.send('{"event": "ping"}')
        self.assertEqual(json.loads(self.clean.recv(timeout=timeout(2))), {"event": "pong"})
        type(self).worst = max(self.worst, time.perf_counter() - started)
        with self.assertRaises(TimeoutError):  # nothing else was sent to the clean client
            self.clean.recv(timeout=0)

    def test_z_figures(self) -> None:
        """The fuzz run's figures: frames tried and the clean client's worst ping."""
        record_metric("frames_tried", self.tried, "frames")
        record_metric("clean_worst_ping", self.worst * 1000, "ms")
        self.assertGreater(self.tried, 600)
        self.assertLess(self.worst, 0.1)


# --- network attacks ---------------------------------------------------------------


class TestFloods(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self) -> None:
        asyncio.get_running_loop().set_debug(False)

    async def open_many(self, port: int, count: int, data: bytes) -> list[Any]:
        pairs = []
        for _ in range(count):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(data)
            pairs.append((reader, writer))
            self.addCleanup(writer.close)
        return pairs

    async def wait_all_cut(self, pairs: list[Any], units: float) -> list[bytes]:
        """What each connection received before the server closed it."""

        async def drain(reader: asyncio.StreamReader) -> bytes:
            try:
                return await reader.read()
            except ConnectionResetError:
                return b""

        return await asyncio.wait_for(
            asyncio.gather(*(drain(reader) for reader, _ in pairs)), timeout(units)
        )

    async def test_slow_header_http_connections(self) -> None:
        """500 connections that never finish their headers are cut by header_timeout (or
        refused at the cap with 503); /health and the bridge keep answering."""
        async with CleanClient(self) as clean:
            started = time.monotonic()
            pairs = await self.open_many(
                _port(HTTP_URL), 500, b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: "
            )
            received = await self.wait_all_cut(pairs, units=5)
            took = time.monotonic() - started
        statuses = [data.split(b" ", 2)[1] if data else b"cut" for data in received]
        for status in set(statuses):
            record_metric(f"http_{status.decode()}", statuses.count(status), "connections")
        self.assertLessEqual(set(statuses), {b"408", b"503", b"cut"})
        self.assertLess(took, 1 + timeout(1))
        record_metric("slow_headers_cut_after", took * 1000, "ms")
        record_metric("clean_worst_ping", clean.worst * 1000, "ms")
        self.assertLess(clean.worst, 0.1)
        body = await asyncio.to_thread(
            lambda: urllib.request.urlopen(f"{HTTP_URL}health", timeout=timeout(2)).read()
        )
        self.assertEqual(json.loads(body)["status"], "ok")

    async def test_half_open_websocket_handshakes(self) -> None:
        """200 handshakes that never finish are cut by handshake_timeout; a clean client
        and a new handshake are served meanwhile."""
        async with CleanClient(self) as clean:
            started = time.monotonic()
            pairs = await self.open_many(_port(WS_URL), 200, b"GET / HTTP/1.1\r\nHost: x\r\n")
            async with websockets.connect(WS_URL) as fresh:
                info = json.loads(await asyncio.wait_for(fresh.recv(), timeout(2)))
                self.assertEqual(info["event"], "connection_info")
            received = await self.wait_all_cut(pairs, units=5)
            took = time.monotonic() - started
        self.assertEqual(set(received), {b""})
        self.assertLess(took, 1 + timeout(1))
        record_metric("half_open_cut_after", took * 1000, "ms")
        record_metric("clean_worst_ping", clean.worst * 1000, "ms")
        self.assertLess(clean.worst, 0.1)

    async def test_concurrent_logins_do_not_stall_the_loop(self) -> None:
        """60 sign-ins at once all succeed while the clean client's ping stays under 100 ms."""
        sockets = [await websockets.connect(WS_URL) for _ in range(60)]
        for ws in sockets:
            await ws.recv()
        login = {"event": "login", "username": "ada", "password": PASSWORD}
        async with CleanClient(self) as clean:
            started = time.monotonic()
            await asyncio.gather(*(ws.send(json.dumps(login)) for ws in sockets))
            replies = await asyncio.gather(
                *(asyncio.wait_for(ws.recv(), timeout(15)) for ws in sockets)
            )
            took = time.monotonic() - started
        for ws in sockets:
            await ws.close()
        users = [json.loads(reply)["result"]["user"] for reply in replies]
        self.assertEqual(users, ["ada"] * 60)
        record_metric("logins_60", took * 1000, "ms")
        record_metric("clean_worst_ping", clean.worst * 1000, "ms")
        self.assertLess(clean.worst, 0.1)

    async def test_never_reading_client_memory_is_bounded(self) -> None:
        """A client that floods requests and reads nothing is cut when its queue holds
        queue_bytes; the server's memory grows by little more than that."""
        before = SERVER.rss()
        peak = before
        _reader, writer = await raw_websocket(_port(WS_URL))
        self.addCleanup(writer.close)
        batch = masked_text_frame(json.dumps({"event": "ping", "_requestId": "r" * 128})) * 500
        sent, cut = 0, False
        async with CleanClient(self) as clean:
            deadline = time.monotonic() + timeout(5)
            while sent < 400_000 and time.monotonic() < deadline:
                try:
                    writer.write(batch)  # never read: replies pile up at the server
                    await writer.drain()
                except ConnectionError:
                    cut = True
                    break
                sent += 500
                peak = max(peak, SERVER.rss())
        growth = peak - before
        record_metric("requests_sent", sent, "frames")
        record_metric("server_rss_growth", growth / 1e6, "MB")
        record_metric("server_peak_rss", SERVER.peak_rss() / 1e6, "MB")
        record_metric("clean_worst_ping", clean.worst * 1000, "ms")
        self.assertTrue(cut, f"the server never cut a client that read nothing ({sent} sent)")
        self.assertLess(growth, 24_000_000)
        self.assertLess(clean.worst, 0.1)
