"""zUI loading: every construct parses, and every mistake is named with its line."""

from __future__ import annotations

from zCLI import Plugin, Registry, zUIError
from zCLI.zui import Dialog, FuncCall, KeySpec, Link, Menu, Message, Ref, Show, Wizard, ZuiLoader
from zTestSuite import zTestCase


def _registry() -> Registry:
    registry = Registry()
    registry.register(Plugin("demo", functions={"echo": lambda text: text}))
    return registry


class LoaderCase(zTestCase):
    def load(self, text: str, name: str = "zUI.t.yaml"):
        path = self.write(name, text)
        return ZuiLoader(self.workspace, _registry()).load(path)

    def assertLoadError(self, text: str, expected: str) -> None:
        """Loading ``text`` fails with exactly ``expected`` after the file name."""
        path = self.workspace / "zUI.t.yaml"
        with self.assertRaises(zUIError) as caught:
            self.load(text)
        self.assertEqual(str(caught.exception), f"{path.resolve()}{expected}")


class TestKeySpec(zTestCase):
    def test_modifiers(self) -> None:
        """Each modifier, alone and combined, parses to its meaning."""
        table = {
            "Ping": KeySpec("Ping", "Ping"),
            "^Ping": KeySpec("^Ping", "Ping", bounce=True),
            "~Root*": KeySpec("~Root*", "Root", anchor=True, menu=True),
            "Menu*": KeySpec("Menu*", "Menu", menu=True),
            "Save!": KeySpec("Save!", "Save", required=True),
            "^Save!": KeySpec("^Save!", "Save", bounce=True, required=True),
            "^Echo Test": KeySpec("^Echo Test", "Echo Test", bounce=True),
        }
        for raw, expected in table.items():
            with self.subTest(raw=raw):
                self.assertEqual(KeySpec.parse(raw), expected)

    def test_bad_modifiers(self) -> None:
        """Bad combinations are refused with the reason."""
        table = {
            "^~X": "key '^~X' has two prefix modifiers; use one of ^ or ~",
            "X*!": "key 'X*!' has two suffix modifiers; use one of * or !",
            "~X": "key '~X': the anchor ~ applies to menu keys (Key*) only",
            "^X*": "key '^X*': a menu key cannot bounce (^)",
            "zBack": "key 'zBack' uses the reserved name 'zBack'",
            "^": "key '^' is not a valid name: start with a letter or _, then letters, "
            "digits, _, - or spaces",
            "a.b": "key 'a.b' is not a valid name: start with a letter or _, then letters, "
            "digits, _, - or spaces",
        }
        for raw, message in table.items():
            with self.subTest(raw=raw), self.assertRaises(ValueError) as caught:
                KeySpec.parse(raw)
            self.assertEqual(str(caught.exception), message)


