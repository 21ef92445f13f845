"""zServer: static files, the JSON API and sign-in over HTTP, on real sockets.

Every test talks to a zServer listening on port 0 with a real client: ``http.client``
for well-formed requests, a raw socket for malformed or slow ones, and a real
``python -m zCLI serve`` process where the property belongs to the process (file
descriptors). Servers under test get small timeouts so that none waits long.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import io
import json
import os
import re
import select
import socket
import struct
import sys
import time
import unittest
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zCLI import ConfigError, __version__, zCLI
from zCLI.http_messages import status_for
from zTestSuite import REPO_ROOT, requires_network, timeout, zTestCase
from zTestSuite.bridge import AuthTestCase
from zTestSuite.process import ServerProcess

SERVER = f"zServer/{__version__}"
JSON = "application/json; charset=utf-8"
PAGE_POLICY = (
    "default-src 'self'; connect-src 'self' ws://127.0.0.1:0; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


@dataclass(frozen=True)
class Reply:
    """One HTTP reply: status, headers in a canonical order without Date, body."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    @classmethod
    def parse(cls, raw: bytes) -> Reply:
        head, _, body = raw.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        fields = [(name, value) for name, _, value in (line.partition(": ") for line in lines)]
        return cls.of(int(status_line.split(" ")[1]), fields, body)

    @classmethod
    def of(cls, status: int, fields: list[tuple[str, str]], body: bytes) -> Reply:
        """Drop the one Date header (a reply without it is wrong), sort the rest."""
        if [name for name, _ in fields].count("Date") != 1:
            raise AssertionError(f"expected one Date header in {fields}")
        return cls(status, tuple(sorted(field for field in fields if field[0] != "Date")), body)

    def header(self, name: str) -> str | None:
        return dict(self.headers).get(name)


def json_reply(status: int, payload: Any, *extra: tuple[str, str]) -> Reply:
    """The reply zServer sends for a JSON answer or error (the API's headers)."""
    body = json.dumps(payload).encode()
    headers = [
        ("Cache-Control", "no-store"),
        ("Content-Length", str(len(body))),
        ("Content-Type", JSON),
        ("Server", SERVER),
        ("X-Content-Type-Options", "nosniff"),
        *extra,
    ]
    return Reply(status, tuple(sorted(headers)), body)


def error(status: int, code: str, message: str, *extra: tuple[str, str]) -> Reply:
    return json_reply(status, {"error": message, "code": code}, *extra)


NOT_FOUND_REPLY = error(404, "not_found", "There is no such file.")
ZUI = "Main:\n  ~Root*: [^Ping]\n  ^Ping: Pong!\n"


class ServerTestCase(zTestCase):
    """A workspace with an app, zServers on port 0 that stop at cleanup, HTTP helpers."""

    def setUp(self) -> None:
        super().setUp()
        self.write("zUI.app.yaml", ZUI)

    def make(self, auth: dict[str, Any] | None = None, **http: Any) -> zCLI:
        """A zCLI whose zServer is enabled on port 0 (not started); roomy timeouts."""
        roomy = {"idle_timeout": timeout(1), "header_timeout": timeout(1)}
        z = zCLI(
            {
                "zWorkspace": str(self.workspace),
                "zVaFile": "@.zUI.app",
                "websocket": {"port": 0, "require_auth": False},
                "http_server": {"enabled": True, "port": 0, **roomy, **http},
                "auth": auth or {},
            }
        )
        self.addCleanup(z.close)
        return z

    def serve(self, **http: Any) -> zCLI:
        z = self.make(**http)
        z.server.start()
        self.addCleanup(z.server.stop)
        self.z = z
        return z

    def connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.z.server.port), timeout=timeout(2))
        self.addCleanup(sock.close)
        return sock

    def exchange(self, data: bytes) -> Reply:
        """Send raw bytes, read the reply to the end, parse it."""
        sock = self.connect()
        sock.sendall(data)
        return Reply.parse(read_all(sock))

    def request(self, method: str, path: str) -> Reply:
        return fetch(self.z.server.port, method, path)

    def get(self, path: str) -> Reply:
        return fetch(self.z.server.port, "GET", path)

    def login(self, body: bytes, **headers: str) -> Reply:
        head = f"POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
        head += "".join(f"{name.replace('_', '-')}: {value}\r\n" for name, value in headers.items())
        return self.exchange(head.encode() + b"\r\n" + body)


