"""Run ``@divviup/prio3`` 0.8.0 (the JavaScript VDAF draft 08) through ``prio3.mjs`` with Node.

Used by ``tests/test_vdaf_interop.py`` and ``benchmarks/survey_verify.py``. The package is
installed from the pinned ``package-lock.json`` by ``make interop`` (``make test`` does it).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
PACKAGE = HERE / "node_modules" / "@divviup" / "prio3"


def missing() -> str | None:
    """Why the JavaScript oracle cannot run here, or None if it can."""
    if shutil.which("node") is None:
        return "Node.js is not installed (the interop tests need node >= 18)"
    if not PACKAGE.is_dir():
        return f"@divviup/prio3 is not installed in {HERE}: run `make interop`"
    return None


def spec(vdaf) -> dict:
    """The JSON description of an mpcdp Prio3 instance that prio3.mjs rebuilds."""
    circuit = vdaf.flp.circuit
    kind = vdaf.name.removeprefix("Prio3")
    out = {"type": kind, "shares": vdaf.SHARES}
    for key in ("bits", "length", "chunk_length"):
        if hasattr(circuit, key):
            out[key] = getattr(circuit, key)
    return out


def run(request: dict | list, timeout: float = 300) -> dict | list:
    """Send a request (or a list of them, one Node start) to prio3.mjs; return its JSON answer(s)."""
    reason = missing()
    if reason:
        raise RuntimeError(reason)
    done = subprocess.run(
        ["node", str(HERE / "prio3.mjs")],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        cwd=HERE,
        timeout=timeout,
    )
    if done.returncode:
        raise RuntimeError(f"prio3.mjs failed: {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout)


def encode_reports(vdaf, reports) -> list[dict]:
    """mpcdp reports ``(nonce, public_share, input_shares)`` as prio3.mjs's hex JSON."""
    return [
        {
            "nonce": nonce.hex(),
            "public_share": vdaf.encode_public_share(public).hex(),
            "input_shares": [vdaf.encode_input_share(s).hex() for s in shares],
        }
        for nonce, public, shares in reports
    ]
