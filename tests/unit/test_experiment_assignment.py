"""Assignment of shoppers to experiments: sticky, independent between experiments, exclusive within a layer, shares
kept; strategies as configuration; experiments checked field by field."""

from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from scipy.stats import chi2_contingency, chisquare

from tailor.events import MAX_ID_LENGTH
from tailor.experiments.assignment import HOLDOUT, assign, claim_slot, unit_hash
from tailor.experiments.definitions import Experiment, ExperimentError, new_experiment
from tailor.experiments.feed_ids import CREDIT_SLOTS, INTERLEAVED, FeedId, new_feed_id, parse_feed_id
from tailor.experiments.storage import ExperimentStore, LiveExperiments
from tailor.experiments.strategies import BUILT_IN, StrategyError, StrategySource, parse_strategies
from tailor.ranking import DEFAULT_ROUTES
from tailor.store.memory import MemoryStateStore

NOW = datetime(2026, 12, 1, tzinfo=UTC)
STRATEGIES = {"default", "baseline", "other"}
UNITS = [f"user-{i}" for i in range(20_000)]


def experiment(experiment_id: str, *, shares=(0.5, 0.5), holdout=0.0, traffic=1.0, layer="", surface="feed"):
    body = {"experiment_id": experiment_id, "surface": surface, "holdout": holdout, "traffic": traffic, "layer": layer,
            "variants": [{"name": f"v{i}", "strategy": "baseline" if i else "default", "share": s}
                         for i, s in enumerate(shares)]}
    # A fixed salt (new experiments draw one at random), so the statistical checks below see the same units each run.
    return replace(new_experiment(body, now=NOW, known_strategies=STRATEGIES), salt=f"salt-of-{experiment_id}")


def started(*experiments):
    running = []
    for e in experiments:
        running.append(e.started(NOW, claim_slot(e, running)))
    return running


def variants_of(running, units=UNITS, surface="feed"):
    out = []
    for unit in units:
        found = assign(running, surface, user_id=unit, session_id=None)
        out.append(None if found is None else (found.experiment.experiment_id, found.variant_name))
    return out


def test_assignment_is_sticky_and_the_same_from_a_definition_read_again():
    [exp] = started(experiment("exp-a"))
    first = variants_of([exp])
    again = variants_of([type(exp).from_row(exp.to_row())])
    assert first == again
    assert variants_of([exp]) == first


def test_shares_and_holdout_within_tolerance():
    [exp] = started(experiment("exp-b", shares=(0.5, 0.3, 0.2), holdout=0.1))
    counts = Counter(v for _, v in variants_of([exp]))
    expected = {HOLDOUT: 0.1, "v0": 0.45, "v1": 0.27, "v2": 0.18}
    names = sorted(expected)
    assert chisquare([counts[n] for n in names], [expected[n] * len(UNITS) for n in names]).pvalue > 0.001
    for name in names:
        assert counts[name] / len(UNITS) == pytest.approx(expected[name], abs=0.015)


def test_experiments_of_different_layers_are_independent():
    a, b = started(experiment("exp-c", layer="one"), experiment("exp-d", layer="two"))
    pairs = Counter()
    for unit in UNITS:
        va = assign([a], "feed", user_id=unit, session_id=None).variant_name
        vb = assign([b], "feed", user_id=unit, session_id=None).variant_name
        pairs[(va, vb)] += 1
    table = [[pairs[("v0", "v0")], pairs[("v0", "v1")]], [pairs[("v1", "v0")], pairs[("v1", "v1")]]]
    assert chi2_contingency(table).pvalue > 0.001


def test_experiments_of_one_layer_never_share_a_shopper_and_a_full_layer_refuses_another():
    a, b = started(experiment("exp-e", traffic=0.5), experiment("exp-f", traffic=0.5))
    counts = Counter(found[0] for found in variants_of([a, b]))
    assert set(counts) == {"exp-e", "exp-f"}
    assert counts["exp-e"] / len(UNITS) == pytest.approx(0.5, abs=0.015)
    # Each shopper is in one of them: with only one running, the other's shoppers are in none.
    alone = variants_of([a])
    assert sum(found is None for found in alone) == counts["exp-f"]
    with pytest.raises(ExperimentError) as refused:
        claim_slot(experiment("exp-g", traffic=0.2), [a, b])
    assert refused.value.field == "traffic" and refused.value.status == 409
    # Another surface's layer is free.
    assert claim_slot(experiment("exp-h", surface="search"), [a, b]) == (0.0, 1.0)


