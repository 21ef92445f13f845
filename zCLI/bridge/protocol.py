"""The zBifrost wire protocol: JSON text frames parsed into small dataclasses.

Nothing here touches a socket. ``parse`` turns one frame into a request or raises
``ProtocolError`` with the machine code the sender gets back; the reply helpers build
the exact shapes documented in docs/protocol.md.

Everything a reply may echo is bounded here, at the edge: ``_requestId`` is a string of
at most ``max_request_id`` characters, a finite number or null, and each text field has
its own length limit, so a reply never grows with a hostile request. JSON that strict
JSON does not allow (NaN, Infinity, numbers that overflow to them) and nesting deeper
than the decoder can follow are refused as ``invalid_json``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .. import strict_json
from ..exceptions import RequestError

__all__ = [
    "AuthRequest",
    "DispatchRequest",
    "EventRequest",
    "InputResponse",
    "LoginRequest",
    "ProtocolError",
    "Request",
    "decode",
    "dispatch_key",
    "error_reply",
    "parse",
    "parse_object",
    "request_object",
    "result_reply",
    "shown",
]

MAX_SAFE_INTEGER = 2**53 - 1  # the largest integer every JSON client reads exactly
# Longest accepted value of each text field, in characters.
FIELD_LIMITS = {
    "event": 128,
    "zKey": 256,
    "requestId": 64,
    "token": 8192,
    "username": 256,
    "password": 1024,
}


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


def shown(text: str, limit: int = 64) -> str:
    """``text`` quoted for an error message, cut to ``limit`` characters."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _text_field(raw: dict[str, Any], name: str, event: str) -> str:
    if name not in raw:
        raise ProtocolError(f"The {event} event needs a {name!r} field.", "missing_field")
    value = raw[name]
    if not isinstance(value, str):
        raise ProtocolError(f"The {name!r} field of {event} must be a string.", "invalid_message")
    limit = FIELD_LIMITS[name]
    if len(value) > limit:
        raise ProtocolError(
            f"The {name!r} field of {event} is longer than {limit} characters.",
            "invalid_message",
        )
    return value


def _check_request_id(value: Any, max_length: int) -> None:
    if value is None:
        return
    if isinstance(value, str):
        if len(value) > max_length:
            raise ProtocolError(
                f"The '_requestId' is longer than {max_length} characters.", "invalid_message"
            )
        return
    if isinstance(value, float) or (
        isinstance(value, int) and not isinstance(value, bool) and abs(value) <= MAX_SAFE_INTEGER
    ):
        return  # floats are finite: the decoder refused the rest
    raise ProtocolError(
        "The '_requestId' must be a string, a number up to 2**53-1 in size, or null.",
        "invalid_message",
    )


def decode(frame: str | bytes, loads: Callable[[str | bytes], Any] = strict_json.loads) -> Any:
    """Strict JSON: no NaN or Infinity, no overflowing numbers, bounded nesting.
    ``loads``: ``strict_json.loads`` or, in fast mode, ``strict_json.fast_loads``."""
    try:
        return loads(frame)
    except RecursionError:
        raise ProtocolError("The message is nested too deeply.", "invalid_json") from None
    except strict_json.NotJson as exc:
        message = (
            f"The message holds {exc.token}, which JSON does not allow."
            if exc.constant
            else f"The number {shown(exc.token, 32)} is too large for a JSON number."
        )
        raise ProtocolError(message, "invalid_json") from None
    except ValueError:  # JSONDecodeError, UnicodeDecodeError, too many digits
        raise ProtocolError("The message is not valid JSON.", "invalid_json") from None


def parse(
    frame: str | bytes,
    max_request_id: int = 128,
    loads: Callable[[str | bytes], Any] = strict_json.loads,
) -> Request:
    """One frame -> one request. Raises ProtocolError naming what is wrong."""
    return parse_object(request_object(frame, loads), max_request_id)


def request_object(
    frame: str | bytes, loads: Callable[[str | bytes], Any] = strict_json.loads
) -> dict[str, Any]:
    """One frame -> its JSON object, the first half of ``parse``."""
    if isinstance(frame, bytes):
        raise ProtocolError("Binary frames are not accepted; send JSON text.", "invalid_message")
    raw = decode(frame, loads)
    if not isinstance(raw, dict):
        raise ProtocolError("The message must be a JSON object.", "invalid_message")
    return raw


def dispatch_key(raw: dict[str, Any], max_request_id: int = 128) -> str | None:
    """The zKey of ``raw`` if it is a dispatch request that ``parse_object`` accepts,
    checked as it checks one but with nothing built; None for anything else."""
    if raw.get("event") != "dispatch":
        return None
    key = raw.get("zKey")
    if type(key) is not str or len(key) > FIELD_LIMITS["zKey"]:
        return None
    request_id = raw.get("_requestId")
    if type(request_id) is not int or abs(request_id) > MAX_SAFE_INTEGER:
        try:
            _check_request_id(request_id, max_request_id)
        except ProtocolError:
            return None
    return key


def parse_object(raw: dict[str, Any], max_request_id: int = 128) -> Request:
    """A frame's JSON object -> one request, the second half of ``parse``."""
    has_id = "_requestId" in raw
    request_id = raw.get("_requestId")
    _check_request_id(request_id, max_request_id)
    if "event" not in raw:
        raise ProtocolError("The message needs an 'event' field.", "missing_field")
    event = raw["event"]
    if not isinstance(event, str):
        raise ProtocolError("The 'event' field must be a string.", "invalid_message")
    if len(event) > FIELD_LIMITS["event"]:
        raise ProtocolError(
            f"The 'event' field is longer than {FIELD_LIMITS['event']} characters.",
            "invalid_message",
        )
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
