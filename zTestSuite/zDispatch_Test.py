"""zDispatch: running keys as effects, identical for every driver, state per session."""

from __future__ import annotations

from typing import Any

from zCLI import (
    ActionFailed,
    Display,
    FuncContext,
    InputClosed,
    KeyNotFound,
    Plugin,
    RequestError,
    Session,
    zCLI,
)
from zCLI.context import call_sync
from zCLI.dispatch import Ask, Call, Emit, Outcome
from zCLI.display import DisplayEvent
from zTestSuite import zTestCase

ZUI = """
Main:
  ~Root*: [^Ping, Ping, ^Greet, Settings, ^Steps, ^Check!, ^Loud, ^Peek]
  ^Ping: Pong!
  Ping: plain pong
  ^Greet:
    zDialog:
      fields: [name, {name: secret, type: password}]
      onSubmit: {zFunc: "&t.greet(zConv.name)"}
  Settings:
    Intro: {zDisplay: {event: info, content: entering}}
    Menu*: [^Theme]
    ^Theme: dark
  ^Steps:
    zWizard:
      - First: {zFunc: "&t.double(2)"}
      - {zFunc: "&t.double(zHat.First)"}
      - {zFunc: "&t.pair(zHat[0], zHat[1])"}
  ^Check!: {zFunc: "&t.check()"}
  ^Loud: {zFunc: "&t.loud()"}
  ^Peek:
    zLink: Other
Other:
  Note: {zDisplay: {event: text, content: in other}}
"""


def greet(name: str) -> str:
    return f"Hello, {name}!"


def double(n: int) -> int:
    return n * 2


def pair(a: Any, b: Any) -> list[Any]:
    return [a, b]


def check() -> bool:
    return False


def loud(*, ctx: Any) -> str:
    ctx.display.warning("loud!")
    return "done"


PLUGIN = Plugin(
    "t", functions={"greet": greet, "double": double, "pair": pair, "check": check, "loud": loud}
)


class Driver:
    """Performs effects with scripted answers and real function calls, recording what
    was shown and asked (the terminal and bridge drivers do the same with real I/O)."""

    def __init__(self, session: Session, answers: list[str | None] | None = None) -> None:
        self.session = session
        self.answers = list(answers or [])
        self.shown: list[DisplayEvent] = []
        self.asked: list[str] = []

    def run(self, steps: Any) -> Outcome:
        reply: Any = None
        error: BaseException | None = None
        while True:
            try:
                effect = steps.throw(error) if error else steps.send(reply)
            except StopIteration as stop:
                return stop.value
            reply, error = None, None
            if isinstance(effect, Emit):
                self.shown.append(effect.event)
            elif isinstance(effect, Ask):
                self.asked.append(f"{effect.field}:{effect.kind}")
                reply = self.answers.pop(0)
            elif isinstance(effect, Call):
                ctx = FuncContext(Display(self.shown.append), self.session, None)
                try:
                    reply = call_sync(effect, ctx)
                except ActionFailed as exc:
                    error = exc


