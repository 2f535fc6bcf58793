"""Where a model trained from the command line goes: a folder, the defaults shipped in the layer, the registry."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tailor.models import DEFAULT_DIR, ModelRegistry
from tailor.store.port import BlobStore

__all__ = ["add_output_arguments", "check_output_arguments", "deliver", "s3_blobs"]


def add_output_arguments(parser: argparse.ArgumentParser, *, write_default: bool = True) -> None:
    """--out, --publish, --bucket, --endpoint-url, --json and (where a default model ships) --write-default."""
    parser.add_argument("--out", type=Path, help="write model.onnx and metadata.json into this directory")
    parser.add_argument("--publish", action="store_true",
                        help="publish to the registry in --bucket (or DATA_BUCKET) and make it current")
    parser.add_argument("--bucket", default=os.environ.get("DATA_BUCKET"), help="the data bucket (default: DATA_BUCKET)")
    parser.add_argument("--endpoint-url", default=os.environ.get("AWS_ENDPOINT_URL"),
                        help="S3 endpoint, e.g. the local stack's (default: AWS_ENDPOINT_URL)")
    if write_default:
        parser.add_argument("--write-default", action="store_true", help=f"make it the default shipped in {DEFAULT_DIR}")
    parser.add_argument("--json", type=Path, help="write the report as JSON here")


def check_output_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.publish and not args.bucket:
        parser.error("--publish needs --bucket or DATA_BUCKET")


def deliver(args: argparse.Namespace, name: str, onnx: bytes, metadata: Mapping[str, Any]) -> str | None:
    """Write and publish the model where the arguments say; the version published, if it was."""
    document = json.dumps(dict(metadata), indent=2, sort_keys=True) + "\n"
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "model.onnx").write_bytes(onnx)
        (args.out / "metadata.json").write_text(document)
        print(f"written to {args.out}")
    if getattr(args, "write_default", False):
        (DEFAULT_DIR / f"{name}.onnx").write_bytes(onnx)
        (DEFAULT_DIR / f"{name}.json").write_text(document)
        print(f"default model written to {DEFAULT_DIR}")
    if not args.publish:
        return None
    published = ModelRegistry(s3_blobs(args)).publish(name, onnx, dict(metadata))
    print(f"published {name}:{published} to s3://{args.bucket}/models/{name}/ (current)")
    return published


def s3_blobs(args: argparse.Namespace, bucket: str | None = None) -> BlobStore:
    """The bucket (`bucket`, else --bucket) at --endpoint-url, if one is given."""
    import boto3

    from tailor.store.aws import S3BlobStore

    client = boto3.client("s3", endpoint_url=args.endpoint_url) if args.endpoint_url else boto3.client("s3")
    return S3BlobStore(client, bucket or args.bucket)
