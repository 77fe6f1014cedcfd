"""One secret rebuilt from point -> share bytes, through the library's own path (share_values, rebuild_many,
secrets_from: what the many-party coordinator runs), for tests and attacks written as tests."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from mpcdp.protocol import shamir


def rebuild(shares: Mapping[int, bytes], threshold: int) -> bytes:
    """The secret from ``threshold`` shares (point -> share; extra shares are ignored)."""
    if len(shares) < threshold:
        raise ValueError(f"{len(shares)} shares cannot rebuild a secret that needs {threshold}")
    points = sorted(shares)[:threshold]
    values = shamir.share_values([shares[x] for x in points])
    (secret,) = shamir.secrets_from(shamir.rebuild_many(np.asarray([points]), values[None]))
    if secret is None:
        raise ValueError("the shares do not rebuild a 32-byte secret (inconsistent shares)")
    return secret
