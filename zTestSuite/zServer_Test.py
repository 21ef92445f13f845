"""zServer: static files, the JSON API and sign-in over HTTP, on real sockets."""

from __future__ import annotations

import asyncio
import json

from zCLI import __version__, zCLI
from zTestSuite import requires_network, timeout
from zTestSuite.bridge import AuthTestCase, BridgeTestCase


class TestHttpSignIn(AuthTestCase):
    async def post(self, z: zCLI, path: str, body: bytes, headers: dict | None = None):
        import urllib.error
        import urllib.request

        def call():
            request = urllib.request.Request(
                f"{z.server.url}{path.lstrip('/')}", data=body, headers=headers or {}, method="POST"
            )
            try:
                with urllib.request.urlopen(request, timeout=timeout(2)) as reply:
                    return reply.status, json.loads(reply.read())
            except urllib.error.HTTPError as error:
                return error.code, json.loads(error.read())

        return await asyncio.to_thread(call)

    @requires_network
    async def test_login_and_logout_over_http(self) -> None:
        """POST /api/login returns a JWT the bridge accepts; /api/logout revokes it."""
        z = await self.start_auth(http_server={"enabled": True, "port": 0})
        z.server.start()
        self.addCleanup(z.server.stop)
        status, body = await self.post(
            z, "/api/login", b'{"username": "ada", "password": "s3cret"}'
        )
        self.assertEqual((status, body["user"], body["role"]), (200, "ada", "admin"))
        ws = await self.connect(z, path=f"/?token={body['token']}")
        self.assertEqual((await self.recv(ws))["data"]["auth"]["user"], "ada")
        self.assertEqual(
            await self.post(z, "/api/logout", b"", {"Authorization": f"Bearer {body['token']}"}),
            (200, {"message": "Signed out."}),
        )
        refused = await self.connect(z, path=f"/?token={body['token']}")
        await self.assertClosed(refused, 1008, "The token has been revoked.")

    @requires_network
    async def test_bad_sign_in_requests(self) -> None:
        """Wrong passwords and bad bodies get a JSON error with a code."""
        z = await self.start_auth(http_server={"enabled": True, "port": 0})
        z.server.start()
        self.addCleanup(z.server.stop)
        table = [
            (
                b'{"username": "ada", "password": "x"}',
                401,
                {"error": "Unknown user or wrong password.", "code": "unauthorized"},
            ),
            (b"not json", 400, {"error": "The body is not valid JSON.", "code": "invalid_json"}),
            (b"[1]", 400, {"error": "The body must be a JSON object.", "code": "invalid_json"}),
        ]
        for body, status, reply in table:
            with self.subTest(body=body):
                self.assertEqual(await self.post(z, "/api/login", body), (status, reply))


class TestzServerFiles(BridgeTestCase):
    async def asyncSetUp(self) -> None:
        await super().asyncSetUp()
        self.write("site/index.html", "<h1>home</h1>")
        self.write("site/app.js", "export const x = 1;")
        self.write("site/empty/.keep", "")
        self.write("secret.txt", "top secret")
        (self.workspace / "site/link").symlink_to(self.workspace / "secret.txt")
        self.z = self.make(http_server={"enabled": True, "port": 0, "serve_path": "site"})
        self.z.server.start()
        self.addCleanup(self.z.server.stop)

    async def get(self, path: str) -> tuple[int, str, bytes]:
        import http.client

        def call():
            connection = http.client.HTTPConnection(
                "127.0.0.1", self.z.server.port, timeout=timeout(2)
            )
            connection.request("GET", path)  # sent as written: no client-side normalising
            reply = connection.getresponse()
            result = reply.status, reply.getheader("Content-Type") or "", reply.read()
            connection.close()
            return result

        return await asyncio.to_thread(call)

    @requires_network
    async def test_files_and_types(self) -> None:
        """Files are served with their content types; / serves index.html."""
        self.assertEqual(await self.get("/"), (200, "text/html; charset=utf-8", b"<h1>home</h1>"))
        self.assertEqual(
            await self.get("/app.js"),
            (200, "text/javascript; charset=utf-8", b"export const x = 1;"),
        )
        status, kind, body = await self.get("/zbifrost.js")
        self.assertEqual((status, kind), (200, "text/javascript; charset=utf-8"))
        self.assertIn(b"export function connect(url, options = {})", body)

    @requires_network
    async def test_traversal_and_listing_are_refused(self) -> None:
        """.., encoded .., symlinks out of the root and folders all get 404."""
        not_found = (
            404,
            "application/json; charset=utf-8",
            b'{"error": "There is no such file.", "code": "not_found"}',
        )
        for path in (
            "/../secret.txt",
            "/%2e%2e/secret.txt",
            "/%2E%2E%2Fsecret.txt",
            "/empty/..%2f..%2fsecret.txt",
            "/link",
            "/empty/",
            "/empty",
            "/nope.html",
            "/%00",
            "/..\\secret.txt",
        ):
            with self.subTest(path=path):
                self.assertEqual(await self.get(path), not_found)

    @requires_network
    async def test_health_and_config(self) -> None:
        """/health and /api/config answer JSON."""
        self.assertEqual(
            await self.get("/health"),
            (
                200,
                "application/json; charset=utf-8",
                json.dumps({"status": "ok", "version": __version__}).encode(),
            ),
        )
        status, _kind, body = await self.get("/api/config")
        self.assertEqual(
            (status, json.loads(body)),
            (200, {"websocket": "ws://127.0.0.1:0", "require_auth": False}),
        )
