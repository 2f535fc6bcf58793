"""Personas in the domain: traits, the shared feature vector, clustering with k by BIC, the shopper's mixture as the tempered
posterior of their state,
adjustment vectors with empirical-Bayes shrinkage, Ingest's persona counters applied exactly once, the persona
scorer and cold start, and the scheduled jobs on the in-memory store."""

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from tailor.events import parse_event
from tailor.ingest.service import Ingestor, StreamRecord
from tailor.personas.adjustments import CounterTable, build_adjustments, read_counters
from tailor.personas.clustering import choose_k, match_ids
from tailor.personas.features import FeatureSpace, shopper_features
from tailor.personas.model import EVIDENCE_POWER, EXPLORATION, PersonaModel, dominant
from tailor.personas.online import PersonaTracker
from tailor.personas.rebuild import run_job
from tailor.personas.rerank import PersonaScorer, describe_personas, persona_ranking, shopper_mixture
from tailor.personas.storage import ModelSource, current_model
from tailor.personas.traits import apply_evidence, trait_means
from tailor.ranking import DEFAULT_ROUTES
from tailor.shopper import ShopperState, fold_shopper
from tailor.store.memory import MemoryBlobStore, MemoryStateStore
from tailor_lab.simulator import simulate

T0 = datetime(2026, 11, 2, 10, tzinfo=UTC)


def event(n: int, kind: str, user: str = "u1", session: str = "s1", **fields) -> dict:
    return {"event_id": f"e{user}{n}", "user_id": user, "session_id": session,
            "timestamp": (T0 + timedelta(seconds=n)).isoformat().replace("+00:00", "Z"), "event_type": kind, **fields}


def blobs_model(k: int = 2, adjustments: dict[str, list[float]] | None = None,
                space: FeatureSpace | None = None) -> PersonaModel:
    space = space or FeatureSpace(("books", "phones"), {}, {"*": np.linspace(0, 100, 21)})
    d = len(space.names)
    means = np.zeros((k, d))
    for j in range(k):
        means[j, j] = 3.0
    items = list(adjustments or {})
    return PersonaModel(version="v1", space=space, ids=list(range(10, 10 + k)), labels=[f"p{j}" for j in range(k)],
                        weights=np.full(k, 1.0 / k), means=means, variances=np.ones((k, d)), center=np.zeros(d),
                        scale=np.ones(d), counts=np.full(k, 10.0),
                        cold_start={"referral": {"email": [0.9, 0.1][:k] + [0.0] * max(0, k - 2)}},
                        adjustment_items=items,
                        adjustments=np.array([adjustments[i] for i in items]) if items else np.zeros((0, k)))


def test_trait_evidence_moves_posteriors_past_even_odds_only_with_enough_support():
    traits, evidence = {}, {}
    cheap_tech = [["view", "Phones", 10.0, 0, ""]] * 6 + [["view", "books", 10.0, 0, ""]] * 4
    apply_evidence(traits, evidence, cheap_tech, lambda category, price: 0.1)
    means = trait_means(traits)
    assert means["tech_enthusiast"] > 0.6 and means["budget_conscious"] > 0.6
    assert means["luxury_seeker"] < 0.3 and means["home_decorator"] < 0.3
    assert evidence["tech_enthusiast"]["+category:phones"] == 6.0
    assert means["gift_shopper"] < 0.5  # books count only in part toward gifts
    apply_evidence(traits, evidence, [["search", "", -1.0, 0, "premium gold watch"]], lambda c, p: None)
    assert trait_means(traits)["luxury_seeker"] > means["luxury_seeker"]


