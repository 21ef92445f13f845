"""zTunnel's config files (docs/tunnel.md, "Configuration"), checked when they load.

The format is the existing tcp-over-websocket tool's ``config.json`` (or the same in
YAML) plus our optional ``tuning`` section. ``load(path, role)`` reads, checks every
entry and returns a frozen ``TunnelConfig``; a bad file raises one ``ConfigError`` that
lists every bad entry as "FILE: key path: what is wrong".
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from zCLI import ConfigError

__all__ = [
    "TOKEN_ENV",
    "ConnectEntry",
    "ListenEntry",
    "TunnelConfig",
    "Tuning",
    "load",
]

TOKEN_ENV = "ZTUNNEL_TOKEN"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
SCHEMES = {"ws": False, "http": False, "wss": True, "https": True}
MAX_WINDOW = 0xFFFFFFFF
MAX_CHUNK = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ListenEntry:
    tunnel: str
    port: int
    host: str


@dataclass(frozen=True, slots=True)
class ConnectEntry:
    tunnel: str
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class Tuning:
    window: int = 128 * 1024 * 1024
    memory_cap: int = 2 * 1024 * 1024 * 1024
    chunk: int = 64 * 1024
    ping_interval: float | None = 5.0
    ping_timeout: float | None = 10.0
    reconnect_max: float = 2.0


@dataclass(frozen=True, slots=True)
class TunnelConfig:
    path: Path
    server: bool
    client_id: int | None
    close_secs: float
    url: str
    secure: bool
    host: str
    port: int
    tls_bundle: Path | None = None
    mutual_tls: bool = False
    ca_bundle: Path | None = None
    peer_bundle: Path | None = None
    token: str | None = None
    listens: tuple[ListenEntry, ...] = ()
    connects: tuple[ConnectEntry, ...] = ()
    log_level: str = "INFO"
    ignored: tuple[str, ...] = ()  # keys we read past, named in one log line
    tuning: Tuning = field(default_factory=Tuning)

    @property
    def ws_url(self) -> str:
        """The URL as websockets takes it (http/https read as ws/wss)."""
        return f"{'wss' if self.secure else 'ws'}://{_host_port(self.host, self.port)}"


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _Checker:
    """Collects every problem of one file instead of stopping at the first."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.problems: list[str] = []

    def bad(self, key: str, why: str) -> None:
        self.problems.append(f"{self.path}: {key}: {why}")

    def kind(self, value: object) -> str:
        return "null" if value is None else type(value).__name__

    def string(
        self, data: Mapping[str, Any], key: str, where: str, *, required: bool
    ) -> str | None:
        value = data.get(key)
        if value is None:
            if required:
                self.bad(where + key, "is missing (a string is required)")
            return None
        if not isinstance(value, str) or not value.strip():
            self.bad(where + key, f"must be a non-empty string, not {value!r}")
            return None
        return value

    def integer(
        self,
        data: Mapping[str, Any],
        key: str,
        where: str,
        low: int,
        high: int,
        default: int | None,
    ) -> int | None:
        value = data.get(key)
        if value is None:
            if default is None:
                self.bad(where + key, f"is missing (a whole number from {low} to {high})")
            return default
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            self.bad(where + key, f"must be a whole number from {low} to {high}, not {value!r}")
            return default
        return value

    def number(
        self,
        data: Mapping[str, Any],
        key: str,
        where: str,
        default: float | None,
        *,
        nullable: bool,
    ) -> float | None:
        if key not in data:
            return default
        value = data[key]
        if value is None and nullable:
            return None
        if (
            not isinstance(value, int | float)
            or isinstance(value, bool)
            or value < 0
            or (value == 0 and nullable)
        ):
            what = "a positive number of seconds" + (" or null" if nullable else "")
            self.bad(where + key, f"must be {what}, not {value!r}")
            return default
        return float(value)

    def boolean(self, data: Mapping[str, Any], key: str, where: str, default: bool | None) -> bool:
        value = data.get(key)
        if value is None:
            if default is None:
                self.bad(where + key, "is missing (true or false)")
                return False
            return default
        if not isinstance(value, bool):
            self.bad(where + key, f"must be true or false, not {value!r}")
            return bool(default)
        return value

    def file(self, data: Mapping[str, Any], key: str, where: str) -> Path | None:
        raw = self.string(data, key, where, required=False)
        if raw is None:
            return None
        path = Path(raw)
        if not path.is_absolute():
            path = self.path.parent / path
        if not path.is_file():
            self.bad(where + key, f"names {raw!r}, which is not a readable file")
            return None
        return path

    def section(self, data: Mapping[str, Any], key: str, *, required: bool) -> dict[str, Any]:
        value = data.get(key)
        if value is None:
            if required:
                self.bad(key, "is missing (an object is required)")
            return {}
        if not isinstance(value, dict):
            self.bad(key, f"must be an object, not {self.kind(value)}")
            return {}
        return value


