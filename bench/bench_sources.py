#!/usr/bin/env python
"""Sources beyond the local disk: objects/s from an S3-protocol server, Office pages/s per core, and
the cost of archive members as archives grow.

Buckets: the same corpus (small text notes and PNG pictures) is written to a local folder and to a
bucket of moto's S3 server on loopback (a process of its own); both are listed (``discover``, best of 3), indexed into fresh collections
(tiny random checkpoint, ``workers`` decoding processes) and checked again with nothing changed (the
incremental pass: size and time, no download). The local disk is the baseline of each ratio.

Office: documents written by python-docx (text pages), python-pptx (slides) and openpyxl (sheets) are
extracted (LibreOffice to PDF, then pages rendered with their text layer) with 1 and with ``workers``
processes; the baseline, in the same run, is the same pages given as the PDFs LibreOffice made
(rendering only). Pages/s per core = pages/s divided by the processes used.

Archives: a zip and a tar.gz of N small text members each (N = 100 and ``--archive-members``) are
listed (``discover``) and their first ``--sample`` members read in order (``fingerprint``, what
indexing does for each member first): ms per member should not grow with N.

Example (CPU):
    python bench/bench_sources.py --objects 200 --documents 12
    python bench/bench_sources.py --only archives --archive-members 100000
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # the tests' servers and writers

from vlsearch.collection import Collection  # noqa: E402
from vlsearch.ingest import ExtractOptions, discover, extract_all, fingerprint  # noqa: E402
from vlsearch.testing import build_checkpoint, gradient_image  # noqa: E402


def corpus(folder: Path, count: int) -> dict[str, bytes]:
    """``count`` files: two text notes for every picture (96x64 PNG)."""
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, bytes] = {}
    for i in range(count):
        if i % 3 == 2:
            path = folder / f"pics/{i:05d}.png"
            path.parent.mkdir(exist_ok=True)
            gradient_image(96, 64, seed=i).save(path)
        else:
            path = folder / f"notes/{i:05d}.txt"
            path.parent.mkdir(exist_ok=True)
            path.write_text(f"Note {i} about penguins, glaciers and field work in the southern ocean. " * 3)
        files[str(path.relative_to(folder))] = path.read_bytes()
    return files


def timed(function, *args, **kwargs):
    started = time.perf_counter()
    value = function(*args, **kwargs)
    return time.perf_counter() - started, value


@contextlib.contextmanager
def moto_process():
    """moto's S3 server in a process of its own (in a thread it would share this process's GIL); its URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            with socket.socket() as attempt:
                if attempt.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=10)


def buckets(args: argparse.Namespace, work: Path, checkpoint: Path) -> None:
    from source_helpers import s3_client, s3_environment

    local = work / "local"
    files = corpus(local, args.objects)
    options = ExtractOptions(chunk_chars=400, chunk_overlap=50)
    warm = work / "warm"  # an untimed run first: imports, the model's files in the page cache
    corpus(warm, 6)
    Collection(str(work / "c-warm"), model=str(checkpoint)).add([warm], options=options, workers=args.workers,
                                                                progress=False)
    with moto_process() as endpoint:
        os.environ.update(s3_environment(endpoint))
        client = s3_client(endpoint)
        client.create_bucket(Bucket="bench")
        for key, body in files.items():
            client.put_object(Bucket="bench", Key=f"corpus/{key}", Body=body)
        timings: dict[str, list[tuple[float, ...]]] = {"local disk": [], "s3 loopback": []}
        for repeat in range(args.repeats):  # the two sources take turns, so drift hits both alike
            for name, root in (("local disk", str(local)), ("s3 loopback", "s3://bench/corpus")):
                # the first listing also opens the store's session: the best of 3 is the listing itself
                list_s, listed = min(timed(lambda r=root: [f for f in discover([r]) if f.ok]) for _ in range(3))
                assert len(listed) == len(files)
                collection = Collection(str(work / f"c-{name.split()[0]}-{repeat}"), model=str(checkpoint))
                index_s, report = timed(collection.add, [root], options=options, workers=args.workers,
                                        progress=False)
                assert not report.failed and report.new == len(files), report.summary()
                again_s, again = timed(collection.add, [root], options=options, workers=args.workers,
                                       progress=False)
                assert again.unchanged == len(files), again.summary()
                timings[name].append((len(files) / list_s, len(files) / index_s, len(files) / again_s))
        rows = [(name, *(max(t[i] for t in runs) for i in range(3))) for name, runs in timings.items()]
    base = rows[0]
    print(f"\nbuckets: {len(files)} objects ({args.objects // 3} PNG pictures, the rest text notes), "
          f"workers={args.workers}, best of {args.repeats}")
    print(f"{'source':<13} {'listed/s':>9} {'indexed/s':>10} {'vs disk':>8} {'unchanged/s':>12} {'vs disk':>8}")
    for name, listed, indexed, unchanged in rows:
        print(f"{name:<13} {listed:>9.0f} {indexed:>10.1f} {indexed / base[2]:>7.2f}x {unchanged:>12.0f} "
              f"{unchanged / base[3]:>7.2f}x")


