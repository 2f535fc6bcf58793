"""Catalog loads on DynamoDB (moto): two loads of one item at once both land through the conditional write, and a
load that keeps losing the race gives up with an error rather than write over the other."""

from __future__ import annotations

from datetime import UTC, datetime

import boto3
import pytest
from moto import mock_aws

from tailor.catalog import WRITE_TRIES, CatalogBusy, CatalogEntry, catalog_view, load_catalog
from tailor.store.aws import DynamoStateStore
from tailor_local.aws import create_state_tables

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC).timestamp()


class RacedStore(DynamoStateStore):
    """Another load sets the item's brand between this load's read and each of its first `races` writes."""

    def __init__(self, client, tables, races: int):
        super().__init__(client, tables)
        self.races = races

    def write_state(self, table, key, fields, **kwargs):
        if table == "items" and self.races > 0:
            self.races -= 1
            load_catalog(DynamoStateStore(self.client, self.tables), [CatalogEntry(item_id=key, brand=f"b{self.races}")],
                         received_at=NOW)
        return super().write_state(table, key, fields, **kwargs)


@pytest.fixture
def dynamodb():
    with mock_aws():
        client = boto3.client("dynamodb")
        yield client, create_state_tables(client, "test")


def test_a_load_that_met_another_reads_again_and_both_land(dynamodb):
    store = RacedStore(*dynamodb, races=2)
    loaded = load_catalog(store, [CatalogEntry(item_id="i-1", price=5.0)], received_at=NOW)
    assert loaded.written == 1 and store.races == 0
    row = catalog_view(store.read("items", ["i-1"])["i-1"])
    assert (row["brand"], row["price"]) == ("b0", 5.0)


def test_a_load_that_keeps_losing_the_race_gives_up_and_writes_nothing_over_the_others(dynamodb):
    store = RacedStore(*dynamodb, races=WRITE_TRIES)
    with pytest.raises(CatalogBusy, match="changed under"):
        load_catalog(store, [CatalogEntry(item_id="i-1", price=5.0)], received_at=NOW)
    row = catalog_view(store.read("items", ["i-1"])["i-1"])
    assert row["brand"] == "b0" and "price" not in row
