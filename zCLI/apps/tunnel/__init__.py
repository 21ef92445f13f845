"""zTunnel: TCP over WebSocket with active/standby failover, built as a zCLI plugin.

This module is the ``zcli.plugins`` entry point: it brings the ``zcli tunnel`` command
and the test suites, and imports nothing heavy. The contract is docs/tunnel.md; the
pure core is ``frames``, ``core`` and ``roles``; ``pump`` and ``endpoints`` are the
asyncio adapters.
"""

from __future__ import annotations

import argparse
import importlib

from zCLI import Command, Plugin

__all__ = ["PLUGIN", "configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    roles = parser.add_subparsers(dest="role", required=True, metavar="{server,client}")
    for role, text in (
        ("server", "run the tunnel server (listens for both clients)"),
        ("client", "run tunnel client 1 or 2 (its clientId is in the config)"),
    ):
        sub = roles.add_parser(role, help=text, description=text)
        sub.add_argument("--config", required=True, metavar="FILE", help="JSON or YAML config")


def run(args: argparse.Namespace) -> int:
    command = importlib.import_module("zCLI.apps.tunnel.command")
    return int(command.main(args))


PLUGIN = Plugin(
    "tunnel",
    commands=[
        Command("tunnel", "run a zTunnel server or client (TCP over WebSocket)", run, configure)
    ],
    suites=[
        "zCLI.apps.tunnel.tests.tunnel_frames_Test",
        "zCLI.apps.tunnel.tests.tunnel_config_Test",
        "zCLI.apps.tunnel.tests.tunnel_link_Test",
        "zCLI.apps.tunnel.tests.tunnel_plan003_echo_Test",
        "zCLI.apps.tunnel.tests.tunnel_plan003_failover_Test",
        "zCLI.apps.tunnel.tests.tunnel_plan003_quality_Test",
        "zCLI.apps.tunnel.tests.tunnel_plan003_pingpong_Test",
        "zCLI.apps.tunnel.tests.tunnel_plan003_concurrent_Test",
        "zCLI.apps.tunnel.tests.tunnel_plan003_impact_Test",
        "zCLI.apps.tunnel.tests.tunnel_plan003_punishment_Test",
    ],
)
