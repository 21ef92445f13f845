"""Plugins: one registry, validated at registration, from all three sources."""

from __future__ import annotations

import sys

from zCLI import Command, Plugin, PluginError, Registry, zCLI
from zTestSuite import zTestCase


def _noop() -> None:
    return None


class TestRegistration(zTestCase):
    def assertRefused(self, plugin: Plugin, message: str, registry: Registry | None = None):
        registry = registry or Registry()
        with self.assertRaises(PluginError) as caught:
            registry.register(plugin, self.workspace)
        self.assertEqual(str(caught.exception), message)
        return registry

    def test_bad_entries_are_named(self) -> None:
        """Each bad entry is refused naming the plugin and the entry."""
        table = [
            (Plugin("bad name"), "plugin name 'bad name' must be a Python identifier"),
            (
                Plugin("p", functions={"not-ident": _noop}),
                "plugin 'p': function 'not-ident' is not a Python identifier",
            ),
            (Plugin("p", functions={"f": 42}), "plugin 'p': function 'f' is not callable"),
            (
                Plugin("p", events={"Chat": _noop}),
                "plugin 'p': event 'Chat' must be lower-case words joined by . or _",
            ),
            (
                Plugin("p", events={"dispatch": _noop}),
                "plugin 'p': event 'dispatch' is a built-in zBifrost event",
            ),
            (
                Plugin("p", events={"chat.send": "nope"}),
                "plugin 'p': event 'chat.send' has a handler that is not callable",
            ),
            (
                Plugin("p", zui={"x": "missing.yaml"}),
                f"plugin 'p': zUI file 'x' points to {self.workspace}/missing.yaml, "
                "which does not exist",
            ),
            (
                Plugin("p", commands=[Command("run", "x", lambda a: 0)]),
                "plugin 'p': command 'run' is not an allowed subcommand name",
            ),
            (Plugin("p", commands=["go"]), "plugin 'p': command 'go' is not a zCLI Command"),
            (
                Plugin("p", suites=["not a module"]),
                "plugin 'p': test suite 'not a module' is not a dotted module name",
            ),
        ]
        for plugin, message in table:
            with self.subTest(message=message):
                self.assertRefused(plugin, message)

    def test_conflicts_name_the_owner(self) -> None:
        """Two plugins cannot take the same event, command or plugin name."""
        registry = Registry()
        registry.register(
            Plugin("a", events={"chat.send": _noop}, commands=[Command("chat", "c", lambda a: 0)])
        )
        self.assertRefused(
            Plugin("b", events={"chat.send": _noop}),
            "plugin 'b': event 'chat.send' is already handled by plugin 'a'",
            registry,
        )
        self.assertRefused(
            Plugin("b", commands=[Command("chat", "c", lambda a: 0)]),
            "plugin 'b': command 'chat' is already provided by another plugin",
            registry,
        )
        self.assertRefused(
            Plugin("a"), "plugin 'a' is registered twice by different modules", registry
        )

    def test_refused_plugin_adds_nothing(self) -> None:
        """A plugin with one bad entry contributes none of its good ones."""
        registry = self.assertRefused(
            Plugin("p", functions={"good": _noop, "bad": 1}),
            "plugin 'p': function 'bad' is not callable",
        )
        self.assertEqual((registry.plugins, registry.functions), ({}, {}))

    def test_function_signature_is_inspected_once(self) -> None:
        """Registration records whether a function takes ctx and is async."""

        async def fetch(*, ctx):
            return ctx

        registry = Registry()
        registry.register(Plugin("p", functions={"plain": _noop, "fetch": fetch}))
        self.assertEqual(
            [(i.qualname, i.wants_ctx, i.is_async) for i in registry.functions.values()],
            [("p.plain", False, False), ("p.fetch", True, True)],
        )


