"""Plan 002, section 6: the chat server restarted (recovery flow), black-box. Each test
starts its own ``zcli chat -s`` and restarts it on the same ports and folder, so this
suite never tests a server given with CHAT."""

from __future__ import annotations

import signal
import unittest

from zCLI.apps.chat.tests.plan002 import CHAT, SHORT, ChatClient, ChatTestCase
from zTestSuite import requires_network

__all__ = ["CHAT", "RestartTest"]

SHUTDOWN = {"event": "server_shutdown", "message": "The server is shutting down."}


@requires_network
class RestartTest(ChatTestCase):
    server_per_test = True
    own_server_only = "this suite restarts the server, so it starts its own"
    server_options = ("--ack-timeout", f"{SHORT:g}")

    async def assertShutDown(self, client: ChatClient) -> None:  # noqa: N802
        """protocol.md's stop: server_shutdown, then close 1001 "Server shutdown."."""
        self.assertEqual(await client.expect("server_shutdown"), SHUTDOWN)
        self.assertEqual(await client.wait_closed(), (1001, "Server shutdown."))

    async def test_6_1_connected_users_logged_out_on_stop(self) -> None:
        """All connected users are logged out (server_shutdown, 1001) when the server stops."""
        ann, bob = await self.users("ann", "bob")
        await self.restart()
        for client in (ann, bob):
            with self.subTest(client=client.user):
                await self.assertShutDown(client)
        cid = await self.user("cid")
        users = await cid.call("chat.users")
        self.assertEqual(
            self.view(users["users"]), {ann.user: False, bob.user: False, cid.user: True}
        )
        online = await cid.call("chat.online")
        self.assertEqual([name for name in online["users"] if self.mine(name)], [cid.user])

    async def test_6_2_relogin_after_restart(self) -> None:
        """Users sign in again after a restart, by password or by their unexpired token."""
        ann = await self.user("ann")
        bob = await self.register("bob")
        cid = await self.register("cid")
        await self.restart()
        await self.assertShutDown(ann)
        for how, account in (("url", self.account_of(ann)), ("login", bob), ("auth", cid)):
            with self.subTest(how=how):
                client = await self.sign_in(account, how)
                self.assertEqual(await client.call("chat.keepalive"), {})
        with self.subTest(how="POST /api/login"):
            status, body = await self.http(
                "POST", "/api/login", {"username": bob.name, "password": bob.password}
            )
            self.assertEqual(
                (status, body), (200, {"token": body.get("token"), "user": bob.name,
                                       "role": "user"})
            )  # fmt: skip
            await self.sign_in(bob, "url", token=body["token"], arrives=False)

    async def test_6_3_messages_after_restart(self) -> None:
        """Users message each other after a restart; ids are never reused."""
        ann, bob = await self.users("ann", "bob")
        before = await self.deliver(ann, bob, "before the restart")
        await self.restart()
        for client in (ann, bob):
            await self.assertShutDown(client)
        ann_again = await self.sign_in(self.account_of(ann), "url")
        bob_again = await self.sign_in(self.account_of(bob), "url")
        await self.seen_online(ann_again, bob.user or "")  # as users() waits for it
        after = await self.deliver(ann_again, bob_again, "after the restart")
        reply = await self.deliver(bob_again, ann_again, "heard you")
        self.assertLess(before.id, after.id)
        self.assertLess(after.id, reply.id)

    async def test_6_4_stored_messages_survive_restart(self) -> None:
        """Stored messages survive a stop or crash: sent after the restart in order, same ts."""
        for signum in (signal.SIGTERM, signal.SIGKILL):
            with self.subTest(stop=signum.name):
                ann = await self.user(f"ann-{signum.name}")
                bob = await self.user(f"bob-{signum.name}")
                await self.seen_online(ann, bob.user or "")  # as users() waits for it
                unacked = await self.send(ann, bob.user or "", "you did not ack this")
                self.assertEqual(await bob.expect("chat.message"), unacked.message())
                await self.expect_status(ann, unacked, "stored")
                await bob.close()
                await self.expect_online(ann, bob.user or "", False)
                offline = [await self.send(ann, bob.user or "", text) for text in ("one", "two")]
                for message in offline:
                    await self.expect_status(ann, message, "stored")
                await self.restart(signum)
                if signum == signal.SIGTERM:
                    await self.assertShutDown(ann)
                else:
                    self.assertEqual(await ann.wait_closed(), (1006, ""))
                stored = [unacked, *offline]
                client = await self.sign_in(self.account_of(bob), "url")
                self.assertEqual(
                    [p for p in client.history if p["event"] in ("chat.offline", "chat.message")],
                    [{"event": "chat.offline", "data": {"count": 3}}]
                    + [message.message(offline=True) for message in stored],
                )
                for message in stored:
                    self.assertEqual(await client.call("chat.ack", {"id": message.id}),
                                     {"acked": True})  # fmt: skip


if __name__ == "__main__":
    unittest.main()
