"""zWalker in Terminal mode: exact transcripts, driven through stdin like a user's pipe."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from zCLI import __version__
from zTestSuite import REPO_ROOT, requires_source_tree, zTestCase

MENU = """
Main:
  Hello: {zDisplay: {event: header, label: Welcome}}
  ~Root*: [^Ping, Settings, ^Name, ^Fail!]
  ^Ping: Pong!
  Settings:
    Menu*: [^Theme]
    ^Theme: dark
  ^Name:
    zDialog:
      fields: [{name: who, prompt: Who}]
      onSubmit: Noted.
  ^Fail!: {zFunc: "&w.refuse()"}
"""

ROOT_MENU = """\
== Main ==
  1) Ping
  2) Settings
  3) Name
  4) Fail
  5) stop"""

SETTINGS_MENU = """\
== Main > Settings ==
  1) Theme
  2) zBack
  3) stop"""

PLUGIN = """
from zCLI import ActionFailed, Plugin

def refuse():
    raise ActionFailed("Refused on purpose.")

PLUGIN = Plugin("w", functions={"refuse": refuse})
"""


class WalkerCase(zTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.write("plugins/w.py", PLUGIN)
        self.zui = self.write("zUI.menu.yaml", MENU)


class TestTerminalWalk(WalkerCase):
    def test_bounce_then_stop(self) -> None:
        """A number runs the choice, the menu comes back, stop exits 0."""
        status, out = self.walk(self.zui, "1\nstop\n")
        self.assertEqual(status, 0)
        self.assertLinesEqual(
            out,
            f"""
            == Welcome ==
            {ROOT_MENU}
            > 1
            Pong!
            {ROOT_MENU}
            > stop
        """.replace(ROOT_MENU, ROOT_MENU.replace("\n", "\n            ")),
        )

    def test_choice_by_name_and_end_of_input(self) -> None:
        """A key name is a choice; end of input exits 0."""
        status, out = self.walk(self.zui, "Ping\n^Ping\n")
        self.assertEqual(status, 0)
        self.assertEqual(out.count("Pong!"), 2)
        self.assertTrue(out.endswith("> \n"))

    def test_submenu_and_back(self) -> None:
        """A submenu opens with a trail and offers zBack; zBack returns."""
        status, out = self.walk(self.zui, "2\n1\nzBack\n5\n")
        self.assertEqual(status, 0)
        expected = "\n".join(
            [
                "== Welcome ==",
                ROOT_MENU,
                "> 2",
                SETTINGS_MENU,
                "> 1",
                "dark",
                SETTINGS_MENU,
                "> zBack",
                ROOT_MENU,
                "> 5",
                "",
            ]
        )
        self.assertEqual(out, expected)

    def test_anchor_offers_no_back(self) -> None:
        """An anchored menu (~Root*) lists no zBack even when opened by a link."""
        self.write("zUI.a.yaml", 'Start:\n  Go: {zLink: "@.zUI.b"}\n')
        self.write("zUI.b.yaml", "B:\n  ~Menu*: [^X]\n  ^X: x\n")
        status, out = self.walk(self.workspace / "zUI.a.yaml", "1\nzBack\n")
        self.assertEqual(status, 0)
        self.assertLinesEqual(
            out,
            """
            == Start > B ==
              1) X
              2) stop
            > 1
            x
            == Start > B ==
              1) X
              2) stop
            > zBack
            [error] 'zBack' is not a choice; type a number from 1 to 2 or a name.
            == Start > B ==
              1) X
              2) stop
            >
        """.rstrip()
            + " ",
        )

    def test_dialog_prompts_each_field(self) -> None:
        """A dialog prompts on stdout and runs onSubmit; stop cancels."""
        status, out = self.walk(self.zui, "3\nAda\n3\nstop\n")
        self.assertEqual(status, 0)
        self.assertIn("> 3\nWho: Ada\nNoted.\n", out)
        self.assertIn("> 3\nWho: stop\n[error] The dialog was cancelled.\n", out)

    def test_required_key_repeats(self) -> None:
        """Key! shows the failure and asks again until stop."""
        status, out = self.walk(self.zui, "4\n\nstop\n")
        self.assertEqual(status, 0)
        self.assertIn(
            "> 4\n[error] Refused on purpose.\nPress Enter to try again, or type stop: \n"
            "[error] Refused on purpose.\nPress Enter to try again, or type stop: stop\n"
            "[error] Fail was stopped before it succeeded.\n",
            out,
        )

    def test_bad_choice(self) -> None:
        """An unknown choice is an error line and the menu comes back."""
        status, out = self.walk(self.zui, "9\nstop\n")
        self.assertEqual(status, 0)
        self.assertIn(
            "> 9\n[error] '9' is not a choice; type a number from 1 to 5 or a name.\n" + ROOT_MENU,
            out,
        )

    def test_script_block_without_menu_ends(self) -> None:
        """A block with no menu runs its keys in order and the walk ends with 0."""
        status, out = self.walk(
            "Only:\n  A: one\n  B: {zDisplay: {event: success, content: two}}\n", ""
        )
        self.assertEqual((status, out), (0, "one\n[ok] two\n"))

    def test_internal_error_keeps_walking(self) -> None:
        """A plugin bug is reported in one line and the menu comes back."""
        self.write(
            "plugins/boom.py",
            "from zCLI import Plugin\n\ndef boom():\n"
            "    raise ZeroDivisionError('x')\n\nPLUGIN = Plugin('boom', "
            "functions={'boom': boom})\n",
        )
        with self.assertLogs("zCLI.zFunc", "ERROR") as logs:
            status, out = self.walk(
                "M:\n  Menu*: [^B]\n  ^B: {zFunc: '&boom.boom()'}\n", "1\nstop\n"
            )
        self.assertEqual(status, 0)
        self.assertIn("> 1\n[error] boom.boom failed with an internal error.\n== M ==", out)
        self.assertEqual(logs.records[0].getMessage(), "zFunc boom.boom raised ZeroDivisionError")


class TestCommandLine(WalkerCase):
    def test_python_m_zcli_run(self) -> None:
        """`python -m zCLI run FILE` walks with stdin from a pipe."""
        done = self.zcli("run", str(self.zui), stdin="1\nstop\n")
        self.assertEqual((done.returncode, done.stderr), (0, ""))
        self.assertIn("> 1\nPong!\n", done.stdout)

    def test_console_script_and_block_option(self) -> None:
        """The installed `zcli` command starts in --block."""
        zcli = shutil.which("zcli", path=str(Path(sys.executable).parent))
        self.assertIsNotNone(zcli, "pip install -e . puts zcli next to the interpreter")
        import subprocess

        done = subprocess.run(
            [zcli, "run", str(self.zui), "--block", "Main.Settings"],
            input="1\n",
            capture_output=True,
            text=True,
            timeout=60,
        )
        self.assertEqual(done.returncode, 0)
        self.assertEqual(
            done.stdout,
            "== Settings ==\n  1) Theme\n  2) stop\n> 1\ndark\n"
            "== Settings ==\n  1) Theme\n  2) stop\n> \n",
        )

    @requires_source_tree
    def test_level1_demo_piped(self) -> None:
        """The README's printf pipe walks the Level 1 demo."""
        done = self.zcli(
            "run",
            str(REPO_ROOT / "demos/Level_1_Menu/zUI.level1.yaml"),
            stdin="1\n2\nhello\nstop\n",
        )
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertIn("> 1\nPong!\n", done.stdout)
        self.assertIn('> 2\nSay something: hello\n{\n  "echo": "hello"\n}\n', done.stdout)

    @requires_source_tree
    def test_demo_zui(self) -> None:
        """zUI/zUI.demo.yaml walks to the end of input."""
        done = self.zcli("run", str(REPO_ROOT / "zUI/zUI.demo.yaml"), stdin="1\n3\n2\n1\n")
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertIn("> 1\nPong!\n", done.stdout)
        self.assertIn("> 2\nzCLI walks zUI files in a terminal and over WebSocket.\n", done.stdout)

    def test_version_and_help(self) -> None:
        """--version prints the version; --help lists the run command."""
        done = self.zcli("--version")
        self.assertEqual((done.returncode, done.stdout), (0, f"zcli {__version__}\n"))
        done = self.zcli("--help")
        self.assertEqual(done.returncode, 0)
        self.assertIn("run                 walk a zUI file in the terminal", done.stdout)

    def test_bad_file_exits_2_with_the_reason(self) -> None:
        """A broken zUI file stops start-up with one line naming the problem."""
        bad = self.write("zUI.bad.yaml", "Main:\n  ^~X: x\n")
        done = self.zcli("run", str(bad))
        self.assertEqual(done.returncode, 2)
        self.assertEqual(
            done.stderr,
            f"zcli: error: {bad.resolve()}, line 2, block 'Main', "
            "key '^~X': key '^~X' has two prefix modifiers; use one of ^ or ~\n",
        )
        self.assertEqual(done.stdout, "")

    def test_user_add(self) -> None:
        """zcli user add stores a scrypt hash that signs in."""
        from zCLI.auth import zAuth
        from zCLI.config import AuthConfig

        done = self.zcli(
            "user",
            "add",
            "ada",
            "--role",
            "admin",
            "--workspace",
            str(self.workspace),
            "--password-stdin",
            stdin="s3cret\n",
        )
        users = self.workspace / ".zcli" / "users.yaml"
        self.assertEqual(
            (done.returncode, done.stdout, done.stderr),
            (0, f"User 'ada' (admin) saved in {users}.\n", ""),
        )
        self.assertNotIn("s3cret", users.read_text())
        auth = zAuth(AuthConfig(), self.workspace / ".zcli")
        self.addCleanup(auth.close)
        self.assertEqual(
            (auth.login("ada", "s3cret").user, auth.login("ada", "s3cret").role), ("ada", "admin")
        )

    def test_user_remove(self) -> None:
        """zcli user remove deletes a user; removing an unknown one exits 1 saying so."""
        ws = str(self.workspace)
        self.zcli("user", "add", "ada", "--workspace", ws, "--password-stdin", stdin="pw\n")
        done = self.zcli("user", "remove", "ada", "--workspace", ws)
        self.assertEqual(
            (done.returncode, done.stdout, done.stderr),
            (0, "User 'ada' removed; their tokens are refused from now on.\n", ""),
        )
        again = self.zcli("user", "remove", "ada", "--workspace", ws)
        self.assertEqual(
            (again.returncode, again.stdout, again.stderr),
            (1, "", "zcli: error: there is no user 'ada'.\n"),
        )

    def test_no_command(self) -> None:
        """zcli with no command shows usage and exits 2."""
        done = self.zcli()
        self.assertEqual(done.returncode, 2)
        self.assertTrue(done.stderr.startswith("usage: zcli"))
