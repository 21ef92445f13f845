"""zNeighbourhood: an OLAF/Neighbourhood chat server and client, built as a zCLI plugin.

This module is the ``zcli.plugins`` entry point: it brings the ``zcli olaf`` command
and the test suites, and imports nothing heavy. The pure core is ``messages``,
``crypto`` and ``core``; ``server`` and ``client`` are the asyncio adapters. What the
server accepts and sends is docs/olaf.md.
"""

from __future__ import annotations

import argparse
import importlib

from zCLI import Command, Plugin

__all__ = ["PLUGIN", "configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    roles = parser.add_subparsers(dest="role", required=True, metavar="{server,client,keygen}")
    server = roles.add_parser("server", help="run an OLAF server (clients and neighbours)")
    server.add_argument("--config", metavar="FILE", help="YAML settings (see docs/olaf.md)")
    server.add_argument("--host", help="the address to listen on (127.0.0.1)")
    server.add_argument("--port", type=int, help="the port to listen on; 0: any free port")
    server.add_argument("--address", help="what we announce: HOST:PORT or ws://HOST:PORT")
    server.add_argument("--key", help="our RSA private key, PEM (created when missing)")
    server.add_argument(
        "--neighbour",
        action="append",
        metavar="HOST:PORT=KEYFILE",
        help="a neighbour server and its public key file (repeat for each)",
    )
    server.add_argument("--max-frame", dest="max_frame", type=int, help="bytes in a frame")
    server.add_argument("--max-clients", dest="max_clients", type=int, help="clients at once")
    server.add_argument("--max-neighbours", dest="max_neighbours", type=int)
    server.add_argument(
        "--max-pending", dest="max_pending", type=int, help="connections not yet past hello"
    )
    server.add_argument(
        "--hello-timeout", dest="hello_timeout", type=float, help="seconds to say hello"
    )
    server.add_argument("--rate", type=float, help="messages per second per client (0: no limit)")
    server.add_argument("--neighbour-rate", dest="neighbour_rate", type=float)
    server.add_argument("--queue", type=int, help="frames waiting per connection")
    server.add_argument("--retry-max", dest="retry_max", type=float, help="seconds, at most")
    server.add_argument(
        "--list-delay", dest="list_delay", type=float, help="seconds changes gather (0.05)"
    )
    server.add_argument(
        "--data-as-string",
        dest="data_as_string",
        action="store_const",
        const=True,
        help="send signed data as a JSON string (v1.2) instead of an object",
    )
    server.add_argument(
        "--http-port", dest="http_port", type=int, help="the upload API's port (0: any)"
    )
    server.add_argument("--max-upload", dest="max_upload", type=int, help="bytes in an upload")
    server.add_argument(
        "--max-upload-total", dest="max_upload_total", type=int,
        help="bytes the upload folder may hold (1 GiB)",
    )  # fmt: skip
    server.add_argument(
        "--max-upload-connections", dest="max_upload_connections", type=int,
        help="upload requests at once (16)",
    )  # fmt: skip
    server.add_argument("--upload-dir", dest="upload_dir", help="where uploads are kept")
    server.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG")
    client = roles.add_parser("client", help="run the OLAF terminal client")
    client.add_argument("address", metavar="HOST:PORT", help="the server (ws:// optional)")
    client.add_argument("--key", help="our RSA private key, PEM (default: a new one)")
    client.add_argument("--data-as-string", dest="data_as_string", action="store_true")
    keygen = roles.add_parser("keygen", help="create a key pair: FILE and FILE.pub.pem")
    keygen.add_argument("key", metavar="FILE", help="where the private key goes (PEM)")


def run(args: argparse.Namespace) -> int:
    module = importlib.import_module(f"zCLI.apps.olaf.{args.role}")
    return int(module.main(args))


PLUGIN = Plugin(
    "olaf",
    commands=[
        Command("olaf", "run a zNeighbourhood (OLAF) server or terminal client", run, configure)
    ],
    suites=[
        "zCLI.apps.olaf.tests.olaf_crypto_Test",
        "zCLI.apps.olaf.tests.olaf_core_Test",
        "zCLI.apps.olaf.tests.olaf_plan000_Test",
        "zCLI.apps.olaf.tests.olaf_hostile_Test",
        "zCLI.apps.olaf.tests.olaf_upload_Test",
    ],
)
