"""The terminal client's pure core: typed lines to frames, server frames to plan 001's
lines, and what it holds, resends and reports when the connection goes."""

from __future__ import annotations

import unittest
from typing import Any

from zCLI.apps.chat.terminal import HELP, Output, Terminal


class TerminalCase(unittest.TestCase):
    def setUp(self) -> None:
        self.terminal = Terminal("user1")
        self.assertEqual(self.terminal.connection_made(), Output())

    def sent(self, line: str) -> dict[str, Any]:
        """The one frame ``line`` sends, with no line printed."""
        output = self.terminal.command(line)
        self.assertEqual(output.lines, ())
        self.assertEqual(len(output.frames), 1)
        return output.frames[0]

    def reply(self, frame: dict[str, Any], result: Any) -> Output:
        return self.terminal.receive({"result": result, "_requestId": frame["_requestId"]})

    def assertPrints(self, output: Output, *lines: str) -> None:  # noqa: N802 (unittest style)
        self.assertEqual(output.lines, lines)


class CommandsTest(TerminalCase):
    def test_send(self) -> None:
        """send NICK MESSAGE sends chat.send with the rest of the line as the text."""
        frame = self.sent("send user2 hello nice to meet you.")
        self.assertEqual(
            frame,
            {
                "event": "chat.send",
                "data": {"to": "user2", "text": "hello nice to meet you."},
                "_requestId": "t1",
            },
        )

    def test_send_all(self) -> None:
        """send_all MESSAGE sends chat.send_all."""
        frame = self.sent("send_all hello guys")
        self.assertEqual(
            frame, {"event": "chat.send_all", "data": {"text": "hello guys"}, "_requestId": "t1"}
        )

    def test_dereg_reg_list(self) -> None:
        """dereg and reg of one's own name, and list, send their events."""
        self.assertEqual(self.sent("dereg user1")["event"], "chat.dereg")
        self.assertEqual(self.sent("reg user1")["event"], "chat.reg")
        self.assertEqual(self.sent("list"), {"event": "chat.users", "data": {}, "_requestId": "t3"})

    def test_exit(self) -> None:
        """exit prints [Exiting], signs out and leaves with status 0."""
        output = self.terminal.command("exit")
        self.assertEqual(
            output, Output((">>> [Exiting]",), ({"event": "logout", "_requestId": "t1"},), 0)
        )
        self.assertFalse(self.terminal.signed_out)
        self.terminal.receive({"result": {"message": "Signed out."}, "_requestId": "t1"})
        self.assertTrue(self.terminal.signed_out)

    def test_help(self) -> None:
        """help prints the commands."""
        self.assertEqual(self.terminal.command("help"), Output(HELP))

    def test_blank_line(self) -> None:
        """A blank line does nothing."""
        self.assertEqual(self.terminal.command("   "), Output())

    def test_bad_commands(self) -> None:
        """A bad command prints its usage line and sends nothing."""
        table = {
            "send": ">>> [Usage: send NICK MESSAGE]",
            "send user2": ">>> [Usage: send NICK MESSAGE]",
            "send user2   ": ">>> [Usage: send NICK MESSAGE]",
            "send_all": ">>> [Usage: send_all MESSAGE]",
            "dereg": ">>> [Usage: dereg NICK]",
            "dereg user1 user2": ">>> [Usage: dereg NICK]",
            "reg": ">>> [Usage: reg NICK]",
            "list all": ">>> [Usage: list]",
            "exit now": ">>> [Usage: exit]",
            "help me": ">>> [Usage: help]",
            "dereg user2": ">>> [You are user1; you can only dereg yourself.]",
            "reg user2": ">>> [You are user1; you can only reg yourself.]",
            "shout hi": ">>> [Unknown command 'shout'; type help for the commands.]",
        }
        for line, usage in table.items():
            with self.subTest(line=line):
                self.assertEqual(self.terminal.command(line), Output((usage,)))


