"""OLAF cryptography with the spec's parameters, all through ``cryptography``.

RSA 2048 (e = 65537) keys; signatures RSA-PSS with SHA-256, MGF1-SHA-256 and a 32-byte
salt; key wrap RSA-OAEP-SHA256; chat bodies AES-GCM with a 16-byte IV and the 16-byte
tag appended to the ciphertext; fingerprints Base64(SHA-256(SPKI PEM)).

Running implementations disagree on which bytes they sign, so ``verify`` tries every
form in ``SIGNATURE_FORMS`` and says which one matched: the caller logs it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .exceptions import CryptoError

__all__ = [
    "SIGNATURE_FORMS",
    "Identity",
    "aes_decrypt",
    "aes_encrypt",
    "b64d",
    "b64e",
    "fingerprint",
    "fingerprint_forms",
    "load_or_create_key",
    "load_public_key",
    "open_chat",
    "public_pem",
    "seal_chat",
    "sign",
    "sign_form",
    "signed_bytes",
    "unwrap_key",
    "verify",
    "wrap_key",
]

SALT = 32
IV_BYTES = 16
AES_KEY_BYTES = 32
_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=SALT)
_PSS_ANY = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO)
_OAEP = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)

# The byte forms peers sign, in the order ``verify`` tries them.
SIGNATURE_FORMS = ("data-string", "json-default", "json-compact", "sorted-envelope")


def b64e(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def b64d(text: str) -> bytes:
    """Base64 (standard or URL-safe, padding optional); CryptoError when it is not."""
    if not isinstance(text, str):
        raise CryptoError(f"expected a Base64 string, got {type(text).__name__}.")
    cleaned = text.strip().replace("-", "+").replace("_", "/")
    cleaned += "=" * (-len(cleaned) % 4)
    try:
        return base64.b64decode(cleaned, validate=True)
    except (binascii.Error, ValueError) as error:
        raise CryptoError(f"the text is not Base64 ({error}).") from None


def public_pem(key: rsa.RSAPublicKey) -> str:
    """The SPKI PEM of a public key, as we send it in hello."""
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def load_public_key(pem: str | bytes) -> rsa.RSAPublicKey:
    """An RSA public key from PEM (SPKI or PKCS#1); CryptoError otherwise."""
    data = pem.encode("utf-8") if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as error:
        raise CryptoError(f"the public key is not a PEM RSA key ({error}).") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise CryptoError(f"the public key is {type(key).__name__}, not RSA.")
    return key


def fingerprint(pem: str) -> str:
    """Base64(SHA-256(PEM)) of the SPKI PEM text (the v1.2 form, which we send)."""
    return b64e(hashlib.sha256(pem.encode("utf-8")).digest())


def fingerprint_forms(pem: str) -> set[str]:
    """Every fingerprint a peer may use for this key: Base64 and hex of SHA-256, over
    the PEM as the peer sent it and as we export it (line endings differ)."""
    texts = {pem, pem.strip(), pem.strip() + "\n"}
    try:
        texts.add(public_pem(load_public_key(pem)))
    except CryptoError:
        pass
    forms: set[str] = set()
    for text in texts:
        digest = hashlib.sha256(text.encode("utf-8")).digest()
        forms.update({b64e(digest), digest.hex(), digest.hex().upper()})
    return forms


def signed_bytes(data: Any, counter: int, form: str) -> bytes:
    """The bytes a peer signs under ``form`` (see SIGNATURE_FORMS)."""
    if form == "data-string":
        if not isinstance(data, str):
            raise CryptoError("the data-string form needs the data as a string.")
        return (data + str(counter)).encode("utf-8")
    value = json.loads(data) if isinstance(data, str) else data
    if form == "json-default":
        return (json.dumps(value) + str(counter)).encode("utf-8")
    if form == "json-compact":
        return (json.dumps(value, separators=(",", ":")) + str(counter)).encode("utf-8")
    if form == "sorted-envelope":
        envelope = {"data": value, "counter": counter}
        return json.dumps(envelope, separators=(",", ":"), sort_keys=True).encode("utf-8")
    raise CryptoError(f"unknown signature form {form!r}.")


def sign(key: rsa.RSAPrivateKey, data: Any, counter: int) -> str:
    """The spec's signature: over the data string (or ``json.dumps`` of the object)
    followed by the decimal counter, PSS salt 32, Base64."""
    form = "data-string" if isinstance(data, str) else "json-default"
    return b64e(key.sign(signed_bytes(data, counter, form), _PSS, hashes.SHA256()))


def verify(key: rsa.RSAPublicKey, data: Any, counter: int, signature: str) -> str | None:
    """The name of the first form under which ``signature`` verifies, or None."""
    try:
        raw = b64d(signature)
    except CryptoError:
        return None
    for form in SIGNATURE_FORMS:
        if form == "data-string" and not isinstance(data, str):
            continue
        try:
            message = signed_bytes(data, counter, form)
        except (CryptoError, ValueError):
            continue
        try:
            key.verify(raw, message, _PSS_ANY, hashes.SHA256())
        except InvalidSignature:
            continue
        return form
    return None


def sign_form(key: rsa.RSAPrivateKey, data: Any, counter: int, form: str) -> str:
    """A signature in one of the other peers' forms (tests and interop checks)."""
    salt = padding.PSS.MAX_LENGTH if form == "sorted-envelope" else SALT
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=salt)
    return b64e(key.sign(signed_bytes(data, counter, form), pss, hashes.SHA256()))


