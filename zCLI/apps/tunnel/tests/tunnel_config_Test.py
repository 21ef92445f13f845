"""zTunnel's config files: the tcp-over-websocket format in JSON or YAML, every bad
entry named with its file and key path, and ``zcli tunnel`` leaving with status 2."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from zCLI import ConfigError
from zCLI.apps.tunnel.config import ConnectEntry, ListenEntry, Tuning, TunnelConfig, load
from zTestSuite import zTestCase

CLIENT: dict[str, Any] = {
    "weAreServer": False,
    "clientId": 2,
    "standbySocketCloseDurationSecs": 3,
    "dataExchange": {
        "serverUrl": "ws://127.0.0.1:20080",
        "tlsBundleFilePath": None,
        "enableMutualTLS": False,
        "mutualTLSTrustedCACertificateBundleFilePath": None,
        "mutualTLSTrustedPeerCertificateBundleFilePath": None,
    },
    "tcpTunnelListens": [
        {"tunnelName": "client-to-server-tun1", "listenPort": 20011, "listenBindAddress": "0.0.0.0"}
    ],
    "tcpTunnelConnects": [
        {
            "tunnelName": "server-to-client-tun1",
            "connectToHost": "127.0.0.1",
            "connectToPort": 20021,
        }
    ],
    "logging": {"level": "debug", "logToStdout": True, "logFile": "x.log"},
}

YAML = """\
weAreServer: true
standbySocketCloseDurationSecs: 2.5
dataExchange:
  serverUrl: https://localhost:20443
  tlsBundleFilePath: bundle.pem
  authToken: from-file
tcpTunnelListens:
  - {tunnelName: server-to-client-tun1, listenPort: 20021}
