"""Performing the dispatcher's effects for one request of one WebSocket client.

``run_until_wait`` advances a dispatch while its effects need no waiting (display
events are sent at once), so most keys finish in the reader with no task. ``drive``
performs the rest: prompts become input_request/input_response round trips, plugin
calls run (sync ones in a worker thread, their display events handed back to the
loop so they still precede the result).
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..context import FuncContext, call_error, call_sync
from ..dispatch import Ask, Call, Effect, Emit, Outcome, Steps
from ..display import Display, DisplayEvent
from ..exceptions import InputClosed
from .client import Client

__all__ = ["INPUT_TIMEOUT", "drive", "run_until_wait"]

INPUT_TIMEOUT = 300.0


def run_until_wait(steps: Steps, client: Client, rid: Any) -> Outcome | Effect:
    """Advance ``steps`` while its effects need no waiting (sending display events)."""
    while True:
        try:
            effect = next(steps)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        if not isinstance(effect, Emit):
            return effect
        client.send({**effect.event.to_json(), "_requestId": rid})


async def drive(
    steps: Steps, client: Client, rid: Any, zcli: Any, effect: Effect | None = None
) -> Outcome:
    """Perform the effects of one request, starting with ``effect`` when the
    generator has already produced one."""
    loop = asyncio.get_running_loop()

    def sink(event: DisplayEvent) -> None:  # display events from any thread
        payload = {**event.to_json(), "_requestId": rid}
        loop.call_soon_threadsafe(client.send, payload)

    assert client.session is not None  # the bridge dispatches only for a zUI app
    context = FuncContext(Display(sink), client.session, zcli)
    reply: Any = None
    error: BaseException | None = None
    while True:
        if effect is None:
            try:
                effect = steps.throw(error) if error is not None else steps.send(reply)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
        reply, error = None, None
        if isinstance(effect, Emit):
            client.send({**effect.event.to_json(), "_requestId": rid})
        elif isinstance(effect, Ask):
            reply = await _ask(client, effect, rid)
        elif isinstance(effect, Call):
            try:
                reply = await _call(effect, context)
            except Exception as exc:
                error = call_error(effect, exc)
        else:
            raise AssertionError(f"unknown effect {effect!r}")
        effect = None


async def _call(call: Call, context: FuncContext) -> Any:
    if call.function.is_async:
        kwargs = dict(call.kwargs)
        if call.function.wants_ctx:
            kwargs["ctx"] = context
        return await call.function.target(*call.args, **kwargs)
    return await asyncio.to_thread(call_sync, call, context)


async def _ask(client: Client, ask: Ask, rid: Any) -> str | None:
    input_id = client.new_input_id()
    future: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
    client.inputs[input_id] = future
    client.send(
        {
            "event": "input_request",
            "requestId": input_id,
            "field": ask.field,
            "prompt": ask.prompt,
            "type": ask.kind,
            "_requestId": rid,
        }
    )
    try:
        return await asyncio.wait_for(future, INPUT_TIMEOUT)
    except TimeoutError:
        raise InputClosed(f"No answer came within {INPUT_TIMEOUT:g} seconds.") from None
    finally:
        client.inputs.pop(input_id, None)
