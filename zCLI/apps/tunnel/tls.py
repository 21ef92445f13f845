"""TLS for ``wss://`` links with the standard library's ssl module: the server's
certificate, client verification of the server, mutual TLS, and peer pinning."""

from __future__ import annotations

import re
import ssl
from pathlib import Path

from .config import TunnelConfig

__all__ = ["client_context", "peer_allowed", "pinned_certificates", "server_context"]

_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)


def server_context(config: TunnelConfig) -> ssl.SSLContext | None:
    if not config.secure:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    assert config.tls_bundle is not None  # checked by config.load
    context.load_cert_chain(config.tls_bundle)
    if config.mutual_tls:
        context.verify_mode = ssl.CERT_REQUIRED
        for bundle in (config.ca_bundle, config.peer_bundle):
            if bundle is not None:
                context.load_verify_locations(cafile=str(bundle))
    return context


def client_context(config: TunnelConfig) -> ssl.SSLContext | None:
    if not config.secure:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if config.ca_bundle is not None:
        context.load_verify_locations(cafile=str(config.ca_bundle))
    elif config.peer_bundle is not None:
        context.load_verify_locations(cafile=str(config.peer_bundle))
        context.check_hostname = False  # a pinned certificate is trusted as itself
    else:
        context.load_default_certs()
    if config.mutual_tls and config.tls_bundle is not None:
        context.load_cert_chain(config.tls_bundle)
    return context


def pinned_certificates(bundle: Path | None) -> frozenset[bytes] | None:
    """The DER certificates a peer must present one of, or None for no pinning."""
    if bundle is None:
        return None
    return frozenset(
        ssl.PEM_cert_to_DER_cert(block.decode("ascii"))
        for block in _PEM.findall(bundle.read_bytes())
    )


def peer_allowed(
    ssl_object: ssl.SSLObject | ssl.SSLSocket | None, pinned: frozenset[bytes] | None
) -> bool:
    if pinned is None:
        return True
    if ssl_object is None:
        return False
    certificate = ssl_object.getpeercert(binary_form=True)
    return certificate is not None and certificate in pinned
