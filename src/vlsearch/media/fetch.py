"""Fetch a URL safely: the only module in vlsearch that touches the network.

Each hop (first URL and every redirect) is checked from scratch: allowed scheme, no
credentials, the host name in ``FetchPolicy.only_hosts`` when that is set, and every
address the host resolves to globally routable (unless ``host:port`` is in
``FetchPolicy.allow_hosts``).  The socket then goes to the
checked IP itself, with no second DNS lookup, so DNS rebinding cannot slip in.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import quote, urljoin, urlsplit

from ..errors import FetchError

__all__ = ["FetchPolicy", "check_url", "fetch_url"]

_DEFAULT_PORTS = {"http": 80, "https": 443}
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024
_SHARED = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_TOTAL = "timed out (total limit of {:g}s exceeded)"
_REASONS = ((TimeoutError, "timed out"), (ConnectionRefusedError, "connection refused"),
            (ConnectionResetError, "connection reset by peer"))
_HEADERS = {"User-Agent": "vlsearch", "Accept-Encoding": "identity"}

_IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class FetchPolicy:
    """Limits for one fetch.

    ``allow_hosts`` holds ``host:port`` pairs exempt from the IP check. ``only_hosts``, when
    set, is an allowlist of host names (case-insensitive): any other host is refused, on the
    first URL and on every redirect, and the hosts it names still pass the IP check.
    """

    max_bytes: int = 64 * 1024 * 1024
    timeout: float = 20.0  # connect and each read; the whole fetch gets 3x this
    max_redirects: int = 5
    allow_hosts: frozenset[str] = frozenset()
    allowed_schemes: frozenset[str] = frozenset({"http", "https"})
    only_hosts: frozenset[str] | None = None


@dataclass(frozen=True)
class _Target:
    scheme: str
    host: str  # as written, lowercased, without IPv6 brackets
    port: int
    request_target: str  # path and query, percent-encoded


def _redact(url: str) -> str:
    """Hide any userinfo so credentials never reach an error message."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    netloc, slash, tail = rest.partition("/")
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    return f"{scheme}{sep}{netloc}{slash}{tail}"


def _error(url: str, reason: str) -> FetchError:
    return FetchError(f"{_redact(url)}: {reason}")


def _parse(url: str, policy: FetchPolicy) -> _Target:
    """Split ``url`` and check its scheme, userinfo, host and port."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise _error(url, f"invalid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in policy.allowed_schemes or scheme not in _DEFAULT_PORTS:
        raise _error(url, f"unsupported scheme {scheme!r}" if scheme else "missing scheme")
    if "@" in parts.netloc:
        raise _error(url, "credentials (user:pass@) in URLs are not allowed")
    host = parts.hostname or ""
    if not host:
        raise _error(url, "empty host")
    if port == 0:
        raise _error(url, "invalid port 0")
    if policy.only_hosts is not None and host not in {h.strip().lower().strip("[]") for h in policy.only_hosts}:
        raise _error(url, f"refused: host {host} is not in the allowed hosts")
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    target = quote(target, safe="!#$%&'()*+,/:;=?@[]~")
    return _Target(scheme, host, port or _DEFAULT_PORTS[scheme], target)


def _address_problem(ip: _IPAddress) -> str | None:
    """Why ``ip`` must not be contacted, or None if it is globally routable."""
    if isinstance(ip, ipaddress.IPv6Address):  # IPv4-mapped, 6to4, NAT64: judge the IPv4 inside
        inner = ip.ipv4_mapped or ip.sixtofour
        if inner is None and any(ip in net for net in _NAT64):
            inner = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if inner is not None:
            problem = _address_problem(inner)
            if problem:
                return f"{problem} (embedded IPv4 {inner})"
    checks = (
        (ip.is_unspecified, "unspecified"),
        (ip.is_loopback, "loopback"),
        (ip.is_link_local, "link-local"),
        (ip.is_multicast, "multicast"),
        (isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED, "shared (carrier-grade NAT)"),
        (ip.is_private, "private"),
        (ip.is_reserved, "reserved"),
        (not ip.is_global, "non-global"),
    )
    for hit, kind in checks:
        if hit:
            return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind} address"
    return None


def _is_ip(host: str) -> bool:
    """Whether ``host`` is an address itself (also the legacy IPv4 forms: 2130706433, 0x7f.1)."""
    try:
        ipaddress.ip_address(host.strip("[]"))
        return True
    except ValueError:
        pass
    try:
        socket.inet_aton(host)
        return True
    except OSError:
        return False


def _resolve_checked(url: str, target: _Target, policy: FetchPolicy) -> list[tuple[str, int]]:
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise _error(url, f"cannot resolve host {target.host}: {reason}") from None
    addresses: list[tuple[str, int]] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        entry = (str(sockaddr[0]), target.port)
        if entry not in addresses:
            addresses.append(entry)
    if not addresses:
        raise _error(url, f"cannot resolve host {target.host}: no addresses")
    names = {f"{target.host}:{target.port}", f"[{target.host}]:{target.port}"}
    if not any(entry.strip().lower() in names for entry in policy.allow_hosts):
        for ip_text, _port in addresses:
            problem = _address_problem(ipaddress.ip_address(ip_text))
            if problem:  # the address a name resolves to stays unsaid: it maps the server's network
                what = ip_text if _is_ip(target.host) else f"host {target.host} resolves to"
                raise _error(url, f"refused: {what} {'is ' if what == ip_text else ''}{problem}")
    return addresses


def check_url(url: str, policy: FetchPolicy | None = None) -> list[tuple[str, int]]:
    """Validate ``url`` and resolve its host; return the (ip, port) pairs it may connect to."""
    policy = policy or FetchPolicy()
    return _resolve_checked(url, _parse(url, policy), policy)


class _PinnedConnection(http.client.HTTPConnection):
    """Connection to a fixed, already checked IP; Host header and TLS name stay the URL's host."""

    def __init__(self, host: str, port: int, ip: str, timeout: float, tls: bool) -> None:
        super().__init__(host, port, timeout=timeout)
        self.pinned_ip = ip
        self.tls = ssl.create_default_context() if tls else None  # verifies cert and hostname
        self.raw: socket.socket | None = None  # kept after close() so reads can be re-timed

    def connect(self) -> None:
        sock = socket.socket(socket.AF_INET6 if ":" in self.pinned_ip else socket.AF_INET)
        try:
            sock.settimeout(self.timeout)
            sock.connect((self.pinned_ip, self.port))
            if self.tls is not None:
                sock = self.tls.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise
        self.sock = self.raw = sock


