"""zChat: a chat server and its clients, built as a zCLI plugin.

This module is the ``zcli.plugins`` entry point, so every zCLI app loads it: it brings
only the ``zcli chat`` command and the test suites, never bridge events. The server's
events, hooks and services are the ``chat_server`` plugin in ``bridge.py``, which only
``zcli chat -s`` loads. The protocol is docs/chat.md.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

from zCLI import Command, Plugin

__all__ = ["PLUGIN", "configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("-s", dest="server_port", type=int, metavar="PORT", help="run the server")
    mode.add_argument(
        "-c",
        dest="client",
        nargs="+",
        metavar="ARG",
        help="run the terminal client: NICK HOST PORT [CLIENT_PORT]",
    )
    parser.add_argument(
        "--password-stdin", action="store_true", help="client: read the password from stdin"
    )
    parser.add_argument(
        "--db",
        help="the SQLite file (default: chat.sqlite3 in the state folder), or a "
        "postgresql://USER@HOST:PORT/DATABASE URL",
    )
    parser.add_argument(
        "--db-pool",
        metavar="N",
        help="connections to a PostgreSQL --db (default 4)",
    )
    parser.add_argument(
        "--broker",
        metavar="URL",
        help="redis://HOST:PORT/DB: chat servers sharing it and the database serve as one",
    )
    parser.add_argument("--http-port", type=int, help="the zServer port (default 8080)")
    parser.add_argument("--host", default="127.0.0.1", help="the address to listen on")
    parser.add_argument("--workspace", default=".", help="the app folder (state, users)")
    parser.add_argument("--ack-timeout", type=float, help="seconds to wait for chat.ack")
    parser.add_argument("--keepalive", type=float, help="seconds of silence before closing")
    parser.add_argument("--max-text", type=int, help="characters in a message text")
    parser.add_argument("--max-stored", type=int, help="stored messages per user")
    parser.add_argument("--max-online", type=int, help="users online at once")
    parser.add_argument("--max-rate", type=int, help="messages per user per second")
    parser.add_argument("--room-history", type=int, help="messages a room keeps")
    parser.add_argument("--max-users", type=int, help="accounts the server holds")
    parser.add_argument("--echo-bot", metavar="NAME", help="add a bot user that echoes")
    parser.add_argument("--bot-url", help="base URL of an OpenAI-compatible API: adds a bot")
    parser.add_argument("--bot-model", help="the model the bot asks for (gpt-4o-mini)")
    parser.add_argument("--bot-name", help="the user name of that bot (gpt)")
    parser.add_argument("--auth-timeout", type=float, help="seconds to sign in after connecting")
    parser.add_argument("--token-ttl", type=float, help="seconds a sign-in token lasts (3600)")


def run(args: argparse.Namespace) -> int:
    if args.client is not None:
        if importlib.util.find_spec("zCLI.apps.chat.client") is None:
            sys.stderr.write("zcli chat: error: the terminal client is not built yet.\n")
            return 2
        client = importlib.import_module("zCLI.apps.chat.client")
        return int(client.run(args))
    server = importlib.import_module("zCLI.apps.chat.server")
    return int(server.run(args))


PLUGIN = Plugin(
    "chat",
    commands=[Command("chat", "run the zChat server (-s) or terminal client (-c)", run, configure)],
    suites=[
        "zCLI.apps.chat.tests.chat_core_Test",
        "zCLI.apps.chat.tests.chat_storage_Test",
        "zCLI.apps.chat.tests.chat_storage_pool_Test",
        "zCLI.apps.chat.tests.chat_bots_Test",
        "zCLI.apps.chat.tests.chat_terminal_Test",
        "zCLI.apps.chat.tests.chat_plan001_Test",
        "zCLI.apps.chat.tests.chat_recovery_Test",
        "zCLI.apps.chat.tests.chat_web_Test",
        "zCLI.apps.chat.tests.chat_plan002_auth_Test",
        "zCLI.apps.chat.tests.chat_plan002_initial_data_Test",
        "zCLI.apps.chat.tests.chat_plan002_messages_Test",
        "zCLI.apps.chat.tests.chat_plan002_status_Test",
        "zCLI.apps.chat.tests.chat_plan002_keepalive_Test",
        "zCLI.apps.chat.tests.chat_plan002_restart_Test",
        "zCLI.apps.chat.tests.chat_plan002_storage_Test",
        "zCLI.apps.chat.tests.chat_plan002_messages_postgres_Test",
        "zCLI.apps.chat.tests.chat_plan002_storage_postgres_Test",
        "zCLI.apps.chat.tests.chat_plan002_restart_postgres_Test",
        "zCLI.apps.chat.tests.chat_recovery_postgres_Test",
        "zCLI.apps.chat.tests.chat_plan002_messages_cluster_Test",
        "zCLI.apps.chat.tests.chat_plan002_status_cluster_Test",
        "zCLI.apps.chat.tests.chat_plan002_initial_data_cluster_Test",
        "zCLI.apps.chat.tests.chat_plan002_restart_cluster_Test",
        "zCLI.apps.chat.tests.chat_plan002_auth_cluster_Test",
        "zCLI.apps.chat.tests.chat_plan002_keepalive_cluster_Test",
        "zCLI.apps.chat.tests.chat_plan002_bots_cluster_Test",
        "zCLI.apps.chat.tests.chat_plan002_storage_cluster_Test",
        "zCLI.apps.chat.tests.chat_plan001_cluster_Test",
        "zCLI.apps.chat.tests.chat_cluster_Test",
        "zCLI.apps.chat.tests.chat_plan002_bots_Test",
        "zCLI.apps.chat.tests.chat_fuzz_Test",
    ],
)
