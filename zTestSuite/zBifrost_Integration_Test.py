"""zBifrost end to end: real servers on port 0, real WebSocket clients, exact shapes.

The first nine classes are the 25 tests of the seed report (004); the rest cover every
error code, isolation between clients, sessions, dialogs, zAuth and many clients.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time
from typing import Any

import websockets
from websockets.exceptions import InvalidStatus

from zCLI import ConfigError, __version__, zCLI
from zCLI.bridge import PortInUseError, zBifrost
from zTestSuite import record_metric, record_samples, requires_network, timeout
from zTestSuite.bridge import (
    FEATURES,
    BridgeTestCase,
    expected_info,
    raw_websocket,
    without_session_id,
)


class TestzBifrostInitialization(BridgeTestCase):
    async def test_comm_is_a_bridge_configured_from_zspark(self) -> None:
        """z.comm is the zBifrost bridge, configured from zSpark."""
        z = self.make(websocket={"host": "127.0.0.1", "port": 0, "max_connections": 7})
        self.assertIsInstance(z.comm, zBifrost)
        self.assertEqual((z.comm.config.port, z.comm.config.max_connections), (0, 7))
        self.assertFalse(z.comm.running)

    async def test_defaults(self) -> None:
        """Without websocket settings the bridge uses 127.0.0.1:56891 and requires auth."""
        z = zCLI({"zWorkspace": str(self.workspace), "zVaFile": "@.zUI.app"})
        config = z.comm.config
        self.assertEqual(
            (config.host, config.port, config.require_auth), ("127.0.0.1", 56891, True)
        )

    async def test_terminal_mode_builds_no_bridge(self) -> None:
        """Building zCLI creates no bridge, auth store or secret until they are used."""
        z = self.make()
        self.assertEqual((z._comm, z._auth, z._server), (None, None, None))
        self.assertEqual(sorted(p.name for p in self.workspace.iterdir()), ["zUI.app.yaml"])

    @requires_network
    async def test_plugin_events_are_features(self) -> None:
        """A plugin's events and name appear in connection_info features."""
        self.write(
            "plugins/shout.py",
            """
            from zCLI import Plugin
            PLUGIN = Plugin("shout", events={"shout.all": lambda ctx, data: None})
        """,
        )
        z = await self.start()
        ws = await self.connect(z)
        info = await self.recv(ws)
        self.assertEqual(
            info["data"]["features"], sorted([*FEATURES, "shout.all"]) + ["plugin:shout"]
        )


class TestzBifrostLifecycle(BridgeTestCase):
    @requires_network
    async def test_ready_means_listening(self) -> None:
        """When socket_ready is set, a client connects at once."""
        z = await self.start()
        ws = await self.connect(z)
        self.assertEqual(without_session_id(await self.recv(ws)), expected_info())

    @requires_network
    async def test_cancel_stops_gracefully_and_frees_the_port(self) -> None:
        """Cancelling start_websocket ends it normally and releases the port."""
        z = self.make()
        ready = asyncio.Event()
        task = asyncio.create_task(z.comm.start_websocket(ready, walker=z.walker))
        await asyncio.wait_for(ready.wait(), timeout(2))
        port = z.comm.port
        task.cancel()
        self.assertIsNone(await task)
        self.assertFalse(z.comm.running)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", port))

    @requires_network
    async def test_async_with(self) -> None:
        """`async with z.comm` serves inside the block and stops after it."""
        z = self.make()
        async with z.comm as bridge:
            async with websockets.connect(bridge.url) as ws:
                self.assertEqual((await self.recv(ws))["event"], "connection_info")
        self.assertFalse(z.comm.running)


class TestzBifrostPortConflicts(BridgeTestCase):
    @requires_network
    async def test_port_in_use_is_named(self) -> None:
        """A taken port raises PortInUseError naming host and port."""
        with socket.socket() as holder:
            holder.bind(("127.0.0.1", 0))
            holder.listen()
            port = holder.getsockname()[1]
            z = self.make(websocket={"port": port})
            with self.assertRaises(PortInUseError) as caught:
                await z.comm.start()
        self.assertEqual(str(caught.exception), f"Port {port} on 127.0.0.1 is already in use.")

    @requires_network
    async def test_start_websocket_raises_instead_of_hanging(self) -> None:
        """start_websocket on a taken port raises and never sets socket_ready."""
        first = await self.start()
        second = self.make(websocket={"port": first.comm.port})
        ready = asyncio.Event()
        with self.assertRaises(PortInUseError):
            await asyncio.wait_for(second.comm.start_websocket(ready), timeout(2))
        self.assertFalse(ready.is_set())


