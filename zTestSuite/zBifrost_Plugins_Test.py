"""What plugins add to the bridge beyond events: connection hooks, services, sending to
one user's connections, per-connection state; checked on a real bridge and clients."""

from __future__ import annotations

import json
import sys
from typing import Any

from zCLI import Command, Plugin, PluginError, Registry, RequestError
from zTestSuite import requires_network
from zTestSuite.bridge import FEATURES, AuthTestCase, BridgeTestCase

WATCH = """
import asyncio
from zCLI import Plugin

SEEN = []
SERVICE = []


def connect(ctx):
    SEEN.append(("connect", ctx.client.identity.user, ctx.request_id))
    ctx.client.state["watch"] = {"number": len(SEEN)}


async def sign_in(ctx):
    SEEN.append(("sign_in", ctx.client.identity.user, ctx.request_id))


def sign_out(ctx):
    SEEN.append(("sign_out", ctx.client.identity.user, ctx.request_id))


def disconnect(ctx):
    SEEN.append(("disconnect", ctx.client.identity.user, ctx.client in ctx.bridge.clients))


def state(ctx, data):
    return ctx.client.state["watch"]


def tell(ctx, data):
    sent = ctx.bridge.send_to(data["user"], {"event": "told", "text": data["text"]})
    return {"sent": sent.local, "connections": len(ctx.bridge.clients_of(data["user"]))}


async def heartbeat(bridge):
    SERVICE.append(("started", bridge.running))
    try:
        await asyncio.Event().wait()
    finally:
        SERVICE.append(("stopped", bridge.running))


PLUGIN = Plugin(
    "watch",
    events={"watch.state": state, "watch.tell": tell},
    hooks={"connect": connect, "sign_in": sign_in, "sign_out": sign_out, "disconnect": disconnect},
    services=[heartbeat],
)
"""

BROKEN = """
from zCLI import Plugin


def connect(ctx):
    raise RuntimeError("a bug in a hook")


PLUGIN = Plugin("broken", hooks={"connect": connect})
"""


SIGNUP = """
from zCLI import Plugin, RequestError


def signup(ctx, data):
    if ctx.bridge.zcli.auth.users.get(data["user"]) is not None:
        raise RequestError("That name is taken.", "taken")
    ctx.bridge.zcli.auth.add_user(data["user"], data["password"], "user")
    return {"user": data["user"], "signed_in": ctx.client.identity.authenticated}


def secret(ctx, data):
    return {"user": ctx.client.identity.user}


PLUGIN = Plugin(
    "signup",
    events={"signup.create": signup, "signup.secret": secret},
    public_events={"signup.create"},
)
"""


GATE = """
from zCLI import Plugin, RequestError, StorageError


def gate(ctx):
    user = ctx.client.identity.user
    if user == "eve":
        raise RequestError("Eve may not come in.", "banned")
    if user == "sto":
        raise StorageError("The store is closed; try again later.")


PLUGIN = Plugin("gate", hooks={"connect": gate, "sign_in": gate})
"""


def watch() -> Any:
    return sys.modules["zcli_plugin_watch"]


