"""Watched folders: a first incremental pass, then creations, changes, deletions and moves, debounced so
that a file being written is indexed once, complete; a folder that goes away is reported, the others
stay watched. The same through ``vlsearch watch`` and ``vlsearch serve --watch``."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import pytest

from vlsearch.collection import Collection
from dataclasses import replace

from source_helpers import write_docx, zip_bytes
from vlsearch.ingest import ExtractOptions, discover, extract_all, fingerprint
from vlsearch.watch import Changes, Watcher, apply_changes

pytest.importorskip("watchdog")
OPTIONS = ExtractOptions(chunk_chars=400, chunk_overlap=50)
DEBOUNCE = 0.4


def wait_for(condition: Callable[[], object], timeout: float = 30, what: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("VLSEARCH_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def sources(c: Collection) -> set[str]:
    return {Path(s).name for s, e in c.store.files().items() if e.status == "done"}


def test_watcher_follows_creations_changes_deletions_and_moves(home, tmp_path, embedder_path):
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    (one / "a.txt").write_text("x alpha first version")
    (one / "old.txt").write_text("x indexed, then deleted while nothing watched")
    (two / "b.txt").write_text("x bravo in the second folder")
    c = Collection("watched", model=str(embedder_path))
    c.add([one], options=OPTIONS, workers=0)
    (one / "old.txt").unlink()  # while nothing watched: the first pass catches up
    (one / "new.txt").write_text("x created while nothing watched")
    indexed: list[Changes] = []

    def apply(changes: Changes):
        indexed.append(changes)
        return apply_changes(c, changes, options=OPTIONS, workers=0)

    watcher = Watcher([one, two], apply, debounce=DEBOUNCE, poll=0.05, ignore=[c.path])
    stop = threading.Event()
    thread = threading.Thread(target=watcher.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(lambda: watcher.snapshot()["batches"] >= 1, what="the first pass")
        assert indexed[0].initial and sources(c) == {"a.txt", "new.txt", "b.txt"}
        state = watcher.snapshot()
        assert [f["state"] for f in state["folders"]] == ["watching", "watching"]
        # a file written slowly, in pieces closer together than the debounce, is indexed once, complete
        batches = watcher.snapshot()["batches"]
        with open(one / "slow.txt", "w") as handle:
            for word in ("x", "charlie", "written", "slowly", "to", "the", "end"):
                handle.write(word + " ")
                handle.flush()
                time.sleep(DEBOUNCE / 3)
        wait_for(lambda: watcher.snapshot()["batches"] > batches, what="slow.txt")
        time.sleep(2 * DEBOUNCE)
        assert watcher.snapshot()["batches"] == batches + 1 and "slow.txt" in sources(c)  # once, not in pieces
        stored = [r.text for r in c.search("charlie", mode="lexical", rerank=False) if r.source.endswith("slow.txt")]
        assert stored == ["x charlie written slowly to the end"]
        # a change, a move, a deletion, a folder moved in
        (one / "a.txt").write_text("x alpha second version")
        os.rename(one / "slow.txt", one / "renamed.txt")
        (two / "b.txt").unlink()
        outside = tmp_path / "outside"
        outside.mkdir()
        (outside / "c.txt").write_text("x delta in a folder moved in")
        os.rename(outside, one / "moved-in")
        wait_for(lambda: sources(c) == {"a.txt", "new.txt", "renamed.txt", "c.txt"}, what="the changes")
        assert [r.text for r in c.search("alpha", mode="lexical", rerank=False)] == ["x alpha second version"]
        # a watched folder deleted: said so, the other one still watched
        shutil.rmtree(two)
        wait_for(lambda: watcher.snapshot()["folders"][1]["state"] == "missing", what="the missing folder")
        assert "deleted" in watcher.snapshot()["folders"][1]["message"]
        assert "1 missing: two" in watcher.state.line()
        (one / "d.txt").write_text("x echo after the other folder went")
        wait_for(lambda: "d.txt" in sources(c), what="d.txt")
        # it comes back: watched again, after a pass over it
        two.mkdir()
        (two / "e.txt").write_text("x foxtrot")
        wait_for(lambda: "e.txt" in sources(c) and watcher.snapshot()["folders"][1]["state"] == "watching",
                 what="the folder back")
    finally:
        stop.set()
        thread.join(timeout=30)
    assert watcher.snapshot()["state"] == "stopped" and watcher.snapshot()["failed"] == 0


def test_watching_follows_no_link_out_of_the_folder(home, tmp_path, embedder_path):
    watched, outside = tmp_path / "watched", tmp_path / "outside"
    watched.mkdir()
    outside.mkdir()
    (watched / "a.txt").write_text("x alpha inside")
    (outside / "secret.txt").write_text("x secret outside the watched folder")
    (outside / "sub").mkdir()
    (outside / "sub" / "deep.txt").write_text("x deep secret outside")
    c = Collection("links", model=str(embedder_path))
    watcher = Watcher([watched], lambda ch: apply_changes(c, ch, options=OPTIONS, workers=0), debounce=DEBOUNCE,
                      poll=0.05, ignore=[c.path])
    stop = threading.Event()
    thread = threading.Thread(target=watcher.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(lambda: sources(c) == {"a.txt"}, what="the first pass")
        # links created inside the folder: to a file, to a folder
        (watched / "link.txt").symlink_to(outside / "secret.txt")
        (watched / "linked-folder").symlink_to(outside / "sub", target_is_directory=True)
        (watched / "b.txt").write_text("x bravo after the links")
        wait_for(lambda: "b.txt" in sources(c), what="b.txt")
        time.sleep(3 * DEBOUNCE)
        assert sources(c) == {"a.txt", "b.txt"}
        failed = {Path(s).name: e.error for s, e in c.store.files().items() if e.status == "failed"}
        assert "symbolic link" in failed["link.txt"]
        # the watched folder itself replaced by a link
        watched.rename(tmp_path / "watched-before")
        watched.symlink_to(outside, target_is_directory=True)
        wait_for(lambda: watcher.snapshot()["folders"][0]["state"] == "missing", what="the replaced folder")
        # the rename and the link are two steps: the watcher may see the folder gone before the link is there
        assert re.search("symbolic link|deleted", watcher.snapshot()["folders"][0]["message"])
        (outside / "later.txt").write_text("x written outside after the swap")
        time.sleep(4 * DEBOUNCE)
        assert watcher.snapshot()["folders"][0]["state"] == "missing"
        assert not {"secret.txt", "deep.txt", "later.txt"} & sources(c)
    finally:
        stop.set()
        thread.join(timeout=30)


def test_a_file_swapped_for_a_link_after_listing_is_not_read(tmp_path):
    """The open-time check: what discovery saw as a file, swapped for a link before it is read."""
    watched, outside = tmp_path / "watched", tmp_path / "outside"
    watched.mkdir()
    outside.mkdir()
    for folder, word in ((watched, "inside"), (outside, "secret")):
        (folder / "a.txt").write_text(f"x {word} text")
        (folder / "b.zip").write_bytes(zip_bytes({"n.txt": f"x {word} member".encode()}))
    tasks = [(f, fingerprint(f)) for f in discover([watched], follow_symlinks=False) if f.ok]
    assert sorted(f.relative for f, _ in tasks) == ["a.txt", "b.zip!/n.txt"]
    for name in ("a.txt", "b.zip"):
        (watched / name).unlink()
        (watched / name).symlink_to(outside / name)
    results = list(extract_all(tasks, replace(OPTIONS, follow_links=False), workers=0))
    assert [r.ok for r in results] == [False, False]
    assert all("symbolic link" in r.error for r in results), [r.error for r in results]
    assert next(extract_all(tasks[:1], OPTIONS, workers=0)).ok  # followed when links are


@pytest.mark.skipif(shutil.which("soffice") is None, reason="LibreOffice is not installed")
def test_decoders_read_the_file_opened_without_links_also_libreoffice(tmp_path):
    """Link-free reading hands decoders the open file itself; LibreOffice, a child process, opens it too."""
    folder = tmp_path / "docs"
    folder.mkdir()
    write_docx(folder / "memo.docx", ["A memo about puffins", "Second page"])
    (found,) = discover([folder], follow_symlinks=False)
    (result,) = extract_all([(found, fingerprint(found))], replace(OPTIONS, follow_links=False), workers=0)
    assert result.ok, result.error
    assert [p.page for p in result.pieces] == [1, 2] and "puffins" in result.pieces[0].text


def test_vlsearch_watch_command(home, tmp_path, embedder_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.txt").write_text("x the first note")
    (folder / "bad\x1b]0;PWNED\x07.pdf").write_bytes(b"not a pdf")  # its failure is reported, escaped
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, "-m", "vlsearch", "watch", str(folder), "-c", "cli-watch",
                                "--model", str(embedder_path), "--workers", "0", "--debounce", str(DEBOUNCE)],
                               stderr=subprocess.PIPE, text=True, env=env)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(process.stderr.readline, "")), daemon=True)
    reader.start()
    try:
        wait_for(lambda: any("first pass" in line for line in lines), timeout=120, what="the first pass")
        (folder / "b.txt").write_text("x the second note")
        wait_for(lambda: any("1 new" in line for line in lines if "first pass" not in line), what="b.txt")
    finally:
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=60)
        reader.join(timeout=5)
    assert code == 0, "".join(lines)
    assert sources(Collection("cli-watch")) == {"a.txt", "b.txt"}
    assert any(f"{folder}: watching" in line for line in lines), lines
    assert any("bad\\x1b]0;PWNED\\x07.pdf" in line for line in lines), lines
    assert not any("\x1b" in line or "\x07" in line for line in lines), lines
    refused = subprocess.run([sys.executable, "-m", "vlsearch", "watch", "s3://bucket/x"], capture_output=True,
                             text=True, env=env)
    assert refused.returncode == 2 and "watch follows local folders only" in refused.stderr


def test_serve_watch_shows_the_state_and_indexes_changes(home, tmp_path, embedder_path):
    from server_helpers import serve
    from vlsearch.cli import build_parser
    from vlsearch.cli.serve import server_config
    from vlsearch.server.config import ServerConfig

    folder = tmp_path / "watched"
    folder.mkdir()
    (folder / "a.txt").write_text("x a note about seals")
    args = build_parser().parse_args(["serve", "--watch", str(folder), "--watch-collection", "live",
                                      "--watch-debounce", str(DEBOUNCE)])
    parsed = server_config(args)
    assert parsed.watch_paths == (folder.resolve(),) and parsed.watch_collection == "live"
    config = ServerConfig(model=str(embedder_path), no_reranker=True, home=home, watch_paths=(folder,),
                          watch_collection="live", watch_debounce=DEBOUNCE, ingest_workers=0)
    with serve(config) as running, running.client() as http:
        def state() -> dict:
            answer = http.get("/v1/collections/live")
            return answer.json()["watch"] if answer.status_code == 200 else {}

        first = wait_for(lambda: (s := state()) and s["batches"] >= 1 and s["state"] == "idle" and s, what="first")
        assert first["folders"] == [{"path": str(folder.resolve()), "state": "watching", "message": ""}]
        assert first["files_indexed"] == 1
        (folder / "b.txt").write_text("x a note about walruses")
        wait_for(lambda: state().get("files_indexed") == 2, what="b.txt")
        listed = http.get("/v1/collections").json()["data"]
        assert [c["watch"]["files_indexed"] for c in listed if c["name"] == "live"] == [2]
        jobs = http.get("/v1/jobs").json()["data"]
        assert {j["source"] for j in jobs} == {"watch"} and all(j["status"] == "done" for j in jobs)
        found = http.post("/v1/collections/live/search", json={"query": "walruses", "mode": "lexical"}).json()
        assert [Path(r["source"]).name for r in found["results"]] == ["b.txt"]
        # copied back with the same content: a job that uses no model
        embedded = _metric(http.get("/metrics").text, "vlsearch_items_embedded_total")
        batches = state()["batches"]
        shutil.copy(folder / "a.txt", tmp_path / "a.txt")
        shutil.copy(tmp_path / "a.txt", folder / "a.txt")
        after = wait_for(lambda: (s := state())["batches"] > batches and s["state"] == "idle" and s, what="a.txt")
        assert after["files_indexed"] == 2 and after["items"] == first["items"] + 1
        assert _metric(http.get("/metrics").text, "vlsearch_items_embedded_total") == embedded


def _metric(text: str, name: str) -> float:
    return next(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " "))


def test_a_file_swapped_for_a_fifo_or_a_link_is_not_hashed_without_links(tmp_path):
    """The first read of a watched file is its content hash: without links it never blocks on a FIFO
    nor follows a link swapped in after the listing."""
    from vlsearch.errors import MediaError
    from vlsearch.ingest.entries import Found

    (tmp_path / "a.txt").write_text("x alpha")
    (found,) = discover([tmp_path])
    (tmp_path / "a.txt").unlink()
    os.mkfifo(tmp_path / "a.txt")  # a read of it would wait for a writer forever
    with pytest.raises(MediaError, match="not a regular file"):
        fingerprint(found, follow_links=False)
    (tmp_path / "a.txt").unlink()
    (tmp_path / "a.txt").symlink_to(tmp_path / "elsewhere.txt")
    (tmp_path / "elsewhere.txt").write_text("x outside")
    with pytest.raises(MediaError, match="symbolic link"):
        fingerprint(Found(found.path, found.kind, found.size, found.mtime), follow_links=False)
