"""API keys (``Authorization: Bearer KEY`` or ``x-api-key: KEY``), and the checks that keep web pages out.

Every ``/v1/...`` and ``/v2/...`` route, ``/mcp``, ``/metrics`` and ``/openapi.json`` need a key when keys
are configured; ``/health`` and the static web page do not (load balancers probe ``/health`` without
credentials). ``/identity`` needs none either: the resident server proves there that it is the one
``serve --detach`` registered (``identity_proof``), before a client sends it a key.

A browser can be turned against a server on the user's own machine: DNS rebinding lets a web page
read a keyless loopback server under the page's own host name, and a cross-site form can POST to
it without a preflight. So a keyless server answers only loopback (or configured) ``Host`` names,
and no server takes a state-changing request that a browser marks as cross-site.
"""

from __future__ import annotations

import hmac
from typing import Iterable
from urllib.parse import urlsplit

from .config import is_loopback

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


class KeyChecker:
    """Constant-time comparison against the configured keys.

    Example:
        >>> KeyChecker(["s3cret"]).allowed({"authorization": "Bearer s3cret"})
        True
    """

    def __init__(self, keys: Iterable[str]) -> None:
        self._keys = [k.encode("utf-8") for k in keys if k]

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def allowed(self, headers: dict[str, str]) -> bool:
        """Whether the request's headers (lower-case names, values decoded as latin-1, the way the
        ASGI server hands them over) carry a valid key; keys are compared as UTF-8 bytes."""
        if not self._keys:
            return True
        given = headers.get("x-api-key", "")
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            given = token.strip()
        if not given:
            return False
        candidate = given.encode("latin-1", errors="replace")  # the header's own bytes
        ok = False
        for key in self._keys:  # compare with all of them: the time says nothing about which one matched
            ok |= hmac.compare_digest(candidate, key)
        return ok


def identity_proof(secret: str, nonce: str) -> str:
    """HMAC-SHA256 of a client's ``nonce`` under the resident server's registration secret (hex): only the
    server started with ``secret`` can answer it, and the secret itself never crosses the wire."""
    return hmac.new(secret.encode(), b"vlsearch identity " + nonce.encode(), "sha256").hexdigest()


def needs_key(path: str) -> bool:
    """Paths behind the API key: the API (``/v1/``, ``/v2/rerank``), MCP, the metrics and the API's schema."""
    return path.startswith(("/v1/", "/v2/", "/mcp")) or path in ("/v1", "/v2", "/metrics", "/openapi.json")


def host_name(host: str) -> str:
    """The name in a ``Host`` header (or an origin's netloc), without port or IPv6 brackets."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def is_loopback_name(name: str) -> bool:
    return name.endswith(".localhost") or is_loopback(name)


def refusal(method: str, headers: dict[str, str], keyed: bool,
            allowed_hosts: frozenset[str]) -> tuple[str, str] | None:
    """(code, reason) when a request looks browser-borne and unsafe, else None (module docstring)."""
    host = headers.get("host", "").strip().lower()

    def allowed(netloc: str) -> bool:
        return netloc in allowed_hosts or host_name(netloc) in allowed_hosts

    if not keyed and not (is_loopback_name(host_name(host)) or allowed(host)):
        return "host_not_allowed", (f"host {host[:100]!r} is not served: without an API key the server answers "
                                    "loopback names only (start it with --allow-host NAME, or with an API key)")
    if method.upper() in SAFE_METHODS:
        return None
    if headers.get("sec-fetch-site", "").strip().lower() in ("cross-site", "same-site"):
        return "cross_site", "a request from another site is refused (Sec-Fetch-Site)"
    origin = headers.get("origin")
    if origin is not None:
        netloc = urlsplit(origin.strip()).netloc.lower()
        if not netloc or (netloc != host and not allowed(netloc)):
            return "cross_site", f"a request from another origin is refused (Origin {origin[:100]!r})"
    return None
