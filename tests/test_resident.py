"""The resident server: `serve --detach` keeps the models loaded, and search, index and eval use it;
the command line falls back in-process, or fails clearly, when it is gone, stale or refuses the key.
Another program on the registered port, or given the registered pid, gets no key, no query and no signal."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

pytest.importorskip("fastapi")

from test_collection import make_corpus  # noqa: E402

from vlsearch.cli.resident import process_identity, proves  # noqa: E402


def vlsearch(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vlsearch", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def home(tmp_path_factory, embedder_path, reranker_path):
    """A home with a collection, and a detached server registered for it (stopped at the end)."""
    root = tmp_path_factory.mktemp("resident")
    env = {**os.environ, "VLSEARCH_HOME": str(root / "home"), "VLSEARCH_EMBEDDER": str(embedder_path),
           "VLSEARCH_RERANKER": str(reranker_path)}
    env.pop("VLSEARCH_SERVER", None)
    env.pop("VLSEARCH_API_KEY", None)
    make_corpus(root / "corpus")
    assert vlsearch(env, "index", str(root / "corpus"), "-c", "docs", "--quiet", "--workers", "0",
                    "--exclude", "huge.pdf").returncode == 3
    started = vlsearch(env, "serve", "--detach", "--port", str(free_port()), "--collections-root", str(root))
    assert started.returncode == 0, started.stderr
    yield root, env
    vlsearch(env, "serve", "--stop")


def test_the_registration_is_private(home):
    root, env = home
    state = root / "home" / "server.json"
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    data = json.loads(state.read_text())
    assert data["url"].startswith("http://127.0.0.1:") and len(data["key"]) >= 24
    assert stat.S_IMODE((root / "home" / "server.log").stat().st_mode) == 0o600
    assert proves(data["url"], data["secret"]) and not proves(data["url"], "not-the-secret")
    assert data["identity"] == process_identity(data["pid"])
    status = vlsearch(env, "serve", "--status")
    assert status.returncode == 0 and "running at" in status.stdout


def test_search_through_the_server_equals_in_process(home):
    root, env = home
    args = ["search", "penguins on glaciers", "-c", "docs", "--json", "--top-k", "5"]
    served, local = vlsearch(env, *args), vlsearch(env, *args, "--no-server")
    assert served.returncode == local.returncode == 0, (served.stderr, local.stderr)
    assert "searched 'docs' the server at http://127.0.0.1:" in served.stderr
    assert "searched 'docs' in-process" in local.stderr
    assert json.loads(served.stdout) == json.loads(local.stdout)


def test_the_client_path_imports_nothing_heavy(home):
    root, env = home
    probe = ("import sys; from vlsearch.cli import main; code = main(['search', 'penguins', '-c', 'docs', "
             "'--no-rerank']); heavy = [m for m in ('torch', 'transformers', 'lancedb') if m in sys.modules]; "
             "print('HEAVY', heavy); sys.exit(code)")
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "HEAVY []" in done.stdout, (done.stdout, done.stderr)


def test_index_runs_as_a_job_of_the_server(home):
    root, env = home
    (root / "corpus" / "extra.txt").write_text("one more note about icebergs and seals " * 5)
    done = vlsearch(env, "index", str(root / "corpus"), "-c", "docs", "--exclude", "huge.pdf")
    assert "indexed by the server at" in done.stderr and "1 new" in done.stderr, done.stderr
    outside = root.parent / f"{root.name}-outside"
    outside.mkdir()
    (outside / "far.txt").write_text("a note from outside the server's roots")
    far = vlsearch(env, "index", str(outside), "-c", "docs")
    assert far.returncode == 0 and "may not read these paths" in far.stderr and "1 new" in far.stderr


def test_a_stale_registration_is_detected(tmp_path):
    env = {**os.environ, "VLSEARCH_HOME": str(tmp_path)}
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "server.json").write_text(json.dumps({"url": f"http://127.0.0.1:{free_port()}", "pid": dead.pid,
                                                       "key": "x" * 24}))
    status = vlsearch(env, "serve", "--status")
    assert status.returncode == 1 and "stale registration was removed" in status.stdout
    assert not (tmp_path / "server.json").exists()


def test_a_server_that_dies_mid_request_falls_back(home):
    root, env = home
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]

        def die() -> None:  # accepts, reads the request, then drops the connection: a crash mid-request
            for _ in range(3):
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                conn.recv(65536)
                conn.close()

        threading.Thread(target=die, daemon=True).start()
        done = vlsearch(env, "search", "penguins", "-c", "docs", "--server", f"http://127.0.0.1:{port}",
                        timeout=120)
    assert done.returncode == 0 and "cannot reach the model server" in done.stderr
    assert "searched 'docs' in-process" in done.stderr and done.stdout.strip()


def test_a_wrong_key_is_a_clear_401(home):
    root, env = home
    url = json.loads((root / "home" / "server.json").read_text())["url"]
    done = vlsearch({**env, "VLSEARCH_API_KEY": "not-the-right-key"}, "search", "x", "-c", "docs", "--server", url)
    assert done.returncode == 1 and "HTTP 401" in done.stderr and "$VLSEARCH_API_KEY" in done.stderr


def test_detach_refuses_a_second_server_and_public_binds(home, tmp_path):
    root, env = home
    again = vlsearch(env, "serve", "--detach", "--port", str(free_port()))
    assert again.returncode == 1 and "already runs" in again.stderr
    public = vlsearch({**env, "VLSEARCH_HOME": str(tmp_path)}, "serve", "--detach", "--host", "0.0.0.0")
    assert public.returncode == 2 and "loopback only" in public.stderr


def test_stop(tmp_path, embedder_path):
    home = tmp_path / "home"
    env = {**os.environ, "VLSEARCH_HOME": str(home), "VLSEARCH_EMBEDDER": str(embedder_path)}
    assert vlsearch(env, "serve", "--detach", "--no-reranker", "--port", str(free_port())).returncode == 0
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE((home / "server.log").stat().st_mode) == 0o600
    registration = json.loads((home / "server.json").read_text())
    stopped = vlsearch(env, "serve", "--stop")
    assert stopped.returncode == 0 and "stopped the server" in stopped.stderr
    assert not (home / "server.json").exists() and process_identity(registration["pid"]) != registration["identity"]
    assert vlsearch(env, "serve", "--status").returncode == 1


# ---------------------------------------------------------------- the registered server's identity

IMPOSTOR = r"""
import json, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

