"""TrainLtv and RebuildLtv on moto: events ingested into DynamoDB and the archive, a model trained from the archive and
published, every shopper scored into their row by the scheduled handler, and the profile showing it."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta

import boto3
import pytest

from tailor.ingest.service import Ingestor
from tailor.ltv.rebuild import CHECKPOINT_ID, LTV_FIELD, STAMP_FIELD
from tailor.ltv.scoring import MODEL_NAME
from tailor.models import ModelRegistry, load_model
from tailor.ranking import MODEL_NAME as RANKER
from tailor.ranking import RankingModel
from tailor.serving import Recommender
from tailor.settings import RebuildLtvSettings
from tailor.store.aws import DynamoStateStore, S3BlobStore

from tests.helpers.events import load_event, to_records
from tests.helpers.lambdas import functions_on_moto
from tests.helpers.ltv import purchase_histories

SHOPPERS = 50


@pytest.fixture
def aws():
    """The LTV functions on moto, with a four-week horizon and pages of 16 shoppers so that a small crowd fills several."""
    with functions_on_moto(LTV_HORIZON_WEEKS="4", LTV_PAGE_SIZE="16", LTV_WRITERS="4") as functions:
        store = DynamoStateStore(boto3.client("dynamodb"), RebuildLtvSettings.read(os.environ).tables)
        yield functions, store, S3BlobStore(boto3.client("s3"), os.environ["DATA_BUCKET"])


def test_train_then_rebuild_scores_every_shopper_and_the_profile_shows_it(aws):
    functions, store, bucket = aws
    now = time.time()
    start = datetime.fromtimestamp(now, tz=UTC) - timedelta(weeks=30)
    events = [e for e in purchase_histories(shoppers=SHOPPERS, weeks=30, start=start)
              if datetime.fromisoformat(e["timestamp"]).timestamp() < now - 60]
    assert not Ingestor(store, bucket, max_workers=4).ingest(to_records(events)).failed
    assert bucket.list("archive/")

    trained = functions.invoke("TrainLtvFunction", load_event("train-ltv-schedule.json"))
    assert trained["status"] == "trained" and trained["events"] == len(events) and trained["version"]
    registry = ModelRegistry(bucket)
    assert registry.current_version(MODEL_NAME) == trained["version"]
    assert "mae_transactions" in registry.fetch(MODEL_NAME).metadata["backtest"]

    users = {e["user_id"] for e in events}
    rebuild = functions.handler("RebuildLtvFunction")
    report = functions.invoke("RebuildLtvFunction", load_event("rebuild-ltv-schedule.json"), handler=rebuild)
    assert report["status"] == "done" and report["scored"] == len(users)
    assert report["pages"] == -(-len(users) // 16) + (len(users) % 16 == 0)
    rows = store.read("shoppers", sorted(users))
    assert all(row[LTV_FIELD]["model"] == f"{MODEL_NAME}:{trained['version']}" for row in rows.values())
    assert store.read("checkpoints", [CHECKPOINT_ID])[CHECKPOINT_ID]["done"] is True
    # The next firing finds the day's run done.
    again = functions.invoke("RebuildLtvFunction", load_event("rebuild-ltv-schedule.json"), handler=rebuild)
    assert again["status"] == "up_to_date"

    # Ingest goes on writing the shopper's state; the LTV beside it stays, and the profile shows both.
    user = events[-1]["user_id"]
    later = dict(events[-1], event_id="late-view", event_type="view", timestamp=_iso(now - 30))
    for key in ("price", "quantity"):
        later.pop(key)
    assert not Ingestor(store, bucket, max_workers=1).ingest(to_records([later], start=len(events))).failed
    row = store.read("shoppers", [user])[user]
    assert row["counts"]["view"] >= 1 and row[LTV_FIELD] == rows[user][LTV_FIELD]
    recommender = Recommender(store, load_model(RANKER, None, build=RankingModel.from_stored))
    profile = recommender.profile(user)
    assert profile["ltv"]["expected_spend"] == rows[user][LTV_FIELD]["expected_spend"]
    assert profile["ltv"]["as_of"] == rows[user][STAMP_FIELD] and profile["ltv"]["drivers"]


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
