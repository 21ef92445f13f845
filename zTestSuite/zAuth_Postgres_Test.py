"""zAuth's accounts in PostgreSQL (``auth.users_database``): shared by every process of a
service, checked at start, a clear error while the server is away and back by itself
when it returns. A real PostgreSQL server (Debian's), stopped and started mid-test."""

from __future__ import annotations

import itertools
import os
import re

from zCLI import ConfigError, load_config
from zCLI.auth import USERS_UNAVAILABLE
from zCLI.users import PostgresUsers
from zTestSuite import PostgresServer, requires_network, requires_service
from zTestSuite.auth import AuthCase
from zTestSuite.harness import run_zcli

SECRET = "a-shared-secret-of-the-service-0123456789"
_NUMBERS = itertools.count(1)


@requires_network
@requires_service("postgresql")
class TestUsersInPostgres(AuthCase):
    postgres: PostgresServer

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.postgres = PostgresServer()
        cls.addClassCleanup(cls.postgres.close)
        cls.postgres.start()

    def setUp(self) -> None:
        super().setUp()
        if not self.postgres.running:  # a test that stopped it ended early
            self.postgres.start()
        self.url = self.postgres.create_database(f"zauth_{os.getpid()}_{next(_NUMBERS)}")

    def process(self, name: str) -> object:
        """A zAuth as one process of the service has it: its own state folder, the
        shared secret and the shared users database."""
        return self.auth(self.workspace / name, secret=SECRET, users_database=self.url)

    async def test_processes_share_accounts_and_tokens(self) -> None:
        """A user added by one process signs in on another; removed there, the first
        process refuses the token it issued."""
        first, second = self.process("a"), self.process("b")
        first.add_user("ann", "correct horse", "admin")  # type: ignore[attr-defined]
        identity = await second.login_async("ann", "correct horse")  # type: ignore[attr-defined]
        self.assertEqual((identity.user, identity.role), ("ann", "admin"))
        self.assertEqual(first.verify(identity.token).user, "ann")  # type: ignore[attr-defined]
        self.assertTrue(second.remove_user("ann"))  # type: ignore[attr-defined]
        with self.assertRefused("unauthorized", "The token's user no longer exists."):
            first.verify(identity.token)  # type: ignore[attr-defined]

    async def test_an_outage_is_a_clear_error_and_service_comes_back(self) -> None:
        """PostgreSQL stopped: sign-in and token checks say the store cannot be read;
        started again: the same zAuth signs in without a restart."""
        auth = self.process("a")
        auth.add_user("bob", "battery staple", "user")  # type: ignore[attr-defined]
        token = (await auth.login_async("bob", "battery staple")).token  # type: ignore[attr-defined]
        self.postgres.stop()
        with self.assertStorageError(USERS_UNAVAILABLE):
            await auth.login_async("bob", "battery staple")  # type: ignore[attr-defined]
        with self.assertStorageError(USERS_UNAVAILABLE):
            auth.verify(token)  # type: ignore[attr-defined]
        self.postgres.start()
        self.assertEqual(auth.verify(token).user, "bob")  # type: ignore[attr-defined]
        identity = await auth.login_async("bob", "battery staple")  # type: ignore[attr-defined]
        self.assertEqual(identity.user, "bob")

    def test_a_database_that_cannot_be_reached_stops_the_start(self) -> None:
        """The error names the database without its password, and the driver's reason."""
        self.postgres.stop()
        url = self.url.replace("zcli@", "zcli:hunter2@")
        with self.assertRaises(Exception) as caught:
            PostgresUsers(url)
        shown = url.replace(":hunter2@", ":***@")
        self.assertEqual(type(caught.exception).__name__, "StorageError")
        self.assertRegex(
            str(caught.exception),
            rf"^Cannot open the users database {re.escape(shown)}: connection failed: .+\.$",
        )
        self.assertNotIn("hunter2", str(caught.exception))

    def test_the_table_is_created_once_beside_an_apps_own(self) -> None:
        """Two stores opening one database create its table once; a third sees the
        users the first saved."""
        first, second = PostgresUsers(self.url), PostgresUsers(self.url)
        self.addCleanup(first.close)
        self.addCleanup(second.close)
        first.put("cy", "scrypt$hash", "user")
        self.assertEqual(second.get("cy"), ("scrypt$hash", "user"))
        self.assertEqual(second.get("nobody"), None)
        self.assertTrue(second.remove("cy"))
        self.assertFalse(first.remove("cy"))
        self.assertEqual(first.where, self.url)

    def test_zcli_user_add_says_where_it_saved(self) -> None:
        """`zcli user add` with ZCLI_AUTH_USERS_DATABASE saves there and says so."""
        env = {"ZCLI_AUTH_USERS_DATABASE": self.url, "ZCLI_AUTH_SECRET": SECRET}
        done = run_zcli(
            "user", "add", "dee", "--role", "user", "--password-stdin", stdin="open sesame 1\n",
            cwd=self.workspace, env=env,
        )  # fmt: skip
        self.assertEqual((done.returncode, done.stderr), (0, ""), done.stdout)
        self.assertEqual(done.stdout.splitlines()[-1], f"User 'dee' (user) saved in {self.url}.")
        store = PostgresUsers(self.url)
        self.addCleanup(store.close)
        self.assertEqual(store.get("dee")[1], "user")  # type: ignore[index]


class TestUsersDatabaseConfig(AuthCase):
    def test_only_a_postgresql_url_is_accepted(self) -> None:
        """Anything but postgresql://HOST/DB is refused, without showing a password."""
        for value, shown in (
            ("mysql://u:secret@h/db", "mysql://u:***@h/db"),
            ("postgresql://zcli@127.0.0.1:5432", "postgresql://zcli@127.0.0.1:5432"),
            ("users.sqlite3", "users.sqlite3"),
        ):
            with self.subTest(value=value):
                with self.assertRaises(ConfigError) as caught:
                    load_config({"zWorkspace": str(self.workspace),
                                 "auth": {"users_database": value}}, environ={})  # fmt: skip
                self.assertEqual(
                    caught.exception.problems,
                    [
                        "zSpark auth.users_database: expected postgresql://HOST:PORT/DB, "
                        f"got {shown!r}"
                    ],
                )
