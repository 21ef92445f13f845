"""Which files zServer may publish: the one place that decides it.

An app folder holds things that must never leave the machine: the state folder (the
JWT secret, the users file with password hashes, the revocation database), zcli.yaml,
zUI files and plugin source. zServer therefore serves only ``serve_path`` (default
``public``), and refuses at start a ``serve_path`` that is the workspace, holds it,
or is, holds or sits inside the state folder.

Inside the served folder a second line holds whatever a user puts or links there: a
file is published only if no segment of its URL path nor of its real path (below the
root) is private by name (dotfiles and dot-folders, ``zcli.yaml``, ``zUI.*.yaml``,
Python source and bytecode, ``__pycache__``, SQLite files and their ``-wal``, ``-shm``
and ``-journal`` companions), its real path is inside the root and outside the state
folder, and it is not the users file, the revocation database or the secret, by path
or under another name (a file with more than one link is compared by device and
inode, so hard links count). A refusal looks exactly like a missing file.
"""

from __future__ import annotations

import fnmatch
import mimetypes
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from .config import CONFIG_FILE, AuthConfig
from .exceptions import ConfigError
from .statefiles import SECRET_FILE, state_path
from .users import DATABASE_SUFFIXES

__all__ = ["StaticFiles", "content_type", "is_document", "is_private_name"]

SQLITE_COMPANIONS = ("", "-wal", "-shm", "-journal")
PRIVATE_ENDINGS = (
    ".py",
    ".pyc",
    ".pyo",
    *(suffix + companion for suffix in DATABASE_SUFFIXES for companion in SQLITE_COMPANIONS),
)
PRIVATE_PATTERNS = (CONFIG_FILE, "zui.*.yaml", "zui.*.yml", "__pycache__")
TYPES = {
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".css": "text/css",
    ".html": "text/html",
    ".json": "application/json",
    ".svg": "image/svg+xml",
}
DOCUMENTS = ("text/html", "image/svg+xml", "application/xhtml+xml", "text/xml", "application/xml")


def content_type(path: Path) -> str:
    """The Content-Type of a file by its name; text and JSON say they are UTF-8."""
    kind = TYPES.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0]
    kind = kind or "application/octet-stream"
    return f"{kind}; charset=utf-8" if kind.startswith("text/") or kind.endswith("json") else kind


def is_document(kind: str) -> bool:
    """Types a browser renders as a page, able to run script: they get the page policy."""
    return kind.split(";")[0] in DOCUMENTS


def is_private_name(name: str) -> bool:
    """True for a path segment zServer never serves, whatever folder it is in.

    Compared without case, so a case-insensitive file system cannot be asked for
    ``ZCLI.YAML`` to get ``zcli.yaml``.
    """
    lowered = name.lower()
    return (
        lowered.startswith(".")
        or lowered.endswith(PRIVATE_ENDINGS)
        or any(fnmatch.fnmatchcase(lowered, pattern) for pattern in PRIVATE_PATTERNS)
    )


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def root_problems(root: Path, workspace: Path, state_dir: Path) -> list[str]:
    """Why serving ``root`` would publish private files; all paths already resolved."""
    if root == workspace:
        why = "is the workspace"
    elif root in workspace.parents:
        why = f"holds the workspace {workspace}"
    elif root == state_dir:
        why = "is the state folder"
    elif root in state_dir.parents:
        why = f"holds the state folder {state_dir}"
    elif state_dir in root.parents:
        why = f"is inside the state folder {state_dir}"
    else:
        return []
    return [
        f"http_server.serve_path: {root} {why}; zServer would publish private files, "
        "so serve a folder of public files such as 'public'"
    ]


@dataclass(frozen=True)
class StaticFiles:
    """The served folder and what inside it is private; ``resolve`` maps URLs to files."""

    root: Path
    state_dir: Path
    private_files: tuple[Path, ...]

    @classmethod
    def for_app(
        cls, workspace: Path, serve_path: str, state_dir: Path, auth: AuthConfig
    ) -> StaticFiles:
        """The policy for an app; ConfigError naming the path if serve_path is unsafe."""
        root = (workspace / serve_path).resolve()
        state = state_dir.resolve()
        problems = root_problems(root, workspace.resolve(), state)
        if problems:
            raise ConfigError(problems)
        named = [state_path(state, name) for name in (auth.users_file, auth.revocations_file)]
        private = [Path(f"{path}{end}") for path in named for end in SQLITE_COMPANIONS]
        # resolved, as ``resolve`` compares real paths to them
        return cls(root, state, tuple(p.resolve() for p in (*private, state / SECRET_FILE)))

    def resolve(self, url_path: str) -> Path | None:
        """The real path of the file a URL path names, or None to answer 404.

        A folder stands for its ``index.html``, which is checked like any other file.
        """
        decoded = unquote(url_path)
        if "\x00" in decoded or "\\" in decoded:
            return None
        parts = [part for part in decoded.split("/") if part]
        if any(is_private_name(part) for part in parts):  # "." and ".." included
            return None
        real = self._real(self.root.joinpath(*parts))
        if real is not None and real.is_dir():
            real = self._real(real / "index.html")
        if real is None or not real.is_file() or not self._publishable(real):
            return None
        return real

    def _real(self, path: Path) -> Path | None:
        try:
            real = path.resolve(strict=True)
        except (OSError, RuntimeError):  # missing, a loop, or unreadable
            return None
        return real if _inside(real, self.root) else None

    def _publishable(self, real: Path) -> bool:
        if any(is_private_name(part) for part in real.relative_to(self.root).parts):
            return False
        if _inside(real, self.state_dir) or real in self.private_files:
            return False
        try:
            found = real.stat()
        except OSError:
            return False
        if found.st_nlink == 1:  # no other name: not a private file under another name
            return True
        return (found.st_dev, found.st_ino) not in set(_identities(self.private_files))


def _identities(paths: Iterable[Path]) -> Iterable[tuple[int, int]]:
    for path in paths:
        try:
            found = os.stat(path)
        except OSError:  # not created (yet): nothing to hide
            continue
        yield found.st_dev, found.st_ino
