"""The catalog of collections: where they live, their names, whether they exist, their stores.

A collection is a directory: ``<home>/collections/<name>`` for a plain name (``home`` is
``$VLSEARCH_HOME``, by default ``~/.vlsearch``), or any path. It holds the store (LanceDB in
``store/``) and its metadata, or, when its records live elsewhere (Milvus), a
``collection.json`` naming that store. The CLI, the server and eval all go through here.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from .errors import CollectionNotFound, InputError, StoreError
from .files import private_dir, read_json, write_json
from .stores import open_store

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
EXTERNAL = "collection.json"  # names the store of a collection whose records live elsewhere


def vlsearch_home() -> Path:
    """``$VLSEARCH_HOME``, by default ``~/.vlsearch``."""
    return Path(os.environ.get("VLSEARCH_HOME") or "~/.vlsearch").expanduser()


def check_name(name: str) -> str:
    """``name`` if it is a valid collection name; InputError otherwise."""
    if not isinstance(name, str) or not NAME.match(name):
        raise InputError(f"invalid collection name {name!r}: use letters, digits, '.', '_' and '-'")
    return name


class Catalog:
    """The collections under one home directory.

    Args:
        home: the home directory (default ``$VLSEARCH_HOME``, read when used).
        names_only: refuse paths, accept plain names only (the server: clients never name paths).

    Example:
        >>> Catalog().names()
        ['papers', 'photos']
    """

    def __init__(self, home: str | os.PathLike | None = None, *, names_only: bool = False) -> None:
        self._home = Path(home).expanduser() if home else None
        self.names_only = names_only

    @property
    def home(self) -> Path:
        return self._home or vlsearch_home()

    @property
    def root(self) -> Path:
        return self.home / "collections"

    def path(self, name: str) -> Path:
        """Where the collection ``name`` lives: a plain name under the home, a path as given."""
        if not self.names_only and isinstance(name, str) and (os.sep in name or name.startswith(".")):
            return Path(name).expanduser().resolve()
        return self.root / check_name(name)

    def exists(self, name: str) -> bool:
        return is_collection(self.path(name))

    def require(self, name: str) -> Path:
        """The path of an existing collection; ``CollectionNotFound`` otherwise."""
        path = self.path(name)
        if not is_collection(path):
            raise CollectionNotFound(f"no collection {name!r}" + ("" if self.names_only else f" (looked in {path})"))
        return path

    def names(self) -> list[str]:
        """Names of the collections under the home directory."""
        return sorted(p.name for p in self.root.iterdir() if is_collection(p)) if self.root.is_dir() else []

    def store_uri(self, path: Path, store: str | None = None) -> str:
        """The collection's store: the one recorded, else ``store``, else LanceDB in ``path/store``.
        A ``store`` that contradicts the recorded one is refused."""
        local = str(path / "store")
        if store is not None and "://" not in store:
            store = str(Path(store).expanduser().resolve())
        recorded = read_json(path / EXTERNAL).get("store") or (local if is_collection(path) else None)
        if store is not None and recorded is not None and store != recorded:
            raise StoreError(f"collection {path.name!r} lives in {recorded}; it cannot be opened with store {store} "
                             "(index into a new collection instead)")
        return recorded or store or local

    def record_store(self, path: Path, uri: str) -> None:
        """Remember an external store for the collection at ``path`` (before its first write)."""
        if uri != str(path / "store"):
            private_dir(path)
            write_json(path / EXTERNAL, {"store": uri})

    def remove(self, name: str) -> None:
        """Delete a collection and everything in it (its external store's collections too)."""
        path = self.path(name)
        if not (path / "store").is_dir() and not (path / EXTERNAL).is_file():
            raise CollectionNotFound(f"no collection {name!r}" + ("" if self.names_only else f" (looked in {path})"))
        external = read_json(path / EXTERNAL).get("store")
        if external:
            drop = getattr(open_store(external), "drop", None)
            if drop is not None:
                drop()
        shutil.rmtree(path)


def is_collection(path: Path) -> bool:
    """A collection exists once its metadata is written (its first ``add`` loaded a model); one in
    an external store (Milvus) records that store in ``collection.json`` just before."""
    return (path / "store" / "meta.json").is_file() or (path / EXTERNAL).is_file()
