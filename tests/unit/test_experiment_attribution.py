"""Attribution in Ingest's fold: events that echo an experiment's feed id reach its variant's daily statistics,
once, whatever the stream replays, cuts in halves or fails part way."""

import random
from collections import defaultdict

import pytest

from tailor.events import parse_event
from tailor.experiments.attribution import OUTCOMES_TABLE, Attribution
from tailor.experiments.feed_ids import INTERLEAVED, new_feed_id, parse_feed_id
from tailor.experiments.statistics import SufficientStatistics, UnitTotals
from tailor.ingest.merge import CounterMerge
from tailor.ingest.service import Ingestor
from tailor.store.memory import MemoryBlobStore, MemoryStateStore

from tests.helpers.events import random_events, to_records
from tests.helpers.ingest import FlakyBlobStore, FlakyStateStore, deliver, state_rows

ATTRIBUTION = Attribution(window=3600, shards=4)


def experiment_events(seed: int, n: int) -> list[dict]:
    """Random events where most shoppers act on lists of experiment "exp-1" (variant by user), or on interleaved
    lists of "exp-2" (a third of them), and purchases follow."""
    rng = random.Random(seed)
    feeds = {}
    out = []
    for event in random_events(seed, n):
        user = event["user_id"]
        if user not in feeds and rng.random() < 0.8:
            credits = [rng.randint(-99, 99) for _ in range(10)]
            feeds[user] = (new_feed_id("exp-2", unit_kind="u", credits=credits, scale=32)
                           if int(user[1:]) % 3 == 0 else new_feed_id("exp-1", "A" if int(user[1:]) % 2 else "B", "u"))
        if user in feeds and event["event_type"] in ("impression", "click", "add_to_cart") and rng.random() < 0.7:
            event = {**event, "feed_id": feeds[user], "position": rng.randrange(10)}
        if event["event_type"] == "purchase" and user in feeds and rng.random() < 0.3:
            event = {**event, "feed_id": feeds[user]}
        out.append(event)
    return out


def statistics(store: MemoryStateStore) -> dict[tuple[str, str], SufficientStatistics]:
    """(day, variant) -> the sum of its shards' rows."""
    found: dict[tuple[str, str], SufficientStatistics] = defaultdict(SufficientStatistics)
    for key, row in state_rows(store).get(OUTCOMES_TABLE, {}).items():
        _, day, variant, _ = key.split("#")
        found[(day, variant)] += SufficientStatistics.from_item(row)
    return dict(found)


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].n == b[key].n
        assert a[key].sums == pytest.approx(b[key].sums, rel=1e-9)
        assert a[key].products == pytest.approx(b[key].products, rel=1e-9)


def clean(events: list[dict], *, buffer: bool = False) -> MemoryStateStore:
    store = MemoryStateStore()
    Ingestor(store, MemoryBlobStore(), max_workers=1, attribution=ATTRIBUTION, buffer=buffer).ingest(to_records(events))
    if buffer:
        CounterMerge(store, max_workers=1).run()
    return store


def test_the_statistics_are_those_of_the_units_totals():
    events = experiment_events(3, 600)
    store = clean(events)
    stats = statistics(store)
    assert stats, "some events were attributed"
    # Summed over days, a variant's rows are the statistics of its units' final totals (in the shopper rows).
    by_variant: dict[str, SufficientStatistics] = defaultdict(SufficientStatistics)
    for (_, variant), row in stats.items():
        by_variant[variant] += row
    units: dict[str, list[UnitTotals]] = defaultdict(list)
    for row in state_rows(store)["shoppers"].values():
        for entry in row.get("experiments", {}).values():
            units[entry[0]].append(UnitTotals(*entry[1:7], realized_revenue=entry[9], credit=entry[10]))
    expected = {variant: SufficientStatistics.of_units(found) for variant, found in units.items()}
    assert set(expected) == {"A", "B", INTERLEAVED}
    assert_same(by_variant, expected)
    assert sum(s.n for s in by_variant.values()) == sum(len(u) for u in units.values())
    assert sum(s.total("clicks") for s in by_variant.values()) > 0
    assert sum(s.total("orders") for s in by_variant.values()) > 0
    assert sum(s.total("realized_revenue") for s in by_variant.values()) > sum(
        s.total("revenue") for s in by_variant.values())
    assert by_variant[INTERLEAVED].cross("credit", "credit") > 0


