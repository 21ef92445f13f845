"""zChat under hostile input, against one real ``zcli chat -s`` process per class.

``BadInputTest`` sends every chat event of ``messages.EVENTS`` with a missing,
wrong-typed, oversized, unknown or unicode-laden field, with data that is not an object
and with numbers strict JSON refuses, and asserts the exact error reply docs/chat.md and
docs/protocol.md give, to the sender only: another signed-in user's ping round trip
shows it heard nothing. ``FuzzTest`` throws hypothesis-generated frames from three
signed-in connections at once and asserts that every reply and every push has a
documented shape, while a bystander that only pings sees nothing it was not sent.
"""

from __future__ import annotations

import itertools
import json
import unittest
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, fields
from typing import Any, ClassVar

try:
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st
    from hypothesis.configuration import set_hypothesis_home_dir
except ImportError:  # a test extra, not a dependency of zCLI
    raise unittest.SkipTest("hypothesis is not installed (pip install 'zCLI[test]')") from None
from websockets.sync.client import ClientConnection, connect

from zCLI import RequestError
from zCLI.apps.chat import messages as m
from zCLI.apps.chat.tests.plan002 import PASSWORD, OwnServer
from zTestSuite import requires_network, time_limit, timeout

MAX_TEXT = 64  # --max-text: small, so an oversized text is a short frame
MAX_RATE = 1000  # --max-rate: the fuzz never meets the per-user limit by accident
# The bridge's own per-connection limit (50 a second) would refuse most of a table
# sent as fast as the server answers; the workspace's zcli.yaml lifts it.
ZCLI_YAML = "websocket:\n  rate_limit: 100000\n  rate_burst: 100000\n"


def start_chat(owner: type[unittest.TestCase]) -> OwnServer:
    """``zcli chat -s`` as a user runs it, in a folder of its own whose zcli.yaml lifts
    the bridge's rate limit; stopped and removed when ``owner``'s tests are done."""
    server = OwnServer(
        ["--max-text", str(MAX_TEXT), "--max-rate", str(MAX_RATE), "--keepalive", "600"]
    )
    owner.addClassCleanup(server.close)
    (server.folder / "zcli.yaml").write_text(ZCLI_YAML)
    server.start()
    return server


def register(url: str, names: Iterable[str]) -> dict[str, str]:
    """Create accounts on one connection that never signs in (chat.register is public)."""
    tokens: dict[str, str] = {}
    with connect(url, proxy=None) as ws:  # a proxy in the environment is not ours
        for name in names:
            data = {"username": name, "password": PASSWORD}
            ws.send(json.dumps({"event": "chat.register", "data": data, "_requestId": name}))
            reply = json.loads(ws.recv(timeout=timeout(5)))
            if set(reply) != {"result", "_requestId"} or reply["result"]["user"] != name:
                raise AssertionError(f"registering {name} was answered {reply!r}")
            tokens[name] = reply["result"]["token"]
    return tokens


class Peer:
    """One signed-in connection (``?token=``), read a frame at a time with a timeout."""

    def __init__(self, url: str, name: str, token: str) -> None:
        self.name = name
        self._stack = ExitStack()
        url = f"{url}/?token={token}"
        self.ws: ClientConnection = self._stack.enter_context(
            connect(url, max_queue=None, proxy=None)
        )
        self.unnumbered = itertools.count()  # the server's numbers for requests without an id
        self.pings = itertools.count()

    def send(self, frame: dict[str, Any] | str) -> None:
        self.ws.send(frame if isinstance(frame, str) else json.dumps(frame))

    def recv(self, waiting_for: str, units: float = 2) -> Any:
        try:
            return json.loads(self.ws.recv(timeout=timeout(units)))
        except TimeoutError:
            raise AssertionError(
                f"{self.name} got nothing within {timeout(units):g} s while waiting for "
                f"{waiting_for}"
            ) from None

    def waiting(self) -> list[Any]:
        """The frames that have arrived already, without waiting for more."""
        frames = []
        while True:
            try:
                frames.append(json.loads(self.ws.recv(timeout=0)))
            except TimeoutError:
                return frames

    def expect(self, frame: dict[str, Any]) -> None:
        """The next frame is ``frame`` (for set-up, where there is no TestCase yet)."""
        got = self.recv(f"{frame!r}")
        if got != frame:
            raise AssertionError(f"{self.name} expected {frame!r}, got {got!r}")

    def expect_connection_info(self) -> None:
        info = self.recv("connection_info")
        if info.get("event") != "connection_info":
            raise AssertionError(f"{self.name} signed in and got {info!r}")

    def ping(self) -> dict[str, Any]:
        rid = f"ping-{self.name}-{next(self.pings)}"
        self.send({"event": "ping", "_requestId": rid})
        return {"event": "pong", "_requestId": rid}

    def close(self) -> None:
        self._stack.close()


