"""Chat bots: users whose answers come from code (plan 002, section 8).

A bot is any object with a ``name`` and ``async reply(sender, text) -> str``. Each call
is independent, so the chat server can await several users' prompts at once and each
gets the answer to their own. ``EchoBot`` answers with the text it was sent.
``OpenAIBot`` asks any server that speaks the OpenAI chat-completions API (base URL,
model and key from ``ZCHAT_BOT_BASE_URL``, ``ZCHAT_BOT_MODEL``, ``ZCHAT_BOT_KEY``);
its failures (unreachable, timeout, an error status, a malformed answer) raise
``BotUnavailable``, a ``RequestError`` whose sentence never carries the key.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from zCLI import RequestError

__all__ = ["Bot", "BotUnavailable", "EchoBot", "OpenAIBot", "bot_from_environment"]

MAX_ANSWER = 16_384  # characters of a bot's answer passed on to the user


class Bot(Protocol):
    name: str

    async def reply(self, sender: str, text: str) -> str: ...


class BotUnavailable(RequestError):
    code = "bot_unavailable"

    def __init__(self, bot: str, why: str) -> None:
        super().__init__(f"The bot {bot} cannot answer right now: {why}.", self.code)


@dataclass
class EchoBot:
    name: str = "echo"

    async def reply(self, sender: str, text: str) -> str:
        return text


@dataclass
class OpenAIBot:
    """chat-completions over HTTP: one POST per prompt, the sender as ``user``."""

    base_url: str
    model: str
    api_key: str = ""
    name: str = "gpt"
    timeout: float = 30.0
    _client: httpx.AsyncClient | None = field(default=None, repr=False)

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
            self._client = httpx.AsyncClient(
                base_url=self.base_url.rstrip("/") + "/", headers=headers, timeout=self.timeout
            )
        return self._client

    async def reply(self, sender: str, text: str) -> str:
        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": text}],
            "user": sender,
        }
        try:
            response = await self._http().post("chat/completions", json=body)
        except httpx.TimeoutException:
            raise BotUnavailable(self.name, f"no answer within {self.timeout:g} s") from None
        except httpx.HTTPError as exc:
            why = f"its server is unreachable ({type(exc).__name__})"
            raise BotUnavailable(self.name, why) from None
        if response.status_code != 200:
            raise BotUnavailable(self.name, f"its server answered HTTP {response.status_code}")
        return _answer(self.name, response)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def _answer(bot: str, response: httpx.Response) -> str:
    try:
        data: Any = response.json()
        content = data["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise BotUnavailable(
            bot, "its server sent an answer that is not chat-completions"
        ) from None
    if not isinstance(content, str):
        raise BotUnavailable(bot, "its server sent an answer without text")
    return content[:MAX_ANSWER]


def bot_from_environment(environ: Mapping[str, str] | None = None) -> OpenAIBot | None:
    """The OpenAI-compatible bot configured by ``ZCHAT_BOT_*``, or None when no base
    URL is set (the server then offers only the echo bot)."""
    env = os.environ if environ is None else environ
    base_url = env.get("ZCHAT_BOT_BASE_URL", "")
    if not base_url:
        return None
    return OpenAIBot(
        base_url=base_url,
        model=env.get("ZCHAT_BOT_MODEL", "gpt-4o-mini"),
        api_key=env.get("ZCHAT_BOT_KEY", ""),
        name=env.get("ZCHAT_BOT_NAME", "gpt"),
        timeout=float(env.get("ZCHAT_BOT_TIMEOUT", "30")),
    )
