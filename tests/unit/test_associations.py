"""Item associations: which engagements add what to which rows, and how a session's items rank next items."""

from __future__ import annotations

import random

import numpy as np
import pytest

from tailor.associations import (
    EVENT_WEIGHTS,
    ItemAssociations,
    NextItemParams,
    NextItems,
    RevisitOdds,
    engagement_strength,
    pair_increments,
    parse_associations,
    rank_next_items,
    revisit_context,
)
from tailor.embeddings import ItemVectors
from tailor.embeddings.ranking import EmbeddingBlend
from tailor.events import parse_event
from tailor.ingest.derive import contributions
from tailor.session import fold_session


def rows_from(sessions: list[list[str]], kind: str = "view") -> dict[str, ItemAssociations]:
    """Association rows built the way Ingest builds them: each view paired with its session's state."""
    raw: dict[str, dict[str, float]] = {}
    for number, items in enumerate(sessions):
        previous: list[str] = []
        for item in items:
            for key, increments in pair_increments(item, kind, previous).items():
                row = raw.setdefault(key, {})
                for name, amount in increments.items():
                    row[name] = row.get(name, 0.0) + amount
            previous = [p for p in previous if p != item] + [item]
    return {key: parse_associations(key, row) for key, row in raw.items()}


def lookup_in(rows: dict[str, ItemAssociations], calls: list[list[str]] | None = None):
    def lookup(keys):
        if calls is not None:
            calls.append(list(keys))
        return {k: rows[k] for k in keys if k in rows}
    return lookup


def test_a_view_pairs_with_earlier_items_weighted_by_gap_in_both_rows():
    got = pair_increments("c", "view", ["a", "b"])
    assert got == {
        "b": {"n:c": 1.0, "f:c": 1.0},  # c came right after b
        "a": {"n:c": 0.5, "f:c": 0.5},  # one item between
        "c": {"n:b": 1.0, "n:a": 0.5},  # near is symmetric; "follows" stays with the earlier item
    }


def test_event_types_weigh_pairs_and_non_engagements_add_nothing():
    # A cart add is a commitment: its pairs also count as "c:" in both rows.
    assert pair_increments("c", "add_to_cart", ["a"]) == {"a": {"n:c": 3.0, "f:c": 3.0, "c:c": 3.0},
                                                          "c": {"n:a": 3.0, "c:a": 3.0}}
    assert pair_increments("c", "purchase", ["a"])["a"]["f:c"] == EVENT_WEIGHTS["purchase"]
    for kind in ("dwell", "zoom", "remove_from_cart", "impression"):
        assert pair_increments("c", kind, ["a", "b"]) == {}
    assert pair_increments("c", "view", []) == {}


def test_a_weights_mapping_scales_pairs_so_intent_can_plug_in():
    blended = {"view": 0.5, "add_to_cart": 6.0}
    assert pair_increments("c", "view", ["a"], blended)["a"]["f:c"] == 0.5
    assert pair_increments("c", "add_to_cart", ["a"], blended)["a"]["f:c"] == 6.0
    assert pair_increments("c", "purchase", ["a"], blended) == {}


def test_only_the_window_of_recent_items_is_paired():
    previous = [f"i{k}" for k in range(15)]
    got = pair_increments("new", "view", previous, window=10)
    assert set(got) - {"new"} == {f"i{k}" for k in range(5, 15)}
    assert got["i5"]["f:new"] == pytest.approx(1 / 10, abs=1 / 128)


def test_returning_to_an_item_counts_in_its_own_follows_and_pairs_with_the_others():
    got = pair_increments("a", "view", ["a", "b"])
    assert got["a"] == {"n:b": 1.0, "f:a": 0.5}  # b is between: the return is one step back
    assert got["b"] == {"n:a": 1.0, "f:a": 1.0}
    assert pair_increments("a", "click", ["b", "a"])["a"]["f:a"] == 1.0  # again on the last item


def test_weights_are_multiples_of_a_64th_so_sums_do_not_depend_on_order():
    rng = random.Random(3)
    amounts = [amount for _ in range(300)
               for increments in pair_increments("x", rng.choice(["view", "review_read", "add_to_cart"]),
                                                 [f"p{k}" for k in range(rng.randint(1, 12))]).values()
               for amount in increments.values()]
    assert all((amount * 64).is_integer() for amount in amounts)
    shuffled = amounts[:]
    rng.shuffle(shuffled)
    assert sum(amounts) == sum(shuffled)