def test_an_interleaved_lists_clicks_earn_what_its_feed_id_says_a_click_on_their_slot_earns():
    feed = new_feed_id("exp-2", unit_kind="u", credits=[64, -16, -48, 8], scale=32)
    again = new_feed_id("exp-2", unit_kind="u", credits=[64, -16, -48, 8], scale=32)  # the same lists served again
    assert parse_feed_id(feed).credits == (2.0, -0.5, -1.5, 0.25) and parse_feed_id(feed).variant == INTERLEAVED
    base = {"user_id": "u1", "session_id": "s1", "item_id": "i1", "feed_id": feed, "event_type": "click"}
    events = [{**base, "event_id": "e0", "event_type": "impression", "item_ids": ["i1", "i2", "i3", "i4"],
               "timestamp": "2026-11-02T09:00:00Z"}]
    # 2 - 0.5 + 0.25; slot 0 clicked again earns nothing more, and a slot past the list nothing
    events += [{**base, "event_id": f"e{k + 1}", "position": position, "timestamp": f"2026-11-02T09:0{k + 1}:00Z"}
               for k, position in enumerate([0, 1, 0, 3, 7])]
    events.append({**base, "event_id": "e7", "feed_id": again, "position": 0, "timestamp": "2026-11-02T09:07:00Z"})
    events.append({**base, "event_id": "e8", "position": 0, "timestamp": "2026-11-02T09:08:00Z"})  # the first list
    events.append({**base, "event_id": "e9", "timestamp": "2026-11-03T09:00:00Z"})  # no position: no credit
    stats = statistics(clean(events))
    first, second = stats[("2026-11-02", INTERLEAVED)], stats[("2026-11-03", INTERLEAVED)]
    # The other list's slot 0 earns again; back on the first list, its slot 0 counts as a list of its own once more.
    assert (first.n, first.total("impressions"), first.total("clicks"), first.total("credit")) == (1, 1, 7, 5.75)
    assert first.cross("credit", "credit") == 5.75 ** 2
    assert (second.n, second.total("clicks"), second.total("credit")) == (0, 1, 0)
    assert statistics(clean(events[:2]))[("2026-11-02", INTERLEAVED)].total("credit") == 2.0
    assert statistics(clean(events[:4]))[("2026-11-02", INTERLEAVED)].total("credit") == 1.5


def test_a_unit_kept_before_credited_slots_were_starts_counting_them():
    old = {"exp-2": ["interleaved", 1, 1, 0, 0.0, 5.0, 0.0, 1.793e9, 1.793e9, 0.0, 2]}
    feed = new_feed_id("exp-2", unit_kind="u", credits=[-32, 32], scale=32)
    click = {"event_id": "c", "user_id": "u1", "session_id": "s1", "event_type": "click", "item_id": "i1",
             "feed_id": feed, "position": 1, "timestamp": "2026-11-02T09:00:00Z"}
    units, _ = Attribution().attribute(parse_event(click), old, revenue_so_far=0.0, predicted_ltv=0.0)
    assert units["exp-2"][10] == 3 and units["exp-2"][12] == 0b10
    units, contributions = Attribution().attribute(parse_event({**click, "event_id": "d"}), units,
                                                   revenue_so_far=0.0, predicted_ltv=0.0)
    assert units["exp-2"][2] == 3 and units["exp-2"][10] == 3  # the click counts, its slot's credit does not again
    assert contributions[0].increments["s_clicks"] == 1 and "s_credit" not in contributions[0].increments