def office(args: argparse.Namespace, work: Path) -> None:
    from source_helpers import libreoffice_convert, write_docx, write_pptx, write_xlsx

    if shutil.which("soffice") is None:
        print("\noffice: skipped (LibreOffice is not installed)")
        return
    folder = work / "office"
    folder.mkdir()
    for i in range(args.documents):
        kind = i % 3
        if kind == 0:
            write_docx(folder / f"{i:03d}.docx", [f"Report {i} page {p}. " + "Text of the page. " * 60
                                                 for p in range(4)])
        elif kind == 1:
            write_pptx(folder / f"{i:03d}.pptx", [f"Slide {p} of deck {i}" for p in range(4)])
        else:
            write_xlsx(folder / f"{i:03d}.xlsx", [[f"row {r}", r * 3, r * 7] for r in range(120)])
    documents = sorted(folder.iterdir())
    pdfs = work / "pdfs"
    for suffix in (".docx", ".pptx", ".xlsx"):
        libreoffice_convert([d for d in documents if d.suffix == suffix], "pdf", pdfs)
    options = ExtractOptions(max_pixels=args.max_pixels, office_timeout=300)

    def pages_per_second(root: Path, workers: int) -> tuple[float, int]:
        tasks = [(f, fingerprint(f)) for f in discover([root]) if f.ok]
        seconds, results = timed(lambda: list(extract_all(tasks, options, workers=workers)))
        assert all(r.ok for r in results), [r.error for r in results if not r.ok]
        pages = sum(len(r.pieces) for r in results)
        return pages / seconds, pages

    rows = []
    for workers in sorted({1, args.workers}):
        for name, root in (("pdf (baseline)", pdfs), ("office", folder)):
            rate, pages = pages_per_second(root, workers)
            rows.append((name, workers, pages, rate))
    print(f"\noffice: {len(documents)} documents (docx 4 pages, pptx 4 slides, xlsx 120 rows), "
          f"pages rendered to {args.max_pixels} pixels")
    print(f"{'input':<15} {'procs':>5} {'pages':>6} {'pages/s':>8} {'per core':>9} {'vs pdf':>7}")
    for name, workers, pages, rate in rows:
        base = next(r for n, w, _, r in rows if n.startswith("pdf") and w == workers)
        print(f"{name:<15} {workers:>5} {pages:>6} {rate:>8.2f} {rate / workers:>9.2f} {rate / base:>6.2f}x")


def archives(args: argparse.Namespace, work: Path) -> None:
    from source_helpers import tar_bytes, zip_bytes

    print(f"\narchives: small text members, the first {args.sample} read in order")
    print(f"{'archive':<12} {'members':>8} {'MiB':>6} {'list s':>7} {'ms/member':>10}")
    for count in sorted({100, args.archive_members}):
        data = {f"m/{i:06}.txt": f"Member {i} about owls and archives. ".encode() * 4 for i in range(count)}
        for name, write in (("zip", zip_bytes), ("tar.gz", tar_bytes)):
            path = work / f"members-{count}.{name}"
            path.write_bytes(write(data))
            listed_s, found = timed(lambda: [f for f in discover([path]) if f.ok])
            sample = found[:args.sample]
            read_s, _ = timed(lambda: [fingerprint(f) for f in sample])
            print(f"{name:<12} {count:>8} {path.stat().st_size / 2 ** 20:>6.1f} {listed_s:>7.2f} "
                  f"{1000 * read_s / len(sample):>10.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=200, help="files in the bucket corpus (default 200)")
    parser.add_argument("--documents", type=int, default=12, help="Office documents (default 12)")
    parser.add_argument("--workers", type=int, default=2, help="decoding processes (default 2)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each bucket variant, best kept (default 2)")
    parser.add_argument("--max-pixels", type=int, default=1843200, help="page pixel budget (default 1843200)")
    parser.add_argument("--archive-members", type=int, default=20000, help="members of the big archives "
                        "(default 20000)")
    parser.add_argument("--sample", type=int, default=50, help="archive members read (default 50)")
    parser.add_argument("--only", choices=["buckets", "office", "archives"], help="run one part")
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}")
    with tempfile.TemporaryDirectory(prefix="vlsearch-bench-") as tmp:
        work = Path(tmp)
        if args.only in (None, "buckets"):
            buckets(args, work, build_checkpoint(work / "tiny", seed=0, tie_word_embeddings=True))
        if args.only in (None, "office"):
            office(args, work)
        if args.only in (None, "archives"):
            archives(args, work)


if __name__ == "__main__":
    main()
