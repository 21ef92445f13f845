"""zTestSuite's database servers: real ``redis-server`` and PostgreSQL processes on free
ports, started, reached by real clients, stopped and started again by PID; and the
skip (or, under ZTEST_STRICT=1, the failure) that names a missing binary and package."""

from __future__ import annotations

import os
import signal
import tempfile
import unittest
from pathlib import Path
from unittest import mock

try:
    import psycopg
    import redis
except ImportError:  # requires_service skips (or fails under ZTEST_STRICT=1), saying so
    pass

from zTestSuite import PostgresServer, RedisServer, requires_network, requires_service
from zTestSuite import services as svc
from zTestSuite.harness import timeout

MISSING_PG = (
    "initdb and postgres and createdb not found (Debian package postgresql: "
    "apt-get install postgresql, or make services)"
)
MISSING_REDIS = (
    "redis-server not found (Debian package redis-server: apt-get install redis-server, "
    "or make services)"
)


def _redis(server: RedisServer) -> redis.Redis:
    return redis.Redis(host=server.host, port=server.port, socket_timeout=timeout(2))


@requires_network
@requires_service("redis")
class RedisServerTest(unittest.TestCase):
    def test_start_answers_ping_and_stop_frees_the_port(self) -> None:
        """A started redis-server answers PING on its port; stopped, the port refuses."""
        with RedisServer() as server:
            server.start()
            self.assertTrue(_redis(server).ping())
            self.assertEqual(server.stop(), 0)
            self.assertFalse(server.running)
            with self.assertRaises(redis.ConnectionError):
                _redis(server).ping()

    def test_stop_then_start_on_the_same_port_without_persistence(self) -> None:
        """Started again, it listens on the same port, and (no persistence) holds nothing."""
        with RedisServer() as server:
            server.start()
            port = server.port
            _redis(server).set("k", "v")
            server.stop()
            server.start()
            self.assertEqual(server.port, port)
            self.assertIsNone(_redis(server).get("k"))

    def test_persist_keeps_keys_across_a_kill(self) -> None:
        """With persist, a key written before a SIGKILL is there after the restart."""
        with RedisServer(persist=True) as server:
            server.start()
            _redis(server).set("k", "v")
            self.assertEqual(server.stop(signal.SIGKILL), -signal.SIGKILL)
            server.start()
            self.assertEqual(_redis(server).get("k"), b"v")

    def test_url(self) -> None:
        """The URL names the host, the port and database 0."""
        with RedisServer() as server:
            server.start()
            self.assertEqual(server.url, f"redis://127.0.0.1:{server.port}/0")


@requires_network
@requires_service("postgresql")
class PostgresServerTest(unittest.TestCase):
    server: PostgresServer

    @classmethod
    def setUpClass(cls) -> None:
        cls.server = PostgresServer()
        cls.addClassCleanup(cls.server.close)
        cls.server.start()

    def setUp(self) -> None:
        if not self.server.running:  # a test that stopped it and failed
            self.server.start()

    def test_tcp_and_socket_reach_the_same_database(self) -> None:
        """A database created here is reached over TCP and over the Unix socket."""
        url = self.server.create_database("tcp_and_socket")
        self.assertEqual(url, f"postgresql://zcli@127.0.0.1:{self.server.port}/tcp_and_socket")
        with psycopg.connect(url, autocommit=True) as db:
            db.execute("CREATE TABLE t (v TEXT)")
            db.execute("INSERT INTO t VALUES ('here')")
        with psycopg.connect(self.server.socket_url("tcp_and_socket")) as db:
            self.assertEqual(db.execute("SELECT v FROM t").fetchall(), [("here",)])
            self.assertEqual(db.execute("SELECT current_user").fetchone(), ("zcli",))

    def test_stop_refuses_and_start_brings_committed_rows_back(self) -> None:
        """Stopped (fast shutdown), connections are refused; started again on the same
        port, what was committed is there."""
        url = self.server.create_database("stop_start")
        port = self.server.port
        with psycopg.connect(url, autocommit=True) as db:
            db.execute("CREATE TABLE t (v INTEGER)")
            db.execute("INSERT INTO t VALUES (1)")
        self.assertEqual(self.server.stop(), 0)
        with self.assertRaises(psycopg.OperationalError):
            psycopg.connect(url, connect_timeout=2).close()
        self.server.start()
        self.assertEqual(self.server.port, port)
        with psycopg.connect(url) as db:
            self.assertEqual(db.execute("SELECT v FROM t").fetchall(), [(1,)])

    def test_a_connection_is_cut_when_it_stops(self) -> None:
        """A connection open when the server stops fails on its next query."""
        url = self.server.create_database("cut")
        with psycopg.connect(url, autocommit=True) as db:
            self.assertEqual(db.execute("SELECT 1").fetchone(), (1,))
            self.server.stop()
            with self.assertRaises(psycopg.OperationalError):
                db.execute("SELECT 1")
        self.server.start()

    def test_fsync_is_off_unless_durable(self) -> None:
        """A test cluster does not sync (a killed server still keeps what it committed)."""
        with psycopg.connect(self.server.url()) as db:
            self.assertEqual(db.execute("SHOW fsync").fetchone(), ("off",))
        self.assertIn("fsync=off", self.server.command())

    def test_a_database_name_must_be_plain(self) -> None:
        """create_database refuses a name that would need quoting."""
        with self.assertRaisesRegex(ValueError, r"^'a b' is not a plain database name\.$"):
            self.server.create_database("a b")


