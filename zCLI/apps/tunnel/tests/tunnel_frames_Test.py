"""zTunnel's pure core: the wire format, stream ids and states, credit windows, FIN and
RST, unknown ids, protocol violations, the memory cap, and the failover rules."""

from __future__ import annotations

import json
import unittest

from zCLI.apps.tunnel.core import (
    Activate,
    Budget,
    Deliver,
    Dial,
    Effect,
    Ended,
    HelloReceived,
    Link,
    Opened,
    Refused,
    Reset,
    Resume,
    RoleReceived,
    Shutdown,
    Throttled,
    Welcomed,
)
from zCLI.apps.tunnel.frames import (
    HEADER,
    FrameType,
    Hello,
    ProtocolViolation,
    Role,
    Welcome,
    encode,
    parse,
)
from zCLI.apps.tunnel.roles import Roles

WINDOW = 1000
CHUNK = 100


def frame(kind: FrameType, stream_id: int, payload: bytes = b"") -> bytes:
    return HEADER.pack(kind, stream_id) + payload


def number(value: int) -> bytes:
    return value.to_bytes(4, "big")


class LinkCase(unittest.TestCase):
    """A server link and a client link, greeted, with frames carried by hand."""

    def setUp(self) -> None:
        self.server = Link(server=True, window=WINDOW, chunk=CHUNK)
        self.client = Link(server=False, window=WINDOW, chunk=CHUNK)
        self.client.send_hello(1, "secret")
        self.assertEqual(
            self.carry(self.client, self.server), [HelloReceived(Hello(1, "secret", WINDOW))]
        )
        self.server.send_welcome(True)
        self.assertEqual(self.carry(self.server, self.client), [Welcomed(Welcome(True, WINDOW))])

    def carry(self, sender: Link, receiver: Link) -> list[Effect]:
        """Every frame ``sender`` queued, received by ``receiver``, in order."""
        effects: list[Effect] = []
        while sender.outgoing:
            effects += receiver.receive(sender.pop_outgoing())
        self.assertEqual(sender.outgoing_bytes, 0)
        return effects

    def sent(self, link: Link) -> list[bytes]:
        frames = []
        while link.outgoing:
            frames.append(link.pop_outgoing())
        return frames

    def opened(self) -> int:
        """A client stream, dialled by the server."""
        stream_id = self.client.open_stream("tun1")
        self.assertEqual(self.carry(self.client, self.server), [Dial(stream_id, "tun1")])
        self.server.dial_succeeded(stream_id)
        self.assertEqual(self.carry(self.server, self.client), [Opened(stream_id)])
        return stream_id

    def assertViolation(self, link: Link, message: bytes, text: str, code: int = 1002) -> None:  # noqa: N802
        with self.assertRaises(ProtocolViolation) as caught:
            link.receive(message)
        self.assertEqual((caught.exception.message, caught.exception.code), (text, code))


class FramesTest(unittest.TestCase):
    def test_header_is_type_then_big_endian_id(self) -> None:
        """A frame is 1 type byte, a 4-byte big-endian stream id, then the payload."""
        self.assertEqual(encode(FrameType.DATA, 258, b"hi"), b"\x04\x00\x00\x01\x02hi")

    def test_parse_round_trip(self) -> None:
        """parse() gives back the type, the id and the payload."""
        parsed = parse(encode(FrameType.RST, 7, b"gone"), 100)
        self.assertEqual(
            (parsed.type, parsed.stream_id, bytes(parsed.payload)), (FrameType.RST, 7, b"gone")
        )

    def test_malformed_frames(self) -> None:
        """A short header, an unknown type and an oversized payload are named."""
        table = {
            b"\x04\x00\x00": "A frame of 3 bytes is shorter than the 5-byte header.",
            b"\x09\x00\x00\x00\x01": "Frame type 0x09 is unknown.",
            b"\x04\x00\x00\x00\x01" + b"x" * 101: (
                "A DATA frame of 101 bytes is larger than the chunk size, 100."
            ),
        }
        for message, text in table.items():
            with self.subTest(message=message[:8]):
                with self.assertRaises(ProtocolViolation) as caught:
                    parse(message, 100)
                self.assertEqual(caught.exception.message, text)

    def test_link_payloads(self) -> None:
        """HELLO, WELCOME and ROLE are the JSON of docs/tunnel.md."""
        self.assertEqual(
            json.loads(Hello(2, "t").to_json()), {"version": 1, "clientId": 2, "token": "t"}
        )
        self.assertEqual(json.loads(Welcome(False).to_json()), {"active": False})
        self.assertEqual(json.loads(Role(False, 3).to_json()), {"active": False, "closeSecs": 3})
        self.assertEqual(json.loads(Role(True).to_json()), {"active": True})


