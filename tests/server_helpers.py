"""Run the real app with uvicorn on a free loopback port, in a background thread, for tests."""

from __future__ import annotations

import base64
import io
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

from vlsearch.testing import gradient_image

NO_TRACE = ("Traceback", 'File "', "0x7f", " object at 0x")


@dataclass
class Running:
    """A started server: its base URL and app (for its state and metrics)."""

    url: str
    app: Any
    port: int

    def client(self, **headers: str) -> Any:
        """An httpx client with TCP_NODELAY (so request header and body never wait on delayed ACKs)."""
        import httpx

        transport = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
        return httpx.Client(base_url=self.url, transport=transport, headers=headers, timeout=60)


@contextmanager
def serve(config: Any) -> Iterator[Running]:
    """``create_app(config)`` served on 127.0.0.1:<free port> until the block ends."""
    from vlsearch.server import create_app

    with serve_app(create_app(config), config) as running:
        yield running


@contextmanager
def serve_app(app: Any, config: Any) -> Iterator[Running]:
    """An ASGI app served as ``vlsearch serve`` serves, on 127.0.0.1:<free port>, until the block ends."""
    import uvicorn

    from vlsearch.server.serving import uvicorn_config

    # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on accepted sockets of a TCP-typed listener
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn_config(app, config, log_level="warning", timeout_graceful_shutdown=5))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="test-uvicorn")
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    try:
        yield Running(f"http://127.0.0.1:{port}", app, port)
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


def png_bytes(width: int = 96, height: int = 64, seed: int = 0) -> bytes:
    buf = io.BytesIO()
    gradient_image(width, height, seed=seed).save(buf, "PNG")
    return buf.getvalue()


def data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


def assert_clean_error(response: Any, status: int, *fragments: str) -> dict[str, Any]:
    """A JSON error body with a message (containing ``fragments``), a type and a code, and no trace."""
    assert response.status_code == status, (response.status_code, response.text[:500])
    body = response.json()
    error = body["error"]
    assert error["message"] and error["type"] and error["code"], body
    for fragment in fragments:
        assert fragment in error["message"], error["message"]
    for leak in NO_TRACE:
        assert leak not in response.text, response.text[:500]
    return error


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text (0 when absent)."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        series, _, label_text = head.partition("{")
        if series != name:
            continue
        found = dict(part.split("=", 1) for part in label_text.rstrip("}").split(",") if "=" in part)
        if all(found.get(k, "").strip('"') == v for k, v in labels.items()):
            return float(value)
    return 0.0


def wait_for_job(http: Any, job_id: str, timeout: float = 60) -> dict:
    """Poll ``GET /v1/jobs/{id}`` until the job is done or failed; its last state."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = http.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("done", "failed"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish")
