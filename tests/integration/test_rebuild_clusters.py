"""RebuildClusters on moto: a simulated day ingested into the archive, the items clustered (leaving out those their
rows say are off sale, placing those only the catalog knows) and published with the calls the template grants, ids
kept by the next rebuild, and the clusters loaded by serving and Ingest from the registry."""

from __future__ import annotations

import json
import os
import time

import boto3
import pytest
from cfnlint.decode import cfn_yaml

from tailor.catalog import CatalogEntry, catalog_attributes, load_catalog
from tailor.clusters import MODEL_NAME, load_item_clusters
from tailor.ingest.service import Ingestor
from tailor.models import ModelRegistry
from tailor.settings import EraseSettings, RebuildClustersSettings
from tailor.store.aws import DynamoStateStore, S3BlobStore

from tests.helpers.events import load_event, recent_simulated_day, to_records
from tests.integration.test_template import ROOT, TEMPLATE, assert_granted, recorded_functions


@pytest.fixture(scope="module")
def template() -> dict:
    return cfn_yaml.load(str(TEMPLATE))


def test_rebuild_clusters_runs_daily_on_its_sample_event_within_lambdas_limit(template):
    function = template["Resources"]["RebuildClustersFunction"]
    properties = function["Properties"]
    assert function["Metadata"]["BuildMethod"] == "makefile" and properties["Timeout"] <= 900
    assert (ROOT / properties["CodeUri"] / "Makefile").is_file()
    (event,) = properties["Events"].values()
    assert event["Type"] == "ScheduleV2" and event["Properties"]["ScheduleExpression"].startswith("cron(")
    assert json.loads(event["Properties"]["Input"]) == load_event("rebuild-clusters-schedule.json")
    assert RebuildClustersSettings.read(
        {"DATA_BUCKET": "d", **properties["Environment"]["Variables"]}).cluster_count >= 2


def test_rebuild_clusters_publishes_within_the_granted_calls_and_keeps_ids(template):
    events = recent_simulated_day(shoppers=30, seed=31)
    with recorded_functions(CLUSTER_COUNT="6") as (functions, calls):
        settings = RebuildClustersSettings.read(os.environ)
        bucket = S3BlobStore(boto3.client("s3"), settings.data_bucket)
        store = DynamoStateStore(boto3.client("dynamodb"), EraseSettings.read(os.environ).tables)
        assert not Ingestor(store, bucket, max_workers=4).ingest(to_records(events)).failed
        # An item the shop sold out of is in no cluster: a cluster's top items are served and shown.
        sold_out = next(e["item_id"] for e in events if e.get("item_id"))
        # Items only the catalog knows: one on sale joins a cluster, so an adaptive feed can place it; one off sale
        # does not.
        category = next(e["category"] for e in events if e.get("category"))
        load_catalog(store, [CatalogEntry(item_id=sold_out, available=False),
                             CatalogEntry(item_id="just-listed", category=category, price=25.0),
                             CatalogEntry(item_id="listed-sold-out", category=category, available=False)],
                     received_at=time.time())
        calls.clear()
        report = functions.invoke("RebuildClustersFunction", load_event("rebuild-clusters-schedule.json"))
        assert report["status"] == "built" and report["clusters"] == 6 and report["ids_kept"] == 0
        assert (report["items_placed"], report["items_not_placed"]) == (1, 0)
        assert {"s3:GetObject", "s3:PutObject", "s3:ListBucket", "dynamodb:Scan"} <= {a for a, _, _ in calls}
        assert_granted(template, "RebuildClustersFunction", calls)
        registry = ModelRegistry(bucket)
        assert registry.current_version(MODEL_NAME) == report["version"]
        assert registry.fetch(MODEL_NAME).metadata["artifact"] == "clusters.json"  # a JSON document, not a graph
        first = load_item_clusters(registry)
        assert first is not None and len(first.ids) == 6
        off_sale = {item for item, found in catalog_attributes(store).items() if found.get("available") is False}
        assert sold_out in off_sale
        assert set(first.members) == {e["item_id"] for e in events if e.get("item_id")} - off_sale | {"just-listed"}

        again = functions.invoke("RebuildClustersFunction", load_event("rebuild-clusters-schedule.json"))
        assert again["status"] == "built" and again["ids_kept"] == 6  # the same archive: every cluster keeps its id
        assert load_item_clusters(registry).ids == first.ids


def test_rebuild_clusters_skips_an_empty_archive(template):
    with recorded_functions() as (functions, _):
        report = functions.invoke("RebuildClustersFunction", load_event("rebuild-clusters-schedule.json"))
        assert report["status"] == "skipped" and report["items"] == 0
        assert load_item_clusters(ModelRegistry(S3BlobStore(boto3.client("s3"), os.environ["DATA_BUCKET"]))) is None
