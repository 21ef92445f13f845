"""Plan 003's port configuration: every port of the plan derived from the tunnel's three
config files (``PortConfig``), and the files we write for our own tunnel on free ports
below 32768 (``write_configs``). See ``plan003`` for how the suites use them."""

from __future__ import annotations

import ipaddress
import json
import random
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

__all__ = ["Backend", "ConfigError", "PortConfig", "free_port_base", "write_configs"]

# The plan's tunnel names, used only when we write the config files ourselves.
S2C_TUN1, S2C_TUN2 = "server-to-client-tun1", "server-to-client-tun2"
C2S_TUN1, C2S_TUN2 = "client-to-server-tun1", "client-to-server-tun2"
WILDCARDS = {"", "0.0.0.0", "::", "*"}


# --- the port configuration ----------------------------------------------------------


class ConfigError(ValueError):
    """A config file of the target does not describe plan 003's two tunnels each way."""


def _read_config(path: Path) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    data = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level is not a mapping")
    return data


def _find(folder: Path, stem: str) -> Path:
    for suffix in (".json", ".yaml", ".yml"):
        path = folder / f"{stem}{suffix}"
        if path.is_file():
            return path
    raise ConfigError(f"{folder} has no {stem}.json, {stem}.yaml or {stem}.yml")


def _entries(config: dict[str, Any], key: str, path: Path) -> list[dict[str, Any]]:
    entries = config.get(key)
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ConfigError(f"{path}: {key} is not a list of mappings")
    return entries


def _named(config: dict[str, Any], key: str, name: str, path: Path) -> dict[str, Any]:
    for entry in _entries(config, key, path):
        if entry.get("tunnelName") == name:
            return entry
    raise ConfigError(f"{path}: {key} has no entry with tunnelName {name!r}")


def _reach(address: str, fallback: str) -> str:
    """The address a test connects to for a listener bound to ``address``."""
    return fallback if address in WILDCARDS else address


def _bind(host: str) -> str:
    """The address an echo backend binds to so that ``host`` reaches it."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return "127.0.0.1" if host == "localhost" else "0.0.0.0"
    return host


@dataclass(frozen=True)
class Backend:
    """One echo backend the tunnel dials: its role in the plan, where it listens."""

    name: str  # "client1-tun1", "client2-tun2", "shared-tun1"
    host: str
    port: int


class PortConfig:
    """Plan 003's ``port_config.PortConfig``, derived from the three config files."""

    def __init__(
        self,
        server: dict[str, Any],
        client1: dict[str, Any],
        client2: dict[str, Any],
        paths: tuple[Path, Path, Path] = (Path("server"), Path("client1"), Path("client2")),
    ) -> None:
        spath, c1path, c2path = paths
        self.paths = paths
        s2c = _entries(server, "tcpTunnelListens", spath)
        c2s = _entries(server, "tcpTunnelConnects", spath)
        if len(s2c) < 2 or len(c2s) < 2:
            raise ConfigError(
                f"{spath}: plan 003 needs two tcpTunnelListens and two tcpTunnelConnects"
            )
        self.s2cNames = (str(s2c[0]["tunnelName"]), str(s2c[1]["tunnelName"]))
        self.c2sNames = (str(c2s[0]["tunnelName"]), str(c2s[1]["tunnelName"]))
        url = str(server.get("dataExchange", {}).get("serverUrl", ""))
        self.serverUrl = url
        server_host = urlsplit(url).hostname or "127.0.0.1"
        self.serverHost = _reach(str(s2c[0].get("listenBindAddress", "")), server_host)
        self._ports: dict[str, int] = {
            "serverToClientTun1ListenPort": int(s2c[0]["listenPort"]),
            "serverToClientTun2ListenPort": int(s2c[1]["listenPort"]),
            "clientToServerTun1ConnectPort": int(c2s[0]["connectToPort"]),
            "clientToServerTun2ConnectPort": int(c2s[1]["connectToPort"]),
        }
        self.clientHosts: dict[int, str] = {}
        backends = [
            Backend(
                f"shared-tun{tun}", _bind(str(entry["connectToHost"])), int(entry["connectToPort"])
            )
            for tun, entry in ((1, c2s[0]), (2, c2s[1]))
        ]
        for number, config, path in ((1, client1, c1path), (2, client2, c2path)):
            listen1 = _named(config, "tcpTunnelListens", self.c2sNames[0], path)
            listen2 = _named(config, "tcpTunnelListens", self.c2sNames[1], path)
            connect1 = _named(config, "tcpTunnelConnects", self.s2cNames[0], path)
            connect2 = _named(config, "tcpTunnelConnects", self.s2cNames[1], path)
            self.clientHosts[number] = _reach(
                str(listen1.get("listenBindAddress", "")), "127.0.0.1"
            )
            self._ports[f"client{number}ToServerTun1ListenPort"] = int(listen1["listenPort"])
            self._ports[f"client{number}ToServerTun2ListenPort"] = int(listen2["listenPort"])
            self._ports[f"serverToClient{number}Tun1ConnectPort"] = int(connect1["connectToPort"])
            self._ports[f"serverToClient{number}Tun2ConnectPort"] = int(connect2["connectToPort"])
            for tun, entry in ((1, connect1), (2, connect2)):
                host = _bind(str(entry["connectToHost"]))
                backends.append(
                    Backend(f"client{number}-tun{tun}", host, int(entry["connectToPort"]))
                )
        self.backends = tuple(backends)
        self.reconnectTimeoutSecs = float(server.get("standbySocketCloseDurationSecs", 30))

    @classmethod
    def from_folder(cls, folder: str | Path) -> PortConfig:
        folder = Path(folder)
        paths = (_find(folder, "server"), _find(folder, "client1"), _find(folder, "client2"))
        server, client1, client2 = (_read_config(path) for path in paths)
        return cls(server, client1, client2, paths)

    def __getattr__(self, name: str) -> int:
        try:
            return self.__dict__["_ports"][name]
        except KeyError:
            raise AttributeError(name) from None

    # The plan's property names, spelled out so that a reader (and a checker) finds them.
    serverToClientTun1ListenPort: int
    serverToClientTun2ListenPort: int
    client1ToServerTun1ListenPort: int
    client1ToServerTun2ListenPort: int
    client2ToServerTun1ListenPort: int
    client2ToServerTun2ListenPort: int
    serverToClient1Tun1ConnectPort: int
    serverToClient1Tun2ConnectPort: int
    serverToClient2Tun1ConnectPort: int
    serverToClient2Tun2ConnectPort: int
    clientToServerTun1ConnectPort: int
    clientToServerTun2ConnectPort: int

    def client_ports(self, number: int) -> tuple[int, int]:
        """Client ``number``'s client-to-server listen ports (tun1, tun2)."""
        return self._ports[f"client{number}ToServerTun1ListenPort"], self._ports[
            f"client{number}ToServerTun2ListenPort"
        ]

    def server_ports(self) -> tuple[int, int]:
        """The server's server-to-client listen ports (tun1, tun2)."""
        return self.serverToClientTun1ListenPort, self.serverToClientTun2ListenPort

    def listeners(self) -> list[tuple[str, str, int]]:
        """Every listen port of the tunnel: (owner, host, port)."""
        found = [("server", self.serverHost, port) for port in self.server_ports()]
        for number in (1, 2):
            found += [
                (f"client{number}", self.clientHosts[number], p) for p in self.client_ports(number)
            ]
        return found

    def host(self, where: str) -> str:
        """The address of ``server``, ``client1`` or ``client2``."""
        if where == "server":
            return self.serverHost
        return self.clientHosts[int(where.removeprefix("client"))]


