"""A resident server for the command line: the models stay loaded between commands.

``vlsearch serve --detach`` starts the server in the background on loopback with a fresh API key and
a fresh identity secret, and registers it for this ``$VLSEARCH_HOME`` in ``server.json`` (mode 0600:
address, key, secret, pid and the process's identity stay private to the user); ``--status`` and
``--stop`` find it there. ``search``, ``index`` and ``eval`` use a server when one is reachable
(``--server URL``, ``$VLSEARCH_SERVER``, or the registered one) and work in-process otherwise.

The registered server is trusted only once it is proven: its pid still belongs to the process that was
registered (start time and command line, so a recycled pid is not mistaken for it), and its address
answers a fresh nonce with ``HMAC(secret, nonce)`` (``GET /identity``, no key sent). Another program
that holds the port, or has the pid, gets no key, no query and no signal. Servers named explicitly
(``--server``, ``$VLSEARCH_SERVER``) are the user's choice and are used as given. Nothing here imports
torch, transformers or lancedb.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..catalog import vlsearch_home
from ..errors import InputError
from ..files import private_dir, write_json

SERVER_ENV = "VLSEARCH_SERVER"
IDENTITY_ENV = "VLSEARCH_IDENTITY_SECRET"  # how --detach hands the server its secret (not its command line)
STATE = "server.json"
START_TIMEOUT = 600.0  # seconds for the models to load


@dataclass
class Resident:
    """A server the command line can use: where it is and its key."""

    url: str
    key: str | None


def state_path() -> Path:
    return vlsearch_home() / STATE


def read_state() -> dict[str, Any] | None:
    try:
        data = json.loads(state_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("url") else None


def write_state(data: dict[str, Any]) -> None:
    """Write ``server.json`` readable by its owner only (``write_json``: a 0600 file renamed into place)
    in a home made 0700 when missing."""
    write_json(private_dir(vlsearch_home()) / STATE, data)


def process_identity(pid: int) -> str | None:
    """What tells process ``pid`` from a later one given the same number: its start time and command
    line (from /proc, else from ``ps``); None when no such process runs."""
    if pid <= 0:
        return None
    proc = Path(f"/proc/{pid}")
    if Path("/proc/self/stat").exists():
        try:  # field 22 of stat, the start time in clock ticks after boot; comm may hold spaces and ')'
            started = (proc / "stat").read_text().rsplit(")", 1)[1].split()[19]
            return f"{started} {(proc / 'cmdline').read_bytes().decode(errors='replace')}"
        except (OSError, IndexError):
            return None
    try:
        shown = subprocess.run(["ps", "-o", "lstart=", "-o", "args=", "-p", str(pid)], capture_output=True,
                               text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return shown or None


def same_process(state: dict[str, Any]) -> bool:
    """Whether the registered process still runs: its pid names the process that was registered."""
    recorded = state.get("identity")
    return bool(recorded) and process_identity(int(state.get("pid", 0))) == recorded


def proves(url: str, secret: str, timeout: float = 2.0) -> bool:
    """Whether the server at ``url`` knows ``secret``: it answers a fresh nonce with its HMAC. Nothing
    else is sent (no key, no query), so a program that merely holds the port learns nothing."""
    from ..server.auth import identity_proof

    nonce = secrets.token_urlsafe(24)
    query = urllib.parse.urlencode({"nonce": nonce})
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/identity?{query}", timeout=timeout) as answer:
            proof = json.loads(answer.read(4096))["proof"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return isinstance(proof, str) and hmac.compare_digest(proof.encode(), identity_proof(secret, nonce).encode())


def registered() -> tuple[dict[str, Any] | None, str]:
    """The registration (None when there is none, or it was stale), and a word on its server: "running"
    (it proved itself); "unproven" (its process runs, but what answers at its address does not prove to be
    it: use nothing there); "stale" (its process is gone, or its pid now names another process: the
    registration is removed); or "none"."""
    state = read_state()
    if state is None:
        return None, "none"
    if not same_process(state):
        state_path().unlink(missing_ok=True)
        return None, "stale"
    return state, "running" if proves(state["url"], str(state.get("secret", ""))) else "unproven"


def find(explicit: str | None) -> Resident | None:
    """The server to use: ``--server``, else ``$VLSEARCH_SERVER`` (key from ``$VLSEARCH_API_KEY``), else
    the registered one once it proved itself; None: work in-process."""
    if explicit:
        return Resident(explicit, os.environ.get("VLSEARCH_API_KEY"))
    if os.environ.get(SERVER_ENV):
        return Resident(os.environ[SERVER_ENV], os.environ.get("VLSEARCH_API_KEY"))
    state, word = registered()
    if word == "unproven":
        print(f"vlsearch: {unproven(state)}; working in-process", file=sys.stderr)
    return Resident(state["url"], state.get("key")) if word == "running" else None


def unproven(state: dict[str, Any]) -> str:
    return (f"the registered server (pid {state['pid']}) runs, but what answers at {state['url']} does not "
            "prove to be it (another program may hold its port), so nothing was sent there")


# ---------------------------------------------------------------- serve --detach / --status / --stop

def detach(argv: list[str], host: str, port: int) -> int:
    """Start ``vlsearch serve`` (``argv``: its options) in the background with a fresh key and secret, wait
    until it proves itself at its address, and register it with its process's identity."""
    state, word = registered()
    if state is not None:
        print(f"vlsearch: a server already runs for this home at {state['url']} (pid {state['pid']}"
              f"{'' if word == 'running' else '; it does not answer there'}); `vlsearch serve --stop` stops it",
              file=sys.stderr)
        return 1
    if word == "stale":
        print("vlsearch: removed the registration of a server that no longer runs", file=sys.stderr)
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
    if not port_free(host, port):
        print(f"vlsearch: error: {url} is taken (another program listens on port {port}); choose another "
              "--port", file=sys.stderr)
        return 1
    key, secret = secrets.token_urlsafe(24), secrets.token_urlsafe(32)
    log = private_dir(vlsearch_home()) / "server.log"
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.fchmod(fd, 0o600)  # also a log left readable by an older version
    env = {**os.environ, "VLSEARCH_API_KEY": key, IDENTITY_ENV: secret}
    with os.fdopen(fd, "ab") as out:
        process = subprocess.Popen([sys.executable, "-m", "vlsearch", "serve", *argv], stdin=subprocess.DEVNULL,
                                   stdout=out, stderr=out, env=env, start_new_session=True)
    deadline = time.monotonic() + START_TIMEOUT
    while not proves(url, secret, timeout=1.0):
        if process.poll() is not None:
            print(f"vlsearch: error: the server exited while starting (status {process.returncode}); see {log}",
                  file=sys.stderr)
            return 1
        if time.monotonic() > deadline:
            process.terminate()
            print(f"vlsearch: error: the server did not answer within {START_TIMEOUT:.0f} s; see {log}",
                  file=sys.stderr)
            return 1
        time.sleep(0.2)
    write_state({"url": url, "pid": process.pid, "identity": process_identity(process.pid), "key": key,
                 "secret": secret, "started": time.time(), "log": str(log)})
    print(f"vlsearch: serving on {url} in the background (pid {process.pid}); search, index and eval use it. "
          f"Log: {log}", file=sys.stderr)
    return 0