def wrap_key(public: rsa.RSAPublicKey, secret: bytes) -> str:
    return b64e(public.encrypt(secret, _OAEP))


def unwrap_key(private: rsa.RSAPrivateKey, wrapped: str) -> bytes:
    try:
        return private.decrypt(b64d(wrapped), _OAEP)
    except ValueError as error:
        raise CryptoError(f"the wrapped key does not open with this key ({error}).") from None


def aes_encrypt(key: bytes, plaintext: bytes) -> tuple[bytes, bytes]:
    """(iv, ciphertext with the tag appended)."""
    iv = os.urandom(IV_BYTES)
    return iv, AESGCM(key).encrypt(iv, plaintext, None)


def aes_decrypt(key: bytes, iv: bytes, sealed: bytes) -> bytes:
    try:
        return AESGCM(key).decrypt(iv, sealed, None)
    except (InvalidTag, ValueError) as error:
        raise CryptoError(f"the chat does not decrypt ({type(error).__name__}).") from None


def load_or_create_key(path: Path) -> rsa.RSAPrivateKey:
    """The private key at ``path`` (PEM, PKCS#8 or PKCS#1); when the file does not
    exist, a new 2048-bit key written there (mode 0600) with its public key beside it
    (``<name>.pub.pem``) for the other servers' admins."""
    if path.exists():
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (ValueError, TypeError) as error:
            raise CryptoError(f"{path} is not a PEM private key ({error}).") from None
        if not isinstance(key, rsa.RSAPrivateKey):
            raise CryptoError(f"{path} holds a {type(key).__name__}, not an RSA key.")
        return key
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    public_path(path).write_text(public_pem(key.public_key()), encoding="ascii")
    return key


def public_path(path: Path) -> Path:
    """Where the public key of the private key at ``path`` is written."""
    stem = path.name[:-4] if path.name.endswith(".pem") else path.name
    return path.with_name(stem + ".pub.pem")


@dataclass(frozen=True)
class Identity:
    """A private key with its public PEM and fingerprint, computed once."""

    key: rsa.RSAPrivateKey
    pem: str
    fingerprint: str

    @classmethod
    def of(cls, key: rsa.RSAPrivateKey) -> Identity:
        pem = public_pem(key.public_key())
        return cls(key, pem, fingerprint(pem))

    @classmethod
    def generate(cls) -> Identity:
        return cls.of(rsa.generate_private_key(public_exponent=65537, key_size=2048))


def seal_chat(
    sender: Identity, recipients: Iterable[str], message: str
) -> tuple[str, list[str], str]:
    """Encrypt a chat for recipients (their PEMs): (iv, symm_keys, chat), all Base64.
    The plaintext is ``{"chat": {"participants": [sender, recipients...], "message"}}``
    with fingerprints."""
    pems = list(recipients)
    secret = AESGCM.generate_key(bit_length=AES_KEY_BYTES * 8)
    participants = [sender.fingerprint, *map(fingerprint, pems)]
    body = {"chat": {"participants": participants, "message": message}}
    iv, sealed = aes_encrypt(secret, json.dumps(body).encode("utf-8"))
    keys = [wrap_key(load_public_key(pem), secret) for pem in pems]
    return b64e(iv), keys, b64e(sealed)


def open_chat(me: rsa.RSAPrivateKey, iv: str, symm_keys: Iterable[str], chat: str) -> Any:
    """The decrypted plaintext object, trying each wrapped key; CryptoError if none is ours."""
    iv_raw, sealed = b64d(iv), b64d(chat)
    for wrapped in symm_keys:
        try:
            secret = unwrap_key(me, wrapped)
        except CryptoError:
            continue
        try:
            return json.loads(aes_decrypt(secret, iv_raw, sealed))
        except ValueError as error:
            raise CryptoError(f"the chat plaintext is not JSON ({error}).") from None
    raise CryptoError("no wrapped key in the chat opens with our key.")
