"""zAuth: users with scrypt-hashed passwords, JWT sign-in, and revocation that persists.

Everything zAuth keeps is in the app's state folder (``state_dir``, default
``<workspace>/.zcli``, mode 0700): the signing secret ``secret`` (mode 0600, made once
unless ``auth.secret`` is set), the revocation database and, by default, the users
file (see zCLI.users; ``auth.users_database`` puts the users in PostgreSQL instead).
The constructor checks each of them with a real read and write
and raises ``StorageError`` naming the path, so a broken workspace stops ``zcli`` at
start instead of failing a client's first sign-in.

Signing in hashes in a bounded pool (zCLI.passwords): the event loop and zServer's
threads never run scrypt, and beyond ``hash_queue`` waiting sign-ins the next one is
refused at once (``rate_limited``). Unknown users are checked against a dummy hash so
they take as long as a wrong password. Failed sign-ins are counted per account and per
client address (zCLI.throttle); over the limit a sign-in is refused before any hashing.

Tokens are HS256 JWTs (PyJWT) with ``sub``, ``role``, ``jti``, ``iat``, ``exp`` and
``ver``, a keyed fingerprint of the user's password hash. ``verify`` looks the user up
every time: a removed user's tokens are refused, the role comes from the store, and a
new password (or a user re-created under the same name) ends the older tokens. Signing
out records the ``jti`` in SQLite, so a revoked token stays revoked after a restart.
Errors sent to clients never hold a token, a hash, the secret or a server path.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import math
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from .config import AuthConfig
from .exceptions import RequestError, StorageError
from .passwords import DUMMY_HASH, HashPool, hash_password, verify_password
from .statefiles import (
    SECRET_FILE,
    check_database,
    load_or_create_secret,
    prepare_state_dir,
    state_path,
    storage_error,
)
from .throttle import FailedSignIns
from .users import PostgresUsers, UserStore, open_user_store

__all__ = ["ANONYMOUS", "AuthError", "Identity", "hash_password", "verify_password", "zAuth"]

log = logging.getLogger("zCLI.zAuth")

MAX_TOKEN_LENGTH = 8192  # a real token is ~300 characters; longer is an attack
MAX_NAME_LENGTH = 128
MAX_PASSWORD_LENGTH = 1024
TRACKED_KEYS = 10_000  # accounts and addresses remembered by each failure counter

WRONG_CREDENTIALS = "Unknown user or wrong password."
BUSY = "The server is busy signing in others; try again in a moment."
USERS_UNAVAILABLE = "The user store cannot be read right now; try again later."
REVOCATIONS_UNAVAILABLE = "Tokens cannot be checked right now; try again later."
NOT_RECORDED = "The sign-out could not be recorded, so the token is still valid."


class AuthError(RequestError):
    """A sign-in or token was refused; the message is the close reason or error text."""

    code = "unauthorized"


@dataclass(frozen=True)
class Identity:
    """Who a connection is: a signed-in user with their token, or ANONYMOUS."""

    user: str
    role: str
    authenticated: bool
    token: str | None = None
    jti: str | None = None
    expires: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"authenticated": self.authenticated, "user": self.user, "role": self.role}


ANONYMOUS = Identity("anonymous", "guest", False)

Record = tuple[str, str]  # (password hash, role), as the user stores return it


def _encodable(text: str) -> bool:
    """False for text holding lone surrogates (JSON allows them, UTF-8 does not)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _key(text: str) -> bytes:
    """A fixed-size throttle key, so long names cannot make the counters large."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def _in_seconds(wait: float) -> str:
    seconds = max(1, math.ceil(wait))
    return "1 second" if seconds == 1 else f"{seconds} seconds"


class zAuth:
    """Users, tokens and revocations for one app; safe from the loop and from threads.

    ``clock`` is the monotonic clock the sign-in throttle reads; tests pass their own.
    """

    def __init__(
        self,
        config: AuthConfig,
        state_dir: Path,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.state_dir = state_dir
        self._clock = clock
        self._revoke_listeners: list[Callable[[str], None]] = []
        # revocations kept elsewhere (the other processes', through zBifrost's broker)
        self._revocation_checks: list[Callable[[str], bool]] = []
        prepare_state_dir(state_dir)
        self.secret = config.secret or load_or_create_secret(state_dir / SECRET_FILE)
        self.users_path = state_path(state_dir, config.users_file)
        self._db_path = state_path(state_dir, config.revocations_file)
        self._lock = threading.Lock()  # zServer's threads and the loop share the database
        self._db = self._open_revocations()
        try:
            self.users: UserStore = (
                PostgresUsers(config.users_database)
                if config.users_database
                else open_user_store(self.users_path)
            )
        except StorageError:
            self._db.close()
            raise
        self._pool = HashPool(config.hash_workers, config.hash_queue)
        self._throttle_lock = threading.Lock()
        window = config.failed_login_window
        self._by_user = FailedSignIns(config.max_failed_logins, window, TRACKED_KEYS)
        self._by_address = FailedSignIns(config.max_failed_logins_per_address, window, TRACKED_KEYS)

    def _open_revocations(self) -> sqlite3.Connection:
        path = self._db_path
        try:
            db = sqlite3.connect(path, check_same_thread=False)
        except sqlite3.Error as exc:
            raise storage_error("open the revocation database", path, exc) from None
        try:
            with db:
                db.execute(
                    "CREATE TABLE IF NOT EXISTS revoked (jti TEXT PRIMARY KEY, expires REAL)"
                )
                db.execute("CREATE INDEX IF NOT EXISTS revoked_expires ON revoked (expires)")
                db.execute("DELETE FROM revoked WHERE expires < ?", (time.time(),))
        except sqlite3.Error as exc:
            db.close()
            raise storage_error("write the revocation database", path, exc) from None
        try:
            check_database(db, path, "the revocation database")  # a real write, every start
        except StorageError:
            db.close()
            raise
        return db

    def close(self) -> None:
        """Stop the hashing threads and close the databases."""
        self._pool.close()
        self.users.close()
        with self._lock:
            self._db.close()

    @property
    def hash_pool(self) -> HashPool:
        """The hashing pool; its ``busy``, ``completed`` and ``refused`` are for metrics."""
        return self._pool

    # --- users ------------------------------------------------------------------

    def add_user(self, username: str, password: str, role: str = "user") -> None:
        """Create or replace a user; hashes in the caller's thread (an admin command)."""
        if not username or not password or not role:
            raise AuthError("A user needs a name, a password and a role.", "invalid_message")
        if len(username) > MAX_NAME_LENGTH or len(password) > MAX_PASSWORD_LENGTH:
            raise AuthError(
                f"A user name can have at most {MAX_NAME_LENGTH} characters and a password "
                f"at most {MAX_PASSWORD_LENGTH}.",
                "invalid_message",
            )
        if not all(map(_encodable, (username, password, role))):
            raise AuthError(
                "A user's name, password and role must be valid text.", "invalid_message"
            )
        self.users.put(username, hash_password(password), role)

    def user_exists(self, username: str) -> bool:
        """Whether the store has ``username``; StorageError with a sentence that names
        no file or database (the detail is logged) when the store cannot be read."""
        return _encodable(username) and self._lookup(username) is not None

    def remove_user(self, username: str) -> bool:
        """Delete a user, which ends their tokens; False when there was no such user."""
        return _encodable(username) and self.users.remove(username)

    # --- signing in ---------------------------------------------------------------

    def login(self, username: str, password: str, address: str | None = None) -> Identity:
        """Sign in from a thread (zServer); the hash runs in the pool while this waits."""
        future = self._start_sign_in(username, password, address)
        return self._finish_sign_in(username, address, future.result())

    async def login_async(
        self, username: str, password: str, address: str | None = None
    ) -> Identity:
        """Sign in from the event loop, which keeps running while the pool hashes."""
        future = self._start_sign_in(username, password, address)
        record = await asyncio.wrap_future(future)
        return self._finish_sign_in(username, address, record)

    def _start_sign_in(
        self, username: str, password: str, address: str | None
    ) -> Future[Record | None]:
        """Refuse a throttled or crowded sign-in at once; otherwise queue its hash."""
        with self._throttle_lock:
            self._refuse_if_throttled(username, address, self._clock())
        future = self._pool.submit(lambda: self._check_password(username, password))
        if future is None:
            if self._pool.refused % 100 == 1:  # the first refusal, then every 100th
                log.warning(
                    "zAuth is refusing sign-ins: all %d hashing places are taken "
                    "(%d refused so far)",
                    self._pool.capacity,
                    self._pool.refused,
                )
            raise AuthError(BUSY, "rate_limited")
        return future

    def _check_password(self, username: str, password: str) -> Record | None:
        """In the pool: the user's record if the password is right, else None.

        An unknown user is hashed against DUMMY_HASH so that both answers take as long.
        """
        record = self._lookup(username) if _encodable(username) else None
        matches = verify_password(password, record[0] if record else DUMMY_HASH)
        return record if matches else None

    def _finish_sign_in(
        self, username: str, address: str | None, record: Record | None
    ) -> Identity:
        with self._throttle_lock:
            now = self._clock()
            # Guesses hashed at the same time may have used up the allowance meanwhile:
            # then this answer is withheld too, so no more than the limit are revealed.
            self._refuse_if_throttled(username, address, now)
            if record is None:
                self._count_failure(username, address, now)
                raise AuthError(WRONG_CREDENTIALS)
            # Only the account is cleared: signing in to one's own account must not
            # reset the count of an address that is guessing other people's passwords.
            self._by_user.clear(_key(username))
        return self._issue(username, record[1], record[0])

    def _count_failure(self, username: str, address: str | None, now: float) -> None:
        """Count a wrong password, and log when it makes an account or address wait."""
        counters = [(self._by_user, "account", username)]
        if address is not None:
            counters.append((self._by_address, "address", address))
        for counter, kind, name in counters:
            counter.fail(_key(name), now)
            if counter.wait(_key(name), now) > 0:
                log.warning(
                    "zAuth: %s %r reached %d failed sign-ins within %g s and must wait",
                    kind,
                    name[:64],  # repr and a cap: the name comes from the client
                    counter.limit,
                    counter.window,
                )

    def _refuse_if_throttled(self, username: str, address: str | None, now: float) -> None:
        """AuthError rate_limited if the account or the address failed too often."""
        wait = self._by_user.wait(_key(username), now)
        if wait > 0:
            raise AuthError(
                f"Too many failed sign-ins for this account; try again in {_in_seconds(wait)}.",
                "rate_limited",
            )
        wait = self._by_address.wait(_key(address), now) if address is not None else 0.0
        if wait > 0:
            raise AuthError(
                f"Too many failed sign-ins from this address; try again in {_in_seconds(wait)}.",
                "rate_limited",
            )

    # --- tokens -------------------------------------------------------------------

    def on_revoke(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(jti)`` after each revocation is written, in the revoking thread."""
        self._revoke_listeners.append(listener)

    def also_revoked(self, check: Callable[[str], bool]) -> None:
        """``verify`` refuses a token whose ``check(jti)`` is true as revoked too: the
        bridge's broker knows the tokens the other processes revoked, so zServer's HTTP
        API refuses them as the bridge does. ``check`` must be quick and thread-safe."""
        self._revocation_checks.append(check)

    def issue(self, username: str, role: str) -> Identity:
        """A token for an existing user, without a password (for apps and tests)."""
        record = self._lookup(username) if _encodable(username) else None
        if record is None:
            raise AuthError(f"There is no user named {username!r}.")
        return self._issue(username, role, record[0])

    def _issue(self, username: str, role: str, password_hash: str) -> Identity:
        now = time.time()
        jti = uuid.uuid4().hex
        expires = now + self.config.token_ttl
        claims = {
            "sub": username,
            "role": role,
            "jti": jti,
            "iat": int(now),
            "exp": expires,
            "ver": self._version(password_hash),
        }
        token = jwt.encode(claims, self.secret, algorithm="HS256")
        return Identity(username, role, True, token, jti, expires)

    def _version(self, password_hash: str) -> str:
        """A fingerprint of the stored hash, keyed with the secret so it reveals nothing."""
        message = b"zAuth user version\0" + password_hash.encode()
        return hmac.new(self.secret.encode(), message, hashlib.sha256).hexdigest()[:32]

    def verify(self, token: str) -> Identity:
        """The identity a token proves; AuthError with a one-line reason otherwise."""
        if not token:
            raise AuthError("The token is empty.")
        if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH or not _encodable(token):
            raise AuthError("The token is malformed.")
        try:
            claims = jwt.decode(
                token,
                self.secret,
                algorithms=["HS256"],
                options={"require": ["exp", "jti", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("The token has expired.") from None
        except jwt.InvalidSignatureError:
            raise AuthError("The token signature is invalid.") from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthError(f"The token lacks the {exc.claim!r} claim.") from None
        except jwt.InvalidTokenError:
            raise AuthError("The token is malformed.") from None
        if "ver" not in claims:  # checked after the signature and expiry, which come first
            raise AuthError("The token lacks the 'ver' claim.")
        jti, user = str(claims["jti"]), str(claims["sub"])
        try:
            with self._lock:
                row = self._db.execute("SELECT 1 FROM revoked WHERE jti = ?", (jti,)).fetchone()
        except sqlite3.Error as exc:
            raise self._unavailable(
                "read the revocation database", exc, REVOCATIONS_UNAVAILABLE
            ) from None
        if row is not None or any(check(jti) for check in self._revocation_checks):
            raise AuthError("The token has been revoked.")
        record = self._lookup(user)
        if record is None:
            raise AuthError("The token's user no longer exists.")
        if not hmac.compare_digest(str(claims["ver"]), self._version(record[0])):
            raise AuthError("The token was issued before the user's password changed.")
        return Identity(user, record[1], True, token, jti, float(claims["exp"]))

    def revoke(self, identity: Identity) -> None:
        """Record the sign-out durably, then tell the listeners; StorageError if not written."""
        if identity.jti is None:
            return
        now = time.time()
        expires = identity.expires if identity.expires is not None else now + self.config.token_ttl
        try:
            with self._lock, self._db:
                self._db.execute(
                    "INSERT OR IGNORE INTO revoked VALUES (?, ?)", (identity.jti, expires)
                )
                self._db.execute("DELETE FROM revoked WHERE expires < ?", (now,))
        except sqlite3.Error as exc:
            raise self._unavailable("write the revocation database", exc, NOT_RECORDED) from None
        for listener in list(self._revoke_listeners):
            try:
                listener(identity.jti)
            except Exception:  # the token is revoked already; the other listeners still run
                log.exception("A revocation listener failed")

    # --- storage failures at run time ---------------------------------------------

    def _lookup(self, username: str) -> Record | None:
        """The store's record; a failing store is logged and reported without its path."""
        try:
            return self.users.get(username)
        except StorageError as exc:
            log.error("zAuth: %s", exc.message)
            raise StorageError(USERS_UNAVAILABLE) from None

    def _unavailable(self, action: str, exc: sqlite3.Error, public: str) -> StorageError:
        """Log the detailed sentence (path and reason) and return the one for clients."""
        log.error("zAuth: %s", storage_error(action, self._db_path, exc).message)
        return StorageError(public)
