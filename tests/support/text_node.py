"""Shared test helpers."""

from __future__ import annotations

import grpc

from services.tls import CA_CERT


def tls_channel(port: int, key: bytes, chain: bytes, roots: bytes, server_name: str = "scribe") -> grpc.Channel:
    credentials = grpc.ssl_channel_credentials(root_certificates=roots, private_key=key, certificate_chain=chain)
    return grpc.secure_channel(
        f"127.0.0.1:{port}", credentials, options=[("grpc.ssl_target_name_override", server_name)]
    )


def member_channel(port: int, certs, name: str = "analyst") -> grpc.Channel:
    """A channel as federation member ``name``, verifying the server is the node ``scribe``."""
    return tls_channel(
        port, (certs / f"{name}.key").read_bytes(), (certs / f"{name}.pem").read_bytes(), (certs / CA_CERT).read_bytes()
    )