def test_a_unit_kept_before_credits_were_gets_none_and_keeps_its_totals():
    old = {"exp-2": ["interleaved", 1, 0, 0, 0.0, 5.0, 0.0, None, 1.793e9, 0.0]}
    click = parse_event({"event_id": "c", "user_id": "u1", "session_id": "s1", "event_type": "click", "item_id": "i1",
                         "feed_id": new_feed_id("exp-2", unit_kind="u", credits=[-32, 32], scale=32), "position": 0,
                         "timestamp": "2026-11-02T09:00:00Z"})
    units, contributions = Attribution().attribute(click, old, revenue_so_far=0.0, predicted_ltv=0.0)
    assert units["exp-2"][1:3] == [1, 1] and units["exp-2"][10] == -1
    fields = contributions[0].increments
    assert fields["s_clicks"] == 1 and fields["s_credit"] == -1 and fields["p_credit__credit"] == 1
    assert "n" not in fields  # the unit was exposed before


def test_a_purchase_within_the_window_after_an_attributed_click_is_an_order():
    feed = new_feed_id("exp-1", "A")
    base = {"user_id": "u1", "session_id": "s1", "item_id": "i1", "price": 20.0}
    events = [
        {**base, "event_id": "e1", "event_type": "impression", "item_ids": ["i1"], "feed_id": feed,
         "timestamp": "2026-11-02T09:00:00Z"},
        {**base, "event_id": "e2", "event_type": "click", "feed_id": feed, "position": 0,
         "timestamp": "2026-11-02T09:00:10Z"},
        {**base, "event_id": "e3", "event_type": "purchase", "quantity": 2, "timestamp": "2026-11-02T09:30:00Z"},
        {**base, "event_id": "e4", "event_type": "purchase", "quantity": 1, "timestamp": "2026-11-02T11:00:00Z"},
    ]
    stats = statistics(clean(events))[("2026-11-02", "A")]
    assert (stats.n, stats.total("impressions"), stats.total("clicks")) == (1, 1, 1)
    assert (stats.total("orders"), stats.total("revenue")) == (1, 40.0)  # the second is past the hour's window
    assert stats.cross("revenue", "revenue") == 1600.0


def test_realized_revenue_counts_every_purchase_in_the_window_after_the_first_exposure():
    feed = new_feed_id("exp-1", "A")
    base = {"user_id": "u1", "session_id": "s1", "item_id": "i1", "price": 10.0, "quantity": 1}
    events = [
        {**base, "event_id": "e0", "event_type": "purchase", "timestamp": "2026-11-01T08:00:00Z"},  # before
        {**base, "event_id": "e1", "event_type": "impression", "item_ids": ["i1"], "feed_id": feed,
         "timestamp": "2026-11-02T09:00:00Z"},
        {**base, "event_id": "e2", "event_type": "purchase", "timestamp": "2026-11-05T09:00:00Z", "price": 30.0},
        {**base, "event_id": "e3", "event_type": "purchase", "feed_id": feed, "timestamp": "2026-11-20T09:00:00Z"},
        {**base, "event_id": "e4", "event_type": "purchase", "timestamp": "2026-11-30T08:59:59Z", "price": 5.0},
        {**base, "event_id": "e5", "event_type": "purchase", "timestamp": "2026-11-30T09:00:00Z", "price": 99.0},
    ]
    stats = statistics(clean(events))
    total = sum(stats.values(), SufficientStatistics())
    assert total.n == 1 and total.total("pre_revenue") == 10.0
    # e3 echoes the list (an order); e2, e3 and e4 fall in the 28 days after the exposure, e5 on their end
    assert (total.total("orders"), total.total("revenue")) == (1, 10.0)
    assert total.total("realized_revenue") == 45.0 and total.cross("realized_revenue", "realized_revenue") == 45.0 ** 2
    assert stats[("2026-11-05", "A")].total("realized_revenue") == 30.0  # on the purchase's day, past the experiment's
    assert ("2026-11-30", "A") in stats and ("2026-11-01", "A") not in stats


