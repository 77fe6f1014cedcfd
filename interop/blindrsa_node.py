"""Run ``@cloudflare/blindrsa-ts`` 0.4.4 (RFC 9474 blind RSA in JavaScript) through ``blindrsa.mjs``.

Used by ``tests/test_tokens_interop.py`` and ``benchmarks/survey_tokens.py``. The package is installed
from the pinned ``package-lock.json`` by ``make interop`` (``make test`` does it).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from cryptography.hazmat.primitives import serialization

HERE = Path(__file__).resolve().parent
PACKAGE = HERE / "node_modules" / "@cloudflare" / "blindrsa-ts"


def missing() -> str | None:
    """Why the JavaScript implementation cannot run here, or None if it can."""
    if shutil.which("node") is None:
        return "Node.js is not installed (the token interop tests need node >= 20)"
    if not PACKAGE.is_dir():
        return f"@cloudflare/blindrsa-ts is not installed in {HERE}: run `make interop`"
    return None


def spki_hex(public_key) -> str:
    """The rsaEncryption SubjectPublicKeyInfo WebCrypto imports, as hex."""
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo).hex()


def pkcs8_hex(private_key) -> str:
    return private_key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).hex()


def run(requests: list[dict], timeout: float = 300) -> list:
    """Send a list of requests to blindrsa.mjs (one Node start); return its answers."""
    reason = missing()
    if reason:
        raise RuntimeError(reason)
    done = subprocess.run(
        ["node", str(HERE / "blindrsa.mjs")],
        input=json.dumps(requests),
        capture_output=True,
        text=True,
        cwd=HERE,
        timeout=timeout,
    )
    if done.returncode:
        raise RuntimeError(f"blindrsa.mjs failed: {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout)
