"""zBifrost end to end: real servers on port 0, real WebSocket clients, exact shapes.

The first nine classes are the 25 tests of the seed report (004); the rest cover every
error code, isolation between clients, sessions, dialogs, zAuth and many clients.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time

import jwt
import websockets
from websockets.exceptions import InvalidStatus

from zCLI import ConfigError, __version__, zCLI
from zCLI.auth import ANONYMOUS, zAuth
from zCLI.bridge import PortInUseError, zBifrost
from zTestSuite import record_metric, requires_network, timeout
from zTestSuite.bridge import BridgeTestCase

FEATURES = ["auth", "connection_info", "dispatch", "input_response", "login", "logout",
            "menu", "ping"]


def _info(user: str = "anonymous", role: str = "guest", authenticated: bool = False,
          block: str = "Main", features: list[str] | None = None) -> dict:
    """connection_info as the server must send it, with the session id left out."""
    return {"event": "connection_info", "data": {
        "server_version": __version__, "features": features or FEATURES,
        "auth": {"authenticated": authenticated, "user": user, "role": role},
        "session": {"block": block, "zVaFile": "zUI.app.yaml"}}}


def _without_session_id(message: dict) -> dict:
    message["data"]["session"].pop("id")
    return message


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
        self.assertEqual((config.host, config.port, config.require_auth),
                         ("127.0.0.1", 56891, True))

    async def test_terminal_mode_builds_no_bridge(self) -> None:
        """Building zCLI creates no bridge, auth store or secret until they are used."""
        z = self.make()
        self.assertEqual((z._comm, z._auth, z._server), (None, None, None))
        self.assertEqual(sorted(p.name for p in self.workspace.iterdir()), ["zUI.app.yaml"])

    @requires_network
    async def test_plugin_events_are_features(self) -> None:
        """A plugin's events and name appear in connection_info features."""
        self.write("plugins/shout.py", """
            from zCLI import Plugin
            PLUGIN = Plugin("shout", events={"shout.all": lambda ctx, data: None})
        """)
        z = await self.start()
        ws = await self.connect(z)
        info = await self.recv(ws)
        self.assertEqual(info["data"]["features"],
                         sorted([*FEATURES, "shout.all"]) + ["plugin:shout"])


class TestzBifrostLifecycle(BridgeTestCase):
    @requires_network
    async def test_ready_means_listening(self) -> None:
        """When socket_ready is set, a client connects at once."""
        z = await self.start()
        ws = await self.connect(z)
        self.assertEqual(_without_session_id(await self.recv(ws)), _info())

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
        self.assertEqual(await self.request(ws, {"event": "dispatch", "zKey": "^Ping"}),
                         {"result": {"message": "Pong!"}, "_requestId": 0})
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
        self.assertEqual(caught.exception.problems, [
            "websocket.port and http_server.port: both are 9100 on 127.0.0.1; "
            "the two servers need different ports"])


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
        with self.assertLogs("zCLI.zBifrost", "WARNING") as logs, \
                self.assertRaises(InvalidStatus) as caught:
            await self.connect(z)
        self.assertEqual(caught.exception.response.status_code, 503)
        self.assertEqual(logs.output, ["WARNING:zCLI.zBifrost:refused a connection: 2 clients, "
                                       "the limit"])

    @requires_network
    async def test_max_size(self) -> None:
        """A message over max_size gets too_large, then close 1009."""
        z = await self.start(websocket={"max_size": 100})
        ws = await self.client(z)
        frame = json.dumps({"event": "ping", "pad": "x" * 120})
        reply = await self.request_raw(ws, frame)
        self.assertEqual(reply, {"error": f"The message of {len(frame)} bytes exceeds the "
                                          "100-byte limit.",
                                 "code": "too_large", "_requestId": 0})
        await self.assertClosed(ws, 1009, "Message too large.")

    @requires_network
    async def test_far_over_max_size(self) -> None:
        """Beyond twice max_size the frame is refused while reading: close 1009 at once."""
        z = await self.start(websocket={"max_size": 100})
        ws = await self.client(z)
        await ws.send("x" * 201)
        await self.assertClosed(ws, 1009, "frame exceeds limit of 200 bytes")


class TestRealWebSocketConnections(BridgeTestCase):
    @requires_network
    async def test_connect_and_receive_connection_info(self) -> None:
        """The first frame is connection_info with version, features, auth and session."""
        z = await self.start()
        ws = await self.connect(z)
        info = await self.recv(ws)
        self.assertRegex(info["data"]["session"]["id"], r"^[0-9a-f]{32}$")
        self.assertEqual(_without_session_id(info), _info())

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
                self.assertEqual(await self.request(ws, {"event": "dispatch", "zKey": "^Ping"}),
                                 {"result": {"message": "Pong!"}, "_requestId": 0})
        self.assertEqual(len(ids), 5)


class TestWebSocketMessageFlow(BridgeTestCase):
    @requires_network
    async def test_dispatch_simple_command(self) -> None:
        """^Ping answers exactly {"result": {"message": "Pong!"}, "_requestId": 0}."""
        z = await self.start()
        ws = await self.client(z)
        self.assertEqual(await self.request(ws, {"event": "dispatch", "zKey": "^Ping"}),
                         {"result": {"message": "Pong!"}, "_requestId": 0})

    @requires_network
    async def test_dispatch_resolves_keys_from_the_zui(self) -> None:
        """^Echo finds the bare key Echo; request ids are echoed verbatim or numbered."""
        z = await self.start()
        ws = await self.client(z)
        self.assertEqual(await self.request(ws, {"event": "dispatch", "zKey": "^Echo",
                                                 "_requestId": {"mine": [1]}}),
                         {"result": {"message": "echoed"}, "_requestId": {"mine": [1]}})
        self.assertEqual(await self.request(ws, {"event": "dispatch", "zKey": "Echo"}),
                         {"result": {"message": "echoed"}, "_requestId": 0})
        self.assertEqual(await self.request(ws, {"event": "dispatch", "zKey": "^Ping"}),
                         {"result": {"message": "Pong!"}, "_requestId": 1})

    @requires_network
    async def test_invalid_message_format(self) -> None:
        """A non-JSON frame gets invalid_json and the connection keeps working."""
        z = await self.start()
        ws = await self.client(z)
        await ws.send("{not json")
        self.assertEqual(await self.recv(ws), {"error": "The message is not valid JSON.",
                                               "code": "invalid_json", "_requestId": 0})
        self.assertEqual(await self.request(ws, {"event": "dispatch", "zKey": "^Ping"}),
                         {"result": {"message": "Pong!"}, "_requestId": 1})


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
        self.assertEqual((await self.recv(ws))["data"]["auth"],
                         {"authenticated": False, "user": "anonymous", "role": "guest"})

    @requires_network
    async def test_auth_info_in_connection(self) -> None:
        """With a valid token connection_info names the user and role."""
        z = await self.start(websocket={"require_auth": True})
        z.auth.add_user("ada", "s3cret", "admin")
        token = z.auth.login("ada", "s3cret").token
        ws = await self.connect(z, path=f"/?token={token}")
        self.assertEqual(_without_session_id(await self.recv(ws)),
                         _info("ada", "admin", authenticated=True))
