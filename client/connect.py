"""Channels to movierec servers: plaintext or TLS (with a client certificate for mutual TLS),
retrying UNAVAILABLE calls with backoff, so a client rides out a server restart.

A target is one `host:port`, a list of them (`host1:port,host2:port`: replicas), or any gRPC
target such as `dns:///movierec.default.svc:50051` (every address the name resolves to). Calls
are spread over the addresses round robin, each address watched with the health service, so
a replica that goes away stops getting calls and one that comes back gets them again.

Other callers can use the same gRPC service config (`SERVICE_CONFIG`, printed in the README)
with their own gRPC library.
"""

from __future__ import annotations

import json
import socket
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
SERVICE_CONFIG = json.dumps({
    "loadBalancingConfig": [{"round_robin": {}}],
    "healthCheckConfig": {"serviceName": ""},
    "methodConfig": [{
        # Ingest calls are idempotent (by event id, by movie and user id): a retry is safe
        "name": [{"service": "movierec.v1.Recommender"}, {"service": "movierec.v1.Ingest"},
                 {"service": "grpc.health.v1.Health"}],
        "retryPolicy": RETRY_POLICY,
    }],
})
# a replica that comes back is tried again within about 2 s
OPTIONS = (("grpc.enable_retries", 1), ("grpc.service_config", SERVICE_CONFIG),
           ("grpc.initial_reconnect_backoff_ms", 500), ("grpc.max_reconnect_backoff_ms", 2000))
TARGET_HELP = ("host:port of a `movierec serve`; replicas as host:port,host:port; or a gRPC target such as "
               "dns:///name:port (calls go round robin over what it resolves to).")


def resolve_target(target: str) -> str:
    """A gRPC target for one address, a comma-separated list of replicas, or a gRPC target as is."""
    if "," not in target or "://" in target or target.startswith(("ipv4:", "ipv6:", "unix:")):
        return target
    addresses = []
    for entry in filter(None, (part.strip() for part in target.split(","))):
        host, sep, port = entry.rpartition(":")
        if not sep or not port.isdigit():
            raise ConfigError(f"a replica is host:port, not {entry!r}")
        try:
            found = socket.getaddrinfo(host.strip("[]"), int(port), type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise ConfigError(f"cannot resolve {host!r}: {exc.strerror}") from None
        family, *_, address = found[0]
        addresses.append(f"[{address[0]}]:{port}" if family == socket.AF_INET6 else f"{address[0]}:{port}")
    v6 = [a.startswith("[") for a in addresses]
    if any(v6) and not all(v6):
        raise ConfigError("replicas must all be IPv4 or all IPv6 addresses")
    return ("ipv6:" if all(v6) else "ipv4:") + ",".join(addresses)


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
    target = resolve_target(target)
    if not (tls_ca or tls_cert):
        return grpc.insecure_channel(target, options=options)
    return grpc.secure_channel(target, _credentials(tls_ca, tls_cert, tls_key), options=options)


def aio_channel(target: str, options: tuple = ()) -> grpc.aio.Channel:
    """The asyncio twin of `channel`, plaintext, for the load generator."""
    return grpc.aio.insecure_channel(resolve_target(target), options=OPTIONS + tuple(options))


def admin_metadata(token_file: Path | None) -> tuple:
    """The call metadata that authenticates an admin call with the server's bearer token."""
    if token_file is None:
        return ()
    if not Path(token_file).is_file():
        raise ConfigError(f"admin token file not found: {token_file}")
    return (("authorization", f"Bearer {Path(token_file).read_text().strip()}"),)
