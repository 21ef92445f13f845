"""zChat's pure core and its SQLite storage: events in, effects out; real files."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from typing import Any

from zCLI import RequestError, StorageError
from zCLI.apps.chat import messages as m
from zCLI.apps.chat import peers
from zCLI.apps.chat.core import (
    DELIVER_BATCH,
    ID_BLOCK,
    OUT_OF_IDS,
    AddUser,
    AskBot,
    ChatCore,
    ClaimIds,
    Close,
    Delete,
    Effect,
    IdBlocks,
    Limits,
    Message,
    Reply,
    RoomMessage,
    Send,
    Store,
    StoreRoom,
    StoreRoomMessage,
    Tell,
)
from zCLI.apps.chat.storage import SQLiteStorage
from zCLI.apps.chat.writer import StorageWriter
from zTestSuite import zTestCase


def table(**online: bool) -> dict[str, Any]:
    rows = [{"user": user, "online": up} for user, up in sorted(online.items())]
    return {"event": "chat.clients", "data": {"table": rows}}


def status(message_id: int, state: str) -> dict[str, Any]:
    return {"event": "chat.status", "data": {"id": message_id, "status": state}}


class ChatTestCase(zTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.core = ChatCore(Limits(max_text=10, max_stored=2, max_online=3, max_rate=3))
        self.core.ids.last = 10**6  # id blocks have a test of their own

    def sign_in(self, *users: str) -> None:
        for user in users:
            self.core.connected(user, f"{user}-conn", 0.0)

    def do(self, user: str, event: str, now: float = 0.0, **data: Any) -> list[Effect]:
        return self.core.received(f"{user}-conn", m.parse(event, data), now)

    def assertRefused(self, code: str, sentence: str, user: str, event: str, **data: Any):
        with self.assertRaises(RequestError) as caught:
            self.do(user, event, **data)
        self.assertEqual((caught.exception.code, caught.exception.message), (code, sentence))


class TestParse(zTestCase):
    def test_parses_each_event(self) -> None:
        """Well-formed data becomes the event's dataclass, and back to JSON."""
        event = m.parse("chat.send", {"to": "bob", "text": "hi"})
        self.assertEqual(event, m.Send("bob", "hi"))
        self.assertEqual(
            event.to_json(), {"event": "chat.send", "data": {"to": "bob", "text": "hi"}}
        )
        self.assertEqual(m.parse("chat.users", None), m.Users())
        self.assertEqual(m.parse("chat.room.history", {"room": "r"}), m.RoomHistory("r", None))

    def test_bad_data_is_named(self) -> None:
        """Missing, wrong-typed, oversized and unknown fields are refused with a sentence."""
        cases = [
            ("chat.send", {"to": "bob"}, "missing_field", "chat.send needs the field 'text'."),
            ("chat.send", {"to": 3, "text": "x"}, "invalid_message",
             "Field 'to' must be a string."),
            ("chat.send", {"to": "b", "text": "x", "colour": 1}, "invalid_message",
             "chat.send has no field named 'colour'."),
            ("chat.send", [], "invalid_message", "The data of chat.send must be an object."),
            ("chat.ack", {"id": True}, "invalid_message", "Field 'id' must be a positive integer."),
            ("chat.ack", {"id": 0}, "invalid_message", "Field 'id' must be a positive integer."),
            ("chat.send", {"to": "b" * 33, "text": "x"}, "too_large",
             "Field 'to' has 33 characters; at most 32 are allowed."),
            ("chat.register", {"username": "a b", "password": "p"}, "invalid_message",
             "Field 'username' must be 1 to 32 letters, digits, '_', '-' or '.'."),
            ("chat.nope", {}, "unknown_event", "There is no chat event named 'chat.nope'."),
        ]  # fmt: skip
        for event, data, code, sentence in cases:
            with self.subTest(event=event, data=data), self.assertRaises(RequestError) as caught:
                m.parse(event, data)
            self.assertEqual((caught.exception.code, caught.exception.message), (code, sentence))


