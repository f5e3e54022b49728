"""``vlsearch collections``, ``info`` and ``rm``."""

from __future__ import annotations

import argparse
import json

from .common import command, shown


def register(commands: argparse._SubParsersAction) -> None:
    p = command(commands, "collections", help="list collections")
    p.set_defaults(run=run_list)
    p = command(commands, "info", help="describe a collection")
    p.add_argument("name")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=run_info)
    p = command(commands, "rm", help="delete a collection")
    p.add_argument("name")
    p.set_defaults(run=run_rm)


def run_list(args: argparse.Namespace) -> int:
    from ..catalog import Catalog
    from ..collection import Collection

    for name in Catalog().names():
        info = Collection(name, create=False).info()
        print("\t".join(map(shown, (name, f"{info['items']} items", f"{info['files']} files", info.get("model", "-")))))
    return 0


def run_info(args: argparse.Namespace) -> int:
    from ..collection import Collection

    info = Collection(args.name, create=False).info()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    for key in ("name", "path", "model", "fingerprint", "dim", "instruction", "created", "items", "files"):
        print(shown(f"{key:12} {info.get(key, '-')}"))
    for source, reason in info["failed"].items():
        print(shown(f"failed       {source}: {reason}"))
    return 0


def run_rm(args: argparse.Namespace) -> int:
    from ..collection import Collection

    Collection.remove(args.name)
    print(shown(f"removed {args.name}"))
    return 0