class TestzBifrostCoexistence(BridgeTestCase):
    async def _health(self, z: zCLI) -> dict:
        def get() -> dict:
            import urllib.request

            with urllib.request.urlopen(f"{z.server.url}health", timeout=timeout(2)) as reply:
                return json.loads(reply.read())

        return await asyncio.to_thread(get)

    @requires_network
    async def test_both_servers_in_one_process(self) -> None:
        """zBifrost and zServer serve on two ports of one process."""
        z = await self.start(http_server={"enabled": True, "port": 0})
        z.server.start()
        self.addCleanup(z.server.stop)
        self.assertNotEqual(z.comm.port, z.server.port)
        ws = await self.client(z)
        self.assertEqual(
            await self.request(ws, {"event": "dispatch", "zKey": "^Ping"}),
            {"result": {"message": "Pong!"}, "_requestId": 0},
        )
        self.assertEqual(await self._health(z), {"status": "ok", "version": __version__})

    @requires_network
    async def test_start_and_stop_in_any_order(self) -> None:
        """zServer may start first and stop last, or the other way round."""
        z = self.make(http_server={"enabled": True, "port": 0})
        z.server.start()
        await z.comm.start()
        z.server.stop()
        async with websockets.connect(z.comm.url) as ws:
            self.assertEqual((await self.recv(ws))["event"], "connection_info")
        z.server.start()
        await z.comm.stop()
        self.assertEqual(await self._health(z), {"status": "ok", "version": __version__})
        z.server.stop()

    async def test_same_port_is_a_config_error(self) -> None:
        """One port for both servers is refused before anything starts."""
        with self.assertRaises(ConfigError) as caught:
            self.make(websocket={"port": 9100}, http_server={"enabled": True, "port": 9100})
        self.assertEqual(
            caught.exception.problems,
            [
                "websocket.port and http_server.port: both are 9100 on 127.0.0.1; "
                "the two servers need different ports"
            ],
        )


class TestzBifrostConfiguration(BridgeTestCase):
    async def test_environment_sets_the_port(self) -> None:
        """ZCLI_WEBSOCKET_PORT reaches the bridge when zSpark does not set it."""
        import os

        os.environ["ZCLI_WEBSOCKET_PORT"] = "45678"
        self.addCleanup(os.environ.pop, "ZCLI_WEBSOCKET_PORT")
        z = zCLI({"zWorkspace": str(self.workspace), "zVaFile": "@.zUI.app"})
        self.assertEqual(z.comm.config.port, 45678)

    @requires_network
    async def test_max_connections(self) -> None:
        """Past max_connections the handshake is refused with 503."""
        z = await self.start(websocket={"max_connections": 2})
        await self.client(z)
        await self.client(z)
        with (
            self.assertLogs("zCLI.zBifrost", "WARNING") as logs,
            self.assertRaises(InvalidStatus) as caught,
        ):
            await self.connect(z)
        self.assertEqual(caught.exception.response.status_code, 503)
        self.assertEqual(
            logs.output,
            [
                "WARNING:zCLI.zBifrost:refused a handshake: 2 connections, the limit "
                "(1 since the last such line)"
            ],
        )

    @requires_network
    async def test_max_size(self) -> None:
        """A message over max_size gets too_large, then close 1009."""
        z = await self.start(websocket={"max_size": 100})
        ws = await self.client(z)
        frame = json.dumps({"event": "ping", "pad": "x" * 120})
        reply = await self.request_raw(ws, frame)
        self.assertEqual(
            reply,
            {
                "error": f"The message of {len(frame)} bytes exceeds the 100-byte limit.",
                "code": "too_large",
                "_requestId": 0,
            },
        )
        await self.assertClosed(ws, 1009, "Message too large.")

    @requires_network
    async def test_far_over_max_size(self) -> None:
        """Beyond twice max_size the frame is refused while reading: close 1009 at once."""
        z = await self.start(websocket={"max_size": 100})
        ws = await self.client(z)
        await ws.send("x" * 201)
        await self.assertClosed(ws, 1009, "frame exceeds limit of 200 bytes")