def _read(path: Path) -> object:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise ConfigError([f"{path}: cannot be read ({reason})"]) from None
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f"line {mark.line + 1}" if mark is not None else "somewhere"
            problem = getattr(error, "problem", None) or "invalid YAML"
            raise ConfigError([f"{path}: {where}: is not valid YAML ({problem})"]) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(
            [f"{path}: line {error.lineno}: is not valid JSON ({error.msg})"]
        ) from None


def load(path: str | Path, role: str, environ: Mapping[str, str] | None = None) -> TunnelConfig:
    """The checked config of ``zcli tunnel ROLE`` (``server`` or ``client``)."""
    path = Path(path)
    environ = os.environ if environ is None else environ
    data = _read(path)
    check = _Checker(path)
    if not isinstance(data, dict):
        raise ConfigError([f"{path}: the top level must be an object, not {check.kind(data)}"])
    server = check.boolean(data, "weAreServer", "", None)
    if (
        "weAreServer" in data
        and isinstance(data["weAreServer"], bool)
        and server != (role == "server")
    ):
        check.bad("weAreServer", f"is {json.dumps(server)}, but this is `zcli tunnel {role}`")
    server = role == "server"
    client_id = None
    if not server:
        client_id = check.integer(data, "clientId", "", 1, 2, None)
    close_secs = check.number(data, "standbySocketCloseDurationSecs", "", 3.0, nullable=False)

    exchange = check.section(data, "dataExchange", required=True)
    where = "dataExchange."
    url = check.string(exchange, "serverUrl", where, required=True) or ""
    secure, host, port = False, "", 0
    if url:
        parts = urlsplit(url)
        try:
            url_port = parts.port
        except ValueError:
            url_port = None
        if parts.scheme not in SCHEMES:
            check.bad(
                where + "serverUrl", f"{url!r} must start with ws://, wss://, http:// or https://"
            )
        elif not parts.hostname or url_port is None:
            check.bad(where + "serverUrl", f"{url!r} must name a host and a port (ws://HOST:PORT)")
        elif parts.path not in ("", "/"):
            check.bad(where + "serverUrl", f"{url!r} must not have a path")
        else:
            secure, host, port = SCHEMES[parts.scheme], parts.hostname, url_port
    tls_bundle = check.file(exchange, "tlsBundleFilePath", where)
    mutual = check.boolean(exchange, "enableMutualTLS", where, False)
    ca_bundle = check.file(exchange, "mutualTLSTrustedCACertificateBundleFilePath", where)
    peer_bundle = check.file(exchange, "mutualTLSTrustedPeerCertificateBundleFilePath", where)
    if secure and (server or mutual) and exchange.get("tlsBundleFilePath") is None:
        who = "the server" if server else "a client with enableMutualTLS"
        check.bad(where + "tlsBundleFilePath", f"is required: {who} on {url} needs its certificate")
    ca_key = "mutualTLSTrustedCACertificateBundleFilePath"
    if secure and server and mutual and exchange.get(ca_key) is None:
        if exchange.get("mutualTLSTrustedPeerCertificateBundleFilePath") is None:
            check.bad(
                where + "mutualTLSTrustedCACertificateBundleFilePath",
                "is required: with enableMutualTLS the server verifies clients with it",
            )
    if (mutual or tls_bundle or ca_bundle or peer_bundle) and url and not secure:
        check.bad(
            where + "serverUrl", f"{url!r} is not wss:// or https://, but TLS files are given"
        )
    token = check.string(exchange, "authToken", where, required=False)
    if token is None:
        token = environ.get(TOKEN_ENV) or None

    listens: list[ListenEntry] = []
    for index, entry in _entries(check, data, "tcpTunnelListens"):
        at = f"tcpTunnelListens[{index}]."
        name = check.string(entry, "tunnelName", at, required=True)
        listen_port = check.integer(entry, "listenPort", at, 1, 65535, None)
        bind = check.string(entry, "listenBindAddress", at, required=False) or "127.0.0.1"
        _unknown_keys(check, entry, at, {"tunnelName", "listenPort", "listenBindAddress"})
        if name is not None and listen_port is not None:
            listens.append(ListenEntry(name, listen_port, bind))
    connects: list[ConnectEntry] = []
    for index, entry in _entries(check, data, "tcpTunnelConnects"):
        at = f"tcpTunnelConnects[{index}]."
        name = check.string(entry, "tunnelName", at, required=True)
        connect_host = check.string(entry, "connectToHost", at, required=True)
        connect_port = check.integer(entry, "connectToPort", at, 1, 65535, None)
        _unknown_keys(check, entry, at, {"tunnelName", "connectToHost", "connectToPort"})
        if name is not None and connect_host is not None and connect_port is not None:
            connects.append(ConnectEntry(name, connect_host, connect_port))
    _duplicates(check, "tcpTunnelListens", [entry.tunnel for entry in listens], "tunnelName")
    _duplicates(check, "tcpTunnelConnects", [entry.tunnel for entry in connects], "tunnelName")
    _duplicates(
        check, "tcpTunnelListens", [f"{e.host}:{e.port}" for e in listens], "listen address"
    )

    logging_section = check.section(data, "logging", required=False)
    level = logging_section.get("level", "INFO")
    if not isinstance(level, str) or level.upper() not in LEVELS:
        check.bad("logging.level", f"must be one of {', '.join(LEVELS)}, not {level!r}")
        level = "INFO"
    ignored = [f"logging.{key}" for key in logging_section if key != "level"]
    known = {
        "weAreServer",
        "clientId",
        "standbySocketCloseDurationSecs",
        "dataExchange",
        "tcpTunnelListens",
        "tcpTunnelConnects",
        "logging",
        "tuning",
    }
    ignored += [key for key in data if key not in known]
    if server and "clientId" in data:
        ignored.append("clientId")
    exchange_keys = {
        "serverUrl",
        "tlsBundleFilePath",
        "enableMutualTLS",
        "mutualTLSTrustedCACertificateBundleFilePath",
        "mutualTLSTrustedPeerCertificateBundleFilePath",
        "authToken",
    }
    ignored += [f"dataExchange.{key}" for key in exchange if key not in exchange_keys]

    tuning = _tuning(check, check.section(data, "tuning", required=False))
    if check.problems:
        raise ConfigError(check.problems)
    return TunnelConfig(
        path=path,
        server=server,
        client_id=client_id,
        close_secs=float(close_secs if close_secs is not None else 3.0),
        url=url,
        secure=secure,
        host=host,
        port=port,
        tls_bundle=tls_bundle,
        mutual_tls=mutual,
        ca_bundle=ca_bundle,
        peer_bundle=peer_bundle,
        token=token,
        listens=tuple(listens),
        connects=tuple(connects),
        log_level=level.upper(),
        ignored=tuple(ignored),
        tuning=tuning,
    )


