"""Where a model trained from the command line goes: a folder, the defaults shipped in the layer, the registry."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from tailor.models import DEFAULT_DIR, ModelRegistry, StoredModel, default_model
from tailor.store.port import BlobStore

__all__ = ["DEFAULT", "REGISTRY", "Delivery", "Incumbent", "add_output_arguments", "check_output_arguments", "deliver",
           "incumbents_from", "replaced_models", "s3_blobs"]

T = TypeVar("T")

# Where a model can go that another already serves from: the layer's default, the registry's current version.
DEFAULT = "default"
REGISTRY = "registry"


@dataclass(frozen=True)
class Incumbent:
    """The model a delivery would replace, scored beside the new one on the same held-out data (higher is better)."""

    label: str
    metric: str
    score: float
    new_score: float
    basis: str = "the same data"  # what both were scored on, as the refusal names it

    @property
    def beats_new(self) -> bool:
        return self.new_score < self.score

    def refusal(self, target: str) -> str:
        where = "made the default" if target == DEFAULT else "published"
        return (f"not {where}: it scores {self.metric} {self.new_score:.4f} where {self.label}, which it would "
                f"replace, scores {self.score:.4f} on {self.basis} (--force to deliver it anyway)")


@dataclass(frozen=True)
class Delivery:
    """What deliver did: the version published, if it was, and the targets refused for a better incumbent."""

    published: str | None = None
    refused: tuple[str, ...] = ()

    @property
    def report(self) -> dict[str, Any]:
        """What the command's JSON report says of it."""
        return {"published": self.published, "refused": list(self.refused)}

    @property
    def exit_code(self) -> int:
        """The command's: 1 where a target was refused, so a script notices."""
        return 1 if self.refused else 0


def add_output_arguments(parser: argparse.ArgumentParser, *, write_default: bool = True,
                         compared: bool = False) -> None:
    """--out, --publish, --bucket, --endpoint-url, --json, (where a default model ships) --write-default and (where
    the command scores the model it would replace) --force."""
    parser.add_argument("--out", type=Path, help="write model.onnx and metadata.json into this directory")
    parser.add_argument("--publish", action="store_true",
                        help="publish to the registry in --bucket (or DATA_BUCKET) and make it current")
    parser.add_argument("--bucket", default=os.environ.get("DATA_BUCKET"), help="the data bucket (default: DATA_BUCKET)")
    parser.add_argument("--endpoint-url", default=os.environ.get("AWS_ENDPOINT_URL"),
                        help="S3 endpoint, e.g. the local stack's (default: AWS_ENDPOINT_URL)")
    if write_default:
        parser.add_argument("--write-default", action="store_true", help=f"make it the default shipped in {DEFAULT_DIR}")
    parser.add_argument("--json", type=Path, help="write the report as JSON here")
    if compared:
        parser.add_argument("--force", action="store_true",
                            help="make it the default or publish it even where the model it replaces scores better")


def check_output_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.publish and not args.bucket:
        parser.error("--publish needs --bucket or DATA_BUCKET")


def deliver(args: argparse.Namespace, name: str, onnx: bytes, metadata: Mapping[str, Any], *,
            incumbents: Mapping[str, Incumbent] | None = None) -> Delivery:
    """Write and publish the model where the arguments say. A target (DEFAULT, REGISTRY) whose incumbent scores better
    than the new model is left as it is, unless --force: a retrain on a bad week must not replace a better model."""
    document = json.dumps(dict(metadata), indent=2, sort_keys=True) + "\n"
    if args.out:  # a folder of the caller's own: always written, so a refused model can still be looked at
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "model.onnx").write_bytes(onnx)
        (args.out / "metadata.json").write_text(document)
        print(f"written to {args.out}")
    wanted = [target for target, asked in ((DEFAULT, getattr(args, "write_default", False)), (REGISTRY, args.publish))
              if asked]
    refused = tuple(target for target in wanted if not getattr(args, "force", False)
                    and (incumbent := (incumbents or {}).get(target)) is not None and incumbent.beats_new)
    for target in refused:
        print(incumbents[target].refusal(target), file=sys.stderr)
    if DEFAULT in wanted and DEFAULT not in refused:
        (DEFAULT_DIR / f"{name}.onnx").write_bytes(onnx)
        (DEFAULT_DIR / f"{name}.json").write_text(document)
        print(f"default model written to {DEFAULT_DIR}")
    if REGISTRY not in wanted or REGISTRY in refused:
        return Delivery(refused=refused)
    published = ModelRegistry(s3_blobs(args)).publish(name, onnx, dict(metadata))
    print(f"published {name}:{published} to s3://{args.bucket}/models/{name}/ (current)")
    return Delivery(published, refused)


def incumbents_from(metric: str, new_score: float, basis: str, *, default: tuple[str, float] | None,
                    registry: tuple[str, float] | None) -> dict[str, Incumbent]:
    """Each target's incumbent from the name and score of the model there (the layer's `default`, the `registry`'s
    current; None where there is none to score). A registry without a current model of its own serves the layer's
    default, so publishing is weighed against that."""
    found = {target: Incumbent(f"{scored[0]} ({where})", metric, scored[1], new_score, basis)
             for target, scored, where in ((DEFAULT, default, "the layer's default"),
                                           (REGISTRY, registry, "the registry's current"))
             if scored is not None}
    if REGISTRY not in found and DEFAULT in found:
        found[REGISTRY] = found[DEFAULT]
    return found


def replaced_models(name: str, build: Callable[[StoredModel], T], args: argparse.Namespace
                    ) -> tuple[T | None, T | None]:
    """The models of `name` the delivery the arguments ask for would replace that this code can score (`build`
    refuses the others): the layer's default, and, with --publish, the registry's current version where it has one
    other than the default."""
    registry = ModelRegistry(s3_blobs(args)) if args.publish else None

    def built(stored: Callable[[], StoredModel], where: str) -> T | None:
        try:
            return build(stored())
        except (OSError, LookupError, ValueError) as exc:
            print(f"  {where} {name} model is not compared: {exc}", file=sys.stderr)
            return None

    shipped = built(lambda: default_model(name), "the shipped")
    if registry is None or registry.current_version(name) is None:
        return shipped, None
    current = built(lambda: registry.fetch(name), "the registry's current")
    same = current is not None and shipped is not None and current.version == shipped.version
    return shipped, None if same else current


def s3_blobs(args: argparse.Namespace, bucket: str | None = None) -> BlobStore:
    """The bucket (`bucket`, else --bucket) at --endpoint-url, if one is given."""
    import boto3

    from tailor.store.aws import S3BlobStore

    client = boto3.client("s3", endpoint_url=args.endpoint_url) if args.endpoint_url else boto3.client("s3")
    return S3BlobStore(client, bucket or args.bucket)
