"""Plan 002, section 4: presence updates (docs/chat.md ``chat.clients``: "to every
online user when a user comes online, goes offline, deregisters or registers"),
black-box."""

from __future__ import annotations

import unittest

from zCLI.apps.chat.tests.plan002 import CHAT, CHAT_HTTP, SIGNED_OUT, ChatClient, ChatTestCase
from zTestSuite import requires_network

__all__ = ["CHAT", "CHAT_HTTP", "StatusTest"]


@requires_network
class StatusTest(ChatTestCase):
    async def test_4_1_everyone_hears_a_user_come_online(self) -> None:
        """Every connected user gets chat.clients when a user comes online."""
        ann, bob = await self.users("ann", "bob")
        cid = await self.register("cid")
        for how in ("auth", "login"):
            with self.subTest(how=how):
                newcomer = await self.sign_in(cid, how)  # has seen its own arrival
                everyone = {ann.user or "": True, bob.user or "": True, cid.name: True}
                for client in (ann, bob):
                    await self.expect_table(client, everyone)
                await newcomer.close()
                for client in (ann, bob):
                    await self.expect_table(client, {**everyone, cid.name: False})
        with self.subTest(how="chat.reg after chat.dereg"):
            self.assertEqual(await bob.call("chat.dereg"), {"status": "offline"})
            await self.expect_table(ann, {ann.user or "": True, bob.user or "": False,
                                          cid.name: False})  # fmt: skip
            self.assertEqual(await bob.call("chat.reg"), {"status": "online", "pending": 0})
            for client in (ann, bob):
                await self.expect_table(client, {ann.user or "": True, bob.user or "": True,
                                                 cid.name: False})  # fmt: skip

    async def test_4_2_everyone_hears_a_user_go_offline(self) -> None:
        """Every connected user gets chat.clients when a user goes offline."""
        ann, bob = await self.users("ann", "bob")

        async def close(client: ChatClient) -> None:
            await client.close()

        async def logout(client: ChatClient) -> None:
            self.assertResult(await client.request("logout"), {"message": SIGNED_OUT})
            self.assertEqual(await client.wait_closed(), (1008, SIGNED_OUT))

        async def dereg(client: ChatClient) -> None:
            self.assertEqual(await client.call("chat.dereg"), {"status": "offline"})

        async def http_logout(client: ChatClient) -> None:
            answer = await self.http("POST", "/api/logout", token=client.token)
            self.assertEqual(answer, (200, {"message": SIGNED_OUT}))
            self.assertEqual(await client.wait_closed(), (1008, "The token has been revoked."))

        table = {ann.user or "": True, bob.user or "": True}
        for label, leave in (("closes", close), ("logout", logout), ("dereg", dereg),
                             ("http-logout", http_logout)):  # fmt: skip
            with self.subTest(how=label):
                leaving = await self.user(label)
                table[leaving.user or ""] = True
                for client in (ann, bob):
                    await self.expect_table(client, table)
                await leave(leaving)
                table[leaving.user or ""] = False
                for client in (ann, bob):
                    await self.expect_table(client, table)
                await leaving.close()
        with self.subTest(how="one of two connections closes"):
            first = await self.user("two")
            marker = await self.user("marker")
            second = await self.sign_in(self.account_of(first), "url", arrives=False)
            table.update({first.user or "": True, marker.user or "": True})
            await self.expect_table(ann, table)
            await first.close()
            await marker.close()  # announced after first's close was handled: still online
            await self.expect_table(ann, {**table, marker.user or "": False})
            await second.close()
            await self.expect_table(ann, {**table, marker.user or "": False,
                                          first.user or "": False})  # fmt: skip


if __name__ == "__main__":
    unittest.main()
