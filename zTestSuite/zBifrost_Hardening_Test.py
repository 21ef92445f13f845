"""zBifrost against hostile input: each test is one finding of the attack report (issue 6).

Real bridges on port 0, real WebSocket clients, raw sockets where a client library would
refuse to send what an attacker sends.
"""

from __future__ import annotations

import asyncio
import json
import re
import time

from websockets.exceptions import InvalidStatus

from zCLI import __version__
from zTestSuite import record_metric, requires_network, timeout
from zTestSuite.bridge import AuthTestCase, BridgeTestCase, masked_text_frame
from zTestSuite.harness import run_zcli


async def raw_handshake(port: int, headers: list[tuple[str, str]]) -> tuple[int, str]:
    """Send a WebSocket handshake exactly as given; return (status, response body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    lines = ["GET / HTTP/1.1", *(f"{name}: {value}" for name, value in headers)]
    lines += [
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
    ]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout(2))
        status = int(head.split(b" ", 2)[1])
        length = re.search(rb"Content-Length: (\d+)", head)
        body = await reader.readexactly(int(length.group(1))) if length else b""
    finally:
        writer.close()
    return status, body.decode()


class TestRequestIds(BridgeTestCase):
    @requires_network
    async def test_request_id_is_a_bounded_string_a_finite_number_or_null(self) -> None:
        """A _requestId over 128 characters, or not a string/number/null, is refused;
        the reply never echoes it, so a reply cannot be made large."""
        z = await self.start()
        ws = await self.client(z)
        echoed = ["x" * 128, 7, -2.5, 2**53 - 1, None]
        for value in echoed:
            with self.subTest(request_id=value):
                self.assertEqual(
                    await self.request(ws, {"event": "ping", "_requestId": value}),
                    {"event": "pong", "_requestId": value},
                )
        long_id = "The '_requestId' is longer than 128 characters."
        kind = "The '_requestId' must be a string, a number up to 2**53-1 in size, or null."
        refused = [("x" * 129, long_id), ({"a": 1}, kind), ([1], kind), (True, kind)]
        refused.append((2**53, kind))
        for number, (value, message) in enumerate(refused):
            with self.subTest(request_id=str(value)[:20]):
                self.assertEqual(
                    await self.request(ws, {"event": "ping", "_requestId": value}),
                    {"error": message, "code": "invalid_message", "_requestId": number},
                )

    @requires_network
    async def test_request_id_bound_is_configurable(self) -> None:
        """websocket.max_request_id sets the bound."""
        z = await self.start(websocket={"max_request_id": 4})
        ws = await self.client(z)
        self.assertEqual(
            await self.request(ws, {"event": "ping", "_requestId": "abcde"}),
            {
                "error": "The '_requestId' is longer than 4 characters.",
                "code": "invalid_message",
                "_requestId": 0,
            },
        )

    @requires_network
    async def test_echoed_text_is_bounded(self) -> None:
        """Fields that error messages quote have length limits; unknown events are cut."""
        z = await self.start()
        ws = await self.client(z)
        table = [
            (
                {"event": "dispatch", "zKey": "k" * 257},
                "invalid_message",
                "The 'zKey' field of dispatch is longer than 256 characters.",
            ),
            (
                {"event": "e" * 129},
                "invalid_message",
                "The 'event' field is longer than 128 characters.",
            ),
            (
                {"event": "e" * 100},
                "unknown_event",
                f"There is no event named {'e' * 64 + '...'!r}.",
            ),
        ]
        for number, (payload, code, message) in enumerate(table):
            with self.subTest(code=code):
                self.assertEqual(
                    await self.request(ws, payload),
                    {"error": message, "code": code, "_requestId": number},
                )


class TestStrictJson(BridgeTestCase):
    @requires_network
    async def test_non_finite_numbers_and_deep_nesting_are_invalid_json(self) -> None:
        """NaN, Infinity, overflowing numbers and deep nesting get invalid_json, not 1011."""
        z = await self.start()
        ws = await self.client(z)
        table = [
            (
                '{"event": "ping", "_requestId": NaN}',
                "The message holds NaN, which JSON does not allow.",
            ),
            (
                '{"event": "ping", "_requestId": Infinity}',
                "The message holds Infinity, which JSON does not allow.",
            ),
            (
                '{"event": "ping", "x": [-Infinity]}',
                "The message holds -Infinity, which JSON does not allow.",
            ),
            (
                '{"event": "ping", "_requestId": 1e999}',
                "The number '1e999' is too large for a JSON number.",
            ),
            ("[" * 100_000, "The message is nested too deeply."),
            ('{"a":' * 50_000 + "1" + "}" * 50_000, "The message is nested too deeply."),
        ]
        for number, (frame, message) in enumerate(table):
            with self.subTest(message=message):
                self.assertEqual(
                    await self.request_raw(ws, frame),
                    {"error": message, "code": "invalid_json", "_requestId": number},
                )
        await self.assertQuiet(ws)


class TestSizes(BridgeTestCase):
    @requires_network
    async def test_max_size_counts_bytes(self) -> None:
        """max_size counts UTF-8 bytes: 40 two-byte characters are 80 bytes, not 40."""
        z = await self.start(websocket={"max_size": 64})
        ws = await self.client(z)
        frame = json.dumps({"event": "ping", "p": "é" * 20}, ensure_ascii=False)
        self.assertLessEqual(len(frame), 64)
        size = len(frame.encode())
        self.assertGreater(size, 64)
        self.assertEqual(
            await self.request_raw(ws, frame),
            {
                "error": f"The message of {size} bytes exceeds the 64-byte limit.",
                "code": "too_large",
                "_requestId": 0,
            },
        )
        await self.assertClosed(ws, 1009, "Message too large.")

    @requires_network
    async def test_outbound_queue_is_bounded_in_bytes(self) -> None:
        """A client that stops reading is closed when its queue holds queue_bytes, long
        before queue_size frames."""
        z = await self.start(websocket={"queue_size": 10_000, "queue_bytes": 1_000_000})
        slow = await self.client(z, compression=None, max_queue=1)
        self.addCleanup(slow.transport.abort)
        slow.transport.pause_reading()
        client = next(iter(z.comm.clients))
        payload = {"event": "bulk", "data": "x" * 200_000}
        with self.assertLogs("zCLI.zBifrost", "WARNING") as logs:
            for _ in range(200):  # 40 MB: more than loopback's buffers hold
                z.comm.broadcast(payload)
                if client.overflowed:
                    break
            await self.wait_until(lambda: client not in z.comm.clients, units=10)
        match = re.fullmatch(
            r"WARNING:zCLI.zBifrost:closing client [0-9a-f]{32} \(anonymous\): "
            r"(\d+) frames \((\d+) bytes\) queued, limit reached",
            logs.output[0],
        )
        assert match is not None, logs.output
        frames, queued = int(match.group(1)), int(match.group(2))
        self.assertEqual(queued, frames * len(json.dumps(payload)))
        self.assertLessEqual(queued, 1_000_000)
        self.assertLess(frames, 10)


class TestPipelining(BridgeTestCase):
    @requires_network
    async def test_requests_in_one_read_are_answered_in_order(self) -> None:
        """16 requests arriving in one read, cached keys and others mixed, get their
        replies in order, each the exact text the full dispatch path writes."""
        z = await self.start()
        ws = await self.client(z, compression=None)
        requests: list[dict[str, object]] = []
        expected: list[dict[str, object]] = []
        for n in range(16):
            if n % 4 == 3:  # not a dispatch: answered through the event table
                requests.append({"event": "ping", "_requestId": n})
                expected.append({"event": "pong", "_requestId": n})
            elif n % 4 == 2:  # no _requestId: the connection numbers it (0, 1, 2, 3)
                requests.append({"event": "dispatch", "zKey": "Echo"})
                expected.append({"result": {"message": "echoed"}, "_requestId": n // 4})
            else:
                requests.append({"event": "dispatch", "zKey": "^Ping", "_requestId": f"r{n}"})
                expected.append({"result": {"message": "Pong!"}, "_requestId": f"r{n}"})
        ws.transport.write(b"".join(masked_text_frame(json.dumps(r)) for r in requests))
        replies = [await asyncio.wait_for(ws.recv(), timeout(2)) for _ in requests]
        self.assertEqual(replies, [self.written(e) for e in expected])

    @requires_network
    async def test_dispatch_of_a_cached_key_still_counts_against_the_rate(self) -> None:
        """A key answered from the cache takes a token like any request: the third of
        a burst of two is refused."""
        z = await self.start(websocket={"rate_limit": 0.001, "rate_burst": 2})
        ws = await self.client(z)
        for n in range(2):
            self.assertEqual(
                await self.request(ws, {"event": "dispatch", "zKey": "^Ping", "_requestId": n}),
                {"result": {"message": "Pong!"}, "_requestId": n},
            )
        self.assertEqual(
            await self.request(ws, {"event": "dispatch", "zKey": "^Ping", "_requestId": 2}),
            {
                "error": "Too many messages: the limit is 0.001 a second.",
                "code": "rate_limited",
                "_requestId": 2,
            },
        )


class TestCompression(BridgeTestCase):
    @requires_network
    async def test_deflate_is_negotiated_by_default(self) -> None:
        """A client offering permessage-deflate gets it unless compression is none."""
        for setting, negotiated in (({}, ["permessage-deflate"]), ({"compression": "none"}, [])):
            with self.subTest(setting=setting):
                z = await self.start(websocket=setting)
                ws = await self.client(z, compression="deflate")
                self.assertEqual([e.name for e in ws.protocol.extensions], negotiated)
                self.assertEqual(
                    await self.request(ws, {"event": "dispatch", "zKey": "^Ping"}),
                    {"result": {"message": "Pong!"}, "_requestId": 0},
                )

    @requires_network
    async def test_connection_info_goes_uncompressed(self) -> None:
        """With permessage-deflate negotiated, connection_info is sent uncompressed (RSV1
        clear), so an idle connection never uses its compressor; replies are compressed."""
        z = await self.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", z.comm.port)
        self.addCleanup(writer.close)
        writer.write(
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout(2))
        self.assertIn(b"Sec-WebSocket-Extensions: permessage-deflate", head)

        async def frame() -> tuple[int, bytes]:
            first, length = await asyncio.wait_for(reader.readexactly(2), timeout(2))
            if length == 126:
                length = int.from_bytes(await reader.readexactly(2), "big")
            return first, await reader.readexactly(length)

        first, payload = await frame()
        self.assertEqual(first, 0x81)  # FIN, text, RSV1 clear: not compressed
        self.assertEqual(json.loads(payload)["event"], "connection_info")
        writer.write(masked_text_frame('{"event": "ping"}'))
        first, _payload = await frame()
        self.assertEqual(first, 0xC1)  # FIN, RSV1 (compressed), text


class TestConnectionLimits(AuthTestCase):
    @requires_network
    async def test_connections_signing_in_count_against_max_connections(self) -> None:
        """Handshakes still waiting to sign in count: the third of three is refused."""
        z = await self.start_auth(websocket={"max_connections": 2})
        first, second = await self.connect(z), await self.connect(z)  # neither signs in
        with (
            self.assertLogs("zCLI.zBifrost", "WARNING"),
            self.assertRaises(InvalidStatus) as caught,
        ):
            await self.connect(z)
        self.assertEqual(caught.exception.response.status_code, 503)
        await first.close()
        await second.close()
        await self.wait_until(lambda: not z.comm._admitted)
        ws = await self.connect(z)
        await ws.send(json.dumps({"event": "login", "username": "ada", "password": "s3cret"}))
        self.assertEqual((await self.recv(ws))["event"], "login")

    @requires_network
    async def test_sign_in_wait_is_bounded(self) -> None:
        """A connection that never signs in is refused after auth_timeout, with a code."""
        z = await self.start_auth(websocket={"auth_timeout": 0.3})
        ws = await self.connect(z)
        started = time.monotonic()
        self.assertEqual(
            await self.recv(ws),
            {
                "error": "Authentication required: send a token or log in first.",
                "code": "unauthorized",
                "_requestId": None,
            },
        )
        await self.assertClosed(ws, 1008, "Authentication required: send a token or log in first.")
        self.assertLess(time.monotonic() - started, timeout(1))

    @requires_network
    async def test_shutdown_closes_silent_clients_together(self) -> None:
        """Five clients that answer nothing: stop takes shutdown_timeout, not 5 x ping_timeout."""
        z = await self.start(websocket={"ping_timeout": 3, "shutdown_timeout": 0.5})
        silent = [await self.client(z) for _ in range(5)]
        for ws in silent:
            ws.transport.pause_reading()  # never reads the close frame, never answers it
            self.addCleanup(ws.transport.abort)
        started = time.monotonic()
        await z.comm.stop()
        took = time.monotonic() - started
        record_metric("shutdown_5_silent", took * 1000, "ms")
        self.assertLess(took, 1.5)
        self.assertEqual(z.comm._sockets, set())

    @requires_network
    async def test_shutdown_cuts_half_open_handshakes(self) -> None:
        """A TCP connection that never finishes its handshake does not delay stop."""
        z = await self.start(websocket={"handshake_timeout": 30, "shutdown_timeout": 0.5})
        reader, writer = await asyncio.open_connection("127.0.0.1", z.comm.port)
        self.addCleanup(writer.close)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")  # and nothing more
        await self.wait_until(lambda: len(z.comm._sockets) == 1)
        started = time.monotonic()
        await z.comm.stop()
        self.assertLess(time.monotonic() - started, 1.5)
        await self.assertDropped(reader)

    @requires_network
    async def test_half_open_handshake_times_out(self) -> None:
        """handshake_timeout closes a connection that never completes its handshake."""
        z = await self.start(websocket={"handshake_timeout": 0.3})
        reader, writer = await asyncio.open_connection("127.0.0.1", z.comm.port)
        self.addCleanup(writer.close)
        writer.write(b"GET / HTTP/1.1\r\n")
        await self.assertDropped(reader)
        await self.wait_until(lambda: not z.comm._sockets)


class TestHandshakeHeaders(BridgeTestCase):
    @requires_network
    async def test_two_origin_headers_get_403(self) -> None:
        """Two Origin headers are refused with 403, not a 500."""
        z = await self.start()
        headers = [("Host", "127.0.0.1"), ("Origin", "http://127.0.0.1"), ("Origin", "http://x")]
        with self.assertLogs("zCLI.zBifrost", "WARNING"):
            self.assertEqual(
                await raw_handshake(z.comm.port, headers),
                (403, "Only one Origin header is allowed.\n"),
            )

    @requires_network
    async def test_dns_rebinding_is_refused(self) -> None:
        """A page of another name that resolves here (Host and Origin agree) gets 403."""
        z = await self.start()
        port = z.comm.port
        headers = [("Host", f"rebind.example:{port}"), ("Origin", f"http://rebind.example:{port}")]
        with self.assertLogs("zCLI.zBifrost", "WARNING") as logs:
            self.assertEqual(await raw_handshake(port, headers), (403, "Origin not allowed.\n"))
        self.assertEqual(
            logs.output,
            [
                "WARNING:zCLI.zBifrost:refused a handshake: origin "
                f"'http://rebind.example:{port}' (1 since the last such line)"
            ],
        )

    @requires_network
    async def test_configured_host_name_is_accepted(self) -> None:
        """Bound to a named host, pages of that name pass and loopback names do not."""
        z = await self.start(websocket={"host": "127.0.0.1", "allowed_origins": []})
        policy = z.comm._origins
        self.assertTrue(policy.allows("http://localhost:3000"))
        from zCLI.bridge.origins import OriginPolicy

        named = OriginPolicy((), ("app.internal", "app.internal"))
        self.assertEqual(
            [named.allows(o) for o in ("http://app.internal:1", "http://localhost", "x")],
            [True, False, False],
        )

    @requires_network
    async def test_server_header_names_no_python(self) -> None:
        """The handshake's Server header is zBifrost's, with no Python version."""
        z = await self.start()
        ws = await self.connect(z)
        assert ws.response is not None
        self.assertEqual(ws.response.headers["Server"], f"zBifrost/{__version__}")

    @requires_network
    async def test_two_authorization_headers_are_refused(self) -> None:
        """Two Authorization headers close 1008 instead of failing inside the server."""
        z = await self.start(websocket={"require_auth": True})
        ws = await self.connect(
            z, additional_headers=[("Authorization", "Bearer a"), ("Authorization", "Bearer b")]
        )
        self.assertEqual(
            await self.recv(ws),
            {
                "error": "Only one Authorization header is allowed.",
                "code": "unauthorized",
                "_requestId": None,
            },
        )
        await self.assertClosed(ws, 1008, "Only one Authorization header is allowed.")


class TestTokensOnTheSocket(AuthTestCase):
    @requires_network
    async def test_revoking_a_token_closes_its_connections(self) -> None:
        """A token revoked elsewhere closes the connections that carry it, and only those."""
        z = await self.start_auth()
        first = z.auth.login("ada", "s3cret")
        second = z.auth.login("ada", "s3cret")
        doomed = await self.client(z, path=f"/?token={first.token}")
        spared = await self.client(z, path=f"/?token={second.token}")
        await asyncio.to_thread(z.auth.revoke, first)  # as zServer's /api/logout does
        await self.assertClosed(doomed, 1008, "The token has been revoked.")
        await self.assertQuiet(spared)

    @requires_network
    async def test_failed_sign_ins_are_throttled_on_the_socket(self) -> None:
        """Past max_failed_logins, login answers rate_limited, even with the right password,
        and sign-in by first message is refused the same way."""
        z = await self.start_auth(auth={"max_failed_logins": 2})
        ws = await self.client(z, path=f"/?token={z.auth.login('ada', 's3cret').token}")
        wrong = {"event": "login", "username": "ada", "password": "nope"}
        for number in range(2):
            self.assertEqual(
                await self.request(ws, wrong),
                {
                    "error": "Unknown user or wrong password.",
                    "code": "unauthorized",
                    "_requestId": number,
                },
            )
        right = {"event": "login", "username": "ada", "password": "s3cret"}
        reply = await self.request(ws, right)
        self.assertEqual((reply["code"], reply["_requestId"]), ("rate_limited", 2))
        self.assertRegex(
            reply["error"],
            r"^Too many failed sign-ins for this account; try again in \d+ seconds\.$",
        )
        first = await self.connect(z)
        await first.send(json.dumps(right))
        refused = await self.recv(first)
        self.assertEqual((refused["code"], refused["_requestId"]), ("rate_limited", None))
        await self.assertClosed(first, 1008, refused["error"])

    @requires_network
    async def test_lone_surrogate_token_is_malformed(self) -> None:
        """A token holding a lone surrogate is a malformed token (1008), not a 1011."""
        z = await self.start_auth()
        ws = await self.connect(z)
        await ws.send('{"event": "auth", "token": "\\ud800"}')
        self.assertEqual(
            await self.recv(ws),
            {"error": "The token is malformed.", "code": "unauthorized", "_requestId": None},
        )
        await self.assertClosed(ws, 1008, "The token is malformed.")


PLUGIN_ONLY = """
from zCLI import Plugin

