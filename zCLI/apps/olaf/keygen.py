"""``zcli olaf keygen FILE``: a server's key pair, made before its neighbours need it.

Writes the private key to FILE (PEM, PKCS#8, mode 0600) and the public key beside it as
``NAME.pub.pem``, the file the admins of neighbour servers configure; prints both paths
and the fingerprint. An existing FILE is kept and only described.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from . import crypto
from .exceptions import CryptoError

__all__ = ["main"]


def main(args: Any) -> int:
    path = Path(args.key)
    existed = path.exists()
    try:
        identity = crypto.Identity.of(crypto.load_or_create_key(path))
    except (CryptoError, OSError) as error:
        sys.stderr.write(f"zcli olaf keygen: error: {error}\n")
        return 2
    public = crypto.public_path(path)
    if not public.exists():
        public.write_text(identity.pem, encoding="ascii")
    state = "kept" if existed else "created"
    print(f"{state} {path}; public key {public}; fingerprint {identity.fingerprint}")
    return 0