class TestKeepAlive(BridgeTestCase):
    @requires_network
    async def test_silent_client_is_closed(self) -> None:
        """A client that never answers keep-alive pings is closed after the timeout."""
        z = await self.start(websocket={"ping_interval": 0.2, "ping_timeout": 0.2})
        reader, writer = await raw_websocket(z.comm.port)
        self.addCleanup(writer.close)
        await self.wait_until(lambda: len(z.comm.clients) == 1)
        await self.wait_until(lambda: not z.comm.clients, units=3)  # no pong: closed
        rest = await asyncio.wait_for(reader.read(), timeout(3))  # server ends the stream
        self.assertIn(b"keepalive ping timeout", rest)


class TestRealWebSocketConnections(BridgeTestCase):
    @requires_network
    async def test_connect_and_receive_connectionexpected_info(self) -> None:
        """The first frame is connection_info with version, features, auth and session."""
        z = await self.start()
        ws = await self.connect(z)
        info = await self.recv(ws)
        self.assertRegex(info["data"]["session"]["id"], r"^[0-9a-f]{32}$")
        self.assertEqual(without_session_id(info), expected_info())

    @requires_network
    async def test_connect_disconnect_cycle(self) -> None:
        """A client that leaves is forgotten by the server."""
        z = await self.start()
        ws = await self.client(z)
        self.assertEqual(len(z.comm.clients), 1)
        await ws.close()
        await self.wait_until(lambda: not z.comm.clients)

    @requires_network
    async def test_sequential_reconnects(self) -> None:
        """Five connections in a row each get a fresh session numbered from 0."""
        z = await self.start()
        ids = set()
        for _ in range(5):
            async with websockets.connect(z.comm.url) as ws:
                ids.add((await self.recv(ws))["data"]["session"]["id"])
                self.assertEqual(
                    await self.request(ws, {"event": "dispatch", "zKey": "^Ping"}),
                    {"result": {"message": "Pong!"}, "_requestId": 0},
                )
        self.assertEqual(len(ids), 5)


class TestWebSocketMessageFlow(BridgeTestCase):
    @requires_network
    async def test_dispatch_simple_command(self) -> None:
        """^Ping answers exactly {"result": {"message": "Pong!"}, "_requestId": 0}."""
        z = await self.start()
        ws = await self.client(z)
        self.assertEqual(
            await self.request(ws, {"event": "dispatch", "zKey": "^Ping"}),
            {"result": {"message": "Pong!"}, "_requestId": 0},
        )

    @requires_network
    async def test_dispatch_resolves_keys_from_the_zui(self) -> None:
        """^Echo finds the bare key Echo; request ids are echoed verbatim or numbered."""
        z = await self.start()
        ws = await self.client(z)
        self.assertEqual(
            await self.request(ws, {"event": "dispatch", "zKey": "^Echo", "_requestId": "mine-1"}),
            {"result": {"message": "echoed"}, "_requestId": "mine-1"},
        )
        self.assertEqual(
            await self.request(ws, {"event": "dispatch", "zKey": "Echo"}),
            {"result": {"message": "echoed"}, "_requestId": 0},
        )
        self.assertEqual(
            await self.request(ws, {"event": "dispatch", "zKey": "^Ping"}),
            {"result": {"message": "Pong!"}, "_requestId": 1},
        )

    @requires_network
    async def test_invalid_message_format(self) -> None:
        """A non-JSON frame gets invalid_json and the connection keeps working."""
        z = await self.start()
        ws = await self.client(z)
        await ws.send("{not json")
        self.assertEqual(
            await self.recv(ws),
            {"error": "The message is not valid JSON.", "code": "invalid_json", "_requestId": 0},
        )
        self.assertEqual(
            await self.request(ws, {"event": "dispatch", "zKey": "^Ping"}),
            {"result": {"message": "Pong!"}, "_requestId": 1},
        )


class TestConcurrentClients(BridgeTestCase):
    @requires_network
    async def test_multiple_clients_connect(self) -> None:
        """Three simultaneous clients each get their own connection_info."""
        z = await self.start()
        sockets = await asyncio.gather(*(self.connect(z) for _ in range(3)))
        infos = [await self.recv(ws) for ws in sockets]
        self.assertEqual(len({info["data"]["session"]["id"] for info in infos}), 3)
        self.assertEqual(len(z.comm.clients), 3)

    @requires_network
    async def test_clients_send_commands_independently(self) -> None:
        """Each client gets only its own replies, numbered on its own connection."""
        z = await self.start()
        one, two = await self.client(z), await self.client(z)
        await one.send(json.dumps({"event": "dispatch", "zKey": "^Ping"}))
        await two.send(json.dumps({"event": "dispatch", "zKey": "Echo"}))
        self.assertEqual(await self.recv(one), {"result": {"message": "Pong!"}, "_requestId": 0})
        self.assertEqual(await self.recv(two), {"result": {"message": "echoed"}, "_requestId": 0})
        await self.assertQuiet(one)
        await self.assertQuiet(two)