class StreamsTest(LinkCase):
    def test_ids_by_side(self) -> None:
        """The server opens even stream ids, a client odd ones, each side counting up."""
        self.assertEqual([self.server.open_stream("a") for _ in range(3)], [2, 4, 6])
        self.assertEqual([self.client.open_stream("a") for _ in range(3)], [1, 3, 5])

    def test_open_frame(self) -> None:
        """OPEN carries the opener's window and the tunnel name."""
        stream_id = self.client.open_stream("tün")
        self.assertEqual(
            self.sent(self.client), [frame(FrameType.OPEN, 1, number(WINDOW) + "tün".encode())]
        )
        self.assertEqual(stream_id, 1)

    def test_data_before_open_ok_within_window(self) -> None:
        """The opener may send right after OPEN, up to the peer's window, in chunks."""
        stream_id = self.client.open_stream("tun1")
        self.assertEqual(self.client.send_data(stream_id, b"x" * 250), 250)
        effects = self.carry(self.client, self.server)
        self.assertEqual(
            effects,
            [
                Dial(stream_id, "tun1"),
                Deliver(stream_id, memoryview(b"x" * 100)),
                Deliver(stream_id, memoryview(b"x" * 100)),
                Deliver(stream_id, memoryview(b"x" * 50)),
            ],
        )

    def test_credit_limits_and_resumes(self) -> None:
        """A sender stops at its credit; CREDIT from the reader resumes it."""
        stream_id = self.opened()
        self.assertEqual(self.client.send_data(stream_id, b"y" * 1500), WINDOW)
        self.assertEqual(self.client.credit(stream_id), 0)
        self.assertEqual(self.client.send_data(stream_id, b"y"), 0)
        self.carry(self.client, self.server)
        self.assertIsNone(self.server.consumed(stream_id, 10))
        self.assertEqual(self.carry(self.server, self.client), [Resume(stream_id)])
        self.assertEqual(self.client.credit(stream_id), 10)

    def test_credit_batched_by_quarter_window(self) -> None:
        """While the peer still holds credit, CREDIT goes back a quarter window at a time."""
        stream_id = self.opened()
        self.client.send_data(stream_id, b"y" * 500)
        self.carry(self.client, self.server)
        self.server.consumed(stream_id, 100)
        self.assertEqual(self.sent(self.server), [])
        self.server.consumed(stream_id, 150)
        self.assertEqual(self.sent(self.server), [frame(FrameType.CREDIT, stream_id, number(250))])

    def test_credit_returned_when_the_peer_is_out(self) -> None:
        """When the peer has no credit left, any written bytes are returned at once."""
        stream_id = self.opened()
        self.client.send_data(stream_id, b"z" * WINDOW)
        self.carry(self.client, self.server)
        self.server.consumed(stream_id, 10)
        self.assertEqual(self.sent(self.server), [frame(FrameType.CREDIT, stream_id, number(10))])

    def test_data_beyond_credit_is_a_violation(self) -> None:
        """DATA past the advertised window closes the link with 1002."""
        stream_id = self.opened()
        for _ in range(10):
            self.server.receive(frame(FrameType.DATA, stream_id, b"d" * 100))
        self.assertViolation(
            self.server,
            frame(FrameType.DATA, stream_id, b"d"),
            f"DATA of 1 bytes for stream {stream_id} exceeds its credit of 0 bytes.",
        )

    def test_half_close_both_ways(self) -> None:
        """FIN half-closes; data keeps flowing the other way; both FINs end the stream."""
        stream_id = self.opened()
        self.assertFalse(self.client.send_fin(stream_id))
        self.assertEqual(self.carry(self.client, self.server), [Shutdown(stream_id)])
        self.assertEqual(self.server.send_data(stream_id, b"reply"), 5)
        self.assertEqual(
            self.carry(self.server, self.client), [Deliver(stream_id, memoryview(b"reply"))]
        )
        self.assertTrue(self.server.send_fin(stream_id))
        self.assertEqual(
            self.carry(self.server, self.client), [Shutdown(stream_id), Ended(stream_id)]
        )
        self.assertEqual((self.server.streams, self.client.streams), ({}, {}))

    def test_after_fin(self) -> None:
        """DATA or a second FIN after FIN is a violation; we cannot send after our FIN."""
        stream_id = self.opened()
        self.client.send_fin(stream_id)
        self.carry(self.client, self.server)
        self.assertViolation(
            self.server,
            frame(FrameType.DATA, stream_id, b"late"),
            f"DATA for stream {stream_id} came after its FIN.",
        )
        self.assertViolation(
            self.server, frame(FrameType.FIN, stream_id), f"A second FIN for stream {stream_id}."
        )
        self.assertEqual(self.client.credit(stream_id), 0)

    def test_reset(self) -> None:
        """RST removes the stream on both sides with its reason."""
        stream_id = self.opened()
        self.server.reset(stream_id, "backend died")
        self.assertEqual(self.carry(self.server, self.client), [Reset(stream_id, "backend died")])
        self.assertEqual((self.server.streams, self.client.streams), ({}, {}))

    def test_refused_dial(self) -> None:
        """A failed dial answers OPEN_FAILED; the opener resets its connection."""
        stream_id = self.client.open_stream("tun1")
        self.carry(self.client, self.server)
        self.server.dial_failed(stream_id, "connection refused")
        self.assertEqual(
            self.carry(self.server, self.client), [Refused(stream_id, "connection refused")]
        )
        self.assertEqual(self.client.streams, {})

    def test_unknown_stream_ids(self) -> None:
        """DATA, FIN and OPEN_OK for an unknown id get RST; RST, CREDIT and OPEN_FAILED
        for one are dropped (never an RST for an RST)."""
        for kind, payload in (
            (FrameType.DATA, b"x"),
            (FrameType.FIN, b""),
            (FrameType.OPEN_OK, number(5)),
        ):
            with self.subTest(kind=kind.name):
                self.assertEqual(self.server.receive(frame(kind, 99, payload)), [])
                self.assertEqual(
                    self.sent(self.server), [frame(FrameType.RST, 99, b"unknown stream")]
                )
        for kind, payload in (
            (FrameType.RST, b"bye"),
            (FrameType.CREDIT, number(5)),
            (FrameType.OPEN_FAILED, b"no"),
        ):
            with self.subTest(kind=kind.name):
                self.assertEqual(self.server.receive(frame(kind, 99, payload)), [])
                self.assertEqual(self.sent(self.server), [])

    def test_violations(self) -> None:
        """Each broken rule closes the link with 1002 and a sentence naming it."""
        self.opened()  # stream 1
        table = [
            (
                frame(FrameType.OPEN, 2, number(5) + b"t"),
                "OPEN for stream 2: the client opens odd ids.",
            ),
            (frame(FrameType.OPEN, 1, number(5) + b"t"), "OPEN for stream 1 reuses an id."),
            (
                frame(FrameType.OPEN, 3, b"\x00"),
                "The OPEN frame for stream 3 is shorter than its 4-byte window.",
            ),
            (frame(FrameType.DATA, 1, b""), "DATA for stream 1 is empty."),
            (
                frame(FrameType.CREDIT, 1, b"\x00"),
                "A CREDIT frame for stream 1 carries 1 bytes, not a 4-byte number.",
            ),
            (frame(FrameType.DATA, 0, b"x"), "A DATA frame cannot use stream 0."),
            (frame(FrameType.ACTIVATE, 1), "A ACTIVATE frame must use stream 0, not 1."),
            (frame(FrameType.HELLO, 0, b"{}"), "A second HELLO frame."),
            (frame(FrameType.ROLE, 0, b"{}"), "The server does not take ROLE frames."),
            (
                frame(FrameType.OPEN_OK, 1, number(5)),
                "OPEN_OK for stream 1, which is open, not opening.",
            ),
            (
                frame(FrameType.RST, 1, b"\xff"),
                "The RST frame for stream 1 has text that is not UTF-8.",
            ),
        ]
        for message, text in table:
            with self.subTest(text=text):
                self.assertViolation(self.server, message, text)

    def test_before_hello(self) -> None:
        """Until HELLO, a server link takes no stream frame and no ACTIVATE."""
        fresh = Link(server=True, window=WINDOW, chunk=CHUNK)
        self.assertViolation(
            fresh,
            frame(FrameType.OPEN, 1, number(5) + b"t"),
            "A OPEN frame came before the HELLO frame.",
        )
        self.assertViolation(
            fresh, frame(FrameType.ACTIVATE, 0), "An ACTIVATE frame came before the HELLO frame."
        )

    def test_hello_checks(self) -> None:
        """A HELLO with a bad client id closes with 1008; malformed JSON with 1002."""
        fresh = Link(server=True, window=WINDOW, chunk=CHUNK)
        self.assertViolation(
            fresh,
            frame(FrameType.HELLO, 0, b'{"version": 1, "clientId": 3}'),
            "HELLO clientId 3 is not 1 or 2.",
            1008,
        )
        self.assertViolation(fresh, frame(FrameType.HELLO, 0, b"{"), "The HELLO frame is not JSON.")
        self.assertViolation(
            fresh,
            frame(FrameType.HELLO, 0, b'{"version": 2, "clientId": 1}'),
            "HELLO version 2 is not supported (only 1).",
        )

    def test_link_control_frames(self) -> None:
        """ACTIVATE reaches the server, ROLE the client."""
        self.client.send_activate()
        self.assertEqual(self.carry(self.client, self.server), [Activate()])
        self.server.send_role(Role(False, 3))
        self.assertEqual(self.carry(self.server, self.client), [RoleReceived(Role(False, 3.0))])

    def test_close_forgets_every_stream(self) -> None:
        """When the WebSocket goes, every stream goes with it."""
        first, second = self.opened(), self.opened()
        self.client.send_data(first, b"pending")
        self.assertEqual(self.client.close(), [first, second])
        self.assertEqual((self.client.streams, list(self.client.outgoing)), ({}, []))


