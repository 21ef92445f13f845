"""zAuth: users with scrypt-hashed passwords, JWT sign-in, and revocation that persists.

Users live in ``auth.users_file``: YAML, or a ``users`` table when the file is a SQLite
database (see zCLI.users).

Tokens are HS256 JWTs (PyJWT) with ``sub``, ``role``, ``jti``, ``iat`` and ``exp``.
Signing out records the token's ``jti`` in a SQLite file, so a revoked token stays
revoked after a restart. The signing secret is ``auth.secret`` from the config, or a
random one created once in ``<workspace>/.zcli_secret`` (mode 0600) so tokens also
survive restarts.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import secrets
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from .config import AuthConfig
from .exceptions import RequestError
from .users import UserStore, open_user_store

__all__ = ["ANONYMOUS", "AuthError", "Identity", "hash_password", "verify_password", "zAuth"]

_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
SECRET_FILE = "secret"


class AuthError(RequestError):
    """A sign-in or token was refused; the message is the close reason or error text."""

    code = "unauthorized"


@dataclass(frozen=True)
class Identity:
    user: str
    role: str
    authenticated: bool
    token: str | None = None
    jti: str | None = None
    expires: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"authenticated": self.authenticated, "user": self.user, "role": self.role}


ANONYMOUS = Identity("anonymous", "guest", False)


def hash_password(password: str, salt: bytes | None = None) -> str:
    """``scrypt$n$r$p$salt$hash`` with a random 16-byte salt."""
    salt = salt or os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    b64 = base64.b64encode
    return (
        f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}$"
        f"{b64(salt).decode()}${b64(digest).decode()}"
    )


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


class zAuth:
    def __init__(self, config: AuthConfig, state_dir: Path) -> None:
        self.config = config
        self.workspace = state_dir  # relative state paths resolve here
        self.state_dir = state_dir
        state_dir.mkdir(parents=True, exist_ok=True)
        self._revoke_listeners: list[Callable[[str], None]] = []
        self.users_path = self._in_workspace(config.users_file)
        self.users: UserStore = open_user_store(self.users_path)
        self.secret = config.secret or self._stored_secret()
        self._db_path = self._in_workspace(config.revocations_file)
        self._lock = threading.Lock()  # zServer's threads and the loop share the store
        self._db = sqlite3.connect(self._db_path, check_same_thread=False)
        with self._lock, self._db:
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS revoked (jti TEXT PRIMARY KEY, expires REAL)"
            )

    def _in_workspace(self, name: str) -> Path:
        path = Path(name)
        return path if path.is_absolute() else self.workspace / path

    def _stored_secret(self) -> str:
        path = self.state_dir / SECRET_FILE
        if path.is_file():
            return path.read_text(encoding="utf-8").strip()
        secret = secrets.token_hex(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(secret)
        return secret

    def close(self) -> None:
        self.users.close()
        with self._lock:
            self._db.close()

    # --- users ------------------------------------------------------------------

    def add_user(self, username: str, password: str, role: str = "user") -> None:
        """Create or replace a user in the user store."""
        if not username or not password:
            raise AuthError("A user needs a name and a password.", "invalid_message")
        self.users.put(username, hash_password(password), role)

    # --- tokens -------------------------------------------------------------------

    async def login_async(
        self, username: str, password: str, address: str | None = None
    ) -> Identity:
        """``login`` for the event loop: the hash runs off the loop."""
        return await asyncio.to_thread(self.login, username, password, address)

    def on_revoke(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(jti)`` after each revocation, in the revoking thread."""
        self._revoke_listeners.append(listener)

    def login(self, username: str, password: str, address: str | None = None) -> Identity:
        record = self.users.get(username)
        if record is None or not verify_password(password, record[0]):
            raise AuthError("Unknown user or wrong password.")
        return self.issue(username, record[1])

    def issue(self, username: str, role: str) -> Identity:
        now = time.time()
        jti = uuid.uuid4().hex
        expires = now + self.config.token_ttl
        claims = {"sub": username, "role": role, "jti": jti, "iat": int(now), "exp": expires}
        token = jwt.encode(claims, self.secret, algorithm="HS256")
        return Identity(username, role, True, token, jti, expires)

    def verify(self, token: str) -> Identity:
        """The identity a token proves; AuthError with a one-line reason otherwise."""
        if not token:
            raise AuthError("The token is empty.")
        try:
            claims = jwt.decode(
                token, self.secret, algorithms=["HS256"], options={"require": ["exp", "jti", "sub"]}
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("The token has expired.") from None
        except jwt.InvalidSignatureError:
            raise AuthError("The token signature is invalid.") from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthError(f"The token lacks the {exc.claim!r} claim.") from None
        except jwt.InvalidTokenError:
            raise AuthError("The token is malformed.") from None
        with self._lock:
            row = self._db.execute(
                "SELECT 1 FROM revoked WHERE jti = ?", (claims["jti"],)
            ).fetchone()
        if row is not None:
            raise AuthError("The token has been revoked.")
        return Identity(
            str(claims["sub"]),
            str(claims.get("role", "user")),
            True,
            token,
            str(claims["jti"]),
            float(claims["exp"]),
        )

    def revoke(self, identity: Identity) -> None:
        if identity.jti is None:
            return
        with self._lock, self._db:
            self._db.execute(
                "INSERT OR IGNORE INTO revoked VALUES (?, ?)", (identity.jti, identity.expires)
            )
            self._db.execute("DELETE FROM revoked WHERE expires < ?", (time.time(),))
        for listener in self._revoke_listeners:
            listener(identity.jti)