class TestPresence(ChatTestCase):
    def test_sign_in_sends_the_table_to_everyone_online(self) -> None:
        """A user coming online makes every online connection get the client table."""
        self.sign_in("alice")
        effects = self.core.connected("bob", "bob-conn", 0.0)
        expected = table(alice=True, bob=True)
        self.assertEqual(
            effects, [AddUser("bob"), Send("alice-conn", expected), Send("bob-conn", expected)]
        )

    def test_dereg_and_reg_update_the_table(self) -> None:
        """dereg takes the user offline for everyone; reg brings them back."""
        self.sign_in("alice", "bob")
        self.assertEqual(
            self.do("alice", "chat.dereg"),
            [Reply({"status": "offline"}), Send("bob-conn", table(alice=False, bob=True))],
        )
        self.assertEqual(self.core.online(), ["bob"])
        expected = table(alice=True, bob=True)
        self.assertEqual(
            self.do("alice", "chat.reg"),
            [Reply({"status": "online", "pending": 0}), Send("alice-conn", expected),
             Send("bob-conn", expected)],
        )  # fmt: skip

    def test_disconnect_goes_offline_once_the_last_connection_ends(self) -> None:
        """A user with two connections stays online until both have gone; the second
        connection gets the table alone (nobody else's changed)."""
        self.sign_in("alice", "bob")
        self.assertEqual(
            self.core.connected("bob", "bob-2", 0.0), [Send("bob-2", table(alice=True, bob=True))]
        )
        self.assertEqual(self.core.disconnected("bob-conn"), [])
        self.assertEqual(
            self.core.disconnected("bob-2"), [Send("alice-conn", table(alice=True, bob=False))]
        )

    def test_keepalive_closes_silent_connections(self) -> None:
        """A connection silent past the keep-alive is closed; one that speaks stays."""
        core = ChatCore(Limits(keepalive=5))
        core.connected("alice", "a", 0.0)
        core.connected("bob", "b", 0.0)
        core.received("b", m.Keepalive(), 4.0)
        self.assertEqual(
            core.tick(6.0),
            [Close("a", 1008, "No keep-alive within 5 seconds."),
             Send("b", table(alice=False, bob=True))],
        )  # fmt: skip
        self.assertEqual(core.tick(8.9), [])

    def test_full_server_refuses_one_more_user(self) -> None:
        """Past max_online users, a new user's connection is closed 1013."""
        self.sign_in("a", "b", "c")
        self.assertEqual(
            self.core.connected("d", "d-conn", 0.0),
            [Close("d-conn", 1013, "The chat server is full; try again later.")],
        )

    def test_unsigned_connection_is_refused(self) -> None:
        """An event from a connection the core does not know is unauthorized."""
        with self.assertRaises(RequestError) as caught:
            self.core.received("ghost", m.Users(), 0.0)
        self.assertEqual(caught.exception.code, "unauthorized")


