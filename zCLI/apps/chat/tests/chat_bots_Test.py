"""zChat's bots against a real local HTTP server that speaks the OpenAI
chat-completions API (plan 002, section 8, at the bot's own interface; the
server-level tests are chat_plan002_bots)."""

from __future__ import annotations

import asyncio
import threading
import unittest

from zCLI.apps.chat.bots import BotUnavailable, EchoBot, OpenAIBot, bot_from_environment
from zCLI.apps.chat.tests.completions import KEY, CompletionsServer
from zTestSuite import requires_network, timeout


@requires_network
class TestOpenAIBot(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self) -> None:
        self.api = CompletionsServer()
        self.addCleanup(self.api.close)
        self.bot = OpenAIBot(self.api.url, "test-model", KEY, name="gpt", timeout=timeout(2))
        self.addAsyncCleanup(self.bot.close)

    async def test_prompt_is_forwarded_to_the_api(self) -> None:
        """A user's prompt reaches the API as a chat-completions request with the key."""
        await self.bot.reply("ada", "What is zCLI?")
        self.assertEqual(
            self.api.requests,
            [
                {
                    "path": "/v1/chat/completions",
                    "authorization": f"Bearer {KEY}",
                    "body": {
                        "model": "test-model",
                        "messages": [{"role": "user", "content": "What is zCLI?"}],
                        "user": "ada",
                    },
                }
            ],
        )

    async def test_answer_is_passed_back(self) -> None:
        """The API's answer is what the bot replies."""
        self.assertEqual(await self.bot.reply("ada", "hi"), "ada asked: hi")

    async def test_each_user_gets_their_own_answer_concurrently(self) -> None:
        """Five users prompting at once are all in flight together, and each gets the
        answer to their own prompt."""
        users = ["ada", "bob", "cy", "dee", "eve"]
        self.api.barrier = threading.Barrier(len(users))  # breaks unless all are in flight
        answers = await asyncio.gather(*(self.bot.reply(u, f"question of {u}") for u in users))
        self.assertEqual(answers, [f"{u} asked: question of {u}" for u in users])

    async def test_failures_are_a_clear_error_without_the_key(self) -> None:
        """An error status, a malformed answer, a timeout and an unreachable server each
        raise bot_unavailable with a sentence that does not carry the key."""
        cases = [
            ("status", 500, None, "its server answered HTTP 500"),
            ("body", 200, b"{not json", "its server sent an answer that is not chat-completions"),
            (
                "body",
                200,
                b'{"choices": [{"message": {"content": 7}}]}',
                "its server sent an answer without text",
            ),
        ]
        for _kind, status, body, why in cases:
            with self.subTest(why=why):
                self.api.status, self.api.body = status, body
                with self.assertRaises(BotUnavailable) as caught:
                    await self.bot.reply("ada", "hi")
                self.assertEqual(
                    caught.exception.message, f"The bot gpt cannot answer right now: {why}."
                )
                self.assertEqual(caught.exception.code, "bot_unavailable")
                self.assertNotIn(KEY, caught.exception.message)
        self.api.status, self.api.body = 200, None
        self.api.hold = threading.Event()
        slow = OpenAIBot(self.api.url, "m", KEY, timeout=0.2)
        self.addAsyncCleanup(slow.close)
        with self.assertRaises(BotUnavailable) as caught:
            await slow.reply("ada", "hi")
        self.assertEqual(
            caught.exception.message, "The bot gpt cannot answer right now: no answer within 0.2 s."
        )
        self.api.hold.set()
        closed = OpenAIBot("http://127.0.0.1:1/v1", "m", KEY)
        self.addAsyncCleanup(closed.close)
        with self.assertRaises(BotUnavailable) as caught:
            await closed.reply("ada", "hi")
        self.assertEqual(
            caught.exception.message,
            "The bot gpt cannot answer right now: its server is unreachable (ConnectError).",
        )


class TestBotsWithoutNetwork(unittest.IsolatedAsyncioTestCase):
    async def test_echo_bot(self) -> None:
        """The echo bot answers with the text it was sent."""
        self.assertEqual(await EchoBot().reply("ada", "hello \u2728"), "hello \u2728")

    def test_bot_from_environment(self) -> None:
        """ZCHAT_BOT_* configure the OpenAI-compatible bot; without a base URL there is none."""
        self.assertIsNone(bot_from_environment({}))
        bot = bot_from_environment(
            {
                "ZCHAT_BOT_BASE_URL": "http://llm.local/v1",
                "ZCHAT_BOT_MODEL": "m1",
                "ZCHAT_BOT_KEY": "k",
                "ZCHAT_BOT_NAME": "helper",
                "ZCHAT_BOT_TIMEOUT": "5",
            }
        )
        assert bot is not None
        self.assertEqual(
            (bot.base_url, bot.model, bot.api_key, bot.name, bot.timeout),
            ("http://llm.local/v1", "m1", "k", "helper", 5.0),
        )
        self.assertNotIn("'k'", repr(bot).replace("api_key='k'", ""))
