"""``requires_network``: one decorator that skips a test when loopback cannot carry data.

Binding a socket is not a probe: in a network namespace whose loopback is down, bind
succeeds and connect fails. The probe makes a real round trip (bind, listen, connect to
itself, send a byte and read it back) within a short timeout, once per process.
"""

from __future__ import annotations

import functools
import os
import socket

from .requirements import requirement

__all__ = ["OFFLINE_ENV", "network_unavailable", "requires_network"]

OFFLINE_ENV = "ZTEST_OFFLINE"


@functools.cache
def _loopback_problem(timeout: float = 1.0) -> str | None:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
            server.bind(("127.0.0.1", 0))
            server.listen(1)
            server.settimeout(timeout)
            with socket.create_connection(server.getsockname(), timeout=timeout) as client:
                peer, _ = server.accept()
                with peer:
                    client.sendall(b"z")
                    peer.settimeout(timeout)
                    if peer.recv(1) != b"z":
                        return "a loopback round trip returned the wrong byte"
    except OSError as exc:
        return f"no loopback round trip ({exc})"
    return None


def network_unavailable() -> str | None:
    """Why network tests cannot run here, or None when they can."""
    if os.environ.get(OFFLINE_ENV, "") not in ("", "0"):
        return f"offline mode ({OFFLINE_ENV}=1 or --offline)"
    return _loopback_problem()


requires_network = requirement(network_unavailable, "network")
requires_network.__doc__ = (
    "Skip a test (sync or ``async def``) or every test of a class without loopback."
)
