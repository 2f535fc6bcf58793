"""A data set's session is one shopper's, as Ingest holds it (an event in another shopper's session is quarantined):
replaying a loader's events through Ingest applies every one of them."""

import json

from tailor.ingest.service import Ingestor
from tailor.store.memory import MemoryBlobStore, MemoryStateStore
from tailor_lab.datasets import load_diginetica

from tests.helpers.events import to_records


def test_a_diginetica_session_whose_rows_name_two_shoppers_is_the_one_it_names_most(tmp_path):
    views = tmp_path / "views.csv"
    views.write_text("session_id;user_id;item_id;timeframe;eventdate\n"
                     "1;7;5001;1000;2016-05-09\n1;9;5002;2000;2016-05-09\n1;7;5003;3000;2016-05-09\n"
                     "1;NA;5004;4000;2016-05-09\n2;9;5001;1000;2016-05-09\n2;NA;5005;2000;2016-05-09\n")
    events = list(load_diginetica(views))
    assert {e["user_id"] for e in events if e["session_id"] == "dg-1"} == {"dg-u7"}
    assert {e["user_id"] for e in events if e["session_id"] == "dg-2"} == {"dg-u9"}

    blobs = MemoryBlobStore()
    outcome = Ingestor(MemoryStateStore(), blobs, max_workers=1).ingest(to_records(events))
    assert outcome.quarantined == 0, [json.loads(blobs.get(k))["reason"] for k in blobs.list("quarantine/")]
    assert outcome.accepted == len(events)
