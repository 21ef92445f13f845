"""zAuth: sign-in, tokens, revocation and the user stores, through real bridges."""

from __future__ import annotations

import json
import sqlite3
import time

import jwt

from zCLI.auth import ANONYMOUS, zAuth
from zTestSuite import requires_network
from zTestSuite.bridge import AuthTestCase, expected_info, without_session_id


class TestTokens(AuthTestCase):
    @requires_network
    async def test_token_sources(self) -> None:
        """A token is accepted from ?token=, a Bearer header or a first auth message."""
        z = await self.start_auth()
        token = z.auth.login("ada", "s3cret").token
        expected = expected_info("ada", "admin", authenticated=True)
        by_query = await self.connect(z, path=f"/?token={token}")
        self.assertEqual(without_session_id(await self.recv(by_query)), expected)
        by_header = await self.connect(z, additional_headers={"Authorization": f"Bearer {token}"})
        self.assertEqual(without_session_id(await self.recv(by_header)), expected)
        by_message = await self.connect(z)
        await by_message.send(json.dumps({"event": "auth", "token": token}))
        self.assertEqual(without_session_id(await self.recv(by_message)), expected)

    @requires_network
    async def test_login_as_first_message(self) -> None:
        """A first login message signs in, returns a token, then connection_info."""
        z = await self.start_auth()
        ws = await self.connect(z)
        await ws.send(json.dumps({"event": "login", "username": "ada", "password": "s3cret"}))
        login = await self.recv(ws)
        self.assertEqual((login["event"], login["user"], login["role"]), ("login", "ada", "admin"))
        self.assertEqual(z.auth.verify(login["token"]).user, "ada")
        self.assertEqual(
            without_session_id(await self.recv(ws)),
            expected_info("ada", "admin", authenticated=True),
        )

    @requires_network
    async def test_refused_tokens_close_1008(self) -> None:
        """Missing, expired, revoked, forged or malformed: close 1008 with the reason."""
        z = await self.start_auth()
        revoked = z.auth.login("ada", "s3cret")
        z.auth.revoke(revoked)
        table = [
            ("/", "Authentication required: send a token or log in first."),
            (f"/?token={self.forge(z, exp=time.time() - 5)}", "The token has expired."),
            (f"/?token={revoked.token}", "The token has been revoked."),
            (f"/?token={self.forge(z, secret='x' * 32)}", "The token signature is invalid."),
            ("/?token=not.a.jwt", "The token is malformed."),
            ("/?token=", "The token is empty."),
            (
                f"/?token={jwt.encode({'sub': 'ada'}, z.auth.secret)}",
                "The token lacks the 'exp' claim.",
            ),
        ]
        for path, reason in table:
            with self.subTest(reason=reason):
                ws = await self.connect(z, path=path)
                if path == "/":
                    await ws.send(json.dumps({"event": "dispatch", "zKey": "^Ping"}))
                await self.assertClosed(ws, 1008, reason)

    @requires_network
    async def test_wrong_password_at_sign_in(self) -> None:
        """A wrong password as the first message closes 1008 without saying which part."""
        z = await self.start_auth()
        ws = await self.connect(z)
        await ws.send(json.dumps({"event": "login", "username": "ada", "password": "nope"}))
        await self.assertClosed(ws, 1008, "Unknown user or wrong password.")

    @requires_network
    async def test_sign_out_revokes_and_survives_restart(self) -> None:
        """logout revokes the token; a new server on the same workspace still refuses it."""
        z = await self.start_auth()
        token = z.auth.login("ada", "s3cret").token
        ws = await self.client(z, path=f"/?token={token}")
        self.assertEqual(
            await self.request(ws, {"event": "logout"}),
            {"result": {"message": "Signed out."}, "_requestId": 0},
        )
        await self.assertClosed(ws, 1008, "Signed out.")
        restarted = await self.start(websocket={"require_auth": True})
        again = await self.connect(restarted, path=f"/?token={token}")
        await self.assertClosed(again, 1008, "The token has been revoked.")

    async def test_passwords_are_scrypt_hashed(self) -> None:
        """The users file keeps scrypt hashes, never the password."""
        auth = zAuth(self.make().config.auth, self.workspace / ".zcli")
        self.addCleanup(auth.close)
        auth.add_user("bo", "pa55word")
        text = (self.workspace / ".zcli" / "users.yaml").read_text()
        self.assertNotIn("pa55word", text)
        self.assertRegex(text, r"password: scrypt\$16384\$8\$1\$")
        self.assertEqual(auth.login("bo", "pa55word").user, "bo")
        self.assertEqual(
            ANONYMOUS.to_json(), {"authenticated": False, "user": "anonymous", "role": "guest"}
        )


class TestUsersInTheAppDatabase(AuthTestCase):
    @requires_network
    async def test_sqlite_user_store(self) -> None:
        """With users_file naming a SQLite file, users live in its users table."""
        z = await self.start_auth(auth={"users_file": "app.sqlite3"})
        with sqlite3.connect(self.workspace / ".zcli" / "app.sqlite3") as db:
            rows = db.execute("SELECT name, role, password FROM users").fetchall()
        self.assertEqual([(name, role) for name, role, _hash in rows], [("ada", "admin")])
        self.assertRegex(rows[0][2], r"^scrypt\$16384\$8\$1\$")
        self.assertFalse((self.workspace / ".zcli" / "users.yaml").exists())
        ws = await self.connect(z)
        await ws.send(json.dumps({"event": "login", "username": "ada", "password": "s3cret"}))
        self.assertEqual((await self.recv(ws))["user"], "ada")
        self.assertEqual(
            without_session_id(await self.recv(ws)),
            expected_info("ada", "admin", authenticated=True),
        )