class TestSources(zTestCase):
    def test_workspace_plugins_folder(self) -> None:
        """Every plugins/*.py of the workspace registers; _private files do not."""
        self.write("plugins/one.py", "from zCLI import Plugin\nPLUGIN = Plugin('one')\n")
        self.write("plugins/_skip.py", "raise RuntimeError('must not import')\n")
        z = zCLI(self.spark())
        self.assertIn("one", z.plugins.plugins)

    def test_zspark_module_and_path(self) -> None:
        """zSpark plugins accepts module names and .py paths."""
        self.write("mods/named_plugin.py", "from zCLI import Plugin\nPLUGIN = Plugin('named')\n")
        self.write("by_path.py", "from zCLI import Plugin\nPLUGIN = Plugin('bypath')\n")
        sys.path.insert(0, str(self.workspace / "mods"))
        self.addCleanup(sys.path.remove, str(self.workspace / "mods"))
        z = zCLI(self.spark(plugins=["named_plugin", "by_path.py"]))
        installed = Registry()  # entry-point plugins of installed packages (e.g. zChat)
        installed.load_entry_points()
        brought = sorted(set(z.plugins.plugins) - set(installed.plugins))
        self.assertEqual(brought, ["bypath", "named"])

    def test_import_failure_is_named(self) -> None:
        """A plugin that fails to import stops start-up naming the module and error."""
        self.write("plugins/broken.py", "import no_such_module_zz\n")
        with self.assertRaises(PluginError) as caught:
            zCLI(self.spark())
        self.assertEqual(
            str(caught.exception),
            f"plugin {self.workspace}/plugins/broken.py failed to import: "
            "No module named 'no_such_module_zz'",
        )

    def test_module_without_plugin(self) -> None:
        """A module with no PLUGIN attribute is refused."""
        self.write("plugins/empty.py", "x = 1\n")
        with self.assertRaises(PluginError) as caught:
            zCLI(self.spark())
        self.assertEqual(
            str(caught.exception),
            f"plugin module {self.workspace}/plugins/empty.py has no PLUGIN attribute",
        )

    def test_plugin_zui_file_resolves(self) -> None:
        """A zUI file a plugin contributes is reachable as @.zUI.<name>."""
        self.write("plugins/pz/zUI.extra.yaml", "Extra:\n  A: from plugin\n")
        self.write(
            "plugins/pz.py",
            "from zCLI import Plugin\nPLUGIN = Plugin('pz', zui={'extra': 'pz/zUI.extra.yaml'})\n",
        )
        main = self.write("zUI.main.yaml", 'Main:\n  Go: {zLink: "@.zUI.extra.Extra"}\n')
        status, out = self.walk(main, "")
        self.assertEqual((status, out), (0, "from plugin\n"))


class TestEntryPoints(zTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.write(
            "hello_plugin.py",
            """
            from zCLI import Command, Plugin

            def configure(parser):
                parser.add_argument("name")

            def run(args):
                import sys
                sys.stdout.write(f"hello {args.name}\\n")
                return 3

            PLUGIN = Plugin("hello", commands=[Command("hello", "say hello", run, configure)],
                            functions={"hi": lambda: "hi"})
        """,
        )
        self.write(
            "hello_plugin-1.0.dist-info/METADATA",
            "Metadata-Version: 2.1\nName: hello-plugin\nVersion: 1.0\n",
        )
        self.write(
            "hello_plugin-1.0.dist-info/entry_points.txt", "[zcli.plugins]\nhello = hello_plugin\n"
        )

    def test_entry_point_plugin_adds_a_subcommand(self) -> None:
        """An installed plugin's command is a zcli subcommand with its own arguments."""
        done = self.zcli("hello", "world", env={"PYTHONPATH": str(self.workspace)})
        self.assertEqual((done.returncode, done.stdout, done.stderr), (3, "hello world\n", ""))
        done = self.zcli("--help", env={"PYTHONPATH": str(self.workspace)})
        self.assertIn("hello               say hello", done.stdout)

    def test_entry_point_plugin_functions(self) -> None:
        """An installed plugin's functions are callable from zUI files."""
        sys.path.insert(0, str(self.workspace))
        self.addCleanup(sys.path.remove, str(self.workspace))
        self.addCleanup(sys.modules.pop, "hello_plugin", None)
        status, out = self.walk("M:\n  A: {zFunc: '&hello.hi()'}\n", "")
        self.assertEqual((status, out), (0, "hi\n"))
