"""The Ingest benchmark's stream: batches as the event source mapping makes them, at a rate and a batching window."""

from tailor_lab.bench.ingest import _batches


def events(n: int, users: int = 1) -> list[dict]:
    return [{"event_id": f"e{i}", "user_id": f"u{i % users}", "event_type": "view"} for i in range(n)]


def test_a_slow_shard_is_delivered_what_arrived_within_the_window():
    batches = _batches(events(25), batch_size=100, rate=10.0, window=1.0)
    # A record every 0.1 s: the window after each batch's first record holds it and the next ten.
    assert [len(records) for _, _, _, records in batches] == [11, 11, 3]
    assert [(round(ready, 6), round(first, 6)) for ready, first, _, _ in batches] == [(1.1, 0.1), (2.2, 1.2), (3.3, 2.3)]


def test_a_busy_shard_is_delivered_full_batches_as_they_fill():
    batches = _batches(events(250), batch_size=100, rate=1000.0, window=1.0)
    assert [len(records) for _, _, _, records in batches] == [100, 100, 50]
    assert [round(ready, 6) for ready, _, _, _ in batches] == [0.1, 0.2, 1.201]  # the last when its window ends


def test_records_arrive_at_their_stream_time():
    (_, _, _, first), (_, _, _, second) = _batches(events(2), batch_size=1, rate=2.0, window=1.0)
    gap = second[0]["ApproximateArrivalTimestamp"] - first[0]["ApproximateArrivalTimestamp"]
    assert gap.total_seconds() == 0.5
