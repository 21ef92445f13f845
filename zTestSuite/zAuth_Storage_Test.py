"""zAuth's state files: checked at start with real reads and writes, and every failed
write at run time an error, never a silent success. Real files, made unusable in ways
that bind root too (a folder replaced by a file, a file-size limit as a full disk)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path

from zCLI.auth import zAuth
from zCLI.config import AuthConfig
from zTestSuite import REPO_ROOT
from zTestSuite.auth import AuthCase, file_size_limit
from zTestSuite.harness import run_zcli

STORES = ("users.yaml", "app.sqlite3")


class TestStateChecks(AuthCase):
    def broken_states(self) -> list[tuple[str, Callable[[Path], tuple[Path, dict, str]]]]:
        """(label, break a fresh root folder -> (state folder, auth config, expected error))."""

        def parent_is_a_file(root: Path) -> tuple[Path, dict, str]:
            root.write_text("")
            state = root / ".zcli"
            return state, {}, f"Cannot create the state folder {state}: not a directory."

        def state_is_a_file(root: Path) -> tuple[Path, dict, str]:
            root.mkdir()
            (root / ".zcli").write_text("")
            return (
                root / ".zcli",
                {},
                f"Cannot use the state folder {root / '.zcli'}: it is not a folder.",
            )

        def in_state(name: str, content: str | None, config: dict, error: str) -> Callable:
            def make(root: Path) -> tuple[Path, dict, str]:
                state = root / ".zcli"
                path = state / name
                state.mkdir(parents=True)
                if content is None:
                    path.mkdir()
                else:
                    path.write_text(content)
                return state, config, error.format(path=path)

            return make

        garbage = "this is not a database, only text " * 20
        cases = [
            ("parent is a file", parent_is_a_file),
            ("state folder is a file", state_is_a_file),
            (
                "empty secret",
                in_state("secret", "\n", {}, "Cannot use the secret file {path}: it is empty."),
            ),
            (
                "secret is a folder",
                in_state("secret", None, {}, "Cannot read the secret file {path}: is a directory."),
            ),
            (
                "revocations not a database",
                in_state(
                    "revoked_tokens.sqlite3",
                    garbage,
                    {},
                    "Cannot write the revocation database {path}: file is not a database.",
                ),
            ),
            (
                "revocations is a folder",
                in_state(
                    "revoked_tokens.sqlite3",
                    None,
                    {},
                    "Cannot open the revocation database {path}: unable to open database file.",
                ),
            ),
            (
                "users file not YAML",
                in_state(
                    "users.yaml",
                    "users:\n  ada: [1,\n",
                    {},
                    "Cannot read the users file {path}: not valid YAML at line 3.",
                ),
            ),
            (
                "users file not a mapping",
                in_state(
                    "users.yaml",
                    "- ada\n",
                    {},
                    "Cannot read the users file {path}: "
                    "expected 'users:' holding a mapping of names.",
                ),
            ),
            (
                "users file is a folder",
                in_state(
                    "users.yaml", None, {}, "Cannot read the users file {path}: is a directory."
                ),
            ),
            (
                "users database not a database",
                in_state(
                    "app.sqlite3",
                    garbage,
                    {"users_file": "app.sqlite3"},
                    "Cannot write the users database {path}: file is not a database.",
                ),
            ),
        ]
        if os.geteuid() != 0:  # modes bind everyone but root; the cases above bind root too

            def read_only(root: Path) -> tuple[Path, dict, str]:
                state = root / ".zcli"
                state.mkdir(parents=True, mode=0o500)
                self.addCleanup(state.chmod, 0o700)
                return state, {}, f"Cannot write in the state folder {state}: permission denied."

            cases.append(("read-only state folder", read_only))
        return cases

    def test_unusable_state_is_refused_at_start(self) -> None:
        """A state folder, secret, revocation database or users file that fails stops zAuth."""
        for label, breaks in self.broken_states():
            with self.subTest(label):
                state, config, error = breaks(self.workspace / label.replace(" ", "-"))
                with self.assertStorageError(error):
                    zAuth(AuthConfig(**config), state)

    def test_empty_users_files_hold_no_users(self) -> None:
        """An empty users file, or 'users:' with no one under it, is a store without users."""
        for text in ("", "users:\n", "# no users yet\n"):
            with self.subTest(text=text):
                state = self.workspace / str(len(text))
                state.mkdir()
                (state / "users.yaml").write_text(text)
                auth = self.auth(state)
                self.assertIsNone(auth.users.get("ada"))
                auth.add_user("ada", "s3cret", "admin")
                self.assertEqual(auth.users.get("ada")[1], "admin")

    def test_zcli_exits_2_with_the_sentence(self) -> None:
        """zcli user add in a workspace whose state folder is a file exits 2 with one line."""
        (self.workspace / ".zcli").write_text("")
        done = run_zcli(
            "user",
            "add",
            "ada",
            "--workspace",
            str(self.workspace),
            "--password-stdin",
            stdin="s3cret\n",
            cwd=REPO_ROOT,
        )
        expected = f"Cannot use the state folder {self.workspace / '.zcli'}: it is not a folder."
        self.assertEqual(
            (done.returncode, done.stdout, done.stderr), (2, "", f"zcli: error: {expected}\n")
        )

    def test_failed_sign_out_is_an_error(self) -> None:
        """A revocation that cannot be written raises StorageError and tells no listener."""
        auth = self.auth()
        auth.add_user("ada", "s3cret", "admin")
        identity = auth.login("ada", "s3cret")
        assert identity.token is not None
        heard: list[str] = []
        auth.on_revoke(heard.append)
        away = self.workspace / "away"
        self.state.rename(away)
        self.state.write_text("")  # the state folder replaced by a file
        with (
            self.assertLogs("zCLI.zAuth", "ERROR") as logs,
            self.assertStorageError(
                "The sign-out could not be recorded, so the token is still valid."
            ),
        ):
            auth.revoke(identity)
        self.assertEqual(heard, [])
        database = self.state / "revoked_tokens.sqlite3"
        self.assertEqual(
            logs.output,
            [
                "ERROR:zCLI.zAuth:zAuth: Cannot write the revocation database "
                f"{database}: attempt to write a readonly database."
            ],
        )
        self.state.unlink()
        away.rename(self.state)
        self.assertEqual(self.auth().verify(identity.token).user, "ada")

    def test_failed_user_writes_are_errors(self) -> None:
        """add_user and remove_user that cannot write raise StorageError and change nothing."""
        for users_file in STORES:
            with self.subTest(users_file=users_file):
                state = self.workspace / users_file
                auth = self.auth(state, users_file=users_file)
                auth.add_user("ada", "s3cret", "admin")
                path = state / users_file
                before = path.read_bytes()
                if users_file.endswith(".yaml"):
                    error = f"Cannot write the users file {path}: file too large."
                    breaking = file_size_limit(4)  # the disk fills half-way through a write
                else:
                    away = self.workspace / "away"
                    state.rename(away)
                    state.write_text("")  # the folder replaced by a file
                    error = (
                        f"Cannot write the users database {path}: "
                        "attempt to write a readonly database."
                    )
                    breaking = contextlib.nullcontext()
                with breaking:
                    with self.assertStorageError(error):
                        auth.add_user("bo", "pa55word")
                    with self.assertStorageError(error):
                        auth.remove_user("ada")
                if not users_file.endswith(".yaml"):
                    state.unlink()
                    away.rename(state)
                self.assertEqual(path.read_bytes(), before)
                self.assertEqual(
                    sorted(os.listdir(state)),
                    sorted(["revoked_tokens.sqlite3", "secret", users_file]),
                )

    def test_unreadable_users_at_sign_in(self) -> None:
        """A users file gone bad at run time refuses sign-in and tokens without its path."""
        auth = self.auth()
        auth.add_user("ada", "s3cret", "admin")
        token = auth.login("ada", "s3cret").token
        assert token is not None
        users = self.state / "users.yaml"
        users.unlink()
        users.mkdir()
        unavailable = "The user store cannot be read right now; try again later."
        for label, attempt in (
            ("login", lambda: auth.login("ada", "s3cret")),
            ("verify", lambda: auth.verify(token)),
        ):
            with self.subTest(label):
                with (
                    self.assertLogs("zCLI.zAuth", "ERROR") as logs,
                    self.assertStorageError(unavailable),
                ):
                    attempt()
                self.assertEqual(
                    logs.output,
                    [
                        "ERROR:zCLI.zAuth:zAuth: "
                        f"Cannot read the users file {users}: is a directory."
                    ],
                )