class MissingServiceTest(unittest.TestCase):
    """No network needed: these only look for binaries."""

    def setUp(self) -> None:
        empty = tempfile.TemporaryDirectory()
        self.addCleanup(empty.cleanup)
        self.empty = Path(empty.name)

    def test_reasons_name_the_binary_and_the_package(self) -> None:
        """With nothing on the PATH nor in Debian's folder, each service says what is
        missing and which package has it."""
        for service, reason in (("redis", MISSING_REDIS), ("postgresql", MISSING_PG)):
            with self.subTest(service=service):
                self.assertEqual(svc.service_missing(service, "", self.empty), reason)

    def test_debian_folder_is_searched_newest_first(self) -> None:
        """PostgreSQL's binaries are found in /usr/lib/postgresql/<newest>/bin."""
        for version in ("9.6", "15", "16"):
            folder = self.empty / version / "bin"
            folder.mkdir(parents=True)
            for name in ("initdb", "postgres", "createdb"):
                (folder / name).write_text("")
        found = svc.service_binaries("postgresql", "", self.empty)
        self.assertEqual(found["initdb"], self.empty / "16" / "bin" / "initdb")
        self.assertIsNone(svc.service_missing("postgresql", "", self.empty))

    @requires_network  # without loopback requires_service skips for that reason first
    def test_a_missing_service_skips_or_fails_under_strict(self) -> None:
        """requires_service skips with the reason, and fails under ZTEST_STRICT=1."""

        @requires_service("postgresql")
        def needs_postgres() -> str:
            return "ran"

        with (
            mock.patch.dict(os.environ, {"PATH": ""}),
            mock.patch.object(svc, "DEBIAN_POSTGRES", self.empty),
        ):
            with mock.patch.dict(os.environ, {"ZTEST_STRICT": "0"}):
                with self.assertRaises(unittest.SkipTest) as skipped:
                    needs_postgres()
                self.assertEqual(str(skipped.exception), f"requires postgresql: {MISSING_PG}")
            with mock.patch.dict(os.environ, {"ZTEST_STRICT": "1"}):
                with self.assertRaises(AssertionError) as failed:
                    needs_postgres()
                self.assertEqual(
                    str(failed.exception),
                    f"requires postgresql: {MISSING_PG} (ZTEST_STRICT=1 forbids skipping)",
                )

    def test_a_missing_client_package_is_named(self) -> None:
        """Without its Python client a service's tests skip, naming the package."""
        with mock.patch.object(svc.importlib.util, "find_spec", return_value=None):
            self.assertEqual(
                svc.client_missing("postgresql"),
                "the Python package psycopg is not installed (pip install 'zCLI[test]')",
            )
        self.assertIsNone(svc.client_missing("redis"))

    def test_an_unknown_service_is_refused_at_decoration(self) -> None:
        """A misspelt service name is an error where the decorator is written."""
        with self.assertRaisesRegex(
            ValueError, r"^There is no service named 'mysql'; known: \['postgresql', 'redis'\]\.$"
        ):
            requires_service("mysql")


if __name__ == "__main__":
    unittest.main()
