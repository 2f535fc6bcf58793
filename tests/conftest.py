"""Test-wide settings: a fake AWS account and region, Powertools in local mode, shared fixtures."""

import base64
import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EVENTS = ROOT / "events"

for name, value in {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_SERVICE_NAME": "tailor",
    "POWERTOOLS_METRICS_NAMESPACE": "Tailor",
    "POWERTOOLS_DEV": "false",
}.items():
    os.environ[name] = value
os.environ.pop("AWS_ENDPOINT_URL", None)
os.environ.pop("AWS_PROFILE", None)


def load_event(name: str) -> dict:
    return json.loads((EVENTS / name).read_text())


def kinesis_payloads(event: dict) -> list[bytes]:
    return [base64.b64decode(r["kinesis"]["data"]) for r in event["Records"]]


@pytest.fixture
def ingest_batch() -> dict:
    return load_event("ingest-kinesis-batch.json")
