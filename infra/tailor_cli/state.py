"""`tailor state WHAT KEY`: rows of the running stack's tables, for a shopper, a session, an item or a query; and a
published item cluster's traits and top items, from the stack's model registry."""

from __future__ import annotations

import argparse
from typing import Any

from tailor_local.stack import StackHandle

from .common import print_json, running, say

__all__ = ["add_parser"]


def add_parser(commands: Any) -> None:
    state = commands.add_parser("state", help="rows of the running stack's tables")
    what = state.add_subparsers(required=True, metavar="WHAT")
    for name, help_text in (("user", "a shopper and their sessions"), ("session", "a session"),
                            ("item", "an item and its associations"), ("query", "a search query's items")):
        sub = what.add_parser(name, help=help_text)
        sub.add_argument("key")
        sub.set_defaults(command=_state, what=name)
    cluster = what.add_parser("cluster", help="a published item cluster: its traits, click rate, neighbours and top items")
    cluster.add_argument("key", metavar="ID")
    cluster.set_defaults(command=_state_cluster)
    tables = what.add_parser("tables", help="rows per table")
    tables.set_defaults(command=_state_tables)


def _state(args: argparse.Namespace) -> int:
    handle = running(args)
    key = args.key
    if args.what == "user":
        found = _show_row(handle, "ShoppersTable", {"user_id": key}, f"shopper {key}")
        sessions = sorted(handle.scan("SessionsTable", user_id=key),
                          key=lambda row: (row.get("last_seen") or 0, row["session_id"]))
        say(f"\n{len(sessions)} session(s) of {key}, latest last:")
        for row in sessions:
            print_json(row)
        return 0 if found is not None or sessions else 1
    if args.what == "session":
        return 0 if _show_row(handle, "SessionsTable", {"session_id": key}, f"session {key}") is not None else 1
    if args.what == "item":
        found = _show_row(handle, "ItemsTable", {"item_id": key}, f"item {key}")
        if found is not None and "catalog" in found:
            from tailor.catalog import served_fields

            say(f"\nitem {key} as it is served (the catalog's fields over those events set):")
            print_json(served_fields(found))
        if "AssociationsTable" in handle.resources:
            _show_row(handle, "AssociationsTable", {"item_id": key}, f"associations of item {key}")
        return 0 if found is not None else 1
    from tailor.text import normalize_query

    found = _show_row(handle, "QueriesTable", {"query": normalize_query(key)}, f"query {key!r}")
    return 0 if found is not None else 1


def _state_cluster(args: argparse.Namespace) -> int:
    from tailor.clusters import MODEL_NAME, load_item_clusters
    from tailor.models import ModelRegistry
    from tailor.store.aws import S3BlobStore

    handle = running(args)
    bucket = handle.resources.name("DataBucket")
    registry = ModelRegistry(S3BlobStore(handle.aws.client("s3"), bucket))
    clusters = load_item_clusters(registry)
    if clusters is None:
        say(f"no item clusters published in s3://{bucket}/models/{MODEL_NAME}/ (RebuildClustersFunction builds them: "
            "tailor invoke RebuildClustersFunction)")
        return 1
    version = registry.current_version(MODEL_NAME)
    if args.key not in clusters.index:
        shown = ", ".join(clusters.ids[:12]) + (" ..." if len(clusters.ids) > 12 else "")
        say(f"no cluster {args.key} in the published item clusters ({MODEL_NAME}:{version}); they are {shown}")
        return 1
    say(f"cluster {args.key} ({MODEL_NAME}:{version}, {len(clusters.ids)} clusters):")
    print_json(clusters.describe(args.key))
    return 0


def _state_tables(args: argparse.Namespace) -> int:
    handle = running(args)
    for lid, count in handle.row_counts().items():
        print(f"{lid:<22} {handle.resources.name(lid):<36} {count:>9,} rows")
    return 0


def _show_row(handle: StackHandle, table: str, key: dict[str, str], label: str) -> dict[str, Any] | None:
    """Print the row of `key` (or that there is none), and return it."""
    row = handle.get_row(table, key)
    if row is None:
        say(f"no {label} in {handle.resources.name(table)}")
        return None
    say(f"{label} ({handle.resources.name(table)}):")
    print_json(row)
    return row