class TestDirectMessages(ChatTestCase):
    def test_online_message_acknowledged_is_delivered(self) -> None:
        """An online addressee gets the message; its ack tells the sender 'delivered'."""
        self.sign_in("alice", "bob")
        message = Message(1, "alice", "bob", "hi", 5.0)
        self.assertEqual(
            self.do("alice", "chat.send", 5.0, to="bob", text="hi"),
            [Reply({"id": 1, "ts": 5.0}), Send("bob-conn", message.event())],
        )
        self.assertEqual(self.core.next_deadline(), 5.5)
        self.assertEqual(
            self.do("bob", "chat.ack", id=1),
            [Reply({"acked": True}), Send("alice-conn", status(1, "delivered"))],
        )
        self.assertIsNone(self.core.next_deadline())
        self.assertEqual(self.core.expire(6.0), [])
        self.assertEqual(self.do("bob", "chat.ack", id=1), [Reply({"acked": False})])

    def test_expiry_stores_only_what_is_past_its_deadline_oldest_first(self) -> None:
        """expire(now) stores the unacknowledged messages whose deadline has passed, in
        the order they were sent, and leaves the later ones waiting."""
        self.sign_in("alice", "bob", "carol")
        self.do("alice", "chat.send", 5.0, to="bob", text="one")
        self.do("alice", "chat.send", 5.1, to="carol", text="two")
        self.do("carol", "chat.send", 5.2, to="bob", text="three")
        self.do("carol", "chat.ack", id=2)
        self.assertEqual(self.core.next_deadline(), 5.5)
        self.assertEqual(self.core.expire(5.49), [])
        self.assertEqual(
            self.core.expire(5.7),
            [Store(Message(1, "alice", "bob", "one", 5.0)), Send("alice-conn", status(1, "stored")),
             Store(Message(3, "carol", "bob", "three", 5.2)),
             Send("carol-conn", status(3, "stored"))],
        )  # fmt: skip
        self.assertIsNone(self.core.next_deadline())

    def test_no_ack_stores_and_later_delivers_in_order(self) -> None:
        """Without an ack the message is stored, replayed on reg with its ts, deleted on ack."""
        self.sign_in("alice", "bob")
        self.do("alice", "chat.send", 5.0, to="bob", text="one")
        first = Message(1, "alice", "bob", "one", 5.0)
        self.assertEqual(
            self.core.expire(5.5), [Store(first), Send("alice-conn", status(1, "stored"))]
        )
        self.assertEqual(self.core.expire(5.6), [])
        self.do("bob", "chat.dereg")
        second = Message(2, "alice", "bob", "two", 7.0)
        self.assertEqual(
            self.do("alice", "chat.send", 7.0, to="bob", text="two"),
            [Reply({"id": 2, "ts": 7.0}), Store(second), Send("alice-conn", status(2, "stored"))],
        )
        effects = self.do("bob", "chat.reg", 9.0)
        self.assertEqual(
            effects[:4],
            [Reply({"status": "online", "pending": 2}),
             Send("bob-conn", {"event": "chat.offline", "data": {"count": 2}}),
             Send("bob-conn", first.event(offline=True)),
             Send("bob-conn", second.event(offline=True))],
        )  # fmt: skip
        self.assertEqual(self.do("bob", "chat.ack", id=2), [Reply({"acked": True}), Delete((2,))])
        self.assertEqual(self.core.stored, {"bob": {1: first}})

    def test_refusals_reach_the_sender_only(self) -> None:
        """Unknown users, long texts, full mailboxes and floods are refused with a code."""
        self.sign_in("alice", "bob")
        self.assertRefused("unknown_user", "There is no user named 'carol'.", "alice",
                           "chat.send", to="carol", text="x")  # fmt: skip
        self.assertRefused("too_large", "The text has 11 characters; at most 10 are allowed.",
                           "alice", "chat.send", to="bob", text="x" * 11)  # fmt: skip
        self.core.disconnected("bob-conn")
        self.do("alice", "chat.send", to="bob", text="1")
        self.do("alice", "chat.send", to="bob", text="2")
        full = "bob has 2 stored messages, the most allowed; the message was not stored."
        self.assertRefused("mailbox_full", full, "alice", "chat.send", to="bob", text="3")
        self.do("alice", "chat.keepalive")
        self.do("alice", "chat.send_all", text="x")
        self.assertRefused("rate_limited", "You sent more than 3 messages a second; the message "
                           "was not sent.", "alice", "chat.send_all", text="y")  # fmt: skip
        self.do("alice", "chat.dereg")
        self.assertRefused("offline", "You are offline; send chat.reg before sending messages.",
                           "alice", "chat.send_all", text="y")  # fmt: skip

    def test_send_all_reaches_others_and_stores_for_offline(self) -> None:
        """send_all goes to every other online user and is stored for offline ones."""
        self.sign_in("alice", "bob", "carol")
        self.core.disconnected("carol-conn")
        effects = self.do("alice", "chat.send_all", 3.0, text="hello")
        self.assertEqual(
            effects,
            [Reply({"ts": 3.0, "delivered": 1, "stored": 1}),
             Send("bob-conn", Message(1, "alice", "bob", "hello", 3.0, all=True).event()),
             Store(Message(2, "alice", "carol", "hello", 3.0, all=True))],
        )  # fmt: skip


class TestIds(ChatTestCase):
    def test_ids_come_from_claimed_blocks(self) -> None:
        """The next block is claimed once less than half of one is left; ids go on in
        it whether or not it follows (another process may have claimed those between),
        and none is handed out past the blocks claimed."""
        self.core.ids = IdBlocks(ID_BLOCK, next_id=1, last=ID_BLOCK)
        self.sign_in("alice", "bob")

        def send(now: float = 0.0) -> list[Effect]:
            return self.do("alice", "chat.send", now, to="bob", text="hi")

        self.assertEqual(send()[0], Reply({"id": 1, "ts": 0.0}))
        half = self.core.ids.next_id = ID_BLOCK // 2 + 2  # less than half a block left
        self.assertEqual(send(1.0)[:2], [ClaimIds(ID_BLOCK), Reply({"id": half, "ts": 1.0})])
        self.assertNotIn(ClaimIds, [type(e) for e in send(1.0)])  # one claim at a time
        self.core.ids_claimed(5 * ID_BLOCK + 1, 6 * ID_BLOCK)
        self.core.ids.next_id = ID_BLOCK
        self.assertEqual(send(2.0)[0], Reply({"id": ID_BLOCK, "ts": 2.0}))
        self.assertEqual(send(2.0)[0], Reply({"id": 5 * ID_BLOCK + 1, "ts": 2.0}))
        self.core.ids.next_id = 6 * ID_BLOCK  # the last one
        effects = send(3.0)
        self.assertEqual(effects[:2], [ClaimIds(ID_BLOCK), Reply({"id": 6 * ID_BLOCK, "ts": 3.0})])
        self.assertRefused("storage_error", OUT_OF_IDS, "alice", "chat.send", to="bob", text="x")
        self.core.ids_claimed(6 * ID_BLOCK + 1, 7 * ID_BLOCK)  # contiguous: the block grows
        self.assertEqual(send(4.0)[0], Reply({"id": 6 * ID_BLOCK + 1, "ts": 4.0}))

    def test_writer_commits_in_order_and_reports_failure(self) -> None:
        """The writer thread commits what it is given in order, and a failure reaches
        every waiter as a StorageError."""
        path = self.workspace / "chat.sqlite3"

        async def run() -> None:
            writer = StorageWriter(SQLiteStorage(path))
            first = writer.submit([Store(Message(1, "a", "b", "one", 1.0))])
            second = writer.submit([Delete((1,)), Store(Message(2, "a", "b", "two", 2.0))])
            await asyncio.gather(first, second)
            rows = sqlite3.connect(path).execute("SELECT id FROM messages").fetchall()
            self.assertEqual(rows, [(2,)])
            path.unlink()
            with self.assertRaises(StorageError):
                await writer.probe()
            await writer.close()

        asyncio.run(run())


