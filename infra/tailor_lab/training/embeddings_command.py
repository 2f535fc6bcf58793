"""`tailor train embeddings`: learn item vectors from a data file, events or Ingest's archive, and publish them.

The training itself is tailor_lab.training.embeddings, the code the scheduled TrainEmbeddings function runs.

    tailor train embeddings --data train.txt [--items items.csv] [--out DIR] [--publish] [--json report.json]
    tailor train embeddings --events events.jsonl | --archive BUCKET [--since DAY --until DAY] ...

--data is a session-rec file (`SessionId ItemId Time`, tab separated) or a Diginetica item-views file; --items
is a CSV with a header naming `item_id` and any of `category`, `brand`, `price`, `name`, `available` (or
Diginetica's product-categories.csv). With events (a JSON-lines file or Ingest's archive), item metadata also
comes from the events' own fields where they carry them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from tailor.archive import archived_events
from tailor.embeddings import ARTIFACT, MODEL_NAME
from tailor.models import ModelRegistry
from tailor_lab.datasets import json_lines, load_diginetica, load_yoochoose

from .embeddings import (
    EmbeddingParams,
    Interactions,
    interactions_from_events,
    publishable,
    read_item_metadata,
    train_item_vectors,
)
from .model_output import add_output_arguments, check_output_arguments, s3_blobs

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tailor train embeddings", description=__doc__.split("\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", type=Path, help="a session-rec file (SessionId ItemId Time) or Diginetica item views")
    source.add_argument("--events", type=Path, help="events as JSON lines (.jsonl or .jsonl.gz)")
    source.add_argument("--archive", metavar="BUCKET", help="the event archive in this S3 bucket (Ingest's archive/ prefix)")
    parser.add_argument("--since", help="first archive day to read (YYYY-MM-DD)")
    parser.add_argument("--until", help="last archive day to read (YYYY-MM-DD)")
    parser.add_argument("--items", type=Path, help="item metadata CSV: item_id and any of category, brand, price, name")
    defaults = EmbeddingParams()
    for name in ("dim", "window", "gap_power", "context_power", "shift", "singular_power", "ignore_weight", "prior"):
        kind = type(getattr(defaults, name))
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, default=getattr(defaults, name),
                            help="default: %(default)s")
    add_output_arguments(parser, write_default=False)
    args = parser.parse_args(argv)
    check_output_arguments(parser, args)
    params = EmbeddingParams(**{name: getattr(args, name) for name in ("dim", "window", "gap_power", "context_power",
                                                                      "shift", "singular_power", "ignore_weight",
                                                                      "prior")})
    started = time.perf_counter()
    try:
        data, label = _read(args)
        attributes = read_item_metadata(args.items) if args.items else None
    except (OSError, ValueError) as exc:
        print(f"tailor train embeddings: {exc}", file=sys.stderr)
        return 2
    print(f"{label}: {len(data.sessions)} sessions, {data.events} engagements, "
          f"{sum(map(len, data.ignored))} ignored impressions", flush=True)
    vectors = train_item_vectors(data, params, attributes=attributes, echo=lambda m: print(m, flush=True))
    payload, metadata = publishable(vectors, data, label, started)
    version = metadata["version"]
    print(f"{MODEL_NAME} {version}: {len(vectors)} items x {vectors.dim} ({int(vectors.metadata_only.sum())} from "
          f"metadata alone), {len(payload) / 1e6:.1f} MB")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "vectors.npz").write_bytes(payload)
        (args.out / "metadata.json").write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")
        print(f"written to {args.out}")
    if args.publish:
        published = ModelRegistry(s3_blobs(args)).publish(MODEL_NAME, payload, metadata, artifact=ARTIFACT)
        print(f"published {MODEL_NAME}:{published} to s3://{args.bucket}/models/{MODEL_NAME}/ (current)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")
    return 0


# -- helpers --------------------------------------------------------------------------------------------


def _read(args: argparse.Namespace) -> tuple[Interactions, str]:
    if args.data:
        with open(args.data, encoding="utf-8") as fh:
            header = fh.readline()
        events = load_diginetica(args.data) if ";" in header else load_yoochoose(args.data)
        return interactions_from_events(events), f"data file {args.data}"
    if args.events:
        return interactions_from_events(json_lines(args.events)), f"events file {args.events}"
    events = archived_events(s3_blobs(args, args.archive), since=args.since, until=args.until)
    return interactions_from_events(events), f"archive s3://{args.archive}"