tuning: {windowBytes: 65536, pingIntervalSecs: null}
"""


class ConfigCase(zTestCase):
    def json_file(self, data: Any, name: str = "config.json") -> Path:
        return self.write(name, json.dumps(data))

    def problems(self, path: Path, role: str = "client") -> list[str]:
        with self.assertRaises(ConfigError) as caught:
            load(path, role, environ={})
        return caught.exception.problems


class GoodConfigTest(ConfigCase):
    def test_the_existing_tools_client_config(self) -> None:
        """A client config of the existing tool loads as it says, with our defaults."""
        path = self.json_file(CLIENT)
        self.assertEqual(
            load(path, "client", environ={}),
            TunnelConfig(
                path=path,
                server=False,
                client_id=2,
                close_secs=3.0,
                url="ws://127.0.0.1:20080",
                secure=False,
                host="127.0.0.1",
                port=20080,
                listens=(ListenEntry("client-to-server-tun1", 20011, "0.0.0.0"),),
                connects=(ConnectEntry("server-to-client-tun1", "127.0.0.1", 20021),),
                log_level="DEBUG",
                ignored=("logging.logToStdout", "logging.logFile"),
                tuning=Tuning(),
            ),
        )

    def test_yaml_server_config(self) -> None:
        """YAML reads the same keys; https is TLS; relative files are beside the config."""
        self.write("bundle.pem", "not checked until the server starts\n")
        path = self.write("server.yaml", YAML)
        config = load(path, "server", environ={"ZTUNNEL_TOKEN": "from-env"})
        self.assertEqual(
            (config.server, config.secure, config.ws_url, config.close_secs, config.token),
            (True, True, "wss://localhost:20443", 2.5, "from-file"),
        )
        self.assertEqual(config.tls_bundle, self.workspace / "bundle.pem")
        self.assertEqual(
            config.listens, (ListenEntry("server-to-client-tun1", 20021, "127.0.0.1"),)
        )
        self.assertEqual(config.tuning, Tuning(window=65536, ping_interval=None))

    def test_token_from_environment(self) -> None:
        """Without dataExchange.authToken, ZTUNNEL_TOKEN is the shared secret."""
        path = self.json_file(CLIENT)
        self.assertEqual(load(path, "client", environ={"ZTUNNEL_TOKEN": "s3"}).token, "s3")
        self.assertIsNone(load(path, "client", environ={}).token)


class BadConfigTest(ConfigCase):
    def test_every_bad_entry_is_named(self) -> None:
        """All problems of a file come at once, each with the file and the key path."""
        data = json.loads(json.dumps(CLIENT))
        data["weAreServer"] = True
        data["clientId"] = 3
        data["standbySocketCloseDurationSecs"] = "soon"
        data["dataExchange"]["serverUrl"] = "tcp://host:1"
        data["dataExchange"]["enableMutualTLS"] = "yes"
        data["tcpTunnelListens"] = [
            {"tunnelName": "a", "listenPort": 70000},
            "oops",
            {"tunnelName": "a", "listenPort": 20012, "colour": "red"},
        ]
        data["tcpTunnelConnects"] = [{"tunnelName": "", "connectToPort": 1}]
        data["logging"] = {"level": "LOUD"}
        data["tuning"] = {"windowBytes": 0, "speed": 1}
        path = self.json_file(data)
        self.assertEqual(
            self.problems(path),
            [
                f"{path}: weAreServer: is true, but this is `zcli tunnel client`",
                f"{path}: clientId: must be a whole number from 1 to 2, not 3",
                f"{path}: standbySocketCloseDurationSecs: must be a positive number of seconds, "
                "not 'soon'",
                f"{path}: dataExchange.serverUrl: 'tcp://host:1' must start with ws://, wss://, "
                "http:// or https://",
                f"{path}: dataExchange.enableMutualTLS: must be true or false, not 'yes'",
                f"{path}: tcpTunnelListens[1]: must be an object, not str",
                f"{path}: tcpTunnelListens[0].listenPort: must be a whole number from 1 to 65535, "
                "not 70000",
                f"{path}: tcpTunnelListens[2].colour: is not a known key (expected "
                "listenBindAddress, listenPort, tunnelName)",
                f"{path}: tcpTunnelConnects[0].tunnelName: must be a non-empty string, not ''",
                f"{path}: tcpTunnelConnects[0].connectToHost: is missing (a string is required)",
                f"{path}: logging.level: must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, "
                "not 'LOUD'",
                f"{path}: tuning.speed: is not a known key (expected chunkBytes, memoryCapBytes, "
                "pingIntervalSecs, pingTimeoutSecs, reconnectMaxSecs, windowBytes)",
                f"{path}: tuning.windowBytes: must be a whole number from 1 to 4294967295, not 0",
            ],
        )

    def test_duplicate_tunnels(self) -> None:
        """Two listens with one tunnel name are named by index."""
        data = dict(CLIENT)
        data["tcpTunnelListens"] = [
            {"tunnelName": "t", "listenPort": 20011},
            {"tunnelName": "t", "listenPort": 20012},
        ]
        path = self.json_file(data)
        self.assertEqual(
            self.problems(path), [f"{path}: tcpTunnelListens[1]: repeats the tunnelName 't'"]
        )

    def test_tls_files(self) -> None:
        """A wss server needs its bundle; named files must exist; TLS needs wss."""
        path = self.json_file(
            {"weAreServer": True, "dataExchange": {"serverUrl": "wss://0.0.0.0:20443"}}
        )
        self.assertEqual(
            self.problems(path, "server"),
            [
                f"{path}: dataExchange.tlsBundleFilePath: is required: the server on "
                "wss://0.0.0.0:20443 needs its certificate"
            ],
        )
        path = self.json_file(
            {
                "weAreServer": True,
                "dataExchange": {"serverUrl": "ws://h:1", "tlsBundleFilePath": "missing.pem"},
            }
        )
        self.assertEqual(
            self.problems(path, "server"),
            [
                f"{path}: dataExchange.tlsBundleFilePath: names 'missing.pem', which is not a "
                "readable file"
            ],
        )

    def test_unreadable_files(self) -> None:
        """A missing file, bad JSON, bad YAML and a non-object are one problem each."""
        missing = self.workspace / "nope.json"
        bad_json = self.write("bad.json", '{"weAreServer": true,,}')
        bad_yaml = self.write("bad.yaml", "a: [1, 2\n")
        listed = self.write("list.yml", "- 1\n")
        self.assertEqual(
            self.problems(missing), [f"{missing}: cannot be read (No such file or directory)"]
        )
        self.assertEqual(
            self.problems(bad_json),
            [
                f"{bad_json}: line 1: is not valid JSON "
                + "(Expecting property name enclosed in double quotes)"
            ],
        )
        self.assertEqual(
            self.problems(bad_yaml),
            [
                f"{bad_yaml}: line 2: is not valid YAML "
                + "(expected ',' or ']', but got '<stream end>')"
            ],
        )
        self.assertEqual(
            self.problems(listed), [f"{listed}: the top level must be an object, not list"]
        )

    def test_command_exits_2_with_one_sentence(self) -> None:
        """``zcli tunnel server --config bad.json`` prints one error line and exits 2."""
        path = self.json_file({"weAreServer": False, "dataExchange": {}}, "bad.json")
        result = self.zcli("tunnel", "server", "--config", str(path))
        self.assertEqual(result.returncode, 2)
        self.assertEqual(result.stdout, "")
        self.assertEqual(
            result.stderr,
            "zcli tunnel server: error: 2 configuration problems: "
            f"{path}: weAreServer: is false, but this is `zcli tunnel server`; "
            f"{path}: dataExchange.serverUrl: is missing (a string is required).\n",
        )