class TestBots(ChatTestCase):
    def setUp(self) -> None:
        super().setUp()
        blocks = IdBlocks(last=10**6)
        self.core = ChatCore(Limits(max_rate=10), bots=frozenset({"echo"}), ids=blocks)

    def test_a_bot_is_always_online_and_asked(self) -> None:
        """A bot is online without a connection; a message to it asks it."""
        self.sign_in("alice")
        self.assertEqual(self.do("alice", "chat.online"), [Reply({"users": ["alice", "echo"]})])
        prompt = Message(1, "alice", "echo", "hi", 0.0)
        self.assertEqual(
            self.do("alice", "chat.send", to="echo", text="hi"),
            [Reply({"id": 1, "ts": 0.0}), AskBot(prompt, "alice-conn")],
        )

    def test_the_answer_goes_to_the_asker_as_a_direct_message(self) -> None:
        """The asker hears delivered, then the answer, which waits for an ack."""
        self.sign_in("alice")
        prompt = Message(1, "alice", "echo", "hi", 0.0)
        self.core.ids.next_id = 2
        answer = Message(2, "echo", "alice", "hi!", 1.0)
        self.assertEqual(
            self.core.bot_answered(prompt, "alice-conn", "hi!", 1.0),
            [Send("alice-conn", status(1, "delivered")), Send("alice-conn", answer.event())],
        )  # fmt: skip
        self.assertEqual(self.core.expire(1.5), [Store(answer)])

    def test_a_failure_reaches_the_asker(self) -> None:
        """A bot that cannot answer: the asker gets status failed with the sentence."""
        self.sign_in("alice")
        prompt = Message(1, "alice", "echo", "hi", 0.0)
        error = RequestError("The bot echo cannot answer right now: down.", "bot_unavailable")
        data = {"id": 1, "status": "failed", "error": error.message, "code": "bot_unavailable"}
        self.assertEqual(
            self.core.bot_failed(prompt, "alice-conn", error),
            [Send("alice-conn", {"event": "chat.status", "data": data})],
        )
        self.assertEqual(self.core.bot_failed(prompt, "gone-conn", error), [])


class TestInitialDataAndRooms(ChatTestCase):
    def test_users_online_and_rooms(self) -> None:
        """users lists everyone with status, online the names, rooms the user's rooms."""
        self.sign_in("alice", "bob")
        self.core.registered("carol")
        self.do("bob", "chat.room.create", room="b-room")
        self.assertEqual(
            self.do("alice", "chat.users"),
            [Reply({"users": [{"user": "alice", "online": True}, {"user": "bob", "online": True},
                              {"user": "carol", "online": False}]})],
        )  # fmt: skip
        self.assertEqual(self.do("alice", "chat.online"), [Reply({"users": ["alice", "bob"]})])
        self.assertEqual(self.do("alice", "chat.rooms"), [Reply({"rooms": []})])
        self.assertEqual(self.do("bob", "chat.rooms"), [Reply({"rooms": ["b-room"]})])

    def test_room_lifecycle(self) -> None:
        """Rooms are created, joined, spoken in, read back and left."""
        self.sign_in("alice", "bob")
        self.assertEqual(
            self.do("alice", "chat.room.create", room="r"),
            [Reply({"room": "r"}), StoreRoom("r", ("alice",))],
        )
        self.assertRefused("room_exists", "There is already a room named 'r'.", "bob",
                           "chat.room.create", room="r")  # fmt: skip
        self.assertRefused("not_member", "You are not a member of room 'r'.", "bob",
                           "chat.room.send", room="r", text="x")  # fmt: skip
        self.do("bob", "chat.room.join", room="r")
        said = RoomMessage(1, "r", "alice", "hey", 2.0)
        self.assertEqual(
            self.do("alice", "chat.room.send", 2.0, room="r", text="hey"),
            [Reply({"id": 1, "ts": 2.0}), StoreRoomMessage(said, 100),
             Send("bob-conn", {"event": "chat.room.message", "data": said.to_json()})],
        )  # fmt: skip
        self.assertEqual(
            self.do("bob", "chat.room.history", room="r"), [Reply({"messages": [said.to_json()]})]
        )
        self.assertEqual(self.do("bob", "chat.room.leave", room="r")[1], StoreRoom("r", ("alice",)))
        self.assertRefused("unknown_room", "There is no room named 'x'.", "bob",
                           "chat.room.join", room="x")  # fmt: skip