def test_ingest_derive_writes_one_contribution_per_touched_association_row():
    events = [parse_event({"event_id": f"e{k}", "user_id": "u", "session_id": "s", "event_type": "view",
                           "timestamp": f"2026-11-02T10:0{k}:00Z", "item_id": item})
              for k, item in enumerate(["a", "b", "c"])]
    session = None
    for event in events[:2]:
        session = fold_session(session, event, ttl_seconds=60)
    found = [c for c in contributions(events[2], session) if c.table == "associations"]
    assert {c.key: c.increments for c in found} == pair_increments("c", "view", ["a", "b"])


def test_parsed_rows_skip_keys_watermarks_and_self_and_rank_their_top():
    row = {"item_id": "a", "wm:shardId-0": "0031", "n:b": 3.0, "n:c": 5.0, "n:a": 9.0, "n:d": 0,
           "f:b": 2.0, "f:a": 1.5}
    parsed = parse_associations("a", row)
    assert parsed.near == {"b": 3.0, "c": 5.0}
    assert parsed.follows == {"b": 2.0, "a": 1.5}  # a return to the item itself is kept for ranking
    assert (parsed.near_total, parsed.follows_total) == (8.0, 3.5)
    assert parsed.top(1) == [("c", 5.0)]
    assert parsed.top(5, follows=True) == [("b", 2.0)]
    assert parse_associations("z", None).top() == []


def test_the_most_recent_item_drives_the_ranking_and_session_items_come_back_as_reminders():
    rows = rows_from([["a", "x"]] * 5 + [["b", "y"]] * 5)
    ranked = [item for item, _ in rank_next_items(["a", "b"], lookup_in(rows), 5)]
    assert ranked[0] == "b"  # the last item: the likeliest next one in shopping sessions
    assert ranked.index("y") < ranked.index("x")  # what follows b beats what follows the older a
    assert {"a", "b", "x", "y"} <= set(ranked)


def test_direction_matters_what_follows_beats_what_precedes():
    rows = rows_from([["p", "m", "f"]] * 4)
    scores = dict(rank_next_items(["m"], lookup_in(rows), 5))
    assert scores["f"] > scores["p"] > 0


def test_the_second_step_reaches_items_the_session_never_met_and_reads_rows_twice():
    rows = rows_from([["a", "b"]] * 3 + [["b", "c"]] * 3)
    calls: list[list[str]] = []
    ranked = dict(rank_next_items(["a"], lookup_in(rows, calls), 10))
    assert "c" in ranked and ranked["c"] < ranked["b"]
    assert calls[0] == ["a"] and "b" in calls[1]
    without = dict(rank_next_items(["a"], lookup_in(rows), 10, params=NextItemParams(expansion=0)))
    assert "c" not in without


def test_next_items_names_the_rows_the_ranking_reads_and_ranks_as_rank_next_items_does():
    rng = random.Random(3)
    catalog = [f"i{k}" for k in range(40)]
    rows = rows_from([rng.sample(catalog, rng.randint(2, 8)) for _ in range(300)])
    factors = {"view": 0.5, "add_to_cart": 3.0}
    for session in (["i1"], ["i3", "i7", "i1"], ["new", "i2"], catalog[:12]):
        for kwargs in ({}, {"factors": factors}, {"anchor_strength": {session[0]: 3.0}}):
            calls: list[list[str]] = []
            expected = rank_next_items(session, lookup_in(rows, calls), 25, **kwargs)
            first = NextItems(session, lookup_in(rows), **kwargs)
            assert first.keys == list(dict.fromkeys(key for keys in calls for key in keys))
            assert first.ranked(lookup_in(rows), 25) == expected
            assert first.ranked(lookup_in(rows), 25) == expected  # ranking leaves the first step as it was
    # The strongest candidates' rows not read yet: the first step ranks without them, then with them.
    first = NextItems(["i1"], lookup_in({"i1": rows["i1"]}))
    assert first.keys[0] == "i1" and len(first.keys) > 1
    assert first.ranked(lookup_in(rows), 25) == rank_next_items(["i1"], lookup_in(rows), 25)
    # Equal weights go by item id, as a sort on (-weight, item) orders them: a few best of many, or most of them.
    tied = ItemAssociations("a", {f"t{k:02d}": float(k % 3 + 1) for k in range(30)}, {}, 60.0, 0.0)
    assert tied.top(4) == [("t02", 3.0), ("t05", 3.0), ("t08", 3.0), ("t11", 3.0)]
    assert [item for item, _ in tied.top(12)] == [f"t{k:02d}" for k in range(2, 30, 3)] + ["t01", "t04"]


