"""zConfig: one validated, frozen configuration built from four layers.

Precedence, highest first: the zSpark dict given to ``zCLI()``, the environment
(``ZCLI_<KEY>`` for top-level keys, ``ZCLI_<SECTION>_<KEY>`` for nested ones, e.g.
``ZCLI_WEBSOCKET_PORT``), the YAML file ``zcli.yaml`` in the workspace, then the
defaults below. Every problem in every layer is collected and raised as one
``ConfigError`` so a user fixes them all in one go.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from . import fast
from .exceptions import ConfigError
from .postgres import is_postgres_url, redacted

__all__ = [
    "CONFIG_FILE",
    "AuthConfig",
    "Config",
    "HttpConfig",
    "WebSocketConfig",
    "load_config",
]

CONFIG_FILE = "zcli.yaml"
MODES = ("Terminal", "zBifrost")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
COMPRESSIONS = ("deflate", "none")
ADAPTERS = ("asyncio", "sansio")  # websocket.adapter: zCLI.bridge.connection


@dataclass(frozen=True)
class WebSocketConfig:
    host: str = "127.0.0.1"
    port: int = 56891
    require_auth: bool = True
    allowed_origins: tuple[str, ...] = ()
    ping_interval: float = 20.0
    ping_timeout: float = 20.0
    max_size: int = 1_048_576
    max_connections: int = 1000
    rate_limit: float = 50.0
    rate_burst: int = 100
    queue_size: int = 256
    queue_bytes: int = 4_194_304
    max_request_id: int = 128
    handshake_timeout: float = 10.0
    auth_timeout: float = 10.0
    max_public_requests: int = 8
    shutdown_timeout: float = 5.0
    compression: str = "deflate"  # permessage-deflate when a client offers it; or "none"
    broker: str | None = None  # redis://HOST:PORT/DB: processes of one service share it
    presence_ttl: float = 15.0  # seconds a dead process's users stay online (broker)
    # fast mode (uvloop, orjson; see zCLI.fast): true, false, or unset ("auto"): on when
    # zCLI[fast] is installed. load_config settles it to true or false.
    fast: bool | None = None
    # how connections are driven: "asyncio" (websockets' asyncio server) or "sansio"
    # (zBifrost's own asyncio Protocol around websockets' sans-I/O ServerProtocol,
    # zCLI.bridge.sansio); unset ("auto"): sansio in fast mode, else asyncio.
    # load_config settles it.
    adapter: str | None = None


@dataclass(frozen=True)
class HttpConfig:
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 8080
    serve_path: str = "public"
    max_connections: int = 128
    idle_timeout: float = 10.0
    header_timeout: float = 10.0
    max_body: int = 65_536
    max_header_bytes: int = 65_536


@dataclass(frozen=True)
class AuthConfig:
    users_file: str = "users.yaml"
    users_database: str | None = None  # postgresql://...: users there, not in users_file
    secret: str = ""
    token_ttl: float = 3600.0
    revocations_file: str = "revoked_tokens.sqlite3"
    hash_workers: int = 2
    hash_queue: int = 64
    max_failed_logins: int = 5
    max_failed_logins_per_address: int = 20
    failed_login_window: float = 60.0


@dataclass(frozen=True)
class Config:
    zWorkspace: Path = Path(".")
    zVaFile: str | None = None
    zBlock: str | None = None
    zMode: str = "Terminal"
    state_dir: Path = Path(".zcli")
    plugins: tuple[str, ...] = ()
    logger: str = "WARNING"
    websocket: WebSocketConfig = field(default_factory=WebSocketConfig)
    http_server: HttpConfig = field(default_factory=HttpConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)


# --- value checkers: each returns the converted value or raises ValueError ---------

Checker = Callable[[Any, bool], Any]


def _text(value: Any, from_env: bool) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a non-empty string, got {value!r}")
    return value


def _optional_text(value: Any, from_env: bool) -> str | None:
    return None if value is None else _text(value, from_env)


def _postgres_url(value: Any, from_env: bool) -> str | None:
    """None, or postgresql://[USER[:PASSWORD]@]HOST[:PORT]/DB (postgres:// too)."""
    if value is None:
        return None
    text = _text(value, from_env)
    if not is_postgres_url(text) or not urlsplit(text).path.strip("/"):
        raise ValueError(f"expected postgresql://HOST:PORT/DB, got {redacted(text)!r}")
    return text


def _bool(value: Any, from_env: bool) -> bool:
    if isinstance(value, bool):
        return value
    if from_env and isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
    raise ValueError(f"expected true or false, got {value!r}")


