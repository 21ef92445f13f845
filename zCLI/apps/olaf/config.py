"""The server's settings, from the command line or a YAML file, checked before it starts.

YAML keys (all optional but ``key``)::

    host: 127.0.0.1          # where to listen
    port: 8765               # 0: any free port (printed at start)
    address: 127.0.0.1:8765  # the form we announce in server_hello and client_list
    key: server.pem          # our RSA private key (generated when missing)
    neighbours:              # address -> the file of its public key
      127.0.0.1:8766: b.pub.pem
    max_frame: 262144        # bytes; larger frames are dropped (4x closes with 1009)
    max_clients: 1000
    max_neighbours: 64
    max_pending: 64          # connections not yet past hello; beyond, closed with 1013
    hello_timeout: 30        # seconds to say hello; then closed with 1008
    rate: 50                 # messages per second per client
    queue: 1024              # frames waiting per connection before it is closed
    retry_max: 30            # seconds between tries to a neighbour, at most
    list_delay: 0.05         # seconds client list changes gather before one push
    data_as_string: false    # send signed data as a JSON string (v1.2) not an object
    http_port: -1            # POST /api/upload, GET /files/NAME; -1: off, 0: any port
    max_upload: 10485760     # bytes in an upload; larger: 413
    max_upload_total: 1073741824  # bytes the upload folder may hold; beyond: 507
    max_upload_connections: 16    # upload requests at once; beyond: 503
    upload_dir: ""           # where uploads go (default: NAME-uploads beside the key)

Command-line options override the file.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from .exceptions import ConfigError

__all__ = ["ServerConfig", "parse_neighbour"]


@dataclass
class ServerConfig:
    key: Path = Path("olaf-server.pem")
    host: str = "127.0.0.1"
    port: int = 8765
    address: str = ""  # empty: host:port as bound
    neighbours: dict[str, Path] = field(default_factory=dict)
    max_frame: int = 256 * 1024
    max_clients: int = 1000
    max_neighbours: int = 64
    max_pending: int = 64
    hello_timeout: float = 30.0
    rate: float = 50.0
    neighbour_rate: float = 0.0
    queue: int = 1024
    retry_max: float = 30.0
    list_delay: float = 0.05
    data_as_string: bool = False
    http_port: int = -1  # the upload API; -1: off, 0: any free port
    max_upload: int = 10 * 1024 * 1024
    max_upload_total: int = 1 << 30
    max_upload_connections: int = 16
    upload_dir: str = ""  # empty: NAME-uploads beside the key

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ServerConfig:
        config = cls.load(Path(args.config)) if args.config else cls()
        for item in fields(cls):
            value = getattr(args, item.name, None)
            if value is None or item.name == "neighbours":
                continue
            setattr(config, item.name, Path(value) if item.name == "key" else value)
        for text in args.neighbour or []:
            address, keyfile = parse_neighbour(text)
            config.neighbours[address] = keyfile
        config.check("the command line")
        return config

    @classmethod
    def load(cls, path: Path) -> ServerConfig:
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as error:
            raise ConfigError(f"{path}: cannot read the config ({error}).") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: the config must be a mapping of settings.")
        known = {item.name: item for item in fields(cls)}
        config = cls()
        for name, value in raw.items():
            if name not in known:
                raise ConfigError(f"{path}: unknown setting {name!r} (known: {', '.join(known)}).")
            if name == "neighbours":
                if not isinstance(value, dict):
                    raise ConfigError(f"{path}: 'neighbours' must map addresses to key files.")
                config.neighbours = {str(a): path.parent / str(k) for a, k in value.items()}
            elif name == "key":
                config.key = path.parent / str(value)
            else:
                expected = type(getattr(config, name))
                if expected is float and isinstance(value, int):
                    value = float(value)
                if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
                    raise ConfigError(
                        f"{path}: setting {name!r} is {value!r}, not a {expected.__name__}."
                    )
                setattr(config, name, value)
        config.check(str(path))
        return config

    def check(self, where: str) -> None:
        if not -1 <= self.http_port <= 65535:
            raise ConfigError(f"{where}: http_port {self.http_port} is not a TCP port (or -1).")
        for name in ("max_frame", "max_clients", "queue", "max_upload", "max_pending",
                     "max_upload_total", "max_upload_connections"):  # fmt: skip
            if getattr(self, name) < 1:
                raise ConfigError(f"{where}: {name} must be at least 1.")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"{where}: port {self.port} is not a TCP port.")
        if self.rate < 0 or self.neighbour_rate < 0 or self.retry_max <= 0 or self.list_delay < 0:
            raise ConfigError(f"{where}: rates must be >= 0 and retry_max > 0.")
        if len(self.neighbours) > self.max_neighbours:
            raise ConfigError(
                f"{where}: {len(self.neighbours)} neighbours, over max_neighbours "
                f"({self.max_neighbours})."
            )
        for address, keyfile in self.neighbours.items():
            if not keyfile.is_file():
                raise ConfigError(
                    f"{where}: the key file {keyfile} of neighbour {address} is missing."
                )

    def to_json(self) -> dict[str, Any]:
        return {item.name: getattr(self, item.name) for item in fields(self)}


def parse_neighbour(text: str) -> tuple[str, Path]:
    """``HOST:PORT=KEYFILE`` (or ``ws://HOST:PORT=KEYFILE``) -> (address, key file)."""
    address, sep, keyfile = text.rpartition("=")
    if not sep or not address or not keyfile:
        raise ConfigError(f"--neighbour {text!r} is not HOST:PORT=KEYFILE.")
    return address, Path(keyfile)
