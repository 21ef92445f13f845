"""The optional file transfer of a real ``zcli olaf server --http-port 0``: POST
/api/upload (raw or multipart) answers {"file_url"}, GET of it returns the bytes, a
body over --max-upload is refused with 413 before it is sent, and the WebSocket
endpoint still serves."""

from __future__ import annotations

import json
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


if __name__ == "__main__":
    unittest.main()
