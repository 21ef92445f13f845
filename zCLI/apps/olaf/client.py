"""The OLAF terminal client: ``zcli olaf client HOST:PORT``.

``ClientSession`` is the client's logic with no I/O: it builds the frames to send
(signed hello, chat, public_chat) and turns frames received into the lines to print,
decrypting chats and verifying signatures against the keys of the last client list.
``run`` is the adapter: one WebSocket, stdin lines as commands (``list``,
``msg FINGERPRINT... TEXT``, ``public TEXT``), piped stdin included.

Lines it prints::

    connected to HOST:PORT as FINGERPRINT
    online N: FP FP ...                      (every client_list received)
    public from FP: TEXT [verified]
    chat from FP to FP,FP: TEXT [verified]
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from . import crypto
from .exceptions import CryptoError, DroppedMessage, OlafError
from .messages import (
    Chat,
    ClientList,
    ClientListRequest,
    Hello,
    PublicChat,
    Signed,
    parse_frame,
)

__all__ = ["ClientSession", "main"]


class ClientSession:
    def __init__(self, identity: crypto.Identity, data_as_string: bool = False) -> None:
        self.identity = identity
        self.data_as_string = data_as_string
        self.counter = 0
        self.servers: list[tuple[str, tuple[str, ...]]] = []
        self.keys: dict[str, str] = {}  # every fingerprint form -> PEM

    # -- frames out ---------------------------------------------------------------

    def signed(self, body: Hello | Chat | PublicChat) -> str:
        self.counter += 1
        inner = body.to_json()
        data: Any = json.dumps(inner) if self.data_as_string else inner
        signature = crypto.sign(self.identity.key, data, self.counter)
        return json.dumps(Signed(data, self.counter, signature, body).to_json())

    def hello(self) -> str:
        return self.signed(Hello(self.identity.pem))

    @staticmethod
    def client_list_request() -> str:
        return json.dumps(ClientListRequest().to_json())

    def public(self, text: str) -> str:
        return self.signed(PublicChat(self.identity.fingerprint, text))

    def resolve(self, name: str) -> tuple[str, str]:
        """(server address, PEM) of a fingerprint or a unique prefix of one."""
        found = {
            (address, pem)
            for address, pems in self.servers
            for pem in pems
            if any(form.startswith(name) for form in crypto.fingerprint_forms(pem))
        }
        if len(found) != 1:
            why = "no client" if not found else f"{len(found)} clients"
            raise OlafError(f"{why} in the client list match {name!r}.")
        return found.pop()

    def chat(self, recipients: list[str], text: str) -> str:
        targets = [self.resolve(name) for name in recipients]
        iv, keys, sealed = crypto.seal_chat(self.identity, [pem for _, pem in targets], text)
        servers = tuple(dict.fromkeys(address for address, _ in targets))
        return self.signed(Chat(servers, iv, tuple(keys), sealed))

    # -- frames in ----------------------------------------------------------------

    def _verified(self, fingerprint: str, envelope: Signed) -> str:
        pem = self.keys.get(fingerprint)
        if pem is None:
            return "[unknown sender]"
        key = crypto.load_public_key(pem)
        form = crypto.verify(key, envelope.data, envelope.counter, envelope.signature)
        return "[verified]" if form is not None else "[BAD SIGNATURE]"

    def receive(self, text: str) -> list[str]:
        """The lines to print for one frame (none for a frame that is not for us)."""
        frame = parse_frame(text)
        if isinstance(frame, ClientList):
            self.servers = list(frame.servers)
            self.keys = {
                form: pem
                for _, pems in frame.servers
                for pem in pems
                for form in crypto.fingerprint_forms(pem)
            }
            everyone = [crypto.fingerprint(pem) for _, pems in frame.servers for pem in pems]
            return [f"online {len(everyone)}: {' '.join(everyone)}"]
        if not isinstance(frame, Signed):
            return []
        body = frame.body
        if isinstance(body, PublicChat):
            return [
                f"public from {body.sender}: {body.message} {self._verified(body.sender, frame)}"
            ]
        if isinstance(body, Chat):
            try:
                plain = crypto.open_chat(self.identity.key, body.iv, body.symm_keys, body.chat)
                participants = plain["chat"]["participants"]
                message = plain["chat"]["message"]
                sender, others = str(participants[0]), ",".join(map(str, participants[1:]))
            except CryptoError:
                return []  # not for us
            except (KeyError, IndexError, TypeError):
                return ["error: a chat decrypted to an unexpected shape"]
            return [f"chat from {sender} to {others}: {message} {self._verified(sender, frame)}"]
        return []

    def command(self, line: str) -> tuple[list[str], list[str]]:
        """(frames to send, lines to print) for one typed line."""
        words = line.split()
        if not words:
            return [], []
        verb, rest = words[0], line.strip()[len(words[0]) :].strip()
        if verb == "list":
            lines = [f"server {address}" for address, _ in self.servers]
            out = []
            for address, pems in self.servers:
                out.append(f"server {address}: {len(pems)} clients")
                out += [f"  {crypto.fingerprint(pem)}" for pem in pems]
            return [self.client_list_request()], out or lines
        if verb == "public" and rest:
            return [self.public(rest)], []
        if verb == "msg" and len(words) >= 3:
            names = []
            for word in words[1:-1]:
                try:
                    self.resolve(word)
                except OlafError:
                    break
                names.append(word)
            if not names:
                return [], [f"error: {words[1]!r} is no client in the list (try list)"]
            text = line.strip().split(None, len(names) + 1)[-1]
            return [self.chat(names, text)], []
        return [], ["commands: list | msg FINGERPRINT... TEXT | public TEXT"]


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def _session(address: str, identity: crypto.Identity, data_as_string: bool) -> int:
    url = address if "://" in address else f"ws://{address}"
    session = ClientSession(identity, data_as_string)
    async with connect(url, ping_interval=10, max_size=4 * 1024 * 1024) as socket:
        await socket.send(session.hello())
        await socket.send(session.client_list_request())
        _say(f"connected to {address} as {identity.fingerprint}")
        listed = asyncio.Event()

        async def read() -> None:
            async for frame in socket:
                try:
                    lines = session.receive(frame if isinstance(frame, str) else "")
                except DroppedMessage as error:
                    lines = [f"error: dropped a frame from the server: {error}"]
                for line in lines:
                    _say(line)
                if session.servers:
                    listed.set()

        reader = asyncio.create_task(read())
        await asyncio.wait(
            [reader, asyncio.create_task(listed.wait())], return_when="FIRST_COMPLETED"
        )
        while not reader.done():
            line = await asyncio.to_thread(sys.stdin.readline)
            if not line:
                break
            try:
                frames, lines = session.command(line)
            except OlafError as error:
                frames, lines = [], [f"error: {error}"]
            for text in frames:
                await socket.send(text)
            for out in lines:
                _say(out)
        await socket.close()
        reader.cancel()
    return 0


def main(args: Any) -> int:
    logging.getLogger("websockets").setLevel(logging.WARNING)
    try:
        if args.key:
            identity = crypto.Identity.of(crypto.load_or_create_key(Path(args.key)))
        else:
            identity = crypto.Identity.generate()
        return asyncio.run(_session(args.address, identity, args.data_as_string))
    except (OSError, WebSocketException, CryptoError) as error:
        sys.stderr.write(f"zcli olaf client: error: {error}\n")
        return 1
    except ConnectionClosed:
        return 0
    except KeyboardInterrupt:
        return 130
