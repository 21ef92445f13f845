"""zChat's web client in Chromium, against a real ``zcli chat -s`` process.

Each test starts the server on free ports (both read from its stdout) with a fresh
database, and drives the page served at ``/`` in Debian's Chromium through Playwright
like a user: accounts are created and signed in through the page, and every check
waits for what the page shows. Pages run in UTC, so a message's time is predictable.
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
import unittest
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from zTestSuite import (
    BrowserTestCase,
    ServerProcess,
    artifact_path,
    requires_browser,
    requires_network,
    timeout,
)

MARKUP = "<img src=x onerror=alert(1)>"


@requires_browser
@requires_network
class ChatWebTest(BrowserTestCase):
    def setUp(self) -> None:
        from playwright.sync_api import expect

        expect.set_options(timeout=timeout(5) * 1000)
        folder = tempfile.TemporaryDirectory()
        self.addCleanup(folder.cleanup)
        self.folder = Path(folder.name)
        # ack timeout: generous, so a slow machine never turns "delivered" into "stored"
        self.server = ServerProcess(
            [sys.executable, "-m", "zCLI", "chat", "-s", "0", "--http-port", "0"]
            + ["--workspace", str(self.folder), "--db", str(self.folder / "chat.sqlite3")]
            + ["--ack-timeout", str(timeout(2))],
            cwd=self.folder,
        )
        self.addCleanup(self.server.stop)
        self.server.wait_for(r"^zBifrost listening on ws://127\.0\.0\.1:(\d+)$")
        http = self.server.wait_for(r"^zServer listening on (http://127\.0\.0\.1:\d+/)$")
        self.http_url = http.group(1)
        self.dialogs: list[str] = []

    # --- the page, as a user drives it ------------------------------------------------

    def open_page(self, *, fake_clock: bool = False) -> Any:
        """A new page (its own browser context, in UTC) on the chat's address; with
        ``fake_clock`` its timers run when the test moves its clock on."""
        context = self.browser.new_context(timezone_id="UTC", locale="en-US")
        self.addCleanup(context.close)
        page = context.new_page()
        page.set_default_timeout(timeout(5) * 1000)
        page.on("dialog", self.dismiss)
        if fake_clock:
            page.clock.install()
        page.goto(self.http_url)
        return page

    def dismiss(self, dialog: Any) -> None:
        """Record a dialog (an alert run by markup would be one) and close it."""
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def fill_sign_in(self, page: Any, user: str, password: str, button: str) -> None:
        page.get_by_test_id("username").fill(user)
        page.get_by_test_id("password").fill(password)
        page.get_by_test_id(button).click()

    def sign_in(self, user: str, *, create: bool = False) -> Any:
        """A new page signed in as ``user`` (its account created first with ``create``)."""
        from playwright.sync_api import expect

        page = self.open_page()
        self.fill_sign_in(page, user, f"{user}-secret", "register" if create else "sign-in")
        expect(page.get_by_test_id("status")).to_have_text(f"Signed in as {user}.")
        return page

    def contact(self, page: Any, user: str) -> Any:
        return page.locator(f'[data-testid=contact][data-name="{user}"]')

    def log(self, page: Any, kind: str, name: str) -> Any:
        return page.locator(f'[data-testid=log][data-kind={kind}][data-name="{name}"]')

    def texts(self, page: Any, kind: str, name: str) -> Any:
        return self.log(page, kind, name).get_by_test_id("message-text")

    def statuses(self, page: Any, peer: str) -> Any:
        return self.log(page, "user", peer).get_by_test_id("message-status")

    def say(self, page: Any, text: str) -> None:
        page.get_by_test_id("text").fill(text)
        page.get_by_test_id("send").click()

    def room(self, page: Any, verb: str, room: str) -> None:
        page.get_by_test_id("room-name").fill(room)
        page.get_by_test_id(f"room-{verb}").click()

    def both_online(self) -> tuple[Any, Any]:
        """alice and bob, accounts created through the page, each seeing the other online."""
        from playwright.sync_api import expect

        alice = self.sign_in("alice", create=True)
        bob = self.sign_in("bob", create=True)
        for page, other in ((alice, "bob"), (bob, "alice")):
            expect(self.contact(page, other).get_by_test_id("presence")).to_have_text("online")
            expect(page.get_by_test_id("contact")).to_have_count(1)
        return alice, bob

    # --- tests --------------------------------------------------------------------------

    def test_direct_messages_both_ways_are_delivered(self) -> None:
        """Direct messages reach the other page as sent, and each sender sees "delivered"."""
        from playwright.sync_api import expect

        alice, bob = self.both_online()
        self.contact(alice, "bob").get_by_test_id("open").click()
        self.say(alice, "hi bob")
        expect(self.statuses(alice, "bob")).to_have_text(["delivered"])
        expect(self.contact(bob, "alice").get_by_test_id("unread")).to_have_text("1")
        self.contact(bob, "alice").get_by_test_id("open").click()
        expect(self.contact(bob, "alice").get_by_test_id("unread")).to_have_text("")
        expect(self.texts(bob, "user", "alice")).to_have_text(["hi bob"])
        expect(bob.get_by_test_id("title")).to_have_text("alice")
        self.say(bob, "hello alice")
        expect(self.statuses(bob, "alice")).to_have_text(["delivered"])
        expect(self.texts(alice, "user", "bob")).to_have_text(["hi bob", "hello alice"])
        expect(self.log(alice, "user", "bob").get_by_test_id("message-from")).to_have_text(
            ["alice", "bob"]
        )
        expect(self.texts(bob, "user", "alice")).to_have_text(["hi bob", "hello alice"])
        alice.screenshot(path=artifact_path("chat_web_direct_messages.png"))
        self.assertEqual(self.dialogs, [])

    def test_offline_message_arrives_on_sign_in_with_its_time(self) -> None:
        """A message to a user who left is "stored", then shown offline at its own time."""
        from playwright.sync_api import expect

        alice, bob = self.both_online()
        bob.close()
        expect(self.contact(alice, "bob").get_by_test_id("presence")).to_have_text("offline")
        self.contact(alice, "bob").get_by_test_id("open").click()
        self.say(alice, "are you there?")
        expect(self.statuses(alice, "bob")).to_have_text(["stored"])
        sent_ts = self.log(alice, "user", "bob").get_by_test_id("message").get_attribute("data-ts")

        bob = self.sign_in("bob")
        expect(bob.get_by_test_id("notice")).to_have_text("You have 1 offline message.")
        expect(self.contact(alice, "bob").get_by_test_id("presence")).to_have_text("online")
        self.contact(bob, "alice").get_by_test_id("open").click()
        message = self.log(bob, "user", "alice").get_by_test_id("message")
        expect(message.get_by_test_id("message-text")).to_have_text(["are you there?"])
        expect(message.get_by_test_id("message-offline")).to_have_text(["offline"])
        expect(message).to_have_attribute("data-ts", sent_ts)
        assert sent_ts is not None
        sent_at = datetime.fromtimestamp(math.floor(float(sent_ts)), UTC)
        expect(message.get_by_test_id("message-time")).to_have_text(
            sent_at.strftime("%Y-%m-%d %H:%M:%S")
        )
        expect(message).to_have_attribute("data-acked", "true")
        bob.screenshot(path=artifact_path("chat_web_offline_message.png"))

        # the ack deleted it: signing in once more brings no offline message
        again = self.sign_in("bob")
        expect(self.contact(again, "alice").get_by_test_id("presence")).to_have_text("online")
        expect(again.get_by_test_id("notice")).to_have_text("")
        expect(again.get_by_test_id("message")).to_have_count(0)

    def test_room_history_and_messages(self) -> None:
        """A room: created, joined with its history, messages both ways, left, rejoined."""
        from playwright.sync_api import expect

        alice, bob = self.both_online()
        self.room(alice, "create", "general")
        expect(alice.get_by_test_id("title")).to_have_text("#general")
        expect(alice.get_by_test_id("room")).to_have_text(["#general"])
        self.say(alice, "welcome")
        expect(self.texts(alice, "room", "general")).to_have_text(["welcome"])

        self.room(bob, "join", "general")
        expect(bob.get_by_test_id("room")).to_have_text(["#general"])
        expect(self.texts(bob, "room", "general")).to_have_text(["welcome"])
        self.say(bob, "thanks")
        expect(self.texts(alice, "room", "general")).to_have_text(["welcome", "thanks"])
        self.say(alice, "you are welcome")
        expect(self.texts(bob, "room", "general")).to_have_text(
            ["welcome", "thanks", "you are welcome"]
        )
        expect(self.log(bob, "room", "general").get_by_test_id("message-from")).to_have_text(
            ["alice", "bob", "alice"]
        )

        bob.get_by_test_id("room-leave").click()
        expect(bob.get_by_test_id("room")).to_have_count(0)
        expect(bob.get_by_test_id("title")).to_have_text("Pick a contact or a room.")
        self.say(alice, "bye")
        expect(self.texts(alice, "room", "general")).to_have_text(
            ["welcome", "thanks", "you are welcome", "bye"]
        )
        self.room(bob, "join", "general")
        expect(self.texts(bob, "room", "general")).to_have_text(
            ["welcome", "thanks", "you are welcome", "bye"]
        )

    def test_markup_in_a_message_is_shown_as_text(self) -> None:
        """A message text of HTML markup is shown literally, in direct and room messages."""
        from playwright.sync_api import expect

        alice, bob = self.both_online()
        self.contact(alice, "bob").get_by_test_id("open").click()
        self.say(alice, MARKUP)
        expect(self.statuses(alice, "bob")).to_have_text(["delivered"])
        self.room(alice, "create", "lobby")
        expect(alice.get_by_test_id("title")).to_have_text("#lobby")
        self.room(bob, "join", "lobby")
        self.say(bob, MARKUP)
        self.contact(bob, "alice").get_by_test_id("open").click()
        expect(self.texts(bob, "user", "alice")).to_have_text([MARKUP])
        expect(self.texts(alice, "room", "lobby")).to_have_text([MARKUP])
        for page in (alice, bob):
            self.assertEqual(page.locator("#logs img").count(), 0)
        self.assertEqual(self.dialogs, [])

    def test_errors_show_the_servers_sentence(self) -> None:
        """A taken name, a wrong password and an unknown room show the server's sentence."""
        from playwright.sync_api import expect

        alice = self.sign_in("alice", create=True)
        self.room(alice, "join", "nowhere")
        expect(alice.get_by_test_id("error")).to_have_text("There is no room named 'nowhere'.")

        page = self.open_page()
        cases = [
            ("register", "alice", "There is already a user named 'alice'."),
            ("sign-in", "mallory", "Unknown user or wrong password."),
            (
                "register",
                "bad name",
                "Field 'username' must be 1 to 32 letters, digits, '_', '-' or '.'.",
            ),  # fmt: skip
        ]
        for button, user, sentence in cases:
            with self.subTest(button=button, user=user):
                self.fill_sign_in(page, user, "whatever", button)
                expect(page.get_by_test_id("error")).to_have_text(sentence)
                expect(page.get_by_test_id("status")).to_have_text("Not signed in.")

    def test_keepalive_every_ten_seconds(self) -> None:
        """Every 10 s of the page's clock it sends chat.keepalive; the server answers {}."""
        from playwright.sync_api import expect

        page = self.open_page(fake_clock=True)
        with page.expect_websocket() as opened:
            self.fill_sign_in(page, "alice", "alice-secret", "register")
        expect(page.get_by_test_id("status")).to_have_text("Signed in as alice.")
        socket = opened.value

        def is_keepalive(payload: str) -> bool:
            return bool(json.loads(payload).get("event") == "chat.keepalive")

        def is_empty_result(payload: str) -> bool:
            return bool(json.loads(payload).get("result") == {})

        with socket.expect_event("framereceived", predicate=is_empty_result) as answered:
            with socket.expect_event("framesent", predicate=is_keepalive) as asked:
                page.clock.run_for(10_000)
        request = json.loads(asked.value)
        rid = request["_requestId"]
        self.assertEqual(request, {"event": "chat.keepalive", "data": {}, "_requestId": rid})
        self.assertEqual(json.loads(answered.value), {"result": {}, "_requestId": rid})

    def test_sign_out(self) -> None:
        """Signing out shows the sign-in form again, and the others see the user offline."""
        from playwright.sync_api import expect

        alice, bob = self.both_online()
        bob.get_by_test_id("sign-out").click()
        expect(bob.get_by_test_id("status")).to_have_text("Signed out.")
        expect(bob.get_by_test_id("sign-in-form")).to_be_visible()
        expect(bob.get_by_test_id("contact")).to_have_count(0)
        expect(self.contact(alice, "bob").get_by_test_id("presence")).to_have_text("offline")


if __name__ == "__main__":
    unittest.main()
