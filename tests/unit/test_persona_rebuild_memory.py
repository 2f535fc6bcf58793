"""The persona rebuild holds a bounded number of shoppers whatever the shop's size: it fits on a sample its first scan
keeps and assigns everyone in a second scan, a chunk at a time, and the model does not depend on the scan's order."""

import json
import random
import weakref

import numpy as np
import pytest

from tailor.ingest.service import Ingestor, StreamRecord
from tailor.personas import rebuild
from tailor.personas.clustering import refine
from tailor.personas.features import batch_features
from tailor.personas.model import PersonaModel, persona_evidence
from tailor.personas.rebuild import run_job
from tailor.personas.storage import current_model
from tailor.shopper import ShopperState
from tailor.store.memory import MemoryBlobStore, MemoryStateStore
from tailor.store.port import every_row
from tailor_lab.simulator import simulate

CLOCK = 1.8e9


@pytest.fixture(scope="module")
def shoppers_table() -> dict:
    store = MemoryStateStore()
    ingestor = Ingestor(store, MemoryBlobStore(), max_workers=1)
    events = simulate(shoppers=240, days=2.0, seed=5).events
    records = [StreamRecord("shardId-0", str(10_000 + n), json.dumps(e).encode(), e["user_id"])
               for n, e in enumerate(events)]
    for start in range(0, len(records), 100):
        assert not ingestor.ingest(records[start:start + 100]).failed
    return {table: dict(rows) for table, rows in store.tables.items()}


def _store(tables: dict) -> MemoryStateStore:
    store = MemoryStateStore()
    for table, rows in tables.items():
        store.tables[table].update({key: json.loads(json.dumps(row)) for key, row in rows.items()})
    return store


def _scanned_in_an_order_of(order_seed: int, monkeypatch) -> None:
    """The rebuild's scans of the shoppers table give its rows in an order of `order_seed`'s (each scan its own), as
    a DynamoDB table's hash order might, rather than the in-memory store's sorted keys."""
    rng = random.Random(order_seed)

    def shuffled(store, table, attributes=None, **kw):
        rows = list(every_row(store, table, attributes, **kw))
        if table == "shoppers":
            rng.shuffle(rows)
        yield from rows

    monkeypatch.setattr(rebuild, "every_row", shuffled)


def _rebuilt(store: MemoryStateStore) -> tuple[dict, bytes]:
    blobs = MemoryBlobStore()
    summary = run_job("rebuild", store, blobs, ks=(2, 3, 4), seed=0, clock=lambda: CLOCK)
    return summary, blobs.get(summary["published"])


def test_a_shop_larger_than_the_fit_sample_is_fitted_on_the_sample_and_every_shopper_assigned(shoppers_table,
                                                                                              monkeypatch):
    monkeypatch.setattr(rebuild, "FIT_SHOPPERS", 80)
    monkeypatch.setattr(rebuild, "CHOOSE_K_SHOPPERS", 60)
    monkeypatch.setattr(rebuild, "ASSIGN_CHUNK", 25)
    summary, published = _rebuilt(_store(shoppers_table))
    shoppers = summary["shoppers"]
    assert shoppers > 200 and summary["fitted_on"] == 80
    model = PersonaModel.from_bytes(published)
    assert model.counts.sum() == pytest.approx(shoppers)  # every shopper's responsibilities, from the second scan
    assert model.cold_start  # the weak signals' tables come from every shopper too


def test_a_second_scan_that_nears_the_deadline_stops_and_the_model_still_publishes(shoppers_table, monkeypatch):
    """Told the time it has left, the rebuild keeps FINISH_SECONDS for what comes after the second scan: it assigns
    the shoppers it can reach, scales the personas' sizes to the first scan's count, and says so."""
    monkeypatch.setattr(rebuild, "FIT_SHOPPERS", 80)
    monkeypatch.setattr(rebuild, "CHOOSE_K_SHOPPERS", 60)
    monkeypatch.setattr(rebuild, "ASSIGN_CHUNK", 25)
    asked = []

    class SecondScan(rebuild._Assignment):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            asked.append("started")

    monkeypatch.setattr(rebuild, "_Assignment", SecondScan)

    def time_left() -> float:  # plenty through the first scan; in the second, for three chunks, then too little
        if not asked:
            return 900.0
        asked.append(len(asked))
        return 900.0 if len(asked) < 4 else rebuild.FINISH_SECONDS - 1

    blobs = MemoryBlobStore()
    summary = run_job("rebuild", _store(shoppers_table), blobs, ks=(2, 3, 4), seed=0, clock=lambda: CLOCK,
                      time_left=time_left)
    shoppers = summary["shoppers"]
    assert summary["assignment_cut"] and summary["assigned"] == 75 < shoppers and len(asked) == 4
    model = PersonaModel.from_bytes(blobs.get(summary["published"]))
    assert model.info["assigned"] == 75 and model.info["assignment_cut"]
    assert model.counts.sum() == pytest.approx(shoppers)  # 75 shoppers' responsibilities, scaled to every shopper
    full = run_job("rebuild", _store(shoppers_table), MemoryBlobStore(), ks=(2, 3, 4), seed=0, clock=lambda: CLOCK,
                   time_left=lambda: 900.0)
    assert "assignment_cut" not in full and full["assigned"] == shoppers and full["version"] != summary["version"]


