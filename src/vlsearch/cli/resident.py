"""A resident server for the command line: the models stay loaded between commands.

``vlsearch serve --detach`` starts the server in the background on loopback with a fresh API key
and registers it for this ``$VLSEARCH_HOME`` in ``server.json`` (mode 0600: address, key and pid
stay private to the user); ``--status`` and ``--stop`` find it there. ``search``, ``index`` and
``eval`` use a server when one is reachable (``--server URL``, ``$VLSEARCH_SERVER``, or the
registered one) and work in-process otherwise. Nothing here imports torch, transformers or lancedb.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..catalog import vlsearch_home
from ..errors import InputError

SERVER_ENV = "VLSEARCH_SERVER"
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
    """Write ``server.json`` readable by its owner only (created 0600, then renamed into place)."""
    path = state_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{STATE}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(data, handle)
    os.replace(tmp, path)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def healthy(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/health", timeout=timeout) as answer:
            return answer.status == 200
    except (OSError, ValueError):
        return False


def registered() -> tuple[dict[str, Any] | None, str]:
    """The registered server if it runs, and a word on its state: "running", "stale" (its process is
    gone or does not answer; the registration is removed) or "none"."""
    state = read_state()
    if state is None:
        return None, "none"
    if pid_alive(int(state.get("pid", 0))) and healthy(state["url"]):
        return state, "running"
    state_path().unlink(missing_ok=True)
    return None, "stale"


def find(explicit: str | None) -> Resident | None:
    """The server to use: ``--server``, else ``$VLSEARCH_SERVER`` (key from ``$VLSEARCH_API_KEY``), else
    the registered one if it runs; None: work in-process."""
    if explicit:
        return Resident(explicit, os.environ.get("VLSEARCH_API_KEY"))
    if os.environ.get(SERVER_ENV):
        return Resident(os.environ[SERVER_ENV], os.environ.get("VLSEARCH_API_KEY"))
    state, _ = registered()
    return Resident(state["url"], state.get("key")) if state else None


# ---------------------------------------------------------------- serve --detach / --status / --stop

def detach(argv: list[str], host: str, port: int) -> int:
    """Start ``vlsearch serve`` (``argv``: its options) in the background with a fresh key, wait until
    it answers, and register it."""
    state, status = registered()
    if state is not None:
        print(f"vlsearch: a server already runs for this home at {state['url']} (pid {state['pid']}); "
              "`vlsearch serve --stop` stops it", file=sys.stderr)
        return 1
    if status == "stale":
        print("vlsearch: removed the registration of a server that no longer runs", file=sys.stderr)
    key = secrets.token_urlsafe(24)
    log = vlsearch_home() / "server.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "VLSEARCH_API_KEY": key}
    with open(log, "ab") as out:
        process = subprocess.Popen([sys.executable, "-m", "vlsearch", "serve", *argv], stdin=subprocess.DEVNULL,
                                   stdout=out, stderr=out, env=env, start_new_session=True)
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
    deadline = time.monotonic() + START_TIMEOUT
    while not healthy(url, timeout=1.0):
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
    write_state({"url": url, "pid": process.pid, "key": key, "started": time.time(), "log": str(log)})
    print(f"vlsearch: serving on {url} in the background (pid {process.pid}); search, index and eval use it. "
          f"Log: {log}", file=sys.stderr)
    return 0


def status() -> int:
    state, word = registered()
    if state is None:
        print("no server registered for this home" + (" (a stale registration was removed)" if word == "stale"
                                                      else ""))
        return 1
    print(f"running at {state['url']} (pid {state['pid']}, since "
          f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(state.get('started', 0)))})")
    return 0


def stop(timeout: float = 30.0) -> int:
    state = read_state()
    if state is None:
        print("no server registered for this home", file=sys.stderr)
        return 1
    pid = int(state.get("pid", 0))
    if pid_alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
    state_path().unlink(missing_ok=True)
    print(f"stopped the server at {state['url']} (pid {pid})", file=sys.stderr)
    return 0


def check_loopback(host: str) -> None:
    from ..server.config import is_loopback

    if not is_loopback(host):
        raise InputError("--detach serves on loopback only (the registered key stays on this machine); "
                         f"not {host!r}")
