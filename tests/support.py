"""The earlier import path of tests.helpers.events and tests.helpers.ingest, for the tests that still use it."""

from tests.helpers.events import SHARD, random_events, to_records
from tests.helpers.ingest import FlakyBlobStore, FlakyStateStore, TransientError, clean_run, deliver

__all__ = ["SHARD", "FlakyBlobStore", "FlakyStateStore", "TransientError", "clean_run", "deliver", "random_events",
           "to_records"]
