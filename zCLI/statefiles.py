"""The app's state folder and the files zAuth keeps in it, written so a failure shows.

The state folder (``state_dir``, default ``<workspace>/.zcli``) holds the signing
secret, the revocation database and, by default, the users file. It is created with
mode 0700 and never served over HTTP. Every problem reading or writing it becomes a
``StorageError`` whose one sentence names the path and the reason, so ``zcli`` can print
it and stop before any client connects. Files are replaced atomically (a temporary file
in the same folder, then ``os.replace``), so a failed write never leaves a half-written
file behind.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import tempfile
from pathlib import Path

from .exceptions import StorageError

SECRET_FILE = "secret"  # the signing secret, in the state folder


def state_path(state_dir: Path, name: str) -> Path:
    """Where a configured state file lives: ``name`` itself if absolute, else inside
    the state folder (zAuth writes there; zServer must never publish it)."""
    path = Path(name)
    return path if path.is_absolute() else state_dir / path


__all__ = [
    "SECRET_FILE",
    "check_database",
    "check_writable_folder",
    "load_or_create_secret",
    "prepare_state_dir",
    "reason",
    "state_path",
    "storage_error",
    "write_atomically",
]


def reason(exc: BaseException) -> str:
    """A short lower-case reason for an OS or SQLite error, without a final period."""
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    text = text.strip().rstrip(".") or type(exc).__name__
    return text[:1].lower() + text[1:]


def storage_error(action: str, path: Path, why: BaseException | str) -> StorageError:
    """``Cannot <action> <path>: <why>.`` as a StorageError (one sentence)."""
    text = why if isinstance(why, str) else reason(why)
    return StorageError(f"Cannot {action} {path}: {text}.")


def check_writable_folder(folder: Path, what: str) -> None:
    """Create and remove a file in ``folder``: a real write, since root ignores modes."""
    try:
        fd, name = tempfile.mkstemp(dir=folder, prefix=".zcli-write-check-")
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        raise storage_error(f"write in {what}", folder, exc) from None


def prepare_state_dir(path: Path) -> None:
    """Create the state folder (mode 0700) if missing and prove it is writable."""
    if path.exists() and not path.is_dir():
        raise storage_error("use the state folder", path, "it is not a folder")
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise storage_error("create the state folder", path, exc) from None
    check_writable_folder(path, "the state folder")


def _write_temp(path: Path, data: bytes, what: str) -> str:
    """``data`` synced to a new file (mode 0600) beside ``path``; its name."""
    try:
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise storage_error(f"write {what}", path, exc) from None
    try:
        with os.fdopen(fd, "wb") as handle:  # mkstemp already made it 0600
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        _remove(temp)
        raise storage_error(f"write {what}", path, exc) from None
    return temp


def _remove(name: str) -> None:
    try:
        os.unlink(name)
    except OSError:
        pass  # already renamed or never there; nothing half-written remains


def write_atomically(path: Path, data: bytes, what: str) -> None:
    """Replace ``path`` with ``data`` (mode 0600), all or nothing; StorageError on failure."""
    temp = _write_temp(path, data, what)
    try:
        os.replace(temp, path)
    except OSError as exc:
        _remove(temp)
        raise storage_error(f"write {what}", path, exc) from None
    _sync_folder(path.parent)


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable where the platform allows opening a folder."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on folders; the data itself is synced
    finally:
        os.close(fd)


def load_or_create_secret(path: Path) -> str:
    """The signing secret in ``path``; a random one is written first if there is none.

    The new secret is linked into place, so two processes starting together end up
    with the same secret instead of one overwriting the other's.
    """
    if not path.exists():
        _create_secret(path)
    try:
        secret = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise storage_error("read the secret file", path, exc) from None
    if not secret:
        raise storage_error("use the secret file", path, "it is empty")
    return secret


def _create_secret(path: Path) -> None:
    temp = _write_temp(path, secrets.token_hex(32).encode(), "the secret file")
    try:
        os.link(temp, path)
    except FileExistsError:
        pass  # another process made it first: use theirs
    except OSError as exc:
        raise storage_error("write the secret file", path, exc) from None
    finally:
        _remove(temp)


def check_database(db: sqlite3.Connection, path: Path, what: str) -> None:
    """A real write that changes nothing: the schema version is written back as it was."""
    try:
        with db:
            db.execute("BEGIN IMMEDIATE")
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            db.execute(f"PRAGMA user_version = {version}")
    except sqlite3.Error as exc:
        raise storage_error(f"write {what}", path, exc) from None