class TestWebSocketAuthentication(BridgeTestCase):
    @requires_network
    async def test_connect_with_auth_disabled(self) -> None:
        """With require_auth false the client is told, truthfully, it is anonymous."""
        z = await self.start()
        ws = await self.connect(z)
        self.assertEqual(
            (await self.recv(ws))["data"]["auth"],
            {"authenticated": False, "user": "anonymous", "role": "guest"},
        )

    @requires_network
    async def test_auth_info_in_connection(self) -> None:
        """With a valid token connection_info names the user and role."""
        z = await self.start(websocket={"require_auth": True})
        z.auth.add_user("ada", "s3cret", "admin")
        token = z.auth.login("ada", "s3cret").token
        ws = await self.connect(z, path=f"/?token={token}")
        self.assertEqual(
            without_session_id(await self.recv(ws)),
            expected_info("ada", "admin", authenticated=True),
        )


APP_ZUI = """
Main:
  ~Root*: [^Ping, Settings, ^Greet, ^Work, ^Boom, ^Refuse, Away]
  ^Ping: Pong!
  Settings:
    Menu*: [^Theme]
    ^Theme: dark
  ^Greet:
    zDialog:
      fields: [name, {name: pin, type: password, prompt: PIN}]
      onSubmit: {zFunc: "&app.greet(zConv.name)"}
  ^Work: {zFunc: "&app.work()"}
  ^Boom: {zFunc: "&app.boom()"}
  ^Refuse: {zFunc: "&app.refuse()"}
  Away: {zLink: "@.zUI.other.Other"}
"""

APP_PLUGIN = """
import threading
from zCLI import ActionFailed, Plugin

def greet(name):
    return f"Hello, {name}!"

def work(*, ctx):
    ctx.display.info(f"working in {threading.current_thread().name}")
    ctx.display.progress(1, 2)
    return {"done": True}

def boom():
    raise KeyError("secret detail")

def refuse():
    raise ActionFailed("Not now.")

def shout(ctx, data):
    sent = ctx.bridge.broadcast({"event": "app.shouted", "text": data["text"],
                                 "by": ctx.client.identity.user})
    return {"sent": sent.local}

def note_then_shout(ctx, data):
    ctx.client.send({"event": "app.noted", "text": data["text"]})
    sent = ctx.bridge.broadcast({"event": "app.shouted", "text": data["text"],
                                 "by": ctx.client.identity.user})
    return {"sent": sent.local}

async def whoami(ctx, data):
    return {"user": ctx.client.identity.user, "block": ctx.client.session.location.block}

PLUGIN = Plugin("app", functions={"greet": greet, "work": work, "boom": boom,
                                  "refuse": refuse},
                events={"app.shout": shout, "app.whoami": whoami,
                        "app.note_then_shout": note_then_shout})
"""


class AppCase(BridgeTestCase):
    zui = APP_ZUI

    async def asyncSetUp(self) -> None:
        await super().asyncSetUp()
        self.write("plugins/app.py", APP_PLUGIN)
        self.write(
            "zUI.other.yaml",
            """
            Other:
              Note: {zDisplay: {event: text, content: elsewhere}}
              Menu*: [^Here]
              ^Here: over here
        """,
        )