def test_a_shopper_forgets_the_units_nothing_can_count_for_any_more():
    from tailor.shopper import ShopperState

    old, recent = new_feed_id("exp-old", "A"), new_feed_id("exp-new", "B")
    base = {"user_id": "u1", "session_id": "s1", "item_id": "i1", "price": 10.0, "quantity": 1}
    events = [
        {**base, "event_id": "e1", "event_type": "impression", "item_ids": ["i1"], "feed_id": old,
         "timestamp": "2024-12-01T09:00:00Z"},
        {**base, "event_id": "e2", "event_type": "impression", "item_ids": ["i1"], "feed_id": recent,
         "timestamp": "2026-01-01T09:00:00Z"},
        {**base, "event_id": "e3", "event_type": "purchase", "timestamp": "2026-01-20T09:00:00Z"},
    ]
    seconds = ATTRIBUTION.retention
    assert seconds == (366 + 28) * 86400 + 3600  # the longest experiment, then its report's window after the end
    store = clean(events)
    shopper = ShopperState.from_row(state_rows(store)["shoppers"]["u1"])
    # 415 days after its exposure nothing counts for exp-old's unit (its experiment ended, its report's rows too):
    # the purchase forgets it and adds to the realized revenue of exp-new's alone.
    assert set(shopper.experiments) == {"exp-new"}
    stats = statistics(store)
    assert stats[("2026-01-20", "B")].total("realized_revenue") == 10.0 and ("2026-01-20", "A") not in stats
    kept = {"exp-old": ["A", 1, 0, 0, 0.0, 0.0, 0.0, None, 1733043600.0, 0.0, 0, None, 0]}  # 2024-12-01T09:00Z
    purchase = parse_event({**base, "event_id": "p", "event_type": "purchase", "timestamp": "2025-12-29T09:00:00Z"})
    units, _ = ATTRIBUTION.attribute(purchase, kept, revenue_so_far=0.0, predicted_ltv=0.0)
    assert set(units) == {"exp-old"}  # 393 days on, it may still count
    before_times = {"exp-old": ["A", 1, 1, 0, 0.0, 5.0, 0.0, None]}
    later = parse_event({**base, "event_id": "q", "event_type": "purchase", "timestamp": "2027-01-20T09:00:00Z"})
    assert ATTRIBUTION.attribute(later, before_times, revenue_so_far=0.0, predicted_ltv=0.0)[0] == before_times


def test_a_unit_kept_before_exposure_times_gets_no_realized_revenue():
    old = {"exp-1": ["A", 1, 1, 0, 0.0, 5.0, 0.0, None]}
    purchase = parse_event({"event_id": "p", "user_id": "u1", "session_id": "s1", "event_type": "purchase",
                            "item_id": "i1", "price": 10.0, "quantity": 1, "timestamp": "2026-11-02T09:00:00Z"})
    units, contributions = Attribution().attribute(purchase, old, revenue_so_far=0.0, predicted_ltv=0.0)
    assert units == old and contributions == []


def test_a_unit_counts_once_and_stays_in_its_first_variant():
    first, other = new_feed_id("exp-1", "A"), new_feed_id("exp-1", "B")
    base = {"user_id": "u1", "session_id": "s1", "event_type": "impression", "item_ids": ["i1"]}
    events = [{**base, "event_id": f"e{i}", "feed_id": feed, "timestamp": f"2026-11-0{2 + i}T09:00:00Z"}
              for i, feed in enumerate([first, first, other])]
    stats = statistics(clean(events))
    assert set(stats) == {("2026-11-02", "A"), ("2026-11-03", "A"), ("2026-11-04", "A")}
    assert [stats[k].n for k in sorted(stats)] == [1, 0, 0]
    total = sum(stats.values(), SufficientStatistics())
    assert total.total("impressions") == 3 and total.cross("impressions", "impressions") == 9


def test_an_anonymous_unit_is_its_session():
    feed = new_feed_id("exp-1", "A", "s")
    assert parse_feed_id(feed).unit_kind == "s"
    events = [{"event_id": f"e{i}", "user_id": "anon", "session_id": f"s{i}", "event_type": "impression",
               "item_ids": ["i1"], "feed_id": feed, "timestamp": "2026-11-02T09:00:00Z"} for i in range(3)]
    assert statistics(clean(events))[("2026-11-02", "A")].n == 3


