"""RebuildLtv scores every shopper page by page, resumes where an invocation stopped, and touches only its own fields."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from tailor.events import parse_event
from tailor.ltv.rebuild import CHECKPOINT_ID, LTV_FIELD, STAMP_FIELD, LtvRebuild
from tailor.ltv.scoring import MODEL_NAME
from tailor.models import ModelRegistry
from tailor.shopper import fold_shopper
from tailor.store.memory import MemoryBlobStore, MemoryStateStore

from tests.helpers.ltv import AS_OF, purchase_histories

SHOPPERS = 40


@pytest.fixture
def world(small_ltv_model):
    """Shopper rows as Ingest folds them, one row of counters only, and the model current in a registry."""
    store = MemoryStateStore()
    states = {}
    for raw in purchase_histories(shoppers=SHOPPERS):
        event = parse_event(raw)
        if event.epoch < AS_OF.timestamp():
            states[event.user_id] = fold_shopper(states.get(event.user_id), event)
    for user, state in states.items():
        store.tables["shoppers"][user] = {**state.to_row(), "sw:shardId-0": "000001"}
    store.tables["shoppers"]["referrer-only"] = {"user_id": "referrer-only", "referrals_sent": 2}
    registry = ModelRegistry(MemoryBlobStore())
    registry.publish(MODEL_NAME, small_ltv_model.onnx, small_ltv_model.metadata)
    return store, registry, sorted(states)


def rebuild(store, registry, *, at=AS_OF, **kwargs) -> LtvRebuild:
    return LtvRebuild(store, registry, clock=lambda: at.timestamp(), page_size=7, writers=1, **kwargs)


def test_one_run_scores_every_shopper_with_purchases_spend_percentile_and_drivers(world):
    store, registry, users = world
    report = rebuild(store, registry).run()
    assert report["status"] == "done" and report["scored"] == len(users) and report["run_skipped"] == 1
    assert report["pages"] == -(-(len(users) + 1) // 7)
    rows = store.tables["shoppers"]
    for user in users:
        ltv = rows[user][LTV_FIELD]
        assert ltv["horizon_weeks"] == 4 and ltv["expected_purchases"] >= 0 and ltv["expected_spend"] >= 0
        assert isinstance(ltv["typical_purchases"], int) and 0 <= ltv["percentile"] <= 100
        # The quoted spend is that of whole purchase days at the shopper's expected value per day.
        per_day = ltv["expected_spend"] / ltv["expected_purchases"] if ltv["expected_purchases"] else 0.0
        days = ltv["typical_spend"] / per_day if per_day else 0.0
        assert days == pytest.approx(round(days), abs=0.01) and ltv["typical_spend"] >= 0
        # No profile shows purchase days without spend, nor spend without a purchase day.
        assert (ltv["typical_purchases"] == 0) == (ltv["typical_spend"] == 0)
        assert 1 <= len(ltv["drivers"]) <= 3 and ltv["model"].startswith("ltv:")
        assert rows[user][STAMP_FIELD].startswith(AS_OF.strftime("%Y-%m-%dT%H:%M:%S"))
    assert LTV_FIELD not in rows["referrer-only"]
    # Higher spend, higher percentile.
    by_spend = sorted(users, key=lambda u: rows[u][LTV_FIELD]["expected_spend"])
    assert rows[by_spend[0]][LTV_FIELD]["percentile"] < rows[by_spend[-1]][LTV_FIELD]["percentile"]


def test_a_run_out_of_time_pauses_and_the_next_invocation_carries_it_on(world):
    store, registry, users = world
    budget = iter([100.0, 0.0])  # time is up after the second page
    first = rebuild(store, registry).run(remaining_seconds=lambda: next(budget))
    assert first["status"] == "paused" and first["pages"] == 2 and first["scored"] + first["run_skipped"] == 14
    scored = {u for u, row in store.tables["shoppers"].items() if LTV_FIELD in row}
    assert len(scored) == first["scored"]
    second = rebuild(store, registry, at=AS_OF + timedelta(minutes=15)).run()
    assert second["status"] == "done" and second["as_of"] == first["as_of"]  # the same run, as of its start
    assert second["run_scored"] == len(users) and second["scored"] == len(users) - first["scored"]
    # Then nothing until the next run is due, which starts from the first page.
    assert rebuild(store, registry, at=AS_OF + timedelta(hours=2)).run()["status"] == "up_to_date"
    third = rebuild(store, registry, at=AS_OF + timedelta(days=1, minutes=1)).run()
    assert third["status"] == "done" and third["scored"] == len(users) and third["as_of"] > second["as_of"]


def test_a_run_whose_model_can_no_longer_be_loaded_starts_over_with_the_current_one(world):
    store, registry, users = world
    budget = iter([100.0, 0.0])
    first = rebuild(store, registry).run(remaining_seconds=lambda: next(budget))
    assert first["status"] == "paused"
    # A deploy shipped another default, say: the version the run started with is nowhere to be read.
    store.tables["checkpoints"][CHECKPOINT_ID]["model_version"] = "20260101T000000Z-gone"
    later = AS_OF + timedelta(minutes=15)
    second = rebuild(store, registry, at=later).run()
    assert second["status"] == "done" and second["model"] == first["model"] and second["run_scored"] == len(users)
    assert second["as_of"] > first["as_of"]  # a new run, as of now


def test_a_second_invocation_on_the_same_run_stops_instead_of_doubling_the_work(world, monkeypatch):
    store, registry, users = world
    budget = iter([100.0, 0.0])
    rebuild(store, registry).run(remaining_seconds=lambda: next(budget))
    scan = store.scan

    def racing_scan(*args, **kwargs):
        # Another invocation moves the run on while this one scores its page.
        store.tables["checkpoints"][CHECKPOINT_ID]["lease"] += "+"
        return scan(*args, **kwargs)

    monkeypatch.setattr(store, "scan", racing_scan)
    report = rebuild(store, registry).run()
    assert report["status"] == "busy"
    checkpoint = store.tables["checkpoints"][CHECKPOINT_ID]
    assert checkpoint["pages"] == 2 and not checkpoint["done"]  # its page is not recorded as its own


def test_rebuild_sets_only_its_fields_and_never_revives_an_erased_shopper(world):
    store, registry, users = world
    keeper, erased = users[0], users[1]
    del store.tables["shoppers"][erased]
    rebuild(store, registry).run()
    assert erased not in store.tables["shoppers"]
    # Ingest writes a shopper's state fields after the rebuild: the LTV stays, and the rebuild's next run
    # keeps Ingest's fields.
    row = store.tables["shoppers"][keeper]
    store.write_state("shoppers", keeper, {"events": row["events"] + 1}, watermark="sw:shardId-0",
                      expected="000001", new="000002")
    assert store.tables["shoppers"][keeper][LTV_FIELD]
    rebuild(store, registry, at=AS_OF + timedelta(days=2)).run()
    row = store.tables["shoppers"][keeper]
    assert row["sw:shardId-0"] == "000002" and row["events"] == store.tables["shoppers"][keeper]["events"]
    # A run as of an older moment does not overwrite a newer one.
    assert not store.annotate("shoppers", keeper, {LTV_FIELD: {"expected_spend": -1}}, requires="first_seen",
                              stamp=STAMP_FIELD, at=AS_OF.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
    assert store.tables["shoppers"][keeper][LTV_FIELD]["expected_spend"] >= 0


def test_without_a_model_of_its_own_or_shipped_nothing_is_scored(world, tmp_path):
    store, _, _ = world
    assert rebuild(store, ModelRegistry(MemoryBlobStore()), default_dir=tmp_path).run() == {"status": "no_model",
                                                                                          "scored": 0}
    assert not any(LTV_FIELD in row for row in store.tables["shoppers"].values())


def test_a_shop_without_a_model_of_its_own_is_scored_with_the_shipped_default(world, tmp_path, small_ltv_model):
    store, _, users = world
    (tmp_path / f"{MODEL_NAME}.onnx").write_bytes(small_ltv_model.onnx)
    (tmp_path / f"{MODEL_NAME}.json").write_text(json.dumps({**small_ltv_model.metadata, "version": "shipped-1"}))
    empty = ModelRegistry(MemoryBlobStore())
    # A run that began with the shipped model resumes with it in the next invocation.
    assert rebuild(store, empty, default_dir=tmp_path).run(remaining_seconds=lambda: 0.0)["status"] == "paused"
    report = rebuild(store, empty, default_dir=tmp_path).run()
    assert report["status"] == "done" and report["model"] == f"{MODEL_NAME}:shipped-1"
    assert all(store.tables["shoppers"][u][LTV_FIELD]["model"] == f"{MODEL_NAME}:shipped-1" for u in users)


def test_scheduled_training_publishes_from_the_archive_and_skips_a_shop_too_young_to_learn_from():
    import gzip
    import json

    from tailor_lab.training.ltv import retrain_from_archive

    blobs = MemoryBlobStore()
    events = [e for e in purchase_histories(shoppers=60) if e["timestamp"] < AS_OF.isoformat()]
    by_day: dict[str, list[str]] = {}
    for e in events:
        by_day.setdefault(e["timestamp"][:10], []).append(json.dumps(e))
    for day, lines in by_day.items():
        blobs.put(f"archive/date={day}/shard=shardId-0/000{day}.jsonl.gz", gzip.compress("\n".join(lines).encode()))
    young = retrain_from_archive(blobs, AS_OF - timedelta(weeks=20), horizon_weeks=4)
    assert young["status"] == "skipped" and "history" in young["reason"]
    assert ModelRegistry(blobs).current_version(MODEL_NAME) is None
    report = retrain_from_archive(blobs, AS_OF, history_weeks=26, horizon_weeks=4)
    assert report["status"] == "trained" and report["version"] == ModelRegistry(blobs).current_version(MODEL_NAME)
    # Only the last 26 weeks of the archive were read.
    assert 0 < report["events"] < len(events) and report["since"] == (AS_OF - timedelta(weeks=26)).date().isoformat()
    assert "spearman_spend" in ModelRegistry(blobs).fetch(MODEL_NAME).metadata["backtest"]
    # What the backtest chose of the correction is in the report the function logs.
    assert report["correction_weights"] == ModelRegistry(blobs).fetch(MODEL_NAME).metadata["correction_weights"]


def test_the_profile_shows_the_ltv_once_a_rebuild_wrote_it(world):
    from tailor.models import load_model
    from tailor.ranking import MODEL_NAME as RANKER
    from tailor.ranking import RankingModel
    from tailor.serving import Recommender

    store, registry, users = world
    recommender = Recommender(store, load_model(RANKER, None, build=RankingModel.from_stored),
                              clock=lambda: AS_OF.timestamp())
    assert recommender.profile(users[0])["ltv"] is None
    rebuild(store, registry).run()
    ltv = recommender.profile(users[0])["ltv"]
    assert ltv == {**store.tables["shoppers"][users[0]][LTV_FIELD], "as_of": store.tables["shoppers"][users[0]][STAMP_FIELD]}
    assert {"expected_purchases", "expected_spend", "typical_purchases", "typical_spend", "percentile", "drivers",
            "horizon_weeks", "model"} <= set(ltv)


def test_the_predicted_ltv_stays_in_the_shoppers_row_through_ingests_later_writes(world):
    from tailor.ingest.fold import FoldedRow
    from tailor.ltv.rebuild import predicted_ltv
    from tailor.shopper import ShopperState

    store, registry, users = world
    rebuild(store, registry).run()
    row = store.tables["shoppers"][users[0]]
    kept = predicted_ltv(row)
    assert kept["expected_spend"] == row[LTV_FIELD]["expected_spend"] and kept["as_of"] == row[STAMP_FIELD]
    # The fields Ingest writes for a shopper it folds again hold no LTV: the rebuild's stays as it was.
    assert LTV_FIELD not in FoldedRow(ShopperState.from_row(row), None).fields()
    assert predicted_ltv({"user_id": "new"}) is None and predicted_ltv(None) is None
