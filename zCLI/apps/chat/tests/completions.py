"""A real local HTTP server that speaks the OpenAI chat-completions API, standing in
for the third-party service the OpenAI-compatible bot asks (plan 002, section 8)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from zTestSuite import timeout

__all__ = ["KEY", "CompletionsServer"]

KEY = "sk-test-123"


class CompletionsServer:
    """A chat-completions server on a free port: it answers "<user> asked: <prompt>",
    or with ``status``/``body`` when set; ``barrier`` holds each request until that
    many are in flight at once; ``hold`` keeps requests until it is set."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.status = 200
        self.body: bytes | None = None
        self.barrier: threading.Barrier | None = None
        self.hold: threading.Event | None = None
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                length = int(self.headers["Content-Length"])
                request = json.loads(self.rfile.read(length))
                owner.requests.append(
                    {
                        "path": self.path,
                        "authorization": self.headers.get("Authorization"),
                        "body": request,
                    }
                )
                if owner.barrier is not None:
                    owner.barrier.wait(timeout(5))
                if owner.hold is not None:
                    owner.hold.wait(timeout(5))
                prompt = request["messages"][-1]["content"]
                answer = {"choices": [{"message": {"role": "assistant", "content": ""}}]}
                answer["choices"][0]["message"]["content"] = f"{request['user']} asked: {prompt}"
                data = owner.body if owner.body is not None else json.dumps(answer).encode()
                self.send_response(owner.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except BrokenPipeError:  # the bot gave up waiting (the timeout test)
                    pass

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self) -> None:
        if self.hold is not None:
            self.hold.set()
        self.server.shutdown()
        self.server.server_close()
