"""The optional file transfer of a real ``zcli olaf server --http-port 0``: POST
/api/upload (raw or multipart) answers {"file_url"}, GET of it returns the bytes, a
body over --max-upload is refused with 413 before it is sent, and the WebSocket
endpoint still serves. A second server with small bounds: the folder full (507) and
too many requests at once (503)."""

from __future__ import annotations

import json
import socket
import sys
import tempfile
import unittest
from pathlib import Path

import httpx

from zTestSuite import ServerProcess, requires_network, timeout

MAX_UPLOAD = 1000


@requires_network
class TestUpload(unittest.TestCase):
    folder: tempfile.TemporaryDirectory[str]
    server: ServerProcess
    base: str
    http: httpx.Client

    @classmethod
    def setUpClass(cls) -> None:
        cls.folder = tempfile.TemporaryDirectory(prefix="olaf-upload-")
        folder = Path(cls.folder.name)
        command = [sys.executable, "-m", "zCLI", "olaf", "server", "--port", "0"]
        command += ["--key", str(folder / "s.pem"), "--http-port", "0"]
        command += ["--max-upload", str(MAX_UPLOAD)]
        cls.server = ServerProcess(command, cwd=folder)
        cls.server.wait_for("olaf server listening on")
        port = cls.server.wait_for(r"olaf uploads on http://[^:]+:(\d+)/api/upload").group(1)
        cls.base = f"http://127.0.0.1:{port}"
        cls.http = httpx.Client(timeout=timeout(3))

    @classmethod
    def tearDownClass(cls) -> None:
        cls.http.close()
        cls.server.stop()
        cls.folder.cleanup()

    def test_raw_upload_then_download(self) -> None:
        """A raw body comes back byte for byte from the file_url."""
        data = bytes(range(256)) * 3
        reply = self.http.post(f"{self.base}/api/upload", content=data)
        self.assertEqual(reply.status_code, 200)
        self.assertEqual(set(reply.json()), {"file_url"})
        url = reply.json()["file_url"]
        self.assertRegex(url, r"^http://127\.0\.0\.1:\d+/files/[A-Za-z0-9_-]+$")
        got = self.http.get(url)
        self.assertEqual((got.status_code, got.content), (200, data))

    def test_multipart_upload(self) -> None:
        """A multipart/form-data upload stores the file part's bytes."""
        reply = self.http.post(
            f"{self.base}/api/upload", files={"file": ("a.txt", b"hello file", "text/plain")}
        )
        self.assertEqual(reply.status_code, 200)
        self.assertEqual(self.http.get(reply.json()["file_url"]).content, b"hello file")

    def test_over_the_limit_is_413(self) -> None:
        """A body over --max-upload gets 413 and a sentence naming the limit."""
        reply = self.http.post(f"{self.base}/api/upload", content=b"x" * (MAX_UPLOAD + 1))
        self.assertEqual(reply.status_code, 413)
        self.assertEqual(
            reply.json(),
            {"error": f"the file is {MAX_UPLOAD + 1} bytes, over the limit of {MAX_UPLOAD}."},
        )

    def test_unknown_file_is_404(self) -> None:
        """GET of a file never uploaded, or a path outside /files/, is 404."""
        for path in ("/files/nope", "/files/../s.pem", "/elsewhere"):
            with self.subTest(path=path):
                self.assertEqual(self.http.get(f"{self.base}{path}").status_code, 404)

    def test_reply_is_json(self) -> None:
        """The upload reply is application/json."""
        reply = self.http.post(f"{self.base}/api/upload", content=b"x")
        self.assertEqual(reply.headers["content-type"], "application/json")
        self.assertIsInstance(json.loads(reply.text)["file_url"], str)


@requires_network
class TestUploadBounds(unittest.TestCase):
    """A server of its own per test: --max-upload-total 2500 and
    --max-upload-connections 2, with uploads of 1000."""

    def setUp(self) -> None:
        folder = tempfile.TemporaryDirectory(prefix="olaf-upload-bounds-")
        self.addCleanup(folder.cleanup)
        path = Path(folder.name)
        command = [sys.executable, "-m", "zCLI", "olaf", "server", "--port", "0"]
        command += ["--key", str(path / "s.pem"), "--http-port", "0"]
        command += ["--max-upload", str(MAX_UPLOAD), "--max-upload-total", "2500"]
        command += ["--max-upload-connections", "2"]
        server = ServerProcess(command, cwd=path)
        self.addCleanup(server.stop)
        server.wait_for("olaf server listening on")
        port = server.wait_for(r"olaf uploads on http://[^:]+:(\d+)/api/upload").group(1)
        self.port = int(port)
        self.http = httpx.Client(timeout=timeout(3))
        self.addCleanup(self.http.close)

    def upload(self, data: bytes) -> httpx.Response:
        return self.http.post(f"http://127.0.0.1:{self.port}/api/upload", content=data)

    def test_a_full_folder_refuses_with_507_and_keeps_what_it_holds(self) -> None:
        """Two uploads of 1000 fit in 2500; the third gets 507 with the sentence, the
        first two are still served, and a smaller one still fits."""
        urls = [self.upload(bytes([n]) * MAX_UPLOAD).json()["file_url"] for n in (1, 2)]
        refused = self.upload(b"3" * MAX_UPLOAD)
        self.assertEqual(
            (refused.status_code, refused.json()),
            (507, {"error": "the upload store holds 2000 of its 2500 bytes; a file of 1000 "
                            "bytes does not fit."}),
        )  # fmt: skip
        for n, url in zip((1, 2), urls, strict=True):
            self.assertEqual(self.http.get(url).content, bytes([n]) * MAX_UPLOAD)
        self.assertEqual(self.upload(b"4" * 500).status_code, 200)

    def test_past_the_connections_a_request_gets_503_at_once(self) -> None:
        """Two connections that stall in their request head hold both places: a third
        gets 503 and the sentence without sending anything; once they go, uploads work."""
        stalled = []
        for _ in range(2):
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=timeout(2))
            self.addCleanup(sock.close)
            sock.sendall(b"POST /api/upload HTTP/1.1\r\nContent-Le")
            stalled.append(sock)
        # connections are handled in the order they came: the two count before the third
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout(2)) as third:
            reply = _read_all(third)
        body = b'{"error": "the upload server is busy; try again in a moment."}'
        self.assertEqual(
            reply,
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n"
            b"Access-Control-Allow-Origin: *\r\nConnection: close\r\n\r\n" + body,
        )
        for sock in stalled:
            sock.close()
        self.assertEqual(self.upload(b"5" * 10).status_code, 200)


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


if __name__ == "__main__":
    unittest.main()