def table(**online: bool) -> dict[str, Any]:
    """The chat.clients push for these users (sorted by name, as the server sends it)."""
    rows = [{"user": user, "online": online[user]} for user in sorted(online)]
    return {"event": "chat.clients", "data": {"table": rows}}


# --- the table of bad input ---------------------------------------------------------


class _Absent:
    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Any = _Absent()  # a frame without a "data" key
RAW = "@raw@"  # where a Case's raw token goes in the frame's text

SENDER, BYSTANDER, OFFLINE = "ada", "bea", "cid"
# A frame of each event that would be accepted; every case spoils one thing of it.
VALID: dict[str, dict[str, Any]] = {
    "chat.register": {"username": "newbie", "password": "pw"},
    "chat.users": {},
    "chat.online": {},
    "chat.rooms": {},
    "chat.send": {"to": BYSTANDER, "text": "hi"},
    "chat.ack": {"id": 1},
    "chat.send_all": {"text": "hi"},
    "chat.dereg": {},
    "chat.reg": {},
    "chat.keepalive": {},
    "chat.room.create": {"room": "fresh"},
    "chat.room.join": {"room": "lobby"},
    "chat.room.leave": {"room": "lobby"},
    "chat.room.send": {"room": "lobby", "text": "hi"},
    "chat.room.history": {"room": "lobby", "limit": 5},
}
NAME_FIELDS = {"to", "room", "username"}
INTEGER_FIELDS = {"id", "limit"}


def nested(depth: int) -> Any:
    value: Any = "bea"
    for _ in range(depth):
        value = [value]
    return value


NOT_OBJECTS: list[Any] = [[], [1, 2], "x", "", 7, 0, -1.5, True, False]
NOT_STRINGS: list[Any] = [5, -1, 2**64, 1.5, 0.0, True, False, [], ["bea"], {}, {"user": "bea"}]
NOT_STRINGS.append(nested(40))
NOT_POSITIVE: list[Any] = ["1", "", 1.0, 1.5, 1e300, -0.5, True, False, [], [1], {}, {"id": 1}]
NOT_POSITIVE += [0, -1, -(2**63), nested(40)]
TOO_LARGE_INTEGERS = [2**53, 2**64, 10**30]
BAD_NAMES = [
    "",
    " bea",
    "bea ",
    "be a",
    "bea\n",
    "bea\u200b",  # zero-width space
    "\u202ebea",  # right-to-left override
    "\ufeffbea",  # zero-width no-break space
    "be\x00a",
    "b\u00e9a",
    "\uff42\uff45\uff41",  # fullwidth letters
    "\u0661\u0662",  # Arabic-Indic digits
    "bea!",
]
# (key, how the error quotes it): repr, cut to 64 characters
UNKNOWN_KEYS = [
    ("colour", "'colour'"),
    ("", "''"),
    ("\u200b", "'\\u200b'"),
    ("\u202e", "'\\u202e'"),
    ("\x00", "'\\x00'"),
    ("\ud800", "'\\ud800'"),
    ("\u00e9", "'\u00e9'"),
    ("k" * 100, "'" + "k" * 64 + "'"),
    ("_requestId", "'_requestId'"),
]
# (token, sentence): the frame does not parse, so the reply carries the next number
NOT_JSON = [
    ("NaN", "The message holds NaN, which JSON does not allow."),
    ("Infinity", "The message holds Infinity, which JSON does not allow."),
    ("-Infinity", "The message holds -Infinity, which JSON does not allow."),
    ("1e999", "The number '1e999' is too large for a JSON number."),
    ("-1e999", "The number '-1e999' is too large for a JSON number."),
    ("[" * 100_000 + "]" * 100_000, "The message is nested too deeply."),
    ("'bea'", "The message is not valid JSON."),
]
NAME_RULE = "must be 1 to 32 letters, digits, '_', '-' or '.'."
# Lone surrogates, sent as JSON "\ud800" escapes: refused in every string field right
# after its type is checked, so before its length and the name rule.
LONE_SURROGATES = ["\ud800", "bea\udfff", "\ud83d"]  # the last: half an emoji
LIMITS = {"to": 32, "room": 32, "username": 32, "password": 1024, "text": MAX_TEXT}


