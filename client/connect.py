"""A channel to a movierec server, plaintext or TLS (with a client certificate for mutual TLS)."""

from __future__ import annotations

from pathlib import Path

import grpc

from movierec.errors import ConfigError


def channel(target: str, tls_ca: Path | None = None, tls_cert: Path | None = None,
            tls_key: Path | None = None) -> grpc.Channel:
    if not (tls_ca or tls_cert):
        return grpc.insecure_channel(target)
    if bool(tls_cert) != bool(tls_key):
        raise ConfigError("--tls-cert and --tls-key go together")
    for path in (tls_ca, tls_cert, tls_key):
        if path is not None and not Path(path).is_file():
            raise ConfigError(f"TLS file not found: {path}")
    credentials = grpc.ssl_channel_credentials(
        root_certificates=Path(tls_ca).read_bytes() if tls_ca else None,
        private_key=Path(tls_key).read_bytes() if tls_key else None,
        certificate_chain=Path(tls_cert).read_bytes() if tls_cert else None)
    return grpc.secure_channel(target, credentials)