def test_feature_vector_is_the_same_online_and_from_the_stored_row():
    shopper = None
    for n, raw in enumerate([event(0, "search", query="Cheap Phone"), event(1, "view", item_id="a", category="phones",
                                                                                   price=20.0),
                             event(2, "dwell", item_id="a", category="phones", dwell_ms=5000),
                             event(3, "purchase", item_id="a", category="phones", price=20.0, quantity=1)]):
        shopper = fold_shopper(shopper, parse_event(raw))
    space = FeatureSpace(("phones",), {"cheap": np.ones(8) / np.sqrt(8)}, {"*": np.linspace(0, 100, 21)})
    PersonaTracker(ModelSource.fixed(blobs_model(space=space))).settle([], [shopper])
    online = shopper_features(shopper, space)
    stored = ShopperState.from_row(json.loads(json.dumps(shopper.to_row())))
    assert np.array_equal(online, shopper_features(stored, space))
    named = dict(zip(space.names, online))
    assert named["category:phones"] == 1.0 and named["query:0"] > 0
    assert named["behaviour:price_percentile"] == pytest.approx(0.2) and named["behaviour:log_dwell_seconds"] > 0


def test_mixture_fit_recovers_separated_personas_and_bic_chooses_their_number():
    rng = np.random.default_rng(0)
    centers = np.array([[0, 0, 0], [5, 0, 0], [0, 5, 5]], dtype=float)
    z = np.vstack([c + rng.normal(0, 0.5, (60, 3)) for c in centers])
    fit, bics = choose_k(z, range(2, 7))
    assert fit.means.shape[0] == 3 and min(bics, key=bics.get) == 3
    labels = fit.responsibilities(z).argmax(axis=1)
    assert all(len(set(labels[i * 60:(i + 1) * 60])) == 1 for i in range(3))


def test_refitted_personas_keep_the_ids_of_the_nearest_previous_ones():
    previous = blobs_model(k=2)
    means_raw = previous.means[::-1].copy()  # the same personas, found in the other order
    assert match_ids(previous, means_raw, previous.space.names) == [11, 10]
    extra = np.vstack([means_raw, np.full(means_raw.shape[1], -4.0)])
    assert match_ids(previous, extra, previous.space.names) == [11, 10, 12]


def test_a_mixture_is_the_tempered_posterior_of_the_shoppers_state():
    model = blobs_model(k=2)
    x = model.means[1].copy()
    mixture = model.mixture(x)
    # The personas' log-likelihoods of x differ by 3 ** 2 / 2 in each of two dimensions: 9, tempered.
    assert mixture["11"] == pytest.approx(1 / (1 + np.exp(-EVIDENCE_POWER * 9.0)), abs=1e-4)
    assert model.responsibilities(x[None, :])[0, 1] > mixture["11"] > 0.5  # less sure than the full posterior
    assert model.mixture(model.means[0])["10"] > 0.5  # a shopper whose state changes changes persona


def test_a_shoppers_mixture_is_the_same_however_their_events_were_batched():
    model = blobs_model(k=2)
    raws = [event(0, "referral", source="email"), event(1, "view", item_id="a", category="phones", price=20.0),
            event(2, "view", item_id="b", category="phones", price=30.0),
            event(3, "click", item_id="c", category="books", price=50.0),
            event(4, "view", item_id="c", category="phones", price=25.0)]
    records = _records(raws)
    whole = _mixture(model, [records])
    assert max(whole.values()) > 0.55 and whole != model.general_mixture()
    assert _mixture(model, [[record] for record in records]) == whole == _mixture(model, [records[:2], records[2:]])


def _records(raws: list[dict]) -> list[StreamRecord]:
    return [StreamRecord("shardId-0", str(100 + n), json.dumps(r).encode(), "u1") for n, r in enumerate(raws)]


def _mixture(model, batches) -> dict:
    """Shopper u1's mixture once the batches are ingested in turn."""
    store = MemoryStateStore()
    ingestor = Ingestor(store, MemoryBlobStore(), max_workers=1, personas=PersonaTracker(ModelSource.fixed(model)))
    for batch in batches:
        assert not ingestor.ingest(batch).failed
    return store.snapshot()["shoppers"]["u1"]["personas"]["mixture"]


