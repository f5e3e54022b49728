"""MicroBatcher on its own (no model): merging, bounds, isolation of failures, waiting, back-pressure."""

from __future__ import annotations

import threading
import time

import pytest

from vlsearch.server.batcher import MicroBatcher
from vlsearch.errors import Overloaded
from vlsearch.server.errors import classify


class Recorder:
    """A fake model: records each call, can hold the first one, fails on the item "bad"."""

    def __init__(self, hold: bool = False) -> None:
        self.calls: list[list[str]] = []
        self.release = threading.Event()
        self.entered = threading.Event()
        if not hold:
            self.release.set()

    def __call__(self, items: list[str]) -> list[str]:
        self.calls.append(list(items))
        self.entered.set()
        self.release.wait(10)
        if "bad" in items:
            raise ValueError("bad item in the batch")
        return [item.upper() for item in items]


def test_requests_queued_while_busy_are_merged_and_split_back():
    run = Recorder(hold=True)
    batcher = MicroBatcher("t", run, max_items=64, wait_s=0)
    first = batcher.submit(["a"])
    assert run.entered.wait(5)
    later = [batcher.submit([f"x{i}", f"y{i}"]) for i in range(5)]
    run.release.set()
    assert first.result(5) == ["A"]
    assert [f.result(5) for f in later] == [[f"X{i}", f"Y{i}"] for i in range(5)]
    assert run.calls == [["a"], [s for i in range(5) for s in (f"x{i}", f"y{i}")]]
    batcher.close()


def test_max_items_bounds_merging_but_never_splits_a_request():
    run = Recorder(hold=True)
    batcher = MicroBatcher("t", run, max_items=4, wait_s=0)
    batcher.submit(["first"])
    assert run.entered.wait(5)
    futures = [batcher.submit(["a", "b"]), batcher.submit(["c", "d"]), batcher.submit(list("efghij"))]
    run.release.set()
    assert futures[2].result(5) == list("EFGHIJ")
    assert run.calls[1:] == [["a", "b", "c", "d"], list("efghij")]
    batcher.close()


def test_a_failing_request_fails_alone():
    run = Recorder(hold=True)
    batcher = MicroBatcher("t", run, max_items=64, wait_s=0)
    batcher.submit(["first"])
    assert run.entered.wait(5)
    good, bad, other = batcher.submit(["g"]), batcher.submit(["bad"]), batcher.submit(["o"])
    run.release.set()
    assert good.result(5) == ["G"] and other.result(5) == ["O"]
    with pytest.raises(ValueError, match="bad item"):
        bad.result(5)
    assert ["g", "bad", "o"] in run.calls  # tried together first, then one by one
    assert batcher.submit(["after"]).result(5) == ["AFTER"]  # the worker lives on
    batcher.close()


def test_waits_for_announced_requests_only():
    run = Recorder()
    batcher = MicroBatcher("t", run, max_items=64, wait_s=2.0)
    started = time.monotonic()
    assert batcher.submit(["alone"]).result(5) == ["ALONE"]
    assert time.monotonic() - started < 1.0, "a lone request must not wait for a batch"

    slot = batcher.reserve()  # a request still decoding its inputs
    early = batcher.submit(["early"])
    time.sleep(0.1)
    late = slot.submit(["late"])
    assert early.result(5) == ["EARLY"] and late.result(5) == ["LATE"]
    assert run.calls[-1] == ["early", "late"]

    with batcher.reserve():  # withdrawn without submitting: the worker stops waiting for it
        pass
    started = time.monotonic()
    assert batcher.submit(["next"]).result(5) == ["NEXT"]
    assert time.monotonic() - started < 1.0
    batcher.close()


def test_queue_limit_and_cancelled_requests():
    run = Recorder(hold=True)
    batcher = MicroBatcher("t", run, max_items=64, wait_s=0, max_queue_items=3)
    batcher.submit(["first"])
    assert run.entered.wait(5)
    kept = batcher.submit(["a", "b"])
    cancelled = batcher.submit(["c"])
    with pytest.raises(Overloaded) as info:  # a domain error; the server maps it to HTTP
        batcher.submit(["d"])
    assert classify(info.value)[:3] == (503, "service_unavailable", "queue_full") and "queue is full" in str(info.value)
    assert info.value.retry_after == 1
    assert cancelled.cancel()
    run.release.set()
    assert kept.result(5) == ["A", "B"]
    assert ["c"] not in run.calls and ["a", "b", "c"] not in run.calls
    assert batcher.submit([]).result(1) == []
    batcher.close()
    with pytest.raises(Overloaded, match="shutting down") as info:
        batcher.submit(["late"])
    assert classify(info.value)[:3] == (503, "service_unavailable", "shutting_down")
