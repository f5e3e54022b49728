#!/usr/bin/env python
"""A re-run of ``vlsearch index`` with nothing to do: wall time, peak RSS and whether torch was imported.

Indexes a corpus of N small files (text notes, pictures, two-page PDFs) once, then times, each in a
fresh ``vlsearch index DIR -c NAME --quiet`` process (interpreter start included):
  unchanged - every file as indexed: size and time settle it
  touched   - every file's time changed, content not: each file is read and hashed
and ``vlsearch info`` / ``vlsearch collections``: wall time, CPU time (user + system: what a loaded
machine inflates least), peak RSS. ``--importtime FILE`` writes the ``python -X importtime`` profile
of one unchanged re-run there.

Example (CPU, tiny random checkpoint):
    python bench/bench_noop.py --files 1000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from vlsearch.testing import build_checkpoint, gradient_image  # noqa: E402

#: runs the command line, then reports what the process imported and its peak RSS on stderr's last line
WRAPPER = """
import json, sys
from pathlib import Path
from vlsearch.cli import main
code = main(sys.argv[1:])
peak = next(int(l.split()[1]) for l in Path('/proc/self/status').read_text().splitlines() if l.startswith('VmHWM:'))
print(json.dumps({"code": code, "torch": "torch" in sys.modules, "transformers": "transformers" in sys.modules,
                  "peak_mib": peak / 1024}), file=sys.stderr)
"""


def make_corpus(root: Path, files: int) -> None:
    """``files`` files: 85% text notes, 10% PNG pictures, 5% two-page PDFs."""
    root.mkdir(parents=True)
    for i in range(files):
        if i % 20 == 0:
            pages = [gradient_image(300, 400, seed=i), gradient_image(300, 400, seed=i + 1)]
            pages[0].save(root / f"doc{i:04}.pdf", save_all=True, append_images=pages[1:], resolution=50)
        elif i % 10 == 5:
            gradient_image(160, 120, seed=i).save(root / f"pic{i:04}.png")
        else:
            (root / f"note{i:04}.txt").write_text(f"note {i}: " + "about the quarterly figures " * (5 + i % 30))


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(argv: list[str], env: dict[str, str], python_flags: tuple[str, ...] = ()) -> tuple[float, dict]:
    started, cpu = time.perf_counter(), cpu_seconds()
    done = subprocess.run([sys.executable, *python_flags, "-c", WRAPPER, *argv], env=env, capture_output=True,
                          text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{argv} failed:\n{done.stderr}")
    report = next(line for line in reversed(done.stderr.splitlines()) if line.startswith('{"code"'))
    return seconds, {**json.loads(report), "cpu": cpu_seconds() - cpu, "stderr": done.stderr}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--checkpoint", help="model directory (default: a tiny random checkpoint)")
    parser.add_argument("--importtime", help="write the import profile of one unchanged re-run here")
    parser.add_argument("--work", help="folder of the corpus and collection (reused when there: the first index "
                                       "is skipped)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="vlsearch-bench-noop-"))
    model = args.checkpoint or str(work / "tiny")
    if not (work / "tiny").exists() and not args.checkpoint:
        build_checkpoint(work / "tiny")
    corpus = work / "corpus"
    env = {**os.environ, "VLSEARCH_HOME": str(work / "home"), "VLSEARCH_EMBEDDER": model}
    index = ["index", str(corpus), "-c", "bench", "--quiet"]
    first = 0.0
    if not corpus.exists():
        make_corpus(corpus, args.files)
        first, _ = run(index, env)
    rows: dict[str, dict] = {}

    def measure(name: str, argv: list[str], before: Callable[[], None] | None = None) -> None:
        times, cpus, last = [], [], {}
        for _ in range(args.repeats):
            if before:
                before()
            seconds, last = run(argv, env)
            times.append(seconds)
            cpus.append(last["cpu"])
        rows[name] = {"seconds": statistics.median(times), "cpu_seconds": statistics.median(cpus),
                      "peak_mib": last["peak_mib"], "torch": last["torch"], "transformers": last["transformers"]}

    def touch() -> None:
        now = time.time()
        for path in corpus.iterdir():
            os.utime(path, (now, now))

    measure("index, unchanged", index)
    measure("index, touched", index, touch)
    measure("info", ["info", "bench"])
    measure("collections", ["collections"])
    if args.importtime:
        _, out = run(index, env, ("-X", "importtime"))
        Path(args.importtime).write_text(out["stderr"])
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load "
          f"{os.getloadavg()[0]:.1f}; {len(list(corpus.iterdir()))} files; first index {first:.1f} s; "
          f"median of {args.repeats} processes each")
    print(f"{'run':18} {'wall s':>7} {'CPU s':>6} {'peak RSS MiB':>13}  torch imported")
    for name, row in rows.items():
        print(f"{name:18} {row['seconds']:7.2f} {row['cpu_seconds']:6.2f} {row['peak_mib']:13.0f}  "
              f"{'yes' if row['torch'] else 'no'}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