def test_a_batch_of_impressions_alone_moves_the_mixture_as_it_would_in_the_batch_before():
    # An impression brings no persona note, yet moves the shopper's features: cut after the view or not, the mixture
    # is the posterior of the state after the last event.
    model = blobs_model(k=2, space=FeatureSpace(("books", "phones"), {}, {"*": np.linspace(0, 100, 21)}))
    raws = [event(0, "view", item_id="a", category="phones", price=20.0),
            event(1, "impression", item_ids=["a", "b"]), event(2, "impression", item_ids=["b", "c"])]
    records = _records(raws)
    assert _mixture(model, [records]) == _mixture(model, [records[:1], records[1:]]) != _mixture(model, [records[:1]])


def test_cold_start_uses_weak_signals_and_falls_back_to_the_general_persona():
    model = blobs_model(k=2)
    assert model.cold_start_mixture({}, ["email"])["10"] > 0.5
    assert shopper_mixture(None, model) == (model.general_mixture(), "general interest")
    shopper = ShopperState(user_id="u", first_seen=0, last_seen=0, referral_sources={"email": 1})
    mixture, source = shopper_mixture(shopper, model)
    assert source == "profile" and mixture["10"] > mixture["11"]


def test_adjustments_lift_what_a_persona_prefers_and_shrink_thin_evidence_toward_zero():
    rng = np.random.default_rng(1)
    items = 40
    impressions = np.full((items, 2), 200.0)
    ctr = np.full((items, 2), 0.05)
    ctr[:20, 0], ctr[20:, 1] = 0.15, 0.15  # persona 0 prefers the first half, persona 1 the second
    clicks = rng.binomial(impressions.astype(int), ctr).astype(float)
    values = {m: np.zeros((items, 2)) for m in ("pi", "pv", "pc", "pa", "pp", "pd", "pn")}
    values.update(pi=impressions, pc=clicks)
    groups = np.repeat([0, 1], 20)  # like items (a category's price band) pool their evidence
    kept, matrix, stats = build_adjustments(CounterTable([f"i{j}" for j in range(items)], [0, 1], values, groups, 2))
    adjustment = dict(zip(kept, matrix))
    assert stats["ctr_prior"] < 1000
    assert np.mean([adjustment[f"i{j}"][0] for j in range(20)]) > 0.1
    assert np.mean([adjustment[f"i{j}"][0] for j in range(20, 40)]) < -0.1
    thin = {m: v / 50 for m, v in values.items()}
    _, thin_matrix, _ = build_adjustments(CounterTable([f"i{j}" for j in range(items)], [0, 1], thin, groups, 2))
    assert np.abs(thin_matrix).mean() < np.abs(matrix).mean()


def test_an_items_own_lift_counts_only_as_far_as_items_really_differ_from_their_group():
    rng = np.random.default_rng(2)
    items = 60
    impressions = np.full((items, 2), 300.0)
    values = {m: np.zeros((items, 2)) for m in ("pi", "pv", "pc", "pa", "pp", "pd", "pn")}
    groups = np.zeros(items, dtype=np.int64)  # one group: any persona taste is the items' own
    alike = rng.binomial(impressions.astype(int), 0.06).astype(float)  # personas click every item alike
    values.update(pi=impressions, pc=alike)
    _, _, stats = build_adjustments(CounterTable([f"i{j}" for j in range(items)], [0, 1], values, groups, 1))
    assert stats["ctr_item_prior"] >= 1000  # nothing beyond binomial noise: items keep their group's lift
    ctr = np.full((items, 2), 0.06)
    ctr[::2, 0], ctr[1::2, 1] = 0.18, 0.18  # each persona prefers every other item
    values["pc"] = rng.binomial(impressions.astype(int), ctr).astype(float)
    kept, matrix, stats = build_adjustments(CounterTable([f"i{j}" for j in range(items)], [0, 1], values, groups, 1))
    assert stats["ctr_item_prior"] < 300
    assert matrix[::2, 0].mean() - matrix[1::2, 0].mean() > 0.3