class TestCluster(zTestCase):
    """Two cores as two processes of a cluster: what one tells (``Tell``) is handed to
    the other's ``from_peer``, as the plugin channel would."""

    def setUp(self) -> None:
        super().setUp()
        limits = Limits(ack_timeout=0.5, peer_ttl=15.0)
        first, second = IdBlocks(last=ID_BLOCK), IdBlocks(next_id=ID_BLOCK + 1, last=2 * ID_BLOCK)
        self.a = ChatCore(limits, users={"ann", "bob"}, peers=True, ids=first)
        self.b = ChatCore(limits, users={"ann", "bob"}, peers=True, ids=second)

    def carry(self, effects: list[Effect], to: ChatCore, now: float = 0.0) -> list[Effect]:
        """The other process hears every Tell of ``effects``; what it does in return."""
        node = "A" if to is self.b else "B"
        heard: list[Effect] = []
        for effect in effects:
            if isinstance(effect, Tell):
                wire = peers.parse(json.loads(json.dumps(effect.event.to_json())))
                heard += to.from_peer(node, wire, now)
        return heard

    def test_presence_spans_the_processes(self) -> None:
        """A sign-in in one process shows the user online in the other's table; its
        heartbeat refreshes that, and a process not heard for peer_ttl is forgotten."""
        self.carry(self.a.connected("ann", "ann@A", 0.0), self.b)
        heard = self.carry(self.b.connected("bob", "bob@B", 0.0), self.a)
        self.assertEqual(heard, [Send("ann@A", table(ann=True, bob=True))])
        self.assertEqual(self.a.online(), ["ann", "bob"])
        self.assertEqual(self.carry(self.b.heartbeat(5.0), self.a, 5.0), [])
        for now in (10.0, 15.0, 20.0):  # beats every third of peer_ttl; B heard at 5
            self.assertEqual(self.a.heartbeat(now), [Tell(peers.Presence(("ann",)))])
        effects = self.a.heartbeat(25.0)
        self.assertEqual(effects, [Tell(peers.Presence(("ann",))),
                                   Send("ann@A", table(ann=True, bob=False))])  # fmt: skip

    def test_a_joining_process_tells_its_table_before_asking_for_theirs(self) -> None:
        """hello(): the table of who is online here goes first, then the question, so a
        user who signs in while the table is on its way (their Online word follows it)
        ends up online in the other process; the question is answered with its table."""
        hello = self.b.hello()
        self.assertEqual(hello, [Tell(peers.Presence(())), Tell(peers.Hello())])
        online = self.b.connected("bob", "bob@B", 0.0)
        self.carry(hello[:1], self.a)
        self.carry(online, self.a)
        self.assertEqual(self.a.online(), ["bob"])
        self.assertEqual(self.carry(hello[1:], self.a), [Tell(peers.Presence(()))])

    def test_a_pause_of_its_own_forgets_nobody(self) -> None:
        """A beat after this process stalled longer than half of peer_ttl forgets no
        one (the others' words wait unread); the next beat judges by what it then read."""
        self.carry(self.b.connected("bob", "bob@B", 0.0), self.a)
        self.assertEqual(self.a.heartbeat(5.0), [Tell(peers.Presence(()))])
        self.assertEqual(self.a.heartbeat(30.0), [Tell(peers.Presence(()))])  # stalled
        self.assertEqual(self.carry(self.b.heartbeat(30.0), self.a, 30.0), [])
        self.assertEqual(self.a.heartbeat(35.0), [Tell(peers.Presence(()))])
        self.assertEqual(self.a.online(), ["bob"])
        self.assertEqual(self.a.heartbeat(50.0), [Tell(peers.Presence(()))])  # 20 s: stalled
        self.assertEqual(self.a.heartbeat(55.0), [Tell(peers.Presence(()))])  # 25 s silent
        self.assertEqual(self.a.online(), [])

    def test_rooms_read_from_the_storage_add_only_the_unknown_ones(self) -> None:
        """A room made elsewhere a moment ago, read from the storage, can be joined;
        a room this process already knows keeps its own members."""
        self.a.connected("ann", "ann@A", 0.0)
        self.a.rooms["known"] = {"ann"}
        self.a.rooms_read([("known", ["bob"]), ("new", ["bob"])])
        self.assertEqual(self.a.rooms, {"known": {"ann"}, "new": {"bob"}})
        joined = self.a.received("ann@A", m.RoomJoin("new"), 1.0)
        self.assertEqual(joined[0], Reply({"room": "new", "members": ["ann", "bob"]}))

    def test_stored_messages_go_in_the_order_they_were_accepted(self) -> None:
        """Stored by two processes a moment apart, the later one with the lower id (its
        process had not heard of the other's id yet): they reach the user by time."""
        first = Message(ID_BLOCK + 1, "ann", "bob", "hello?", 1.0)  # B's block
        second = Message(5, "cid", "bob", "are you still there?", 1.1)  # A's, later
        self.a.mailbox("bob", [second, first])
        effects = self.a.connected("bob", "bob@A", 2.0)
        messages = [e.payload for e in effects if isinstance(e, Send)
                    and e.payload["event"] == "chat.message"]  # fmt: skip
        self.assertEqual(messages, [first.event(offline=True), second.event(offline=True)])

    def test_a_message_stored_while_its_recipient_came_online_reaches_them(self) -> None:
        """A process that stored a message for a user it did not yet know was online
        elsewhere: their process sends it to them at once, as a stored message; their
        ack deletes it in both."""
        self.a.connected("ann", "ann@A", 0.0)
        online = self.b.connected("bob", "bob@B", 0.0)  # its Online word not yet heard
        message = Message(1, "ann", "bob", "hi", 1.0)
        sent = self.a.received("ann@A", m.Send("bob", "hi"), 1.0)
        self.assertEqual(sent, [Reply({"id": 1, "ts": 1.0}), Store(message),
                                Tell(peers.Stored(message)),
                                Send("ann@A", status(1, "stored"))])  # fmt: skip
        self.assertEqual(self.carry(sent, self.b, 1.0), [Send("bob@B", message.event(True))])
        self.carry(online, self.a, 1.1)
        acked = self.b.received("bob@B", m.Ack(1), 1.2)
        self.assertEqual(acked, [Reply({"acked": True}), Delete((1,)),
                                 Tell(peers.Deleted("bob", (1,)))])  # fmt: skip
        self.assertEqual(self.carry(acked, self.a, 1.2), [])
        self.assertEqual((self.a.stored, self.b.stored), ({"bob": {}}, {"bob": {}}))

    def test_a_message_crosses_and_its_ack_comes_back(self) -> None:
        """A message to a user on the other process is sent there and stays pending
        here; their ack there reaches the sender here as "delivered", once."""
        self.carry(self.a.connected("ann", "ann@A", 0.0), self.b)
        self.carry(self.b.connected("bob", "bob@B", 0.0), self.a)
        message = Message(1, "ann", "bob", "hi", 1.0)
        effects = self.a.received("ann@A", m.Send("bob", "hi"), 1.0)
        self.assertEqual(effects, [Reply({"id": 1, "ts": 1.0}),
                                   Tell(peers.Deliver((message,)), (message,))])  # fmt: skip
        self.assertEqual(self.carry(effects, self.b, 1.0), [Send("bob@B", message.event())])
        acked = self.b.received("bob@B", m.Ack(1), 1.1)
        self.assertEqual(acked, [Reply({"acked": True}), Tell(peers.Acked("bob", 1))])
        self.assertEqual(self.carry(acked, self.a, 1.1), [Send("ann@A", status(1, "delivered"))])
        self.assertEqual(self.b.received("bob@B", m.Ack(1), 1.2), [Reply({"acked": False})])
        self.assertEqual(self.a.expire(9.0), [])

    def test_no_ack_stores_and_a_late_ack_deletes_everywhere(self) -> None:
        """No ack within the timeout: stored by the sender's process (told to the
        other); an ack after that deletes it in both."""
        self.carry(self.b.connected("bob", "bob@B", 0.0), self.a)
        self.a.connected("ann", "ann@A", 0.0)
        message = Message(1, "ann", "bob", "hi", 1.0)
        self.carry(self.a.received("ann@A", m.Send("bob", "hi"), 1.0), self.b, 1.0)
        expired = self.a.expire(2.0)
        self.assertEqual(expired, [Store(message), Tell(peers.Stored(message)),
                                   Send("ann@A", status(1, "stored"))])  # fmt: skip
        self.assertEqual(self.carry(expired, self.b, 2.0), [])  # bob has it from B already
        self.assertEqual(self.b.stored, {"bob": {1: message}})
        acked = self.b.received("bob@B", m.Ack(1), 3.0)
        self.assertEqual(acked, [Reply({"acked": True}), Delete((1,)),
                                 Tell(peers.Deleted("bob", (1,)))])  # fmt: skip
        self.assertEqual(self.carry(acked, self.a, 3.0), [])
        self.assertEqual((self.a.stored, self.b.stored), ({"bob": {}}, {"bob": {}}))

    def test_a_word_the_broker_could_not_take_stores_its_messages(self) -> None:
        """peers_failed stores what a Tell carried; its sender hears "stored" at once."""
        self.carry(self.b.connected("bob", "bob@B", 0.0), self.a)
        self.a.connected("ann", "ann@A", 0.0)
        message = Message(1, "ann", "bob", "hi", 1.0)
        self.a.received("ann@A", m.Send("bob", "hi"), 1.0)
        stored = [Store(message), Tell(peers.Stored(message)), Send("ann@A", status(1, "stored"))]
        self.assertEqual(self.a.peers_failed([message]), stored)
        self.assertEqual(self.a.expire(9.0), [])

    def test_ids_stay_increasing_across_the_processes(self) -> None:
        """A process that hears of a higher id gives its block up and claims another;
        until it is recorded, it hands out none."""
        self.carry(self.b.connected("bob", "bob@B", 0.0), self.a)
        self.carry(self.a.connected("ann", "ann@A", 0.0), self.b)
        sent = self.b.received("bob@B", m.Send("ann", "hi"), 1.0)
        self.assertEqual(sent[0], Reply({"id": ID_BLOCK + 1, "ts": 1.0}))
        self.assertEqual(self.carry(sent, self.a, 1.0)[0], ClaimIds(ID_BLOCK))
        self.assertEqual(self.a.ids.left(), 0)
        self.assertEqual(self.a.ids_claimed(1, 5), [ClaimIds(ID_BLOCK)])  # lower: again
        self.assertEqual(self.a.ids_claimed(2 * ID_BLOCK + 1, 3 * ID_BLOCK), [])
        reply = self.a.received("ann@A", m.Send("bob", "back"), 2.0)[0]
        self.assertEqual(reply, Reply({"id": 2 * ID_BLOCK + 1, "ts": 2.0}))

    def test_rooms_and_their_messages_span_the_processes(self) -> None:
        """A room made in one process is joined in the other; what is said there
        reaches its members here, and the history is the same."""
        self.a.connected("ann", "ann@A", 0.0)
        self.carry(self.b.connected("bob", "bob@B", 0.0), self.a)
        self.carry(self.a.received("ann@A", m.RoomCreate("r"), 1.0), self.b)
        self.carry(self.b.received("bob@B", m.RoomJoin("r"), 1.0), self.a)
        self.assertEqual(self.a.rooms, {"r": {"ann", "bob"}})
        said = self.b.received("bob@B", m.RoomSend("r", "hello"), 2.0)
        spoken = RoomMessage(ID_BLOCK + 1, "r", "bob", "hello", 2.0)
        payload = {"event": "chat.room.message", "data": spoken.to_json()}
        self.assertEqual(self.carry(said, self.a, 2.0),  # a higher id: a new block first
                         [ClaimIds(ID_BLOCK), Send("ann@A", payload)])  # fmt: skip
        self.assertEqual(list(self.a.history["r"]), [spoken])

    def test_send_all_to_the_other_process_goes_in_small_words(self) -> None:
        """send_all counts the users online elsewhere as delivered and sends them their
        messages in words of at most DELIVER_BATCH, each stored if it cannot go."""
        self.a.connected("ann", "ann@A", 0.0)
        others = tuple(f"u{n:03}" for n in range(130))
        self.a.from_peer("B", peers.Presence(others), 0.0)
        effects = self.a.received("ann@A", m.SendAll("hello"), 1.0)
        self.assertEqual(effects[0], Reply({"ts": 1.0, "delivered": 130, "stored": 1}))
        words = [e for e in effects if isinstance(e, Tell) and isinstance(e.event, peers.Deliver)]
        self.assertEqual([len(w.fallback) for w in words], [DELIVER_BATCH, DELIVER_BATCH, 2])
        sent = [msg for word in words for msg in word.fallback]
        self.assertEqual([msg.recipient for msg in sent], list(others))
        self.assertTrue(all(w.event == peers.Deliver(w.fallback) for w in words))

    def test_peer_words_are_parsed_at_the_edge(self) -> None:
        """Anything but one of the words, exactly, is refused with what is wrong."""
        cases: list[tuple[dict[str, Any], str]] = [
            ({"kind": "shout"}, "there is no peer message kind 'shout'."),
            ({}, "there is no peer message kind 'None'."),
            ({"kind": "online"}, "user must be a name of 1 to 256 characters."),
            ({"kind": "presence", "users": "ann"}, "users must be a list of names."),
            ({"kind": "acked", "user": "a", "id": True}, "id must be a positive integer."),
            ({"kind": "deliver", "messages": [{"id": 1}]}, "text must be a string."),
            ({"kind": "stored", "message": {"id": 1, "from": "a", "to": "b", "text": "t",
                                            "ts": 1.0, "all": 0}},
             "all must be true or false."),
            ({"kind": "said", "message": {"id": 1}}, "message must be a room message."),
            ({"kind": "deleted", "user": "a", "ids": [0]}, "ids must be a positive integer."),
        ]  # fmt: skip
        for data, sentence in cases:
            with self.subTest(data=data), self.assertRaises(ValueError) as caught:
                peers.parse(data)
            self.assertEqual(str(caught.exception), sentence)