@dataclass(frozen=True)
class Case:
    """One bad frame and the error reply it must get."""

    event: str
    label: str
    data: Any
    code: str
    error: str
    raw: str | None = None  # a token strict JSON refuses, put where RAW is

    def frame(self, rid: str) -> str:
        body: dict[str, Any] = {"event": self.event, "_requestId": rid}
        if self.data is not ABSENT:
            body["data"] = self.data
        text = json.dumps(body)
        return text if self.raw is None else text.replace(json.dumps(RAW), self.raw)


def _shown(value: Any) -> str:
    text = ascii(value)
    return text if len(text) <= 40 else f"{text[:30]}... ({len(text)} characters)"


def _field_cases(event: str, name: str, required: bool) -> list[Case]:
    """A field of the wrong type, too large, or a name that breaks the name rule."""
    cases: list[tuple[Any, str, str]] = []  # value, code, sentence
    if name in INTEGER_FIELDS:
        wrong = NOT_POSITIVE + ([None] if required else [])  # a null limit means "default"
        cases += [
            (v, "invalid_message", f"Field {name!r} must be a positive integer.") for v in wrong
        ]
        cases += [(v, "too_large", f"Field {name!r} is too large.") for v in TOO_LARGE_INTEGERS]
    else:
        wrong = [*NOT_STRINGS, None]
        cases += [(v, "invalid_message", f"Field {name!r} must be a string.") for v in wrong]
        surrogate = f"Field {name!r} must be Unicode text; it holds a lone surrogate."
        for value in (*LONE_SURROGATES, "\udfff" * (LIMITS[name] + 1)):
            cases.append((value, "invalid_message", surrogate))
    if name in NAME_FIELDS:
        for value in ("a" * 33, "\U0001f600" * 33, "b" * 5000):
            sentence = f"Field {name!r} has {len(value)} characters; at most 32 are allowed."
            cases.append((value, "too_large", sentence))
        cases += [(v, "invalid_message", f"Field {name!r} {NAME_RULE}") for v in BAD_NAMES]
    elif name == "password":
        for value in ("p" * 1025, "\U0001f600" * 1025):
            sentence = f"Field 'password' has {len(value)} characters; at most 1024 are allowed."
            cases.append((value, "too_large", sentence))
        cases.append(("", "invalid_message", "Field 'password' must not be empty."))
    elif name == "text":
        for value in ("x" * 65, "\U0001f600" * 65, "\u200b" * 65, "y" * 5000):
            sentence = f"The text has {len(value)} characters; at most {MAX_TEXT} are allowed."
            cases.append((value, "too_large", sentence))
        cases.append(("z" * 1_000_001, "too_large", "Field 'text' is too large."))
    valid = VALID[event]
    return [
        Case(event, f"{name}={_shown(value)}", {**valid, name: value}, code, error)
        for value, code, error in cases
    ]


def bad_inputs() -> list[Case]:
    """Every case of the table, event by event, then the documented refusals of input
    that parses but names what is not there."""
    cases: list[Case] = []
    for event, cls in m.EVENTS.items():
        valid = VALID[event]
        specs = fields(cls)
        required = [spec.name for spec in specs if spec.default is not None]
        not_object = f"The data of {event} must be an object."
        cases += [Case(event, f"data={d!r}", d, "invalid_message", not_object) for d in NOT_OBJECTS]
        for key, quoted in UNKNOWN_KEYS:
            error = f"{event} has no field named {quoted}."
            cases.append(
                Case(event, f"unknown {quoted}", {**valid, key: 1}, "invalid_message", error)
            )
        for name in required:
            without = {key: value for key, value in valid.items() if key != name}
            error = f"{event} needs the field {name!r}."
            cases.append(Case(event, f"without {name}", without, "missing_field", error))
        if required:  # no data, or null data, is no fields at all
            error = f"{event} needs the field {required[0]!r}."
            cases.append(Case(event, "no data", ABSENT, "missing_field", error))
            cases.append(Case(event, "data=None", None, "missing_field", error))
        for spec in specs:
            cases += _field_cases(event, spec.name, spec.name in required)
        target = required[0] if required else "colour"
        for raw, error in NOT_JSON:
            label = f"{target}={raw[:12]}"
            cases.append(Case(event, label, {**valid, target: RAW}, "invalid_json", error, raw))
    no_room, not_member = (
        "There is no room named 'nowhere'.",
        "You are not a member of room 'hall'.",
    )
    semantic = [
        ("chat.send", {"to": "carol", "text": "hi"}, "unknown_user",
         "There is no user named 'carol'."),
        ("chat.register", {"username": BYSTANDER, "password": "pw"}, "user_exists",
         f"There is already a user named {BYSTANDER!r}."),
        ("chat.room.create", {"room": "lobby"}, "room_exists",
         "There is already a room named 'lobby'."),
        ("chat.room.join", {"room": "nowhere"}, "unknown_room", no_room),
        ("chat.room.leave", {"room": "nowhere"}, "unknown_room", no_room),
        ("chat.room.send", {"room": "nowhere", "text": "hi"}, "unknown_room", no_room),
        ("chat.room.leave", {"room": "hall"}, "not_member", not_member),
        ("chat.room.send", {"room": "hall", "text": "hi"}, "not_member", not_member),
        ("chat.room.history", {"room": "hall"}, "not_member", not_member),
    ]  # fmt: skip
    cases += [Case(e, f"semantic {d}", d, code, error) for e, d, code, error in semantic]
    return cases