def fetch(port: int, method: str, path: str, units: float = 2) -> Reply:
    """One request with http.client, the path sent as written (no normalising)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout(units))
    try:
        connection.request(method, path)
        answer = connection.getresponse()
        return Reply.of(answer.status, answer.getheaders(), answer.read())
    finally:
        connection.close()


def read_all(sock: socket.socket) -> bytes:
    """Everything the peer sends until it closes (a reset after its reply counts too)."""
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


# --- what may be published -------------------------------------------------------------


@requires_network
class TestStaticFiles(ServerTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.write("site/index.html", "<h1>home</h1>")
        self.write("site/app.js", "export const x = 1;")
        self.write("site/empty/.keep", "")
        self.write("secret.txt", "top secret")
        (self.workspace / "site/link").symlink_to(self.workspace / "secret.txt")
        self.write("site/sub/page.txt", "sub")
        (self.workspace / "site/sub/index.html").symlink_to(self.workspace / "secret.txt")
        self.serve(serve_path="site")

    def test_files_and_types(self) -> None:
        """Files are served with their content types; / serves index.html."""
        home, script = self.get("/"), self.get("/app.js")
        self.assertEqual(
            (home.status, home.header("Content-Type"), home.body),
            (200, "text/html; charset=utf-8", b"<h1>home</h1>"),
        )
        self.assertEqual(
            (script.status, script.header("Content-Type"), script.body),
            (200, "text/javascript; charset=utf-8", b"export const x = 1;"),
        )
        client = self.get("/zbifrost.js")
        self.assertEqual(
            (client.status, client.header("Content-Type")), (200, "text/javascript; charset=utf-8")
        )
        self.assertIn(b"export function connect(url, options = {})", client.body)

    def test_traversal_and_listing_are_refused(self) -> None:
        """.., encoded .., symlinks out of the root (an index.html too) and folders get 404."""
        for path in (
            "/../secret.txt",
            "/%2e%2e/secret.txt",
            "/%2E%2E%2Fsecret.txt",
            "/empty/..%2f..%2fsecret.txt",
            "/link",
            "/sub/",
            "/sub",
            "/empty/",
            "/empty",
            "/nope.html",
            "/%00",
            "/..\\secret.txt",
        ):
            with self.subTest(path=path):
                self.assertEqual(self.get(path), NOT_FOUND_REPLY)

    def test_health_and_config(self) -> None:
        """/health and /api/config answer JSON."""
        self.assertEqual(
            self.get("/health"), json_reply(200, {"status": "ok", "version": __version__})
        )
        self.assertEqual(
            self.get("/api/config"),
            json_reply(200, {"websocket": "ws://127.0.0.1:0", "require_auth": False}),
        )


@requires_network
class TestPrivateFiles(ServerTestCase):
    def test_private_files_are_never_served(self) -> None:
        """Dotfiles, app files, code, databases and state files are 404 even under serve_path."""
        z = self.make(serve_path="site", auth={"users_file": str(self.workspace / "people.yaml")})
        z.auth.add_user("ada", "s3cret", "admin")  # writes the secret, users and revocations
        site = self.workspace / "site"
        names = [
            ".env",
            ".git/config",
            "zcli.yaml",
            "ZCLI.YAML",
            "zUI.app.yaml",
            "plugin.py",
            "plugin.pyc",
            "__pycache__/plugin.cpython-311.pyc",
            "data.sqlite3",
            "data.sqlite",
            "data.db",
            "data.db-wal",
            "data.sqlite3-shm",
            "data.sqlite3-journal",
        ]
        for name in names:
            self.write(f"site/{name}", "private")
        self.write("site/ok.txt", "public")
        (site / "people").symlink_to(self.workspace / "people.yaml")  # the users file
        os.link(self.workspace / "people.yaml", site / "copy.txt")  # a hard link to it
        (site / "state").symlink_to(z.state_dir)
        (site / "secret.txt").symlink_to(z.state_dir / "secret")
        (site / "hidden.txt").symlink_to(site / ".env")  # a public name for a dotfile
        z.server.start()
        self.addCleanup(z.server.stop)
        self.z = z
        self.assertEqual(self.get("/ok.txt").body, b"public")
        for name in [*names, "people", "copy.txt", "state/secret", "secret.txt", "hidden.txt"]:
            with self.subTest(name=name):
                self.assertEqual(self.get(f"/{name}"), NOT_FOUND_REPLY)

    def test_an_app_folder_publishes_only_public(self) -> None:
        """By default only <workspace>/public is served: zcli.yaml and .zcli stay private."""
        self.write("zcli.yaml", "logger: WARNING\n")
        self.write("public/index.html", "<p>hi</p>")
        self.write("notes.txt", "not public")
        z = self.serve()
        z.auth.add_user("ada", "s3cret", "admin")
        self.assertEqual(self.get("/").body, b"<p>hi</p>")
        for path in ("/zcli.yaml", "/notes.txt", "/.zcli/secret", "/public/index.html"):
            with self.subTest(path=path):
                self.assertEqual(self.get(path), NOT_FOUND_REPLY)

    def test_missing_serve_folder_serves_only_builtin_routes(self) -> None:
        """Without the serve folder the built-in routes answer and every file is 404."""
        self.serve(serve_path="nowhere")
        self.assertEqual(self.get("/health").status, 200)
        self.assertEqual(self.get("/zbifrost.js").status, 200)
        self.assertEqual(self.get("/"), NOT_FOUND_REPLY)


class TestServeRoot(ServerTestCase):
    def test_unsafe_serve_paths_are_refused(self) -> None:
        """A serve_path that exposes the workspace or the state folder is a ConfigError."""
        workspace = self.workspace.resolve()
        (workspace / "site").mkdir()
        (workspace / "mirror").symlink_to(workspace)
        table = [
            ({"serve_path": "."}, workspace, "is the workspace"),
            ({"serve_path": "mirror"}, workspace, "is the workspace"),
            ({"serve_path": ".."}, workspace.parent, f"holds the workspace {workspace}"),
            ({"serve_path": "/"}, Path("/"), f"holds the workspace {workspace}"),
            ({"serve_path": ".zcli"}, workspace / ".zcli", "is the state folder"),
            (
                {"serve_path": ".zcli/www"},
                workspace / ".zcli/www",
                f"is inside the state folder {workspace / '.zcli'}",
            ),
            (
                {"serve_path": "site", "state_dir": "site/.state"},
                workspace / "site",
                f"holds the state folder {workspace / 'site/.state'}",
            ),
        ]
        for settings, root, problem in table:
            with self.subTest(**settings):
                http = {"serve_path": settings["serve_path"]}
                spark = {"state_dir": settings["state_dir"]} if "state_dir" in settings else {}
                z = zCLI(
                    {
                        "zWorkspace": str(self.workspace),
                        "zVaFile": "@.zUI.app",
                        "http_server": {"enabled": True, "port": 0, **http},
                        **spark,
                    }
                )
                with self.assertRaises(ConfigError) as caught:
                    z.server  # noqa: B018 (building zServer is what is tested)
                self.assertEqual(
                    caught.exception.problems,
                    [
                        f"http_server.serve_path: {root} {problem}; zServer would publish "
                        "private files, so serve a folder of public files such as 'public'"
                    ],
                )


# --- sign-in requests: framing, JSON, fields, statuses ------------------------------------


@requires_network
class TestSignIn(ServerTestCase):
    def setUp(self) -> None:
        super().setUp()
        z = self.serve(header_timeout=0.5, auth={"max_failed_logins": 2})
        z.auth.add_user("ada", "s3cret", "admin")

    def test_bad_sign_in_bodies(self) -> None:
        """Wrong passwords, bad JSON and fields that are not strings get a JSON error."""
        bad_json = "The body is not valid JSON."
        nesting = "The body nests deeper than 32 levels."
        table = [
            (
                b'{"username": "ada", "password": "x"}',
                401,
                "unauthorized",
                "Unknown user or wrong password.",
            ),
            (b"not json", 400, "invalid_json", bad_json),
            (b"\xff\xfe{}", 400, "invalid_json", "The body is not UTF-8 text."),
            (b"[1]", 400, "invalid_json", "The body must be a JSON object."),
            (b'{"username": NaN, "password": "x"}', 400, "invalid_json", bad_json),
            (b'{"username": "ada", "password": Infinity}', 400, "invalid_json", bad_json),
            (b'{"username": "ada", "password": -Infinity}', 400, "invalid_json", bad_json),
            (b'{"username": "ada", "password": 1e999}', 400, "invalid_json", bad_json),
            (b'{"username": 1' + b"0" * 5000 + b"}", 400, "invalid_json", bad_json),
            (b"[" * 60000, 400, "invalid_json", nesting),
            (b'{"a":' * 10000, 400, "invalid_json", nesting),
            (b'{"password": "s3cret"}', 400, "invalid_message", "The body lacks 'username'."),
            (
                b'{"username": 1, "password": "s3cret"}',
                400,
                "invalid_message",
                "The field 'username' must be a string.",
            ),
            (
                b'{"username": "ada", "password": ["s3cret"]}',
                400,
                "invalid_message",
                "The field 'password' must be a string.",
            ),
        ]
        for body, status, code, message in table:
            with self.subTest(body=body[:40]):
                self.assertEqual(self.login(body), error(status, code, message))

    def test_body_framing_is_strict(self) -> None:
        """Bad Content-Length values and any Transfer-Encoding are 400, unread."""
        head = "POST /api/login HTTP/1.1\r\nHost: x\r\n"
        length = "The Content-Length header must be a whole number of bytes."
        table = [
            ("Content-Length: -1\r\n", length),
            ("Content-Length: abc\r\n", length),
            ("Content-Length: +5\r\n", length),
            ("Content-Length: 5, 5\r\n", length),
            ("Content-Length: \u00b2\r\n", length),  # "²": str.isdigit() says yes
            (
                "Content-Length: 5\r\nContent-Length: 5\r\n",
                "The request has 2 Content-Length headers.",
            ),
            (
                "Transfer-Encoding: chunked\r\n",
                "zServer does not accept Transfer-Encoding; send a Content-Length.",
            ),
            (
                "Transfer-Encoding: identity\r\nContent-Length: 2\r\n",
                "zServer does not accept Transfer-Encoding; send a Content-Length.",
            ),
            ("", "This request needs a Content-Length header and a body."),
        ]
        for fields, message in table:
            with self.subTest(fields=fields):
                data = (head + fields + "\r\n").encode("latin-1") + b'{"username": "ada"}'
                self.assertEqual(self.exchange(data), error(400, "bad_request", message))

    def test_body_over_max_body_is_refused_unread(self) -> None:
        """A Content-Length over max_body is 413 at once, before any body byte is sent."""
        for value in ("65537", "9" * 40, "0" * 5000 + "65537"):
            with self.subTest(length=value):
                data = f"POST /api/login HTTP/1.1\r\nContent-Length: {value}\r\n\r\n".encode()
                self.assertEqual(
                    self.exchange(data),
                    error(413, "too_large", "The body is larger than 65536 bytes."),
                )

    def test_short_body_times_out(self) -> None:
        """A body shorter than its Content-Length is answered 408 at header_timeout."""
        data = b"POST /api/login HTTP/1.1\r\nContent-Length: 100\r\n\r\n" + b'{"user'
        self.assertEqual(
            self.exchange(data),
            error(408, "timeout", "The request did not arrive within 0.5 seconds."),
        )

    def test_rate_limited_sign_in_is_429(self) -> None:
        """Past max_failed_logins an account's sign-in is 429 rate_limited."""
        wrong = b'{"username": "ada", "password": "wrong"}'
        self.assertEqual([self.login(wrong).status for _ in range(2)], [401, 401])
        reply = self.login(wrong)
        message = json.loads(reply.body)["error"]
        self.assertRegex(message, r"^Too many failed sign-ins for this account; try again in ")
        self.assertEqual(reply, error(429, "rate_limited", message))

    def test_sign_in_and_out(self) -> None:
        """A sign-in answers a token; signing out with it answers 'Signed out.'."""
        reply = self.login(b'{"username": "ada", "password": "s3cret"}')
        token = json.loads(reply.body)["token"]
        self.assertEqual(reply, json_reply(200, {"token": token, "user": "ada", "role": "admin"}))
        data = f"POST /api/logout HTTP/1.1\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
        self.assertEqual(self.exchange(data), json_reply(200, {"message": "Signed out."}))
        self.assertEqual(
            self.exchange(data), error(401, "unauthorized", "The token has been revoked.")
        )


