"""zConfig: the four layers, their precedence, and validation that names every problem."""

from __future__ import annotations

from zCLI import ConfigError, load_config
from zTestSuite import zTestCase


class TestPrecedence(zTestCase):
    def test_defaults(self) -> None:
        """With nothing given, the documented defaults apply."""
        config = load_config({"zWorkspace": str(self.workspace)}, environ={})
        self.assertEqual((config.websocket.host, config.websocket.port), ("127.0.0.1", 56891))
        self.assertTrue(config.websocket.require_auth)
        self.assertEqual(config.zMode, "Terminal")
        self.assertFalse(config.http_server.enabled)

    def test_zspark_beats_environment_beats_file(self) -> None:
        """zSpark > ZCLI_* environment > zcli.yaml > defaults, key by key."""
        self.write(
            "zcli.yaml",
            """
            websocket: {port: 1111, host: 0.0.0.0, max_size: 10}
            logger: ERROR
        """,
        )
        env = {"ZCLI_WEBSOCKET_PORT": "2222", "ZCLI_WEBSOCKET_MAX_SIZE": "20"}
        config = load_config(self.spark(websocket={"port": 3333}), environ=env)
        self.assertEqual(config.websocket.port, 3333)  # zSpark
        self.assertEqual(config.websocket.max_size, 20)  # environment
        self.assertEqual(config.websocket.host, "0.0.0.0")  # file
        self.assertEqual(config.logger, "ERROR")  # file
        self.assertEqual(config.websocket.ping_interval, 20.0)  # default

    def test_environment_values_are_converted(self) -> None:
        """Environment strings become booleans, numbers and lists by the schema."""
        env = {
            "ZCLI_WEBSOCKET_REQUIRE_AUTH": "false",
            "ZCLI_WEBSOCKET_PING_INTERVAL": "2.5",
            "ZCLI_WEBSOCKET_ALLOWED_ORIGINS": "http://a.example, http://b.example",
            "ZCLI_ZMODE": "zBifrost",
            "ZCLI_HTTP_SERVER_ENABLED": "yes",
            "ZCLI_HTTP_SERVER_PORT": "9000",
        }
        config = load_config(self.spark(), environ=env)
        self.assertFalse(config.websocket.require_auth)
        self.assertEqual(config.websocket.ping_interval, 2.5)
        self.assertEqual(config.websocket.allowed_origins, ("http://a.example", "http://b.example"))
        self.assertEqual(config.zMode, "zBifrost")
        self.assertEqual((config.http_server.enabled, config.http_server.port), (True, 9000))

    def test_workspace_path(self) -> None:
        """zWorkspace becomes a Path."""
        self.assertEqual(load_config(self.spark(), environ={}).zWorkspace, self.workspace)


class TestValidation(zTestCase):
    def problems(self, spark: dict, environ: dict | None = None) -> list[str]:
        with self.assertRaises(ConfigError) as caught:
            load_config(self.spark(**spark), environ=environ or {})
        return caught.exception.problems

    def test_every_problem_is_collected(self) -> None:
        """One ConfigError lists each bad key with the reason."""
        problems = self.problems(
            {
                "websocket": {"port": 70000, "require_auth": "yes", "max_size": 0},
                "zMode": "GUI",
            }
        )
        self.assertEqual(
            problems,
            [
                "zSpark websocket.port: 70000 is outside 1-65535",
                "zSpark websocket.require_auth: expected true or false, got 'yes'",
                "zSpark websocket.max_size: must be at least 1, got 0",
                "zSpark zMode: expected one of Terminal, zBifrost, got 'GUI'",
            ],
        )

    def test_compression_is_deflate_or_none(self) -> None:
        """websocket.compression takes deflate (the default) or none, nothing else."""
        self.assertEqual(load_config(self.spark(), environ={}).websocket.compression, "deflate")
        none = load_config(self.spark(websocket={"compression": "none"}), environ={})
        self.assertEqual(none.websocket.compression, "none")
        self.assertEqual(
            self.problems({"websocket": {"compression": "gzip"}}),
            ["zSpark websocket.compression: expected one of deflate, none, got 'gzip'"],
        )

    def test_message_is_a_sentence_naming_the_count(self) -> None:
        """The exception text counts the problems and lists them."""
        with self.assertRaises(ConfigError) as caught:
            load_config(self.spark(websocket={"port": -1}), environ={})
        self.assertEqual(
            str(caught.exception),
            "1 configuration problem: zSpark websocket.port: -1 is outside 1-65535.",
        )

    def test_unknown_keys_get_a_hint(self) -> None:
        """Unknown keys are refused with a did-you-mean suggestion."""
        problems = self.problems({"websocket": {"prot": 1}, "plugin": ["x"]})
        self.assertEqual(
            problems,
            [
                "zSpark websocket.prot: unknown key (did you mean 'port'?)",
                "zSpark plugin: unknown key (did you mean 'plugins'?)",
            ],
        )

    def test_same_port_for_both_servers(self) -> None:
        """websocket and an enabled http_server cannot share a host and port."""
        problems = self.problems(
            {"websocket": {"port": 9000}, "http_server": {"enabled": True, "port": 9000}}
        )
        self.assertEqual(
            problems,
            [
                "websocket.port and http_server.port: both are 9000 on 127.0.0.1; "
                "the two servers need different ports"
            ],
        )

    def test_bad_environment_value_names_the_layer(self) -> None:
        """A bad environment value is reported as coming from the environment."""
        problems = self.problems({}, environ={"ZCLI_WEBSOCKET_PORT": "eighty"})
        self.assertEqual(
            problems, ["environment websocket.port: expected a whole number, got 'eighty'"]
        )

    def test_bad_file(self) -> None:
        """A workspace file that is not a mapping is one problem naming the file."""
        path = self.write("zcli.yaml", "- just\n- a list\n")
        self.assertEqual(self.problems({}), [f"{path}: expected a mapping at the top level"])

    def test_boolean_is_not_a_port(self) -> None:
        """true is not silently taken as port 1."""
        self.assertEqual(
            self.problems({"websocket": {"port": True}}),
            ["zSpark websocket.port: expected a whole number, got True"],
        )

    def test_port_zero_means_any_free_port(self) -> None:
        """Port 0 is accepted: the OS picks a free port (tests rely on it)."""
        config = load_config(self.spark(websocket={"port": 0}), environ={})
        self.assertEqual(config.websocket.port, 0)

    def test_workspace_path_type(self) -> None:
        """zWorkspace must be a string path."""
        self.assertEqual(
            self.problems({"zWorkspace": 5}), ["zWorkspace: expected a non-empty string, got 5"]
        )
