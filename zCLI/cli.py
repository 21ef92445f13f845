"""The ``zcli`` command. Built-in subcommands plus those that plugins register."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from .config import LOG_LEVELS
from .core import zCLI
from .exceptions import zCLIError
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
