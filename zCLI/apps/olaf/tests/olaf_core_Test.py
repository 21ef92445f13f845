"""The pure server core: frames in, effects out, no sockets. Relay rules, public_chat
dedup and no echo toward where it came from, client_update on hello and leave, both
address forms, both data forms."""

from __future__ import annotations

import json
import logging
import unittest
from typing import Any

from zCLI.apps.olaf import crypto
from zCLI.apps.olaf.core import (
    Close,
    Limits,
    ListChanged,
    Log,
    Neighbour,
    Reconnect,
    Send,
    ServerCore,
)
from zCLI.apps.olaf.messages import Chat, Hello, PublicChat, ServerHello, Signed
from zTestSuite import zTestCase

ME = crypto.Identity.generate()
NB = crypto.Identity.generate()  # neighbour B, configured as ws://127.0.0.1:2
NC = crypto.Identity.generate()  # neighbour C, configured as 127.0.0.1:3
ALICE = crypto.Identity.generate()
BOB = crypto.Identity.generate()
CAROL = crypto.Identity.generate()


def signed(who: crypto.Identity, body: Any, counter: int = 1, as_string: bool = False) -> str:
    inner = body.to_json()
    data = json.dumps(inner) if as_string else inner
    return json.dumps(Signed(data, counter, crypto.sign(who.key, data, counter), body).to_json())


