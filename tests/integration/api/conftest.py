"""Fixtures shared by the API tests."""

import os

import pytest

from tests.helpers.api import seeded_stack


# For the API tests' own package, not the session: the stack and its pollers are up only while these tests run.
@pytest.fixture(scope="package")
def api():
    """The API function on a local stack that has ingested the sample batch and a small simulated crowd."""
    with open(os.devnull, "w") as log, seeded_stack(log) as api:
        yield api
