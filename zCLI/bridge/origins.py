"""Which web pages may open a WebSocket to zBifrost: the Origin rule, with no I/O.

A browser sends the page's origin with every WebSocket handshake; a page from another
site must not drive a user's local app. With ``allowed_origins`` set, only those exact
``scheme://host[:port]`` strings pass. With it empty, the page's host name must be one
the server was configured with (``websocket.host``, ``http_server.host``), on any port,
because zServer serves the pages from a port of its own. The Host header is never
trusted for this: with DNS rebinding an attacker's name resolves to 127.0.0.1 and the
browser sends that name as both Origin and Host.

Loopback names are one host: when the server is bound to a loopback address (or to all
addresses, which include loopback), ``localhost``, ``127.0.0.1`` and ``[::1]`` (any
127.0.0.0/8 address) are all accepted. Non-browser clients send no Origin and are not
checked here.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

__all__ = ["OriginPolicy", "is_loopback"]

WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback IP address (``127.0.0.0/8``, ``::1``)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class OriginPolicy:
    def __init__(self, allowed_origins: Iterable[str], own_hosts: Iterable[str]) -> None:
        self.exact = frozenset(allowed_origins)
        hosts = {host.strip("[]").lower() for host in own_hosts}
        self.loopback = any(is_loopback(host) or host in WILDCARD_HOSTS for host in hosts)
        self.hosts = frozenset(hosts - WILDCARD_HOSTS)

    def allows(self, origin: str) -> bool:
        """Whether a page of this origin may connect."""
        if self.exact:
            return origin in self.exact
        try:
            parts = urlsplit(origin)
            host = parts.hostname
        except ValueError:
            return False
        if parts.scheme not in ("http", "https") or not host:
            return False
        return host in self.hosts or (self.loopback and is_loopback(host))
