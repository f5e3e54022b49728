"""Collection: ingest files into a vector store and search them in two stages.

A collection is a directory (see ``catalog``) holding a store and its metadata: the
embedding model (with a fingerprint of its weights), the dimension, the query instruction
and the extraction layout. Ingestion is incremental and durable (``ingest.writer``): a
file's records are written in one store commit and only then is the file marked done, so a
killed run leaves no partial file behind and re-running completes it without duplicates.
"""

from __future__ import annotations

import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .catalog import Catalog
from .errors import InputError, MediaError, StoreError, VlsearchError
from .files import private_dir
from .grounding import patch_regions
from .grounding import regions as find_regions
from .ingest import ExtractOptions, discover, extract_all
from .ingest.discover import Found
from .ingest.estimate import expected_items
from .ingest.workers import default_workers
from .ingest.extractors import piece_item
from .ingest.item_cache import DEFAULT_MAX_BYTES as DEFAULT_CACHE_BYTES
from .ingest.item_cache import ItemCache, cache_key
from .ingest.ocr import resolve_engine
from .ingest.office import missing_reason, soffice
from .ingest.archives import SEPARATOR, split_member
from .ingest.sources import changed_reason, fingerprint, is_uri, under
from .ingest.writer import IndexReport, IndexWriter, ProgressCallback
from .ingest.video_frames import fit_pixels
from .items import Item, listed
from .media.images import load_image
from .locator import Located, Locator
from .models.contract import QUERY_INSTRUCTION, EmbedderLike, RerankerLike
from .models.loading import (embedder_name, is_remote, load_embedder, load_reranker, local_fingerprint,
                             reranker_name)
from .models.reranker import Reranker
from .moments import best_moment
from .stores import FileEntry, Hit, Record, VectorStore, open_store
from .stores.filters import parse as parse_filter
from .version import __version__

__all__ = ["Collection", "IndexReport", "Result", "QUERY_INSTRUCTION", "LAYOUT_FIELDS", "MODES", "fuse"]

LAYOUT_FIELDS = ("max_pixels", "min_pixels", "segment_seconds", "video_fps", "video_max_frames", "video_max_pixels",
                 "chunk_chars", "chunk_overlap", "ocr", "ocr_engine", "ocr_lang", "ocr_video")
#: what a layout recorded before a field existed means (collections of 0.1 had no OCR)
LEGACY_LAYOUT = {"ocr": "never", "ocr_engine": "rapidocr", "ocr_lang": None, "ocr_video": False}


MODES = ("dense", "lexical", "hybrid")
RRF_K = 60  # reciprocal-rank fusion: score = sum of weight / (RRF_K + rank)
CPU_RERANK_BUDGET = 6.0  # seconds of reranking per search when the reranker runs on a CPU (bench/README.md)
RERANK_BUDGET_ENV = "VLSEARCH_RERANK_BUDGET"  # seconds; the default on any device when set (0: no limit)
RERANK_INPUTS = ("full", "cheap")
MOSTLY_TEXT_CHARS = 400  # "cheap": a page or image with this much text layer or OCR text is reranked on its text,
CHEAP_RERANK_PIXELS = 256 * 32 * 32  # other pages and images at most this many pixels (1/7 of the official budget)
FIRST_RERANK_CHUNK = 1  # candidates scored before the cost per candidate is known (always reranked)


@dataclass
class Result(Located):
    """One search result (``modality``, ``page``, ``start``, ``end`` read through to ``locator``).

    ``score`` is the reranker's relevance in [0, 1] when ``reranked``; else the cosine similarity
    (dense), the BM25 score (lexical) or the reciprocal-rank fusion of both (hybrid).
    ``vector_score`` and ``lexical_score`` are the item's scores in each ranking it appeared in.
    ``note`` says what the reranker saw when it was not the item itself, or why it was not reranked.
    """

    rank: int
    id: str
    score: float
    vector_score: float | None
    rerank_score: float | None
    source: str
    locator: Locator
    text: str
    thumbnail: bytes | None = field(default=None, repr=False)
    metadata: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    lexical_score: float | None = None
    regions: list[dict[str, Any]] = field(default_factory=list)  # where the query's words are (``grounding``)
    moment: dict[str, Any] | None = None  # a video's best few seconds, when asked for (``moments``)
    reranked: bool = False

    @classmethod
    def of(cls, hit: Hit, lexical: bool = False) -> Result:
        r = hit.record
        return cls(0, r.id, hit.score, None if lexical else hit.score, None, r.source, r.locator, r.text,
                   r.thumbnail, r.metadata, lexical_score=hit.score if lexical else None)

    def to_dict(self, thumbnail: bool = False) -> dict[str, Any]:
        """The result as JSON: the locator's fields flattened (``modality``, ``page``, ``start``, ``end``);
        the thumbnail as a data URI when asked for, else None; the metadata without a page's text-layer
        word boxes (hundreds of them; ``regions`` carry those that matter)."""
        out = {"rank": self.rank, "id": self.id, "score": self.score, "vector_score": self.vector_score,
               "lexical_score": self.lexical_score, "rerank_score": self.rerank_score, "source": self.source,
               "modality": self.modality, "page": self.page, "start": self.start, "end": self.end, "text": self.text,
               "thumbnail": None, "metadata": {k: v for k, v in self.metadata.items() if k != "layer_words"},
               "note": self.note, "regions": self.regions,
               "moment": self.moment, "reranked": self.reranked}
        if thumbnail and self.thumbnail:
            import base64

            out["thumbnail"] = "data:image/jpeg;base64," + base64.b64encode(self.thumbnail).decode()
        return out


