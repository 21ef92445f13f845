"""Every error zCLI raises, under one root.

::

    zCLIError
    ├── ConfigError            a zSpark, environment or config-file value is wrong
    ├── PluginError            a plugin failed to import or declared a bad entry
    ├── zUIError               a zUI file is wrong; names file, block, key and line
    ├── RequestError           the caller's fault at run time (an error reply, not a bug)
    │   ├── KeyNotFound        a zKey that the block does not have
    │   ├── ActionFailed       an action refused (a plugin function raised it)
    │   ├── InputClosed        the user typed ``stop`` or input ended during a prompt
    │   └── StorageError       a state file could not be read or written (not done)
    └── StateError             an illegal transition of a state machine (our bug)

A ``RequestError`` carries a machine ``code`` and a one-sentence message that is safe
to send to the client that caused it. Anything that is not a ``zCLIError`` is a bug in
zCLI or in a plugin: it is logged with its traceback and answered with ``internal``.
"""

from __future__ import annotations

__all__ = [
    "ActionFailed",
    "ConfigError",
    "InputClosed",
    "KeyNotFound",
    "PluginError",
    "RequestError",
    "StateError",
    "StorageError",
    "zCLIError",
    "zUIError",
]


class zCLIError(Exception):
    """Root of every error zCLI raises on purpose."""


class ConfigError(zCLIError):
    """One or more configuration values are wrong; ``problems`` lists each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        count = len(self.problems)
        head = "1 configuration problem" if count == 1 else f"{count} configuration problems"
        super().__init__(f"{head}: " + "; ".join(self.problems) + ".")


class PluginError(zCLIError):
    """A plugin could not be registered; the message names the plugin and the entry."""


class zUIError(zCLIError):
    """A zUI file is invalid. The message names the file, block, key and line."""

    def __init__(
        self,
        reason: str,
        *,
        file: str,
        block: str | None = None,
        key: str | None = None,
        line: int | None = None,
    ) -> None:
        self.reason = reason
        self.file = file
        self.block = block
        self.key = key
        self.line = line
        where = file
        if line is not None:
            where += f", line {line}"
        if block is not None:
            where += f", block {block!r}"
        if key is not None:
            where += f", key {key!r}"
        super().__init__(f"{where}: {reason}")


class RequestError(zCLIError):
    """The caller asked for something that cannot be done; safe to tell them."""

    code = "invalid_message"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class KeyNotFound(RequestError):
    """A zKey that the current block does not define."""

    code = "unknown_key"

    def __init__(self, key: str, block: str, file: str) -> None:
        self.key = key
        self.block = block
        self.file = file
        super().__init__(f"Block {block!r} of {file} has no key named {key!r}.")


class ActionFailed(RequestError):
    """An action refused to complete; plugin functions raise it to say why."""

    code = "action_failed"


class InputClosed(RequestError):
    """A prompt was answered with ``stop`` or its input ended."""

    code = "input_closed"

    def __init__(self, message: str = "Input was closed before the prompt was answered.") -> None:
        super().__init__(message)


class StorageError(RequestError):
    """A state file (secret, revocations, users) could not be read or written.

    Raised at start-up (``zcli`` exits 2 with its one line) and at run time, where the
    request that needed the write is answered with this error instead of succeeding.
    """

    code = "storage_error"


class StateError(zCLIError):
    """An event arrived in a state that does not allow it (a bug, not a bad request)."""
