"""The run's time: items guessed at planning, the pace measured over a small first batch, a warning with
the way to a GPU for a run of hours on the CPU, and a progress bar of items on a terminal only."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

from ingest_files import write_text_pdf, write_video
from vlsearch.ingest import ExtractOptions, extract_all
from vlsearch.ingest.discover import discover
from vlsearch.ingest.estimate import announce, expected_items
from vlsearch.ingest.sources import content_hash
from vlsearch.ingest.writer import FIRST_BATCH, IndexReport, IndexWriter
from vlsearch.stores import open_store
from vlsearch.testing import gradient_image

OPTIONS = ExtractOptions(segment_seconds=5.0, ocr="never")


def corpus(root: Path) -> Path:
    root.mkdir()
    write_text_pdf(root / "report.pdf", 3)
    write_video(root / "clip.mp4", frames=96, fps=8)  # 12 s: 3 segments of 5 s
    gradient_image(64, 48).save(root / "a.png")
    (root / "notes.txt").write_text("word " * 520)  # 2,600 characters: 2 chunks of 1,500 with 200 shared
    return root


def test_the_guess_counts_pages_segments_and_chunks(tmp_path):
    found = [f for f in discover([corpus(tmp_path / "c")]) if f.ok]
    todo = [(f, content_hash(f.path)) for f in found]
    items = sum(len(r.pieces) for r in extract_all(todo, OPTIONS, workers=0))
    assert items == 9 and expected_items(found, OPTIONS) == items


def test_the_estimate_warns_of_hours_on_the_cpu_only():
    hours = announce(8, 40_000, elapsed=8.0, on_cpu=True)
    assert "about 11 h 06 min to go for ~40000 items (1.00 items/s" in hours
    assert "warning" in hours and "vlsearch serve" in hours and "--model http://" in hours
    assert "warning" not in announce(8, 40_000, elapsed=8.0, on_cpu=False)
    assert announce(8, 40, elapsed=8.0, on_cpu=True) == ""  # half a minute: the bar says it


def test_the_first_batch_is_small_and_announces_the_run(tmp_path, embedder, capsys):
    (tmp_path / "c").mkdir()
    for i in range(FIRST_BATCH + 4):
        gradient_image(64, 48, seed=i).save(tmp_path / "c" / f"p{i:02}.png")
    found = [f for f in discover([tmp_path / "c"]) if f.ok]
    report, calls, embed = IndexReport(), [], embedder.embed
    embedder.embed = lambda items, **kw: calls.append(len(items)) or embed(items, **kw)  # counts the batches
    try:
        with IndexWriter(open_store(str(tmp_path / "store")), embedder, None, report) as writer:
            writer.start(len(found), items=FIRST_BATCH * 100_000, on_cpu=True)
            writer.consume(extract_all([(f, content_hash(f.path)) for f in found], OPTIONS, workers=0))
    finally:
        del embedder.embed
    err = capsys.readouterr().err
    assert calls == [FIRST_BATCH, 4] and report.items == FIRST_BATCH + 4
    assert "items/s over the first batch" in err and "vlsearch serve" in err, err


def test_a_bar_of_items_on_a_terminal_and_none_elsewhere(tmp_path, embedder_path):
    folder = corpus(tmp_path / "c")
    env = {**os.environ, "VLSEARCH_HOME": str(tmp_path / "home"), "VLSEARCH_EMBEDDER": str(embedder_path)}
    command = [sys.executable, "-m", "vlsearch", "index", str(folder), "--workers", "0", "--segment-seconds", "5",
               "--ocr", "never"]
    piped = subprocess.run([*command, "-c", "piped"], env=env, capture_output=True, text=True, timeout=300)
    assert piped.returncode == 0 and "9 items embedded" in piped.stderr and "item/s" not in piped.stderr
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # a terminal's size
    with subprocess.Popen([*command, "-c", "terminal"], env=env, stdout=subprocess.DEVNULL, stderr=follower) as run:
        os.close(follower)
        seen = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the terminal closed with the process
                break
            if not chunk:
                break
            seen += chunk
    os.close(leader)
    text = seen.decode(errors="replace")
    assert run.returncode == 0 and "9/9 [" in text and "4/4 files" in text, text
