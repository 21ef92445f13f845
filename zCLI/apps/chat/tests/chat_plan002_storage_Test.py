"""Plan 002, section 7: the database unavailable (docs/chat.md "Storage unavailable").

zChat's embedded configuration keeps everything in one SQLite file, so "the database
becomes unavailable" is that file locked by another process past the busy timeout, or
removed. Connected users are signed out (close 1013), signing in gets a clear error
while it lasts, and the server serves again by itself, having lost nothing it
acknowledged. The suite needs a server of its own: it takes the server's file away.
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import ClassVar

from zCLI.apps.chat.tests.plan002 import CHAT, SHORT, Account, ChatClient, ChatTestCase, Sent
from zTestSuite import requires_network, timeout

__all__ = ["CHAT", "OutageCase", "StorageTest"]

UNAVAILABLE = "The chat storage is unavailable; try again later."
LOST = "the chat storage is unavailable: signing everyone out"
BACK = "the chat storage is back: serving again"
# zAuth's sentence when the accounts themselves are in the database that went away
USERS_UNAVAILABLE = "The user store cannot be read right now; try again later."


class OutageCase(ChatTestCase):
    # True when the accounts are in the database taken away (PostgreSQL): zAuth then
    # refuses the sign-in itself, before the chat is asked
    accounts_in_database: ClassVar[bool] = False
    """Section 7's steps and asserts, whatever takes the database away (a SQLite lock
    here, a stopped PostgreSQL server in chat_plan002_storage_postgres); no tests."""

    server_per_test = True
    server_options: ClassVar[Sequence[str]] = ("--ack-timeout", f"{SHORT:g}")
    server_env = {"ZCHAT_STORAGE_CHECK": f"{timeout(0.05):g}"}

    async def server_says(self, line: str) -> None:
        """The server logged ``line`` (its own record of the outage or the recovery)."""
        assert self.own.process is not None
        await asyncio.to_thread(self.own.process.wait_for, line, 5)

    async def stored_for_later(self) -> tuple[ChatClient, Account, Sent]:
        """ann online; a message from her to cid (offline), reported stored."""
        ann = await self.user("ann")
        cid = await self.register("cid")
        sent = await self.send(ann, cid.name, "kept through the outage")
        await self.expect_status(ann, sent, "stored")
        return ann, cid, sent

    async def assertSignedOut(self, *clients: ChatClient) -> None:  # noqa: N802
        """Each connection is closed 1013 with the sentence, after no error frame."""
        for client in clients:
            self.assertEqual(await client.wait_closed(5), (1013, UNAVAILABLE))
            self.assertEqual([p for p in client.pushes if "error" in p], [])

    async def assertComesBack(self, cid_account: Account, sent: Sent) -> None:  # noqa: N802
        """Once the server is back, cid signs in and gets the stored message."""
        await self.server_says(BACK)
        cid = await self.sign_in(cid_account)
        self.assertEqual(await cid.expect("chat.offline"), {"event": "chat.offline",
                                                            "data": {"count": 1}})  # fmt: skip
        await self.receive(cid, sent, offline=True)

    async def check_sign_in_refused(
        self, take_away: Callable[[], Awaitable[None]], give_back: Callable[[], Awaitable[None]]
    ) -> None:
        """While the database is away, signing in (token or password) gets the sentence
        (zAuth's when the accounts are in it too, before any login or connection_info)
        and close 1013, and creating an account gets storage_error; once it is back,
        the stored message arrives and signing in works again."""
        ann, cid, sent = await self.stored_for_later()
        account = self.account_of(ann)
        await take_away()
        await self.assertSignedOut(ann)
        await self.server_says(LOST)
        refusal = USERS_UNAVAILABLE if self.accounts_in_database else UNAVAILABLE
        for how in ("url", "login"):
            with self.subTest(how=how):
                client = await self.connect(how, token=account.token if how == "url" else None)
                if how == "login":
                    await client.send({"event": "login", "username": account.name,
                                       "password": account.password})  # fmt: skip
                    if not self.accounts_in_database:
                        self.assertEqual((await client.expect("login"))["user"], account.name)
                if not self.accounts_in_database:
                    self.assertConnectionInfo(await client.expect("connection_info"), account.name)
                self.assertEqual(
                    await client.expect_error(),
                    {"error": refusal, "code": "storage_error", "_requestId": None},
                )
                self.assertEqual(await client.wait_closed(), (1013, refusal))
        fresh = await self.connect("new account")
        reply = await fresh.request("chat.register", {"username": self.name("dee"),
                                                      "password": "pw"})  # fmt: skip
        self.assertError(reply, "storage_error", UNAVAILABLE)
        await give_back()
        await self.assertComesBack(cid, sent)
        again = await self.sign_in(account)
        self.assertEqual(again.user, account.name)


@requires_network
class StorageTest(OutageCase):
    own_server_only = "it takes the server's database file away, which needs the server's folder"

    @property
    def database(self) -> Path:
        return self.own.folder / "chat.sqlite3"

    def lock(self) -> sqlite3.Connection:
        """Another process's write transaction on the file, held until rolled back."""
        holder = sqlite3.connect(self.database, isolation_level=None, timeout=timeout(2))
        holder.execute("BEGIN IMMEDIATE")
        self.addCleanup(holder.close)
        return holder

    async def test_7_1_database_unavailable_signs_everyone_out(self) -> None:
        """The database locked by another process: every connected user is closed 1013
        "try again later"; when the lock goes, the stored message is still there."""
        ann, cid, sent = await self.stored_for_later()
        bob = await self.user("bob")
        holder = self.lock()
        await self.assertSignedOut(ann, bob)
        await self.server_says(LOST)
        holder.rollback()
        await self.assertComesBack(cid, sent)

    async def test_7_2_database_file_removed_signs_everyone_out(self) -> None:
        """The database file removed (the embedded configuration's second way to lose
        the store; Redis comes with the distributed one): everyone is signed out, and
        the file put back brings the service and the stored message back."""
        ann, cid, sent = await self.stored_for_later()
        aside = self.database.with_name("aside.sqlite3")
        self.database.rename(aside)
        await self.assertSignedOut(ann)
        aside.rename(self.database)
        await self.assertComesBack(cid, sent)

    async def test_7_3_sign_in_while_unavailable_gets_a_clear_error(self) -> None:
        """While the database is unavailable, signing in (token or password) gets the
        sentence and close 1013, and creating an account gets storage_error."""
        holders: list[sqlite3.Connection] = []

        async def take_away() -> None:
            holders.append(self.lock())

        async def give_back() -> None:
            holders[0].rollback()

        await self.check_sign_in_refused(take_away, give_back)

    async def test_a_database_that_cannot_be_opened_stops_the_start(self) -> None:
        """zcli chat -s with a database path that cannot be created exits 2 with the
        sentence, before it listens."""
        blocker = self.own.folder / "blocker"
        blocker.write_text("a file, not a folder")
        command = [sys.executable, "-m", "zCLI", "chat", "-s", "0", "--db",
                   str(blocker / "chat.sqlite3"), "--workspace", str(self.own.folder)]  # fmt: skip
        done = await asyncio.to_thread(
            subprocess.run, command, capture_output=True, text=True, timeout=timeout(10)
        )
        self.assertEqual(
            (done.returncode, done.stdout, done.stderr),
            (2, "", f"zcli chat: error: The chat database {blocker / 'chat.sqlite3'} cannot "
                    f"be opened: [Errno 17] File exists: '{blocker}'.\n"),
        )  # fmt: skip
