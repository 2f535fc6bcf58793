"""TrainEmbeddings on moto: a simulated day ingested into the archive and a catalog entry of an item nobody met, item
vectors learned (the new item's from its metadata) and published with the calls the template grants, then loaded by
Ingest, whose sessions keep vectors in their space; an empty archive skipped."""

from __future__ import annotations

import json
import os
import time

import boto3
import numpy as np
import pytest
from cfnlint.decode import cfn_yaml

from tailor.associations import EVENT_WEIGHTS
from tailor.catalog import CatalogEntry, load_catalog
from tailor.embeddings import MODEL_NAME, load_item_vectors
from tailor.embeddings.online import OnlineVectors, stored_vector
from tailor.ingest.service import Ingestor
from tailor.models import ModelRegistry
from tailor.settings import EraseSettings, TrainEmbeddingsSettings
from tailor.store.aws import DynamoStateStore, S3BlobStore

from tests.helpers.events import load_event, recent_simulated_day, to_records
from tests.integration.test_template import ROOT, TEMPLATE, assert_granted, recorded_functions


@pytest.fixture(scope="module")
def template() -> dict:
    return cfn_yaml.load(str(TEMPLATE))


def test_train_embeddings_runs_daily_on_its_sample_event_before_the_clusters_rebuild(template):
    resources = template["Resources"]
    function = resources["TrainEmbeddingsFunction"]
    properties = function["Properties"]
    assert function["Metadata"]["BuildMethod"] == "makefile" and properties["Timeout"] <= 900
    assert (ROOT / properties["CodeUri"] / "Makefile").is_file()
    (event,) = properties["Events"].values()
    assert event["Type"] == "ScheduleV2" and event["Properties"]["ScheduleExpression"].startswith("cron(")
    assert json.loads(event["Properties"]["Input"]) == load_event("train-embeddings-schedule.json")
    settings = TrainEmbeddingsSettings.read({"DATA_BUCKET": "d", **properties["Environment"]["Variables"]})
    assert settings.embedding_dim == 256 and settings.embedding_history_days > 0

    def hour(name: str) -> int:
        (found,) = resources[name]["Properties"]["Events"].values()
        minute, at = found["Properties"]["ScheduleExpression"][len("cron("):].split()[:2]
        return int(at) * 60 + int(minute)

    assert hour("TrainEmbeddingsFunction") < hour("RebuildClustersFunction")  # the clusters read the vectors


def test_train_embeddings_publishes_within_the_granted_calls_and_ingest_keeps_vectors_in_their_space(template):
    events = recent_simulated_day(shoppers=30, seed=37)
    with recorded_functions(EMBEDDING_DIM="16") as (functions, calls):
        settings = TrainEmbeddingsSettings.read(os.environ)
        bucket = S3BlobStore(boto3.client("s3"), settings.data_bucket)
        store = DynamoStateStore(boto3.client("dynamodb"), EraseSettings.read(os.environ).tables)
        half = len(events) // 2
        assert not Ingestor(store, bucket, max_workers=4).ingest(to_records(events[:half])).failed
        # A new item in the catalog that no shopper has met yet, one off sale, and one shoppers met that sold out.
        seen = next(e for e in events[:half] if e.get("category") and e.get("price"))
        load_catalog(store, [CatalogEntry(item_id="i-new", category=seen["category"], price=seen["price"],
                                          name="a new arrival"),
                             CatalogEntry(item_id="i-gone", category=seen["category"], available=False),
                             CatalogEntry(item_id=seen["item_id"], available=False)],
                     received_at=time.time())
        calls.clear()
        report = functions.invoke("TrainEmbeddingsFunction", load_event("train-embeddings-schedule.json"))
        assert report["status"] == "trained" and report["dim"] == 16 and report["engagements"] > 0
        assert report["items_described"] > 1  # the new item, and those Ingest's events described
        assert {"s3:GetObject", "s3:PutObject", "s3:ListBucket", "dynamodb:Scan"} <= {action for action, _, _ in calls}
        assert_granted(template, "TrainEmbeddingsFunction", calls)
        registry = ModelRegistry(bucket)
        assert registry.current_version(MODEL_NAME) == report["version"]
        vectors = load_item_vectors(registry)
        assert vectors is not None and len(vectors) == report["items"]
        assert {e["item_id"] for e in events[:half] if e.get("item_id")} <= set(vectors.ids)
        assert "i-gone" not in vectors.ids and vectors.metadata_only[vectors.row("i-new")]
        assert vectors.available[vectors.row(seen["item_id"])] == 0.0  # the search leaves it out
        assert np.linalg.norm(vectors.vector("i-new")) > 0
        assert registry.fetch(MODEL_NAME).metadata["data_window"]["first"]
        assert registry.fetch(MODEL_NAME).metadata["artifact"] == "vectors.npz"  # a vectors file, not a graph

        online = OnlineVectors.load(registry)
        assert not Ingestor(store, bucket, max_workers=4, vectors=online).ingest(
            to_records(events[half:], start=half)).failed
        # Every session that engaged with an item of the vectors keeps a vector of their space.
        sessions = {e["session_id"] for e in events[half:]
                    if EVENT_WEIGHTS.get(e["event_type"]) and vectors.row(e.get("item_id", "")) is not None}
        rows = store.read("sessions", sorted(sessions))
        assert sessions and all(stored_vector(row.get("vector"), vectors) is not None for row in rows.values())


def test_train_embeddings_skips_an_empty_archive(template):
    with recorded_functions() as (functions, _):
        report = functions.invoke("TrainEmbeddingsFunction", load_event("train-embeddings-schedule.json"))
        assert report["status"] == "skipped" and report["items"] == 0
        assert load_item_vectors(ModelRegistry(S3BlobStore(boto3.client("s3"), os.environ["DATA_BUCKET"]))) is None