class TestErrorCodes(AppCase):
    @requires_network
    async def test_every_error_code(self) -> None:
        """Each bad request gets its code and sentence, to the sender only."""
        z = await self.start()
        ws, other = await self.client(z), await self.client(z)
        table = [
            ("{oops", "invalid_json", "The message is not valid JSON."),
            ("[1, 2]", "invalid_message", "The message must be a JSON object."),
            (b"\x00\x01", "invalid_message", "Binary frames are not accepted; send JSON text."),
            ('{"zKey": "^Ping"}', "missing_field", "The message needs an 'event' field."),
            ('{"event": 5}', "invalid_message", "The 'event' field must be a string."),
            ('{"event": "dispatch"}', "missing_field", "The dispatch event needs a 'zKey' field."),
            (
                '{"event": "dispatch", "zKey": 1}',
                "invalid_message",
                "The 'zKey' field of dispatch must be a string.",
            ),
            ('{"event": "teleport"}', "unknown_event", "There is no event named 'teleport'."),
            (
                '{"event": "dispatch", "zKey": "^Nope"}',
                "unknown_key",
                "Block 'Main' of zUI.app.yaml has no key named '^Nope'.",
            ),
            (
                '{"event": "dispatch", "zKey": "^Boom"}',
                "internal",
                "app.boom failed with an internal error.",
            ),
            ('{"event": "dispatch", "zKey": "^Refuse"}', "action_failed", "Not now."),
            ('{"event": "logout"}', "unauthorized", "This connection is not signed in."),
            (
                '{"event": "login", "username": "x", "password": "y"}',
                "unauthorized",
                "Unknown user or wrong password.",
            ),
            (
                '{"event": "input_response", "requestId": "input-9", "value": "x"}',
                "invalid_message",
                "No input request 'input-9' is waiting.",
            ),
            (
                '{"event": "dispatch", "zKey": "zBack"}',
                "no_back",
                "There is no previous block to go back to.",
            ),
        ]
        for number, (frame, code, message) in enumerate(table):
            with self.subTest(code=code, frame=frame):
                if code == "internal":
                    with self.assertLogs("zCLI.zFunc", "ERROR"):
                        reply = await self.request_raw(ws, frame)
                else:
                    reply = await self.request_raw(ws, frame)
                self.assertEqual(reply, {"error": message, "code": code, "_requestId": number})
        await self.assertQuiet(other)  # nothing of it reached the other client
        self.assertEqual(
            await self.request(ws, {"event": "dispatch", "zKey": "^Ping"}),
            {"result": {"message": "Pong!"}, "_requestId": len(table)},
        )

    @requires_network
    async def test_rate_limited(self) -> None:
        """Past the burst, messages are refused with rate_limited and not run."""
        z = await self.start(websocket={"rate_limit": 0.001, "rate_burst": 2})
        ws = await self.client(z)
        for request_id in (0, 1):
            self.assertEqual(
                await self.request(ws, {"event": "dispatch", "zKey": "^Ping"}),
                {"result": {"message": "Pong!"}, "_requestId": request_id},
            )
        self.assertEqual(
            await self.request(ws, {"event": "dispatch", "zKey": "^Ping"}),
            {
                "error": "Too many messages: the limit is 0.001 a second.",
                "code": "rate_limited",
                "_requestId": 2,
            },
        )