# Texts that are valid chat text: every one must be kept and replayed as sent.
UNICODE_TEXTS = [
    "nul \x00 inside",
    "zero\u200bwidth\u200c\u200d\u2060\ufeff",
    "\u202eevil\u202c and \u200frtl",
    "astral \U0001f600\U0001f44d\U0001f3fd \U0010ffff",
]
# JSON carries lone surrogates ("\ud800"), which no store or browser can: refused.
SURROGATE_TEXTS = ["lone \ud800 high", "lone \udfff low", "\ud83d"]
SURROGATE_TEXT = "Field 'text' must be Unicode text; it holds a lone surrogate."


@requires_network
@time_limit(60)
class BadInputTest(unittest.TestCase):
    """ada sends, bea is the other signed-in user, cid is offline; ada owns room lobby,
    bea owns room hall."""

    server: ClassVar[OwnServer]
    url: ClassVar[str]
    tokens: ClassVar[dict[str, str]]  # name -> the token chat.register returned
    sender: ClassVar[Peer]
    bystander: ClassVar[Peer]

    @classmethod
    def setUpClass(cls) -> None:
        cls.server = start_chat(cls)
        cls.url = cls.server.ws_url
        cls.tokens = register(cls.url, (SENDER, BYSTANDER, OFFLINE))
        cls.sender = Peer(cls.url, SENDER, cls.tokens[SENDER])
        cls.addClassCleanup(cls.sender.close)
        cls.sender.expect_connection_info()
        cls.sender.expect(table(ada=True, bea=False, cid=False))
        cls.bystander = Peer(cls.url, BYSTANDER, cls.tokens[BYSTANDER])
        cls.addClassCleanup(cls.bystander.close)
        cls.bystander.expect_connection_info()
        for peer in (cls.bystander, cls.sender):
            peer.expect(table(ada=True, bea=True, cid=False))
        for peer, room in ((cls.sender, "lobby"), (cls.bystander, "hall")):
            peer.send({"event": "chat.room.create", "data": {"room": room}, "_requestId": room})
            peer.expect({"result": {"room": room}, "_requestId": room})

    def assertQuiet(self, peer: Peer) -> None:  # noqa: N802 (unittest style)
        """Nothing is queued for ``peer``: a ping's pong is the very next frame."""
        pong = peer.ping()
        self.assertEqual(peer.recv("a pong"), pong, f"{peer.name} got something else first")

    def request(self, peer: Peer, event: str, data: dict[str, Any]) -> Any:
        """The result of a request that must succeed."""
        rid = f"{event}-{next(peer.pings)}"
        peer.send({"event": event, "data": data, "_requestId": rid})
        reply = peer.recv(f"the reply to {event} {ascii(data)}")
        self.assertEqual(set(reply), {"result", "_requestId"}, reply)
        self.assertEqual(reply["_requestId"], rid)
        return reply["result"]

    def test_bad_input_gets_the_documented_error_to_the_sender_only(self) -> None:
        """Each bad frame of every chat event gets exactly its documented error, and
        neither the sender nor another signed-in user gets anything else."""
        self.assertEqual(set(VALID), set(m.EVENTS), "VALID needs a frame of every chat event")
        for number, case in enumerate(bad_inputs()):
            with self.subTest(event=case.event, case=case.label):
                rid = f"case-{number}"
                self.sender.send(case.frame(rid))
                answered = rid if case.raw is None else next(self.sender.unnumbered)
                reply = self.sender.recv(f"the reply to {case.event} {case.label}")
                expected = {"error": case.error, "code": case.code, "_requestId": answered}
                self.assertEqual(reply, expected)
                self.assertQuiet(self.sender)
                self.assertQuiet(self.bystander)
        users = [{"user": SENDER, "online": True}, {"user": BYSTANDER, "online": True}]
        users.append({"user": OFFLINE, "online": False})
        self.assertEqual(self.request(self.sender, "chat.users", {}), {"users": users})
        self.assertEqual(self.request(self.sender, "chat.rooms", {}), {"rooms": ["lobby"]})

    def test_unicode_texts_are_kept_and_replayed_verbatim(self) -> None:
        """Texts with NUL, zero-width, right-to-left and astral characters are kept in a
        room's history and stored for an offline user exactly as sent; texts with a lone
        surrogate are refused, to the room and to the user, and kept nowhere."""
        # unittest runs this after the table (by name): a server that cannot store a
        # text stops answering, and the table should not be what shows it.
        for text, (event, data) in itertools.product(
            SURROGATE_TEXTS,
            [("chat.room.send", {"room": "lobby"}), ("chat.send", {"to": OFFLINE})],
        ):
            with self.subTest(event=event, text=ascii(text)):
                rid = f"{event}-{next(self.sender.pings)}"
                self.sender.send(
                    {"event": event, "data": {**data, "text": text}, "_requestId": rid}
                )
                reply = self.sender.recv(f"the reply to {event} {ascii(text)}")
                expected = {"error": SURROGATE_TEXT, "code": "invalid_message", "_requestId": rid}
                self.assertEqual(reply, expected)
        self.assertQuiet(self.sender)
        for text in UNICODE_TEXTS:
            result = self.request(self.sender, "chat.room.send", {"room": "lobby", "text": text})
            self.assertEqual(set(result), {"id", "ts"})
        history = self.request(self.sender, "chat.room.history", {"room": "lobby"})
        self.assertEqual([message["text"] for message in history["messages"]], UNICODE_TEXTS)
        stored = []
        for text in UNICODE_TEXTS:
            result = self.request(self.sender, "chat.send", {"to": OFFLINE, "text": text})
            status = {"event": "chat.status", "data": {"id": result["id"], "status": "stored"}}
            self.assertEqual(self.sender.recv("chat.status stored"), status)
            data = {"id": result["id"], "from": SENDER, "text": text, "ts": result["ts"]}
            stored.append({"event": "chat.message", "data": {**data, "offline": True}})
        cid = Peer(self.url, OFFLINE, self.tokens[OFFLINE])
        self.addCleanup(cid.close)
        cid.expect_connection_info()
        offline = {"event": "chat.offline", "data": {"count": len(UNICODE_TEXTS)}}
        self.assertEqual(cid.recv("chat.offline"), offline)
        self.assertEqual([cid.recv("a stored message") for _ in stored], stored)
        for peer in (cid, self.sender, self.bystander):
            self.assertEqual(peer.recv("chat.clients"), table(ada=True, bea=True, cid=True))
        cid.close()
        for peer in (self.sender, self.bystander):
            self.assertEqual(peer.recv("chat.clients"), table(ada=True, bea=True, cid=False))
        self.assertQuiet(self.bystander)