def _reason(exc: BaseException) -> str:
    """A short, human reason for a network-level failure."""
    for kind, text in _REASONS:
        if isinstance(exc, kind):
            return text
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate verification failed: {exc.verify_message or exc}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {exc.reason or exc}"
    if isinstance(exc, http.client.HTTPException):
        return f"bad HTTP response: {type(exc).__name__} {exc}".rstrip()
    return f"network error: {exc.strerror or exc}" if isinstance(exc, OSError) else str(exc)


def _remaining(url: str, deadline: float, policy: FetchPolicy) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise _error(url, _TOTAL.format(3 * policy.timeout))
    return min(policy.timeout, left)


def _read_body(url: str, resp: http.client.HTTPResponse, conn: _PinnedConnection,
               policy: FetchPolicy, deadline: float) -> bytes:
    """Read the body in chunks under the byte cap and the total deadline."""
    cap = policy.max_bytes
    header = (resp.getheader("Content-Length") or "").strip()
    declared = int(header) if header.isascii() and header.isdigit() else None
    if declared is not None and declared > cap:
        raise _error(url, f"response larger than {cap} bytes (Content-Length {declared})")
    chunks: list[bytes] = []
    total = 0
    while True:
        wait = _remaining(url, deadline, policy)
        if conn.raw is not None:
            conn.raw.settimeout(wait)
        chunk = resp.read1(min(_CHUNK, cap - total + 1))
        if not chunk:
            break
        total += len(chunk)
        if total > cap:
            raise _error(url, f"response larger than {cap} bytes")
        chunks.append(chunk)
    if declared is not None and total < declared:
        raise _error(url, f"truncated response: got {total} of {declared} bytes")
    if total == 0:
        raise _error(url, "empty response")
    return b"".join(chunks)


def _one_hop(url: str, policy: FetchPolicy, deadline: float) -> tuple[str | None, bytes]:
    """Fetch one URL; return (redirect location, b"") or (None, body)."""
    target = _parse(url, policy)
    addresses = _resolve_checked(url, target, policy)
    conn = None
    try:
        last: BaseException | None = None
        for ip, port in addresses:
            conn = _PinnedConnection(target.host, port, ip, _remaining(url, deadline, policy),
                                     tls=target.scheme == "https")
            try:
                conn.connect()
                break
            except OSError as exc:
                conn.close()
                last, conn = exc, None
        if conn is None:
            raise _error(url, _reason(last) if last else "no address to connect to")
        conn.request("GET", target.request_target, headers=_HEADERS)
        resp = conn.getresponse()
        try:
            if resp.status in _REDIRECTS:
                location = resp.getheader("Location")
                if not location:
                    raise _error(url, f"redirect (HTTP {resp.status}) without a Location header")
                return urljoin(url, location.strip()), b""
            if not 200 <= resp.status < 300:
                raise _error(url, f"HTTP status {resp.status} {resp.reason}".rstrip())
            return None, _read_body(url, resp, conn, policy, deadline)
        finally:
            resp.close()
    except (OSError, ValueError, http.client.HTTPException) as exc:
        if isinstance(exc, TimeoutError) and deadline - time.monotonic() < 0.05:
            raise _error(url, _TOTAL.format(3 * policy.timeout)) from exc
        raise _error(url, _reason(exc)) from exc
    finally:
        if conn is not None:
            conn.close()


def fetch_url(url: str, policy: FetchPolicy | None = None) -> bytes:
    """GET ``url`` under ``policy`` and return the body; raise FetchError on any refusal/failure."""
    policy = policy or FetchPolicy()
    deadline = time.monotonic() + 3 * policy.timeout
    current = url
    for _hop in range(policy.max_redirects + 1):
        try:
            location, body = _one_hop(current, policy, deadline)
        except FetchError as exc:
            if current == url:
                raise
            raise FetchError(f"{exc} (redirected from {_redact(url)})") from exc
        if location is None:
            return body
        current = location
    raise _error(url, f"too many redirects (more than {policy.max_redirects})")