class TestConstructs(LoaderCase):
    def test_every_construct(self) -> None:
        """Messages, display events, zFunc, zLink, zDialog, zWizard and submenus load."""
        zui = self.load("""
            Main:
              ~Root*: [^Ping, ^Show, ^Call, Go, ^Ask, ^Steps, Sub]
              ^Ping: Pong!
              ^Show: {zDisplay: {event: success, content: done}}
              ^Call: {zFunc: "&demo.echo('hi', n=-2, items=[1, {'a': None}])"}
              Go: {zLink: Other}
              ^Ask:
                zDialog:
                  fields: [name, {name: pw, type: password, prompt: Password}]
                  onSubmit: {zFunc: "&demo.echo(zConv.name)"}
              ^Steps:
                zWizard:
                  - First: one
                  - {zFunc: "&demo.echo(zHat[0])"}
              Sub:
                Menu*: [X]
                X: x
            Other:
              Y: y
        """)
        block = zui.blocks["Main"]
        actions = {entry.spec.raw: entry.action for entry in block.entries}
        self.assertEqual(actions["^Ping"], Message("Pong!"))
        self.assertIsInstance(actions["^Show"], Show)
        call = actions["^Call"]
        self.assertIsInstance(call, FuncCall)
        self.assertEqual(
            (call.plugin, call.function, call.args, dict(call.kwargs)),
            ("demo", "echo", ("hi",), {"n": -2, "items": [1, {"a": None}]}),
        )
        self.assertEqual(actions["Go"], Link("Other", None, "Other"))
        dialog = actions["^Ask"]
        self.assertIsInstance(dialog, Dialog)
        self.assertEqual(
            [(f.name, f.prompt, f.kind) for f in dialog.fields],
            [("name", "name", "string"), ("pw", "Password", "password")],
        )
        self.assertEqual(dialog.on_submit.args, (Ref("zConv", "name"),))
        wizard = actions["^Steps"]
        self.assertIsInstance(wizard, Wizard)
        self.assertEqual([s.name for s in wizard.steps], ["First", None])
        self.assertEqual(
            actions["~Root*"], Menu(("^Ping", "^Show", "^Call", "Go", "^Ask", "^Steps", "Sub"))
        )
        self.assertEqual(list(zui.blocks), ["Main.Sub", "Main", "Other"])
        self.assertEqual(zui.top, ("Main", "Other"))

    def test_link_forms(self) -> None:
        """zLink takes @.zUI.<file>, @.zUI.<file>.<Block> and a block name."""
        self.write("zUI.other.yaml", "First:\n  A: a\nSecond:\n  B: b\n")
        zui = self.load("""
            Main:
              A: {zLink: "@.zUI.other"}
              B: {zLink: "@.zUI.other.Second"}
              C: {zLink: Main}
        """)
        links = [entry.action for entry in zui.blocks["Main"].entries]
        self.assertEqual(
            links,
            [
                Link("@.zUI.other", "@.zUI.other", None),
                Link("@.zUI.other.Second", "@.zUI.other", "Second"),
                Link("Main", None, "Main"),
            ],
        )

    def test_resolution(self) -> None:
        """^Ping finds ^Ping, else Ping; Ping finds Ping, else the one ^Ping."""
        zui = self.load("""
            Both:
              ^Ping: bounced
              Ping: plain
            OnlyBare:
              Ping: plain
            OnlyBounce:
              ^Ping: bounced
        """)
        table = [
            ("Both", "^Ping", "^Ping"),
            ("Both", "Ping", "Ping"),
            ("OnlyBare", "^Ping", "Ping"),
            ("OnlyBounce", "Ping", "^Ping"),
            ("OnlyBounce", "^Ping", "^Ping"),
        ]
        for block, key, raw in table:
            with self.subTest(block=block, key=key):
                self.assertEqual(zui.blocks[block].resolve(key).spec.raw, raw)
        self.assertIsNone(zui.blocks["OnlyBare"].resolve("Pong"))


