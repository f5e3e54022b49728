"""A bounded disk cache of rebuilt model inputs: PDF pages and video segments for the reranker.

Reranking rebuilds each candidate from its source (a page rendered, a segment's frames decoded).
The cache keeps those pictures, losslessly, keyed by the file's content hash, the item's locator
and the extraction layout, so the next search that meets the same candidate reads them back.

- Bounded: at most ``max_bytes`` on disk; the least recently used entries go first.
- Safe under concurrent processes: an entry is written to a temporary file and renamed into place;
  a reader sees a whole entry or none; eviction only unlinks.
- Never in the way: a full or unwritable directory turns the cache off for the process, with one
  warning per directory, however many threads meet it; a damaged entry is a miss.
- Private and checked: its folders are 0700, and each entry starts with an HMAC-SHA256 of its key and
  its bytes under a secret kept in the cache (0600), so an entry that was corrupted, moved to another
  key or planted by anyone who cannot read the secret fails the check and is removed, never decoded.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
import os
import secrets
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..files import private_dir
from ..items import Item
from ..locator import Locator

log = logging.getLogger("vlsearch.cache")
DEFAULT_MAX_BYTES = 2 * 1024 ** 3
_DIGEST = 32  # bytes of HMAC-SHA256 before each entry's payload
_off: set[Path] = set()  # cache folders this process found unwritable (and warned about)
_off_lock = threading.Lock()


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
        self._secret: bytes | None = None

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npz"

    def _digest(self, key: str, payload: bytes) -> bytes:
        if self._secret is None:
            self._secret = _secret(self.root)
        return hmac.new(self._secret, key.encode() + b"\0" + payload, hashlib.sha256).digest()

    def get(self, key: str) -> Item | None:
        if not self.enabled:
            return None
        path = self._path(key)
        try:
            entry = path.read_bytes()
            payload = entry[_DIGEST:]
            if not hmac.compare_digest(entry[:_DIGEST], self._digest(key, payload)):
                path.unlink(missing_ok=True)  # damaged, moved or planted: never decoded
                raise ValueError(f"{path}: fails its integrity check")
            with np.load(io.BytesIO(payload), allow_pickle=False) as data:
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
            payload = buffer.getvalue()
            entry = self._digest(key, payload) + payload
            fd, tmp = tempfile.mkstemp(dir=private_dir(path.parent), prefix=".", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(entry)
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            self._evict()
        except OSError as exc:
            self._turn_off(exc)

    def _turn_off(self, exc: OSError) -> None:
        """Off for this process, with one warning per folder however many threads and caches fail at once."""
        self.enabled = False
        with _off_lock:
            if self.root in _off:
                return
            _off.add(self.root)
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


def _secret(root: Path) -> bytes:
    """The cache's HMAC key: 32 random bytes in ``root/.secret`` (0600), made by the first process that needs
    it (written aside, then linked into place, so every process reads the same whole key). The cache's folder
    is made 0700 first, also one an older version left open."""
    os.chmod(private_dir(root), 0o700)
    path = root / ".secret"
    if not path.exists():
        fd, tmp = tempfile.mkstemp(dir=root, prefix=".secret.")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(secrets.token_bytes(32))
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process made it first
        finally:
            os.unlink(tmp)
    secret = path.read_bytes()
    if len(secret) != 32:
        raise OSError(f"{path}: not a cache secret")
    return secret
