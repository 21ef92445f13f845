"""``zcli chat -s``: zBifrost with the ``chat_server`` plugin, plus zServer."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from zCLI import ConfigError, StorageError, is_postgres_url, zCLI

from .writer import open_writer, pool_size

__all__ = ["run"]

_OPTIONS = ("db", "db_pool", "ack_timeout", "keepalive", "max_text", "max_stored", "max_online",
            "max_rate", "room_history", "max_users", "auth_timeout", "echo_bot")  # fmt: skip
# options whose variables are the bot's: ZCHAT_BOT_BASE_URL, ..._MODEL, ..._NAME
_BOT_OPTIONS = {"bot_url": "BASE_URL", "bot_model": "MODEL", "bot_name": "NAME"}
WEB = Path(__file__).parent / "web"  # the web client, served by zServer


def run(args: argparse.Namespace) -> int:
    for option in _OPTIONS:
        value = getattr(args, option, None)
        if value is not None:
            os.environ[f"ZCHAT_{option.upper()}"] = str(value)
    for option, name in _BOT_OPTIONS.items():
        value = getattr(args, option, None)
        if value is not None:
            os.environ[f"ZCHAT_BOT_{name}"] = str(value)
    http: dict[str, object] = {
        "enabled": args.http_port is not None,
        "host": args.host,
        "serve_path": str(WEB),
    }
    if args.http_port is not None:
        http["port"] = args.http_port
    websocket: dict[str, object] = {
        "host": args.host,
        "port": args.server_port,
        "require_auth": True,
        "auth_timeout": float(os.environ.get("ZCHAT_AUTH_TIMEOUT", 10.0)),
    }
    spark: dict[str, object] = {
        "zWorkspace": os.path.abspath(args.workspace),
        "zMode": "zBifrost",
        "plugins": ["zCLI.apps.chat.bridge"],
        "websocket": websocket,
        "http_server": http,
    }
    if args.broker is not None:  # other chat servers on the same database: one chat
        websocket["broker"] = args.broker
    # Accounts in SQLite (a YAML users file is rewritten whole for each new account),
    # or in the chat's PostgreSQL database beside its messages.
    auth: dict[str, object] = {"users_file": "users.sqlite3"}
    if args.db is not None and is_postgres_url(args.db):
        auth["users_database"] = args.db
    if args.token_ttl is not None:
        auth["token_ttl"] = args.token_ttl
    spark["auth"] = auth
    z = zCLI(spark)
    try:  # a bad pool size or a database that cannot be opened stops the start
        pool = pool_size(os.environ.get("ZCHAT_DB_POOL"))
        asyncio.run(_check_storage(args.db, Path(z.state_dir), pool))
    except (ConfigError, StorageError) as exc:
        sys.stderr.write(f"zcli chat: error: {exc}\n")
        return 2
    return z.run()


async def _check_storage(db: str | None, state_dir: Path, pool: int) -> None:
    """Open the store (creating or migrating its schema) and close it again."""
    writer = await open_writer(db, state_dir, pool)
    await writer.close()
