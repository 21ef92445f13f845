"""zBifrost's fast mode (``pip install zCLI[fast]``) serves exactly as the standard mode.

Every bridge test class of zBifrost_Integration, zBifrost_Hardening and zBifrost_Plugins
runs again here with ``websocket.fast`` on and the test's event loop on uvloop (classes
named ``Fast...``), so the whole protocol, its error replies and its limits are checked
against orjson and uvloop. Then strict JSON under orjson, value for value against the
standard reader and writer, and ``zcli serve --fast`` as a process: on uvloop and orjson
when the extra is installed, a sentence and exit 2 naming the install when it is not.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import enum
import json
import os
import sys
import tempfile
import unittest
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

import websockets

from zCLI import fast, strict_json
from zTestSuite import REPO_ROOT, ServerProcess, requires_network, timeout
from zTestSuite.bridge import BridgeTestCase, bridge_cases
from zTestSuite.harness import run_zcli
from zTestSuite.requirements import requirement

from . import zBifrost_Hardening_Test, zBifrost_Integration_Test, zBifrost_Plugins_Test

RERUN: tuple[ModuleType, ...] = (
    zBifrost_Integration_Test,
    zBifrost_Hardening_Test,
    zBifrost_Plugins_Test,
)


def _fast_missing() -> str | None:
    if fast.available():
        return None
    return f"{' and '.join(fast.missing())} not installed ({fast.INSTALL})"


requires_fast = requirement(_fast_missing, "zCLI[fast]", strict=True)


class FastMode:
    """Mixed into a BridgeTestCase: its bridges in fast mode, its loop uvloop's."""

    fast = True

    @classmethod
    def setUpClass(cls) -> None:  # noqa: N802 (unittest's name)
        import uvloop

        # IsolatedAsyncioTestCase (3.11) makes each test's loop through the policy
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        cls.addClassCleanup(asyncio.set_event_loop_policy, None)
        super().setUpClass()  # type: ignore[misc]


def fast_variant(case: type[BridgeTestCase]) -> type[BridgeTestCase]:
    """``case`` again, named Fast<case>, in fast mode on uvloop."""
    name = f"Fast{case.__name__}"
    variant = type(name, (FastMode, case), {"__module__": __name__, "__qualname__": name})
    return requires_fast(variant)


def load_tests(
    loader: unittest.TestLoader, tests: unittest.TestSuite, pattern: str | None
) -> unittest.TestSuite:
    """This module's own tests, then the bridge classes of RERUN in fast mode."""
    suite = unittest.TestSuite(tests)
    for case in bridge_cases(loader, RERUN):
        suite.addTests(loader.loadTestsFromTestCase(fast_variant(case)))
    return suite