class BudgetTest(LinkCase):
    def setUp(self) -> None:
        super().setUp()
        self.budget = Budget(150)
        self.server.budget = self.budget

    def test_throttle_and_release(self) -> None:
        """Over the cap, credit waits (one Throttled per stream) until the total drops."""
        stream_id = self.opened()
        self.client.send_data(stream_id, b"a" * 1000)
        self.carry(self.client, self.server)
        self.assertEqual(self.budget.held, 1000)
        self.assertEqual(self.server.consumed(stream_id, 300), Throttled(stream_id, 700, 150))
        self.assertIsNone(self.server.consumed(stream_id, 100))
        self.assertEqual((self.sent(self.server), self.budget.release()), ([], []))
        self.server.consumed(stream_id, 500)
        self.assertEqual(self.budget.release(), [self.server])
        self.assertEqual(self.sent(self.server), [frame(FrameType.CREDIT, stream_id, number(900))])


class RolesTest(unittest.TestCase):
    def test_client1_first(self) -> None:
        """Client 1 connecting first is active; client 2 is standby."""
        roles = Roles(3)
        self.assertTrue(roles.connect(1).welcome_active)
        self.assertFalse(roles.connect(2).welcome_active)
        self.assertEqual(roles.active, 1)

    def test_lone_client2_until_client1(self) -> None:
        """A lone client 2 is active until client 1 first connects (no port closing)."""
        roles = Roles(3)
        self.assertTrue(roles.connect(2).welcome_active)
        decision = roles.connect(1)
        self.assertEqual((decision.welcome_active, decision.roles), (True, {2: Role(False, 0.0)}))
        self.assertFalse(decision.close_listeners)

    def test_failover_alternates(self) -> None:
        """ACTIVATE from the standby swaps roles and closes the server's listeners;
        from the active client it changes nothing."""
        roles = Roles(3)
        roles.connect(1)
        roles.connect(2)
        self.assertEqual(roles.activate(1).roles, {})
        for new, old in ((2, 1), (1, 2), (2, 1)):
            decision = roles.activate(new)
            self.assertEqual(decision.roles, {new: Role(True), old: Role(False, 3.0)})
            self.assertTrue(decision.close_listeners)
        self.assertEqual(roles.failovers, 3)

    def test_active_drops(self) -> None:
        """The active client leaving makes the other active; a standby leaving does not."""
        roles = Roles(3)
        roles.connect(1)
        roles.connect(2)
        self.assertEqual(roles.disconnect(2).roles, {})
        roles.connect(2)
        self.assertEqual(roles.disconnect(1).roles, {2: Role(True)})
        self.assertEqual(roles.active, 2)
        self.assertFalse(roles.connect(1).welcome_active)  # not at start any more
        roles.disconnect(2)
        roles.disconnect(1)
        self.assertIsNone(roles.active)