class TestSQLiteStorage(zTestCase):
    def test_round_trip_survives_reopening(self) -> None:
        """Stored messages, users and rooms come back after the file is reopened."""
        path = self.workspace / "chat.sqlite3"
        store = SQLiteStorage(path)
        one = Message(1, "alice", "bob", "one", 1.5)
        two = Message(2, "alice", "bob", "two", 2.5, all=True)
        store.write([AddUser("bob"), AddUser("alice"), Store(two), Store(one)])
        store.write([StoreRoom("r", ("alice", "bob"))])
        for i in range(3, 6):
            store.write([StoreRoomMessage(RoomMessage(i, "r", "alice", str(i), float(i)), 2)])
        store.write([Delete((2,))])
        store.close()
        again = SQLiteStorage(path)
        self.addCleanup(again.close)
        self.assertEqual(again.users(), ["alice", "bob"])
        self.assertEqual(again.stored(), [one])
        self.assertEqual(again.rooms(), [("r", ["alice", "bob"])])
        self.assertEqual([r.id for r in again.room_messages()], [4, 5])
        self.assertEqual(again.next_id(), 6)
        self.assertEqual(sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone(), ("wal",))

    def test_core_restores_from_storage(self) -> None:
        """A restarted core replays what the storage holds and continues the ids in the
        block it claims."""
        store = SQLiteStorage(self.workspace / "chat.sqlite3")
        self.addCleanup(store.close)
        store.write([Store(Message(7, "alice", "bob", "kept", 1.0))])
        core = ChatCore(users={"alice", "bob"})
        core.restore(store.stored(), store.rooms(), store.room_messages())
        last = store.claim_ids(ID_BLOCK)
        core.ids = IdBlocks(next_id=last - ID_BLOCK + 1, last=last)
        effects = core.connected("bob", "b", 2.0)
        self.assertEqual(
            effects[:2],
            [Send("b", {"event": "chat.offline", "data": {"count": 1}}),
             Send("b", Message(7, "alice", "bob", "kept", 1.0).event(offline=True))],
        )  # fmt: skip
        self.assertEqual(core.ids.next_id, 8)

    def test_removed_file_is_a_storage_error(self) -> None:
        """A database file removed under the server refuses writes with a sentence."""
        path = self.workspace / "chat.sqlite3"
        store = SQLiteStorage(path)
        self.addCleanup(store.close)
        path.unlink()
        with self.assertRaises(StorageError) as caught:
            store.write([Store(Message(1, "a", "b", "x", 1.0))])
        self.assertEqual(
            str(caught.exception),
            "The chat storage is unavailable; try again later "
            f"(storing a message: {path} is gone).",
        )

    def test_unopenable_path_is_a_storage_error(self) -> None:
        """A database path that cannot be created is refused at once."""
        blocker = self.write("file", "x")
        with self.assertRaises(StorageError) as caught:
            SQLiteStorage(blocker / "chat.sqlite3")
        self.assertTrue(
            str(caught.exception).startswith(
                f"The chat database {blocker / 'chat.sqlite3'} cannot be opened:"
            )
        )
