"""OLAF crypto with the spec's parameters: PSS salt 32, OAEP-SHA256, AES-GCM IV 16 with
the tag appended, Base64 SHA-256 fingerprints; every signature form peers use verifies;
a replayed counter is refused and a new connection starts counting again."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import unittest

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from zCLI.apps.olaf import crypto
from zCLI.apps.olaf.core import Log, Send, ServerCore
from zCLI.apps.olaf.exceptions import CryptoError
from zCLI.apps.olaf.messages import Hello, PublicChat, Signed
from zTestSuite import zTestCase

ALICE = crypto.Identity.generate()
BOB = crypto.Identity.generate()
SERVER = crypto.Identity.generate()


def envelope(who: crypto.Identity, body: Hello | PublicChat, counter: int, form: str) -> str:
    """A signed_data frame as a peer signing in ``form`` sends it."""
    inner = body.to_json()
    data = json.dumps(inner) if form == "data-string" else inner
    signature = crypto.sign_form(who.key, data, counter, form)
    return json.dumps(Signed(data, counter, signature, body).to_json())


class TestParameters(zTestCase):
    def test_signature_is_pss_sha256_salt_32_over_data_and_counter(self) -> None:
        """sign() makes a PSS signature with a 32-byte salt over json.dumps(data) + counter."""
        data = {"type": "public_chat", "sender": ALICE.fingerprint, "message": "hi"}
        raw = base64.b64decode(crypto.sign(ALICE.key, data, 7))
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
        message = (json.dumps(data) + "7").encode()
        ALICE.key.public_key().verify(raw, message, pss, hashes.SHA256())
        self.assertEqual(len(raw), 256)

    def test_string_data_is_signed_as_it_is(self) -> None:
        """With v1.2 string data the signed bytes are the string itself then the counter."""
        text = '{"type":"hello","public_key":"x"}'
        raw = base64.b64decode(crypto.sign(ALICE.key, text, 12))
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
        ALICE.key.public_key().verify(raw, (text + "12").encode(), pss, hashes.SHA256())

    def test_fingerprint_is_base64_sha256_of_the_pem(self) -> None:
        """The fingerprint is Base64(SHA-256(SPKI PEM)); the hex form is recognised."""
        digest = hashlib.sha256(ALICE.pem.encode()).digest()
        self.assertEqual(ALICE.fingerprint, base64.b64encode(digest).decode())
        self.assertIn(digest.hex(), crypto.fingerprint_forms(ALICE.pem))
        self.assertIn(ALICE.fingerprint, crypto.fingerprint_forms(ALICE.pem.replace("\n", "\r\n")))

    def test_aes_gcm_iv_16_tag_appended(self) -> None:
        """AES-GCM uses a 16-byte IV and the ciphertext ends with the 16-byte tag."""
        key = bytes(range(32))
        iv, sealed = crypto.aes_encrypt(key, b"secret")
        self.assertEqual((len(iv), len(sealed)), (16, len(b"secret") + 16))
        self.assertEqual(crypto.aes_decrypt(key, iv, sealed), b"secret")
        with self.assertRaisesRegex(CryptoError, "does not decrypt"):
            crypto.aes_decrypt(key, iv, sealed[:-1] + bytes([sealed[-1] ^ 1]))

    def test_oaep_wrap_round_trip(self) -> None:
        """A key wrapped with RSA-OAEP-SHA256 opens with the recipient's key only."""
        wrapped = crypto.wrap_key(BOB.key.public_key(), b"k" * 32)
        self.assertEqual(crypto.unwrap_key(BOB.key, wrapped), b"k" * 32)
        with self.assertRaisesRegex(CryptoError, "does not open"):
            crypto.unwrap_key(ALICE.key, wrapped)

    def test_chat_round_trip(self) -> None:
        """A sealed chat opens for each recipient with participants [sender, recipients]."""
        iv, keys, sealed = crypto.seal_chat(ALICE, [BOB.pem, SERVER.pem], "hello bob")
        expected = {
            "chat": {
                "participants": [ALICE.fingerprint, BOB.fingerprint, SERVER.fingerprint],
                "message": "hello bob",
            }
        }
        self.assertEqual(crypto.open_chat(BOB.key, iv, keys, sealed), expected)
        self.assertEqual(crypto.open_chat(SERVER.key, iv, keys, sealed), expected)
        with self.assertRaisesRegex(CryptoError, "no wrapped key"):
            crypto.open_chat(ALICE.key, iv, keys, sealed)


