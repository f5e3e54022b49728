"""``vlsearch watch``: keep a collection up to date with folders as files come, change and go."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any

from .common import EXIT_OK, EXIT_USAGE, command, model_arguments, shown
from .index import collection_arguments, extract_arguments, open_collection


def register(commands: argparse._SubParsersAction) -> None:
    p = command(commands, "watch", help="index folders, then follow their changes (pip install 'vlsearch[watch]')",
                description="Index the folders (a normal incremental pass, with prune), then follow their "
                            "creations, changes, deletions and moves until interrupted. A file is indexed once it "
                            "has been still for --debounce seconds, so files being written are indexed complete.")
    p.add_argument("paths", nargs="+", metavar="PATH", help="local folders (or files) to watch")
    collection_arguments(p)
    p.add_argument("--debounce", type=float, default=2.0, metavar="S",
                   help="seconds a file must be left alone before it is indexed (default 2)")
    extract_arguments(p)
    p.add_argument("--quiet", "-q", action="store_true", help="no status line and no messages")
    model_arguments(p, reranker=False)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..ingest.sources import is_local
    from ..watch import Watcher, apply_changes

    remote = [p for p in args.paths if not is_local(p)]
    if remote:
        print(f"vlsearch: error: watch follows local folders only, not {remote[0]!r} "
              "(index buckets and archives with vlsearch index)", file=sys.stderr)
        return EXIT_USAGE
    collection, options = open_collection(args)
    show = _Status(quiet=args.quiet)

    def apply(changes: Any) -> Any:
        report = apply_changes(collection, changes, include=args.include, exclude=args.exclude,
                               workers=args.workers, options=options, progress=False)
        show.report(report, changes.initial)
        return report

    watcher = Watcher(args.paths, apply, debounce=args.debounce, ignore=[collection.path], on_state=show)
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        watcher.run(stop)
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        show.close()
    return EXIT_OK


class _Status:
    """A status line redrawn in place on a terminal; elsewhere, a line per batch and per folder change."""

    def __init__(self, quiet: bool) -> None:
        self.quiet, self.tty = quiet, sys.stderr.isatty()
        self.folders: dict[str, str] = {}
        self.drawn = False

    def __call__(self, state: Any) -> None:
        if self.quiet:
            return
        for folder in state.folders:
            said = f"{folder.state}: {folder.message}" if folder.message else folder.state
            if self.folders.get(folder.path) != said:
                self.folders[folder.path] = said
                if folder.state != "starting":
                    self._say(f"{shown(folder.path)}: {shown(said)}")
        if self.tty:
            sys.stderr.write("\r\x1b[2K" + shown(state.line())[:200])
            sys.stderr.flush()
            self.drawn = True

    def report(self, report: Any, initial: bool) -> None:
        if not self.quiet and (initial or report.failed or not self.tty):
            self._say(("first pass: " if initial else "") + report.summary(shown))

    def _say(self, text: str) -> None:
        if self.drawn:
            sys.stderr.write("\r\x1b[2K")
        print(shown(f"vlsearch: {text}", lines=True), file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.drawn:
            sys.stderr.write("\n")
