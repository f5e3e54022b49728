"""Real things for the source tests: moto's S3 server on loopback, a proxy that cuts downloads short,
a container-credentials endpoint that hands out expired keys, archives (also hostile ones) and
Office documents written by python-docx, python-pptx and openpyxl (or converted by LibreOffice)."""

from __future__ import annotations

import http.client
import io
import json
import logging
import os
import shutil
import socket
import struct
import subprocess
import tarfile
import threading
import zipfile
import zlib
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

AWS_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                 "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE")


# -- S3 ------------------------------------------------------------------------------------------

@contextmanager
def moto_server() -> Iterator[str]:
    """moto's standalone S3-protocol server on 127.0.0.1:<free port>; its URL."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{server._server.server_port}"
    finally:
        server.stop()


def s3_environment(endpoint: str, key: str = "testing", secret: str = "testing") -> dict[str, str]:
    """The standard AWS variables for a loopback endpoint (what the credential chain reads)."""
    return {"AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret, "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": endpoint, "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}


def s3_client(endpoint: str):
    """A boto3 client that administers the test server (never through vlsearch)."""
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key="testing",
                        region_name="us-east-1")


def set_auth(endpoint: str, enforced: bool) -> None:
    """Turn moto's IAM checks on (every request authenticated and authorised) or off."""
    import urllib.request

    request = urllib.request.Request(endpoint + "/moto-api/reset-auth", data=b"0" if enforced else b"inf",
                                     method="POST", headers={"content-type": "application/octet-stream"})
    urllib.request.urlopen(request, timeout=10).read()


class _Proxy(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_ProxyServer"

    def _forward(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else None
        upstream = http.client.HTTPConnection("127.0.0.1", self.server.upstream, timeout=30)
        headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
        upstream.request(self.command, self.path, body=body, headers=headers)
        response = upstream.getresponse()
        data = response.read()
        upstream.close()
        cut = self.command == "GET" and self.server.marker in self.path and len(data) > 64
        if cut:
            self.server.cuts += 1
        self.send_response(response.status)
        for name, value in response.getheaders():
            if name.lower() not in ("transfer-encoding", "connection", "content-length", "date", "server"):
                self.send_header(name, value)
        self.send_header("content-length", response.getheader("content-length", "0") if self.command == "HEAD"
                         else str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data[: len(data) // 2] if cut else data)
        if cut:  # the connection drops mid-body, as a network failure would
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _forward

    def log_message(self, *args: object) -> None:
        pass


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    upstream: int
    marker: str
    cuts: int


@contextmanager
def cutting_proxy(endpoint: str, marker: str) -> Iterator[_ProxyServer]:
    """An HTTP proxy to ``endpoint`` that drops the connection halfway through the body of every
    GET whose path holds ``marker``; ``server.url`` is its address, ``server.cuts`` how often it cut."""
    server = _ProxyServer(("127.0.0.1", 0), _Proxy)
    server.upstream, server.marker, server.cuts = int(endpoint.rsplit(":", 1)[1]), marker, 0
    server.url = f"http://127.0.0.1:{server.server_port}"  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


class _ExpiredCredentials(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"AccessKeyId": "ASIAEXPIREDEXPIRED00", "SecretAccessKey": "expired", "Token": "expired",
                           "Expiration": "2020-01-01T00:00:00Z"}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def expired_credentials_endpoint() -> Iterator[str]:
    """A container-credentials endpoint (the chain's ``AWS_CONTAINER_CREDENTIALS_FULL_URI``) that only
    ever hands out keys that expired long ago; its URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ExpiredCredentials)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/credentials"
    finally:
        server.shutdown()
        server.server_close()


# -- archives ------------------------------------------------------------------------------------

def zip_bytes(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def tar_bytes(members: dict[str, bytes], mode: str = "w:gz", links: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 1_700_000_000
            archive.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            archive.addfile(info)
    return buffer.getvalue()


def overlapping_zip(files: int, kernel_size: int) -> bytes:
    """A non-recursive zip bomb, after David Fifield's published description: every member's deflate
    data runs through the local headers of the members after it (each quoted in a stored block) into
    one shared compressed kernel of ``kernel_size`` zeros, so ``files`` names share the same bytes."""
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros = b"\0" * kernel_size
    data, plain = packer.compress(zeros) + packer.flush(), b""  # what follows a header; its inflated prefix
    headers: list[tuple[bytes, int, int, int]] = []  # (local header, crc, packed, size), last file first
    for index in reversed(range(files)):
        name = f"{index:04}.txt".encode()
        size, crc = len(plain) + kernel_size, zlib.crc32(zeros, zlib.crc32(plain))
        header = struct.pack("<4s5H3I2H", b"PK\x03\x04", 20, 0, 8, 0, 0x21, crc, len(data), size, len(name), 0) + name
        headers.append((header, crc, len(data), size))
        quote = b"\x00" + struct.pack("<HH", len(header), len(header) ^ 0xFFFF)  # a stored, non-final block
        data, plain = quote + header + data, header + plain
    headers.reverse()
    body = headers[0][0] + data[5 + len(headers[0][0]):]  # the first header is not quoted by anyone
    central, offset = b"", 0
    for header, crc, packed, size in headers:
        name = header[30:]
        central += struct.pack("<4s6H3I5H2I", b"PK\x01\x02", 20, 20, 0, 8, 0, 0x21, crc, packed, size, len(name),
                               0, 0, 0, 0, 0, offset) + name
        offset += len(header) + 5
    return body + central + struct.pack("<4s4H2IH", b"PK\x05\x06", 0, 0, files, files, len(central), len(body), 0)


# -- Office documents ----------------------------------------------------------------------------

def write_docx(path: Path, pages: list[str]) -> Path:
    """A Word document, one page per text (hard page breaks), written by python-docx."""
    import docx
    from docx.enum.text import WD_BREAK

    document = docx.Document()
    for number, text in enumerate(pages):
        document.add_heading(text.split(".")[0], level=1)
        paragraph = document.add_paragraph(text)
        if number < len(pages) - 1:
            paragraph.add_run().add_break(WD_BREAK.PAGE)
    document.save(str(path))
    return path


def write_pptx(path: Path, slides: list[str]) -> Path:
    """A presentation, one slide per title, written by python-pptx."""
    import pptx

    presentation = pptx.Presentation()
    for title in slides:
        slide = presentation.slides.add_slide(presentation.slide_layouts[1])
        slide.shapes.title.text = title
        slide.placeholders[1].text = f"Details about {title.lower()}"
    presentation.save(str(path))
    return path


def write_xlsx(path: Path, rows: list[list[object]]) -> Path:
    """A workbook with one sheet of rows, written by openpyxl."""
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Budget"
    for row in rows:
        sheet.append(row)
    book.save(str(path))
    return path


def libreoffice_convert(paths: list[Path], target: str, out: Path) -> list[Path]:
    """The documents converted by LibreOffice itself (``odt``, ``rtf``, ``doc``, ``odp``, ``ppt``, ``ods``,
    ``xls``), into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    profile = out / f".profile-{target}"
    subprocess.run([shutil.which("soffice") or "soffice", "--headless", "--norestore",
                    f"-env:UserInstallation={profile.as_uri()}", "--convert-to", target, "--outdir", str(out),
                    *map(str, paths)], check=True, capture_output=True, timeout=180)
    shutil.rmtree(profile, ignore_errors=True)
    return [out / f"{p.stem}.{target}" for p in paths]
