"""The Recommender in an experiment: each shopper served their variant's strategy, a feed id naming it, and what was
served logged; held-out shoppers get the default and requests outside the experiment's surface are left alone."""

from __future__ import annotations

import functools
import threading
import time
from datetime import UTC, datetime, timedelta

from tailor.experiments.assignment import claim_slot
from tailor.experiments.definitions import new_experiment
from tailor.experiments.feed_ids import CREDIT_SLOTS, INTERLEAVED, parse_feed_id
from tailor.experiments.interleaving import CREDIT_SCALE, rank_difference, slot_baselines, slot_shares
from tailor.experiments.strategies import BUILT_IN, parse_strategies
from tailor.models import default_model
from tailor.ranking import MODEL_NAME, RankingModel, Request
from tailor.ranking.pipeline import Pipeline
from tailor.serving import Recommender

from tests.unit.test_serving import busiest_shopper, ingested, world


def live_experiment(variants, *, holdout=0.0, surface="feed", design="ab"):
    _, end = world()
    now = datetime.fromtimestamp(end, tz=UTC)
    experiment = new_experiment({"experiment_id": "exp-serve", "surface": surface, "holdout": holdout,
                                 "start": (now - timedelta(days=1)).isoformat(), "variants": variants,
                                 "design": design},
                                now=now, known_strategies={"default", "baseline", "popular-only", "pinned", "missing"})
    return experiment.started(now, claim_slot(experiment, []))


def recommender(experiment, strategies=None, exposures=None) -> Recommender:
    _, end = world()
    return Recommender(ingested(), RankingModel.from_stored(default_model(MODEL_NAME)), clock=lambda: end + 30,
                       experiments=lambda now: [experiment] if experiment.live(now) else [],
                       strategies=strategies, exposures=exposures)


def test_a_shopper_is_served_their_variants_strategy_and_the_list_is_logged():
    user, session = busiest_shopper()
    logged = []
    baseline_only = live_experiment([{"name": "a", "strategy": "baseline", "share": 0.5},
                                     {"name": "b", "strategy": "baseline", "share": 0.5}])
    served = recommender(baseline_only, exposures=lambda feed_id, ranking: logged.append((feed_id, ranking))).feed(
        user, session_id=session, n=10, explain=True)
    feed = parse_feed_id(served.feed_id)
    assert (feed.experiment_id, feed.unit_kind) == ("exp-serve", "u") and feed.variant in ("a", "b")
    assert served.strategy == "baseline"
    # Commercial performance alone: the explanation weighs nothing else.
    assert all({k for k in item.parts if k.startswith("weight_")} == {"weight_commercial"} for item in served.items)
    assert [feed_id for feed_id, _ in logged] == [served.feed_id]

    plain = recommender(live_experiment([{"name": "a", "strategy": "default"}, {"name": "b", "strategy": "default"}],
                                        surface="search")).feed(user, session_id=session, n=10, explain=True)
    assert parse_feed_id(plain.feed_id) is None and plain.strategy is None
    assert any("weight_probability" in item.parts for item in plain.items)


def test_a_strategy_from_configuration_changes_the_sources():
    user, session = busiest_shopper()
    defined = {**BUILT_IN, **parse_strategies({"strategies": {"popular-only": {"sources": {"popular": 1.0}}}})}
    experiment = live_experiment([{"name": "a", "strategy": "popular-only"}, {"name": "b", "strategy": "popular-only"}])
    served = recommender(experiment, strategies=lambda: defined).feed(user, session_id=session, n=10)
    assert served.strategy == "popular-only"
    assert all(item.sources == ["popular"] for item in served.items)


def test_held_out_shoppers_get_the_default_under_a_holdout_feed_id():
    experiment = live_experiment([{"name": "a", "strategy": "baseline"}, {"name": "b", "strategy": "baseline"}],
                                 holdout=0.5)
    rec = recommender(experiment)
    variants = {}
    for n in range(40):
        ranking = rec.feed(f"someone-{n}", n=5)
        variants[parse_feed_id(ranking.feed_id).variant] = ranking.strategy
    assert variants.get("holdout") == "default" and "baseline" in variants.values()