def test_the_price_level_weighs_more_than_the_rest_of_behaviour_in_the_clustering():
    from tailor.personas.clustering import BLOCK_WEIGHTS, PRICE_WEIGHT, standardization

    space = FeatureSpace(("books",), {}, {})
    x = np.random.default_rng(3).normal(size=(50, len(space.names)))
    _, scale = standardization(x, space)
    named = dict(zip(space.names, x.std(axis=0) / scale))  # each feature's spread once standardized
    assert named["behaviour:price_percentile"] == pytest.approx(PRICE_WEIGHT)
    assert named["behaviour:log_dwell_seconds"] == pytest.approx(BLOCK_WEIGHTS["behaviour"])
    assert BLOCK_WEIGHTS["behaviour"] < PRICE_WEIGHT


def test_counters_of_items_rows_are_read_for_the_models_personas_only():
    rows = [{"item_id": "a", "views": 3, "pv:10": 1.5, "pc:11": 2.0, "pv:99": 7.0}, {"item_id": "b", "views": 1}]
    table = read_counters(rows, [10, 11])
    assert table.items == ["a"]
    assert table.values["pv"].tolist() == [[1.5, 0.0]] and table.values["pc"].tolist() == [[0.0, 2.0]]


def test_ingest_adds_persona_counters_once_and_a_replay_changes_nothing():
    model = blobs_model(k=2)
    store, blobs = MemoryStateStore(), MemoryBlobStore()
    ingestor = Ingestor(store, blobs, max_workers=1, personas=PersonaTracker(ModelSource.fixed(model)))
    raws = [event(0, "referral", source="email"), event(1, "impression", item_ids=["a", "b"]),
            event(2, "click", item_id="a", category="books", price=50.0),
            event(3, "dwell", item_id="a", category="books", price=50.0, dwell_ms=4000)]
    records = [StreamRecord("shardId-0", str(100 + n), json.dumps(r).encode(), "u1") for n, r in enumerate(raws)]
    ingestor.ingest(records)
    first = store.snapshot()
    item = first["items"]["a"]
    shares = {k: v for k, v in item.items() if k.startswith("pc:")}
    assert sum(shares.values()) == pytest.approx(1.0, abs=0.03) and shares["pc:10"] > shares["pc:11"]
    assert sum(v for k, v in item.items() if k.startswith("pd:")) == pytest.approx(4.0, abs=0.15)
    assert set(first["items"]["b"]) >= {"pi:10", "pi:11"}
    shopper = first["shoppers"]["u1"]["personas"]
    assert set(shopper["mixture"]) <= {"10", "11"} and "pending" not in shopper and shopper["model"] == "v1"
    assert first["sessions"]["s1"]["personas"]["traits"]
    outcome = ingestor.ingest(records)  # the stream delivers the batch again
    assert store.snapshot() == first and not outcome.failed


def test_scorer_reranks_by_the_whole_mixture_or_the_dominant_persona_and_explores_new_items():
    model = blobs_model(k=2, adjustments={"a": [0.8, -0.8], "b": [-0.2, 0.3]})
    shopper = ShopperState(user_id="u", first_seen=0, last_seen=0, personas={"mixture": {"10": 0.6, "11": 0.4}})

    class Ctx:
        pass

    class Candidates(list):
        ids = property(lambda self: list(self))

    ctx = Ctx()
    ctx.shopper = shopper
    candidates = Candidates(["a", "b", "new"])
    term, raw = PersonaScorer(ModelSource.fixed(model)).score(ctx, candidates, np.zeros((3, 1)))
    assert raw["persona_adjustment"][:2] == pytest.approx([0.6 * 0.8 - 0.4 * 0.8, -0.2 * 0.6 + 0.3 * 0.4])
    assert abs(raw["persona_adjustment"][2]) <= EXPLORATION and 0 < term.min() and term.max() < 1
    assert np.array_equal(model.exploration("new"), model.exploration("new"))
    _, dominant_raw = PersonaScorer(ModelSource.fixed(model), mode="dominant").score(ctx, candidates, np.zeros((3, 1)))
    assert dominant_raw["persona_adjustment"][:2] == pytest.approx([0.8, -0.2])
    assert PersonaScorer(ModelSource.fixed(None)).score(ctx, candidates, np.zeros((3, 1)))[0].tolist() == [0.5] * 3
    settings = persona_ranking(ModelSource.fixed(model), DEFAULT_ROUTES, weight=0.25)
    assert settings["weights"]["search"]["personas"] == 0.25 and "relevance" in settings["weights"]["rerank"]
    with pytest.raises(ValueError):
        persona_ranking(ModelSource.fixed(model), DEFAULT_ROUTES, mode="loudest")
    with pytest.raises(ValueError):
        persona_ranking(ModelSource.fixed(model), DEFAULT_ROUTES, weight=float("nan"))


