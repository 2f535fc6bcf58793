"""Test-wide settings: a fake AWS account and region, Powertools in local mode, shared fixtures."""

import os
from pathlib import Path
from typing import Any

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


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Side by side (`make test`'s `-n`), a worker takes a whole file, so that a module's fixtures are built once, and
    a whole folder where the folder has fixtures of its own (the API tests' one stack)."""
    from xdist.scheduler import LoadScopeScheduling

    tests = Path(__file__).parent

    class ByFileOrFolder(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            folder = (config.rootpath / path).parent
            return str(folder) if folder != tests and (folder / "conftest.py").exists() else path

    return ByFileOrFolder(config, log)


@pytest.fixture
def ingest_batch() -> dict:
    return load_event("ingest-kinesis-batch.json")


@pytest.fixture(scope="session")
def small_ltv_model():
    """The small LTV model of tests.helpers.ltv, trained once for every test that only scores with it."""
    from tests.helpers.ltv import small_model

    return small_model()