# --- writing our own configuration -----------------------------------------------------

PORTS_NEEDED = 13


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_base(count: int = PORTS_NEEDED, rng: random.Random | None = None) -> int:
    """A random base in 20000-32000 whose ``count`` ports all bind now: below the
    ephemeral range (32768+), so an outgoing connection never takes one of them."""
    rng = rng or random.Random()
    for _ in range(200):
        base = rng.randrange(20000, 32000 - count)
        if all(_bindable(base + offset) for offset in range(count)):
            return base
    raise RuntimeError(f"no {count} consecutive free ports found between 20000 and 32000")


def write_configs(folder: Path, close_secs: float = 3, level: str = "INFO") -> PortConfig:
    """Write server.json, client1.json and client2.json for a tunnel on free ports of
    127.0.0.1 and return the PortConfig read back from them."""
    base = free_port_base()
    ws = f"ws://127.0.0.1:{base}"

    def listen(name: str, port: int) -> dict[str, Any]:
        return {"tunnelName": name, "listenPort": port, "listenBindAddress": "127.0.0.1"}

    def connect(name: str, port: int) -> dict[str, Any]:
        return {"tunnelName": name, "connectToHost": "127.0.0.1", "connectToPort": port}

    def common(server: bool, client_id: int | None) -> dict[str, Any]:
        config: dict[str, Any] = {"weAreServer": server}
        if client_id is not None:
            config["clientId"] = client_id
        config["standbySocketCloseDurationSecs"] = close_secs
        config["dataExchange"] = {
            "serverUrl": ws,
            "tlsBundleFilePath": None,
            "enableMutualTLS": False,
            "mutualTLSTrustedCACertificateBundleFilePath": None,
            "mutualTLSTrustedPeerCertificateBundleFilePath": None,
        }
        config["logging"] = {"level": level}
        return config

    server = common(True, None)
    server["tcpTunnelListens"] = [listen(S2C_TUN1, base + 1), listen(S2C_TUN2, base + 2)]
    server["tcpTunnelConnects"] = [connect(C2S_TUN1, base + 11), connect(C2S_TUN2, base + 12)]
    configs = {"server": server}
    for number, listens, backends in ((1, base + 3, base + 7), (2, base + 5, base + 9)):
        client = common(False, number)
        client["tcpTunnelListens"] = [listen(C2S_TUN1, listens), listen(C2S_TUN2, listens + 1)]
        client["tcpTunnelConnects"] = [connect(S2C_TUN1, backends), connect(S2C_TUN2, backends + 1)]
        configs[f"client{number}"] = client
    for stem, config in configs.items():
        (folder / f"{stem}.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return PortConfig.from_folder(folder)