# --- the fuzz -----------------------------------------------------------------------

FUZZERS = ("f0", "f1", "f2")
WATCHER = "by"  # the bystander: signed in, answers pings, sends nothing else
ASLEEP = "zoe"  # registered, never signs in: messages to her are stored
USERS = (*FUZZERS, WATCHER, ASLEEP)
NEW_NAMES = ("n0", "n1", "n2")  # the only names a fuzzed chat.register may create
ROOMS = ("r0", "r1", "r2")
NOT_EVENTS = ("chat.nope", "chat.", "Chat.send", "chat.send\u200b", "chat.room")

EVERY_CHAR = st.characters()  # every code point, lone surrogates included
EDGE_TEXTS = ["", "\x00", "\u200b", "\u202e", "\ufeff", "\U0001f600", "\ud800", "\udfff"]
texts = st.text(EVERY_CHAR, max_size=70) | st.sampled_from([*EDGE_TEXTS, "a" * 65])
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(EVERY_CHAR, max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)
FIELD_VALUES = {
    "to": st.sampled_from([*USERS, "nobody"]),
    "text": texts,
    "room": st.sampled_from(ROOMS),
    "id": st.integers(1, 80),
    "limit": st.integers(1, 120),
    "username": st.sampled_from([*USERS, *NEW_NAMES, "x" * 33]),
    "password": st.text(EVERY_CHAR, max_size=8),
}
RESULT_KEYS = {
    "chat.register": {"user", "token"},
    "chat.users": {"users"},
    "chat.online": {"users"},
    "chat.rooms": {"rooms"},
    "chat.send": {"id", "ts"},
    "chat.ack": {"acked"},
    "chat.send_all": {"ts", "delivered", "stored"},
    "chat.dereg": {"status"},
    "chat.reg": {"status", "pending"},
    "chat.keepalive": set(),
    "chat.room.create": {"room"},
    "chat.room.join": {"room", "members"},
    "chat.room.leave": {"room"},
    "chat.room.send": {"id", "ts"},
    "chat.room.history": {"messages"},
}
PUSH_KEYS = {  # event -> (data keys always there, data keys that may be there)
    "chat.message": ({"id", "from", "text", "ts"}, {"all", "offline"}),
    "chat.offline": ({"count"}, set()),
    "chat.status": ({"id", "status"}, set()),
    "chat.clients": ({"table"}, set()),
    "chat.room.message": ({"id", "room", "from", "text", "ts"}, set()),
}
OFFLINE_SENTENCE = "You are offline; send chat.reg before sending messages."
RATE_SENTENCE = f"You sent more than {MAX_RATE} messages a second; the message was not sent."


