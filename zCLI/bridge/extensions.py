"""What plugins add to the bridge beyond events: hooks and services.

A hook runs when a connection is admitted (``connect``), signs in with a ``login`` or
``auth`` event (``sign_in``), signs out (``sign_out``) and when it ends
(``disconnect``, always, after the connection has left ``bridge.clients``). It gets an
``EventContext`` whose ``request_id`` is None; it may be async. A hook that raises is
logged with the plugin's name and the connection goes on: one plugin's bug does not
cut another's clients. A ``connect`` or ``sign_in`` hook that raises ``RequestError``
turns the connection away instead (the plugin cannot serve it now): zBifrost sends
the error and closes.

A service is ``async def service(bridge)``: a background task the bridge starts once it
listens and cancels (and awaits) when it stops, so no task outlives the bridge. One
that ends by raising is logged.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ..exceptions import RequestError
from ..plugins import Registry

__all__ = ["REFUSING_HOOKS", "PluginExtensions"]

log = logging.getLogger("zCLI.zBifrost")
REFUSING_HOOKS = frozenset({"connect", "sign_in"})


class PluginExtensions:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._services: list[asyncio.Task[None]] = []

    async def run_hooks(self, hook: str, context: Any) -> None:
        """Run every plugin's ``hook``; a ``RequestError`` from a ``connect`` or
        ``sign_in`` hook stops the others and propagates."""
        for plugin, target in self.registry.hooks[hook]:
            try:
                result = target(context)
                if asyncio.iscoroutine(result):
                    await result
            except RequestError:
                if hook not in REFUSING_HOOKS:
                    log.exception("plugin %s: its %s hook failed", plugin, hook)
                    continue
                raise
            except Exception:
                log.exception("plugin %s: its %s hook failed", plugin, hook)

    def start_services(self, bridge: Any) -> None:
        for plugin, service in self.registry.services:
            task = asyncio.create_task(service(bridge), name=f"{plugin} service")
            task.add_done_callback(_log_failure)
            self._services.append(task)

    async def stop_services(self) -> None:
        tasks, self._services = self._services, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("%s ended with an error", task.get_name(), exc_info=task.exception())
