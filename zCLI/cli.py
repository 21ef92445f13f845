"""The ``zcli`` command. Built-in subcommands plus those that plugins register."""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .config import ADAPTERS, LOG_LEVELS, load_config
from .core import zCLI
from .exceptions import ConfigError, zCLIError
from .plugins import Registry
from .version import __version__

__all__ = ["build_parser", "main"]


def _run(args: argparse.Namespace) -> int:
    zui = Path(args.zui_file)
    workspace = Path(args.workspace) if args.workspace else zui.parent
    spark = {"zWorkspace": str(workspace), "zVaFile": str(zui.resolve()), "zMode": "Terminal"}
    if args.block:
        spark["zBlock"] = args.block
    if args.plugin:
        spark["plugins"] = args.plugin
    return zCLI(spark).run()


def app_spark(app: str) -> dict[str, Any]:
    """zSpark for an APP argument: a zUI file, or a folder holding one or none (an app of
    plugin events only)."""
    path = Path(app).resolve()
    if path.is_file():
        return {"zWorkspace": str(path.parent), "zVaFile": str(path)}
    if not path.is_dir():
        raise ConfigError([f"APP: {app} is neither a zUI file nor a folder"])
    spark: dict[str, Any] = {"zWorkspace": str(path)}
    if load_config(spark).zVaFile is None:
        found = sorted(path.glob("zUI.*.yaml"))
        if len(found) > 1:
            raise ConfigError(
                [
                    f"APP: {app} holds {len(found)} zUI.*.yaml files; name one, "
                    "or set zVaFile in its zcli.yaml"
                ]
            )
        if found:
            spark["zVaFile"] = str(found[0])
    return spark


def _serve(args: argparse.Namespace) -> int:
    spark = app_spark(args.app)
    spark["zMode"] = "zBifrost"
    websocket: dict[str, Any] = {}
    http: dict[str, Any] = {"enabled": True}
    if args.host:
        websocket["host"] = http["host"] = args.host
    if args.ws_port is not None:
        websocket["port"] = args.ws_port
    if args.http_port is not None:
        http["port"] = args.http_port
    if args.no_auth:
        websocket["require_auth"] = False
    if args.broker is not None:
        websocket["broker"] = args.broker
    if args.fast is not None:
        websocket["fast"] = args.fast
    if args.adapter is not None:
        websocket["adapter"] = args.adapter
    spark.update(websocket=websocket, http_server=http)
    if args.workers > 1:
        from .workers import serve_workers

        return serve_workers(spark, args.workers)
    return zCLI(spark).run()


def _workers(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return count


def _user_add(args: argparse.Namespace) -> int:
    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else getpass.getpass()
    z = zCLI({"zWorkspace": args.workspace})
    z.auth.add_user(args.username, password, args.role)
    sys.stdout.write(f"User {args.username!r} ({args.role}) saved in {z.auth.users.where}.\n")
    return 0


def _user_remove(args: argparse.Namespace) -> int:
    z = zCLI({"zWorkspace": args.workspace})
    if not z.auth.remove_user(args.username):
        sys.stderr.write(f"zcli: error: there is no user {args.username!r}.\n")
        return 1
    sys.stdout.write(f"User {args.username!r} removed; their tokens are refused from now on.\n")
    return 0


def build_parser(registry: Registry) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zcli", description="Run apps declared in zUI YAML files."
    )
    parser.add_argument("--version", action="version", version=f"zcli {__version__}")
    parser.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        default="WARNING",
        help="what zCLI logs to stderr (default WARNING)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = commands.add_parser("run", help="walk a zUI file in the terminal")
    run.add_argument("zui_file", metavar="ZUI_FILE", help="the zUI file to walk")
    run.add_argument("--block", help="the block to start in (default: the first)")
    run.add_argument("--workspace", help="the workspace folder (default: the file's folder)")
    run.add_argument(
        "--plugin",
        action="append",
        default=[],
        help="a plugin module or .py file to load (repeatable)",
    )
    run.set_defaults(handler=_run)

    serve = commands.add_parser("serve", help="serve a zUI app over WebSocket and HTTP")
    serve.add_argument("app", metavar="APP", help="a demo folder or a zUI file")
    serve.add_argument("--host", help="the address both servers listen on")
    serve.add_argument("--ws-port", type=int, help="the zBifrost port (default 56891)")
    serve.add_argument("--http-port", type=int, help="the zServer port (default 8080)")
    serve.add_argument("--no-auth", action="store_true", help="accept clients without a token")
    serve.add_argument(
        "--broker",
        metavar="URL",
        help="redis://HOST:PORT/DB: processes sharing it serve as one (websocket.broker)",
    )
    serve.add_argument(
        "--workers",
        type=_workers,
        default=1,
        metavar="N",
        help="N processes on the same ports, sharing the broker (default 1)",
    )
    serve.add_argument(
        "--fast",
        action=argparse.BooleanOptionalAction,
        help="uvloop and orjson (pip install zCLI[fast]); default: on when installed",
    )
    serve.add_argument(
        "--adapter",
        choices=ADAPTERS,
        help="websockets' asyncio server, or zBifrost's own sans-I/O Protocol "
        "(websocket.adapter; default: sansio in fast mode, else asyncio)",
    )
    serve.set_defaults(handler=_serve)

    user = commands.add_parser("user", help="manage zAuth users")
    user_commands = user.add_subparsers(dest="user_command", metavar="ACTION", required=True)
    add = user_commands.add_parser("add", help="create or replace a user")
    add.add_argument("username")
    add.add_argument("--role", default="user", help="the user's role (default user)")
    add.add_argument("--workspace", default=".", help="the app folder (default .)")
    add.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of stdin",
    )
    add.set_defaults(handler=_user_add)
    remove = user_commands.add_parser("remove", help="delete a user (their tokens stop working)")
    remove.add_argument("username")
    remove.add_argument("--workspace", default=".", help="the app folder (default .)")
    remove.set_defaults(handler=_user_remove)

    for name, (_plugin, command) in sorted(registry.commands.items()):
        sub = commands.add_parser(name, help=command.help)
        if command.configure is not None:
            command.configure(sub)
        sub.set_defaults(handler=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    registry = Registry()
    try:
        registry.load_entry_points()
    except zCLIError as exc:
        sys.stderr.write(f"zcli: error: {exc}\n")
        return 2
    parser = build_parser(registry)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.handler(args))
    except zCLIError as exc:
        sys.stderr.write(f"zcli: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        return 130