def test_a_first_scan_that_nears_the_deadline_stops_and_the_personas_are_fitted_on_what_it_reached(shoppers_table,
                                                                                                  monkeypatch):
    monkeypatch.setattr(rebuild, "FIT_SHOPPERS", 80)
    monkeypatch.setattr(rebuild, "CHOOSE_K_SHOPPERS", 60)
    monkeypatch.setattr(rebuild, "ASSIGN_CHUNK", 25)
    asked = []

    def time_left() -> float:  # asked every 25 shoppers of the first scan: time enough for 100 of them
        asked.append(len(asked))
        return 900.0 if len(asked) < 4 else rebuild.SURVEY_KEEPS_SECONDS - 1

    blobs = MemoryBlobStore()
    summary = run_job("rebuild", _store(shoppers_table), blobs, ks=(2, 3, 4), seed=0, clock=lambda: CLOCK,
                      time_left=time_left)
    assert summary["survey_cut"] and summary["shoppers"] == 100 and summary["fitted_on"] == 80
    assert "assigned" not in summary and len(asked) == 4  # no second scan
    model = PersonaModel.from_bytes(blobs.get(summary["published"]))
    assert model.info["survey_cut"] and model.counts.sum() == pytest.approx(100)


def _most_shoppers_alive(monkeypatch) -> list[int]:
    """The most shoppers read from rows and still held at any one time, as the job runs (a list of one, to read
    after it)."""
    alive, most = [0], [0]
    from_row = ShopperState.from_row.__func__

    def gone() -> None:
        alive[0] -= 1

    def counted(cls, row, **kw):
        state = from_row(cls, row, **kw)
        if state is not None:
            alive[0] += 1
            weakref.finalize(state, gone)
            most[0] = max(most[0], alive[0])
        return state

    monkeypatch.setattr(ShopperState, "from_row", classmethod(counted))
    return most


def test_the_rebuild_holds_the_fit_sample_and_one_chunk_of_shoppers_at_most(shoppers_table, monkeypatch):
    monkeypatch.setattr(rebuild, "FIT_SHOPPERS", 80)
    monkeypatch.setattr(rebuild, "CHOOSE_K_SHOPPERS", 60)
    monkeypatch.setattr(rebuild, "ASSIGN_CHUNK", 25)
    most = _most_shoppers_alive(monkeypatch)
    summary, _ = _rebuilt(_store(shoppers_table))
    assert summary["shoppers"] > 200
    # the sample, the chunk being assigned and the row being read (a few more: a scan's page is read ahead)
    assert most[0] <= 80 + 25 + 2


def test_a_refine_takes_recent_shoppers_a_chunk_at_a_time_and_moves_the_personas_as_all_at_once(shoppers_table,
                                                                                               monkeypatch):
    refined = []
    for chunk in (10_000, 25):
        monkeypatch.setattr(rebuild, "ASSIGN_CHUNK", chunk)
        store, blobs = _store(shoppers_table), MemoryBlobStore()
        run_job("rebuild", store, blobs, ks=(2, 3, 4), seed=0, clock=lambda: CLOCK)
        for n, row in enumerate(store.tables["shoppers"].values()):
            if n % 2 and "last_seen" in row:  # half the shoppers came back since
                row["last_seen"] += 10 * 86_400
        with monkeypatch.context() as counting:
            most = _most_shoppers_alive(counting)
            summary = run_job("refine", store, blobs, seed=0, clock=lambda: CLOCK + 3600)
        assert summary["refined_with"] > 100
        refined.append((summary, PersonaModel.from_bytes(blobs.get(summary["published"])), most[0]))
    (whole, at_once, _), (chunked, in_chunks, most_held) = refined
    assert most_held <= 25 + 2 < whole["refined_with"]
    assert chunked["refined_with"] == whole["refined_with"]
    assert in_chunks.info["data_through"] == at_once.info["data_through"] == max(
        row["last_seen"] for row in store.tables["shoppers"].values() if "last_seen" in row)
    assert np.allclose(in_chunks.means, at_once.means, rtol=1e-12, atol=1e-15)
    assert np.allclose(in_chunks.counts, at_once.counts, rtol=1e-12, atol=0)


