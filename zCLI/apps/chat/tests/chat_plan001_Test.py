"""Plan 001's three recorded runs, replayed with a real ``zcli chat -s`` and real
``zcli chat -c`` clients driven through stdin, asserting each client's lines in order."""

from __future__ import annotations

import os
import re
import signal
import sys
import tempfile
import unittest
from pathlib import Path

from zTestSuite import ServerProcess, requires_network

TS = r"\(\d+\.\d+(e[+-]?\d+)?\)"  # a stored message's timestamp, repr of a float
ENV = {"ZCHAT_ACK_TIMEOUT": "0.3", "ZCHAT_RETRY_DELAY": "0.5", "ZCHAT_PASSWORD": "plan-001"}


class Client:
    """One terminal client process: stdin through a FIFO, stdout through ServerProcess."""

    def __init__(self, folder: Path, nick: str, port: int, client_port: int) -> None:
        fifo = folder / f"{nick}.stdin"
        os.mkfifo(fifo)
        command = [sys.executable, "-m", "zCLI", "chat", "-c", nick, "127.0.0.1", str(port)]
        self.process = ServerProcess(
            ["sh", "-c", 'exec "$@" < "$0"', str(fifo), *command, str(client_port)],
            cwd=folder,
            env=ENV,
        )
        self.stdin = os.open(fifo, os.O_WRONLY)  # opens once the client reads it
        self.patterns: list[str] = []

    def type(self, line: str) -> None:
        os.write(self.stdin, line.encode() + b"\n")

    def expect(self, *lines: str, raw: bool = False) -> None:
        """The next lines it prints (regular expressions when ``raw``)."""
        for line in lines:
            pattern = line if raw else re.escape(line)
            self.patterns.append(pattern)
            self.process.wait_for(f"^{pattern}$")

    def close(self) -> None:
        os.close(self.stdin)
        self.process.stop()


@requires_network
class Plan001Test(unittest.TestCase):
    def setUp(self) -> None:
        folder = tempfile.TemporaryDirectory()
        self.addCleanup(folder.cleanup)
        self.folder = Path(folder.name)
        self.server = ServerProcess(
            [sys.executable, "-m", "zCLI", "chat", "-s", "0", "--http-port", "0"]
            + ["--db", str(self.folder / "chat.sqlite3"), "--workspace", str(self.folder)],
            cwd=self.folder,
            env=ENV,
        )
        self.addCleanup(self.server.stop)
        self.port = int(self.server.wait_for(r"ws://127\.0\.0\.1:(\d+)").group(1))
        self.clients: list[Client] = []

    def start(self, nick: str, client_port: int) -> Client:
        client = Client(self.folder, nick, self.port, client_port)
        self.addCleanup(client.close)
        self.clients.append(client)
        return client

    def join(self, *clients: tuple[str, int]) -> list[Client]:
        """Start clients one by one; as each comes online, everyone online so far
        prints the updated client table."""
        online: list[Client] = []
        for nick, client_port in clients:
            online.append(self.start(nick, client_port))
            for client in online:
                client.expect(">>> [Client Table Updated]")
        return online

    def assertTranscripts(self) -> None:  # noqa: N802 (unittest style)
        """Every client printed exactly the lines expected of it, nothing between."""
        for client in self.clients:
            lines = list(client.process.lines)
            with self.subTest(client=client.process.describe()):
                self.assertEqual(len(lines), len(client.patterns), "\n".join(lines))
                for line, pattern in zip(lines, client.patterns, strict=True):
                    self.assertRegex(line, f"^{pattern}$")

    def interrupt(self, client: Client, *lines: str) -> None:
        self.assertEqual(client.process.stop(signal.SIGINT), 0)
        client.expect(*lines, "Caught keyboard interrupt. Exiting")

    def test_1_direct_messages_dereg_and_stored(self) -> None:
        """Test 1: all direct messages delivered; messages to a deregistered user stored
        and delivered with their timestamps on reg."""
        user1, user2, user3 = self.join(("user1", 9001), ("user2", 9101), ("user3", 9201))
        chats = [
            (user1, "user1", user2, "user2", "hello nice to meet you."),
            (user1, "user1", user3, "user3", "hi!"),
            (user2, "user2", user1, "user1", "hello, nice to meet you, too!"),
            (user2, "user2", user3, "user3", "hello"),
            (user3, "user3", user1, "user1", "hi~"),
            (user3, "user3", user2, "user2", "hello!"),
        ]
        for sender, sender_name, addressee, addressee_name, text in chats:
            sender.type(f"send {addressee_name} {text}")
            addressee.expect(f">>> {sender_name} : {text}")
            sender.expect(f">>> [Message has been received by {addressee_name}.]")
        user1.type("dereg user1")
        user1.expect(">>> [You are now offline. Bye.]")
        for client in (user2, user3):
            client.expect(">>> [Client Table Updated]")
        # one after the other, as in the plan: stored messages come back in this order
        for client, text in ((user2, "hello?"), (user3, "are you still there?")):
            client.type(f"send user1 {text}")
            client.expect(
                ">>> [No ACK from user1, message sent to server.]",
                ">>> [Messages received by the server and saved.]",
            )
        user1.type("reg user1")
        user1.expect(">>> [You have message]")
        user1.expect(
            rf">>> {TS} user2 : hello\?", rf">>> {TS} user3 : are you still there\?", raw=True
        )
        for client in (user1, user2, user3):
            client.expect(">>> [Client Table Updated]")
        self.interrupt(user1)
        for client in (user2, user3):
            client.expect(">>> [Client Table Updated]")
        self.interrupt(user2)
        user3.expect(">>> [Client Table Updated]")
        self.interrupt(user3)
        self.assertTranscripts()

    def test_2_server_gone(self) -> None:
        """Test 2: with the server gone, a send fails after the retries and the client
        exits with status 1."""
        user1, user2 = self.join(("user1", 9013), ("user2", 9113))
        user2.type("dereg user2")
        user2.expect(">>> [You are now offline. Bye.]")
        user1.expect(">>> [Client Table Updated]")
        self.server.stop()
        user1.type("send user2 hi")
        user1.expect(
            ">>> [No ACK from user2, message sent to server.]",
            ">>> [Message sent failed]",
            ">>> [Server is shut down]",
            ">>> [Exiting]",
        )
        user2.expect(">>> [Server is shut down]", ">>> [Exiting]")
        self.assertEqual(user1.process.process.wait(), 1)
        self.assertEqual(user2.process.process.wait(), 1)
        self.assertTranscripts()

    def test_3_group_messages(self) -> None:
        """Test 3: send_all reaches every other user; a user who left is not among them."""
        user1, user2, user3 = self.join(("user1", 9014), ("user2", 9114), ("user3", 9214))
        user1.type("send_all hello guys")
        user1.expect(">>> [Message received by the server.]")
        for client in (user2, user3):
            client.expect(">>> Channel_Message user1 : hello guys")
        self.interrupt(user2)
        for client in (user1, user3):
            client.expect(">>> [Client Table Updated]")
        user1.type("send_all hi")
        user1.expect(">>> [Message received by the server.]")
        user3.expect(">>> Channel_Message user1 : hi")
        self.assertTranscripts()


if __name__ == "__main__":
    unittest.main()