def test_anchor_strength_lets_a_carted_item_outvote_a_more_recent_view():
    rows = rows_from([["a", "x"]] * 3 + [["b", "y"]] * 3)
    plain = [i for i, _ in rank_next_items(["a", "b"], lookup_in(rows), 6) if i in ("x", "y")]
    strong = [i for i, _ in rank_next_items(["a", "b"], lookup_in(rows), 6, anchor_strength={"a": 10.0})
              if i in ("x", "y")]
    assert plain == ["y", "x"] and strong == ["x", "y"]


def test_an_empty_session_or_unknown_items_rank_nothing_but_reminders():
    assert rank_next_items([], lookup_in({}), 20) == []
    assert rank_next_items(["new"], lookup_in({}), 20) == [("new", 1.0)]


def test_engagement_strength_reads_the_strongest_event_per_item_from_session_events():
    kinds = [("view", "a"), ("add_to_cart", "a"), ("view", "b"), ("zoom", "b"), ("purchase", "c")]
    events = [parse_event({"event_id": f"e{k}", "user_id": "u", "session_id": "s", "event_type": kind,
                           "timestamp": f"2026-11-02T10:0{k}:00Z", "item_id": item, "price": 5.0})
              for k, (kind, item) in enumerate(kinds)]
    assert engagement_strength(events) == {"a": 3.0, "c": 5.0}  # b was only viewed: the default 1
    assert engagement_strength(events, {"view": 2.0, "purchase": 2.0}) == {}


def test_intent_factors_weigh_near_pairs_and_the_session_source_ranks_as_rank_next_items_does():
    from tailor.intent import IntentFactors
    from tailor.ranking.candidates import SessionSource
    from tailor.ranking.context import RankingContext, Request
    from tailor.ranking.rows import partners

    # Viewed with "a": "v" more often; carted with it: "c" (its pairs are commitments).
    raw = {"a": {"n:v": 6.0, "n:c": 4.0, "c:c": 4.0, "f:v": 6.0, "f:c": 4.0}}
    rows = {"a": parse_associations("a", raw["a"])}
    plain = [item for item, _ in rank_next_items(["a"], lookup_in(rows), 3)]
    buying = [item for item, _ in rank_next_items(["a"], lookup_in(rows), 3, factors={"view": 0.5, "add_to_cart": 3.0})]
    assert plain == ["a", "v", "c"] and buying == ["a", "c", "v"]

    # The feed's session candidates are this ranking, read from the rows the pipeline parsed.
    session = fold_session(None, parse_event({"event_id": "e1", "user_id": "u", "session_id": "s",
                                              "timestamp": "2026-11-02T12:00:00Z", "event_type": "view",
                                              "item_id": "a"}), ttl_seconds=0)
    ctx = RankingContext(Request("feed", session_id="s"), session.last_seen, session=session,
                         factors=IntentFactors.default())
    assert list(SessionSource().keys(ctx)) == [("associations", "a")]
    ctx.associations["a"] = partners("a", raw["a"])
    ctx.version += 1  # a read brought rows
    assert list(SessionSource().propose(ctx, 3).items()) == rank_next_items(["a"], lookup_in(rows), 3)


def test_the_session_source_takes_its_first_step_again_only_when_the_anchors_rows_change(monkeypatch):
    from tailor.ranking import candidates
    from tailor.ranking.context import RankingContext, Request
    from tailor.ranking.rows import partners

    raw = {"a": {"n:b": 3.0, "f:b": 3.0}, "b": {"n:a": 3.0, "n:c": 3.0, "f:c": 3.0}, "z": {"n:y": 1.0}}
    first_steps = []
    monkeypatch.setattr(candidates, "NextItems", lambda *a, **k: first_steps.append(1) or NextItems(*a, **k))
    session = fold_session(None, parse_event({"event_id": "e1", "user_id": "u", "session_id": "s",
                                              "timestamp": "2026-11-02T12:00:00Z", "event_type": "view",
                                              "item_id": "a"}), ttl_seconds=0)
    ctx = RankingContext(Request("feed", session_id="s"), session.last_seen, session=session)
    source = candidates.SessionSource()
    ctx.associations["a"] = partners("a", raw["a"])
    assert list(source.keys(ctx)) == [("associations", "a"), ("associations", "b")]
    assert list(source.propose(ctx, 5)) == ["a", "b"]
    ctx.associations["z"] = partners("z", raw["z"])  # a row the ranking does not read
    ctx.associations["b"] = partners("b", raw["b"])  # the expansion's row: the second step reads it
    assert list(source.propose(ctx, 5)) == ["a", "b", "c"] and len(first_steps) == 1
    ctx.associations["a"] = partners("a", {**raw["a"], "n:d": 9.0})  # the anchor's row read again
    assert "d" in source.propose(ctx, 5) and len(first_steps) == 2