def _int(value: Any, from_env: bool) -> int:
    if from_env and isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise ValueError(f"expected a whole number, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected a whole number, got {value!r}")
    return value


def _positive_int(value: Any, from_env: bool) -> int:
    number = _int(value, from_env)
    if number < 1:
        raise ValueError(f"must be at least 1, got {number}")
    return number


def _port(value: Any, from_env: bool) -> int:
    number = _int(value, from_env)
    if not 0 <= number <= 65535:
        raise ValueError(f"{number} is outside 1-65535")
    return number


def _positive_float(value: Any, from_env: bool) -> float:
    if from_env and isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise ValueError(f"expected a number, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError(f"expected a number above 0, got {value!r}")
    return float(value)


def _text_list(value: Any, from_env: bool) -> tuple[str, ...]:
    if from_env and isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"expected a list of strings, got {value!r}")
    return tuple(value)


def _choice(options: tuple[str, ...]) -> Checker:
    def check(value: Any, from_env: bool) -> str:
        if value not in options:
            raise ValueError(f"expected one of {', '.join(options)}, got {value!r}")
        return str(value)

    return check


def _fast(value: Any, from_env: bool) -> bool | None:
    if value == "auto" or (from_env and isinstance(value, str) and value.strip() == "auto"):
        return None
    try:
        return _bool(value, from_env)
    except ValueError:
        raise ValueError(f"expected true, false or auto, got {value!r}") from None


def _adapter(value: Any, from_env: bool) -> str | None:
    if value == "auto" or (from_env and isinstance(value, str) and value.strip() == "auto"):
        return None
    if value not in ADAPTERS:
        raise ValueError(f"expected one of {', '.join(ADAPTERS)} or auto, got {value!r}")
    return str(value)


def _broker_url(value: Any, from_env: bool) -> str | None:
    """None, or a Redis URL: redis://[:PASSWORD@]HOST[:PORT][/DB] (rediss:// for TLS)."""
    if value is None:
        return None
    text = _text(value, from_env)
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise ValueError(f"expected redis://HOST:PORT/DB, got {text!r}") from None
    database = parts.path.lstrip("/")
    if (
        parts.scheme not in ("redis", "rediss")
        or not parts.hostname
        or (port is not None and not 0 < port < 65536)
        or (database and not database.isdigit())
    ):
        raise ValueError(f"expected redis://HOST:PORT/DB, got {text!r}")
    return text


def _path(value: Any, from_env: bool) -> Path:
    return Path(_text(value, from_env))


# Port 0 is accepted on purpose: it asks the OS for a free port (tests use it).
TOP_LEVEL: dict[str, Checker] = {
    "zWorkspace": _path,
    "zVaFile": _optional_text,
    "zBlock": _optional_text,
    "zMode": _choice(MODES),
    "state_dir": _path,
    "plugins": _text_list,
    "logger": _choice(LOG_LEVELS),
}
SECTIONS: dict[str, tuple[type, dict[str, Checker]]] = {
    "websocket": (
        WebSocketConfig,
        {
            "host": _text,
            "port": _port,
            "require_auth": _bool,
            "allowed_origins": _text_list,
            "ping_interval": _positive_float,
            "ping_timeout": _positive_float,
            "max_size": _positive_int,
            "max_connections": _positive_int,
            "rate_limit": _positive_float,
            "rate_burst": _positive_int,
            "queue_size": _positive_int,
            "queue_bytes": _positive_int,
            "max_request_id": _positive_int,
            "handshake_timeout": _positive_float,
            "auth_timeout": _positive_float,
            "max_public_requests": _positive_int,
            "shutdown_timeout": _positive_float,
            "compression": _choice(COMPRESSIONS),
            "broker": _broker_url,
            "presence_ttl": _positive_float,
            "fast": _fast,
            "adapter": _adapter,
        },
    ),
    "http_server": (
        HttpConfig,
        {
            "enabled": _bool,
            "host": _text,
            "port": _port,
            "serve_path": _text,
            "max_connections": _positive_int,
            "idle_timeout": _positive_float,
            "header_timeout": _positive_float,
            "max_body": _positive_int,
            "max_header_bytes": _positive_int,
        },
    ),
    "auth": (
        AuthConfig,
        {
            "users_file": _text,
            "users_database": _postgres_url,
            "secret": _text,
            "token_ttl": _positive_float,
            "revocations_file": _text,
            "hash_workers": _positive_int,
            "hash_queue": _positive_int,
            "max_failed_logins": _positive_int,
            "max_failed_logins_per_address": _positive_int,
            "failed_login_window": _positive_float,
        },
    ),
}


