"""Plan 002, section 1: authorization, black-box over the chat server's WebSocket and
HTTP API (docs/chat.md "Accounts and signing in", docs/protocol.md "zAuth")."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import unittest
from typing import Any

from zCLI.apps.chat.tests.plan002 import (
    CHAT,
    CHAT_HTTP,
    CHAT_TOKEN_TTL,
    REQUIRED,
    SHORT,
    SIGNED_OUT,
    ChatClient,
    ChatTestCase,
    token_claims,
)
from zTestSuite import requires_network, timeout

__all__ = ["AuthTest", "ExpiredTokenTest", "CHAT", "CHAT_HTTP", "CHAT_TOKEN_TTL"]

WRONG = "Unknown user or wrong password."
REVOKED = "The token has been revoked."
EXPIRED = "The token has expired."


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def forged(claims: dict[str, Any], key: bytes | None) -> str:
    """A JWT with ``claims``: HS256 with ``key`` (not the server's), or ``alg: none``."""
    header = {"alg": "HS256" if key is not None else "none", "typ": "JWT"}
    signing = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    if key is None:
        return signing + "."
    return f"{signing}.{_b64(hmac.new(key, signing.encode(), hashlib.sha256).digest())}"


def with_claims(token: str, **changes: Any) -> str:
    """``token`` with some claims changed and its signature kept."""
    header, _payload, signature = token.split(".")
    claims = {**token_claims(token), **changes}
    return f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"


@requires_network
class AuthTest(ChatTestCase):
    server_options = ("--auth-timeout", f"{timeout(1):g}")  # sign-up hashes first

    async def test_1_1_sign_in_happy_path(self) -> None:
        """Sign in, happy path: sign-up, token (auth, ?token=, header), password (login, HTTP)."""
        watcher = await self.user("watcher")
        with self.subTest(how="chat.register then auth on one connection"):
            signup = await self.user("signup")
            await self.expect_online(watcher, self.name("signup"), True)
            users = await signup.call("chat.users")
            self.assertEqual(set(users), {"users"})
            self.assertEqual(
                self.view(users["users"]), {self.name("signup"): True, self.name("watcher"): True}
            )
        for how in ("auth", "url", "bearer", "login"):
            with self.subTest(how=how):
                account = await self.register(how)
                client = await self.sign_in(account, how)
                await self.expect_online(watcher, account.name, True)
                online = await client.call("chat.online")
                self.assertIn(account.name, online["users"])
                await client.close()
                await self.expect_online(watcher, account.name, False)
        with self.subTest(how="POST /api/login, then ?token="):
            account = await self.register("http")
            credentials = {"username": account.name, "password": account.password}
            status, body = await self.http("POST", "/api/login", credentials)
            self.assertEqual(
                (status, body), (200, {"token": body.get("token"), "user": account.name,
                                       "role": "user"})
            )  # fmt: skip
            client = await self.sign_in(account, "url", token=body["token"])
            self.assertEqual((await client.call("chat.rooms")), {"rooms": []})

    async def test_1_2_sign_out_revokes_the_token(self) -> None:
        """Sign out revokes the token: refused after, on a new connection and over HTTP."""
        with self.subTest(how="logout"):
            account = await self.register("ann")
            leaving = await self.sign_in(account, "url")
            same_token = await self.sign_in(account, "auth", arrives=False)
            other_token = await self.sign_in(account, "login", arrives=False)
            self.assertResult(await leaving.request("logout"), {"message": SIGNED_OUT})
            self.assertEqual(await leaving.wait_closed(), (1008, SIGNED_OUT))
            self.assertEqual(await same_token.wait_closed(), (1008, REVOKED))
            await self.assertTokenRefused(account.token, REVOKED)
            self.assertError(await other_token.request("auth", token=account.token),
                             "unauthorized", REVOKED)  # fmt: skip
            self.assertEqual(self.view((await other_token.call("chat.users"))["users"]),
                             {account.name: True})  # fmt: skip
        with self.subTest(how="POST /api/logout"):
            account = await self.register("bob")
            holder = await self.sign_in(account, "url")
            signed_out = await self.http("POST", "/api/logout", token=account.token)
            self.assertEqual(signed_out, (200, {"message": SIGNED_OUT}))
            self.assertEqual(await holder.wait_closed(), (1008, REVOKED))
            await self.assertTokenRefused(account.token, REVOKED)
            again = await self.sign_in(account, "login")
            # ann is still online: her connection with another token stays open
            self.assertEqual(self.view((await again.call("chat.users"))["users"]),
                             {account.name: True, self.name("ann"): True})  # fmt: skip

    async def test_1_3_wrong_or_another_users_password_refused(self) -> None:
        """A wrong password, another user's password or an unknown user cannot sign in."""
        ann = await self.register("ann", "ann-password")
        bob = await self.register("bob", "bob-password")
        cases = [
            ("wrong password", ann.name, "not-anns-password"),
            ("another user's password", ann.name, bob.password),
            ("unknown user", self.name("nobody"), ann.password),
        ]
        for case, username, password in cases:
            with self.subTest(case=case, over="login"):
                client = await self.connect(case)
                await client.send({"event": "login", "username": username, "password": password})
                await self.assertRefused(client, WRONG)
            with self.subTest(case=case, over="POST /api/login"):
                answer = await self.http(
                    "POST", "/api/login", {"username": username, "password": password}
                )
                self.assertEqual(answer, (401, {"error": WRONG, "code": "unauthorized"}))
        with self.subTest(case="the right password"):
            client = await self.sign_in(ann, "login")
            self.assertEqual(self.view((await client.call("chat.users"))["users"]),
                             {ann.name: True, bob.name: False})  # fmt: skip

    async def test_1_5_invalid_and_blank_tokens_declined(self) -> None:
        """Messages sent with an invalid or blank token are declined, each with its sentence."""
        holder = await self.user("holder")
        victim = await self.register("victim")
        assert holder.token is not None
        claims = token_claims(holder.token)
        cases = [
            ("blank", "", "The token is empty.", False),
            ("not a JWT", "not-a-jwt", "The token is malformed.", True),
            ("unsigned (alg none)", forged(claims, None), "The token is malformed.", True),
            ("signed with another key", forged(claims, b"k" * 32),
             "The token signature is invalid.", True),
            ("claims changed to another user", with_claims(holder.token, sub=victim.name),
             "The token signature is invalid.", True),
        ]  # fmt: skip
        for case, token, sentence, header in cases:
            with self.subTest(case=case):
                await self.assertTokenRefused(token, sentence, header)
                self.assertError(await holder.request("auth", token=token), "unauthorized",
                                 sentence)  # fmt: skip
                self.assertEqual(self.view((await holder.call("chat.users"))["users"]),
                                 {holder.user: True, victim.name: False})  # fmt: skip

    async def test_1_6_socket_serves_only_with_a_valid_jwt(self) -> None:
        """A client can use the chat socket only with a valid JWT (chat.register aside)."""
        # a given server closes after its own --auth-timeout, 10 s by default
        silent_units = 3 if self.server is not None else 6
        with self.subTest(case="silent"):
            silent = await self.connect("silent")
            await self.assertRefused(silent, REQUIRED, units=silent_units)
        for case, frame in (
            ("ping first", {"event": "ping"}),
            ("chat.users first", {"event": "chat.users", "data": {}}),
            ("auth without a token", {"event": "auth"}),
        ):
            with self.subTest(case=case):
                client = await self.connect(case)
                await client.send(frame)
                await self.assertRefused(client, REQUIRED)
        with self.subTest(case="chat.register, then chat.online"):
            client = await self.connect("registers")
            await self.register_on(client, "registers")
            await client.send({"event": "chat.online", "data": {}})
            await self.assertRefused(client, REQUIRED)
        with self.subTest(case="nine public requests"):
            taken = self.name("registers")
            client = await self.connect("stays anonymous")
            for _ in range(8):
                reply = await client.request("chat.register", {"username": taken, "password": "x"})
                self.assertError(reply, "user_exists", f"There is already a user named {taken!r}.")
            await client.send({"event": "chat.register",
                               "data": {"username": taken, "password": "x"}})  # fmt: skip
            await self.assertRefused(
                client, "Sign in after at most 8 requests: send auth or login."
            )
        with self.subTest(case="valid JWT"):
            account = await self.register("valid")
            client = await self.sign_in(account, "url")
            self.assertEqual(await client.call("chat.keepalive"), {})

    async def test_1_7_server_data_needs_a_valid_jwt(self) -> None:
        """A valid JWT is required to get server data: users, online users, rooms, history."""
        owner = await self.user("owner")
        room = self.name("room")
        self.assertEqual(await owner.call("chat.room.create", {"room": room}), {"room": room})
        revoked = await self.register("revoked")
        status = await self.http("POST", "/api/logout", token=revoked.token)
        self.assertEqual(status, (200, {"message": SIGNED_OUT}))
        assert owner.token is not None
        foreign = forged(token_claims(owner.token), b"k" * 32)
        requests = [("chat.users", {}), ("chat.online", {}), ("chat.rooms", {}),
                    ("chat.room.history", {"room": room})]  # fmt: skip
        for event, data in requests:
            frame = {"event": event, "data": data, "_requestId": 1}
            with self.subTest(event=event, token="none"):
                client = await self.connect(event)
                await client.send(frame)
                await self.assertRefused(client, REQUIRED)
            with self.subTest(event=event, token="signed with another key"):
                client = await self.connect(event, token=foreign)
                await send_if_open(client, frame)
                await self.assertRefused(client, "The token signature is invalid.")
            with self.subTest(event=event, token="revoked"):
                client = await self.connect(event)
                await client.send({"event": "auth", "token": revoked.token})
                await send_if_open(client, frame)
                await self.assertRefused(client, REVOKED)
        with self.subTest(token="valid"):
            self.assertEqual(self.view((await owner.call("chat.users"))["users"]),
                             {owner.user: True, revoked.name: False})  # fmt: skip
            online = await owner.call("chat.online")
            self.assertEqual([u for u in online["users"] if self.mine(u)], [owner.user])
            self.assertEqual(await owner.call("chat.rooms"), {"rooms": [room]})
            self.assertEqual(await owner.call("chat.room.history", {"room": room}),
                             {"messages": []})  # fmt: skip


async def send_if_open(client: ChatClient, frame: dict[str, Any]) -> None:
    """Send unless the server has already closed the connection (a refused token)."""
    try:
        await client.send(frame)
    except Exception:  # noqa: BLE001 (ConnectionClosed: the refusal is what the test reads)
        pass


@requires_network
class ExpiredTokenTest(ChatTestCase):
    """Our server issues tokens that live SHORT*2 seconds (``--token-ttl``); a given one
    says its lifetime with CHAT_TOKEN_TTL."""

    TTL = 2 * SHORT
    server_options = ("--token-ttl", f"{TTL:g}")
    needs_target = CHAT_TOKEN_TTL

    async def test_1_4_expired_token_declined(self) -> None:
        """Messages sent with an expired token are declined; the password still signs in."""
        given = CHAT_TOKEN_TTL.value if CHAT.value is not None else None
        ttl = float(given) if given is not None else self.TTL
        account = await self.register("ann")
        claims = token_claims(account.token)
        self.assertAlmostEqual(claims["exp"] - claims["iat"], ttl, delta=1.0)
        fresh = await self.sign_in(account, "url")
        await fresh.close()
        await self.wait_expired(account.token)
        await self.assertTokenRefused(account.token, EXPIRED)
        again = await self.sign_in(account, "login")
        self.assertError(await again.request("auth", token=account.token), "unauthorized", EXPIRED)
        await again.ping()
        self.assertFalse(again.closed)


if __name__ == "__main__":
    unittest.main()