class TestSessionsAndFlows(AppCase):
    @requires_network
    async def test_sessions_are_per_connection(self) -> None:
        """A submenu opened by one client leaves the other in Main."""
        z = await self.start()
        one, two = await self.client(z), await self.client(z)
        self.assertEqual(
            await self.request(one, {"event": "dispatch", "zKey": "Settings"}),
            {
                "result": {
                    "block": "Main.Settings",
                    "menu": {
                        "block": "Main.Settings",
                        "trail": ["Main", "Settings"],
                        "options": [
                            {"key": "^Theme", "label": "Theme"},
                            {"key": "zBack", "label": "zBack"},
                            {"key": "stop", "label": "stop"},
                        ],
                    },
                },
                "_requestId": 0,
            },
        )
        self.assertEqual(
            await self.request(one, {"event": "dispatch", "zKey": "^Theme"}),
            {"result": {"message": "dark"}, "_requestId": 1},
        )
        self.assertEqual(
            (await self.request(two, {"event": "dispatch", "zKey": "^Theme"}))["code"],
            "unknown_key",
        )
        self.assertEqual((await self.request(two, {"event": "menu"}))["result"]["block"], "Main")
        back = await self.request(one, {"event": "dispatch", "zKey": "zBack"})
        self.assertEqual((back["result"]["block"], back["_requestId"]), ("Main", 2))

    @requires_network
    async def test_zlink_over_the_socket(self) -> None:
        """A zLink moves the session to another file; its entry keys display first."""
        z = await self.start()
        ws = await self.client(z)
        await ws.send(json.dumps({"event": "dispatch", "zKey": "Away"}))
        self.assertEqual(
            await self.recv(ws),
            {
                "event": "display",
                "display_event": "text",
                "data": {"content": "elsewhere"},
                "_requestId": 0,
            },
        )
        reply = await self.recv(ws)
        self.assertEqual(reply["result"]["block"], "Other")
        self.assertEqual(reply["result"]["menu"]["trail"], ["Main", "Other"])
        self.assertEqual(
            await self.request(ws, {"event": "dispatch", "zKey": "^Here"}),
            {"result": {"message": "over here"}, "_requestId": 1},
        )

    @requires_network
    async def test_constant_replies_follow_the_client_where_it_goes(self) -> None:
        """A key that only says a message is answered for the block the client is in:
        after a zLink the old block's key is unknown and the new one's answers, and
        back again the old one answers again; another client's place is its own."""
        z = await self.start()
        ws, stays = await self.client(z), await self.client(z)
        ping = {"event": "dispatch", "zKey": "^Ping", "_requestId": "p"}
        pong = {"result": {"message": "Pong!"}, "_requestId": "p"}
        self.assertEqual(await self.request(ws, ping), pong)
        await ws.send(json.dumps({"event": "dispatch", "zKey": "Away", "_requestId": "a"}))
        await self.recv(ws)  # the entry key's display
        self.assertEqual((await self.recv(ws))["result"]["block"], "Other")
        self.assertEqual(
            await self.request(ws, ping),
            {"error": "Block 'Other' of zUI.other.yaml has no key named '^Ping'.",
             "code": "unknown_key", "_requestId": "p"},
        )  # fmt: skip
        self.assertEqual(await self.request(stays, ping), pong)
        here = {"event": "dispatch", "zKey": "^Here", "_requestId": "h"}
        self.assertEqual(
            await self.request(ws, here), {"result": {"message": "over here"}, "_requestId": "h"}
        )
        back = await self.request(ws, {"event": "dispatch", "zKey": "zBack", "_requestId": "b"})
        self.assertEqual(back["result"]["block"], "Main")
        self.assertEqual(await self.request(ws, ping), pong)

    @requires_network
    async def test_dialog_over_the_socket(self) -> None:
        """zDialog asks with input_request and continues on input_response."""
        z = await self.start()
        ws = await self.client(z)
        await ws.send(json.dumps({"event": "dispatch", "zKey": "^Greet", "_requestId": "g"}))
        ask = await self.recv(ws)
        self.assertEqual(
            ask,
            {
                "event": "input_request",
                "requestId": "input-1",
                "field": "name",
                "prompt": "name",
                "type": "string",
                "_requestId": "g",
            },
        )
        await ws.send(
            json.dumps({"event": "input_response", "requestId": "input-1", "value": "Ada"})
        )
        self.assertEqual(
            await self.recv(ws),
            {
                "event": "input_request",
                "requestId": "input-2",
                "field": "pin",
                "prompt": "PIN",
                "type": "password",
                "_requestId": "g",
            },
        )
        await ws.send(
            json.dumps({"event": "input_response", "requestId": "input-2", "value": "1234"})
        )
        self.assertEqual(await self.recv(ws), {"result": "Hello, Ada!", "_requestId": "g"})

    @requires_network
    async def test_dialog_cancelled(self) -> None:
        """A null value cancels the dialog with input_closed."""
        z = await self.start()
        ws = await self.client(z)
        await ws.send(json.dumps({"event": "dispatch", "zKey": "^Greet"}))
        ask = await self.recv(ws)
        await ws.send(
            json.dumps({"event": "input_response", "requestId": ask["requestId"], "value": None})
        )
        self.assertEqual(
            await self.recv(ws),
            {"error": "The dialog was cancelled.", "code": "input_closed", "_requestId": 0},
        )

    @requires_network
    async def test_display_from_a_worker_thread_precedes_the_result(self) -> None:
        """A sync function's display events reach the requester before its result."""
        z = await self.start()
        ws = await self.client(z)
        await ws.send(json.dumps({"event": "dispatch", "zKey": "^Work"}))
        first, second, third = [await self.recv(ws) for _ in range(3)]
        self.assertEqual(first["display_event"], "info")
        executor = "uvloop" if self.fast else "asyncio"  # the loop's default executor
        self.assertRegex(first["data"]["content"], rf"^working in {executor}_\d+$")
        self.assertEqual(
            second,
            {
                "event": "display",
                "display_event": "progress",
                "data": {"current": 1, "total": 2},
                "_requestId": 0,
            },
        )
        self.assertEqual(third, {"result": {"done": True}, "_requestId": 0})

    @requires_network
    async def test_ping_and_connection_info_on_request(self) -> None:
        """ping answers pong; connection_info can be asked again; ids are echoed."""
        z = await self.start()
        ws = await self.client(z)
        self.assertEqual(await self.request(ws, {"event": "ping"}), {"event": "pong"})
        self.assertEqual(
            await self.request(ws, {"event": "ping", "_requestId": 7}),
            {"event": "pong", "_requestId": 7},
        )
        info = await self.request(ws, {"event": "connection_info", "_requestId": "i"})
        self.assertEqual(
            (info["event"], info["_requestId"], info["data"]["server_version"]),
            ("connection_info", "i", __version__),
        )