class TestStatuses(unittest.TestCase):
    def test_request_errors_map_to_statuses(self) -> None:
        """zAuth's codes become HTTP statuses: 401, 429, 503, and 400 for the rest."""
        table = {
            "unauthorized": 401,
            "rate_limited": 429,
            "storage_error": 503,
            "invalid_message": 400,
        }
        for code, status in table.items():
            with self.subTest(code=code):
                self.assertEqual(status_for(code), status)


class TestHttpSignIn(AuthTestCase):
    @requires_network
    async def test_login_token_opens_the_bridge(self) -> None:
        """POST /api/login returns a JWT the bridge accepts; /api/logout revokes it."""
        z = await self.start_auth(http_server={"enabled": True, "port": 0})
        z.server.start()
        self.addCleanup(z.server.stop)

        def post(path: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
            connection = http.client.HTTPConnection("127.0.0.1", z.server.port, timeout=timeout(2))
            connection.request("POST", path, body=body, headers=headers)
            reply = connection.getresponse()
            result = reply.status, json.loads(reply.read())
            connection.close()
            return result

        login = b'{"username": "ada", "password": "s3cret"}'
        status, body = await asyncio.to_thread(post, "/api/login", login, {})
        self.assertEqual((status, body["user"], body["role"]), (200, "ada", "admin"))
        ws = await self.connect(z, path=f"/?token={body['token']}")
        self.assertEqual((await self.recv(ws))["data"]["auth"]["user"], "ada")
        bearer = {"Authorization": f"Bearer {body['token']}"}
        self.assertEqual(
            await asyncio.to_thread(post, "/api/logout", b"", bearer),
            (200, {"message": "Signed out."}),
        )
        refused = await self.connect(z, path=f"/?token={body['token']}")
        await self.assertClosed(refused, 1008, "The token has been revoked.")


# --- headers, and JSON for every error -----------------------------------------------------


@requires_network
class TestHeaders(ServerTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.write("public/index.html", "<p>hi</p>")
        self.write("public/app.js", "let x;")
        self.write("public/logo.svg", "<svg/>")
        self.serve()

    def test_pages_carry_a_content_security_policy(self) -> None:
        """HTML and SVG: CSP with the bridge in connect-src, DENY framing, no-cache."""
        for path, body, kind in (
            ("/", b"<p>hi</p>", "text/html; charset=utf-8"),
            ("/logo.svg", b"<svg/>", "image/svg+xml"),
        ):
            with self.subTest(path=path):
                headers = [
                    ("Cache-Control", "no-cache"),
                    ("Content-Length", str(len(body))),
                    ("Content-Security-Policy", PAGE_POLICY),
                    ("Content-Type", kind),
                    ("Server", SERVER),
                    ("X-Content-Type-Options", "nosniff"),
                    ("X-Frame-Options", "DENY"),
                ]
                self.assertEqual(self.get(path), Reply(200, tuple(sorted(headers)), body))

    def test_files_are_no_cache_and_head_has_no_body(self) -> None:
        """Other files: nosniff and no-cache; HEAD answers the same headers, no body."""
        headers = (
            ("Cache-Control", "no-cache"),
            ("Content-Length", "6"),
            ("Content-Type", "text/javascript; charset=utf-8"),
            ("Server", SERVER),
            ("X-Content-Type-Options", "nosniff"),
        )
        self.assertEqual(self.get("/app.js"), Reply(200, headers, b"let x;"))
        self.assertEqual(self.request("HEAD", "/app.js"), Reply(200, headers, b""))

    def test_protocol_errors_answer_json(self) -> None:
        """Errors the stdlib parser finds, and other methods, answer JSON with our headers."""

        def not_allowed(method: str, allow: str) -> Reply:
            message = f"This path does not accept {method}."
            return error(405, "method_not_allowed", message, ("Allow", allow))

        bad = error(400, "bad_request", "The request is malformed.")
        head_too_large = "The request head is larger than 65536 bytes."
        table = [
            (
                b"FOO / HTTP/1.0\r\n\r\n",
                error(501, "not_implemented", "zServer does not implement the method 'FOO'."),
            ),
            (b"PUT / HTTP/1.0\r\n\r\n", not_allowed("PUT", "GET, HEAD")),
            (b"POST /health HTTP/1.0\r\n\r\n", not_allowed("POST", "GET, HEAD")),
            (b"GET /api/login HTTP/1.0\r\n\r\n", not_allowed("GET", "POST")),
            (b"DELETE /api/logout HTTP/1.0\r\n\r\n", not_allowed("DELETE", "POST")),
            (
                b"GET /" + b"a" * 9000 + b" HTTP/1.0\r\n\r\n",
                error(414, "uri_too_long", "The request line is longer than 8192 bytes."),
            ),
            (
                b"GET / HTTP/1.0\r\nX: " + b"a" * 70000 + b"\r\n\r\n",
                error(431, "headers_too_large", head_too_large),
            ),
            (
                b"GET / HTTP/1.0\r\n" + b"X: 1\r\n" * 101 + b"\r\n",
                error(431, "headers_too_large", "The request has more than 100 headers."),
            ),
            (
                b"GET / HTTP/9.9\r\n\r\n",
                error(505, "http_version", "zServer speaks HTTP/1.0 and HTTP/1.1 only."),
            ),
            (b"GET / HTTP/x\r\n\r\n", bad),
            (b"GET / / HTTP/1.0\r\n\r\n", bad),
            (b"GET\r\n\r\n", bad),
            (b"GET index.html HTTP/1.0\r\n\r\n", bad),
            (b"GET /nope HTTP/1.0\r\n\r\n", NOT_FOUND_REPLY),
        ]
        for data, expected in table:
            with self.subTest(request=data[:30]):
                self.assertEqual(self.exchange(data), expected)

    def test_header_bound_is_configurable(self) -> None:
        """http_server.max_header_bytes bounds the request head: over it is 431."""
        self.serve(max_header_bytes=100)
        self.assertEqual(
            self.exchange(b"GET / HTTP/1.0\r\nX: " + b"a" * 100 + b"\r\n\r\n"),
            error(431, "headers_too_large", "The request head is larger than 100 bytes."),
        )
        self.assertEqual(self.exchange(b"GET /health HTTP/1.0\r\nX: 1\r\n\r\n").status, 200)

    def test_demo_pages_have_no_inline_code(self) -> None:
        """The demo pages keep scripts and styles in files, which the CSP allows."""
        inline = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>|<style|\son[a-z]+=|style=", re.I)
        for page in sorted(REPO_ROOT.glob("demos/*/public/*.html")):
            with self.subTest(page=page.parent.parent.name):
                self.assertEqual(inline.findall(page.read_text(encoding="utf-8")), [])


# --- slow, idle, too many and vanishing clients ----------------------------------------------


@requires_network
class TestSlowClients(ServerTestCase):
    def test_idle_connection_is_closed(self) -> None:
        """A connection that sends nothing is closed, without a reply, at idle_timeout."""
        self.serve(idle_timeout=0.3)
        started = time.monotonic()
        sock = self.connect()
        self.assertEqual(read_all(sock), b"")
        elapsed = time.monotonic() - started
        self.assertGreaterEqual(elapsed, 0.25)
        self.assertLess(elapsed, 0.3 + timeout(1))

    def test_trickled_head_is_cut_at_the_deadline(self) -> None:
        """A head trickled a byte at a time is answered 408 at header_timeout from its start."""
        self.serve(header_timeout=0.5, idle_timeout=timeout(2))
        sock = self.connect()
        started = time.monotonic()
        sock.sendall(b"GET / HTTP/1.1\r\nX-Slow: ")
        give_up = started + 0.5 + timeout(1)
        while not select.select([sock], [], [], 0.02)[0]:  # a byte each 20 ms until it answers
            if time.monotonic() > give_up:
                self.fail("the trickled request was never cut")
            sock.sendall(b"a")
        elapsed = time.monotonic() - started
        self.assertEqual(
            Reply.parse(read_all(sock)),
            error(408, "timeout", "The request did not arrive within 0.5 seconds."),
        )
        self.assertGreaterEqual(elapsed, 0.45)
        self.assertLess(elapsed, 0.5 + timeout(1))

    def test_connections_over_the_cap_are_refused_busy(self) -> None:
        """Past max_connections a connection is answered 503 busy at once, and logged."""
        z = self.serve(max_connections=2, idle_timeout=timeout(5), header_timeout=timeout(5))
        held = [self.connect(), self.connect()]
        self.look_until(lambda: z.server.active_connections == 2, "two connections held")
        with self.assertLogs("zCLI.zServer", "WARNING") as logs:
            started = time.monotonic()
            refused = self.connect()
            reply = Reply.parse(read_all(refused))
            elapsed = time.monotonic() - started
        self.assertEqual(
            reply,
            error(503, "busy", "The server is busy; try again in a moment.", ("Retry-After", "1")),
        )
        self.assertLess(elapsed, timeout(1))
        address = f"127.0.0.1:{refused.getsockname()[1]}"
        self.assertEqual(
            [record.getMessage() for record in logs.records],
            [f"zServer refused 1 connection(s) over max_connections (2), the last from {address}"],
        )
        self.assertEqual(z.server.active_connections, 2)
        held.pop().close()
        self.look_until(lambda: z.server.active_connections == 1, "a held connection ended")
        self.assertEqual(self.get("/health").status, 200)

    def test_client_faults_log_no_traceback(self) -> None:
        """A reset mid-request or mid-reply is a debug line naming the client, no traceback."""
        big = self.workspace / "public/big.bin"
        big.parent.mkdir()
        with big.open("wb") as file:
            file.truncate(64 * 1024 * 1024)  # sparse: more than socket buffers can take
        z = self.serve()
        table = [
            (b"GET / HTTP/1.1\r\nX-Half: ", "mid-request"),
            (b"GET /big.bin HTTP/1.0\r\n\r\n", "mid-reply"),
        ]
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr), self.assertLogs("zCLI.zServer", "DEBUG") as logs:
            for request, when in table:
                with self.subTest(when=when):
                    sock = self.connect()
                    sock.sendall(request)
                    if when == "mid-reply":
                        sock.recv(1)  # the reply has started
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    prefix = f"zServer: 127.0.0.1:{sock.getsockname()[1]}: the client went away "
                    sock.close()  # an RST, not a FIN

                    def lines(prefix: str = prefix) -> list[str]:
                        return [r.getMessage() for r in logs.records if prefix in r.getMessage()]

                    self.look_until(lambda: bool(lines()), f"a line starting {prefix!r}")
                    self.assertEqual(len(lines()), 1)
                    self.assertTrue(lines()[0].startswith(prefix + when + " ("), lines())
            self.look_until(lambda: z.server.active_connections == 0, "connections ended")
        self.assertEqual(stderr.getvalue(), "")
        self.assertEqual([r.getMessage() for r in logs.records if r.exc_info], [])


@requires_network
class TestProcessLimits(zTestCase):
    """`python -m zCLI serve` with RLIMIT_NOFILE lowered: descriptors are the process's."""

    def serve_limited(self, limit: int, **http: str) -> tuple[ServerProcess, int, str]:
        """The app served by a real process allowed ``limit`` descriptors; http_server
        keys come through the environment. Returns it, zServer's port, the bridge URL."""
        self.write("zUI.app.yaml", ZUI)
        self.write("zcli.yaml", "websocket:\n  require_auth: false\n")
        launcher = (
            "import os, resource, sys; "
            f"resource.setrlimit(resource.RLIMIT_NOFILE, ({limit}, {limit})); "
            "os.execv(sys.executable, [sys.executable, '-m', 'zCLI', *sys.argv[1:]])"
        )
        env = {f"ZCLI_HTTP_SERVER_{key.upper()}": value for key, value in http.items()}
        app = ServerProcess(
            [sys.executable, "-c", launcher, "serve", str(self.workspace)]
            + ["--ws-port", "0", "--http-port", "0"],
            env={**env, "PYTHONPATH": str(REPO_ROOT)},
        )
        self.addCleanup(app.stop)
        bridge = app.wait_for(r"^zBifrost listening on (ws://\S+)$").group(1)
        port = int(app.wait_for(r"^zServer listening on http://127\.0\.0\.1:(\d+)/$").group(1))
        return app, port, bridge

    def slow_connections(self, port: int, count: int) -> list[socket.socket]:
        """``count`` connections that each send half a request head and stall."""
        opened = []
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=timeout(2))
            self.addCleanup(sock.close)
            sock.sendall(b"GET / HTTP/1.1\r\nX-Slow: ")
            opened.append(sock)
        return opened

    def assertQuietLog(self, app: ServerProcess, report: str, elapsed: float) -> None:
        """No traceback, and lines containing ``report``: at least one, at most one a second."""
        output = "\n".join(app.lines)
        self.assertNotIn("Traceback", output)
        reports = [line for line in app.lines if report in line]
        self.assertGreaterEqual(len(reports), 1, output)
        self.assertLessEqual(len(reports), elapsed + 1, output)

    def test_slow_connections_leave_the_bridge_its_descriptors(self) -> None:
        """Past max_connections slow clients get 503 at once; the bridge still shakes hands."""
        from websockets.sync.client import connect

        started = time.monotonic()
        app, port, bridge = self.serve_limited(64, max_connections="16", header_timeout="30")
        held, *refused = [self.slow_connections(port, 16), *self.slow_connections(port, 44)]
        busy = error(
            503, "busy", "The server is busy; try again in a moment.", ("Retry-After", "1")
        )
        for sock in refused:
            self.assertEqual(Reply.parse(read_all(sock)), busy)
        with connect(bridge, open_timeout=timeout(2)) as ws:
            info = json.loads(ws.recv(timeout=timeout(2)))
        self.assertEqual(info["event"], "connection_info")
        self.assertEqual(fetch(port, "GET", "/health", units=5), busy)
        for sock in held:
            self.assertEqual(select.select([sock], [], [], 0)[0], [])  # still held, unanswered
            sock.close()
        healthy = json_reply(200, {"status": "ok", "version": __version__})
        # the server counts a closed connection out when its read sees the EOF: until then
        # /health may still be refused, so look until it is served
        self.look_until(lambda: fetch(port, "GET", "/health") == healthy, "/health", units=5)
        self.assertEqual(app.stop(), 0)
        self.assertQuietLog(app, "over max_connections (16)", time.monotonic() - started)

    def test_out_of_descriptors_is_logged_sparingly_and_serving_resumes(self) -> None:
        """Out of descriptors: a line a second at most, no traceback, /health again later."""
        started = time.monotonic()
        app, port, _bridge = self.serve_limited(64, header_timeout="0.5", idle_timeout="0.5")
        self.slow_connections(port, 80)  # more than the process can hold: the rest queue
        app.wait_for(  # the first report comes at once, with the count of failures
            r"^WARNING zCLI\.zServer: zServer cannot accept connections \(EMFILE: Too many "
            r"open files\); \d+ accept\(\) call\(s\) failed since the last report$",
            units=5,
        )
        self.assertEqual(
            fetch(port, "GET", "/health", units=5),
            json_reply(200, {"status": "ok", "version": __version__}),
        )
        self.assertEqual(app.stop(), 0)
        self.assertQuietLog(app, "cannot accept connections", time.monotonic() - started)
