"""Server settings: one frozen dataclass, filled by ``vlsearch serve`` or by hand.

Importing this module needs no server extra, so the CLI can check its arguments (for
example: no public bind without an API key) before FastAPI is imported.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..media.fetch import FetchPolicy
from ..media.images import MediaLimits

MiB = 1024 * 1024
MIN_KEY_LENGTH = 12  # characters of an API key


@dataclass(frozen=True)
class ServerConfig:
    """Everything the HTTP server needs to know.

    Attributes:
        model, reranker: checkpoints (hub id or directory); ``None`` takes ``$VLSEARCH_EMBEDDER``
            / ``$VLSEARCH_RERANKER``, else the Qwen3-VL 2B models.
        no_reranker: do not load a reranker (``/v1/rerank`` answers 503, search is vector-only).
        rerank_pixels: the most pixels of a page or image as the reranker sees it (default: the
            official reranker's 1,843,200).
        adapter, reranker_adapter: LoRA adapter directories (``vlsearch tune``) merged into the models
            as they load; the embedder's adapter is part of its fingerprint (collections check it).
        device, dtype: model placement (see ``Embedder``).
        host, port: where ``vlsearch serve`` binds.
        api_keys: accepted keys (``Authorization: Bearer KEY`` or ``x-api-key``), at least
            ``MIN_KEY_LENGTH`` characters each; empty: no auth.
        allowed_hosts: ``Host`` header values (a name, or ``name:port``) accepted besides loopback
            ones. Without an API key only these and loopback names are served, so that a web page
            cannot reach the server through DNS rebinding.
        read_timeout: seconds a client has to send its request headers, and the longest pause
            while it sends a body (slow clients are disconnected).
        max_connections: connections served at once; beyond, new requests get 503.
        collections_roots: directories whose files ``POST .../ingest {"paths": [...]}`` may read.
        home: where collections live (default ``$VLSEARCH_HOME``).
        data_dir: where uploads are saved (default ``<home>/server``), one folder per collection.
        allow_url_hosts: host names whose http(s) URLs inputs may name; empty: URL inputs are
            refused; ``"*"``: any host. Every address is still checked (no private, loopback,
            link-local), also after redirects.
        fetch_allow_hosts: ``host:port`` pairs exempt from the address check (tests, intranets).
        batch_wait_ms: how long the model worker waits for requests being prepared to join a batch.
        max_batch_items: inputs merged into one model call.
        max_queue_items: inputs waiting for the model before new requests get 503.
        encode_workers: threads that validate, decode and tokenise requests (default: CPU count, max 8).
        max_body_bytes: largest JSON body; max_upload_bytes: largest multipart upload.
        max_items: inputs per embeddings request; max_documents: documents per rerank request.
        max_media_bytes: largest inline (data URI) or fetched media file.
        max_image_pixels, max_video_seconds, max_video_frames: media caps, checked before decoding.
        ingest_workers: decoding processes of ingestion jobs (0: in the job's thread; default: from
            the cores, as ``Collection.add``).
        watch_paths: folders the server keeps indexed into ``watch_collection`` (``serve --watch``): a
            first incremental pass, then their changes, each batch as an ingestion job.
        watch_collection: the collection the watched folders go into.
        watch_debounce: seconds a file must be left alone before it is indexed.
        identity_secret: the registration secret of a resident server (``serve --detach``): ``GET
            /identity?nonce=N`` answers ``identity_proof(secret, N)``; None: that route is 404.
        served_model_name, served_reranker_name: names reported by the API (default: the hub id,
            or the directory's name, so no server path is shown).
    """

    model: str | None = None
    reranker: str | None = None
    no_reranker: bool = False
    adapter: str | None = None
    reranker_adapter: str | None = None
    rerank_pixels: int | None = None
    device: str | None = None
    dtype: str = "auto"
    host: str = "127.0.0.1"
    port: int = 8000
    api_keys: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    read_timeout: float = 30.0
    max_connections: int = 256
    collections_roots: tuple[Path, ...] = ()
    home: Path | None = None
    data_dir: Path | None = None
    allow_url_hosts: tuple[str, ...] = ()
    fetch_allow_hosts: frozenset[str] = frozenset()
    fetch_timeout: float = 20.0
    batch_wait_ms: float = 5.0
    max_batch_items: int = 64
    max_queue_items: int = 4096
    encode_workers: int | None = None
    max_body_bytes: int = 64 * MiB
    max_upload_bytes: int = 2048 * MiB
    max_items: int = 256
    max_documents: int = 1000
    max_media_bytes: int = 32 * MiB
    max_image_pixels: int = MediaLimits.max_image_pixels
    max_video_seconds: float = 3600.0
    max_video_frames: int = 216_000  # an hour at 60 fps
    ingest_workers: int | None = None
    watch_paths: tuple[Path, ...] = ()
    watch_collection: str = "default"
    watch_debounce: float = 2.0
    identity_secret: str | None = field(default=None, repr=False)
    served_model_name: str | None = None
    served_reranker_name: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        short = [k for k in self.api_keys if len(k) < MIN_KEY_LENGTH]
        if short:
            raise InputError(f"an API key must have at least {MIN_KEY_LENGTH} characters "
                             f"({len(short)} key(s) shorter); generate one with: python -c "
                             "'import secrets; print(secrets.token_urlsafe(24))'")
        if self.read_timeout <= 0 or self.max_connections < 1:
            raise InputError("read_timeout must be > 0 and max_connections >= 1")

    @property
    def url_inputs(self) -> bool:
        """Whether inputs may name http(s) URLs at all."""
        return bool(self.allow_url_hosts)

    def fetch_policy(self) -> FetchPolicy | None:
        """The URL policy of the models, ``None`` (every URL refused) unless hosts are allowed."""
        if not self.allow_url_hosts:
            return None
        hosts = {h.strip().lower() for h in self.allow_url_hosts if h.strip()}
        return FetchPolicy(max_bytes=self.max_media_bytes, timeout=self.fetch_timeout,
                           allow_hosts=frozenset(self.fetch_allow_hosts),
                           only_hosts=None if "*" in hosts else frozenset(hosts))

    def media_limits(self) -> MediaLimits:
        """Caps the loaded models apply to every media input (requests and ingestion)."""
        return MediaLimits(max_image_pixels=self.max_image_pixels, max_video_seconds=self.max_video_seconds,
                           max_video_frames=self.max_video_frames, fetch=self.fetch_policy())

    def resolved_home(self) -> Path:
        from ..catalog import vlsearch_home

        return Path(self.home).expanduser() if self.home else vlsearch_home()

    def resolved_data_dir(self) -> Path:
        return Path(self.data_dir).expanduser() if self.data_dir else self.resolved_home() / "server"

    def resolved_roots(self) -> tuple[Path, ...]:
        """The allowed roots, absolute with symbolic links resolved."""
        return tuple(Path(os.path.realpath(Path(r).expanduser())) for r in self.collections_roots)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address or ``localhost`` (binding there needs no API key).

    Example:
        >>> is_loopback("127.0.0.1"), is_loopback("0.0.0.0")
        (True, False)
    """
    host = host.strip().strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def display_name(model: str) -> str:
    """A model's public name: a hub id as is, a directory by its last component."""
    path = Path(model).expanduser()
    if path.is_dir() or path.is_absolute() or model.startswith((".", "~")):
        return path.name or model
    return model