log = open(sys.argv[2], "a")


class Record(BaseHTTPRequestHandler):
    def answer(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        log.write(json.dumps({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                              "body": body.decode(errors="replace")}) + "\n")
        log.flush()
        data = json.dumps({"status": "ok", "proof": "0" * 64, "data": [], "results": []}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = answer

    def log_message(self, *args):
        pass


server = HTTPServer(("127.0.0.1", int(sys.argv[1])), Record)
print("ready", flush=True)
server.serve_forever()
"""


@pytest.fixture()
def impostor(tmp_path):
    """Another program on a loopback port: answers everything with 200 and records every request."""
    port, log = free_port(), tmp_path / "impostor.jsonl"
    process = subprocess.Popen([sys.executable, "-c", IMPOSTOR, str(port), str(log)], stdout=subprocess.PIPE,
                               text=True)
    assert process.stdout.readline().strip() == "ready"
    yield process, f"http://127.0.0.1:{port}", log
    process.kill()
    process.wait()


def requests_seen(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


@pytest.fixture()
def recycled():
    """(a `sleep` process, the identity recorded for its pid): that of a server which ended, as when the
    system gave the server's pid to another program."""
    ended = subprocess.Popen(["sleep", "0.2"])
    identity = process_identity(ended.pid)
    ended.wait()
    sleeper = subprocess.Popen(["sleep", "60"])
    yield sleeper, identity
    sleeper.kill()
    sleeper.wait()


@pytest.mark.parametrize("case", ["recycled pid", "port taken over"])
def test_an_impostor_at_the_registered_address_gets_no_key_and_no_query(home, impostor, recycled, tmp_path, case):
    root, env = home
    process, url, log = impostor
    mine = tmp_path / "mine"  # a home of its own, sharing the indexed collection
    (mine / "collections").mkdir(parents=True)
    (mine / "collections" / "docs").symlink_to(root / "home" / "collections" / "docs")
    pid, identity = (recycled[0].pid, recycled[1]) if case == "recycled pid" else (process.pid,
                                                                                   process_identity(process.pid))
    (mine / "server.json").write_text(json.dumps({"url": url, "pid": pid, "identity": identity,
                                                  "key": "k" * 32, "secret": "s" * 43}))
    done = vlsearch({**env, "VLSEARCH_HOME": str(mine)}, "search", "penguins on glaciers", "-c", "docs",
                    "--no-rerank", timeout=120)
    assert done.returncode == 0 and "searched 'docs' in-process" in done.stderr and done.stdout.strip(), done.stderr
    seen = requests_seen(log)
    assert not any("authorization" in r["headers"] or "x-api-key" in r["headers"] for r in seen), seen
    assert not any("penguins" in json.dumps(r) or r["path"].startswith("/v1") for r in seen), seen
    if case == "recycled pid":  # a stale registration: removed, and the address never contacted
        assert seen == [] and not (mine / "server.json").exists()
    else:
        assert [r["path"].split("?")[0] for r in seen] == ["/identity"]
        assert "does not prove to be it" in done.stderr and "nothing was sent there" in done.stderr


def test_detach_refuses_a_taken_port(impostor, tmp_path):
    process, url, log = impostor
    env = {**os.environ, "VLSEARCH_HOME": str(tmp_path / "home"), "VLSEARCH_EMBEDDER": str(tmp_path / "none")}
    done = vlsearch(env, "serve", "--detach", "--port", url.rsplit(":", 1)[1], timeout=60)
    assert done.returncode == 1 and f"{url} is taken" in done.stderr, done.stderr
    assert not (tmp_path / "home" / "server.json").exists() and requests_seen(log) == []


def test_stop_does_not_signal_a_process_that_got_the_registered_pid(recycled, tmp_path):
    sleeper, identity = recycled
    (tmp_path / "server.json").write_text(json.dumps({"url": f"http://127.0.0.1:{free_port()}", "pid": sleeper.pid,
                                                      "identity": identity, "key": "k" * 32, "secret": "s" * 43}))
    stopped = vlsearch({**os.environ, "VLSEARCH_HOME": str(tmp_path)}, "serve", "--stop", timeout=60)
    assert sleeper.poll() is None, "the unrelated process was signalled"
    assert stopped.returncode == 1 and "signalled nothing" in stopped.stderr
    assert not (tmp_path / "server.json").exists()