class TestPluginEventsAndBroadcast(AppCase):
    @requires_network
    async def test_broadcast_reaches_everyone_and_result_only_the_sender(self) -> None:
        """A plugin event broadcasts to all; its result goes to the sender alone."""
        z = await self.start()
        one, two = await self.client(z), await self.client(z)
        await one.send(json.dumps({"event": "app.shout", "data": {"text": "hi"}}))
        shouted = {"event": "app.shouted", "text": "hi", "by": "anonymous"}
        self.assertEqual(await self.recv(one), shouted)
        self.assertEqual(await self.recv(one), {"result": {"sent": 2}, "_requestId": 0})
        self.assertEqual(await self.recv(two), shouted)
        await self.assertQuiet(two)

    @requires_network
    async def test_broadcast_with_and_without_deflate_keeps_each_clients_order(self) -> None:
        """A broadcast reaches clients with permessage-deflate and without it (those
        share one framing) exactly, each after what was sent to it before."""
        z = await self.start()
        deflate, plain = await self.client(z), await self.client(z, compression=None)
        other = await self.client(z, compression=None)
        self.assertEqual(
            [(c.protocol.extensions != []) for c in (deflate, plain, other)], [True, False, False]
        )
        for sender in (plain, deflate):
            with self.subTest(sender="plain" if sender is plain else "deflate"):
                await sender.send(
                    json.dumps(
                        {"event": "app.note_then_shout", "data": {"text": "é"}, "_requestId": 9}
                    )
                )
                shouted = {"event": "app.shouted", "text": "é", "by": "anonymous"}
                self.assertEqual(await self.recv(sender), {"event": "app.noted", "text": "é"})
                self.assertEqual(await self.recv(sender), shouted)
                self.assertEqual(await self.recv(sender), {"result": {"sent": 3}, "_requestId": 9})
                for receiver in {deflate, plain, other} - {sender}:
                    self.assertEqual(await self.recv(receiver), shouted)
                    await self.assertQuiet(receiver)

    @requires_network
    async def test_async_plugin_handler_sees_its_client(self) -> None:
        """An async handler gets the client's identity and session."""
        z = await self.start()
        ws = await self.client(z)
        self.assertEqual(
            await self.request(ws, {"event": "app.whoami"}),
            {"result": {"user": "anonymous", "block": "Main"}, "_requestId": 0},
        )


