"""Tests for vlsearch.media.fetch: all traffic stays on loopback test servers."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from vlsearch.errors import FetchError, MediaError
from vlsearch.media import fetch
from vlsearch.media.fetch import FetchPolicy, check_url, fetch_url

CAP = 1000
TIMEOUT = 0.5
OK_BODY = b"hello from the test server"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    other_port = 0

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.hits: list[tuple[str, str]] = []  # (path, Host header)

    def handle_error(self, request, client_address) -> None:  # noqa: ANN001
        pass  # the client hangs up on purpose in several tests


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass

    def _send(self, status: int, body: bytes = b"", **headers: str) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        if "Content_Length" not in headers:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802
        self.server.hits.append((self.path, self.headers.get("Host", "")))
        path = self.path
        if path == "/ok":
            self._send(200, OK_BODY)
        elif path == "/big":
            self._send(200, b"x" * 10, Content_Length=str(CAP * 10))
        elif path == "/big-chunked":
            self.send_response(200)
            self.end_headers()  # no Content-Length: body ends when the connection closes
            for _ in range(20):
                self.wfile.write(b"y" * 500)
        elif path == "/slow":
            time.sleep(TIMEOUT * 3)
            self._send(200, OK_BODY)
        elif path == "/trickle":
            self.send_response(200)
            self.end_headers()
            for _ in range(20):  # each byte well inside the read timeout, but 4 s in all
                self.wfile.write(b"z")
                self.wfile.flush()
                time.sleep(TIMEOUT * 0.4)
        elif path == "/redirect-to-ok":
            self._send(302, Location="/ok")
        elif path == "/redirect-loop":
            self._send(301, Location="/redirect-loop")
        elif path == "/redirect-to-loopback":
            self._send(307, Location=f"http://127.0.0.1:{self.server.other_port}/ok")
        elif path == "/redirect-to-metadata":
            self._send(302, Location="http://169.254.169.254/latest/meta-data/")
        elif path == "/redirect-no-location":
            self._send(302)
        elif path == "/empty":
            self._send(200, b"")
        else:
            self._send(404, b"not found")


@dataclass
class Servers:
    main: _Server
    other: _Server
    policy: FetchPolicy = field(init=False)

    def __post_init__(self) -> None:
        self.policy = FetchPolicy(max_bytes=CAP, timeout=TIMEOUT, allow_hosts=frozenset({self.host}))

    @property
    def port(self) -> int:
        return self.main.server_address[1]

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return f"http://{self.host}{path}"


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    main, other = _Server(), _Server()
    main.other_port = other.server_address[1]
    threads = [threading.Thread(target=s.serve_forever, args=(0.05,), daemon=True)
               for s in (main, other)]
    for t in threads:
        t.start()
    yield Servers(main, other)
    for s in (main, other):
        s.shutdown()
        s.server_close()


def _refused(url: str, *reasons: str, policy: FetchPolicy | None = None) -> FetchError:
    with pytest.raises(FetchError) as info:
        fetch_url(url, policy)
    message = str(info.value)
    for reason in reasons:
        assert reason in message, message
    return info.value


# --- success ---------------------------------------------------------------


def test_ok(servers: Servers) -> None:
    assert fetch_url(servers.url("/ok"), servers.policy) == OK_BODY
    assert servers.main.hits[-1] == ("/ok", servers.host)


def test_relative_redirect(servers: Servers) -> None:
    assert fetch_url(servers.url("/redirect-to-ok"), servers.policy) == OK_BODY


def test_check_url_public_literal_needs_no_network() -> None:
    assert check_url("http://8.8.8.8/x") == [("8.8.8.8", 80)]
    assert check_url("https://[2001:4860:4860::8888]:8443/") == [("2001:4860:4860::8888", 8443)]


def test_ip_is_pinned_and_host_header_kept(servers: Servers, monkeypatch: pytest.MonkeyPatch) -> None:
    real = socket.getaddrinfo
    calls: list[str] = []

    def fake(host: str, *args: object, **kwargs: object) -> list:
        calls.append(host)
        return real("127.0.0.1" if host == "rebind.test" else host, *args, **kwargs)

    monkeypatch.setattr(fetch.socket, "getaddrinfo", fake)
    policy = FetchPolicy(timeout=TIMEOUT, allow_hosts=frozenset({f"rebind.test:{servers.port}"}))
    assert fetch_url(f"http://REBIND.test:{servers.port}/ok", policy) == OK_BODY
    assert calls == ["rebind.test"]  # one lookup; the connection used its answer
    assert servers.main.hits[-1] == ("/ok", f"rebind.test:{servers.port}")


# --- address checks ------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1/ok", "127.0.0.1 is a loopback address"),
        ("http://localhost/ok", "host localhost resolves to a loopback address"),
        ("http://[::1]/ok", "::1 is a loopback address"),
        ("http://0.0.0.0/ok", "0.0.0.0 is an unspecified address"),
        ("http://[::]/ok", "is an unspecified address"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address"),
        ("http://[fe80::1]/", "is a link-local address"),
        ("http://10.0.0.1/", "10.0.0.1 is a private address"),
        ("http://172.16.5.4/", "172.16.5.4 is a private address"),
        ("http://192.168.1.1/", "192.168.1.1 is a private address"),
        ("http://[fc00::1]/", "is a private address"),
        ("http://100.64.0.1/", "100.64.0.1 is a shared (carrier-grade NAT) address"),
        ("http://224.0.0.1/", "is a multicast address"),
        ("http://240.0.0.1/", "240.0.0.1 is a"),
        ("http://2130706433/", "127.0.0.1 is a loopback address"),
        ("http://[::ffff:127.0.0.1]/", "loopback address (embedded IPv4 127.0.0.1)"),
        ("http://[::ffff:169.254.169.254]/", "link-local address (embedded IPv4 169.254.169.254)"),
        ("http://[64:ff9b::a00:1]/", "private address (embedded IPv4 10.0.0.1)"),
        ("http://[2002:7f00:1::]/", "loopback address (embedded IPv4 127.0.0.1)"),
    ],
)
def test_non_global_addresses_refused(url: str, reason: str) -> None:
    for call in (check_url, fetch_url):
        with pytest.raises(FetchError) as info:
            call(url, FetchPolicy(timeout=TIMEOUT))
        assert "refused" in str(info.value) and reason in str(info.value), str(info.value)
        assert str(info.value).startswith(url.rstrip("/")), str(info.value)


def test_any_private_answer_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, 80)) for ip in ("8.8.8.8", "10.1.2.3")]
    monkeypatch.setattr(fetch.socket, "getaddrinfo", lambda *a, **k: answers)
    with pytest.raises(FetchError, match=r"mixed\.test/: refused: host mixed\.test resolves to a private address") \
            as info:
        check_url("http://mixed.test/")
    assert "10.1.2.3" not in str(info.value)  # a name's private address is never told


def test_allow_hosts_is_per_port(servers: Servers) -> None:
    other = servers.other.server_address[1]
    _refused(f"http://127.0.0.1:{other}/ok", "refused", "loopback", policy=servers.policy)
    assert servers.other.hits == []


def test_unresolvable_host() -> None:
    _refused("http://does-not-exist.invalid/", "cannot resolve host does-not-exist.invalid")


# --- redirects ----------------------------------------------------------------


def test_redirect_to_other_loopback_port_refused(servers: Servers) -> None:
    err = _refused(servers.url("/redirect-to-loopback"), "refused", "127.0.0.1 is a loopback address",
                   policy=servers.policy)
    assert f"redirected from {servers.url('/redirect-to-loopback')}" in str(err)
    assert servers.other.hits == []


def test_redirect_to_metadata_refused(servers: Servers) -> None:
    _refused(
        servers.url("/redirect-to-metadata"),
        "http://169.254.169.254/latest/meta-data/: refused",
        "link-local address",
        policy=servers.policy,
    )


def test_redirect_loop(servers: Servers) -> None:
    _refused(servers.url("/redirect-loop"), "too many redirects (more than 5)", policy=servers.policy)


def test_redirect_without_location(servers: Servers) -> None:
    _refused(servers.url("/redirect-no-location"), "without a Location header", policy=servers.policy)


# --- URL shape ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("file:///etc/passwd", "unsupported scheme 'file'"),
        ("ftp://example.com/x", "unsupported scheme 'ftp'"),
        ("gopher://example.com/", "unsupported scheme 'gopher'"),
        ("data:text/plain,hi", "unsupported scheme 'data'"),
        ("example.com/x", "missing scheme"),
        ("http:///path", "empty host"),
        ("http://example.com:99999/", "invalid URL"),
    ],
)
def test_bad_urls(url: str, reason: str) -> None:
    _refused(url, reason)


def test_userinfo_refused_and_redacted() -> None:
    err = _refused("http://user:secret@8.8.8.8/x", "credentials (user:pass@) in URLs are not allowed")
    assert "secret" not in str(err)


def test_scheme_policy() -> None:
    https_only = FetchPolicy(allowed_schemes=frozenset({"https"}))
    _refused("http://8.8.8.8/", "unsupported scheme 'http'", policy=https_only)


# --- responses ---------------------------------------------------------------


def test_size_cap_by_header(servers: Servers) -> None:
    reason = f"larger than {CAP} bytes (Content-Length {CAP * 10})"
    _refused(servers.url("/big"), reason, policy=servers.policy)


def test_size_cap_while_streaming(servers: Servers) -> None:
    _refused(servers.url("/big-chunked"), f"larger than {CAP} bytes", policy=servers.policy)


def test_read_timeout(servers: Servers) -> None:
    start = time.monotonic()
    _refused(servers.url("/slow"), "timed out", policy=servers.policy)
    assert time.monotonic() - start < TIMEOUT * 2


def test_total_deadline(servers: Servers) -> None:
    start = time.monotonic()
    _refused(servers.url("/trickle"), "timed out", "total limit", policy=servers.policy)
    assert time.monotonic() - start < TIMEOUT * 4


def test_http_404(servers: Servers) -> None:
    _refused(servers.url("/missing"), "HTTP status 404", policy=servers.policy)


def test_empty(servers: Servers) -> None:
    _refused(servers.url("/empty"), "empty response", policy=servers.policy)


def test_connection_refused() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    policy = FetchPolicy(timeout=TIMEOUT, allow_hosts=frozenset({f"127.0.0.1:{port}"}))
    _refused(f"http://127.0.0.1:{port}/", "connection refused", policy=policy)


def test_https_to_plain_http_server_is_tls_error(servers: Servers) -> None:
    _refused(f"https://{servers.host}/ok", "TLS error", policy=servers.policy)


def test_fetch_error_is_media_error() -> None:
    assert issubclass(FetchError, MediaError)


# --- host allowlist (only_hosts) -------------------------------------------------


def test_only_hosts_allowlist(servers: Servers) -> None:
    from dataclasses import replace

    policy = replace(servers.policy, only_hosts=frozenset({"127.0.0.1"}))
    assert fetch_url(servers.url("/redirect-to-ok"), policy) == OK_BODY  # named and exempt: fetched
    _refused("http://8.8.8.8/x", "8.8.8.8/x: refused: host 8.8.8.8 is not in the allowed hosts", policy=policy)
    err = _refused(servers.url("/redirect-to-metadata"), "169.254.169.254 is not in the allowed hosts", policy=policy)
    assert "redirected from" in str(err)
    # a named host is still checked against private, loopback and link-local addresses
    named = FetchPolicy(timeout=TIMEOUT, only_hosts=frozenset({"127.0.0.1", "LocalHost"}))
    _refused(servers.url("/ok"), "refused", "127.0.0.1 is a loopback address", policy=named)
    _refused("http://LOCALHOST/ok", "host localhost resolves to a loopback address", policy=named)
    hits = len(servers.main.hits)
    _refused(servers.url("/redirect-to-loopback"), "loopback", policy=policy)
    assert servers.other.hits == [] and len(servers.main.hits) == hits + 1