def test_anonymous_shoppers_are_assigned_by_session_and_their_feed_ids_say_so():
    [exp] = started(experiment("exp-i"))
    found = assign([exp], "feed", user_id=None, session_id="s-1")
    assert (found.unit, found.unit_kind) == ("s-1", "s")
    parsed = parse_feed_id(new_feed_id("exp-i", found.variant_name, found.unit_kind))
    assert (parsed.experiment_id, parsed.variant, parsed.unit_kind) == ("exp-i", found.variant_name, "s")
    assert parse_feed_id(new_feed_id()) is None
    assert parse_feed_id("a.b") is None


def test_unit_hash_is_uniform_and_salted():
    values = [unit_hash("salt", u) for u in UNITS]
    assert 0 <= min(values) and max(values) < 1
    assert sum(values) / len(values) == pytest.approx(0.5, abs=0.01)
    assert unit_hash("salt", "x") != unit_hash("pepper", "x")


@pytest.mark.parametrize(("change", "field"), [
    ({"surface": "home"}, "surface"),
    ({"variants": [{"name": "a", "strategy": "default"}]}, "variants"),
    ({"variants": [{"name": "a", "strategy": "default", "share": 0.7},
                   {"name": "b", "strategy": "default", "share": 0.7}]}, "variants"),
    ({"variants": [{"name": "a", "strategy": "nope"}, {"name": "b", "strategy": "default"}]}, "variants[0].strategy"),
    ({"variants": [{"name": "a", "strategy": "default"}, {"name": "a", "strategy": "default"}]}, "variants[1].name"),
    ({"holdout": 1.0}, "holdout"),
    ({"start": "yesterday"}, "start"),
    ({"end": "2026-11-01T00:00:00Z"}, "end"),
    ({"experiment_id": "Bad Id"}, "experiment_id"),
    ({"experiment_id": ""}, "experiment_id"),
    ({"start": "2099-12-01T00:00:00Z", "days": 366}, "days"),
    ({"days": 1e-9}, "end"),
    ({"start": "2026-12-01T00:00:00.250Z", "end": "2026-12-01T00:00:00.750Z"}, "end"),
    ({"colour": "red"}, "colour"),
    ({"planned_units": 0}, "planned_units"),
    ({"planned_units": 2500.5}, "planned_units"),
    ({"planned_units": True}, "planned_units"),
    ({"planned_units": "5000"}, "planned_units"),
    ({"design": "bandit"}, "design"),
    ({"design": "interleaving", "variants": [{"name": "a", "strategy": "default"}, {"name": "b", "strategy": "default"},
                                             {"name": "c", "strategy": "baseline"}]}, "variants"),
    ({"design": "interleaving", "variants": [{"name": "a", "strategy": "default", "share": 0.7},
                                             {"name": "b", "strategy": "baseline", "share": 0.3}]}, "variants[0].share"),
    ({"design": "interleaving", "variants": [{"name": "a", "strategy": "default"},
                                             {"name": "interleaved", "strategy": "baseline"}]}, "variants[1].name"),
])
def test_a_bad_experiment_is_refused_naming_the_field(change, field):
    body = {"variants": [{"name": "a", "strategy": "default"}, {"name": "b", "strategy": "baseline"}], **change}
    with pytest.raises(ExperimentError) as refused:
        new_experiment(body, now=NOW, known_strategies=STRATEGIES)
    assert refused.value.field == field


