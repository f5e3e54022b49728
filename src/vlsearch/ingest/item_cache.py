"""A bounded disk cache of rebuilt model inputs: PDF pages and video segments for the reranker.

Reranking rebuilds each candidate from its source (a page rendered, a segment's frames decoded).
The cache keeps those pictures, losslessly, keyed by the file's content hash, the item's locator
and the extraction layout, so the next search that meets the same candidate reads them back.

- Bounded: at most ``max_bytes`` on disk; the least recently used entries go first.
- Safe under concurrent processes: an entry is written to a temporary file and renamed into place;
  a reader sees a whole entry or none; eviction only unlinks.
- Never in the way: a full or unwritable directory turns the cache off for the process, with one
  warning; a damaged entry is a miss.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..items import Item
from ..locator import Locator

log = logging.getLogger("vlsearch.cache")
DEFAULT_MAX_BYTES = 2 * 1024 ** 3


def cache_key(content_hash: str, locator: Locator, layout: dict[str, Any]) -> str:
    """The key of an item: its file's bytes, its place in the file, and how it was cut."""
    payload = json.dumps([content_hash, locator.to_dict(), layout], sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:40]


class ItemCache:
    """``get(key)`` / ``put(key, item)`` for items whose pictures are PIL images (a page or image,
    or a video given as frames, with its ``fps``)."""

    def __init__(self, root: str | os.PathLike, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.root, self.max_bytes = Path(root), max_bytes
        self.enabled = max_bytes > 0
        self.hits = self.misses = 0

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npz"

    def get(self, key: str) -> Item | None:
        if not self.enabled:
            return None
        path = self._path(key)
        try:
            with np.load(path, allow_pickle=False) as data:
                frames = [Image.fromarray(a) for a in data["frames"]]
                fps = float(data["fps"])
            os.utime(path)  # recently used
        except (OSError, KeyError, ValueError):
            self.misses += 1
            return None
        self.hits += 1
        return Item(video=frames, fps=fps) if fps > 0 else Item(image=frames[0])

    def put(self, key: str, item: Item) -> None:
        if not self.enabled:
            return
        frames = item.video if isinstance(item.video, list) else [item.image]
        if not frames or not all(isinstance(f, Image.Image) for f in frames):
            return
        buffer = io.BytesIO()
        fps = float(item.fps or 0.0) if item.video is not None else 0.0
        np.savez(buffer, frames=np.stack([np.asarray(f.convert("RGB")) for f in frames]), fps=np.float64(fps))
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(buffer.getvalue())
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            self._evict()
        except OSError as exc:
            self.enabled = False
            log.warning("the reranking cache in %s is off for this process: %s", self.root, exc)

    def _evict(self) -> None:
        """Unlink the least recently used entries until the cache fits ``max_bytes``."""
        entries = []
        for path in self.root.glob("*/*.npz"):
            try:
                stat = path.stat()
            except OSError:
                continue
            entries.append((stat.st_mtime, stat.st_size, path))
        total = sum(size for _, size, _ in entries)
        for _, size, path in sorted(entries):
            if total <= self.max_bytes:
                break
            path.unlink(missing_ok=True)
            total -= size
