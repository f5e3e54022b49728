"""Ingestion on a Ray cluster: decoding in CPU tasks, embedding in an actor pool (Ray Data).

``Collection.add(..., engine="ray")`` keeps discovery, hashing and the new / changed /
unchanged decision in the driver and swaps only the extract + embed stage for this one,
which feeds the same ``IndexWriter`` as the local worker pool:

1. each file is planned into parts (Ray Data tasks; part counts come back to the driver);
2. a dataset of parts is extracted into pieces (CPU tasks, streamed, bounded memory);
3. ``map_batches`` runs ``_EmbedActor`` (the model loaded once per actor; ``num_gpus=1``
   per actor when the cluster has GPUs) and returns records (vectors + metadata, no images);
4. the driver groups records by file and, once a file has every piece of every part, hands
   them to the writer (``embedded`` then ``complete``), which commits them as for local files.

Ray retries the tasks of a dead worker and restarts a dead actor; a piece embedded twice
has the same deterministic record id, so the driver keeps one (no duplicates, no gaps).
A file whose part keeps crashing its worker fails alone, like with local worker processes.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..errors import MissingExtraError, StoreError, VlsearchError
from ..models.loading import load_embedder
from .discover import Found
from .extractors import ExtractOptions, extract_part, plan_parts
from .workers import CRASHED
from .writer import IndexWriter, embed_pieces

__all__ = ["KILL_HOOK_ENV", "connect", "ray_extract_embed"]

#: TEST-ONLY hook. When this environment variable (read in the driver) holds a file path that
#: does not exist yet, the first embedding call creates it and kills its actor's process
#: (``os._exit``), as a lost worker would. Never set it outside tests.
KILL_HOOK_ENV = "VLSEARCH_TEST_RAY_KILL"


def _ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise MissingExtraError("ray[data]", "ray") from exc
    return ray


def connect(address: str | None = None) -> bool:
    """Join the Ray cluster at ``address`` (``auto``, ``ray://host:10001`` ...), or start a local one.

    Returns True when this call started Ray (the caller shuts it down); a running
    ``ray.init`` in this process is reused as it is.
    """
    ray = _ray()
    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(include_dashboard=False, log_to_driver=False)
    return True


def _row(source: str, digest: str, kind: str, *, part: int = 0, parts: int = 0, n: int = 0, blob: bytes = b"",
         reason: str = "", id: str = "") -> dict[str, Any]:
    """One dataset row; every stage keeps the same columns so blocks share one schema."""
    return {"source": source, "digest": digest, "kind": kind, "part": part, "parts": parts, "n": n, "blob": blob,
            "reason": reason, "id": id}


def _reason(source: str, exc: BaseException) -> str:
    return str(exc) if isinstance(exc, VlsearchError) else f"{source!r}: {type(exc).__name__}: {exc}"


def _plan_rows(row: dict[str, Any], options: ExtractOptions) -> list[dict[str, Any]]:
    """Ray task: a file's parts (pickled), or one error row."""
    source, digest = row["source"], row["digest"]
    try:
        parts = plan_parts(source, row["kind"], digest, options)
    except Exception as exc:  # noqa: BLE001 - one file's failure never stops the run
        return [_row(source, digest, "error", reason=_reason(source, exc))]
    return [_row(source, digest, "part", part=p.index, parts=p.count, blob=pickle.dumps(p)) for p in parts]


def _extract_rows(row: dict[str, Any], options: ExtractOptions) -> list[dict[str, Any]]:
    """Ray task: a part's pieces (pickled, images included), ``empty`` when it has none, or an error."""
    source, digest, index, count = row["source"], row["digest"], row["part"], row["parts"]
    try:
        pieces = extract_part(pickle.loads(row["blob"]), options)
    except Exception as exc:  # noqa: BLE001
        return [_row(source, digest, "error", part=index, parts=count, reason=_reason(source, exc))]
    if not pieces:
        return [_row(source, digest, "empty", part=index, parts=count)]
    return [_row(source, digest, "piece", part=index, parts=count, n=len(pieces), blob=pickle.dumps(p))
            for p in pieces]


class _EmbedActor:
    """Ray actor: loads the embedder once; turns piece rows into record rows (vector, no item)."""

    def __init__(self, model: str, model_options: dict[str, Any], dim: int | None, fingerprint: str | None,
                 kill_marker: str | None = None) -> None:
        self.embedder = load_embedder(model, **model_options)
        if fingerprint and self.embedder.fingerprint != fingerprint:
            raise StoreError(f"{model} on this worker has other weights ({self.embedder.fingerprint}) than the "
                             f"collection ({fingerprint})")
        self.dim, self.kill_marker = dim, kill_marker

    def __call__(self, batch: Any) -> Any:
        import pandas as pd

        if self.kill_marker and not os.path.exists(self.kill_marker):
            open(self.kill_marker, "w").close()
            os._exit(1)  # test-only: a lost worker, mid-job
        rows = batch.to_dict("records")
        todo = [(i, pickle.loads(r["blob"])) for i, r in enumerate(rows) if r["kind"] == "piece"]
        records, failures = embed_pieces(self.embedder, [p for _, p in todo], self.dim)
        embedded = iter(records)
        for at, piece in todo:
            if piece.source in failures:
                rows[at].update(kind="error", blob=b"", reason=failures[piece.source])
            else:
                record = next(embedded)
                rows[at].update(kind="record", id=record.id, blob=pickle.dumps(record))
        return pd.DataFrame(rows, columns=list(_row("", "", "").keys()))


@dataclass
class _FileState:
    found: Found
    digest: str
    parts: int
    expected: dict[int, int] = field(default_factory=dict)  # part -> pieces (0: empty part)
    seen: dict[int, set[str]] = field(default_factory=dict)  # part -> record ids received
    written: bool = False  # complete and handed to the writer

    def complete(self) -> bool:
        return len(self.expected) == self.parts and all(
            len(self.seen.get(part, ())) >= n for part, n in self.expected.items())


def ray_extract_embed(writer: IndexWriter, todo: list[tuple[Found, str]], options: ExtractOptions, *,
                      model: str, model_options: dict[str, Any], fingerprint: str | None = None,
                      actors: int | None = None) -> None:
    """Run the extract + embed stage of an indexing run on the connected Ray cluster.

    Args:
        writer: the run's writer; it receives the same events as from the local worker pool.
        todo: (file, content hash) pairs to index.
        options: extraction options.
        model, model_options, fingerprint: the embedder each actor loads (and checks).
        actors: embedding actors (default: one per GPU, else one CPU actor).
    """
    ray = _ray()
    from ray.data import DataContext

    context = DataContext.get_current()
    saved = (context.max_errored_blocks, context.enable_progress_bars)
    context.max_errored_blocks = -1  # a crashing file fails alone (its parts never arrive)
    context.enable_progress_bars = False
    files = {found.source: _FileState(found, digest, 0) for found, digest in todo}
    try:
        parts = _plan(ray, writer, files, options)
        if parts:
            gpus = int(ray.cluster_resources().get("GPU", 0))
            embedder = {"model": model, "model_options": model_options, "dim": writer.dim,
                        "fingerprint": fingerprint, "kill_marker": os.environ.get(KILL_HOOK_ENV) or None}
            _collect(writer, files, _embedded(ray, parts, options, embedder, writer.batch_items, gpus, actors))
        for source, state in files.items():  # parts lost to crashes: the file fails alone
            if source not in writer.dead and not state.complete():
                writer.failed(source, f"{source!r}: {CRASHED}", state.digest)
        writer.flush()
    finally:
        context.max_errored_blocks, context.enable_progress_bars = saved


def _plan(ray: Any, writer: IndexWriter, files: dict[str, _FileState], options: ExtractOptions
          ) -> list[dict[str, Any]]:
    """Plan every file on the cluster; failures are reported at once; returns the part rows."""
    items = [_row(source, s.digest, str(s.found.kind)) for source, s in files.items()]
    planned = (ray.data.from_items(items, override_num_blocks=min(len(items), 1024))
               .flat_map(_plan_rows, fn_kwargs={"options": options}, num_cpus=1).take_all())
    parts = []
    for row in planned:
        state = files[row["source"]]
        if row["kind"] == "error":
            if row["source"] not in writer.dead:
                writer.failed(row["source"], row["reason"], state.digest)
        else:
            state.parts = row["parts"]
            parts.append(row)
    return parts


def _embedded(ray: Any, parts: list[dict[str, Any]], options: ExtractOptions, embedder: dict[str, Any],
              batch_items: int, gpus: int, actors: int | None) -> Iterator[dict[str, Any]]:
    """The streamed record rows of every part (Ray Data: extract tasks → embedding actors)."""
    pool = actors or gpus or 1
    resources = {"num_gpus": 1} if gpus else {"num_cpus": 1}
    dataset = (ray.data.from_items(parts, override_num_blocks=min(len(parts), 4096))
               .flat_map(_extract_rows, fn_kwargs={"options": options}, num_cpus=1)
               .map_batches(_EmbedActor, fn_constructor_kwargs=embedder, concurrency=pool,
                            batch_size=batch_items, batch_format="pandas", **resources))
    return dataset.iter_rows()


def _collect(writer: IndexWriter, files: dict[str, _FileState], rows: Iterable[dict[str, Any]]) -> None:
    """Hand each new record to the writer, and each file once it has every piece of every part
    (complete files are written several per commit)."""
    waiting = 0  # records of complete files not written yet
    for row in rows:
        source = row["source"]
        state = files[source]
        if source in writer.dead or state.written:
            continue  # failed, or a retried task's copy of a finished file
        part = row["part"]
        if row["kind"] == "error":
            writer.failed(source, row["reason"], state.digest)
            continue
        state.expected[part] = row["n"]
        if row["kind"] == "record" and row["id"] not in state.seen.setdefault(part, set()):
            state.seen[part].add(row["id"])
            writer.embedded(source, [pickle.loads(row["blob"])])
        if state.complete():
            writer.complete(state.found, state.digest)
            state.written = True
            waiting += sum(state.expected.values())
            if waiting >= writer.batch_items:
                writer.flush()
                waiting = 0