def _entries(
    check: _Checker, data: Mapping[str, Any], key: str
) -> list[tuple[int, dict[str, Any]]]:
    """(index, entry) for each object of the list ``key``; other items are named."""
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        check.bad(key, f"must be a list, not {check.kind(value)}")
        return []
    entries = []
    for index, entry in enumerate(value):
        if isinstance(entry, dict):
            entries.append((index, entry))
        else:
            check.bad(f"{key}[{index}]", f"must be an object, not {check.kind(entry)}")
    return entries


def _unknown_keys(check: _Checker, entry: Mapping[str, Any], at: str, known: set[str]) -> None:
    for key in entry:
        if key not in known:
            check.bad(at + key, f"is not a known key (expected {', '.join(sorted(known))})")


def _duplicates(check: _Checker, key: str, values: list[str], what: str) -> None:
    seen: set[str] = set()
    for index, value in enumerate(values):
        if value in seen:
            check.bad(f"{key}[{index}]", f"repeats the {what} {value!r}")
        seen.add(value)


def _tuning(check: _Checker, data: Mapping[str, Any]) -> Tuning:
    defaults = Tuning()
    at = "tuning."
    known = {
        "windowBytes",
        "memoryCapBytes",
        "chunkBytes",
        "pingIntervalSecs",
        "pingTimeoutSecs",
        "reconnectMaxSecs",
    }
    for key in data:
        if key not in known:
            check.bad(at + key, f"is not a known key (expected {', '.join(sorted(known))})")
    window = check.integer(data, "windowBytes", at, 1, MAX_WINDOW, defaults.window)
    cap = check.integer(data, "memoryCapBytes", at, 1, 1 << 50, defaults.memory_cap)
    chunk = check.integer(data, "chunkBytes", at, 1, MAX_CHUNK, defaults.chunk)
    ping_interval = check.number(
        data, "pingIntervalSecs", at, defaults.ping_interval, nullable=True
    )
    ping_timeout = check.number(data, "pingTimeoutSecs", at, defaults.ping_timeout, nullable=True)
    reconnect = check.number(data, "reconnectMaxSecs", at, defaults.reconnect_max, nullable=False)
    if reconnect is not None and reconnect <= 0:
        check.bad(
            at + "reconnectMaxSecs", f"must be a positive number of seconds, not {reconnect!r}"
        )
    return Tuning(
        window=window if window is not None else defaults.window,
        memory_cap=cap if cap is not None else defaults.memory_cap,
        chunk=chunk if chunk is not None else defaults.chunk,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
        reconnect_max=reconnect if reconnect else defaults.reconnect_max,
    )