def test_an_anonymous_shoppers_session_units_are_the_last_active_whatever_order_the_row_holds_them_in():
    from tailor.experiments.attribution import MAX_SESSION_UNITS

    base = 1_796_000_000.0
    units = {f"exp-1/s{k}": ["A", 1, 0, 0, 0.0, 0.0, 0.0, None, base + k, 0.0, 0, None, 0]
             for k in range(MAX_SESSION_UNITS)}
    units["exp-1/s0"][7] = base + 10 * MAX_SESSION_UNITS  # the first exposed, but clicked since: still active
    feed = new_feed_id("exp-1", "A", "s")
    event = parse_event({"event_id": "e-new", "user_id": "anon", "session_id": "s-new", "event_type": "impression",
                         "item_ids": ["i1"], "feed_id": feed, "timestamp": "2026-12-01T00:00:00Z"})
    kept = []
    for order in (sorted(units), sorted(units, reverse=True), random.Random(3).sample(sorted(units), len(units))):
        after, _ = ATTRIBUTION.attribute(event, {key: units[key] for key in order}, revenue_so_far=0.0,
                                         predicted_ltv=0.0)
        kept.append(set(after))
    assert kept[0] == kept[1] == kept[2] and len(kept[0]) == MAX_SESSION_UNITS
    assert "exp-1/s-new" in kept[0] and "exp-1/s0" in kept[0] and "exp-1/s1" not in kept[0]
    # A late event's new unit, older than every unit kept: kept all the same, so it is exposed once, not at each event.
    late = parse_event({"event_id": "e-late", "user_id": "anon", "session_id": "s-late", "event_type": "impression",
                        "item_ids": ["i1"], "feed_id": feed, "timestamp": "2026-11-01T00:00:00Z"})
    after, added = ATTRIBUTION.attribute(late, dict(units), revenue_so_far=0.0, predicted_ltv=0.0)
    assert "exp-1/s-late" in after and len(after) == MAX_SESSION_UNITS and added
    again = parse_event({"event_id": "e-late-2", "user_id": "anon", "session_id": "s-late", "event_type": "impression",
                         "item_ids": ["i1"], "feed_id": feed, "timestamp": "2026-11-01T00:01:00Z"})
    after, added = ATTRIBUTION.attribute(again, after, revenue_so_far=0.0, predicted_ltv=0.0)
    assert after["exp-1/s-late"][1] == 2  # its impressions add up in the one entry


def test_events_without_feed_ids_leave_the_shopper_rows_as_before():
    events = random_events(4, 300)
    plain = MemoryStateStore()
    Ingestor(plain, MemoryBlobStore(), max_workers=1).ingest(to_records(events))
    assert state_rows(clean(events)) == state_rows(plain)


def test_a_whole_batch_delivered_twice_changes_nothing():
    events = experiment_events(5, 300)
    store = clean(events)
    before = state_rows(store)
    Ingestor(store, MemoryBlobStore(), max_workers=1, attribution=ATTRIBUTION).ingest(to_records(events))
    assert state_rows(store) == before


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("buffer", [False, True])
def test_replays_bisections_and_failures_leave_the_statistics_of_one_clean_pass(seed, buffer):
    events = experiment_events(seed, 500)
    expected = statistics(clean(events, buffer=buffer))
    assert expected

    rng = random.Random(seed)
    inner = MemoryStateStore()
    store = FlakyStateStore(inner, rng, rate=0.08)
    ingestor = Ingestor(store, FlakyBlobStore(rng, rate=0.05), max_workers=4, attribution=ATTRIBUTION, buffer=buffer)
    calls = deliver(ingestor, to_records(events), rng, crash_rate=0.15)
    if buffer:
        CounterMerge(inner, max_workers=1).run()

    assert calls > 20  # failures really happened and were retried
    assert_same(statistics(inner), expected)
