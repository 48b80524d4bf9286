"""Channels to a movierec server: plaintext or TLS (with a client certificate for mutual TLS),
retrying UNAVAILABLE calls with backoff, so a client rides out a server restart.

Other callers can use the same gRPC service config (`SERVICE_CONFIG`, printed in the README)
with their own gRPC library.
"""

from __future__ import annotations

import json
from pathlib import Path

import grpc

from movierec.errors import ConfigError

RETRY_POLICY = {
    "maxAttempts": 5,
    "initialBackoff": "0.2s",
    "maxBackoff": "2s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE"],
}
SERVICE_CONFIG = json.dumps({"methodConfig": [{
    "name": [{"service": "movierec.v1.Recommender"}, {"service": "grpc.health.v1.Health"}],
    "retryPolicy": RETRY_POLICY,
}]})
OPTIONS = (("grpc.enable_retries", 1), ("grpc.service_config", SERVICE_CONFIG))


def _credentials(tls_ca: Path | None, tls_cert: Path | None, tls_key: Path | None):
    if bool(tls_cert) != bool(tls_key):
        raise ConfigError("--tls-cert and --tls-key go together")
    for path in (tls_ca, tls_cert, tls_key):
        if path is not None and not Path(path).is_file():
            raise ConfigError(f"TLS file not found: {path}")
    return grpc.ssl_channel_credentials(
        root_certificates=Path(tls_ca).read_bytes() if tls_ca else None,
        private_key=Path(tls_key).read_bytes() if tls_key else None,
        certificate_chain=Path(tls_cert).read_bytes() if tls_cert else None)


def channel(target: str, tls_ca: Path | None = None, tls_cert: Path | None = None,
            tls_key: Path | None = None, options: tuple = ()) -> grpc.Channel:
    """A channel that retries UNAVAILABLE; TLS when a CA or a client certificate is given."""
    options = OPTIONS + tuple(options)
    if not (tls_ca or tls_cert):
        return grpc.insecure_channel(target, options=options)
    return grpc.secure_channel(target, _credentials(tls_ca, tls_cert, tls_key), options=options)


def aio_channel(target: str, options: tuple = ()) -> grpc.aio.Channel:
    """The asyncio twin of `channel`, plaintext, for the load generator."""
    return grpc.aio.insecure_channel(target, options=OPTIONS + tuple(options))


def admin_metadata(token_file: Path | None) -> tuple:
    """The call metadata that authenticates an admin call with the server's bearer token."""
    if token_file is None:
        return ()
    if not Path(token_file).is_file():
        raise ConfigError(f"admin token file not found: {token_file}")
    return (("authorization", f"Bearer {Path(token_file).read_text().strip()}"),)
