"""Who may call the admin RPCs (`ReloadBundle`, and the write RPCs to come).

- With `--admin-token-file`, a caller sends `authorization: Bearer <token>` in the call's
  metadata; the token is compared in constant time.
- With `--admin-client-ca` (which needs TLS), a caller presents a client certificate issued by
  that CA. gRPC's Python server can only require client certificates of every caller, so the
  server then asks every client for one, signed by this CA or by `--tls-client-ca`.
- With neither, admin calls are taken from loopback only.

A call without credentials where some are needed gets UNAUTHENTICATED; credentials that are
presented and wrong get PERMISSION_DENIED.
"""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass
from pathlib import Path

import grpc

from movierec.errors import ConfigError

BEARER = "bearer "


class AdminDenied(Exception):
    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code


def is_loopback_host(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def peer_is_loopback(peer: str) -> bool:
    """gRPC peer strings: 'ipv4:127.0.0.1:5000', 'ipv6:[::1]:5000', 'unix:/path'."""
    kind, _, rest = peer.partition(":")
    if kind == "unix":
        return True
    if kind not in ("ipv4", "ipv6"):
        return False
    return is_loopback_host(rest.rsplit(":", 1)[0])


@dataclass
class AdminAuth:
    token: bytes | None = None
    client_ca: bytes | None = None   # PEM of the CA whose client certificates may call admin RPCs

    @classmethod
    def from_files(cls, token_file: Path | None, client_ca_file: Path | None) -> "AdminAuth":
        token = ca = None
        if token_file is not None:
            if not Path(token_file).is_file():
                raise ConfigError(f"admin token file not found: {token_file}")
            token = Path(token_file).read_bytes().strip()
            if len(token) < 16:
                raise ConfigError(f"{token_file}: an admin token needs at least 16 characters")
        if client_ca_file is not None:
            if not Path(client_ca_file).is_file():
                raise ConfigError(f"admin client CA not found: {client_ca_file}")
            ca = Path(client_ca_file).read_bytes()
        return cls(token, ca)

    @property
    def configured(self) -> bool:
        return self.token is not None or self.client_ca is not None

    def check(self, context) -> None:
        """Raise AdminDenied unless the caller may call admin RPCs."""
        if not self.configured:
            if peer_is_loopback(context.peer()):
                return
            raise AdminDenied(grpc.StatusCode.PERMISSION_DENIED, "admin calls are taken from loopback only "
                              "(the server has no --admin-token-file or --admin-client-ca)")
        presented = False
        header = dict(context.invocation_metadata() or ()).get("authorization", "")
        if self.token is not None and header:
            presented = True
            if header.lower().startswith(BEARER) and hmac.compare_digest(
                    header[len(BEARER):].strip().encode(), self.token):
                return
        if self.client_ca is not None:
            certificates = (context.auth_context() or {}).get("x509_pem_cert", [])
            if certificates:
                presented = True
                if _issued_by(certificates[0], self.client_ca):
                    return
        if presented:
            raise AdminDenied(grpc.StatusCode.PERMISSION_DENIED, "the admin credentials are not valid")
        raise AdminDenied(grpc.StatusCode.UNAUTHENTICATED,
                          "an admin call needs credentials: 'authorization: Bearer <token>' metadata"
                          + (" or a client certificate of the admin CA" if self.client_ca else ""))


def _issued_by(certificate_pem: bytes, ca_pem: bytes) -> bool:
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature

    try:
        certificate = x509.load_pem_x509_certificate(certificate_pem)
        authorities = x509.load_pem_x509_certificates(ca_pem)
    except ValueError:
        return False
    for authority in authorities:
        try:
            certificate.verify_directly_issued_by(authority)
            return True
        except (InvalidSignature, ValueError, TypeError):  # another issuer, or a forged signature
            continue
    return False
