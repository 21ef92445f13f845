"""Plan 002, section 7, on PostgreSQL: the database server stopped mid-traffic.

``zcli chat -s --db postgresql://...`` on a real PostgreSQL server that the test stops
(a fast shutdown, as an operator or a failover does) while users are connected and a
sender is writing. Connected users are signed out (close 1013), signing in gets a clear
error while it lasts, the chat server serves again by itself once PostgreSQL is back,
and every message reported stored reaches its addressee.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys

import websockets

from zCLI.apps.chat.tests import chat_plan002_storage_Test as section7
from zCLI.apps.chat.tests.plan002 import CHAT, ChatClient, Sent
from zCLI.apps.chat.tests.postgres import OnPostgres, fresh_database
from zTestSuite import free_port, requires_network, requires_service, timeout

__all__ = ["CHAT", "PostgresOutageTest"]

UNAVAILABLE, LOST = section7.UNAVAILABLE, section7.LOST


@requires_network
@requires_service("postgresql")
class PostgresOutageTest(OnPostgres, section7.OutageCase):
    own_server_only = "it stops the PostgreSQL server its own chat server uses"
    server_options = (*section7.OutageCase.server_options, "--max-rate", "100000")
    accounts_in_database = True  # zcli chat --db postgresql:// keeps zAuth's users there

    async def asyncSetUp(self) -> None:
        type(self).database_url = await asyncio.to_thread(fresh_database, self.postgres)
        await super().asyncSetUp()

    async def stop_postgres(self) -> None:
        self.assertEqual(await asyncio.to_thread(self.postgres.stop), 0)

    async def start_postgres(self) -> None:
        await asyncio.to_thread(self.postgres.start)

    async def traffic(self, sender: ChatClient, to: str, accepted: list[Sent]) -> list[str]:
        """``sender`` sends to ``to`` one message after another until its connection
        closes; each accepted one goes to ``accepted``. The texts it sent whose fate it
        was not told (refused with storage_error, or cut off by the close)."""
        unknown: list[str] = []
        for number in range(100_000):
            text = f"traffic {number}"
            try:
                reply = await sender.request("chat.send", {"to": to, "text": text})
            except websockets.ConnectionClosed:  # closed before it went
                return unknown
            except AssertionError:  # closed before its reply came (else a real failure)
                if not sender.closed:
                    raise
                unknown.append(text)
                return unknown
            if "result" in reply:
                assert sender.user is not None
                result = reply["result"]
                accepted.append(Sent(result["id"], result["ts"], sender.user, to, text))
            else:
                self.assertError(reply, "storage_error", UNAVAILABLE)
                unknown.append(text)
        raise AssertionError("the sender was never signed out")

    async def test_7_1_postgresql_stopped_mid_traffic_signs_everyone_out(self) -> None:
        """PostgreSQL stopped while ann writes to cid (offline) and bob idles: both are
        closed 1013; when it is back, cid gets every message ann was told was accepted
        (and stored), in order with their ts, and nothing she never sent."""
        ann, cid, first = await self.stored_for_later()
        bob = await self.user("bob")
        accepted: list[Sent] = [first]
        writer = asyncio.create_task(self.traffic(ann, cid.name, accepted))
        await ann.wait_for(
            lambda: True if len(accepted) > 20 or writer.done() else None, "20 messages stored"
        )
        if writer.done():
            self.fail(f"the sender stopped before the outage: {writer.result()}")
        await self.stop_postgres()
        await self.assertSignedOut(bob)
        self.assertEqual(await ann.wait_closed(5), (1013, UNAVAILABLE))
        unknown = await writer
        await self.server_says(LOST)
        await self.start_postgres()
        await self.server_says(section7.BACK)
        client = await self.sign_in(cid)
        offline = await client.expect("chat.offline")
        count = offline["data"]["count"]
        got = [await client.expect("chat.message") for _ in range(count)]
        # Every accepted message, in order; past them at most the ones whose fate the
        # sender was not told, committed before the connection went.
        self.assertEqual(got[: len(accepted)], [sent.message(offline=True) for sent in accepted])
        extra = [push["data"]["text"] for push in got[len(accepted) :]]
        self.assertEqual(extra, unknown[: len(extra)])
        ids = [push["data"]["id"] for push in got]
        self.assertEqual(ids, sorted(set(ids)))

    async def test_7_3_sign_in_while_postgresql_is_stopped_gets_a_clear_error(self) -> None:
        """While PostgreSQL is stopped, signing in (token or password) gets the sentence
        and close 1013, and creating an account gets storage_error; once it is started
        again, the stored message arrives and signing in works."""
        await self.check_sign_in_refused(self.stop_postgres, self.start_postgres)

    async def test_7_4_postgresql_killed_and_restarted(self) -> None:
        """PostgreSQL killed (SIGKILL: it recovers from its log on start): the same
        sign-out, and the stored message is there afterwards."""
        ann, cid, sent = await self.stored_for_later()
        await asyncio.to_thread(self.postgres.stop, signal.SIGKILL)
        await self.assertSignedOut(ann)
        await self.server_says(LOST)
        await self.start_postgres()
        await self.assertComesBack(cid, sent)

    async def test_schema_is_created_at_start_with_its_version(self) -> None:
        """The chat server created the schema at start, recorded as version 1, once
        however often it starts on the database."""
        import psycopg  # the test extra's; requires_service has checked it is there

        await self.restart()
        with psycopg.connect(self.database_url or "") as db:
            self.assertEqual(db.execute("SELECT version FROM schema_version").fetchall(), [(1,)])
            tables = db.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = 'public' ORDER BY table_name"
            ).fetchall()
        self.assertEqual(
            [name for (name,) in tables],
            ["counters", "messages", "room_messages", "room_names", "rooms", "schema_version",
             "users", "zcli_users", "zcli_users_schema"],
        )  # fmt: skip

    async def test_a_postgresql_server_that_does_not_answer_stops_the_start(self) -> None:
        """zcli chat -s with a PostgreSQL URL nothing answers exits 2 with the sentence
        (the password replaced by ***), before it listens."""
        port = free_port()
        url = f"postgresql://zcli:secret@127.0.0.1:{port}/nowhere"
        command = [sys.executable, "-m", "zCLI", "chat", "-s", "0", "--db", url,
                   "--workspace", str(self.own.folder)]  # fmt: skip
        done = await asyncio.to_thread(
            subprocess.run, command, capture_output=True, text=True, timeout=timeout(10)
        )
        self.assertEqual(
            (done.returncode, done.stdout, done.stderr),
            (2, "", f"zcli chat: error: The chat database postgresql://zcli:***@127.0.0.1:"
                    f"{port}/nowhere cannot be opened: connection failed: connection to server "
                    f'at "127.0.0.1", port {port} failed: Connection refused.\n'),
        )  # fmt: skip