def test_a_variant_must_serve_the_experiments_surface():
    serving = {"default": ("feed", "search", "related"), "adaptive": ("feed",)}
    body = {"variants": [{"name": "a", "strategy": "default"}, {"name": "b", "strategy": "adaptive"}]}
    assert new_experiment(body, now=NOW, known_strategies=serving).surface == "feed"
    with pytest.raises(ExperimentError) as refused:
        new_experiment({**body, "surface": "related"}, now=NOW, known_strategies=serving)
    assert refused.value.field == "variants[1].strategy" and "not related" in refused.value.message
    # Names alone (no surfaces known) serve every surface.
    assert new_experiment({**body, "surface": "related"}, now=NOW, known_strategies=set(serving)).surface == "related"


def test_an_experiment_keeps_whole_seconds_and_ends_by_the_latest_time():
    found = new_experiment({"variants": [{"name": "a", "strategy": "default"}, {"name": "b", "strategy": "baseline"}],
                            "start": "2026-12-01T00:00:00.900Z", "days": 1.5}, now=NOW, known_strategies=STRATEGIES)
    assert (found.start, found.end) == ("2026-12-01T00:00:00Z", "2026-12-02T12:00:00Z")
    last = new_experiment({"variants": [{"name": "a", "strategy": "default"}, {"name": "b", "strategy": "baseline"}],
                           "start": "2099-01-01T00:00:00Z", "days": 365}, now=NOW, known_strategies=STRATEGIES)
    assert last.end == "2100-01-01T00:00:00Z"


def test_experiments_are_created_started_stopped_and_only_live_ones_assign():
    store = ExperimentStore(MemoryStateStore())
    store.create(experiment("exp-j"))
    with pytest.raises(ExperimentError) as twice:
        store.create(experiment("exp-j"))
    assert twice.value.status == 409
    live = LiveExperiments(store)
    assert live(NOW.timestamp()) == []
    store.start("exp-j", NOW)
    live.refresh()
    assert [e.experiment_id for e in live(NOW.timestamp() + 60)] == ["exp-j"]
    assert live((NOW + timedelta(days=15)).timestamp()) == []  # past its end (14 days)
    with pytest.raises(ExperimentError) as again:
        store.start("exp-j", NOW)
    assert again.value.status == 409
    store.stop("exp-j", NOW + timedelta(days=1))
    live.refresh()
    assert live(NOW.timestamp() + 60) == []
    assert store.get("exp-j").status == "stopped"
    assert store.get("exp-j").days() == ["2026-12-01", "2026-12-02"]


def test_built_in_strategies_and_configured_ones():
    baseline = BUILT_IN["baseline"].route("feed", DEFAULT_ROUTES["feed"])
    assert dict(baseline.weights) == {"commercial": 1.0}
    assert BUILT_IN["default"].route("feed", DEFAULT_ROUTES["feed"]) == DEFAULT_ROUTES["feed"]
    defined = parse_strategies({"strategies": {"fresh": {"weights": {"commercial": 0.3, "probability": 0.7},
                                                         "sources": {"popular": 1.0}, "personas": True,
                                                         "surfaces": ["search"]}}})
    search = defined["fresh"].route("search", DEFAULT_ROUTES["search"])
    assert search.weights == {"commercial": 0.3, "probability": 0.7, "personas": 0.5}
    assert [s.name for s in search.sources] == ["popular"]
    assert defined["fresh"].route("feed", DEFAULT_ROUTES["feed"]) == DEFAULT_ROUTES["feed"]


@pytest.mark.parametrize(("document", "field"), [
    ({"strategies": {"baseline": {}}}, "strategies.baseline"),
    ({"strategies": {"x": {"weights": {"luck": 1}}}}, "strategies.x.weights.luck"),
    ({"strategies": {"x": {"weights": {"commercial": -1}}}}, "strategies.x.weights.commercial"),
    ({"strategies": {"x": {"sources": {"popular": 2}}}}, "strategies.x.sources"),
    ({"strategies": {"x": {"personas": "yes"}}}, "strategies.x.personas"),
    ({"strategies": {"x": {"ltv": 1}}}, "strategies.x.ltv"),
    ({"strategies": {"x": {"ltv": True, "ltv_strength": 2}}}, "strategies.x.ltv_strength"),
    ("{not json", "strategies"),
])
def test_a_bad_strategy_document_is_refused_naming_the_field(document, field):
    with pytest.raises(StrategyError) as refused:
        parse_strategies(document)
    assert refused.value.field == field


