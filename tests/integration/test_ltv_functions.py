"""TrainLtv and RebuildLtv on moto: events ingested into DynamoDB and the archive, a model trained from the archive and
published, every shopper scored into their row by the scheduled handler, and the profile showing it."""

from __future__ import annotations

import importlib.util
import time
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import boto3
import pytest
from moto import mock_aws

from conftest import ROOT, load_event
from ltv_support import purchase_histories
from support import to_records
from tailor.ingest.service import Ingestor
from tailor.ltv.rebuild import CHECKPOINT_ID, LTV_FIELD, STAMP_FIELD
from tailor.ltv.scoring import MODEL_NAME
from tailor.models import ModelRegistry, load_model
from tailor.ranking import MODEL_NAME as RANKER
from tailor.ranking import RankingModel
from tailor.serving import Recommender
from tailor.store.aws import DynamoStateStore, S3BlobStore
from tailor_local.aws import create_state_tables

BUCKET = "tailor-ltv-test"
SHOPPERS = 50


@pytest.fixture
def aws(monkeypatch):
    with mock_aws():
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        dynamodb = boto3.client("dynamodb")
        tables = create_state_tables(dynamodb, "ltv")
        for table, name in tables.items():
            monkeypatch.setenv(f"{table.upper()}_TABLE", name)
        monkeypatch.setenv("DATA_BUCKET", BUCKET)
        monkeypatch.setenv("LTV_HORIZON_WEEKS", "4")
        monkeypatch.setenv("LTV_PAGE_SIZE", "16")
        monkeypatch.setenv("LTV_WRITERS", "4")
        yield DynamoStateStore(dynamodb, tables), S3BlobStore(boto3.client("s3"), BUCKET)


def test_train_then_rebuild_scores_every_shopper_and_the_profile_shows_it(aws):
    store, bucket = aws
    now = time.time()
    start = datetime.fromtimestamp(now, tz=timezone.utc) - timedelta(weeks=30)
    events = [e for e in purchase_histories(shoppers=SHOPPERS, weeks=30, start=start)
              if datetime.fromisoformat(e["timestamp"]).timestamp() < now - 60]
    assert not Ingestor(store, bucket, max_workers=4).ingest(to_records(events)).failed
    assert bucket.list("archive/")

    train = _handler("train_ltv")
    trained = train.lambda_handler(load_event("train-ltv-schedule.json"), _context("TrainLtvFunction"))
    assert trained["status"] == "trained" and trained["events"] == len(events) and trained["version"]
    registry = ModelRegistry(bucket)
    assert registry.current_version(MODEL_NAME) == trained["version"]
    assert "mae_transactions" in registry.fetch(MODEL_NAME).metadata["backtest"]

    users = {e["user_id"] for e in events}
    rebuild = _handler("rebuild_ltv")
    report = rebuild.lambda_handler(load_event("rebuild-ltv-schedule.json"), _context("RebuildLtvFunction"))
    assert report["status"] == "done" and report["scored"] == len(users)
    assert report["pages"] == -(-len(users) // 16) + (len(users) % 16 == 0)
    rows = store.read("shoppers", sorted(users))
    assert all(row[LTV_FIELD]["model"] == f"{MODEL_NAME}:{trained['version']}" for row in rows.values())
    assert store.read("checkpoints", [CHECKPOINT_ID])[CHECKPOINT_ID]["done"] is True
    # The next firing finds the day's run done.
    again = rebuild.lambda_handler(load_event("rebuild-ltv-schedule.json"), _context("RebuildLtvFunction"))
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


def _handler(folder: str):
    spec = importlib.util.spec_from_file_location(f"{folder}_app_under_test", ROOT / "functions" / folder / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _context(function: str) -> SimpleNamespace:
    return SimpleNamespace(function_name=function, function_version="$LATEST", memory_limit_in_mb=1769,
                           invoked_function_arn=f"arn:aws:lambda:us-east-1:123456789012:function:{function}",
                           aws_request_id="00000000-0000-0000-0000-000000000000",
                           get_remaining_time_in_millis=lambda: 900_000)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
