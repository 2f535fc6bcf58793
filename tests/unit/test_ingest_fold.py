"""Ingest's fold on its own: rows and events in, rows and contributions out, and the rows it was given left as they
were, so that a replay folds batch after batch on the rows of the last one (tailor_lab.training.ranker.Replay)."""

import copy

from tailor.events import parse_event
from tailor.ingest.fold import fold_batch
from tailor.ingest.intent import SessionIntent
from tailor.intent import MODEL_NAME, IntentModel
from tailor.models import load_model

from tests.helpers.events import SHARD, random_events


def fold(events, rows, start, intent):
    accepted = [(f"{start + n:08d}", parse_event(e)) for n, e in enumerate(events)]
    return fold_batch(accepted, rows, SHARD, ttl=86400, arrivals={p: e.epoch for p, e in accepted}, intent=intent)


def written(folded):
    rows = {"sessions": {}, "shoppers": {}}
    for table, key, row in folded.changed_rows():
        rows[table][key] = row.fields()
    return rows


def test_the_fold_leaves_the_rows_it_reads_as_they_were_and_folds_them_alike_every_time():
    events = random_events(seed=5, n=240)
    intent = SessionIntent(load_model(MODEL_NAME, build=IntentModel.from_stored))
    rows = written(fold(events[:120], {"sessions": {}, "shoppers": {}}, 0, intent))
    before = copy.deepcopy(rows)

    first, again = fold(events[120:], rows, 120, intent), fold(events[120:], rows, 120, intent)
    assert rows == before
    assert written(first) == written(again) and first.contributions == again.contributions
    assert first.contributions and not first.poisoned
    assert {key for key in written(first)["sessions"]} & rows["sessions"].keys()  # folded on from the rows read
    assert all(row["intent"] for row in written(first)["sessions"].values())