def _hint(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _environment_layer(environ: Mapping[str, str]) -> dict[str, Any]:
    layer: dict[str, Any] = {}
    for key in TOP_LEVEL:
        name = f"ZCLI_{key.upper()}"
        if name in environ:
            layer[key] = environ[name]
    for section, (_cls, keys) in SECTIONS.items():
        for key in keys:
            name = f"ZCLI_{section.upper()}_{key.upper()}"
            if name in environ:
                layer.setdefault(section, {})[key] = environ[name]
    return layer


def _file_layer(workspace: Path, problems: list[str]) -> dict[str, Any]:
    path = workspace / CONFIG_FILE
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        problems.append(f"{path}: not valid YAML ({exc})")
        return {}
    if data is None:
        return {}
    if not isinstance(data, dict):
        problems.append(f"{path}: expected a mapping at the top level")
        return {}
    return data


def _merge(layers: list[tuple[str, dict[str, Any], bool]], problems: list[str]) -> dict[str, Any]:
    """Check each layer's keys and values, lowest precedence first, and overlay them."""
    merged: dict[str, Any] = {}
    known_top = list(TOP_LEVEL) + list(SECTIONS)
    for origin, layer, from_env in layers:
        for key, value in layer.items():
            if key in TOP_LEVEL:
                try:
                    merged[key] = TOP_LEVEL[key](value, from_env)
                except ValueError as exc:
                    problems.append(f"{origin} {key}: {exc}")
            elif key in SECTIONS:
                _cls, checkers = SECTIONS[key]
                if not isinstance(value, dict):
                    problems.append(f"{origin} {key}: expected a mapping, got {value!r}")
                    continue
                section = merged.setdefault(key, {})
                for sub, sub_value in value.items():
                    if sub not in checkers:
                        hint = _hint(sub, list(checkers))
                        problems.append(f"{origin} {key}.{sub}: unknown key{hint}")
                        continue
                    try:
                        section[sub] = checkers[sub](sub_value, from_env)
                    except ValueError as exc:
                        problems.append(f"{origin} {key}.{sub}: {exc}")
            else:
                problems.append(f"{origin} {key}: unknown key{_hint(key, known_top)}")
    return merged


def load_config(
    zSpark: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> Config:
    """Build the Config from zSpark, the environment, the workspace file and defaults."""
    spark = dict(zSpark or {})
    env = os.environ if environ is None else environ
    problems: list[str] = []
    env_layer = _environment_layer(env)

    # The workspace decides where the file layer is read from, so resolve it first.
    workspace_raw = spark.get("zWorkspace", env_layer.get("zWorkspace", "."))
    try:
        workspace = _path(workspace_raw, False)
    except ValueError as exc:
        problems.append(f"zWorkspace: {exc}")
        workspace = Path(".")
    file_layer = _file_layer(workspace, problems)
    if "zWorkspace" in file_layer:
        problems.append(f"{CONFIG_FILE} zWorkspace: cannot be set inside the workspace itself")
        del file_layer["zWorkspace"]

    spark.pop("zWorkspace", None)
    env_layer.pop("zWorkspace", None)
    merged = _merge(
        [
            (CONFIG_FILE, file_layer, False),
            ("environment", env_layer, True),
            ("zSpark", spark, False),
        ],
        problems,
    )
    merged["zWorkspace"] = workspace
    sections = {name: cls(**merged.pop(name, {})) for name, (cls, _checkers) in SECTIONS.items()}
    config = Config(**merged, **sections)

    ws, http = config.websocket, config.http_server
    if http.enabled and ws.port != 0 and ws.port == http.port and ws.host == http.host:
        problems.append(
            f"websocket.port and http_server.port: both are {ws.port} on {ws.host}; "
            "the two servers need different ports"
        )
    if ws.fast is None:
        config = replace(config, websocket=replace(ws, fast=fast.available()))
    elif ws.fast and not fast.available():
        problems.append(
            f"websocket.fast: fast mode needs {' and '.join(fast.missing())}, which "
            f"{'is' if len(fast.missing()) == 1 else 'are'} not installed: {fast.INSTALL}"
        )
    ws = config.websocket
    if ws.adapter is None:  # fast mode's default is the sans-I/O adapter (docs/benchmarks.md)
        config = replace(config, websocket=replace(ws, adapter="sansio" if ws.fast else "asyncio"))
    if problems:
        raise ConfigError(problems)
    return config