@dataclass(frozen=True)
class Frame:
    """One fuzzed frame: an event, its data (or ABSENT), with or without a request id,
    and perhaps a token strict JSON refuses."""

    event: str
    data: Any = ABSENT
    with_id: bool = True
    not_json: tuple[str, str] | None = None  # (token, the sentence it is refused with)

    def render(self, rid: str) -> str:
        body: dict[str, Any] = {"event": self.event}
        if self.data is not ABSENT:
            body["data"] = self.data
        if self.with_id:
            body["_requestId"] = rid
        text = json.dumps(body)
        if self.not_json is None:
            return text
        return f'{text[:-1]}, "more": {self.not_json[0]}}}'

    def data_as_sent(self) -> Any:
        """The data as the server reads it off the wire (no data: none), which is not
        always ``data``: JSON joins a high and a low lone surrogate into one character,
        and a key repeated by that joining keeps its last value."""
        return None if self.data is ABSENT else json.loads(json.dumps(self.data))


# How a frame's data is made, drawn evenly: mostly data the event takes, so the server
# gets past parsing and does real work.
DATA_KINDS = ["valid"] * 5 + ["junk field"] * 2 + ["some fields", "extra field", "junk", "none"]


@st.composite
def frames(draw: st.DrawFn) -> Frame:
    event = draw(st.sampled_from(sorted(m.EVENTS) * 4 + list(NOT_EVENTS)))
    cls = m.EVENTS.get(event)
    names = [spec.name for spec in fields(cls)] if cls is not None else ["to", "text"]
    kind = draw(st.sampled_from(DATA_KINDS))
    data: Any = {name: draw(FIELD_VALUES[name]) for name in names}
    if kind == "junk field" and names:
        data[draw(st.sampled_from(names))] = draw(json_values)
    elif kind == "some fields":
        data = {name: value for name, value in data.items() if draw(st.booleans())}
    elif kind == "extra field":
        data[draw(st.text(EVERY_CHAR, max_size=10))] = draw(json_values)
    elif kind == "junk":
        data = draw(json_values)
    elif kind == "none":
        data = ABSENT
    with_id = draw(st.sampled_from([True] * 9 + [False]))
    not_json = draw(st.sampled_from([None] * 60 + NOT_JSON[:5] + NOT_JSON[6:]))
    return Frame(event, data, with_id, not_json)


