"""Prometheus metrics of one app (its own registry, so several apps can live in one process)."""

from __future__ import annotations

from typing import Any

from ..errors import MissingExtraError

try:
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
except ImportError as exc:  # pragma: no cover - the server extra brings it
    raise MissingExtraError("prometheus-client", "server") from exc

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class Metrics:
    """Counters, histograms and gauges exposed at ``/metrics``.

    - ``vlsearch_requests_total{route,method,status}``, ``vlsearch_request_seconds{route}``
    - ``vlsearch_batch_items{model}`` and ``vlsearch_batch_requests{model}`` (per model call),
      ``vlsearch_batch_seconds{model}``
    - ``vlsearch_queue_items{model}``: inputs waiting for the model
    - ``vlsearch_items_embedded_total``, ``vlsearch_pairs_scored_total``
    - ``vlsearch_jobs{status}``: ingestion jobs by status
    """

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        try:  # no "_created" twin of every series
            from prometheus_client import disable_created_metrics

            disable_created_metrics()
        except ImportError:  # pragma: no cover - older prometheus-client
            pass
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("vlsearch_requests", "HTTP requests by route, method and status",
                                ["route", "method", "status"], registry=r)
        self.latency = Histogram("vlsearch_request_seconds", "HTTP request latency by route", ["route"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.batch_items = Histogram("vlsearch_batch_items", "inputs per model call", ["model"],
                                     buckets=BATCH_BUCKETS, registry=r)
        self.batch_requests = Histogram("vlsearch_batch_requests", "requests merged into one model call", ["model"],
                                        buckets=BATCH_BUCKETS, registry=r)
        self.batch_seconds = Histogram("vlsearch_batch_seconds", "time of one model call", ["model"],
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.queue_items = Gauge("vlsearch_queue_items", "inputs waiting for the model", ["model"], registry=r)
        self.embedded = Counter("vlsearch_items_embedded", "inputs embedded", registry=r)
        self.scored = Counter("vlsearch_pairs_scored", "(query, document) pairs scored", registry=r)
        self.jobs = Gauge("vlsearch_jobs", "ingestion jobs by status", ["status"], registry=r)
        for status in ("queued", "running", "done", "failed"):
            self.jobs.labels(status).set(0)

    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def batch(self, name: str, items: int, requests: int, seconds: float) -> None:
        self.batch_items.labels(name).observe(items)
        self.batch_requests.labels(name).observe(requests)
        self.batch_seconds.labels(name).observe(seconds)
        (self.embedded if name == "embed" else self.scored).inc(items)

    def queue(self, name: str, items: int) -> None:
        self.queue_items.labels(name).set(items)

    def job_counts(self, counts: dict[str, int]) -> None:
        for status, n in counts.items():
            self.jobs.labels(status).set(n)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def __repr__(self) -> str:  # pragma: no cover
        return "Metrics()"


def route_label(scope: dict[str, Any]) -> str:
    """The route template of a request ("/v1/collections/{name}/search"), or "other"."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "other"
