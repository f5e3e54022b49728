"""API keys: ``Authorization: Bearer KEY`` or ``x-api-key: KEY``.

Every ``/v1/...`` route and ``/metrics`` need a key when keys are configured; ``/health``
and the static web page do not (load balancers probe ``/health`` without credentials).
"""

from __future__ import annotations

import hmac
from typing import Iterable


class KeyChecker:
    """Constant-time comparison against the configured keys.

    Example:
        >>> KeyChecker(["s3cret"]).allowed({"authorization": "Bearer s3cret"})
        True
    """

    def __init__(self, keys: Iterable[str]) -> None:
        self._keys = [k.encode() for k in keys if k]

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def allowed(self, headers: dict[str, str]) -> bool:
        """Whether the request's headers (lower-case names) carry a valid key."""
        if not self._keys:
            return True
        given = headers.get("x-api-key", "")
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            given = token.strip()
        if not given:
            return False
        candidate = given.encode()
        ok = False
        for key in self._keys:  # compare with all of them: the time says nothing about which one matched
            ok |= hmac.compare_digest(candidate, key)
        return ok


def needs_key(path: str) -> bool:
    """Paths behind the API key: the API and the metrics."""
    return path.startswith("/v1/") or path == "/v1" or path == "/metrics"
