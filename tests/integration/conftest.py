"""Fixtures shared by the API tests."""

import os

import pytest

from tests.helpers.api import seeded_stack


@pytest.fixture(scope="session")
def api():
    """The API function on a local stack that has ingested the sample batch and a small simulated crowd."""
    with open(os.devnull, "w") as log, seeded_stack(log) as api:
        yield api