class Color(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


class Name(str):
    pass


@dataclasses.dataclass
class Point:
    x: int


def outcome(function: Any, value: Any) -> Any:
    """What ``function(value)`` gives: its result, or its exception's type and text."""
    try:
        return function(value)
    except RecursionError:
        return RecursionError
    except Exception as exc:  # noqa: BLE001 (the exception is the outcome compared)
        return type(exc), str(exc)


@requires_fast
class TestStrictJsonUnderOrjson(unittest.TestCase):
    def test_reading_gives_the_same_values_and_errors(self) -> None:
        """fast_loads reads what loads reads and refuses what it refuses, with its words."""
        texts = {
            "a request": '{"event": "dispatch", "zKey": "^Ping", "_requestId": 7}',
            "NaN": '{"x": NaN}',
            "Infinity": "[Infinity]",
            "-Infinity": "[-Infinity]",
            "an overflowing number": "[1e999]",
            "an integer past 64 bits": "[123456789012345678901234567890]",
            "an integer just past 64 bits": "[18446744073709551616]",
            "a negative integer past 63 bits": "[-9223372036854775809]",
            "the largest 64-bit integer": "[18446744073709551615]",
            "a long fraction": "[0.1234567890123456789012]",
            "a lone surrogate escape": '["\\ud800"]',
            "a surrogate pair": '["\\ud83d\\ude00"]',
            "a lone surrogate character": '["\ud800"]',
            "deep nesting": "[" * 2000 + "]" * 2000,
            "nesting orjson refuses": "[" * 1100 + "]" * 1100,
            "a trailing comma": "[1,]",
            "a control character": '"a\tb"',
            "a byte order mark": '\ufeff{"a": 1}',
            "duplicate keys": '{"a": 1, "a": 2}',
            "extra data": '{"a": 1} x',
            "negative zero": "[-0.0, -0]",
            "not JSON": "nul",
            "empty": "",
        }
        for label, text in texts.items():
            with self.subTest(label):
                expected = outcome(strict_json.loads, text)
                got = outcome(strict_json.fast_loads, text)
                self.assertEqual(repr(got), repr(expected))
                self.assertEqual(repr(outcome(strict_json.fast_loads, text.encode(
                    errors="surrogatepass"))), repr(outcome(strict_json.loads, text.encode(
                    errors="surrogatepass"))))  # fmt: skip

    def test_huge_integers_stay_exact(self) -> None:
        """An integer past 64 bits is read exactly, never as a float."""
        value = strict_json.fast_loads('{"n": 123456789012345678901234567890}')["n"]
        self.assertEqual((type(value), value), (int, 123456789012345678901234567890))

    def test_writing_gives_the_same_values_and_errors(self) -> None:
        """fast_dumps writes what dumps writes (the same values) and refuses what it refuses."""
        values = {
            "a reply": {"result": {"message": "Pong!"}, "_requestId": 7},
            "NaN": {"result": float("nan")},
            "infinity": [float("inf")],
            "minus infinity": {"a": [1, {"b": float("-inf")}]},
            "a null": {"result": None},
            "an integer past 64 bits": {"n": 2**70},
            "integer keys": {1: "a", 2: "b"},
            "float, bool and None keys": {1.5: 1, True: 2, None: 3},
            "tuple keys": {(1, 2): 3},
            "a lone surrogate": {"text": "\ud800"},
            "non-ASCII text": {"text": "café ☕"},
            "a tuple": (1, 2),
            "a set": {1, 2},
            "bytes": b"x",
            "a dataclass": Point(1),
            "a date": datetime.date(2026, 12, 5),
            "a datetime": datetime.datetime(2026, 12, 5, 1, 2, 3),
            "a str subclass": Name("x"),
            "an IntEnum": {"level": Level.HIGH},
        }
        for label, value in values.items():
            with self.subTest(label):
                expected = outcome(strict_json.dumps, value)
                got = outcome(strict_json.fast_dumps, value)
                if isinstance(expected, str):
                    self.assertIsInstance(got, str)
                    self.assertEqual(json.loads(got), json.loads(expected))
                else:
                    self.assertEqual(got, expected)

    def test_uuid_and_enum_are_the_one_difference(self) -> None:
        """orjson writes a UUID and an Enum member, which json refuses (documented)."""
        key = uuid.UUID(int=1)
        self.assertEqual(
            strict_json.fast_dumps({"id": key, "color": Color.RED}),
            '{"id":"00000000-0000-0000-0000-000000000001","color":"red"}',
        )
        for value in (key, Color.RED):
            with self.subTest(value=value), self.assertRaises(TypeError):
                strict_json.dumps(value)


@requires_fast
class TestFastBridge(FastMode, BridgeTestCase):  # type: ignore[misc]
    @requires_network
    async def test_replies_are_written_by_orjson_on_uvloop(self) -> None:
        """In fast mode the loop is uvloop's and replies are orjson's compact JSON."""
        import uvloop

        self.assertIsInstance(asyncio.get_running_loop(), uvloop.Loop)
        z = await self.start()
        ws = await self.connect(z)
        info = await asyncio.wait_for(ws.recv(), timeout(2))
        self.assertTrue(info.startswith('{"event":"connection_info","data":{'), info)
        await ws.send('{"event": "ping", "_requestId": "é"}')
        pong = await asyncio.wait_for(ws.recv(), timeout(2))
        self.assertEqual(pong, '{"event":"pong","_requestId":"é"}')

    @requires_network
    async def test_a_plugin_result_json_refuses_is_refused(self) -> None:
        """A dispatch answered with NaN or a set is an internal error, as without orjson."""
        self.write("plugins/bad.py", """
            from zCLI import Plugin

            def nan():
                return float("nan")

            def keys():
                return {1: "one"}

            PLUGIN = Plugin("bad", functions={"nan": nan, "keys": keys})
        """)  # fmt: skip
        self.write("zUI.app.yaml", """
            Main:
              ~Root*: [^NaN, ^Keys]
              ^NaN: {zFunc: "&bad.nan()"}
              ^Keys: {zFunc: "&bad.keys()"}
        """)  # fmt: skip
        z = await self.start()
        ws = await self.client(z)
        with self.assertLogs("zCLI.zBifrost", "ERROR"):
            reply = await self.request(ws, {"event": "dispatch", "zKey": "^NaN", "_requestId": 1})
        self.assertEqual(
            reply,
            {"error": "The reply could not be encoded as JSON.", "code": "internal",
             "_requestId": 1},
        )  # fmt: skip
        reply = await self.request(ws, {"event": "dispatch", "zKey": "^Keys", "_requestId": 2})
        self.assertEqual(reply, {"result": {"1": "one"}, "_requestId": 2})


def hidden_fast_extra() -> tuple[tempfile.TemporaryDirectory[str], dict[str, str]]:
    """A folder that shadows uvloop and orjson with modules that fail to import, and
    the environment that puts it first on the path: an install without the extra."""
    folder = tempfile.TemporaryDirectory(prefix="ztest-no-fast-")
    for name in fast.PACKAGES:
        Path(folder.name, f"{name}.py").write_text(
            f"raise ImportError('{name} is hidden: an install without zCLI[fast]')\n"
        )
    path = os.pathsep.join(p for p in (folder.name, os.environ.get("PYTHONPATH", "")) if p)
    return folder, {"PYTHONPATH": path}


def serve(*args: str, env: dict[str, str] | None = None) -> ServerProcess:
    """``zcli --log-level INFO serve`` the Level 1 demo on free ports, without auth."""
    app = ServerProcess(
        [sys.executable, "-m", "zCLI", "--log-level", "INFO", "serve",
         str(REPO_ROOT / "demos/Level_1_Menu"), "--ws-port", "0", "--http-port", "0",
         "--no-auth", *args],
        env={"ZCLI_LOGGER": "INFO", **(env or {})},
    )  # fmt: skip
    return app


class TestServeFast(unittest.TestCase):
    @requires_network
    @requires_fast
    def test_serve_fast_runs_on_uvloop_and_orjson(self) -> None:
        """``zcli serve --fast`` serves on uvloop with orjson, on the sans-I/O adapter (fast
        mode's default), and says so at INFO."""
        app = serve("--fast")
        self.addCleanup(app.stop)
        url = app.wait_for(
            r"zBifrost listening on (ws://\S+) "
            r"\(JSON: orjson; event loop: uvloop; adapter: sansio\)"
        )

        async def ping() -> str:
            async with websockets.connect(url.group(1)) as ws:
                await asyncio.wait_for(ws.recv(), timeout(2))  # connection_info
                await ws.send('{"event": "ping", "_requestId": 1}')
                return str(await asyncio.wait_for(ws.recv(), timeout(2)))

        self.assertEqual(asyncio.run(ping()), '{"event":"pong","_requestId":1}')

    def test_serve_fast_without_the_extra_names_the_install(self) -> None:
        """Without uvloop and orjson, --fast exits 2 with a sentence naming the install."""
        folder, env = hidden_fast_extra()
        self.addCleanup(folder.cleanup)
        done = run_zcli("serve", str(REPO_ROOT / "demos/Level_1_Menu"), "--fast", env=env)
        self.assertEqual(done.returncode, 2, done.stderr)
        self.assertEqual(
            done.stderr,
            "zcli: error: 1 configuration problem: websocket.fast: fast mode needs uvloop "
            "and orjson, which are not installed: pip install zCLI[fast].\n",
        )

    @requires_network
    def test_without_the_extra_the_default_is_the_standard_mode(self) -> None:
        """Without the extra and without --fast, zcli serve runs as before: json, asyncio."""
        folder, env = hidden_fast_extra()
        self.addCleanup(folder.cleanup)
        app = serve(env=env)
        self.addCleanup(app.stop)
        app.wait_for(r"zBifrost listening on ws://\S+ \(JSON: json; event loop: asyncio\.")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(unittest.main())