class TestErrors(LoaderCase):
    def test_errors_name_file_line_block_key(self) -> None:
        """Each mistake is reported with its line, block, key and reason."""
        table = [
            (
                "Main:\n  A: a\n  ^~B: b\n",
                (
                    ", line 3, block 'Main', key '^~B': key '^~B' has two prefix modifiers;"
                    " use one of ^ or ~"
                ),
            ),
            (
                "Main:\n  A:\n    zBogus: 1\n",
                (
                    ", line 2, block 'Main', key 'A': unknown construct 'zBogus'; expected "
                    "one of zDisplay, zFunc, zLink, zDialog, zWizard"
                ),
            ),
            (
                "Main:\n  A:\n    zLink: Nowhere\n",
                (
                    ", line 2, block 'Main', key 'A': zLink 'Nowhere' names block "
                    "'Nowhere', which zUI.t.yaml does not have"
                ),
            ),
            (
                'Main:\n  A:\n    zLink: "@.zUI.missing.X"\n',
                (
                    ", line 2, block 'Main', key 'A': zLink '@.zUI.missing.X' points to "
                    "{ws}/zUI.missing.yaml, which does not exist"
                ),
            ),
            (
                'Main:\n  A:\n    zFunc: "&demo.nope()"\n',
                (
                    ", line 3, block 'Main', key 'A': zFunc '&demo.nope()' names demo.nope,"
                    " which no registered plugin provides"
                ),
            ),
            (
                "Main:\n  A:\n    zFunc: \"&demo.echo(__import__('os'))\"\n",
                (
                    ", line 3, block 'Main', key 'A': zFunc \"&demo.echo(__import__('os'))\":"
                    " argument \"__import__('os')\" is not allowed; use literals, "
                    "zConv.<field> or zHat[<index or name>]"
                ),
            ),
            (
                'Main:\n  A:\n    zFunc: "&demo.echo(open)"\n',
                (
                    ", line 3, block 'Main', key 'A': zFunc '&demo.echo(open)': argument "
                    "'open' is not allowed; use literals, zConv.<field> or zHat[<index or "
                    "name>]"
                ),
            ),
            (
                "Main:\n  A:\n    zDisplay: {event: blink}\n",
                (
                    ", line 3, block 'Main', key 'A': unknown display event 'blink'; "
                    "expected one of text, header, line, success, info, warning, error, "
                    "list, json, table, progress"
                ),
            ),
            (
                "Main:\n  A:\n    zDisplay: {event: table, columns: [a], rows: [[1, 2]]}\n",
                (
                    ", line 3, block 'Main', key 'A': display event 'table' needs every row"
                    " to have 1 cells"
                ),
            ),
            (
                "Main:\n  Menu*: [A, Missing]\n  A: a\n",
                (
                    ", line 2, block 'Main', key 'Menu*': menu choice 'Missing' is not a "
                    "key of this block"
                ),
            ),
            (
                "Main:\n  Menu*: [A]\n  A: a\n  B: b\n",
                (
                    ", line 4, block 'Main', key 'B': the key comes after menu 'Menu*' and "
                    "is not one of its choices, so it would never run"
                ),
            ),
            (
                "Main:\n  A: a\n  A: b\n",
                (", line 3, block 'Main', key 'A': duplicate key"),
            ),
            (
                "Main:\n  A:\n",
                (", line 2, block 'Main', key 'A': the key has no value"),
            ),
            (
                "Main:\n  A: [1, 2]\n",
                (
                    ", line 2, block 'Main', key 'A': a list is only valid as a menu (Key*)"
                    " or a zWizard"
                ),
            ),
            (
                (
                    "Main:\n  A:\n    zDialog:\n      fields: [x]\n"
                    '      onSubmit: {zFunc: "&demo.echo(zConv.y)"}\n'
                ),
                (
                    ", line 5, block 'Main', key 'A': zFunc '&demo.echo(zConv.y)' reads "
                    "zConv.y, which is not a field of this dialog"
                ),
            ),
            (
                'Main:\n  A:\n    zFunc: "&demo.echo()"\n    zLink: Main\n',
                (", line 2, block 'Main', key 'A': zFunc cannot be combined with 'zLink'"),
            ),
            (
                "Main: 5\n",
                (
                    ", line 1, block 'Main', key 'Main': a block is a mapping of keys and "
                    "this one is not"
                ),
            ),
            (
                "Main:\n  A: [unclosed\n",
                (", line 3: not valid YAML (expected ',' or ']', but got '<stream end>')"),
            ),
        ]
        ws = self.workspace.resolve()
        for text, expected in table:
            with self.subTest(text=text):
                self.assertLoadError(text, expected.replace("{ws}", str(ws)))

    def test_empty_file(self) -> None:
        """An empty file is refused as having no blocks."""
        self.assertLoadError("", ": a zUI file is a mapping of blocks and has none")

    def test_missing_file(self) -> None:
        """A missing file is named with the OS reason."""
        loader = ZuiLoader(self.workspace, _registry())
        with self.assertRaises(zUIError) as caught:
            loader.load("@.zUI.absent")
        self.assertEqual(
            str(caught.exception),
            f"{self.workspace.resolve()}/zUI.absent.yaml: cannot read the file "
            "(No such file or directory)",
        )

    def test_links_between_files_may_cycle(self) -> None:
        """Two files that link to each other both load."""
        self.write("zUI.b.yaml", 'B:\n  Back: {zLink: "@.zUI.a.A"}\n')
        zui = self.load('A:\n  Go: {zLink: "@.zUI.b.B"}\n', name="zUI.a.yaml")
        self.assertEqual(zui.top, ("A",))
