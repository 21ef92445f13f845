"""Plan 002, section 3: direct messages between users (docs/chat.md "Direct messages
and acknowledgements"), black-box. A client that gets ``chat.message`` answers
``chat.ack {id}``; the first ack within the ack timeout tells the sender "delivered"."""

from __future__ import annotations

import unittest
from typing import Any

from zCLI.apps.chat.tests.plan002 import (
    CHAT,
    CHAT_HTTP,
    SHORT,
    SIGNED_OUT,
    ChatClient,
    ChatTestCase,
)
from zTestSuite import requires_network

__all__ = ["CHAT", "CHAT_HTTP", "MessagesTest"]


def offline_notice(count: int) -> dict[str, Any]:
    return {"event": "chat.offline", "data": {"count": count}}


@requires_network
class MessagesTest(ChatTestCase):
    server_options = ("--ack-timeout", f"{SHORT:g}")

    def stored_since_sign_in(self, client: ChatClient) -> list[dict[str, Any]]:
        """What a connection got of the offline store since it signed in, in order."""
        return [p for p in client.history if p["event"] in ("chat.offline", "chat.message")]

    async def test_3_1_single_message_both_online(self) -> None:
        """A single message from A to online B reaches B once; B's ack tells A "delivered"."""
        ann, bob = await self.users("ann", "bob")
        sent = await self.deliver(ann, bob, "hello nice to meet you.")
        self.assertEqual(await bob.call("chat.ack", {"id": sent.id}), {"acked": False})
        await bob.expect_no("chat.message")
        await ann.expect_no("chat.message")
        # a message bob leaves unacknowledged is reported "stored" once its ack timeout
        # passes; the first message's would have passed before: no second status for it
        later = await self.send(ann, bob.user or "", "no ack for this one")
        self.assertEqual(await bob.expect("chat.message"), later.message())
        await self.expect_status(ann, later, "stored")
        await ann.expect_no("chat.status")

    async def test_3_2_several_messages_both_online(self) -> None:
        """Several messages from A to online B arrive in order, each reported delivered."""
        ann, bob = await self.users("ann", "bob")
        texts = ["first", "second", "third", "fourth", "fifth"]
        sent = [await self.send(ann, bob.user or "", text) for text in texts]
        for message in sent:
            await self.receive(bob, message)
        for message in sent:
            await self.expect_status(ann, message, "delivered")
        ids = [message.id for message in sent]
        self.assertEqual(ids, sorted(set(ids)))
        self.assertEqual([m.ts for m in sent], sorted(m.ts for m in sent))
        await bob.expect_no("chat.message")
        await ann.expect_no("chat.status")

    async def test_3_3_only_the_addressee_gets_the_message(self) -> None:
        """Only the user a message was sent to gets it."""
        ann, bob, cid = await self.users("ann", "bob", "cid")
        await self.deliver(ann, bob, "for bob only")
        for client in (cid, ann):
            with self.subTest(client=client.user):
                await client.expect_no("chat.message")
        await cid.expect_no("chat.status")

    async def test_3_4_one_message_to_b_two_to_c(self) -> None:
        """One message from A to B and two from A to C each reach only their addressee."""
        ann, bob, cid = await self.users("ann", "bob", "cid")
        to_bob = await self.send(ann, bob.user or "", "hi bob")
        to_cid = [await self.send(ann, cid.user or "", text) for text in ("hi cid", "again cid")]
        await self.receive(bob, to_bob)
        for message in to_cid:
            await self.receive(cid, message)
        for message in [to_bob, *to_cid]:
            await self.expect_status(ann, message, "delivered")
        await bob.expect_no("chat.message")
        await cid.expect_no("chat.message")
        await ann.expect_no("chat.status")

    async def test_3_5_messages_to_offline_users_are_stored(self) -> None:
        """Messages to offline users are stored and sent, with their ts, until acknowledged."""
        ann = await self.user("ann")
        with self.subTest(offline="signed out"):
            bob = await self.register("bob")
            sent = [await self.send(ann, bob.name, text) for text in ("hello?", "still there?")]
            for message in sent:
                await self.expect_status(ann, message, "stored")
            expected = [offline_notice(2)]
            expected += [message.message(offline=True) for message in sent]
            first = await self.sign_in(bob, "url")  # takes nothing: no ack
            self.assertEqual(self.stored_since_sign_in(first), expected)
            await first.close()
            second = await self.sign_in(bob, "url")  # unacknowledged: sent again
            self.assertEqual(self.stored_since_sign_in(second), expected)
            for message in sent:
                self.assertEqual(await second.call("chat.ack", {"id": message.id}), {"acked": True})
            await second.close()
            third = await self.sign_in(bob, "url")  # acknowledged: gone
            self.assertEqual(self.stored_since_sign_in(third), [])
        with self.subTest(offline="deregistered"):
            cid = await self.user("cid")
            self.assertEqual(await cid.call("chat.dereg"), {"status": "offline"})
            await self.expect_online(ann, cid.user or "", False)
            sent = [await self.send(ann, cid.user or "", "are you there?")]
            await self.expect_status(ann, sent[0], "stored")
            await cid.expect_no("chat.message")
            self.assertEqual(await cid.call("chat.reg"), {"status": "online", "pending": 1})
            self.assertEqual(await cid.expect("chat.offline"), offline_notice(1))
            await self.receive(cid, sent[0], offline=True)
        with self.subTest(offline="online, no ack within the ack timeout"):
            dan = await self.user("dan")
            await self.seen_online(ann, dan.user or "")  # as users() waits for it
            sent = [await self.send(ann, dan.user or "", "ack me, please")]
            self.assertEqual(await dan.expect("chat.message"), sent[0].message())
            await self.expect_status(ann, sent[0], "stored")
            again = await self.sign_in(self.account_of(dan), "url", arrives=False)
            await again.ping()
            self.assertEqual(self.stored_since_sign_in(again),
                             [offline_notice(1), sent[0].message(offline=True)])  # fmt: skip
            self.assertEqual(await dan.call("chat.ack", {"id": sent[0].id}), {"acked": True})
            await ann.expect_no("chat.status")  # stored already: no "delivered" after it
            latest = await self.sign_in(self.account_of(dan), "url", arrives=False)
            await latest.ping()
            self.assertEqual(self.stored_since_sign_in(latest), [])

    async def test_3_5_1_offline_then_online_both_received(self) -> None:
        """A message sent while B is offline and one sent once B is online both reach B."""
        ann = await self.user("ann")
        bob = await self.register("bob")
        while_offline = await self.send(ann, bob.name, "sent while you were away")
        await self.expect_status(ann, while_offline, "stored")
        client = await self.sign_in(bob, "auth")
        self.assertEqual(await client.expect("chat.offline"), offline_notice(1))
        await self.receive(client, while_offline, offline=True)
        while_online = await self.deliver(ann, client, "and this one live")
        self.assertEqual(
            [p for p in client.history if p["event"] == "chat.message"],
            [while_offline.message(offline=True), while_online.message()],
        )
        await ann.expect_no("chat.status")

    async def test_3_6_messages_after_relogin(self) -> None:
        """Messages can be sent after signing out and in again."""
        ann, bob = await self.users("ann", "bob")
        before = await self.deliver(ann, bob, "before")
        self.assertResult(await ann.request("logout"), {"message": SIGNED_OUT})
        self.assertEqual(await ann.wait_closed(), (1008, SIGNED_OUT))
        await self.expect_online(bob, ann.user or "", False)
        await bob.close()
        ann_again = await self.sign_in(self.account_of(ann), "login")
        bob_again = await self.sign_in(self.account_of(bob), "url")  # bob's token was kept
        await self.seen_online(ann_again, bob.user or "")  # as users() waits for it
        after = await self.deliver(ann_again, bob_again, "after")
        reply = await self.deliver(bob_again, ann_again, "welcome back")
        self.assertLess(before.id, after.id)
        self.assertLess(after.id, reply.id)

    async def test_3_7_bad_addressee_does_not_disrupt(self) -> None:
        """Messages to non-existing users are refused to the sender; messaging goes on."""
        ann, bob = await self.users("ann", "bob")
        nobody = self.name("nobody")
        cases = [
            ("unknown user", {"to": nobody, "text": "hi"}, "unknown_user",
             f"There is no user named {nobody!r}."),
            ("no addressee", {"text": "hi"}, "missing_field", "chat.send needs the field 'to'."),
            ("not a name", {"to": "no/body", "text": "hi"}, "invalid_message",
             "Field 'to' must be 1 to 32 letters, digits, '_', '-' or '.'."),
            ("too long a name", {"to": "n" * 33, "text": "hi"}, "too_large",
             "Field 'to' has 33 characters; at most 32 are allowed."),
            ("not a string", {"to": 7, "text": "hi"}, "invalid_message",
             "Field 'to' must be a string."),
        ]  # fmt: skip
        for case, data, code, sentence in cases:
            with self.subTest(case=case):
                self.assertError(await ann.request("chat.send", data), code, sentence)
                await ann.expect_no("chat.status")
                await bob.expect_no("chat.message")
        self.assertEqual(await ann.call("chat.ack", {"id": 2**53 - 1}), {"acked": False})
        users = await bob.call("chat.users")
        self.assertEqual(self.view(users["users"]), {ann.user: True, bob.user: True})
        await self.deliver(ann, bob, "still working?")
        await self.deliver(bob, ann, "yes")


if __name__ == "__main__":
    unittest.main()