class TestShutdownAndScale(AppCase):
    @requires_network
    async def test_graceful_shutdown(self) -> None:
        """Every client gets server_shutdown, then close 1001."""
        z = self.make()
        await z.comm.start()
        sockets = [await self.client(z) for _ in range(3)]
        await z.comm.stop()
        for ws in sockets:
            self.assertEqual(
                await self.recv(ws),
                {"event": "server_shutdown", "message": "The server is shutting down."},
            )
            await self.assertClosed(ws, 1001, "Server shutdown.")

    @requires_network
    async def test_stop_does_not_wait_for_departed_clients(self) -> None:
        """A client that has just left does not hold up stop()."""
        z = self.make()
        await z.comm.start()
        ws = await self.client(z)
        await ws.close()
        await asyncio.wait_for(z.comm.stop(), timeout(1))
        self.assertFalse(z.comm.running)

    @requires_network
    async def test_reconnect_after_restart(self) -> None:
        """A client reconnects to a restarted server on the same port."""
        z = self.make()
        await z.comm.start()
        port = z.comm.port
        ws = await self.client(z)
        await z.comm.stop()
        await self.recv(ws)
        await self.assertClosed(ws, 1001, "Server shutdown.")
        again = self.make(websocket={"port": port})
        await again.comm.start()
        self.addAsyncCleanup(again.comm.stop)
        async with websockets.connect(f"ws://127.0.0.1:{port}") as ws:
            self.assertEqual((await self.recv(ws))["event"], "connection_info")

    @requires_network
    async def test_two_hundred_clients(self) -> None:
        """200 concurrent clients each get their own Pong numbered 0."""
        z = await self.start()
        started = time.perf_counter()
        sockets = await asyncio.gather(*(self.client(z) for _ in range(200)))
        connected = time.perf_counter()

        async def answered(ws: Any) -> tuple[Any, float]:
            reply = await self.recv(ws, units=10)
            return reply, (time.perf_counter() - connected) * 1000

        for ws in sockets:
            await ws.send(json.dumps({"event": "dispatch", "zKey": "^Ping"}))
        timed = await asyncio.gather(*(answered(ws) for ws in sockets))
        done = time.perf_counter()
        replies = [reply for reply, _ in timed]
        self.assertEqual(replies, [{"result": {"message": "Pong!"}, "_requestId": 0}] * 200)
        self.assertEqual(len(z.comm.clients), 200)
        record_metric("connect_200", (connected - started) * 1000, "ms")
        record_metric("ping_200", (done - connected) * 1000, "ms")
        record_samples("pong_after_first_send", [ms for _, ms in timed], "ms")

    @requires_network
    async def test_slow_client_is_closed_and_others_continue(self) -> None:
        """A client that stops reading overflows its queue and is closed; others get all."""
        z = await self.start(websocket={"queue_size": 4, "max_size": 1_000_000})
        # no permessage-deflate, so every byte of the payload fills the socket buffers
        fast = await self.client(z, compression=None)
        slow = await self.client(z, compression=None, max_queue=1)  # reads one frame only
        self.addCleanup(slow.transport.abort)  # it cannot read the server's close either
        slow_client = next(
            c for c in z.comm.clients if c.ws.remote_address[1] == slow.local_address[1]
        )
        payload = {"event": "bulk", "data": "x" * 500_000}
        received = []
        with self.assertLogs("zCLI.zBifrost", "WARNING") as logs:
            for _ in range(100):  # 50 MB: more than loopback's socket buffers hold
                z.comm.broadcast(payload)
                received.append(await self.recv(fast, units=5))
            await self.wait_until(lambda: slow_client not in z.comm.clients, units=10)
        self.assertEqual(received, [payload] * 100)
        self.assertEqual(
            re.sub("[0-9a-f]{32}", "ID", logs.output[0]),
            "WARNING:zCLI.zBifrost:closing client ID (anonymous): "
            f"4 frames ({4 * len(json.dumps(payload))} bytes) queued, limit reached",
        )


class TestOrigins(BridgeTestCase):
    async def handshake_status(self, z: zCLI, origin: str) -> int | None:
        try:
            ws = await self.connect(z, origin=origin)
        except InvalidStatus as refused:
            return refused.response.status_code
        await self.recv(ws)
        return None

    @requires_network
    async def test_allowed_origins_match_exactly(self) -> None:
        """Only exact scheme://host[:port] matches pass; look-alikes get 403."""
        z = await self.start(
            websocket={"allowed_origins": ["http://localhost", "https://app.example:8443"]}
        )
        table = {
            "http://localhost": None,
            "https://app.example:8443": None,
            "http://localhost.evil": 403,
            "http://localhost:8080": 403,
            "https://localhost": 403,
            "https://app.example": 403,
            "null": 403,
        }
        with self.assertLogs("zCLI.zBifrost", "WARNING"):
            for origin, status in table.items():
                with self.subTest(origin=origin):
                    self.assertEqual(await self.handshake_status(z, origin), status)

    @requires_network
    async def test_empty_list_means_the_servers_own_hosts(self) -> None:
        """With no allowed_origins, a page's host must be the configured one (any port);
        loopback names are one host; anything else, DNS-rebound names too, gets 403."""
        z = await self.start()
        table = {
            f"http://127.0.0.1:{z.comm.port}": None,
            "http://127.0.0.1:8080": None,
            "http://localhost:8080": None,
            "https://[::1]": None,
            "http://127.0.0.1.evil": 403,
            "http://rebind.example:8080": 403,
            "ftp://127.0.0.1": 403,
            "null": 403,
        }
        with self.assertLogs("zCLI.zBifrost", "WARNING"):
            for origin, status in table.items():
                with self.subTest(origin=origin):
                    self.assertEqual(await self.handshake_status(z, origin), status)
        ws = await self.connect(z)  # a non-browser client sends no Origin
        self.assertEqual((await self.recv(ws))["event"], "connection_info")
