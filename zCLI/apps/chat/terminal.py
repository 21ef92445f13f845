"""The terminal chat client's rules, with no sockets and no asyncio.

``Terminal`` turns what the user types into the zBifrost frames to send, and the
frames the server sends into the exact lines plan 001 prints (docs/chat.md, "Plan
001's lines, from these events"). It numbers its own requests, so it knows which
reply answers which command; it holds what is typed while the connection is down and
hands it back when the connection is made again. The asyncio adapter in ``client.py``
only moves frames and lines between it, the socket and the terminal.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["HELP", "Output", "Terminal"]

Frame = dict[str, Any]

HELP = (
    ">>> send NICK MESSAGE    send MESSAGE to NICK",
    ">>> send_all MESSAGE     send MESSAGE to every other user",
    ">>> dereg NICK           go offline (NICK is your own name)",
    ">>> reg NICK             come back online and get your stored messages",
    ">>> list                 every user and whether they are online",
    ">>> exit                 sign out and leave",
    ">>> help                 this list",
)

USAGE = {
    "send": ">>> [Usage: send NICK MESSAGE]",
    "send_all": ">>> [Usage: send_all MESSAGE]",
    "dereg": ">>> [Usage: dereg NICK]",
    "reg": ">>> [Usage: reg NICK]",
    "list": ">>> [Usage: list]",
    "exit": ">>> [Usage: exit]",
    "help": ">>> [Usage: help]",
}

_SEND = re.compile(r"(\S+)\s+(\S.*)", re.DOTALL)
# Requests worth sending again on a new connection when no reply came: not an ack
# (the server sends an unacknowledged message again) nor a sign-out.
PRINTED_KEPT = 10_000  # message ids remembered, to print a message that comes again once
_RESENT = frozenset({"chat.send", "chat.send_all", "chat.dereg", "chat.reg", "chat.users"})


@dataclass(frozen=True)
class Output:
    """What to do next: print ``lines``, send ``frames``, then, when ``exit`` is not
    None, leave with that status."""

    lines: tuple[str, ...] = ()
    frames: tuple[Frame, ...] = ()
    exit: int | None = None


@dataclass
class _Request:
    event: str
    data: dict[str, Any]
    frame: Frame
    answered: bool = False


@dataclass
class Terminal:
    """One user's terminal session: ``command`` for typed lines, ``receive`` for
    server frames, ``connection_made``/``connection_lost``/``give_up`` for the link."""

    nick: str
    connected: bool = False
    signed_out: bool = False
    _next_id: int = 0
    _pending: dict[str, _Request] = field(default_factory=dict)
    _held: list[str] = field(default_factory=list)  # request ids typed while offline
    _sent_to: dict[int, str] = field(default_factory=dict)  # message id -> addressee
    _early_status: dict[int, str] = field(default_factory=dict)  # status before result
    # Ids of the messages printed, newest last: a message can come again (its ack was
    # lost, or a cluster's process sent it as the ack was on its way); it is acked, not
    # printed twice.
    _printed: dict[int, None] = field(default_factory=dict)

    # -- typed commands -------------------------------------------------------------

    def command(self, line: str) -> Output:
        """The frames (or usage line) for one typed line; an empty line does nothing."""
        words = line.strip().split(maxsplit=1)
        if not words:
            return Output()
        name, rest = words[0], (words[1] if len(words) > 1 else "")
        parser = _COMMANDS.get(name)
        if parser is None:
            return Output(lines=(f">>> [Unknown command {name!r}; type help for the commands.]",))
        return parser(self, rest.strip())

    def _send(self, rest: str) -> Output:
        found = _SEND.fullmatch(rest)
        if found is None:
            return Output(lines=(USAGE["send"],))
        return self._request("chat.send", {"to": found.group(1), "text": found.group(2)})

    def _send_all(self, rest: str) -> Output:
        if not rest:
            return Output(lines=(USAGE["send_all"],))
        return self._request("chat.send_all", {"text": rest})

    def _own_name(self, command: str, rest: str, event: str) -> Output:
        if not rest or len(rest.split()) != 1:
            return Output(lines=(USAGE[command],))
        if rest != self.nick:
            return Output(lines=(f">>> [You are {self.nick}; you can only {command} yourself.]",))
        return self._request(event, {})

    def _dereg(self, rest: str) -> Output:
        return self._own_name("dereg", rest, "chat.dereg")

    def _reg(self, rest: str) -> Output:
        return self._own_name("reg", rest, "chat.reg")

    def _list(self, rest: str) -> Output:
        if rest:
            return Output(lines=(USAGE["list"],))
        return self._request("chat.users", {})

    def _help(self, rest: str) -> Output:
        if rest:
            return Output(lines=(USAGE["help"],))
        return Output(lines=HELP)

    def _exit(self, rest: str) -> Output:
        if rest:
            return Output(lines=(USAGE["exit"],))
        frames: tuple[Frame, ...] = ()
        if self.connected:
            frames = self._request("logout", None).frames
        else:
            self.signed_out = True
        return Output(lines=(">>> [Exiting]",), frames=frames, exit=0)

    def _request(self, event: str, data: dict[str, Any] | None) -> Output:
        self._next_id += 1
        request_id = f"t{self._next_id}"
        frame: Frame = {"event": event, "_requestId": request_id}
        if data is not None:
            frame["data"] = data
        self._pending[request_id] = _Request(event, data or {}, frame)
        if not self.connected:
            self._held.append(request_id)
            return Output()
        return Output(frames=(frame,))

    @property
    def busy(self) -> bool:
        """Whether a request awaits its reply or a sent message its status."""
        return bool(self._pending or self._sent_to)

    def keepalive(self) -> Output:
        """A ``chat.keepalive`` for a connection with nothing else to say."""
        if not self.connected:
            return Output()
        return self._request("chat.keepalive", {})

    # -- the link -------------------------------------------------------------------

    def connection_made(self) -> Output:
        """Signed in on a (new) connection: the frames held meanwhile, to send now."""
        self.connected = True
        held, self._held = self._held, []
        return Output(frames=tuple(self._pending[rid].frame for rid in held))

    def connection_lost(self) -> None:
        """The connection is gone: unanswered requests worth it wait for the next one;
        statuses of messages the server already took will not come on a new one."""
        self.connected = False
        for request_id, request in list(self._pending.items()):
            if request.answered:
                continue
            if request.event in _RESENT:
                if request_id not in self._held:
                    self._held.append(request_id)
            else:
                del self._pending[request_id]
        self._sent_to.clear()
        self._early_status.clear()

    def give_up(self) -> Output:
        """No connection after every retry: what never reached the server, then leave."""
        lines: list[str] = []
        for request_id in self._held:
            request = self._pending[request_id]
            if request.event == "chat.send":
                lines.append(f">>> [No ACK from {request.data['to']}, message sent to server.]")
            if request.event in ("chat.send", "chat.send_all"):
                lines.append(">>> [Message sent failed]")
        self._held.clear()
        return Output(lines=(*lines, ">>> [Server is shut down]", ">>> [Exiting]"), exit=1)

    def interrupted(self) -> Output:
        """Ctrl-C: the terminal already echoed ``^C`` after the prompt."""
        return Output(lines=("Caught keyboard interrupt. Exiting",), exit=0)

    # -- server frames --------------------------------------------------------------

    def receive(self, frame: Frame) -> Output:
        """The lines to print and the frames to send (acks) for one server frame."""
        if "_requestId" in frame and ("result" in frame or "error" in frame):
            return self._reply(frame)
        handler = _EVENTS.get(frame.get("event"))
        data = frame.get("data")
        if handler is None or not isinstance(data, dict):
            return Output()  # connection_info, server_shutdown, pong, ...
        return handler(self, data)

    def _reply(self, frame: Frame) -> Output:
        request = self._pending.get(frame["_requestId"])
        if request is None:
            return Output()
        request.answered = True
        del self._pending[frame["_requestId"]]
        if request.event == "logout":
            self.signed_out = True
        if "error" in frame:
            return Output(lines=(f">>> [{frame['error']}]",))
        result = frame["result"]
        if request.event == "chat.send" and isinstance(result, dict):
            message_id = result.get("id")
            if isinstance(message_id, int):
                self._sent_to[message_id] = request.data["to"]
                early = self._early_status.pop(message_id, None)
                if early is not None:
                    return self._status_lines(message_id, early)
            return Output()
        if request.event == "chat.send_all":
            return Output(lines=(">>> [Message received by the server.]",))
        if request.event == "chat.dereg":
            return Output(lines=(">>> [You are now offline. Bye.]",))
        if request.event == "chat.users" and isinstance(result, dict):
            users = result.get("users") or []
            return Output(
                lines=tuple(
                    f">>> {user['user']} : {'online' if user['online'] else 'offline'}"
                    for user in users
                )
            )
        return Output()

    def _message(self, data: dict[str, Any]) -> Output:
        sender, text = data.get("from"), data.get("text")
        if data.get("all"):
            line = f">>> Channel_Message {sender} : {text}"
        elif data.get("offline"):
            line = f">>> ({float(data['ts'])!r}) {sender} : {text}"
        else:
            line = f">>> {sender} : {text}"
        message_id = data.get("id")
        if not isinstance(message_id, int):
            return Output(lines=(line,))
        acks = self._request("chat.ack", {"id": message_id}).frames
        if message_id in self._printed:
            return Output(frames=acks)
        self._printed[message_id] = None
        if len(self._printed) > PRINTED_KEPT:
            del self._printed[next(iter(self._printed))]
        return Output(lines=(line,), frames=acks)

    def _status(self, data: dict[str, Any]) -> Output:
        message_id, status = data.get("id"), data.get("status")
        if not isinstance(message_id, int) or not isinstance(status, str):
            return Output()
        if message_id not in self._sent_to:
            self._early_status[message_id] = status
            return Output()
        return self._status_lines(message_id, status)

    def _status_lines(self, message_id: int, status: str) -> Output:
        to = self._sent_to.pop(message_id)
        if status == "delivered":
            return Output(lines=(f">>> [Message has been received by {to}.]",))
        return Output(
            lines=(
                f">>> [No ACK from {to}, message sent to server.]",
                ">>> [Messages received by the server and saved.]",
            )
        )

    def _offline(self, data: dict[str, Any]) -> Output:
        return Output(lines=(">>> [You have message]",))

    def _clients(self, data: dict[str, Any]) -> Output:
        return Output(lines=(">>> [Client Table Updated]",))


# Dispatch through data: typed command -> parser, pushed event -> handler.
_COMMANDS: dict[str, Callable[[Terminal, str], Output]] = {
    "send": Terminal._send,
    "send_all": Terminal._send_all,
    "dereg": Terminal._dereg,
    "reg": Terminal._reg,
    "list": Terminal._list,
    "help": Terminal._help,
    "exit": Terminal._exit,
}
_EVENTS: dict[Any, Callable[[Terminal, dict[str, Any]], Output]] = {
    "chat.message": Terminal._message,
    "chat.status": Terminal._status,
    "chat.offline": Terminal._offline,
    "chat.clients": Terminal._clients,
}