def test_a_strategy_ranks_with_its_ranker_version_and_falls_back_to_the_current_one():
    current = RankingModel.from_stored(default_model(MODEL_NAME))

    Pinned = _pinned_like(current)

    def rankers(version):
        if version != "pinned":
            raise LookupError(f"no ranker version {version!r}")
        return Pinned()

    defined = {**BUILT_IN, **parse_strategies({"strategies": {"pinned": {"ranker": "pinned"},
                                                              "missing": {"ranker": "gone"}}})}
    _, end = world()
    for name, label in (("pinned", "ranker:pinned"), ("missing", current.label)):
        experiment = live_experiment([{"name": "a", "strategy": name}, {"name": "b", "strategy": name}])
        rec = Recommender(ingested(), current, clock=lambda: end + 30, experiments=lambda now, e=experiment: [e],
                          strategies=lambda: defined, rankers=rankers)
        assert rec.feed("someone", n=5).model == label


def _pinned_like(current):
    """A ranker of its own label that scores as `current` does."""

    class Pinned:
        label = "ranker:pinned"
        base_rate = current.base_rate

        def predict(self, features):
            return current.predict(features)

    return Pinned


def _served_with_its_own_ranker(current, strategy: str, version: str, rankers):
    """A recommender whose only experiment serves `strategy` (ranked by ranker `version`, which `rankers` loads) to
    every shopper, and its clock (a list to move on)."""
    defined = {**BUILT_IN, **parse_strategies({"strategies": {strategy: {"ranker": version}}})}
    _, end = world()
    now = [end + 30]
    experiment = live_experiment([{"name": "a", "strategy": strategy}, {"name": "b", "strategy": strategy}])
    rec = Recommender(ingested(), current, clock=lambda: now[0], experiments=lambda at, e=experiment: [e],
                      strategies=lambda: defined, rankers=rankers)
    return rec, now


def test_a_strategy_ranker_the_store_failed_to_give_is_read_again_off_the_request():
    import time as clock_time

    from tailor.serving.recommender import STRATEGY_RANKER_RETRY_SECONDS

    current = RankingModel.from_stored(default_model(MODEL_NAME))
    Pinned = _pinned_like(current)
    calls = []

    @functools.cache  # as the API's are kept once loaded
    def rankers(version):  # the registry fails the first read, then answers
        calls.append(version)
        if len(calls) == 1:
            raise TimeoutError("the registry did not answer")
        return Pinned()

    rec, now = _served_with_its_own_ranker(current, "pinned", "pinned", rankers)
    assert rec.feed("someone", n=5).model == current.label  # stands in for now
    now[0] += 60
    assert rec.feed("someone", n=5).model == current.label and calls == ["pinned"]  # not read on every request
    now[0] += STRATEGY_RANKER_RETRY_SECONDS
    # the read again runs beside the request, on a thread of its own: it may be done before the request ranks
    assert rec.feed("someone", n=5).model in (current.label, "ranker:pinned")
    deadline = clock_time.monotonic() + 5
    while rec.feed("someone", n=5).model != "ranker:pinned":
        assert clock_time.monotonic() < deadline
        clock_time.sleep(0.01)
    assert calls == ["pinned", "pinned"]  # then kept


