"""Fixtures shared by the API tests."""

import os

import pytest

from tests.helpers.api import seeded_stack


# For the API tests' own package, not the session: its moto server shares the process's moto state, which every
# mock_aws block resets on leaving, so a stack kept up past these tests (or beside others) would poll vanished streams
# and queues and log about it.
@pytest.fixture(scope="package")
def api():
    """The API function on a local stack that has ingested the sample batch and a small simulated crowd."""
    with open(os.devnull, "w") as log, seeded_stack(log) as api:
        yield api
