"""``zcli tunnel server|client --config FILE``: load the config, set up logging, run."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import ssl
import sys

from zCLI import ConfigError

from .config import TunnelConfig, load

__all__ = ["main"]

log = logging.getLogger("zCLI.apps.tunnel")


def main(args: argparse.Namespace) -> int:
    role = str(args.role)
    try:
        config = load(args.config, role)
    except ConfigError as error:
        sys.stderr.write(f"zcli tunnel {role}: error: {error}\n")
        return 2
    logging.basicConfig(
        stream=sys.stderr,
        level=config.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # zcli's own --log-level (WARNING by default) set the root logger: the config's
    # level is the tunnel's.
    log.setLevel(config.log_level)
    # websockets logs every frame at DEBUG: ours say what matters about each link.
    logging.getLogger("websockets").setLevel(
        max(logging.INFO, logging.getLevelName(config.log_level))
    )
    if config.ignored:
        log.info("%s: ignored keys: %s", config.path, ", ".join(config.ignored))
    try:
        asyncio.run(_serve(config))
    except OSError as error:
        sys.stderr.write(f"zcli tunnel {role}: error: {error}\n")
        return 1
    return 0


async def _serve(config: TunnelConfig) -> None:
    from .endpoints import TunnelClient, TunnelServer

    side = TunnelServer(config) if config.server else TunnelClient(config)
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(_loop_error)
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, task.cancel)
    try:
        await side.run()
    except asyncio.CancelledError:
        log.info("stopped by a signal")


def _loop_error(loop: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
    """A peer that fails the TLS handshake or resets mid-accept is a line at INFO, not a
    traceback; anything else goes to asyncio's default handler."""
    error = context.get("exception")
    if isinstance(error, ssl.SSLError | ConnectionError):
        log.info(
            "%s: %s", context.get("message", "connection failed"), error or type(error).__name__
        )
        return
    loop.default_exception_handler(context)
