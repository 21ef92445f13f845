"""Every error zNeighbourhood raises, under one root::

    OlafError
    ├── ConfigError        a config or command line that cannot run (names the key)
    ├── CryptoError        a key, Base64 text, wrapped key or ciphertext that does not open
    └── DroppedMessage     a peer's frame we drop, with the reason we log (caller's fault)
        ├── MalformedMessage   not JSON, not an object, unknown type, a missing or wrong field
        ├── BadSignature       no signature form verifies with the sender's key
        ├── ReplayedCounter    a counter not above the last one on this connection
        └── NotAllowed         a message this connection may not send (role, rate, size)

A ``DroppedMessage`` never closes the connection: the core logs its sentence and goes
on. Anything else escaping the core is our bug: the connection task logs it with its
traceback and closes with 1011.
"""

from __future__ import annotations

__all__ = [
    "BadSignature",
    "ConfigError",
    "CryptoError",
    "DroppedMessage",
    "MalformedMessage",
    "NotAllowed",
    "OlafError",
    "ReplayedCounter",
]


class OlafError(Exception):
    """The root of zNeighbourhood's errors."""


class ConfigError(OlafError):
    """A config file or command line that cannot run."""


class CryptoError(OlafError):
    """A key, a Base64 text, a wrapped key or a ciphertext that does not open."""


class DroppedMessage(OlafError):
    """A frame we drop; the message is the reason we log."""


class MalformedMessage(DroppedMessage):
    """Not JSON, not an object, an unknown type, a missing or mistyped field."""


class BadSignature(DroppedMessage):
    """No signature form verifies with the sender's key."""


class ReplayedCounter(DroppedMessage):
    """A counter not above the last one seen from that sender on this connection."""


class NotAllowed(DroppedMessage):
    """A message this connection may not send now (its role, the rate, the size)."""
