"""Mutual TLS for every channel of a federation: a private CA, node certificates, gRPC credentials.

``init_certs`` makes one CA and one P-256 key/certificate per node of a
federation file. A node's identity is its certificate's name (common name
and DNS subject-alternative name); clients verify a server against the name
the federation file gives it (``ssl_target_name_override``), not against the
host it happens to listen on, and servers require a client certificate from
the same CA and read the caller's identity from it (:func:`caller`).
"""

from __future__ import annotations

import datetime as dt
import os
import ssl
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_CERT = "ca.pem"
CA_KEY = "ca.key"
VALIDITY = dt.timedelta(days=365)
INSECURE_WARNING = (
    "WARNING: --insecure: channels are plaintext and unauthenticated; anyone on the "
    "network can read shares and impersonate nodes. Use only for local experiments."
)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem_key(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write(path: Path, data: bytes, private: bool = False) -> None:
    if not private:
        path.write_bytes(data)
        return
    # a private key is created owner-only: never readable by others, not even until a chmod
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), 0o600)  # an existing file (--force) keeps its old mode otherwise
        f.write(data)


def make_ca(common_name: str):
    """A self-signed CA key and certificate."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return key, cert


def make_node_cert(ca_key, ca_cert, name: str):
    """A key and a certificate naming ``name``, usable as TLS server and client."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def init_certs(names, out: Path, ca_name: str = "mpcdp federation CA") -> list[Path]:
    """Write ca.pem/ca.key and <name>.pem/<name>.key for every name into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = make_ca(ca_name)
    _write(out / CA_CERT, ca_cert.public_bytes(serialization.Encoding.PEM))
    _write(out / CA_KEY, _pem_key(ca_key), private=True)
    written = [out / CA_CERT, out / CA_KEY]
    for name in names:
        key, cert = make_node_cert(ca_key, ca_cert, name)
        _write(out / f"{name}.pem", cert.public_bytes(serialization.Encoding.PEM))
        _write(out / f"{name}.key", _pem_key(key), private=True)
        written += [out / f"{name}.pem", out / f"{name}.key"]
    return written


@dataclass(frozen=True)
class Identity:
    """A node's TLS material, or plaintext when ``insecure``."""

    name: str
    certs: Path | None
    insecure: bool = False

    def _read(self, filename: str) -> bytes:
        if self.certs is None:
            raise FileNotFoundError(f"{self.name}: no certificate folder given (--certs)")
        path = Path(self.certs) / filename
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise FileNotFoundError(
                f"missing {path}: run `mpcdp certs init` for this federation "
                f"(or pass --insecure for a local experiment)"
            ) from None

    def server_credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(self._read(f"{self.name}.key"), self._read(f"{self.name}.pem"))],
            root_certificates=self._read(CA_CERT),
            require_client_auth=True,
        )

    def channel_credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self._read(CA_CERT),
            private_key=self._read(f"{self.name}.key"),
            certificate_chain=self._read(f"{self.name}.pem"),
        )

    def add_port(self, server, address: str) -> int:
        """Bind ``server`` to ``address`` (port 0: any free port); returns the port."""
        if self.insecure:
            return server.add_insecure_port(address)
        return server.add_secure_port(address, self.server_credentials())

    def link_context(self, server: bool) -> ssl.SSLContext:
        """The TLS context of this node's end of a link (``server``: the end that listens): TLS 1.3 or later,
        this node's certificate and key, and a peer's certificate required and verified against the
        federation's CA alone. Host names are not checked here: who the peer is comes from its certificate
        (:func:`certificate_name`), and the link checks that it is the node it meant to reach."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = ssl.TLSVersion.TLSv1_3
        context.check_hostname = False
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cadata=self._read(CA_CERT).decode())
        self._read(f"{self.name}.key")  # the same clear error as the gRPC credentials for a missing file
        folder = Path(self.certs or ".")
        context.load_cert_chain(folder / f"{self.name}.pem", folder / f"{self.name}.key")
        return context

    def channel(self, address: str, peer: str, options=()) -> grpc.aio.Channel:
        """An aio channel to node ``peer`` at ``address``, verifying its certificate names ``peer``."""
        options = list(options)
        if self.insecure:
            return grpc.aio.insecure_channel(address, options=options)
        return grpc.aio.secure_channel(
            address, self.channel_credentials(), options=options + [("grpc.ssl_target_name_override", peer)]
        )


def caller(context, claimed: str | None = None, insecure: bool = False) -> str:
    """The calling node's name, from its client certificate.

    Without TLS (``insecure``) the caller's ``claimed`` name is taken on trust.
    """
    if insecure:
        return claimed or ""
    auth = context.auth_context() or {}
    names = auth.get("x509_common_name") or []
    return names[0].decode() if names else ""


def certificate_name(connection: ssl.SSLObject | ssl.SSLSocket | None) -> str:
    """The name of a TLS connection's verified peer: its certificate's first common name (the rule of
    :func:`caller`); empty when there is none."""
    cert: dict[str, Any] = (connection.getpeercert() if connection is not None else None) or {}
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return ""


_REFUSED_BY_PEER = "the peer refused this node's certificate"
_HANDSHAKE_REASONS = {  # OpenSSL's reason codes, in words an operator reads
    "PEER_DID_NOT_RETURN_A_CERTIFICATE": "it presented no certificate",
    "WRONG_VERSION_NUMBER": "it does not speak TLS 1.3 (plaintext, or an older TLS version)",
    "UNSUPPORTED_PROTOCOL": "it does not speak TLS 1.3 (an older TLS version)",
    "HTTP_REQUEST": "it sent plaintext HTTP, not TLS",
    "NO_SHARED_CIPHER": "it offered no cipher this node takes",
    "TLSV1_ALERT_UNKNOWN_CA": f"{_REFUSED_BY_PEER}: signed by a CA it does not trust (another federation?)",
    "TLSV1_ALERT_DECRYPT_ERROR": f"{_REFUSED_BY_PEER}: its signature does not verify against the CA it trusts "
    "(another CA of the same name: another federation, or a CA made again?)",
    "SSLV3_ALERT_BAD_CERTIFICATE": f"{_REFUSED_BY_PEER} (bad certificate)",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": f"{_REFUSED_BY_PEER}: it says this node's certificate has expired",
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": f"{_REFUSED_BY_PEER}: it wanted one and got none",
    "UNEXPECTED_EOF_WHILE_READING": "it closed the connection during the handshake",
}


def handshake_failure(exc: BaseException, timeout: float) -> str:
    """Why a TLS handshake failed, in words (the peer's certificate and key never appear): a certificate from
    another CA, an expired one, none, not TLS 1.3, too slow (``timeout`` seconds)..."""
    if isinstance(exc, TimeoutError):
        return f"the handshake was not complete within {timeout:g} s"
    if isinstance(exc, ssl.SSLCertVerificationError):
        why = exc.verify_message or "not verified"
        if exc.verify_code in (19, 20, 21):  # self-signed in chain, unknown issuer, cannot verify the first
            return f"its certificate is not signed by this federation's CA ({why})"
        if exc.verify_code == 7:  # its issuer has our CA's name, but our CA's key did not sign it
            return f"its certificate is not signed by this federation's CA ({why}: another CA of the same name?)"
        if exc.verify_code == 10:
            return "its certificate has expired"
        if exc.verify_code == 9:
            return "its certificate is not valid yet"
        return f"its certificate was refused ({why})"
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or ""
        return _HANDSHAKE_REASONS.get(reason, f"TLS error: {reason.lower().replace('_', ' ') or 'no reason given'}")
    if isinstance(exc, (ConnectionResetError, BrokenPipeError)):
        return "it closed the connection during the handshake"
    return (
        f"the connection failed during the handshake ({exc.strerror or 'no reason given'})"
        if isinstance(exc, OSError)
        else "the handshake failed"
    )


def warn_insecure() -> None:
    print(INSECURE_WARNING, file=sys.stderr)
