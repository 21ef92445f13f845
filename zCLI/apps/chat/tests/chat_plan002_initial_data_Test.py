"""Plan 002, section 2: the data a client asks for when it starts (docs/chat.md
"Events a client sends": chat.users, chat.rooms, chat.online), black-box."""

from __future__ import annotations

import unittest

from zCLI.apps.chat.tests.plan002 import CHAT, CHAT_HTTP, ChatTestCase
from zTestSuite import requires_network

__all__ = ["CHAT", "CHAT_HTTP", "InitialDataTest"]


@requires_network
class InitialDataTest(ChatTestCase):
    async def test_2_1_list_of_all_users(self) -> None:
        """The list of all existing users: every user, online or not, sorted by name."""
        ann, bob = await self.users("ann", "bob")
        cid = await self.register("cid")
        for client in (ann, bob):
            with self.subTest(asked_by=client.user):
                users = await client.call("chat.users")
                self.assertEqual(set(users), {"users"})
                self.assertEqual(
                    self.view(users["users"]), {ann.user: True, bob.user: True, cid.name: False}
                )
        await bob.close()
        await self.expect_online(ann, self.name("bob"), False)
        users = await ann.call("chat.users")
        self.assertEqual(
            self.view(users["users"]), {ann.user: True, self.name("bob"): False, cid.name: False}
        )

    async def test_2_2_list_of_room_names(self) -> None:
        """The list of room names: the rooms the asking user belongs to, sorted."""
        ann, bob = await self.users("ann", "bob")
        red, blue = self.name("red"), self.name("blue")
        self.assertEqual(await ann.call("chat.rooms"), {"rooms": []})
        for room in (red, blue):
            self.assertEqual(await ann.call("chat.room.create", {"room": room}), {"room": room})
        self.assertEqual(await ann.call("chat.rooms"), {"rooms": [blue, red]})
        self.assertEqual(await bob.call("chat.rooms"), {"rooms": []})
        joined = await bob.call("chat.room.join", {"room": red})
        self.assertEqual(joined, {"room": red, "members": sorted([ann.user, bob.user])})
        self.assertEqual(await bob.call("chat.rooms"), {"rooms": [red]})
        self.assertEqual(await bob.call("chat.room.leave", {"room": red}), {"room": red})
        self.assertEqual(await bob.call("chat.rooms"), {"rooms": []})
        self.assertEqual(await ann.call("chat.rooms"), {"rooms": [blue, red]})

    async def test_2_3_list_of_online_users(self) -> None:
        """The list of users online now: signed in and not deregistered, sorted."""
        ann, bob = await self.users("ann", "bob")
        cid = await self.register("cid")

        async def online() -> list[str]:
            result = await ann.call("chat.online")
            self.assertEqual(set(result), {"users"})
            names = result["users"]
            self.assertEqual(names, sorted(set(names)))
            return [name for name in names if self.mine(name)]

        self.assertEqual(await online(), [ann.user, bob.user])
        await self.sign_in(cid, "url")
        await self.expect_online(ann, cid.name, True)
        self.assertEqual(await online(), [ann.user, bob.user, cid.name])
        self.assertEqual(await bob.call("chat.dereg"), {"status": "offline"})
        await self.expect_online(ann, self.name("bob"), False)
        self.assertEqual(await online(), [ann.user, cid.name])
        self.assertEqual(await bob.call("chat.reg"), {"status": "online", "pending": 0})
        await self.expect_online(ann, self.name("bob"), True)
        self.assertEqual(await online(), [ann.user, bob.user, cid.name])


if __name__ == "__main__":
    unittest.main()