def test_a_refine_in_one_chunk_is_the_mini_batch_step_on_every_recent_shopper(shoppers_table, monkeypatch):
    _scanned_in_an_order_of(4, monkeypatch)  # the chunk is taken by id, whatever order the scan gives
    store, blobs = _store(shoppers_table), MemoryBlobStore()
    run_job("rebuild", store, blobs, ks=(2, 3, 4), seed=0, clock=lambda: CLOCK)
    built = current_model(blobs)
    for n, row in enumerate(store.tables["shoppers"].values()):
        if n % 3 == 0 and "last_seen" in row:
            row["last_seen"] += 10 * 86_400
    recent = sorted((s for s in map(ShopperState.from_row, store.tables["shoppers"].values())
                     if s is not None and s.events > 0 and s.last_seen > built.info["data_through"]),
                    key=lambda s: s.user_id)
    means, counts, weights = refine(built, batch_features(recent, built.space), [persona_evidence(s) for s in recent])
    summary = run_job("refine", store, blobs, seed=0, clock=lambda: CLOCK + 3600)
    model = current_model(blobs)
    assert summary["refined_with"] == len(recent) > 50
    assert np.array_equal(model.means, means) and np.array_equal(model.counts, counts)
    assert np.array_equal(model.weights, weights)


def test_a_refine_with_no_shopper_seen_since_keeps_the_personas(shoppers_table):
    store, blobs = _store(shoppers_table), MemoryBlobStore()
    run_job("rebuild", store, blobs, ks=(2, 3, 4), seed=0, clock=lambda: CLOCK)
    built = current_model(blobs)
    summary = run_job("refine", store, blobs, seed=0, clock=lambda: CLOCK + 3600)
    model = current_model(blobs)
    assert summary["refined_with"] == 0 and model.info["data_through"] == built.info["data_through"]
    assert np.array_equal(model.means, built.means) and np.array_equal(model.counts, built.counts)


@pytest.mark.parametrize("fit_shoppers", [80, 10_000])
def test_the_personas_are_the_same_whatever_order_the_scans_give_the_shoppers_in(shoppers_table, monkeypatch,
                                                                                fit_shoppers):
    monkeypatch.setattr(rebuild, "FIT_SHOPPERS", fit_shoppers)
    monkeypatch.setattr(rebuild, "CHOOSE_K_SHOPPERS", 60)
    monkeypatch.setattr(rebuild, "ASSIGN_CHUNK", 25)
    monkeypatch.setattr(rebuild, "MAX_ITEMS", 150)  # a vocabulary cut where counts tie: ties go by name
    models = []
    for order_seed in (1, 2, 3):
        with monkeypatch.context() as scan:
            _scanned_in_an_order_of(order_seed, scan)
            models.append(PersonaModel.from_bytes(_rebuilt(_store(shoppers_table))[1]))
    first = models[0]
    for other in models[1:]:
        assert other.ids == first.ids and other.taste_items == first.taste_items
        assert other.space.categories == first.space.categories
        for name in ("weights", "means", "variances", "center", "scale", "item_log"):  # the fit: on the same sample
            assert np.array_equal(getattr(other, name), getattr(first, name)), name
        # sums over every shopper, added in scan order: equal to rounding
        assert np.allclose(other.counts, first.counts, rtol=1e-12, atol=0)
        assert other.cold_start.keys() == first.cold_start.keys()
        for signal, table in first.cold_start.items():
            assert other.cold_start[signal].keys() == table.keys()
            for value, shares in table.items():
                assert np.allclose(other.cold_start[signal][value], shares, atol=2e-5), (signal, value)
