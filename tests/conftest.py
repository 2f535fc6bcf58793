"""Test-wide settings: a fake AWS account and region, Powertools in local mode, shared fixtures."""

import os

import pytest

from tests.helpers.events import load_event

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
# The models the tests train are small: OpenMP threads (scikit-learn's gradient boosting) cost more in start-up and
# spinning than they save, most of all on a machine with two cores and other work on them.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture
def ingest_batch() -> dict:
    return load_event("ingest-kinesis-batch.json")


@pytest.fixture(scope="session")
def small_ltv_model():
    """The small LTV model of tests.helpers.ltv, trained once for every test that only scores with it."""
    from tests.helpers.ltv import small_model

    return small_model()