class DispatchCase(zTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.write("t_plugin.py", "from zTestSuite.zDispatch_Test import PLUGIN\n")
        path = self.write("zUI.t.yaml", ZUI)
        self.z = zCLI(self.spark(plugins=["t_plugin.py"], zVaFile=str(path)))
        self.session = self.z.dispatch.start(str(path))

    def dispatch(
        self, key: str, answers: list[str | None] | None = None, session: Any = None
    ) -> tuple[Outcome, Driver]:
        session = session or self.session
        driver = Driver(session, answers)
        outcome = driver.run(self.z.dispatch.dispatch(session, key))
        return outcome, driver


class TestDispatch(DispatchCase):
    def test_message(self) -> None:
        """^Ping returns {"message": "Pong!"} and shows nothing."""
        outcome, driver = self.dispatch("^Ping")
        self.assertEqual(outcome, Outcome({"message": "Pong!"}))
        self.assertEqual(driver.shown, [])

    def test_bounce_and_bare_keys_are_distinct(self) -> None:
        """With both present, ^Ping and Ping are different keys."""
        self.assertEqual(self.dispatch("Ping")[0].result, {"message": "plain pong"})

    def test_unknown_key(self) -> None:
        """An unknown key names the key, block and file, and is an unknown_key error."""
        with self.assertRaises(KeyNotFound) as caught:
            self.dispatch("^Nope")
        self.assertEqual(
            caught.exception.message, "Block 'Main' of zUI.t.yaml has no key named '^Nope'."
        )
        self.assertEqual(caught.exception.code, "unknown_key")

    def test_dialog_values_reach_zfunc(self) -> None:
        """zDialog asks each field in order and passes zConv values to onSubmit."""
        outcome, driver = self.dispatch("^Greet", ["Ada", "pw"])
        self.assertEqual(driver.asked, ["name:string", "secret:password"])
        self.assertEqual(outcome.result, "Hello, Ada!")
        self.assertEqual(self.session.zconv, {"name": "Ada", "secret": "pw"})

    def test_dialog_stop_cancels(self) -> None:
        """Typing stop (or ending input) at a prompt cancels the dialog."""
        for answer in ("stop", None):
            with self.subTest(answer=answer), self.assertRaises(InputClosed) as caught:
                self.dispatch("^Greet", [answer])
            self.assertEqual(caught.exception.message, "The dialog was cancelled.")

    def test_wizard_hat(self) -> None:
        """zWizard steps see earlier results by index and by name."""
        outcome, _ = self.dispatch("^Steps")
        self.assertEqual(outcome.result, [4, 8])
        self.assertEqual(self.session.zhat.to_json(), [4, 8, [4, 8]])

    def test_submenu_opens_and_back(self) -> None:
        """A nested block opens with breadcrumbs; zBack returns."""
        outcome, driver = self.dispatch("Settings")
        self.assertTrue(outcome.moved)
        self.assertEqual(driver.shown, [DisplayEvent("info", {"content": "entering"})])
        self.assertEqual(
            outcome.result,
            {
                "block": "Main.Settings",
                "menu": {
                    "block": "Main.Settings",
                    "trail": ["Main", "Settings"],
                    "options": [
                        {"key": "^Theme", "label": "Theme"},
                        {"key": "zBack", "label": "zBack"},
                        {"key": "stop", "label": "stop"},
                    ],
                },
            },
        )
        self.assertEqual(self.dispatch("^Theme")[0].result, {"message": "dark"})
        back, _ = self.dispatch("zBack")
        self.assertTrue(back.moved)
        self.assertEqual(self.session.location.block, "Main")
        with self.assertRaises(RequestError) as caught:
            self.dispatch("zBack")
        self.assertEqual(
            (caught.exception.code, caught.exception.message),
            ("no_back", "There is no previous block to go back to."),
        )

    def test_bounced_link_runs_and_returns(self) -> None:
        """^Key with a zLink runs the target block's keys and stays in place."""
        outcome, driver = self.dispatch("^Peek")
        self.assertEqual(outcome, Outcome(None))
        self.assertEqual(driver.shown, [DisplayEvent("text", {"content": "in other"})])
        self.assertEqual(self.session.location.block, "Main")

    def test_required_repeats_until_stop(self) -> None:
        """Key! repeats a failing action until the user types stop."""
        with self.assertRaises(InputClosed) as caught:
            self.dispatch("^Check!", ["", "", "stop"])
        self.assertEqual(caught.exception.message, "Check was stopped before it succeeded.")

    def test_function_display_is_collected(self) -> None:
        """A function with ctx displays through the driver before returning."""
        outcome, driver = self.dispatch("^Loud")
        self.assertEqual(driver.shown, [DisplayEvent("warning", {"content": "loud!"})])
        self.assertEqual(outcome.result, "done")

    def test_sessions_are_independent(self) -> None:
        """Two sessions of one dispatcher keep their own block and values."""
        other = self.z.dispatch.start(str(self.workspace / "zUI.t.yaml"))
        self.dispatch("Settings")
        self.dispatch("^Greet", ["Bo", "x"], session=other)
        self.assertEqual(
            (self.session.location.block, other.location.block), ("Main.Settings", "Main")
        )
        self.assertEqual((self.session.zconv, other.zconv), ({}, {"name": "Bo", "secret": "x"}))
        with self.assertRaises(KeyNotFound):
            self.dispatch("^Ping")  # the first session is in Settings now
        self.assertEqual(self.dispatch("^Ping", session=other)[0].result, {"message": "Pong!"})