class CoreTestCase(zTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.core = ServerCore(
            ME,
            "127.0.0.1:1",
            [
                Neighbour("ws://127.0.0.1:2", NB.key.public_key()),
                Neighbour("127.0.0.1:3", NC.key.public_key()),
            ],
            Limits(max_frame=4096, max_clients=3, rate=100),
        )
        self.logs: list[str] = []
        self.now = 0.0

    def feed(self, conn: int, text: str) -> list[Any]:
        """The effects of one frame, Log lines kept aside in self.logs."""
        self.now += 0.001
        return self.expand(self.core.received(conn, text, self.now))

    def expand(self, effects: list[Any]) -> list[Any]:
        """Effects as the adapter carries them out: ListChanged becomes the lists
        pushed (as if list_delay passed at once); Log lines go to self.logs."""
        self.logs += [e.text for e in effects if isinstance(e, Log)]
        out = []
        for effect in effects:
            if isinstance(effect, ListChanged):
                out += [Send(e.conn, e.text) for e in self.core.client_list_pushes()]
            elif not isinstance(effect, Log):
                out.append(effect)
        return out

    def client(self, conn: int, who: crypto.Identity) -> list[Any]:
        self.core.connected(conn, self.now)
        return self.feed(conn, signed(who, Hello(who.pem)))

    def neighbour(self, conn: int, who: crypto.Identity, sender: str) -> list[Any]:
        self.core.connected(conn, self.now)
        return self.feed(conn, signed(who, ServerHello(sender)))

    def assertDropped(self, effects: list[Any], reason: str) -> None:
        self.assertEqual(effects, [])
        self.assertIn("dropped a frame: " + reason, self.logs[-1])


class TestMembership(CoreTestCase):
    def test_hello_sends_client_update_to_neighbours_and_list_to_clients(self) -> None:
        """A client's hello sends client_update to each linked neighbour and pushes
        client_list to every local client."""
        self.core.linked(10, "ws://127.0.0.1:2", 0)
        self.client(1, ALICE)
        effects = self.client(2, BOB)
        update = {"type": "client_update", "clients": [ALICE.pem, BOB.pem]}
        listing = {
            "type": "client_list",
            "servers": [{"address": "127.0.0.1:1", "clients": [ALICE.pem, BOB.pem]}],
        }
        self.assertEqual(
            [(e.conn, json.loads(e.text)) for e in effects],
            [(10, update), (1, listing), (2, listing)],
        )

    def test_leave_sends_client_update(self) -> None:
        """When a client's connection closes, neighbours get the shorter list."""
        self.core.linked(10, "127.0.0.1:3", 0)
        self.client(1, ALICE)
        self.client(2, BOB)
        effects = self.expand(self.core.closed(1))
        self.assertEqual(
            json.loads(effects[0].text), {"type": "client_update", "clients": [BOB.pem]}
        )
        self.assertEqual(effects[0].conn, 10)

    def test_client_update_request_answered_with_local_clients(self) -> None:
        """client_update_request gets client_update with our clients' PEMs."""
        self.client(1, ALICE)
        self.neighbour(5, NB, "ws://127.0.0.1:2")
        [reply] = self.feed(5, '{"type":"client_update_request"}')
        self.assertEqual(
            reply, Send(5, json.dumps({"type": "client_update", "clients": [ALICE.pem]}))
        )

    def test_unsigned_messages_wrapped_in_signed_data_are_understood(self) -> None:
        """client_list_request and client_update_request inside signed_data (as some
        peers send them) get the same replies as plain ones."""
        self.client(1, ALICE)
        for wrapped in (
            {"type": "signed_data", "data": {"type": "client_update_request"}},
            {"type": "signed_data", "data": '{"type": "client_update_request"}', "counter": 1},
        ):
            with self.subTest(wrapped=wrapped):
                [reply] = self.feed(1, json.dumps(wrapped))
                self.assertEqual(
                    json.loads(reply.text), {"type": "client_update", "clients": [ALICE.pem]}
                )
        request = {"type": "signed_data", "data": {"type": "client_list_request"}}
        [reply] = self.feed(1, json.dumps(request))
        self.assertEqual(json.loads(reply.text)["type"], "client_list")

    def test_client_list_includes_neighbours_clients(self) -> None:
        """After a neighbour's client_update, client_list lists its clients under the
        address as configured; when its last link closes they leave the list."""
        self.client(1, ALICE)
        self.neighbour(5, NB, "127.0.0.1:2")
        [push] = self.feed(5, json.dumps({"type": "client_update", "clients": [BOB.pem]}))
        servers = [
            {"address": "127.0.0.1:1", "clients": [ALICE.pem]},
            {"address": "ws://127.0.0.1:2", "clients": [BOB.pem]},
        ]
        self.assertEqual(json.loads(push.text), {"type": "client_list", "servers": servers})
        pushed = self.expand(self.core.closed(5))
        self.assertEqual(json.loads(pushed[0].text)["servers"], servers[:1])

    def test_changes_ask_for_one_push_of_the_latest_list(self) -> None:
        """Each join only signals ListChanged; the push is one latest client_list per
        client, whatever the number of changes before it."""
        for conn, who in enumerate((ALICE, BOB, CAROL), start=1):
            self.core.connected(conn, 0)
            effects = self.core.received(conn, signed(who, Hello(who.pem)), 0)
            self.assertEqual([e for e in effects if not isinstance(e, Log)], [ListChanged()])
        pushes = self.core.client_list_pushes()
        text = json.dumps(self.core.client_list().to_json())
        self.assertEqual(pushes, [Send(c, text, latest=True) for c in (1, 2, 3)])

    def test_pending_connections_are_bounded(self) -> None:
        """Beyond max_pending connections without hello the new one is closed with
        1013; one silent past hello_timeout is closed with 1008 at the next accept."""
        core = ServerCore(ME, "127.0.0.1:1", limits=Limits(max_pending=2, hello_timeout=5))
        self.assertEqual(core.connected(1, 0) + core.connected(2, 1), [])
        refused = [e for e in core.connected(3, 2) if not isinstance(e, Log)]
        self.assertEqual(refused, [Close(3, 1013, "2 connections are waiting to say hello")])
        core.closed(3)
        later = [e for e in core.connected(4, 5.5) if not isinstance(e, Log)]
        self.assertEqual(later, [Close(1, 1008, "no hello within 5 s")])

    def test_silent_connections_expire_on_the_timer_once(self) -> None:
        """expire_pending closes a connection silent past hello_timeout with 1008 once;
        one that said hello, or is younger, is left alone."""
        core = ServerCore(ME, "127.0.0.1:1", limits=Limits(hello_timeout=5))
        core.connected(1, 0)
        core.connected(2, 4)
        self.assertEqual(core.expire_pending(4.9), [])
        closed = [e for e in core.expire_pending(5.5) if not isinstance(e, Log)]
        self.assertEqual(closed, [Close(1, 1008, "no hello within 5 s")])
        self.assertEqual(core.expire_pending(6), [])  # already closing: not again
        later = [e for e in core.expire_pending(9.5) if not isinstance(e, Log)]
        self.assertEqual(later, [Close(2, 1008, "no hello within 5 s")])

    def test_full_server_closes_with_1013(self) -> None:
        """A hello beyond max_clients is refused with close code 1013."""
        for conn, who in enumerate((ALICE, BOB, CAROL), start=1):
            self.client(conn, who)
        self.assertEqual(self.client(4, ME), [Close(4, 1013, "the server is full")])


class TestNeighbours(CoreTestCase):
    def test_linked_sends_server_hello_then_client_update_request(self) -> None:
        """Opening a link sends a signed server_hello with our address, then
        client_update_request."""
        sends = [e for e in self.core.linked(10, "127.0.0.1:3", 0) if isinstance(e, Send)]
        hello, request = (json.loads(e.text) for e in sends)
        self.assertEqual(hello["data"], {"type": "server_hello", "sender": "127.0.0.1:1"})
        self.assertEqual(hello["type"], "signed_data")
        form = crypto.verify(
            ME.key.public_key(), hello["data"], hello["counter"], hello["signature"]
        )
        self.assertEqual(form, "json-default")
        self.assertEqual(request, {"type": "client_update_request"})

    def test_server_hello_in_both_address_forms(self) -> None:
        """server_hello is accepted with host:port or ws://host:port, and asks the
        adapter to link back when we have no link of our own."""
        for conn, sender in ((5, "127.0.0.1:2"), (6, "ws://127.0.0.1:2/")):
            with self.subTest(sender=sender):
                self.assertEqual(self.neighbour(conn, NB, sender), [Reconnect("127.0.0.1:2")])
                self.assertIn("server_hello verified (signature json-default)", self.logs[-1])

    def test_server_hello_from_a_stranger_or_badly_signed_is_dropped(self) -> None:
        """An unknown sender, or one signed with the wrong key, is dropped and logged."""
        stranger = crypto.Identity.generate()
        self.assertDropped(
            self.neighbour(5, stranger, "127.0.0.1:9"), "server_hello from '127.0.0.1:9'"
        )
        self.assertDropped(self.neighbour(6, NC, "127.0.0.1:2"), "the ServerHello signature")

    def test_server_hello_recognised_by_key_under_another_name(self) -> None:
        """A configured neighbour announcing another address form (no port, a host
        name) is recognised by the key that verifies its hello."""
        self.assertEqual(self.neighbour(5, NB, "localhost"), [Reconnect("127.0.0.1:2")])
        self.assertIn("it announced itself as 'localhost'", self.logs[-1])

    def test_client_update_only_from_neighbours(self) -> None:
        """A client_update from a connection that is no neighbour is dropped."""
        self.client(1, ALICE)
        frame = json.dumps({"type": "client_update", "clients": []})
        self.assertDropped(self.feed(1, frame), "client_update comes only from a neighbour")


class TestRelay(CoreTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.client(1, ALICE)
        self.client(2, BOB)
        self.core.linked(10, "ws://127.0.0.1:2", 0)  # our link to B
        self.neighbour(11, NB, "127.0.0.1:2")  # and B's link to us
        self.core.linked(20, "127.0.0.1:3", 0)  # our link to C

    def test_public_chat_from_a_client(self) -> None:
        """public_chat goes unchanged to the other local clients and once to each
        neighbour (over our own link), never back to the sender."""
        frame = signed(ALICE, PublicChat(ALICE.fingerprint, "hi all"), counter=2)
        self.assertEqual(self.feed(1, frame), [Send(2, frame), Send(10, frame), Send(20, frame)])

    def test_public_chat_from_a_neighbour_not_echoed_and_deduplicated(self) -> None:
        """From B: to local clients and C, not back to B; the copy arriving on B's
        other link, or through C, is dropped."""
        frame = signed(CAROL, PublicChat(CAROL.fingerprint, "from afar"), counter=9)
        self.assertEqual(self.feed(11, frame), [Send(1, frame), Send(2, frame), Send(20, frame)])
        self.assertDropped(self.feed(10, frame), "a copy of a public_chat already relayed")
        self.assertDropped(self.feed(20, frame), "a copy of a public_chat already relayed")

    def test_relayed_public_chat_from_a_listed_sender_must_verify(self) -> None:
        """From B, a public_chat whose sender is in B's client list is checked with
        that key: forged, it is dropped; genuine, it is relayed."""
        self.feed(11, json.dumps({"type": "client_update", "clients": [CAROL.pem]}))
        forged = signed(BOB, PublicChat(CAROL.fingerprint, "not carol"), counter=3)
        self.assertDropped(self.feed(11, forged), "a relayed public_chat does not verify")
        genuine = signed(CAROL, PublicChat(CAROL.fingerprint, "carol"), counter=4)
        self.assertEqual(
            self.feed(11, genuine), [Send(1, genuine), Send(2, genuine), Send(20, genuine)]
        )

    def test_public_chat_in_string_data_form_relayed_unchanged(self) -> None:
        """v1.2 string data is verified and relayed byte for byte."""
        frame = signed(ALICE, PublicChat(ALICE.fingerprint, "v1.2"), counter=2, as_string=True)
        self.assertIsInstance(json.loads(frame)["data"], str)
        self.assertEqual(self.feed(1, frame), [Send(2, frame), Send(10, frame), Send(20, frame)])

    def test_chat_goes_to_listed_servers(self) -> None:
        """A client's chat goes to local clients when we are listed and to each listed
        neighbour once, whichever address form names it."""
        iv, keys, sealed = crypto.seal_chat(ALICE, [BOB.pem, CAROL.pem], "secret")
        chat = Chat(("127.0.0.1:1", "ws://127.0.0.1:2", "127.0.0.1:2"), iv, tuple(keys), sealed)
        frame = signed(ALICE, chat, counter=2)
        self.assertEqual(self.feed(1, frame), [Send(2, frame), Send(10, frame)])

    def test_chat_from_a_neighbour_reaches_local_clients_once(self) -> None:
        """A chat relayed by B goes to every local client, is not forwarded further,
        and a second copy is dropped."""
        iv, keys, sealed = crypto.seal_chat(CAROL, [ALICE.pem], "hello alice")
        frame = signed(CAROL, Chat(("ws://127.0.0.1:1",), iv, tuple(keys), sealed), as_string=True)
        self.assertEqual(self.feed(11, frame), [Send(1, frame), Send(2, frame)])
        self.assertDropped(self.feed(10, frame), "a copy of a chat already relayed")

    def test_chat_from_a_neighbour_naming_us_otherwise_is_delivered(self) -> None:
        """A neighbour only sends us chats for us: one naming us by another address is
        still delivered, with a log line."""
        iv, keys, sealed = crypto.seal_chat(CAROL, [ALICE.pem], "hi")
        frame = signed(CAROL, Chat(("localhost:1",), iv, tuple(keys), sealed))
        self.assertEqual(self.feed(11, frame), [Send(1, frame), Send(2, frame)])
        self.assertIn("(not 127.0.0.1:1); delivered", self.logs[-1])

    def test_chat_before_hello_dropped(self) -> None:
        """A connection that has not said hello cannot chat."""
        self.core.connected(30, 0)
        frame = signed(ALICE, PublicChat(ALICE.fingerprint, "early"))
        self.assertDropped(self.feed(30, frame), "public_chat before hello")

    def test_bad_signature_from_a_client_dropped(self) -> None:
        """A public_chat signed with another key than the client's hello is dropped."""
        frame = signed(BOB, PublicChat(ALICE.fingerprint, "forged"), counter=2)
        self.assertDropped(self.feed(1, frame), "the PublicChat signature verifies under no")


if __name__ == "__main__":
    logging.basicConfig()
    unittest.main()