def documented_refusals(event: m.Event) -> dict[str, str]:
    """code -> sentence of every refusal docs/chat.md allows for an event that parsed."""
    sending: dict[str, str] = {"offline": OFFLINE_SENTENCE, "rate_limited": RATE_SENTENCE}
    text = getattr(event, "text", "")
    if len(text) > MAX_TEXT:
        sending["too_large"] = (
            f"The text has {len(text)} characters; at most {MAX_TEXT} are allowed."
        )
    match event:
        case m.Register(username=name):
            return {"user_exists": f"There is already a user named {name!r}."}
        case m.Send(to=to):
            mailbox = (
                f"{to} has 1000 stored messages, the most allowed; the message was not stored."
            )
            return {
                "unknown_user": f"There is no user named {to!r}.",
                "mailbox_full": mailbox,
                **sending,
            }
        case m.SendAll():
            return sending
        case m.RoomCreate(room=room):
            return {"room_exists": f"There is already a room named {room!r}."}
        case m.RoomJoin(room=room):
            return {"unknown_room": f"There is no room named {room!r}."}
        case m.RoomLeave(room=room) | m.RoomHistory(room=room):
            return {
                "unknown_room": f"There is no room named {room!r}.",
                "not_member": f"You are not a member of room {room!r}.",
            }
        case m.RoomSend(room=room):
            return {
                "unknown_room": f"There is no room named {room!r}.",
                "not_member": f"You are not a member of room {room!r}.",
                **sending,
            }
    return {}