def test_a_list_is_labelled_with_the_ranker_that_scored_it_when_the_read_again_lands_during_the_request():
    from tailor.serving.recommender import STRATEGY_RANKER_RETRY_SECONDS

    current = RankingModel.from_stored(default_model(MODEL_NAME))
    scored_by = []

    class Slow:  # the current ranker, slow enough for the read again to land while it scores
        label = current.label
        base_rate = current.base_rate

        def predict(self, features):
            scored_by.append(self.label)
            time.sleep(0.2)
            return current.predict(features)

    class Pinned(_pinned_like(current)):
        def predict(self, features):
            scored_by.append(self.label)
            return current.predict(features)

    calls = []
    answered = threading.Event()

    def rankers(version):  # the registry fails the first read; the read again answers a moment later
        calls.append(version)
        if len(calls) == 1:
            raise TimeoutError("the registry did not answer")
        time.sleep(0.05)
        answered.set()
        return Pinned()

    defined = {**BUILT_IN, **parse_strategies({"strategies": {"pinned": {"ranker": "pinned"}}})}
    _, end = world()
    now = [end + 30]
    experiment = live_experiment([{"name": "a", "strategy": "pinned"}, {"name": "b", "strategy": "pinned"}])
    rec = Recommender(ingested(), Slow(), clock=lambda: now[0], experiments=lambda at, e=experiment: [e],
                      strategies=lambda: defined, rankers=rankers)
    rec.feed("someone", n=5)
    now[0] += STRATEGY_RANKER_RETRY_SECONDS
    scored_by.clear()
    ranking = rec.feed("someone", n=5)  # the read again lands while the current ranker scores this list
    assert answered.is_set() and scored_by and set(scored_by) == {ranking.model}
    scored_by.clear()
    assert rec.feed("someone", n=5).model == "ranker:pinned" and set(scored_by) == {"ranker:pinned"}


def test_a_strategy_ranker_the_read_again_finds_gone_is_not_read_again():
    from tailor.serving.recommender import STRATEGY_RANKER_RETRY_SECONDS

    current = RankingModel.from_stored(default_model(MODEL_NAME))
    calls = []

    def rankers(version):  # the store fails, then answers that the version is gone
        calls.append(version)
        raise TimeoutError("the registry did not answer") if len(calls) == 1 else LookupError(f"no ranker {version!r}")

    rec, now = _served_with_its_own_ranker(current, "pinned", "gone", rankers)
    assert rec.feed("someone", n=5).model == current.label
    now[0] += STRATEGY_RANKER_RETRY_SECONDS
    assert rec.feed("someone", n=5).model == current.label  # starts the read again
    deadline = time.monotonic() + 5
    while len(calls) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    for _ in range(3):
        now[0] += STRATEGY_RANKER_RETRY_SECONDS
        assert rec.feed("someone", n=5).model == current.label
    time.sleep(0.1)
    assert calls == ["gone", "gone"]


def test_a_strategy_ranker_that_cannot_be_used_is_not_read_again():
    current = RankingModel.from_stored(default_model(MODEL_NAME))
    calls = []

    def rankers(version):
        calls.append(version)
        raise LookupError(f"no ranker version {version!r}")

    rec, now = _served_with_its_own_ranker(current, "missing", "gone", rankers)
    for _ in range(3):
        assert rec.feed("someone", n=5).model == current.label
        now[0] += 3600
    assert calls == ["gone"]


def test_a_strategy_turns_the_ltv_weighting_on_or_off():
    defined = {**BUILT_IN, **parse_strategies({"strategies": {"pinned": {"ltv": True, "ltv_strength": 0.8},
                                                              "missing": {"ltv": False}}})}
    experiment = live_experiment([{"name": "a", "strategy": "pinned"}, {"name": "b", "strategy": "missing"}])
    rec = recommender(experiment, strategies=lambda: defined)
    assert rec._pipeline(defined["pinned"])[0].ltv_strength == 0.8
    assert rec._pipeline(defined["missing"])[0].ltv_strength == 0.0
    assert rec._pipeline(defined["default"])[0].ltv_strength == rec.pipeline.ltv_strength