def port_free(host: str, port: int) -> bool:
    """Whether ``host:port`` can be bound now (as the server binds it: address reuse on, so a port
    that only lingers after a closed connection counts as free)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host.strip("[]"), port))
        except OSError:
            return False
    return True


def status() -> int:
    state, word = registered()
    if state is None:
        print("no server registered for this home" + (" (a stale registration was removed)" if word == "stale"
                                                      else ""))
        return 1
    if word == "unproven":
        print(unproven(state))
        return 1
    print(f"running at {state['url']} (pid {state['pid']}, since "
          f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(state.get('started', 0)))})")
    return 0


def stop(timeout: float = 30.0) -> int:
    """Stop the registered server, after checking its pid still names the registered process (a
    recycled pid is another program's: the registration is removed, nothing is signalled)."""
    state = read_state()
    if state is None:
        print("no server registered for this home", file=sys.stderr)
        return 1
    pid = int(state.get("pid", 0))
    if not same_process(state):
        state_path().unlink(missing_ok=True)
        print(f"vlsearch: the registered server no longer runs (pid {pid} is gone or now another program's); "
              "removed its registration, signalled nothing", file=sys.stderr)
        return 1
    with contextlib.suppress(ProcessLookupError):  # it may end on its own meanwhile
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while same_process(state) and time.monotonic() < deadline:
        time.sleep(0.1)
    if same_process(state):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    state_path().unlink(missing_ok=True)
    print(f"stopped the server at {state['url']} (pid {pid})", file=sys.stderr)
    return 0


def check_loopback(host: str) -> None:
    from ..server.config import is_loopback

    if not is_loopback(host):
        raise InputError("--detach serves on loopback only (the registered key stays on this machine); "
                         f"not {host!r}")