def test_revisit_odds_set_each_reminder_as_that_share_of_the_votes():
    rows = rows_from([["a", "x"]] * 5 + [["b", "y"]] * 5)
    plain = dict(rank_next_items(["a", "b"], lookup_in(rows), 10, params=NextItemParams(reminder=0.0)))
    votes = sum(plain.values())
    # A shop whose sessions come back to the item before last more than they stay or move on.
    ranked = rank_next_items(["a", "b"], lookup_in(rows), 10, params=NextItemParams(reminder=0.0),
                             revisits=(0.2, 1.5))
    scores = dict(ranked)
    assert ranked[0][0] == "a"
    assert scores["a"] == pytest.approx(plain.get("a", 0.0) + 1.5 * votes)
    assert scores["b"] == pytest.approx(plain.get("b", 0.0) + 0.2 * votes)
    assert {item: scores[item] for item in ("x", "y")} == {item: plain[item] for item in ("x", "y")}
    # A shop whose sessions seldom come back: the session's items fall below what its associations propose.
    seldom = [item for item, _ in rank_next_items(["a", "b"], lookup_in(rows), 10, revisits=(0.001, 0.001))]
    assert seldom.index("y") < seldom.index("b")
    # Without votes the session's items alone, in their odds' order: here the item before last (n1) first.
    assert rank_next_items(["n1", "n2"], lookup_in({}), 5, revisits=(0.1, 0.4)) == [("n1", 0.4), ("n2", 0.1)]


def test_revisit_contexts_cap_distinct_items_and_engagements_and_unseen_ones_take_the_overall_odds():
    assert revisit_context(2, 3) == "2,3"
    assert revisit_context(40, 300) == revisit_context(6, 8) == "6,8"
    odds = RevisitOdds({"1,1": (0.5, 0.1)}, (0.3, 0.2))
    assert odds.of(1, 1) == (0.5, 0.1) and odds.of(3, 5) == (0.3, 0.2)
    assert RevisitOdds.from_json(odds.to_json()) == odds


def test_the_session_source_reminds_with_the_revisit_odds_of_where_its_session_stands():
    from tailor.ranking.candidates import SessionSource
    from tailor.ranking.context import RankingContext, Request
    from tailor.ranking.rows import partners

    raw = {"a": {"n:x": 4.0, "f:x": 4.0}, "b": {"n:y": 4.0, "f:y": 4.0}}
    rows = {key: parse_associations(key, row) for key, row in raw.items()}
    session = None
    for k, item in enumerate(["a", "b", "b"]):  # two distinct items, three engagements (a dwell does not count)
        session = fold_session(session, parse_event({"event_id": f"e{k}", "user_id": "u", "session_id": "s",
                                                     "timestamp": f"2026-11-02T12:00:0{k}Z", "event_type": "view",
                                                     "item_id": item}), ttl_seconds=0)
    session = fold_session(session, parse_event({"event_id": "e9", "user_id": "u", "session_id": "s",
                                                 "timestamp": "2026-11-02T12:00:09Z", "event_type": "scroll",
                                                 "depth": 0.5}), ttl_seconds=0)
    odds = RevisitOdds({revisit_context(2, 3): (0.05, 2.0)}, (1.0, 0.01))
    # The odds come with the shop's item vectors; the blend's weight 0 leaves the association ranking as it is.
    vectors = ItemVectors.build(["a", "b", "x", "y"], np.eye(4), metadata={"revisits": odds.to_json()})
    source = SessionSource(vectors=lambda: vectors, blend=EmbeddingBlend(weight=0.0))

    def proposed(ctx_session):
        ctx = RankingContext(Request("feed", session_id="s"), session.last_seen, session=ctx_session)
        for key, row in raw.items():
            ctx.associations[key] = partners(key, row)
        ctx.version += 1
        return list(source.propose(ctx, 4).items())

    assert proposed(session) == rank_next_items(["a", "b"], lookup_in(rows), 4, revisits=(0.05, 2.0))
    assert [item for item, _ in proposed(session)][0] == "a"  # coming back to the item before last
    # No session (a request describing none): the odds over every context.
    ctx = RankingContext(Request("related", item_id="b"), session.last_seen)
    ctx.associations["b"] = partners("b", raw["b"])
    ctx.version += 1
    assert list(source.propose(ctx, 4).items()) == rank_next_items(
        ["b"], lookup_in(rows), 4, revisits=(1.0, 0.01))