class TestHooks(AuthTestCase):
    async def asyncSetUp(self) -> None:
        await super().asyncSetUp()
        self.write("plugins/watch.py", WATCH)

    @requires_network
    async def test_hooks_follow_a_connection(self) -> None:
        """connect, sign_in, sign_out and disconnect run in that order with the identity
        of the moment; disconnect runs after the connection left bridge.clients."""
        z = await self.start()
        z.auth.add_user("ada", "s3cret", "admin")
        ws = await self.client(z)
        login = {"event": "login", "username": "ada", "password": "s3cret", "_requestId": "l"}
        self.assertEqual((await self.request(ws, login))["result"]["user"], "ada")
        reply = await self.request(ws, {"event": "logout", "_requestId": "o"})
        self.assertEqual(reply, {"result": {"message": "Signed out."}, "_requestId": "o"})
        await ws.close()
        await self.wait_until(lambda: len(watch().SEEN) == 4)
        self.assertEqual(
            watch().SEEN,
            [
                ("connect", "anonymous", None),
                ("sign_in", "ada", "l"),
                ("sign_out", "anonymous", "o"),
                ("disconnect", "anonymous", False),
            ],
        )

    @requires_network
    async def test_per_connection_state(self) -> None:
        """A plugin keeps state per connection in client.state."""
        z = await self.start()
        first, second = await self.client(z), await self.client(z)
        one = await self.request(first, {"event": "watch.state", "_requestId": 1})
        two = await self.request(second, {"event": "watch.state", "_requestId": 2})
        self.assertEqual(one, {"result": {"number": 1}, "_requestId": 1})
        self.assertEqual(two, {"result": {"number": 2}, "_requestId": 2})
        again = await self.request(first, {"event": "watch.state", "_requestId": 3})
        self.assertEqual(again, {"result": {"number": 1}, "_requestId": 3})

    @requires_network
    async def test_send_to_one_users_connections(self) -> None:
        """send_to reaches every connection of that user and nobody else."""
        z = await self.start_auth()
        z.auth.add_user("bob", "pa55word", "user")
        ada_one = await self.client(z, path=f"/?token={z.auth.login('ada', 's3cret').token}")
        ada_two = await self.client(z, path=f"/?token={z.auth.login('ada', 's3cret').token}")
        bob = await self.client(z, path=f"/?token={z.auth.login('bob', 'pa55word').token}")
        tell = {"event": "watch.tell", "data": {"user": "ada", "text": "hi"}, "_requestId": 7}
        self.assertEqual(
            await self.request(bob, tell),
            {"result": {"sent": 2, "connections": 2}, "_requestId": 7},
        )
        told = {"event": "told", "text": "hi"}
        self.assertEqual([await self.recv(ada_one), await self.recv(ada_two)], [told, told])
        await self.assertQuiet(bob)
        nobody = {"event": "watch.tell", "data": {"user": "eve", "text": "x"}, "_requestId": 8}
        self.assertEqual(
            await self.request(bob, nobody),
            {"result": {"sent": 0, "connections": 0}, "_requestId": 8},
        )

    @requires_network
    async def test_a_failing_hook_is_logged_and_the_connection_goes_on(self) -> None:
        """A hook that raises is logged with its plugin's name; the client is served."""
        self.write("plugins/broken.py", BROKEN)
        z = await self.start()
        with self.assertLogs("zCLI.zBifrost", "ERROR") as logs:
            ws = await self.client(z)
            await self.assertQuiet(ws)
        self.assertEqual(
            logs.output[0].splitlines()[0],
            "ERROR:zCLI.zBifrost:plugin broken: its connect hook failed",
        )


class TestPublicEvents(AuthTestCase):
    async def asyncSetUp(self) -> None:
        await super().asyncSetUp()
        self.write("plugins/signup.py", SIGNUP)

    @requires_network
    async def test_public_events_are_answered_before_sign_in(self) -> None:
        """A public event is answered before sign-in (errors too); the connection then
        signs in with login as usual and gets connection_info."""
        z = await self.start_auth()
        ws = await self.connect(z)
        create = {"event": "signup.create", "data": {"user": "bo", "password": "pw"}}
        self.assertEqual(
            await self.request(ws, {**create, "_requestId": 1}),
            {"result": {"user": "bo", "signed_in": False}, "_requestId": 1},
        )
        self.assertEqual(
            await self.request(ws, {**create, "_requestId": 2}),
            {"error": "That name is taken.", "code": "taken", "_requestId": 2},
        )
        login = {"event": "login", "username": "bo", "password": "pw"}
        self.assertEqual((await self.request(ws, login))["user"], "bo")
        self.assertEqual((await self.recv(ws))["event"], "connection_info")
        secret = {"event": "signup.secret", "_requestId": 3}
        self.assertEqual(
            await self.request(ws, secret), {"result": {"user": "bo"}, "_requestId": 3}
        )

    @requires_network
    async def test_other_events_still_need_sign_in(self) -> None:
        """A plugin event that is not public, before sign-in, refuses the connection."""
        z = await self.start_auth()
        ws = await self.connect(z)
        reply = await self.request(ws, {"event": "signup.secret", "_requestId": 1})
        required = "Authentication required: send a token or log in first."
        self.assertEqual(reply, {"error": required, "code": "unauthorized", "_requestId": None})
        await self.assertClosed(ws, 1008, required)

    @requires_network
    async def test_public_requests_are_bounded(self) -> None:
        """Past max_public_requests the connection is refused with a sentence."""
        z = await self.start_auth(websocket={"max_public_requests": 2})
        ws = await self.connect(z)
        for number in (1, 2):
            create = {"event": "signup.create", "data": {"user": f"u{number}", "password": "p"}}
            self.assertEqual((await self.request(ws, create))["result"]["user"], f"u{number}")
        create = {"event": "signup.create", "data": {"user": "u3", "password": "p"}}
        bound = "Sign in after at most 2 requests: send auth or login."
        reply = await self.request(ws, create)
        self.assertEqual(reply, {"error": bound, "code": "unauthorized", "_requestId": None})
        await self.assertClosed(ws, 1008, bound)
        self.assertIsNone(z.auth.users.get("u3"))


