"""A survey's token issuer on disk: its RSA key pair, its public key file and its hashed invitations.

``mpcdp survey invite`` creates the folder (``<survey id>.tokens/`` beside the survey file by default):

- ``issuer.key`` — the issuer's 2048-bit RSA private key (PKCS#8 PEM, owner-only 0600): it mints tokens;
- ``issuer.json`` — the public part, handed to every aggregator with the survey file:
  ``{"survey": id, "public_key": base64url SPKI (RFC 9578, RSASSA-PSS OID), "token_key_id": hex}``;
- ``invitations.db`` — HMAC-SHA-256 of each invitation code, never a code (owner-only SQLite).

An aggregator given ``issuer.json`` admits reports of that survey by token only
(:class:`mpcdp.tokens.admission.SurveyAdmission`).
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mpcdp.survey.definition import Survey
from mpcdp.tokens import Issuer, IssuerPublicKey, SQLiteInvitations, generate_issuer_key
from mpcdp.tokens.admission import SurveyAdmission

ISSUER_KEY = "issuer.key"
ISSUER_PUBLIC = "issuer.json"
INVITATIONS = "invitations.db"


class AdmissionError(ValueError):
    """An issuer folder or public key file that cannot be used (the message says why)."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def from_b64url(text: str) -> bytes:
    """Decode base64url, padding optional; raises ValueError on anything else."""
    if not isinstance(text, str):
        raise ValueError("expected a base64url string")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError):
        raise ValueError("not base64url") from None


def default_tokens_dir(survey_path: str | Path, survey: Survey) -> Path:
    return Path(survey_path).resolve().parent / f"{survey.id}.tokens"


def public_key_document(survey_id: str, key: IssuerPublicKey) -> dict:
    return {"survey": survey_id, "public_key": b64url(key.spki), "token_key_id": key.token_key_id.hex()}


def read_public_key(path: str | Path) -> tuple[str, IssuerPublicKey]:
    """(survey id, issuer public key) from an ``issuer.json``."""
    try:
        doc = json.loads(Path(path).read_text())
        key = IssuerPublicKey.from_spki(from_b64url(doc["public_key"]))
        survey_id = str(doc["survey"])
    except OSError as exc:
        raise AdmissionError(f"cannot read the issuer public key {path}: {exc.strerror}") from None
    except (ValueError, KeyError, TypeError):
        raise AdmissionError(f"{path} is not an issuer public key file (`mpcdp survey invite` writes one)") from None
    if doc.get("token_key_id") not in (None, key.token_key_id.hex()):
        raise AdmissionError(f"{path}: its token_key_id does not match its public key")
    return survey_id, key


def admission_for(survey: Survey, key: IssuerPublicKey) -> SurveyAdmission:
    return SurveyAdmission(key, survey.id, survey.digest, survey.aggregator_names)


class IssuerDir:
    """An issuer folder: the signing key and the invitations of one survey."""

    def __init__(self, path: str | Path, survey: Survey, create: bool = False):
        self.path = Path(path)
        self.survey = survey
        key_path = self.path / ISSUER_KEY
        if not key_path.exists():
            if not create:
                raise AdmissionError(f"{self.path} holds no issuer key: create it with `mpcdp survey invite`")
            self._create(key_path)
        try:
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        except (OSError, ValueError) as exc:
            raise AdmissionError(f"cannot load the issuer key {key_path}: {exc}") from None
        if not isinstance(key, rsa.RSAPrivateKey):
            raise AdmissionError(f"{key_path} is not an RSA key")
        self.issuer = Issuer(key)
        survey_id, public = read_public_key(self.path / ISSUER_PUBLIC)
        if survey_id != survey.id or public.spki != self.issuer.public_key.spki:
            raise AdmissionError(f"{self.path} is the issuer of survey {survey_id!r}, not of {survey.id!r}")
        self.invitations = SQLiteInvitations(self.path / INVITATIONS)

    def _create(self, key_path: Path) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        os.chmod(self.path, 0o700)
        key = generate_issuer_key()
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        document = public_key_document(self.survey.id, IssuerPublicKey(key.public_key()))
        (self.path / ISSUER_PUBLIC).write_text(json.dumps(document, indent=2) + "\n")

    @property
    def admission(self) -> SurveyAdmission:
        return admission_for(self.survey, self.issuer.public_key)