def test_an_interleaving_experiment_serves_the_team_draft_of_both_variants_and_names_each_slots_ranker():
    user, session = busiest_shopper()
    logged = []
    experiment = live_experiment([{"name": "shop", "strategy": "baseline"}, {"name": "tailor", "strategy": "default"}],
                                 design="interleaving")
    rec = recommender(experiment, exposures=lambda feed_id, ranking: logged.append((feed_id, ranking)))
    lists = {variant.name: [item.item_id for item in rec._ranked(
        Request("feed", user_id=user, session_id=session, n=10), rec.clock(), BUILT_IN[variant.strategy], "")[1]]
        for variant in experiment.variants}
    assert lists["shop"] != lists["tailor"]
    seen_first = set()
    for _ in range(30):
        served = rec.feed(user, session_id=session, n=10)
        feed = parse_feed_id(served.feed_id)
        assert (feed.experiment_id, feed.variant) == ("exp-serve", INTERLEAVED)
        items = [item.item_id for item in served.items]
        # What a click on each slot earns: its item's rank difference less the slot's baseline, in 256ths.
        assert len(feed.credits) == len(items) and all((CREDIT_SCALE * c).is_integer() for c in feed.credits)
        baselines = slot_baselines(lists["shop"], lists["tailor"], 10)
        assert all(abs(rank_difference(lists["shop"], lists["tailor"], item) - baseline - c) < 1 / CREDIT_SCALE
                   for item, baseline, c in zip(items, baselines, feed.credits))
        assert any(c != 0 for c in feed.credits)
        # Each slot's item is the next unshown of the ranker that picked it, as team draft puts it there.
        shown: set[str] = set()
        for item, team in zip(items, served.teams):
            source = lists["shop"] if team == "A" else lists["tailor"]
            assert item == next(candidate for candidate in source if candidate not in shown)
            shown.add(item)
        assert len(items) == 10 and abs(served.teams.count("A") - served.teams.count("B")) <= 1
        seen_first.add(served.teams[0])
        # Each slot's probability is its item's there over team draft's coins.
        shares = slot_shares(lists["shop"], lists["tailor"], 10)
        assert served.probabilities == [round(shares[slot][item], 6) for slot, item in enumerate(items)]
        assert served.strategy == "baseline / default" and all(0 < p <= 1 for p in served.probabilities)
    assert seen_first == {"A", "B"}  # the coin decides who picks first
    assert len(logged) == 30 and logged[0][1].teams is not None


def test_interleaved_strategies_that_gather_alike_rank_one_gathering(monkeypatch):
    user, session = busiest_shopper()
    defined = {**BUILT_IN, **parse_strategies({"strategies": {"popular-only": {"sources": {"popular": 1.0}}}})}
    gathered = []
    original = Pipeline.gather
    monkeypatch.setattr(Pipeline, "gather", lambda self, *args: gathered.append(self) or original(self, *args))
    for pair, gatherings in ((("baseline", "default"), 1), (("popular-only", "default"), 2)):
        experiment = live_experiment([{"name": "a", "strategy": pair[0]}, {"name": "b", "strategy": pair[1]}],
                                     design="interleaving")
        rec = recommender(experiment, strategies=lambda: defined)
        pipelines = [rec._pipeline(defined[name])[0] for name in pair]
        assert pipelines[0].gathers_like(pipelines[1], "feed") == (gatherings == 1)
        lists = [[item.item_id for item in rec._ranked(Request("feed", user_id=user, session_id=session, n=10),
                                                        rec.clock(), defined[name], "")[1]] for name in pair]
        gathered.clear()
        served = rec.feed(user, session_id=session, n=10)
        assert len(gathered) == gatherings
        shown: set[str] = set()  # each slot's item is the next unshown of its team's list, ranked apart
        for item, team in zip((item.item_id for item in served.items), served.teams):
            assert item == next(c for c in lists[team == "B"] if c not in shown)
            shown.add(item)


def test_a_long_interleaved_list_carries_the_credits_of_its_first_slots():
    user, session = busiest_shopper()
    experiment = live_experiment([{"name": "shop", "strategy": "baseline"}, {"name": "tailor", "strategy": "default"}],
                                 design="interleaving")
    served = recommender(experiment).feed(user, session_id=session, n=60)
    assert len(served.items) > CREDIT_SLOTS and len(parse_feed_id(served.feed_id).credits) == CREDIT_SLOTS