class TestRefusingHooks(AuthTestCase):
    @requires_network
    async def test_connect_and_sign_in_hooks_may_turn_a_connection_away(self) -> None:
        """A RequestError from a connect or sign_in hook reaches the client as an error,
        then close 1008; a StorageError closes 1013 (try again later)."""
        self.write("plugins/gate.py", GATE)
        z = await self.start_auth()
        z.auth.add_user("eve", "pw", "user")
        banned = {"error": "Eve may not come in.", "code": "banned", "_requestId": None}
        ws = await self.connect(z, path=f"/?token={z.auth.login('eve', 'pw').token}")
        self.assertEqual((await self.recv(ws))["event"], "connection_info")
        self.assertEqual(await self.recv(ws), banned)
        await self.assertClosed(ws, 1008, "Eve may not come in.")
        ws = await self.connect(z)
        login = {"event": "login", "username": "ada", "password": "s3cret"}
        self.assertEqual((await self.request(ws, login))["user"], "ada")
        self.assertEqual((await self.recv(ws))["event"], "connection_info")
        await self.assertQuiet(ws)

    @requires_network
    async def test_storage_error_from_a_hook_closes_1013(self) -> None:
        """A StorageError from a hook closes the connection 1013 with its sentence."""
        self.write("plugins/gate.py", GATE)
        z = await self.start_auth()
        z.auth.add_user("sto", "pw", "user")
        ws = await self.connect(z, path=f"/?token={z.auth.login('sto', 'pw').token}")
        self.assertEqual((await self.recv(ws))["event"], "connection_info")
        closed = "The store is closed; try again later."
        self.assertEqual(
            await self.recv(ws), {"error": closed, "code": "storage_error", "_requestId": None}
        )
        await self.assertClosed(ws, 1013, closed)

    @requires_network
    async def test_sign_in_hook_refusal_after_an_auth_event(self) -> None:
        """On a bridge without require_auth, an auth event the sign_in hook refuses is
        answered, then the error, then close 1008."""
        self.write("plugins/gate.py", GATE)
        z = await self.start()
        z.auth.add_user("eve", "pw", "user")
        ws = await self.client(z)
        auth = {"event": "auth", "token": z.auth.login("eve", "pw").token, "_requestId": 1}
        self.assertEqual((await self.request(ws, auth))["result"]["auth"]["user"], "eve")
        self.assertEqual(
            await self.recv(ws),
            {"error": "Eve may not come in.", "code": "banned", "_requestId": None},
        )
        await self.assertClosed(ws, 1008, "Eve may not come in.")


KINDS = """
import asyncio
from zCLI import Plugin

WAITING = {}  # name -> the future its handler waits on


def plain(ctx, data):
    return {"plain": data["n"]}


async def slow(ctx, data):
    WAITING["slow"] = asyncio.get_running_loop().create_future()
    await WAITING["slow"]
    return {"slow": True}


def later(ctx, data):
    WAITING[data["name"]] = future = asyncio.get_running_loop().create_future()
    return future


def shout(ctx, data):  # broadcast data["size"] characters; what each client still holds
    ctx.bridge.broadcast({"event": "shouted", "text": "x" * data["size"]})
    return sorted(client.framed_bytes for client in ctx.bridge.clients)


PLUGIN = Plugin(
    "kinds",
    events={"kinds.plain": plain, "kinds.slow": slow, "kinds.later": later, "kinds.shout": shout},
)
"""


def kinds() -> Any:
    return sys.modules["zcli_plugin_kinds"]