def test_profile_section_shows_mixture_traits_and_evidence():
    model = blobs_model(k=2)
    shopper = ShopperState(user_id="u", first_seen=0, last_seen=0, personas={
        "mixture": {"11": 0.7, "10": 0.3}, "traits": {"tech_enthusiast": [5.0, 1.0]},
        "evidence": {"tech_enthusiast": {"+category:phones": 6.0}}, "signals": {"price_n": 2, "price_sum": 0.5},
        "queries": ["usb cable"]})
    section = describe_personas(ModelSource.fixed(model))(shopper, None)
    assert [m["persona"] for m in section["mixture"]] == ["11", "10"] and section["source"] == "behaviour"
    tech = section["traits"]["tech_enthusiast"]
    assert tech["probability"] == pytest.approx(5 / 6, abs=1e-3)
    assert tech["evidence"] == [{"for": True, "what": "category:phones", "weight": 6.0}]
    assert section["signals"]["price_percentile"] == 0.25 and section["signals"]["recent_queries"] == ["usb cable"]


def test_model_survives_storage_and_sources_refresh_to_a_new_version():
    from tailor.personas.storage import publish_model

    blobs = MemoryBlobStore()
    clock = [0.0]
    source = ModelSource(blobs, refresh_seconds=60, clock=lambda: clock[0])
    assert source() is None and current_model(blobs) is None
    model = blobs_model(k=2, adjustments={"a": [0.1, -0.1]})
    publish_model(blobs, model)
    assert source() is None  # checked a moment ago
    clock[0] = 61.0
    loaded = source()
    assert loaded.version == "v1" and loaded.adjustment_rows(["a"]) == pytest.approx(np.array([[0.1, -0.1]]))
    assert loaded.cold_start == model.cold_start and loaded.space.names == model.space.names


def test_jobs_build_then_refine_personas_with_stable_ids_from_simulated_shoppers():
    store, blobs = MemoryStateStore(), MemoryBlobStore()
    source = ModelSource(blobs, refresh_seconds=0)
    ingestor = Ingestor(store, blobs, max_workers=1, personas=PersonaTracker(source))
    simulation = simulate(shoppers=120, days=0.5, seed=3)
    records = [StreamRecord("shardId-0", str(10_000 + n), json.dumps(e).encode(), e["user_id"])
               for n, e in enumerate(simulation.events)]
    half = len(records) // 2
    for start in range(0, half, 100):
        ingestor.ingest(records[start:min(start + 100, half)])
    built = run_job("rebuild", store, blobs, ks=range(2, 6))
    assert 2 <= built["k"] <= 5 and {2, 3} <= set(built["bic"]) <= set(range(2, 6)) and built["published"]
    assert current_model(blobs).taste_items  # the rebuild reads the shoppers' recent items
    for start in range(half, len(records), 100):
        ingestor.ingest(records[start:start + 100])
    refined = run_job("refine", store, blobs)
    assert refined["ids"] == built["ids"] and refined["refined_with"] > 0
    assert refined["adjustments"]["items_kept"] > 0
    mixtures = [row["personas"]["mixture"] for row in store.tables["shoppers"].values() if "mixture" in row.get("personas", {})]
    assert len(mixtures) > 20 and len({dominant(m) for m in mixtures}) > 1


