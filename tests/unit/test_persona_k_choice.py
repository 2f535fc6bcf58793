"""The persona rebuild says how it chose k: among which k, on how many shoppers, and why other k were left out."""

import json

import numpy as np

from tailor.ingest.service import Ingestor, StreamRecord
from tailor.personas.clustering import choose_k
from tailor.personas.rebuild import k_choice, run_job
from tailor.store.memory import MemoryBlobStore, MemoryStateStore
from tailor_lab.simulator import simulate


def test_choose_k_says_which_k_it_passed_over_and_why():
    rng = np.random.default_rng(0)
    z = np.vstack([rng.normal(0, 0.3, (20, 3)), rng.normal(5, 0.3, (20, 3))])
    passed_over: dict[int, str] = {}
    fit, bics = choose_k(z, range(2, 12), passed_over=passed_over)
    assert set(bics) | set(passed_over) == set(range(2, 12)) and not set(bics) & set(passed_over)
    assert passed_over[9] == passed_over[11] == "fewer than 5 shoppers per persona"  # 40 shoppers: k <= 8


def test_the_sentence_names_the_choice_the_shoppers_and_the_k_left_out():
    text = k_choice(3, range(2, 13), {2: 120.0, 3: 100.0, 4: 104.5},
                    {5: "a persona of fewer than 3 shoppers", **{k: "fewer than 5 shoppers per persona"
                                                                 for k in range(6, 13)}}, 28)
    assert text == ("k=3, the lowest BIC among k=2..4 on 28 shoppers (next: k=4, BIC +4.5), of k=2..12; "
                    "k=5 left out: a persona of fewer than 3 shoppers; "
                    "k=6..12 left out: fewer than 5 shoppers per persona")
    assert k_choice(1, [2, 3], {1: 50.0}, {2: "fewer than 5 shoppers per persona",
                                           3: "fewer than 5 shoppers per persona"}, 7).startswith(
        "k=1: none of k=2, 3 could be fitted to 7 shoppers")


def _ingested(shoppers: int) -> tuple[MemoryStateStore, MemoryBlobStore, list[dict]]:
    """The state Ingest keeps of `shoppers` simulated shoppers' few hours, and their events."""
    store, blobs = MemoryStateStore(), MemoryBlobStore()
    ingestor = Ingestor(store, blobs, max_workers=1)
    events = simulate(shoppers=shoppers, days=0.3, seed=5).events
    records = [StreamRecord("shardId-0", str(10_000 + n), json.dumps(e).encode(), e["user_id"])
               for n, e in enumerate(events)]
    for start in range(0, len(records), 100):
        ingestor.ingest(records[start:start + 100])
    return store, blobs, events


def test_a_rebuild_reports_its_shoppers_and_how_k_was_chosen():
    store, blobs, events = _ingested(40)
    built = run_job("rebuild", store, blobs, ks=range(2, 13))
    assert built["shoppers"] == len({e["user_id"] for e in events})
    assert built["k_choice"].startswith(f"k={built['k']}") and f"on {built['shoppers']} shoppers" in built["k_choice"]
    assert "left out: fewer than 5 shoppers per persona" in built["k_choice"]  # 40 shoppers cannot carry k=12


def test_a_large_shop_chooses_k_on_a_sample_and_fits_it_on_a_larger_one(monkeypatch):
    import tailor.personas.rebuild as rebuild

    monkeypatch.setattr(rebuild, "CHOOSE_K_SHOPPERS", 25)
    monkeypatch.setattr(rebuild, "FIT_SHOPPERS", 35)
    store, blobs, _ = _ingested(60)

    built = run_job("rebuild", store, blobs, ks=range(2, 13))

    assert built["shoppers"] > 35
    assert "on 25 shoppers" in built["k_choice"] and built["fitted_on"] == 35