class TestHandlerKinds(BridgeTestCase):
    async def asyncSetUp(self) -> None:
        await super().asyncSetUp()
        self.write("plugins/kinds.py", KINDS)

    async def send_all(self, ws: Any, *frames: dict[str, Any]) -> None:
        for frame in frames:
            await ws.send(json.dumps(frame))

    @requires_network
    async def test_plain_functions_answer_in_order_while_async_ones_wait(self) -> None:
        """A plain handler is answered at once, in the order of its frames, while an
        async handler sent before it is still waiting; that one answers when done."""
        z = await self.start()
        ws = await self.client(z)
        plain = [{"event": "kinds.plain", "data": {"n": n}, "_requestId": n} for n in (2, 3)]
        await self.send_all(ws, {"event": "kinds.slow", "_requestId": 1}, *plain)
        self.assertEqual(await self.recv(ws), {"result": {"plain": 2}, "_requestId": 2})
        self.assertEqual(await self.recv(ws), {"result": {"plain": 3}, "_requestId": 3})
        kinds().WAITING["slow"].set_result(None)
        self.assertEqual(await self.recv(ws), {"result": {"slow": True}, "_requestId": 1})

    @requires_network
    async def test_a_returned_future_is_answered_when_done(self) -> None:
        """A future a plain handler returns is answered when it is done: its result,
        a RequestError as that error, anything else as an internal error."""
        z = await self.start()
        ws = await self.client(z)
        await self.send_all(ws, *({"event": "kinds.later", "data": {"name": name},
                                   "_requestId": name} for name in "abc"))  # fmt: skip
        self.assertEqual(
            await self.request(ws, {"event": "kinds.plain", "data": {"n": 1}, "_requestId": 0}),
            {"result": {"plain": 1}, "_requestId": 0},
        )
        waiting = kinds().WAITING
        waiting["b"].set_result({"b": 1})
        self.assertEqual(await self.recv(ws), {"result": {"b": 1}, "_requestId": "b"})
        waiting["a"].set_exception(RequestError("Not now.", "busy"))
        self.assertEqual(
            await self.recv(ws), {"error": "Not now.", "code": "busy", "_requestId": "a"}
        )
        with self.assertLogs("zCLI.zBifrost", "ERROR") as logged:
            waiting["c"].set_exception(ValueError("a bug"))
            reply = await self.recv(ws)
        internal = "The kinds.later handler failed with an internal error."
        self.assertEqual(reply, {"error": internal, "code": "internal", "_requestId": "c"})
        self.assertIn("plugin event kinds.later failed", logged.output[0])

    @requires_network
    async def test_a_fan_out_is_written_at_once(self) -> None:
        """An event to many clients, small or large, goes to each socket at once, as
        websockets.broadcast writes it: no copy per client is held."""
        z = await self.start()
        clients = [await self.client(z) for _ in range(5)]
        for rid, size, framed in ((1, 100, [0] * 5), (2, 64 * 1024, [0] * 5)):
            shout = {"event": "kinds.shout", "data": {"size": size}, "_requestId": rid}
            await clients[0].send(json.dumps(shout))
            self.assertEqual(await self.recv(clients[0]), {"event": "shouted", "text": "x" * size})
            self.assertEqual(await self.recv(clients[0]), {"result": framed, "_requestId": rid})
        for ws in clients[1:]:
            for size in (100, 64 * 1024):
                self.assertEqual(await self.recv(ws), {"event": "shouted", "text": "x" * size})


class TestServices(BridgeTestCase):
    @requires_network
    async def test_services_live_as_long_as_the_bridge(self) -> None:
        """A service starts once the bridge listens and is cancelled when it stops."""
        self.write("plugins/watch.py", WATCH)
        z = await self.start()
        await self.wait_until(lambda: watch().SERVICE == [("started", True)])
        await z.comm.stop()
        self.assertEqual(watch().SERVICE, [("started", True), ("stopped", False)])


class TestRegistration(BridgeTestCase):
    def test_bad_hooks_and_services_are_refused(self) -> None:
        """An unknown hook, a hook that is not callable, a public event the plugin does
        not handle, or a service that is not an async function stops registration with
        a sentence naming the plugin."""

        def service(bridge: Any) -> None:
            return None

        for plugin, message in (
            (
                Plugin("p", hooks={"open": print}),
                "plugin 'p': hook 'open' is not one of connect, sign_in, sign_out, disconnect",
            ),
            (Plugin("p", hooks={"connect": 3}), "plugin 'p': hook 'connect' is not callable"),
            (
                Plugin("p", events={"p.a": print}, public_events={"p.b"}),
                "plugin 'p': public event 'p.b' is not one of the plugin's events",
            ),
            (
                Plugin("p", services=[service]),
                f"plugin 'p': service {service!r} is not an async function taking the bridge",
            ),
        ):
            with self.subTest(message=message):
                with self.assertRaises(PluginError) as caught:
                    Registry().register(plugin)
                self.assertEqual(str(caught.exception), message)

    @requires_network
    async def test_command_only_plugins_are_not_features(self) -> None:
        """A plugin of only commands and suites is not listed in connection_info."""
        self.write(
            "plugins/tool.py",
            """
            from zCLI import Command, Plugin
            PLUGIN = Plugin("tool", commands=[Command("tool", "a tool", lambda args: 0)])
            """,
        )
        z = await self.start()
        info = await self.recv(await self.connect(z))
        self.assertEqual(info["data"]["features"], FEATURES)
        self.assertFalse(Plugin("x", commands=[Command("x", "", lambda a: 0)]).serves_clients)
        self.assertTrue(Plugin("x", hooks={"connect": print}).serves_clients)