def hello(ctx, data):
    return {"hello": data.get("name", "world")}

PLUGIN = Plugin("solo", events={"solo.hello": hello})
"""


class TestWithoutZui(BridgeTestCase):
    @requires_network
    async def test_a_bridge_of_plugin_events_only(self) -> None:
        """Without a zVaFile the bridge serves events; dispatch and menu answer no_zui."""
        self.write("plugins/solo.py", PLUGIN_ONLY)
        z = await self.start(zVaFile=None)
        ws = await self.connect(z)
        info = await self.recv(ws)
        info["data"]["session"].pop("id")
        self.assertEqual(info["data"]["session"], {"block": None, "zVaFile": None})
        no_zui = "This server has no zUI file; only its events are served."
        self.assertEqual(
            await self.request(ws, {"event": "solo.hello", "data": {"name": "Ada"}}),
            {"result": {"hello": "Ada"}, "_requestId": 0},
        )
        for number, event in enumerate(({"event": "dispatch", "zKey": "^Ping"}, {"event": "menu"})):
            self.assertEqual(
                await self.request(ws, event),
                {"error": no_zui, "code": "no_zui", "_requestId": number + 1},
            )
        await self.assertQuiet(ws)


class TestStartUp(BridgeTestCase):
    def test_unusable_state_folder_stops_serve_with_one_line(self) -> None:
        """zcli serve exits 2 with one line when the state folder cannot be made."""
        (self.workspace / ".zcli").write_text("a file where the folder should be")
        done = run_zcli("serve", str(self.workspace), "--ws-port", "0", "--http-port", "0")
        self.assertEqual(done.returncode, 2, done.stderr)
        self.assertEqual(len(done.stderr.splitlines()), 1, done.stderr)
        self.assertTrue(done.stderr.startswith("zcli: error: "), done.stderr)
        self.assertIn(str(self.workspace / ".zcli"), done.stderr)
        self.assertEqual(done.stdout, "")

    def test_publishing_the_app_folder_stops_serve_before_it_listens(self) -> None:
        """serve_path '.' (the app itself) stops zcli serve with one line, printing no URL."""
        self.write("zcli.yaml", "http_server:\n  serve_path: .\n")
        done = run_zcli("serve", str(self.workspace), "--ws-port", "0", "--http-port", "0")
        self.assertEqual((done.returncode, done.stdout), (2, ""), done.stderr)
        self.assertEqual(len(done.stderr.splitlines()), 1, done.stderr)
        self.assertTrue(done.stderr.startswith("zcli: error: "), done.stderr)
        self.assertIn("is the workspace", done.stderr)

    async def test_config_of_the_new_bounds(self) -> None:
        """Every new bound is a validated config key."""
        z = self.make(
            websocket={
                "queue_bytes": 10,
                "max_request_id": 3,
                "handshake_timeout": 1.5,
                "auth_timeout": 2,
                "shutdown_timeout": 0.25,
            }
        )
        ws = z.config.websocket
        self.assertEqual(
            (ws.queue_bytes, ws.max_request_id, ws.handshake_timeout, ws.auth_timeout),
            (10, 3, 1.5, 2.0),
        )
        self.assertEqual(ws.shutdown_timeout, 0.25)