def test_strategies_from_appconfig_keep_the_last_valid_ones_when_it_fails():
    answers = iter(['{"strategies": {"x": {"personas": false}}}', "{broken"])
    clock = iter([0.0, 100.0])
    source = StrategySource({"STRATEGY_CONFIG_APPLICATION": "a", "STRATEGY_CONFIG_ENVIRONMENT": "e",
                             "STRATEGY_CONFIG_PROFILE": "p"}, fetch=lambda *args: next(answers),
                            clock=lambda: next(clock))
    assert set(source()) == {"x", "default", "baseline", "adaptive"}
    assert set(source()) == {"x", "default", "baseline", "adaptive"}


def test_a_failed_read_of_the_running_experiments_keeps_the_last_ones():
    [exp] = started(experiment("exp-k"))
    answers = [[exp], RuntimeError("throttled")]

    def listed():
        answer = answers.pop(0) if answers else [exp]
        if isinstance(answer, Exception):
            raise answer
        return answer

    clock = [0.0]
    live = LiveExperiments(listed, clock=lambda: clock[0])
    assert live(NOW.timestamp() + 1) == [exp]
    clock[0] = 31.0
    assert live(NOW.timestamp() + 1) == [exp]  # the read failed: the last list
    clock[0] = 37.0
    assert live(NOW.timestamp() + 1) == [exp] and not answers  # read again a few seconds on


def test_the_report_is_tuned_at_the_planned_units_the_experiment_names():
    store = ExperimentStore(MemoryStateStore())
    body = {"variants": [{"name": "a", "strategy": "default"}, {"name": "b", "strategy": "baseline"}]}
    store.create(new_experiment({**body, "experiment_id": "exp-planned", "planned_units": 800}, now=NOW,
                                known_strategies=STRATEGIES))
    store.create(new_experiment({**body, "experiment_id": "exp-unplanned"}, now=NOW, known_strategies=STRATEGIES))
    planned = store.get("exp-planned")
    assert planned.planned_units == 800
    assert store.build_report(planned)["tuning_units"] == 800
    assert store.build_report(store.get("exp-unplanned"))["tuning_units"] == 5000


def test_an_interleaving_experiments_shoppers_count_under_one_name_and_feed_ids_carry_each_slots_ranker():
    experiment = new_experiment({"design": "interleaving", "holdout": 0.2,
                                 "variants": [{"name": "a", "strategy": "baseline"}, {"name": "b", "strategy": "default"}]},
                                now=NOW, known_strategies=STRATEGIES)
    assert experiment.interleaving and Experiment.from_row(experiment.to_row()).design == "interleaving"
    assert new_experiment({"variants": [{"name": "a", "strategy": "default"}, {"name": "b", "strategy": "default"}]},
                          now=NOW, known_strategies=STRATEGIES).design == "ab"
    live = experiment.started(NOW, claim_slot(experiment, []))
    names = [assign([live], "feed", user_id=f"u{k}", session_id=None) for k in range(200)]
    assert {a.variant_name for a in names} == {INTERLEAVED, "holdout"}
    assert all(a.interleaved == (a.variant_name == INTERLEAVED) for a in names)
    feed_id = new_feed_id("exp-i", unit_kind="s", credits=[-3, 0, 70], scale=4)
    assert parse_feed_id(feed_id) == FeedId("exp-i", INTERLEAVED, "s", (-0.75, 0.0, 17.5))
    longest = new_feed_id("e" * 48, unit_kind="u", credits=[839_807] * 100, scale=9999)
    assert len(longest) <= MAX_ID_LENGTH and len(parse_feed_id(longest).credits) == CREDIT_SLOTS
    with pytest.raises(ValueError, match="credits"):
        new_feed_id("exp-i", credits=[839_808], scale=1)
    for bad in ("~3-", "~0-0000", "~03-0000", "~x-0000", "~3-000", "~3-0000-", "~10000-0000", "~2-000G",
                "~1-" + "0000" * (CREDIT_SLOTS + 1)):
        assert parse_feed_id(f"exp-i.{bad}.u{'0' * 32}") is None, bad