@requires_network
@time_limit(120)
class FuzzTest(unittest.TestCase):
    """Three fuzzers throw frames at once; a bystander only pings."""

    server: ClassVar[OwnServer]
    fuzzers: ClassVar[list[Peer]]
    watcher: ClassVar[Peer]
    pool: ClassVar[ThreadPoolExecutor]
    rids: ClassVar[itertools.count[int]]
    users: ClassVar[set[str]]
    # what was accepted, so a push can be traced to it
    direct: ClassVar[set[tuple[str, str, str]]]  # sender, recipient, text
    to_all: ClassVar[set[tuple[str, str]]]  # sender, text
    room_posts: ClassVar[set[tuple[str, str, str]]]  # room, sender, text
    ids: ClassVar[dict[str, set[int]]]  # sender -> the ids of its accepted chat.send

    @classmethod
    def setUpClass(cls) -> None:
        cls.server = start_chat(cls)
        # hypothesis caches what it learns in .hypothesis/ of the current folder even
        # without a database: keep it out of the repository, in the server's folder
        set_hypothesis_home_dir(cls.server.folder / ".hypothesis")
        cls.addClassCleanup(set_hypothesis_home_dir, None)
        url = cls.server.ws_url
        tokens = register(url, USERS)
        cls.fuzzers = [Peer(url, name, tokens[name]) for name in FUZZERS]
        cls.watcher = Peer(url, WATCHER, tokens[WATCHER])
        for peer in (*cls.fuzzers, cls.watcher):
            cls.addClassCleanup(peer.close)
            peer.expect_connection_info()
        cls.pool = ThreadPoolExecutor(len(FUZZERS), thread_name_prefix="fuzzer")
        cls.addClassCleanup(cls.pool.shutdown)
        cls.rids = itertools.count()
        cls.users = set(USERS)
        cls.direct, cls.to_all, cls.room_posts = set(), set(), set()
        cls.ids = {name: set() for name in FUZZERS}

    @settings(
        max_examples=1200,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],  # shrinking would replay on a changed server
        report_multiple_bugs=False,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(st.lists(st.tuples(st.integers(0, len(FUZZERS) - 1), frames()), min_size=2, max_size=12))
    def test_random_frames_get_documented_replies(self, batch: list[tuple[int, Frame]]) -> None:
        """Random frames from three connections at once: each gets one documented reply,
        every push is a documented event traced to what was sent, and a bystander sees
        only what it was sent while its pings keep being answered."""
        plans: list[list[Frame]] = [[] for _ in FUZZERS]
        for which, frame in batch:
            plans[which].append(frame)
        jobs = [
            self.pool.submit(self.throw, peer, plan)
            for peer, plan in zip(self.fuzzers, plans, strict=True)
        ]
        pushes = [
            (peer.name, push)
            for peer, job in zip(self.fuzzers, jobs, strict=True)
            for push in job.result()
        ]
        for name, push in pushes:
            self.check_push(name, push)
        pong = self.watcher.ping()
        while (frame := self.watcher.recv("its pong")) != pong:
            self.assertIn(frame.get("event"), ("chat.clients", "chat.message"), frame)
            self.check_push(WATCHER, frame)
        assert self.server.process is not None
        self.assertIsNone(self.server.process.process.poll(), "the server exited")

    def throw(self, peer: Peer, plan: list[Frame]) -> list[Any]:
        """Send ``plan`` on ``peer``, check each reply; returns the pushes it got."""
        outstanding: dict[Any, Frame] = {}
        for frame in plan:
            rid = f"{peer.name}-{next(self.rids)}"
            own_id = frame.with_id and frame.not_json is None
            outstanding[rid if own_id else next(peer.unnumbered)] = frame
            peer.send(frame.render(rid))
        pushes = []
        while outstanding:
            message = peer.recv(f"replies to {sorted(map(str, outstanding))}")
            if "_requestId" not in message:
                pushes.append(message)
                continue
            rid = message["_requestId"]
            self.assertIn(rid, outstanding, f"{peer.name} got a reply to no request: {message}")
            self.check_reply(peer.name, outstanding.pop(rid), rid, message)
        for message in peer.waiting():
            self.assertNotIn("_requestId", message, f"{peer.name} got a reply to no request")
            pushes.append(message)
        return pushes

    def check_reply(self, name: str, frame: Frame, rid: Any, reply: dict[str, Any]) -> None:
        """One reply: exactly the documented refusal, or a result of the documented shape."""
        if frame.not_json is not None:
            expected = {"error": frame.not_json[1], "code": "invalid_json", "_requestId": rid}
            self.assertEqual(reply, expected)
            return
        if frame.event not in m.EVENTS:
            error = f"There is no event named {frame.event!r}."
            self.assertEqual(reply, {"error": error, "code": "unknown_event", "_requestId": rid})
            return
        try:
            event = m.parse(frame.event, frame.data_as_sent())
        except RequestError as refused:
            expected = {"error": refused.message, "code": refused.code, "_requestId": rid}
            self.assertEqual(reply, expected, f"{frame.event} {ascii(frame.data)}")
            return
        if "error" in reply:
            refusals = documented_refusals(event)
            self.assertIn(reply["code"], refusals, f"{ascii(event)} got {reply}")
            expected = {"error": refusals[reply["code"]], "code": reply["code"], "_requestId": rid}
            self.assertEqual(reply, expected)
            return
        self.assertEqual(set(reply), {"result", "_requestId"}, reply)
        result = reply["result"]
        self.assertEqual(set(result), RESULT_KEYS[frame.event], reply)
        match event:
            case m.Register(username=user):
                self.assertEqual(result["user"], user)
                self.users.add(user)
            case m.Send(text=text) | m.SendAll(text=text) | m.RoomSend(text=text):
                self.assertLessEqual(len(text), MAX_TEXT, f"{ascii(event)} was accepted")
        match event:
            case m.Send(to=to, text=text):
                self.direct.add((name, to, text))
                self.ids[name].add(result["id"])
            case m.SendAll(text=text):
                self.to_all.add((name, text))
            case m.RoomSend(room=room, text=text):
                self.room_posts.add((room, name, text))

    def check_push(self, name: str, push: dict[str, Any]) -> None:
        """A documented chat.* push to ``name``, traced to something accepted for it."""
        self.assertEqual(set(push), {"event", "data"}, f"{name} got {push}")
        self.assertIn(push["event"], PUSH_KEYS, f"{name} got an undocumented push: {push}")
        data = push["data"]
        always, maybe = PUSH_KEYS[push["event"]]
        self.assertTrue(always <= set(data) <= always | maybe, f"{name} got {push}")
        match push["event"]:
            case "chat.message":
                self.assertTrue(all(data[key] is True for key in maybe & set(data)), push)
                sender, text = data["from"], data["text"]
                sent = (
                    (sender, text) in self.to_all
                    if data.get("all")
                    else (sender, name, text) in self.direct
                )
                self.assertTrue(sent, f"{name} got a message nobody sent it: {ascii(push)}")
            case "chat.status":
                self.assertIn(data["status"], ("delivered", "stored"), push)
                self.assertIn(data["id"], self.ids.get(name, set()), f"{name} got {push}")
            case "chat.offline":
                self.assertGreaterEqual(data["count"], 1, push)
            case "chat.clients":
                rows = data["table"]
                self.assertTrue(all(set(row) == {"user", "online"} for row in rows), push)
                users = [row["user"] for row in rows]
                self.assertEqual(users, sorted(users), push)
                self.assertLessEqual(set(users), self.users, push)
            case "chat.room.message":
                post = (data["room"], data["from"], data["text"])
                self.assertIn(post, self.room_posts, f"{name} got {ascii(push)}")
                self.assertNotEqual(data["from"], name, push)


if __name__ == "__main__":
    unittest.main()
