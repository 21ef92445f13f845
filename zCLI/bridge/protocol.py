"""The zBifrost wire protocol: JSON text frames parsed into small dataclasses.

Nothing here touches a socket. ``parse`` turns one frame into a request or raises
``ProtocolError`` with the machine code the sender gets back; the reply helpers build
the exact shapes documented in docs/protocol.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..exceptions import RequestError

__all__ = [
    "AuthRequest",
    "DispatchRequest",
    "EventRequest",
    "InputResponse",
    "LoginRequest",
    "ProtocolError",
    "Request",
    "error_reply",
    "parse",
    "result_reply",
]


class ProtocolError(RequestError):
    """A frame that is not a valid request; ``code`` says how."""


@dataclass(frozen=True)
class Request:
    """Any request: its event name, the client's ``_requestId`` (if any) and body."""

    event: str
    request_id: Any = None
    has_id: bool = False
    body: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DispatchRequest(Request):
    zKey: str = ""


@dataclass(frozen=True)
class InputResponse(Request):
    input_id: str = ""
    value: str | None = None


@dataclass(frozen=True)
class AuthRequest(Request):
    token: str = ""


@dataclass(frozen=True)
class LoginRequest(Request):
    username: str = ""
    password: str = ""


@dataclass(frozen=True)
class EventRequest(Request):
    """A plain event (ping, connection_info, menu, logout, or a plugin's)."""


def _text_field(raw: dict[str, Any], name: str, event: str) -> str:
    if name not in raw:
        raise ProtocolError(f"The {event} event needs a {name!r} field.", "missing_field")
    value = raw[name]
    if not isinstance(value, str):
        raise ProtocolError(f"The {name!r} field of {event} must be a string.", "invalid_message")
    return value


def parse(frame: str | bytes) -> Request:
    """One frame -> one request. Raises ProtocolError naming what is wrong."""
    if isinstance(frame, bytes):
        raise ProtocolError("Binary frames are not accepted; send JSON text.", "invalid_message")
    try:
        raw = json.loads(frame)
    except ValueError:
        raise ProtocolError("The message is not valid JSON.", "invalid_json") from None
    if not isinstance(raw, dict):
        raise ProtocolError("The message must be a JSON object.", "invalid_message")
    has_id = "_requestId" in raw
    request_id = raw.get("_requestId")
    if "event" not in raw:
        raise ProtocolError("The message needs an 'event' field.", "missing_field")
    event = raw["event"]
    if not isinstance(event, str):
        raise ProtocolError("The 'event' field must be a string.", "invalid_message")
    common: dict[str, Any] = {
        "event": event,
        "request_id": request_id,
        "has_id": has_id,
        "body": raw,
    }
    if event == "dispatch":
        return DispatchRequest(**common, zKey=_text_field(raw, "zKey", event))
    if event == "input_response":
        value = raw.get("value")
        if value is not None and not isinstance(value, str):
            raise ProtocolError(
                "The 'value' field of input_response must be a string.", "invalid_message"
            )
        return InputResponse(**common, input_id=_text_field(raw, "requestId", event), value=value)
    if event == "auth":
        return AuthRequest(**common, token=_text_field(raw, "token", event))
    if event == "login":
        return LoginRequest(
            **common,
            username=_text_field(raw, "username", event),
            password=_text_field(raw, "password", event),
        )
    return EventRequest(**common)


def result_reply(request_id: Any, result: Any) -> dict[str, Any]:
    return {"result": result, "_requestId": request_id}


def error_reply(request_id: Any, code: str, message: str) -> dict[str, Any]:
    return {"error": message, "code": code, "_requestId": request_id}
