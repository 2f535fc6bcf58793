"""The template's functions in this process on moto: its tables, bucket, stream and queues created, each function's
environment as the template resolves it, and its handler imported afresh from its CodeUri, as a cold start would."""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import json
import os
import sys
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from types import ModuleType, SimpleNamespace
from typing import Any

import boto3
from moto import mock_aws

import tailor.aws_clients
from tailor_local.kinesis import kinesis_event
from tailor_local.template import Template

from tests.helpers import ROOT

TEMPLATE = ROOT / "template.yaml"
BUCKET = "tailor-data-test"
STACK = "tailor"
_loads = itertools.count()


class MotoFunctions:
    """The template's functions over the resources moto holds for them. The block runs with the template's global
    environment; a function is imported and invoked with its own."""

    def __init__(self, template: Template, names: Mapping[str, str], overrides: Mapping[str, str]):
        self.template = template
        self.names = dict(names)  # logical id -> the name (a queue: its URL) that Ref gives
        self.overrides = dict(overrides)
        variables = ((template.body.get("Globals") or {}).get("Function") or {}).get("Environment", {})
        self.environment = {**self._resolved(variables.get("Variables") or {}), **self.overrides}

    def function_environment(self, function: str) -> dict[str, str]:
        """What the template sets for `function` (a logical id), Globals included, with the block's overrides."""
        variables = (self._properties(function).get("Environment") or {}).get("Variables") or {}
        return {**self._resolved(variables), **self.overrides}

    def handler(self, function: str) -> ModuleType:
        """The function's handler module, imported afresh in its environment."""
        file = self._properties(function)["Handler"].rpartition(".")[0]
        code = ROOT / self._properties(function)["CodeUri"]
        spec = importlib.util.spec_from_file_location(f"{function}_{next(_loads)}", code / f"{file}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        before, path = set(sys.modules), list(sys.path)
        sys.path.insert(0, str(code))  # as Lambda does: the handler imports the modules beside it by their names
        try:
            with self._within(function):
                spec.loader.exec_module(module)
        finally:
            sys.path[:] = path
            # Modules beside the handler stay with it: another function's of the same name (models, errors) is its own.
            for name in set(sys.modules) - before:
                if (getattr(sys.modules[name], "__file__", None) or "").startswith(f"{code}{os.sep}"):
                    del sys.modules[name]
        return module

    def invoke(self, function: str, event: Any, *, handler: ModuleType | None = None, context: Any = None) -> Any:
        """The function's answer to `event`, through `handler` if given (a warm start), else a fresh import; with all
        of the function's time left unless `context` says otherwise."""
        properties = self._properties(function)
        entry = getattr(handler or self.handler(function), properties["Handler"].rpartition(".")[2])
        context = context or lambda_context(function, memory_mb=int(properties.get("MemorySize", 128)),
                                            timeout_s=float(properties.get("Timeout", 3)))
        with self._within(function):
            return entry(event, context)

    @contextlib.contextmanager
    def _within(self, function: str) -> Iterator[None]:
        before = dict(os.environ)
        os.environ.update(self.function_environment(function))
        try:
            yield
        finally:
            os.environ.clear()
            os.environ.update(before)

    def _properties(self, function: str) -> dict[str, Any]:
        return self.template.functions()[function].properties

    def _resolved(self, variables: Mapping[str, Any]) -> dict[str, str]:
        return {k: str(v) for k, v in self.template.resolve(dict(variables), _Names(self.names)).items()}


@contextlib.contextmanager
def functions_on_moto(**overrides: str) -> Iterator[MotoFunctions]:
    """moto holding the template's state, the template's global environment (and `overrides`) set for the block."""
    template = Template.load(TEMPLATE, stack_name=STACK)
    saved = dict(os.environ)
    try:
        with mock_aws():
            boto3.setup_default_session()
            tailor.aws_clients.setup_session()  # the functions' clients: a fresh process's credentials and hooks
            functions = MotoFunctions(template, _create(template), overrides)
            os.environ.update(functions.environment)
            yield functions
    finally:
        os.environ.clear()
        os.environ.update(saved)
        boto3.DEFAULT_SESSION = None
        tailor.aws_clients.setup_session()


def lambda_context(function: str, *, memory_mb: int = 512, timeout_s: float = 60) -> SimpleNamespace:
    """A Lambda context for `function` with all of its time left."""
    return SimpleNamespace(function_name=function, function_version="$LATEST", memory_limit_in_mb=memory_mb,
                           invoked_function_arn=f"arn:aws:lambda:us-east-1:123456789012:function:{function}",
                           aws_request_id="00000000-0000-0000-0000-000000000000",
                           get_remaining_time_in_millis=lambda: int(timeout_s * 1000))


def kinesis_batch(events: list[dict], *, first_sequence: int = 0) -> dict:
    """`events` as one Kinesis batch from one shard, in order, as the event source mapping hands it to Ingest."""
    now = datetime.now(UTC)
    records = [{"PartitionKey": e.get("user_id", "x"), "SequenceNumber": str(10 ** 20 + first_sequence + n),
                "Data": json.dumps(e).encode(), "ApproximateArrivalTimestamp": now} for n, e in enumerate(events)]
    return kinesis_event(records, "shardId-000000000000", "arn:aws:kinesis:us-east-1:123456789012:stream/EventStream",
                         "us-east-1", "arn:aws:iam::123456789012:role/IngestFunctionRole")


class _Names:
    def __init__(self, names: Mapping[str, str]):
        self.names = names

    def ref(self, logical_id: str) -> str:
        return self.names[logical_id]

    def attribute(self, logical_id: str, name: str) -> str:
        raise KeyError(f"{logical_id}.{name}: no function's environment needed an attribute until now")


def _create(template: Template) -> dict[str, str]:
    """The template's tables (named by logical id), bucket, stream and queues in moto: logical id -> name or URL."""
    names: dict[str, str] = {}
    dynamodb = boto3.client("dynamodb")
    for logical_id, resource in template.resources_of_type("AWS::DynamoDB::Table").items():
        properties = resource["Properties"]
        indexes = properties.get("GlobalSecondaryIndexes")
        dynamodb.create_table(TableName=logical_id, BillingMode=properties["BillingMode"],
                              AttributeDefinitions=properties["AttributeDefinitions"],
                              KeySchema=properties["KeySchema"],
                              **({"GlobalSecondaryIndexes": indexes} if indexes else {}))
        names[logical_id] = logical_id
    for logical_id in template.resources_of_type("AWS::S3::Bucket"):
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        names[logical_id] = BUCKET
    for logical_id in template.resources_of_type("AWS::Kinesis::Stream"):
        boto3.client("kinesis").create_stream(StreamName=logical_id, ShardCount=1)
        names[logical_id] = logical_id
    for logical_id in template.resources_of_type("AWS::SQS::Queue"):
        names[logical_id] = boto3.client("sqs").create_queue(QueueName=logical_id)["QueueUrl"]
    return names