def test_recommender_reranks_by_personas_and_profiles_show_them():
    from tailor.ranking import ConversionPrior
    from tailor.serving import Recommender

    model = blobs_model(k=2, adjustments={"b": [1.0, -1.0], "a": [-1.0, 1.0]})
    source = ModelSource.fixed(model)
    store = MemoryStateStore()
    shopper = ShopperState(user_id="u1", first_seen=0, last_seen=0, events=3, personas={"mixture": {"10": 0.9, "11": 0.1}})
    store.tables["shoppers"]["u1"] = shopper.to_row()
    settings = persona_ranking(source, DEFAULT_ROUTES, weight=1.0)
    recommender = Recommender(store, ConversionPrior(), profile_sections={"personas": describe_personas(source)},
                              **settings)
    ranked = recommender.rerank(["a", "b"], user_id="u1", explain=True)
    assert [i.item_id for i in ranked.items] == ["b", "a"]  # persona 10 lifts b over the caller's first item
    assert ranked.items[0].parts["weight_personas"] == 1.0 and ranked.items[0].parts["persona_adjustment"] > 0
    stranger = recommender.rerank(["a", "b"], user_id="nobody")
    assert [i.item_id for i in stranger.items] == ["a", "b"]  # the general-interest mixture: adjustments cancel
    profile = recommender.profile("u1")
    assert profile["personas"]["mixture"][0] == {"persona": "10", "share": 0.9, "description": "p0"}
    assert set(profile["personas"]["traits"]) >= {"budget_conscious", "gift_shopper"}


def test_the_evaluation_replays_with_the_persona_jobs_on_the_deployed_schedule():
    from tailor_lab.evaluation.personas import REBUILD_SECONDS, REFINE_SECONDS, Replay, _steps

    replay = Replay(seed=1)
    jobs: list[tuple[str, float]] = []
    job = replay.job
    replay.job = lambda mode, *, seed=0, now=None: (jobs.append((mode, now)), job(mode, seed=seed, now=now))[1]
    simulation = simulate(shoppers=100, days=1.25, seed=4)  # enough shoppers that someone is active every hour
    replay.walk(simulation.events)
    steps = [start for start, _ in _steps(simulation.events)]
    due = lambda period: next(start for start in steps if start - steps[0] >= period)  # noqa: E731
    assert jobs[0] == ("refine", due(REFINE_SECONDS))  # the first refine finds no model and builds one
    assert [now for mode, now in jobs if mode == "rebuild"] == [due(REBUILD_SECONDS)]
    assert 20 <= len(jobs) <= 31 and replay.built is not None and replay.built["mode"] == "rebuild"
    assert replay.latest is not None and replay.models().version == replay.latest["version"]


def test_the_rebuild_reads_items_as_the_catalog_says_they_are():
    """Prices the shop's catalog set are the ones the personas' price levels are measured against, not the events'."""
    from tailor.catalog import CatalogEntry, load_catalog

    store, blobs = MemoryStateStore(), MemoryBlobStore()
    simulation = simulate(shoppers=120, days=0.5, seed=3)
    records = [StreamRecord("shardId-0", str(10_000 + n), json.dumps(e).encode(), e["user_id"])
               for n, e in enumerate(simulation.events)]
    Ingestor(store, blobs, max_workers=1).ingest(records)
    load_catalog(store, [CatalogEntry(item_id=item, price=999.0) for item in store.tables["items"]],
                 received_at=1_793_613_600.0)
    assert run_job("rebuild", store, blobs, ks=range(2, 4))["published"]
    assert set(current_model(blobs).space.price_quantiles["*"]) == {999.0}