def _default_budget(on_cpu: bool) -> float:
    """Seconds of reranking when a search names none: ``$VLSEARCH_RERANK_BUDGET``, else
    ``CPU_RERANK_BUDGET`` on a CPU and no limit (0) elsewhere."""
    value = os.environ.get(RERANK_BUDGET_ENV)
    if value is None:
        return CPU_RERANK_BUDGET if on_cpu else 0.0
    return _seconds(value, f"${RERANK_BUDGET_ENV}")


def _seconds(value: Any, name: str) -> float:
    """A rerank budget: a finite number of seconds >= 0 (0: no limit)."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = -1.0
    if not (math.isfinite(seconds) and seconds >= 0):
        raise InputError(f"{name} must be a number of seconds >= 0 (0: no limit), not {value!r}")
    return seconds


def fuse(dense: Sequence[Hit], lexical: Sequence[Hit], weights: tuple[float, float] = (1.0, 1.0)) -> list[Result]:
    """Reciprocal-rank fusion of a dense and a lexical ranking (k = 60), best first; each result keeps
    its score in each ranking."""
    fused: dict[str, Result] = {}
    for weight, hits, is_lexical in ((weights[0], dense, False), (weights[1], lexical, True)):
        for rank, hit in enumerate(hits, 1):
            result = fused.get(hit.record.id)
            if result is None:
                result = fused[hit.record.id] = Result.of(hit, is_lexical)
                result.score = 0.0
            elif is_lexical:
                result.lexical_score = hit.score
            result.score += weight / (RRF_K + rank)
    return sorted(fused.values(), key=lambda r: -r.score)


class Collection:
    """A searchable set of files.

    Args:
        name: a collection name (under the catalog's home, ``$VLSEARCH_HOME`` by default) or a
            directory path.
        model: embedding model: hub id, directory, or the URL of a model server (vlsearch's, or
            OpenAI-compatible; key from ``$VLSEARCH_API_KEY``); default ``$VLSEARCH_EMBEDDER``,
            else the one the collection was built with, else Qwen3-VL-Embedding-2B.
        reranker: reranking model (the same forms; a server URL speaks Cohere/Jina rerank);
            default ``$VLSEARCH_RERANKER``, else Qwen3-VL-Reranker-2B.
        dim: Matryoshka dimension of the stored vectors (default: the model's full size).
        instruction: the query instruction recorded with the collection.
        create: False refuses (``CollectionNotFound``) to open a collection that does not exist.
        model_options: keyword options for the local model classes (device, dtype ...).
        store: where the records live when not in the collection directory's LanceDB: a Milvus Lite
            ``.db`` file or ``milvus://host:19530[/collection]``; recorded at the first ``add``, so
            later opens need not repeat it (a different one is refused).
        loaded_embedder, loaded_reranker: models already loaded (shared, e.g. by the server), used
            instead of loading ``model``/``reranker``; the embedder is still checked against the
            collection's fingerprint and dimension.
        adapter: a LoRA adapter directory for the embedding model (``vlsearch tune``), recorded at the
            first ``add``; default: the recorded one when ``model`` is the recorded model. It is part of
            the model's fingerprint: a collection built without it refuses a model with it.
        reranker_adapter: a LoRA adapter directory for the reranking model.
        rerank_pixels: the most pixels of an image or page as the reranker sees it (default: the
            official reranker's 1,843,200); the main lever on reranking time (``bench/README.md``;
            see also ``search``'s ``rerank_inputs``).
        rerank_cache_bytes: disk kept for rebuilt pages and video segments, so that reranking the
            same candidates again skips rendering and decoding (``<home>/cache/items``; 0: off).
        catalog: where names are looked up (default: ``Catalog()``, the home directory).

    Example:
        >>> c = Collection("papers")
        >>> c.add(["~/papers"]).summary()
        >>> c.search("attention heatmap of a transformer", top_k=5)
    """

    def __init__(self, name: str, *, model: str | None = None, reranker: str | None = None,
                 dim: int | None = None, instruction: str | None = None, create: bool = True,
                 model_options: dict[str, Any] | None = None, loaded_embedder: EmbedderLike | None = None,
                 loaded_reranker: RerankerLike | None = None, store: str | None = None,
                 catalog: Catalog | None = None, adapter: str | os.PathLike | None = None,
                 reranker_adapter: str | os.PathLike | None = None, rerank_pixels: int | None = None,
                 rerank_cache_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.name = name
        self.catalog = catalog or Catalog()
        self.path = private_dir(self.catalog.path(name)) if create else self.catalog.require(name)
        self.store_uri = self.catalog.store_uri(self.path, store)
        self.store: VectorStore = open_store(self.store_uri)
        self.meta = self.store.read_meta()
        if dim is not None and self.meta.get("dim") not in (None, dim):
            raise StoreError(f"collection {name!r} holds {self.meta['dim']}-d vectors; it cannot take dim={dim}")
        self.model_name = embedder_name(model, self.meta.get("model"))
        self.reranker_name = reranker_name(reranker)
        self.dim = dim or self.meta.get("dim")
        self.instruction = instruction or self.meta.get("instruction") or QUERY_INSTRUCTION
        self.model_options = model_options or {}
        recorded = self.meta.get("adapter") if self.model_name == self.meta.get("model") else None
        self.adapter = str(Path(adapter).expanduser().resolve()) if adapter else recorded
        self.reranker_adapter = reranker_adapter
        self._embedder: EmbedderLike | None = None
        self._reranker: RerankerLike | None = loaded_reranker
        self._given_embedder = loaded_embedder
        self._has_text: bool | None = None  # whether any item has text (for the default search mode)
        self.rerank_pixels = rerank_pixels
        self._items = ItemCache(self.catalog.home / "cache" / "items", rerank_cache_bytes)

    # ---------------------------------------------------------------- models

    @property
    def embedder(self) -> EmbedderLike:
        """The embedding model, loaded once, checked against the collection's record."""
        if self._embedder is None:
            embedder = self._given_embedder or load_embedder(self.model_name, **self.embedder_options)
            self._refuse_other_weights(embedder.fingerprint)
            if self.dim is not None and not 1 <= self.dim <= embedder.dim:
                raise InputError(f"dim must be between 1 and {embedder.dim}, not {self.dim}")
            self._embedder = embedder
        return self._embedder

    def check_model(self) -> None:
        """Refuse, before any work, a model with other weights than the collection was built with,
        without loading it: the fingerprint is read from the checkpoint's files (a model server, or a
        hub id not in the local cache, is checked when it loads)."""
        loaded = self._embedder or self._given_embedder
        self._refuse_other_weights(loaded.fingerprint if loaded else local_fingerprint(
            self.model_name, self.adapter, self.model_options.get("revision")))

    def _refuse_other_weights(self, fingerprint: str | None) -> None:
        known = self.meta.get("fingerprint")
        if known and fingerprint and known != fingerprint:
            built = _with_adapter(self.meta.get("model"), self.meta.get("adapter"))
            raise StoreError(
                f"collection {self.name!r} was built with {built} (weights {known}); "
                f"{_with_adapter(self.model_name, self.adapter)} has other weights ({fingerprint}). "
                "Use the same model, or index into a new collection")

    @property
    def embedder_options(self) -> dict[str, Any]:
        """Options of the local embedding model: ``model_options`` and the adapter."""
        return {**self.model_options, **({"adapter": self.adapter} if self.adapter else {})}

    @property
    def reranker(self) -> RerankerLike:
        if self._reranker is None:
            extra: dict[str, Any] = {"adapter": self.reranker_adapter} if self.reranker_adapter else {}
            if self.rerank_pixels and not is_remote(self.reranker_name):
                extra["budget"] = replace(Reranker.default_budget, max_pixels=self.rerank_pixels)
            self._reranker = load_reranker(self.reranker_name, **self.model_options, **extra)
        return self._reranker

    def _record_meta(self, layout: dict[str, Any]) -> None:
        if self.meta.get("fingerprint"):
            return
        embedder = self.embedder
        self.dim = self.dim or embedder.dim
        self.meta = {"model": self.model_name, **({"adapter": self.adapter} if self.adapter else {}),
                     "fingerprint": embedder.fingerprint, "dim": self.dim,
                     "instruction": self.instruction, "layout": layout,
                     "created": datetime.now(timezone.utc).isoformat(), "vlsearch": __version__}
        self.catalog.record_store(self.path, self.store_uri)
        self.store.write_meta(self.meta)

    def extract_options(self, options: ExtractOptions | None = None) -> ExtractOptions:
        """The collection's extraction options: ``options`` if given (checked against the layout the
        collection was built with), else the recorded layout, else the defaults. An ``auto`` OCR
        engine becomes the recorded one, or for a new collection the one this machine has."""
        recorded = self.meta.get("layout")
        recorded = {**LEGACY_LAYOUT, **recorded} if recorded else None
        if options is None:
            options = ExtractOptions(**recorded) if recorded else ExtractOptions()
        if options.ocr_engine == "auto":
            options = replace(options, ocr_engine=recorded["ocr_engine"] if recorded else resolve_engine("auto"))
        if recorded and recorded != _layout(options):
            changed = {k: v for k, v in _layout(options).items() if recorded.get(k) != v}
            raise InputError(f"collection {self.name!r} was built with {({k: recorded.get(k) for k in changed})}; "
                             f"it cannot take {changed} (the items would not line up); use a new collection")
        return options

    # ---------------------------------------------------------------- ingestion

    def add(self, paths: Sequence[str | os.PathLike], *, include: Sequence[str] = (), exclude: Sequence[str] = (),
            prune: bool = False, workers: int | None = None, options: ExtractOptions | None = None,
            progress: bool | None = None, batch_items: int = 64, batch_bytes: int | None = 256 * 1024 * 1024,
            retry_failed: bool = False,
            follow_symlinks: bool = True, on_progress: ProgressCallback | None = None,
            engine: str = "local", ray_address: str | None = None) -> IndexReport:
        """Index new and changed files under ``paths``; failures are recorded, never fatal.

        Args:
            paths: files or directories (searched recursively), bucket URIs (``s3://bucket/prefix``,
                ``gs://``, ``az://``; credentials from the cloud's own chain) and archives (their
                members are indexed as ``archive.zip!/member``).
            include, exclude: glob patterns on the path relative to each root.
            prune: drop the records of files under ``paths`` that no longer exist (nothing is dropped
                below a folder, bucket or archive that could not be listed).
            workers: decoding processes (PDF rendering, video decoding, OCR, Office conversion); 0 decodes
                in-process; default: half the cores when the model runs on the CPU, else all but one (at most 16).
            options: how files are cut (pages, video segments, text chunks).
            progress: progress bar; by default only on a terminal.
            batch_items: pieces gathered across files before each embedding call.
            batch_bytes: decoded pixels gathered before each embedding call (bounds memory; ``None``:
                count alone).
            retry_failed: try again files that failed before and have not changed since.
            follow_symlinks: False skips symbolic links met inside directories, fails a given path
                that is or lies below a link, and reads each local file only if no link lies on its
                path when it is opened (``ExtractOptions.follow_links``).
            on_progress: called as ``on_progress(files_done, files_total, items)`` as files complete.
            engine: "local" (worker processes and this process's model) or "ray": decoding and
                embedding on a Ray cluster (``pip install 'vlsearch[ray]'``; see ``ingest.ray``).
            ray_address: the Ray cluster to join (default: a running ``ray.init``, else a local one).
        """
        if engine not in ("local", "ray"):
            raise InputError(f"engine must be 'local' or 'ray', not {engine!r}")
        started = time.perf_counter()
        report = IndexReport()
        options = self.extract_options(options)
        if not follow_symlinks:
            options = replace(options, follow_links=False)
        self.check_model()
        known = self.store.files()
        roots = [_root(p, resolve=follow_symlinks) for p in paths]
        # the plan comes first: the model loads only when some file has items to embed
        with IndexWriter(self.store, None, self.dim, report, batch_items=batch_items,
                         batch_bytes=batch_bytes, progress=progress, on_progress=on_progress) as writer:
            todo, present, blind = self._changes(roots, include, exclude, follow_symlinks, retry_failed, known,
                                                 writer, options)
            if todo:
                self._record_meta(_layout(options))
                self._record_roots(roots)  # before any item is written: a run stopped midway still serves them
                writer.dim = self.dim
                writer.previous = {f.source for f, _ in todo if f.source in known}
                if engine == "ray":
                    writer.start(len(todo))
                    self._extract_on_ray(writer, todo, options, ray_address)
                else:
                    writer.embedder = self.embedder
                    on_cpu = str(getattr(self.embedder, "device", "remote")) == "cpu"
                    expected = None if progress is False else expected_items([f for f, _ in todo], options)
                    writer.start(len(todo), expected, on_cpu)
                    workers = default_workers(model_on_cpu=on_cpu) if workers is None else workers
                    writer.consume(extract_all(todo, options, workers=workers))
        if self.meta.get("fingerprint"):  # an existing collection given new roots and nothing to embed
            self._record_roots(roots)
        if prune:
            report.pruned = self._drop([s for s in known if s not in present and any(under(s, r) for r in roots)
                                        and not any(under(s, b) for b in blind)])
        self.store.optimize()
        report.seconds = time.perf_counter() - started
        return report

    def _changes(self, roots: Sequence[str], include: Sequence[str], exclude: Sequence[str],
                 follow_symlinks: bool, retry_failed: bool, known: dict[str, FileEntry],
                 writer: IndexWriter, options: ExtractOptions) -> tuple[list[tuple[Found, str]], set[str], set[str]]:
        """Discover the files under ``roots`` and sort them: unchanged (by size and time, else by
        fingerprint: content hash or object tag), failed before, or to index (with their fingerprint).
        Returns (to index, every source seen, folders that could not be listed)."""
        report, todo, present, blind = writer.report, [], set(), set()
        office = soffice() is not None
        for found in discover(roots, include, exclude, follow_symlinks, options.archives, options.limits):
            report.seen += 1
            source = found.source
            present.add(source)
            if found.error:
                if found.folder:
                    blind.add(source)
                writer.failed(source, found.error, found=found)
                continue
            if found.kind is None:
                report.skipped += 1
                continue
            if found.kind == "office" and not office:
                report.skipped += 1
                report.not_read.append((source, missing_reason()))
                continue
            entry = known.get(source)
            same_stat = entry is not None and (entry.size, entry.mtime) == (found.size, found.mtime)
            if same_stat and entry.status == "done":
                report.unchanged += 1
                continue
            if same_stat and entry.status == "failed" and not retry_failed:
                report.failed_before += 1
                continue
            try:
                digest = fingerprint(found, options.limits, options.archives, options.follow_links)
            except VlsearchError as exc:
                writer.failed(source, str(exc), found=found)
                continue
            if entry and entry.status == "done" and entry.content_hash == digest:  # touched, not changed
                writer.unchanged(FileEntry(source, digest, entry.items, "done", "", found.mtime, found.size))
                report.unchanged += 1
                continue
            if entry is None:
                report.new += 1
            elif entry.status == "done":
                report.changed += 1
            else:
                report.retried += 1
            todo.append((found, digest))
        return todo, present, blind

    def _record_roots(self, roots: Sequence[str]) -> None:
        """Record the folders, files, archives and bucket prefixes indexed from (``meta["roots"]``;
        the server's media route serves no source outside them); a root below a recorded one is not added."""
        recorded = list(self.meta.get("roots", []))
        for root in roots:
            if not any(under(root, old) for old in recorded):
                recorded = [old for old in recorded if not under(old, root)] + [root]
        if recorded != self.meta.get("roots"):
            self.meta = {**self.meta, "roots": recorded}
            self.store.write_meta(self.meta)

    def _extract_on_ray(self, writer: IndexWriter, todo: list[tuple[Found, str]], options: ExtractOptions,
                        address: str | None) -> None:
        """The extract + embed stage on a Ray cluster (a local one is started and stopped here)."""
        from .ingest.ray import connect, ray_extract_embed

        started = connect(address)
        try:
            ray_extract_embed(writer, todo, options, model=self.model_name, model_options=self.embedder_options,
                              fingerprint=self.meta.get("fingerprint"))
        finally:
            if started:
                import ray

                ray.shutdown()

    # ---------------------------------------------------------------- search

    def search(self, query: str | None = None, *, image: Any = None, top_k: int = 10, candidates: int = 50,
               rerank: bool = True, where: str | None = None, instruction: str | None = None,
               like: str | None = None, mode: str | None = None, weights: tuple[float, float] = (1.0, 1.0),
               moments: bool = False, dense_regions: bool = False, rerank_budget: float | None = None,
               rerank_inputs: str | None = None, timings: dict[str, float] | None = None) -> list[Result]:
        """Two-stage search: candidates by vector and/or by words, then the reranker on them.

        Args:
            query: query text; ``image`` adds (or is) an image query.
            top_k: results returned.
            candidates: candidates fetched from the store (each ranking) and reranked.
            rerank: False returns the first-stage ranking.
            where: filter on the records (``modality = 'pdf_page' AND page <= 3``,
                ``text LIKE '%invoice%'``, ``source LIKE '%/reports/%'``; the grammar is in
                ``stores.filters``: comparisons, AND/OR/NOT, IN, LIKE, BETWEEN, IS [NOT] NULL).
            instruction: query instruction (default: the collection's).
            like: the id of an item in the collection: find items like it.
            mode: "dense" (vectors), "lexical" (BM25 over the items' text, OCR text and file
                names) or "hybrid" (both, fused by reciprocal rank); default: hybrid when the
                query has words and the collection has text, else dense.
            weights: (dense, lexical) weights of the fusion.
            moments: also find each video result's best few seconds (``Result.moment``), at one
                embedder forward per window of its segment.
            dense_regions: also add each page's or image's most query-like patches to its regions
                (kind "dense", an approximation), at one embedder forward per result; a local
                embedding model only.
            rerank_budget: seconds of reranking: the best candidates that fit are reranked (the cost
                of one is estimated from the first ones scored), the rest follow in first-stage
                order, marked ``reranked=False`` with the reason in ``note``. None: ``$VLSEARCH_RERANK_BUDGET``
                when set, else ``CPU_RERANK_BUDGET`` when the reranker runs on a CPU, else no limit; 0: no limit.
            rerank_inputs: "full" (each page, image or segment as indexed) or "cheap" (a page or
                image with at least ``MOSTLY_TEXT_CHARS`` of text layer or OCR text is reranked on
                its text, others at most ``CHEAP_RERANK_PIXELS``); None: cheap when the reranker runs
                on a CPU, else full.
            timings: a dict filled with the seconds spent on "embed" (the query), "search" (the
                store) and "rerank".
        """
        if top_k < 1 or candidates < 1:
            raise InputError("top_k and candidates must be >= 1")
        if rerank_budget is not None:
            _seconds(rerank_budget, "rerank_budget")
        if rerank_inputs is not None and rerank_inputs not in RERANK_INPUTS:
            raise InputError(f"rerank_inputs must be one of {', '.join(RERANK_INPUTS)}, not {rerank_inputs!r}")
        timings = {} if timings is None else timings
        clock = time.perf_counter()
        if where is not None:
            parse_filter(where)  # checked with the caps for user filters (length, IN lists)
        if not self.meta.get("fingerprint"):
            raise StoreError(f"collection {self.name!r} is empty: index some files first")
        liked = self._liked(like)
        if liked is None and not query and image is None:
            raise InputError("give a query text, an image, or an item id (like)")
        words = (liked.text if liked is not None else query) or ""
        mode = self._mode(mode, words)
        depth = max(candidates, top_k) if rerank or mode == "hybrid" else top_k  # fusion wants deep lists
        if liked is not None:
            vector, query_item = liked.vector, self._item_of(liked)[0]
        else:
            query_item = Item(text=query or None, image=image, instruction=instruction or self.instruction)
            vector = None if mode == "lexical" else self.embedder.embed([query_item], dim=self.dim)[0]
        timings["embed"], clock = time.perf_counter() - clock, time.perf_counter()
        dense = [] if mode == "lexical" else self._without(
            self.store.search(np.asarray(vector, np.float32), k=depth + (liked is not None), where=where), like)
        lexical = [] if mode == "dense" else self._without(
            self.store.lexical_search(words, k=depth + (liked is not None), where=where), like)
        if mode == "hybrid":
            results = fuse(dense[:depth], lexical[:depth], weights)[:depth]
        else:
            results = [Result.of(h, mode == "lexical") for h in (lexical if mode == "lexical" else dense)[:depth]]
        timings["search"], clock = time.perf_counter() - clock, time.perf_counter()
        if rerank and results:
            records = {h.record.id: h.record for h in (*dense, *lexical)}
            results = self._rerank(query_item, results, [records[r.id] for r in results], instruction,
                                   rerank_budget, rerank_inputs)
        timings["rerank"] = time.perf_counter() - clock
        for rank, result in enumerate(results[:top_k], 1):
            result.rank = rank
            result.regions = find_regions(query, result.metadata, result.modality)
        query_vector = query_item if vector is None else vector
        if dense_regions:
            self._dense_regions(results[:top_k], query_vector)
        if moments:
            self._moments(results[:top_k], query_vector)
        return results[:top_k]

    def _query_vector(self, query: Any) -> Any:
        """The query's vector: as given, or for a query item (a lexical search has none yet) embedded now."""
        return self.embedder.embed([query], dim=self.dim)[0] if isinstance(query, Item) else query

    def _dense_regions(self, results: list[Result], query: Any) -> None:
        """Each page's or image's most query-like patches (``Embedder.patch_scores``), after its word
        regions; none for an item whose source is gone or changed."""
        pictures = [r for r in results if r.modality in ("pdf_page", "image")]
        scorer = getattr(self.embedder, "patch_scores", None)
        if pictures and scorer is None:
            raise InputError("dense regions need a local embedding model, not a model server")
        query = self._query_vector(query) if pictures else query
        records = {r.id: r for r in self.store.get([r.id for r in pictures])}
        for result in pictures:
            item, note = self._item_of(records[result.id])
            if not note and item.image is not None:
                result.regions += patch_regions(scorer(item, query), item.image.size,  # type: ignore[misc, union-attr]
                                                result.metadata.get("orientation", 1))

    def _moments(self, results: list[Result], query: Any) -> None:
        """Each video result's best window (``moments.best_moment``), from its rebuilt frames (through
        the cache of rebuilt items); none for a segment whose source is gone or changed."""
        videos = [r for r in results if r.modality == "video"]
        if not videos:
            return
        query = self._query_vector(query)
        records = {r.id: r for r in self.store.get([r.id for r in videos])}
        for result in videos:
            item, note = self._item_of(records[result.id])
            if not note and isinstance(item.video, list):
                result.moment = best_moment(self.embedder, query, item.video, item.fps or 1.0, result.start or 0.0,
                                            result.end or 0.0, result.metadata.get("frame_times"), dim=self.dim)

    def _liked(self, like: str | None) -> Record | None:
        if like is None:
            return None
        found = self.store.get([like])
        if not found:
            raise InputError(f"no item with id {like!r} in collection {self.name!r}")
        return found[0]

    @staticmethod
    def _without(hits: list[Hit], like: str | None) -> list[Hit]:
        return [h for h in hits if h.record.id != like]

    def _mode(self, mode: str | None, words: str) -> str:
        """The search mode asked for, or the default: hybrid when there are words to match and the
        collection has text, else dense."""
        if mode is not None:
            if mode not in MODES:
                raise InputError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
            if mode != "dense" and not any(c.isalnum() for c in words):
                raise InputError(f"{mode} search needs a query with words (an image alone searches by vector)")
            return mode
        if not any(c.isalnum() for c in words):
            return "dense"
        if self._has_text is None:
            self._has_text = self.store.count("text != ''") > 0
        return "hybrid" if self._has_text else "dense"

    def _rerank(self, query: Item, results: list[Result], records: list[Record], instruction: str | None,
                budget: float | None, inputs: str | None) -> list[Result]:
        """Rerank the candidates in first-stage order while the budget lasts (see ``search``):
        the reranked ones first, by relevance, then the others as they came."""
        reranker = self.reranker
        on_cpu = getattr(reranker, "device", None) == "cpu"
        seconds = _default_budget(on_cpu) if budget is None else budget
        cheap = (inputs or ("cheap" if on_cpu else "full")) == "cheap"
        entries = self.store.files()  # one look-up per search, one check per source
        options = self.extract_options()
        checked: dict[str, str] = {}
        query = Item(text=query.text, image=query.image, video=query.video, fps=query.fps)
        started, done, chunk = time.perf_counter(), 0, len(records) if not seconds else FIRST_RERANK_CHUNK
        with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:  # rebuilds overlap
            while done < len(records):
                if seconds and done:  # as many as the time left pays for, at the cost per candidate so far
                    spent = time.perf_counter() - started
                    chunk = min(int((seconds - spent) / (spent / done)), 2 * done)
                    if chunk < 1:
                        break
                part = slice(done, done + chunk)
                for record in records[part]:  # one check per source, before the rebuilds run in parallel
                    if record.modality != "text" and record.source not in checked:
                        checked[record.source] = _source_changed(record, entries.get(record.source), options)
                docs, notes = zip(*pool.map(lambda r: self._rerank_input(r, entries, checked, options, cheap),
                                            records[part]))
                scores = reranker.score(query, list(docs), instruction=instruction)
                for result, score, note in zip(results[part], scores, notes):
                    result.rerank_score = result.score = score
                    result.note, result.reranked = note, True
                done += len(docs)
        for result in results[done:]:
            result.note = (f"not reranked: the {seconds:g} s rerank budget was spent on the first {done} of "
                           f"{len(results)} candidates")
        return sorted(results[:done], key=lambda r: (-r.score, -(r.vector_score or 0.0),
                                                     -(r.lexical_score or 0.0))) + results[done:]

    def _rerank_input(self, record: Record, entries: dict[str, FileEntry], checked: dict[str, str],
                      options: ExtractOptions, cheap: bool) -> tuple[Item, str]:
        """What the reranker sees of a candidate: the item itself (``_item_of``); when ``cheap``, the
        text of a page or image that is mostly text, or else its pictures scaled down."""
        if not cheap:
            return self._item_of(record, entries, checked, options)
        if record.modality in ("pdf_page", "image") and len(record.text.strip()) >= MOSTLY_TEXT_CHARS:
            return Item(text=record.text), "reranked on its text (a mostly-text page; rerank_inputs=cheap)"
        item, note = self._item_of(record, entries, checked, options)
        images = [load_image(image, options.limits) for image in listed(item.image)]
        if any(image.width * image.height > CHEAP_RERANK_PIXELS for image in images):
            item = replace(item, image=[fit_pixels(image, CHEAP_RERANK_PIXELS) for image in images])
            note = note or f"reranked at {CHEAP_RERANK_PIXELS:,} pixels (rerank_inputs=cheap)"
        return item, note

    def _item_of(self, record: Record, entries: dict[str, FileEntry] | None = None,
                 checked: dict[str, str] | None = None,
                 options: ExtractOptions | None = None) -> tuple[Item, str]:
        """The model input of a stored record, rebuilt from its source; the thumbnail (and a note
        saying so) when the source is gone or has changed since indexing."""
        if record.modality == "text":
            return Item(text=record.text), ""
        checked = {} if checked is None else checked
        options = options or self.extract_options()
        if record.source not in checked:
            checked[record.source] = _source_changed(record, (entries or {}).get(record.source), options)
        reason = checked[record.source]
        if not reason:
            try:
                return self._rebuilt(record, options), ""
            except VlsearchError as exc:
                reason = str(exc)
        if not record.thumbnail:
            raise MediaError(f"{record.source}: cannot rebuild item {record.id} for reranking ({reason})")
        return Item(image=record.thumbnail, text=record.text or None), f"reranked on the thumbnail: {reason}"

    def _rebuilt(self, record: Record, options: ExtractOptions) -> Item:
        """A page or segment rebuilt from its source, through the cache of rebuilt items."""
        if record.modality not in ("pdf_page", "video") or not record.content_hash:
            return piece_item(record.source, record.locator, options, record.content_hash)
        key = cache_key(record.content_hash, record.locator, self.meta.get("layout") or {})
        item = self._items.get(key)
        if item is None:
            item = piece_item(record.source, record.locator, options, record.content_hash)
            self._items.put(key, item)
        return item

    # ---------------------------------------------------------------- management

    def records(self, ids: Sequence[str]) -> list[Record]:
        """The stored records with these ids (with vectors), in the order asked; unknown ids skipped."""
        return self.store.get(ids)

    def model_input(self, record: Record, entries: dict[str, FileEntry] | None = None,
                    checked: dict[str, str] | None = None) -> tuple[Item, str]:
        """What the models see of a stored record: (item, note). The item is rebuilt from the source
        (a PDF page rendered at the collection's pixel budget, an image, a video segment's frames)
        when the source still holds what was indexed; else it is the thumbnail and the note says why
        (``MediaError`` when there is no thumbnail either). A text record is its text. ``entries``
        (``store.files()``) and ``checked`` (a dict, filled here) let many calls check each source once."""
        return self._item_of(record, entries, checked)

    def file_state(self, source: str) -> FileEntry | None:
        """What was indexed from ``source`` (content hash, size, time, done or failed), or None."""
        return self.store.files().get(source)

    def delete(self, ids: Sequence[str] | None = None, sources: Sequence[str] | None = None) -> int:
        """Remove items by id, or every item of the given sources (local paths, object URIs, archive
        members); returns how many."""
        resolved = [_root(s) for s in sources or ()]
        removed = self.store.delete(ids=ids, sources=resolved or None)
        if resolved:
            self.store.forget_files(resolved)
        return removed

    def forget_under(self, paths: Sequence[str | os.PathLike]) -> int:
        """Drop the items and file states of every source at or below ``paths`` (files, folders, archives,
        bucket prefixes), e.g. after they were deleted; returns how many sources were dropped."""
        roots = [_root(p) for p in paths]
        return self._drop([s for s in self.store.files() if any(under(s, r) for r in roots)])

    def _drop(self, sources: list[str]) -> int:
        if sources:
            self.store.delete(sources=sources)
            self.store.forget_files(sources)
        return len(sources)

    def info(self) -> dict[str, Any]:
        """Model, dimension, instruction, counts by status, failures."""
        files = self.store.files()
        failed = {s: e.error for s, e in files.items() if e.status == "failed"}
        return {"name": self.name, "path": str(self.path), **self.meta, "items": self.store.count(),
                "files": sum(e.status == "done" for e in files.values()), "failed": failed}

    @staticmethod
    def remove(name: str) -> None:
        """Delete a collection and everything in it."""
        Catalog().remove(name)


def _layout(options: ExtractOptions) -> dict[str, Any]:
    """The extraction options that decide what an item is (pages, segments, chunks)."""
    return {name: getattr(options, name) for name in LAYOUT_FIELDS}


def _root(path: str | os.PathLike, resolve: bool = True) -> str:
    """A path as sources name it: a bucket URI as given, a local path absolute with links resolved
    (``resolve=False``: as given; an archive member: its archive's path)."""
    text = os.fspath(path)
    if is_uri(text):
        return text.rstrip("/")
    split = split_member(text)
    if split is not None:
        return _root(split[0], resolve) + SEPARATOR + split[1]
    return str(Path(text).expanduser().resolve()) if resolve else os.path.abspath(os.path.expanduser(text))


def _with_adapter(model: str | None, adapter: str | None) -> str:
    return f"{model} with adapter {adapter}" if adapter else str(model)


def _source_changed(record: Record, entry: FileEntry | None, options: ExtractOptions) -> str:
    """Empty when the source still holds what was indexed, else why not. Size and time as
    recorded settle it without reading the source; otherwise the fingerprint does."""
    same = entry is not None and entry.content_hash == record.content_hash
    return changed_reason(record.source, record.content_hash, entry.size if same else None,  # type: ignore[union-attr]
                          entry.mtime if same else None, options.limits, options.archives)