class PlanLinesTest(TerminalCase):
    def test_client_table(self) -> None:
        """chat.clients prints [Client Table Updated]."""
        table = {"table": [{"user": "user1", "online": True}]}
        self.assertPrints(
            self.terminal.receive({"event": "chat.clients", "data": table}),
            ">>> [Client Table Updated]",
        )

    def test_delivered(self) -> None:
        """chat.status delivered prints that the addressee received it."""
        frame = self.sent("send user2 hello nice to meet you.")
        self.assertPrints(self.reply(frame, {"id": 7, "ts": 1648153596.77}))
        status = {"event": "chat.status", "data": {"id": 7, "status": "delivered"}}
        self.assertPrints(
            self.terminal.receive(status), ">>> [Message has been received by user2.]"
        )
        self.assertFalse(self.terminal.busy)

    def test_stored(self) -> None:
        """chat.status stored prints the two lines of a message the server saved."""
        frame = self.sent("send user1 hello?")
        self.reply(frame, {"id": 8, "ts": 1648153596.77})
        self.assertPrints(
            self.terminal.receive({"event": "chat.status", "data": {"id": 8, "status": "stored"}}),
            ">>> [No ACK from user1, message sent to server.]",
            ">>> [Messages received by the server and saved.]",
        )

    def test_status_before_result(self) -> None:
        """A status that outruns the send's result is printed when the result comes."""
        frame = self.sent("send user3 hi!")
        status = {"event": "chat.status", "data": {"id": 9, "status": "delivered"}}
        self.assertPrints(self.terminal.receive(status))
        self.assertPrints(
            self.reply(frame, {"id": 9, "ts": 1.5}), ">>> [Message has been received by user3.]"
        )

    def test_dereg_result(self) -> None:
        """The chat.dereg result prints that the user is offline."""
        frame = self.sent("dereg user1")
        self.assertPrints(
            self.reply(frame, {"status": "offline"}), ">>> [You are now offline. Bye.]"
        )

    def test_reg_and_stored_messages(self) -> None:
        """After reg: [You have message], then each stored message with its timestamp."""
        frame = self.sent("reg user1")
        self.assertPrints(self.reply(frame, {"status": "online", "pending": 2}))
        self.assertPrints(
            self.terminal.receive({"event": "chat.offline", "data": {"count": 2}}),
            ">>> [You have message]",
        )
        stored: dict[str, Any] = {
            "event": "chat.message",
            "data": {
                "id": 3,
                "from": "user2",
                "text": "hello?",
                "ts": 1648153596.7672942,
                "offline": True,
            },
        }
        output = self.terminal.receive(stored)
        self.assertEqual(
            output,
            Output(
                (">>> (1648153596.7672942) user2 : hello?",),
                ({"event": "chat.ack", "data": {"id": 3}, "_requestId": "t2"},),
            ),
        )
        later = {
            **stored,
            "data": {
                **stored["data"],
                "id": 4,
                "ts": 1648153615.750366,
                "from": "user3",
                "text": "are you still there?",
            },
        }
        self.assertPrints(
            self.terminal.receive(later), ">>> (1648153615.750366) user3 : are you still there?"
        )

    def test_integer_timestamp(self) -> None:
        """A whole-second timestamp prints like a float."""
        data = {"id": 1, "from": "user2", "text": "x", "ts": 1648153596, "offline": True}
        self.assertPrints(
            self.terminal.receive({"event": "chat.message", "data": data}),
            ">>> (1648153596.0) user2 : x",
        )

    def test_live_message_acked(self) -> None:
        """A live chat.message prints 'sender : text' and is acknowledged."""
        data = {"id": 5, "from": "user1", "text": "hi", "ts": 1.0}
        self.assertEqual(
            self.terminal.receive({"event": "chat.message", "data": data}),
            Output(
                (">>> user1 : hi",),
                ({"event": "chat.ack", "data": {"id": 5}, "_requestId": "t1"},),
            ),
        )

    def test_a_message_that_comes_again_is_acked_not_printed(self) -> None:
        """The same id again (its ack was lost on the way, or a cluster's other process
        sent it as the ack went) is acknowledged again and printed once."""
        data = {"id": 7, "from": "user1", "text": "hi", "ts": 1.0}
        self.assertPrints(self.terminal.receive({"event": "chat.message", "data": data}),
                          ">>> user1 : hi")  # fmt: skip
        again = {**data, "offline": True}
        self.assertEqual(
            self.terminal.receive({"event": "chat.message", "data": again}),
            Output((), ({"event": "chat.ack", "data": {"id": 7}, "_requestId": "t2"},)),
        )

    def test_channel_message(self) -> None:
        """A send_all message, live or stored, prints as Channel_Message and is acked."""
        for message_id, offline in ((6, False), (8, True)):
            with self.subTest(offline=offline):
                data = {"id": message_id, "from": "user1", "text": "hello guys", "ts": 1.0,
                        "all": True}  # fmt: skip
                if offline:
                    data["offline"] = True
                output = self.terminal.receive({"event": "chat.message", "data": data})
                self.assertPrints(output, ">>> Channel_Message user1 : hello guys")
                self.assertEqual(output.frames[0]["event"], "chat.ack")

    def test_send_all_result(self) -> None:
        """The chat.send_all result prints that the server received it."""
        frame = self.sent("send_all hello guys")
        self.assertPrints(
            self.reply(frame, {"ts": 1.0, "delivered": 2, "stored": 0}),
            ">>> [Message received by the server.]",
        )

    def test_error_reply(self) -> None:
        """An error reply prints its sentence."""
        frame = self.sent("send carol hi")
        error = {
            "error": "There is no user named 'carol'.",
            "code": "unknown_user",
            "_requestId": frame["_requestId"],
        }
        self.assertPrints(self.terminal.receive(error), ">>> [There is no user named 'carol'.]")

    def test_list_result(self) -> None:
        """The list result prints each user and whether they are online."""
        frame = self.sent("list")
        users = [{"user": "user1", "online": True}, {"user": "user2", "online": False}]
        self.assertPrints(
            self.reply(frame, {"users": users}), ">>> user1 : online", ">>> user2 : offline"
        )

    def test_quiet_frames(self) -> None:
        """connection_info, server_shutdown and unknown replies print nothing."""
        for frame in (
            {"event": "connection_info", "data": {"server_version": "0.1.0"}},
            {"event": "server_shutdown", "message": "The server is shutting down."},
            {"result": {}, "_requestId": "nobody"},
        ):
            with self.subTest(frame=frame):
                self.assertEqual(self.terminal.receive(frame), Output())

    def test_interrupted(self) -> None:
        """Ctrl-C prints the plan's line after the terminal's ^C and leaves with 0."""
        self.assertEqual(
            self.terminal.interrupted(), Output(("Caught keyboard interrupt. Exiting",), exit=0)
        )


