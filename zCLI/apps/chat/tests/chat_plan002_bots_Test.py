"""Plan 002, section 8: a chat bot on the server (docs/chat.md "Bots"), black-box on
the chat side. The bot is the user ``gpt``, backed by the OpenAI-compatible bot; the
third-party API it asks is a real local HTTP server speaking chat-completions, started
by the suite, so the suite needs a server of its own (its bot is pointed at that API).
"""

from __future__ import annotations

import threading
from typing import Any

from zCLI.apps.chat.tests.completions import KEY, CompletionsServer
from zCLI.apps.chat.tests.plan002 import CHAT, SHORT, ChatClient, ChatTestCase, Sent
from zTestSuite import requires_network, timeout

__all__ = ["CHAT", "BotsTest"]

BOT = "gpt"


@requires_network
class BotsTest(ChatTestCase):
    own_server_only = "its bot must ask the chat-completions server the suite starts"
    api: CompletionsServer

    @classmethod
    def setUpClass(cls) -> None:
        cls.api = CompletionsServer()
        cls.addClassCleanup(cls.api.close)
        cls.server_options = ("--ack-timeout", f"{SHORT:g}", "--bot-url", cls.api.url,
                              "--bot-model", "test-model", "--bot-name", BOT)  # fmt: skip
        cls.server_env = {"ZCHAT_BOT_KEY": KEY, "ZCHAT_BOT_TIMEOUT": f"{timeout(3):g}"}
        super().setUpClass()

    async def asyncSetUp(self) -> None:
        await super().asyncSetUp()
        self.api.requests.clear()
        self.api.barrier, self.api.status, self.api.body = None, 200, None

    async def prompt(self, client: ChatClient, text: str) -> Sent:
        """``text`` sent to the bot; the reply is the usual ``{"id", "ts"}``."""
        return await self.send(client, BOT, text)

    async def answer(self, client: ChatClient, prompt: Sent) -> dict[str, Any]:
        """The sender hears "delivered" for the prompt, then gets the bot's answer as a
        direct message, which it acknowledges; the answer's data."""
        await self.expect_status(client, prompt, "delivered")
        message = await client.expect("chat.message")
        self.assertEqual(set(message["data"]), {"id", "from", "text", "ts"}, message)
        self.assertEqual(message["data"]["from"], BOT)
        self.assertGreater(message["data"]["id"], prompt.id)
        ack = {"id": message["data"]["id"]}
        self.assertEqual(await client.call("chat.ack", ack), {"acked": True})
        return dict(message["data"])

    async def test_8_1_prompt_is_forwarded_to_the_api(self) -> None:
        """A user's message to the bot reaches the API as one chat-completions request:
        the model, the prompt, the user's name and the key."""
        ann = await self.user("ann")
        sent = await self.prompt(ann, "What is zCLI?")
        await self.answer(ann, sent)
        self.assertEqual(
            self.api.requests,
            [{"path": "/v1/chat/completions", "authorization": f"Bearer {KEY}",
              "body": {"model": "test-model",
                       "messages": [{"role": "user", "content": "What is zCLI?"}],
                       "user": ann.user}}],
        )  # fmt: skip

    async def test_8_2_answer_is_forwarded_to_the_user(self) -> None:
        """The API's answer comes to the user from the bot, and to nobody else."""
        ann, bob = await self.users("ann", "bob")
        sent = await self.prompt(ann, "hello")
        self.assertEqual((await self.answer(ann, sent))["text"], f"{ann.user} asked: hello")
        await bob.expect_no("chat.message")
        await ann.expect_no("chat.message")

    async def test_8_3_each_user_gets_their_own_answer_concurrently(self) -> None:
        """Three users prompting at once are in flight at the API together (its barrier
        breaks otherwise), and each gets the answer to their own prompt."""
        users = await self.users("ann", "bob", "cid")
        self.api.barrier = threading.Barrier(len(users))
        prompts = [await self.prompt(user, f"question of {user.user}") for user in users]
        for user, prompt in zip(users, prompts, strict=True):
            answer = await self.answer(user, prompt)
            self.assertEqual(answer["text"], f"{user.user} asked: question of {user.user}")
        self.assertEqual(len(self.api.requests), len(users))

    async def test_a_failing_api_is_reported_to_the_sender(self) -> None:
        """An API that answers HTTP 500: the sender's status is "failed" with a
        sentence that names the bot and never the key."""
        ann = await self.user("ann")
        self.api.status = 500
        sent = await self.prompt(ann, "anyone?")
        push = await ann.expect("chat.status")
        self.assertEqual(
            push,
            {"event": "chat.status", "data": {
                "id": sent.id, "status": "failed", "code": "bot_unavailable",
                "error": f"The bot {BOT} cannot answer right now: its server answered HTTP 500."}},
        )  # fmt: skip
        await ann.expect_no("chat.message")

    async def test_the_bot_is_a_user_always_online(self) -> None:
        """The bot is listed among the users, online, and cannot be registered."""
        ann = await self.user("ann")
        users = (await ann.call("chat.users"))["users"]
        self.assertIn({"user": BOT, "online": True}, users)
        self.assertIn(BOT, (await ann.call("chat.online"))["users"])
        fresh = await self.connect("new account")
        reply = await fresh.request("chat.register", {"username": BOT, "password": "pw"})
        self.assertError(reply, "user_exists", f"There is already a user named {BOT!r}.")