class TestKeyFiles(zTestCase):
    def test_keygen_writes_the_pair_and_keeps_an_existing_key(self) -> None:
        """``zcli olaf keygen a.pem`` writes a.pem (0600) and a.pub.pem, prints the
        fingerprint, and a second run keeps the key."""
        first = self.zcli("olaf", "keygen", "a.pem")
        self.assertEqual(first.returncode, 0, first.stderr)
        pem = (self.workspace / "a.pub.pem").read_text()
        expected = f"a.pem; public key a.pub.pem; fingerprint {crypto.fingerprint(pem)}\n"
        self.assertEqual(first.stdout, "created " + expected)
        self.assertEqual((self.workspace / "a.pem").stat().st_mode & 0o777, 0o600)
        again = self.zcli("olaf", "keygen", "a.pem")
        self.assertEqual(again.stdout, "kept " + expected)


class TestSignatureForms(zTestCase):
    def test_every_form_verifies_and_is_named(self) -> None:
        """verify() accepts each form peers sign and names the one that matched."""
        data = {"type": "public_chat", "sender": ALICE.fingerprint, "message": "a, b: c"}
        for form in crypto.SIGNATURE_FORMS:
            with self.subTest(form=form):
                signed = json.dumps(data) if form == "data-string" else data
                signature = crypto.sign_form(ALICE.key, signed, 3, form)
                self.assertEqual(crypto.verify(ALICE.key.public_key(), signed, 3, signature), form)

    def test_wrong_key_counter_or_text_fails(self) -> None:
        """A signature does not verify with another key, counter or garbage."""
        data = {"type": "hello", "public_key": ALICE.pem}
        signature = crypto.sign(ALICE.key, data, 1)
        self.assertIsNone(crypto.verify(BOB.key.public_key(), data, 1, signature))
        self.assertIsNone(crypto.verify(ALICE.key.public_key(), data, 2, signature))
        self.assertIsNone(crypto.verify(ALICE.key.public_key(), data, 1, "not base64!"))


class TestCounters(zTestCase):
    """Counters through the core: a hello then public_chats from one client."""

    def setUp(self) -> None:
        super().setUp()
        self.core = ServerCore(SERVER, "127.0.0.1:1")
        self.logs: list[str] = []

    def feed(self, conn: int, text: str) -> list[Send]:
        effects = self.core.received(conn, text, 0.0)
        self.logs += [e.text for e in effects if isinstance(e, Log)]
        return [e for e in effects if isinstance(e, Send)]

    def join(self, conn: int, who: crypto.Identity, counter: int = 1) -> None:
        self.core.connected(conn, 0.0)
        self.feed(conn, envelope(who, Hello(who.pem), counter, "json-default"))

    def test_each_form_accepted_from_a_client_and_logged(self) -> None:
        """A hello signed in any form is accepted and the log names the form."""
        for conn, form in enumerate(crypto.SIGNATURE_FORMS, start=1):
            with self.subTest(form=form):
                self.core.connected(conn, 0.0)
                self.feed(conn, envelope(ALICE, Hello(ALICE.pem), 1, form))
                self.assertIn(f"(signature {form})", self.logs[-1])

    def test_replayed_or_decreasing_counter_refused(self) -> None:
        """The same counter twice, or a smaller one, is dropped with the reason logged."""
        self.join(1, ALICE, counter=5)
        self.join(2, BOB)
        chat = PublicChat(ALICE.fingerprint, "once")
        first = envelope(ALICE, chat, 6, "json-default")
        self.assertEqual(self.feed(1, first), [Send(2, first)])
        self.assertEqual(self.feed(1, first), [])
        self.assertIn("counter 6 is not above 6", self.logs[-1])
        self.assertEqual(self.feed(1, envelope(ALICE, chat, 4, "json-default")), [])
        self.assertIn("counter 4 is not above 6", self.logs[-1])

    def test_new_connection_resets_the_counter(self) -> None:
        """A client that reconnects (a restart) may start its counter again at 1."""
        self.join(1, ALICE, counter=50)
        self.core.closed(1)
        self.join(3, ALICE, counter=1)
        self.assertIn("said hello", self.logs[-1])
        self.join(2, BOB)
        frame = envelope(ALICE, PublicChat(ALICE.fingerprint, "back"), 2, "json-compact")
        self.assertEqual(self.feed(3, frame), [Send(2, frame)])


if __name__ == "__main__":
    logging.basicConfig()
    unittest.main()