class LinkTest(TerminalCase):
    def test_typed_while_down_is_held(self) -> None:
        """What is typed while the connection is down is sent once it is back."""
        self.terminal.connection_lost()
        self.assertEqual(self.terminal.command("send user2 hi"), Output())
        self.assertEqual(
            self.terminal.connection_made(),
            Output(
                frames=(
                    {
                        "event": "chat.send",
                        "data": {"to": "user2", "text": "hi"},
                        "_requestId": "t1",
                    },
                )
            ),
        )

    def test_unanswered_send_resent(self) -> None:
        """A send with no reply when the connection went is sent again, an ack is not."""
        frame = self.sent("send user2 hi")
        self.terminal.receive(
            {"event": "chat.message", "data": {"id": 1, "from": "a", "text": "b"}}
        )
        self.terminal.connection_lost()
        self.assertEqual(self.terminal.connection_made(), Output(frames=(frame,)))

    def test_give_up_plan_test_2(self) -> None:
        """Server gone for good: plan 001 Test 2's four lines, then status 1."""
        self.terminal.connection_lost()
        self.terminal.command("send user2 hi")
        self.assertEqual(
            self.terminal.give_up(),
            Output(
                (
                    ">>> [No ACK from user2, message sent to server.]",
                    ">>> [Message sent failed]",
                    ">>> [Server is shut down]",
                    ">>> [Exiting]",
                ),
                exit=1,
            ),
        )

    def test_give_up_idle(self) -> None:
        """Server gone with nothing unsent: only the last two lines."""
        self.terminal.connection_lost()
        self.assertEqual(
            self.terminal.give_up(), Output((">>> [Server is shut down]", ">>> [Exiting]"), exit=1)
        )

    def test_exit_while_down(self) -> None:
        """exit with no connection leaves at once, without a sign-out frame."""
        self.terminal.connection_lost()
        self.assertEqual(self.terminal.command("exit"), Output((">>> [Exiting]",), exit=0))

    def test_keepalive(self) -> None:
        """A keep-alive is sent only while connected."""
        self.assertEqual(
            self.terminal.keepalive().frames,
            ({"event": "chat.keepalive", "data": {}, "_requestId": "t1"},),
        )
        self.terminal.connection_lost()
        self.assertEqual(self.terminal.keepalive(), Output())


if __name__ == "__main__":
    unittest.main()
