"""Ingest's fold on its own: rows and events in, rows and contributions out, and the rows it was given left as they
were, so that a replay folds batch after batch on the rows of the last one (tailor_lab.training.ranker.Replay)."""

import copy

from tailor.ingest.intent import SessionIntent
from tailor.intent import MODEL_NAME, IntentModel
from tailor.models import load_model

from tests.helpers.events import random_events
from tests.helpers.ingest import fold, written


def test_the_fold_leaves_the_rows_it_reads_as_they_were_and_folds_them_alike_every_time():
    events = random_events(seed=5, n=240)
    intent = SessionIntent(load_model(MODEL_NAME, build=IntentModel.from_stored))
    rows = written(fold(events[:120], {"sessions": {}, "shoppers": {}}, 0, intent=intent))
    before = copy.deepcopy(rows)

    first, again = fold(events[120:], rows, 120, intent=intent), fold(events[120:], rows, 120, intent=intent)
    assert rows == before
    assert written(first) == written(again) and first.contributions == again.contributions
    assert first.contributions and not first.poisoned
    assert {key for key in written(first)["sessions"]} & rows["sessions"].keys()  # folded on from the rows read
    assert all(row["intent"] for row in written(first)["sessions"].values())
