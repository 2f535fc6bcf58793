"""End to end on the local stack: records on Kinesis become DynamoDB state through the real Ingest function, and the
`tailor` command shows it."""

import json
import shutil
import subprocess
import sys

import pytest

from tailor.events import EventError, parse_event
from tailor_cli.main import main
from tailor_lab.simulator import simulate
from tailor_local.stack import LocalStack, state_path

from tests.helpers import ROOT
from tests.helpers.api import PROCESSING_TIMEOUT_S, put_and_wait, repo_copy
from tests.helpers.events import load_event
from tests.helpers.local_up import LocalUp

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not (ROOT / "functions" / "ingest" / "app.py").is_file(),
                       reason="functions/ingest/app.py is not there yet"),
]


@pytest.fixture(scope="module")
def replayed(tmp_path_factory):
    """A running stack that has processed the sample Ingest batch's records and a small simulated crowd."""
    repo = tmp_path_factory.mktemp("repo")
    template = repo_copy(repo)
    sample_records = load_event("ingest-kinesis-batch.json")["Records"]
    simulated = simulate(shoppers=6, days=0.1, seed=3).events
    with open(repo / "functions.log", "w") as log, LocalStack(template, port=0, stack_name="tailor-e2e",
                                                                   function_log=log) as stack:
        stack.write_state(state_path(template))
        payloads = put_and_wait(stack, sample_records, simulated)
        stack.write_state(state_path(template))
        yield stack, template, payloads, simulated


def valid_events(payloads):
    events = []
    for payload in payloads:
        try:
            events.append(parse_event(payload))
        except EventError:
            pass
    return events


def test_every_valid_event_reaches_the_shopper_session_and_item_state(replayed):
    stack, _, sample_payloads, simulated = replayed
    handle = stack.handle
    events = valid_events(sample_payloads) + [parse_event(e) for e in simulated]
    for user in {e.user_id for e in events}:
        assert handle.get_row("ShoppersTable", {"user_id": user}) is not None, user
    for session in {e.session_id for e in events}:
        assert handle.get_row("SessionsTable", {"session_id": session}) is not None, session
    for item in {e.item_id for e in events if getattr(e, "item_id", None)}:
        assert handle.get_row("ItemsTable", {"item_id": item}) is not None, item
    assert any(True for _ in handle.objects("DataBucket", "archive/"))


def test_malformed_records_land_in_the_quarantine_and_nothing_fails(replayed):
    stack, _, sample_payloads, _ = replayed
    handle = stack.handle
    invalid = len(sample_payloads) - len(valid_events(sample_payloads))
    assert invalid > 0
    quarantined = [json.loads(handle.read_object("DataBucket", o["Key"]))
                   for o in handle.objects("DataBucket", "quarantine/")]
    assert len(quarantined) == invalid and all(q["reason"] for q in quarantined)
    assert handle.queue_depth("IngestFailureQueue") == 0
    assert sum(s["records_discarded"] for m in stack.progress().values() for s in m["shards"].values()) == 0


def test_the_cli_shows_a_shopper_with_sessions_and_the_quarantine(replayed, capsys):
    stack, template, _, simulated = replayed
    user = simulated[0]["user_id"]
    assert main(["--template", str(template), "state", "user", user]) == 0
    captured = capsys.readouterr()
    shown, _ = json.JSONDecoder().raw_decode(captured.out)
    assert shown["user_id"] == user
    assert f"session(s) of {user}" in captured.err and simulated[0]["session_id"] in captured.out

    assert main(["--template", str(template), "state", "session", simulated[0]["session_id"]]) == 0
    assert main(["--template", str(template), "state", "user", "nobody-at-all"]) == 1
    capsys.readouterr()
    assert main(["--template", str(template), "quarantine"]) == 0
    assert "unknown event type" in capsys.readouterr().out


def test_the_cli_invokes_a_function_against_the_running_stack(replayed, capsys):
    _, template, _, _ = replayed
    event = template.parent / "events" / "ingest-kinesis-batch.json"
    assert main(["--template", str(template), "invoke", "ingest", "-e", str(event)]) == 0
    assert json.loads(capsys.readouterr().out) == {"batchItemFailures": []}


def test_the_cli_replays_into_the_running_stack_and_waits_for_it(replayed, capsys):
    stack, template, _, _ = replayed
    before = stack.handle.row_counts()["ShoppersTable"]
    stack.write_state(state_path(template), every_s=0.2)  # replay follows progress through the state file
    assert main(["--template", str(template), "replay", "sim", "--shoppers", "4", "--days", "0.05",
                 "--seed", "21"]) == 0
    assert stack.handle.row_counts()["ShoppersTable"] == before + 4
    assert " state user " in capsys.readouterr().err


def test_tailor_local_up_replays_stays_up_and_stops_on_ctrl_c(tmp_path):
    template = repo_copy(tmp_path / "repo")
    tailor = [sys.executable, "-m", "tailor_cli", "--template", str(template)]
    up = LocalUp(template, "--port", "0", "--api-port", "0", "--shoppers", "3", "--days", "0.05")
    try:
        said = up.wait_until_up(PROCESSING_TIMEOUT_S)
        text = "\n".join(said)
        assert "The local stack is up" in text, text
        assert "rows:" in text and "No personas yet: too few shoppers (3 shoppers with events)" in text
        # Profiles show an LTV from the start: the shipped default model scored every replayed shopper.
        assert "Lifetime values: 3 shoppers scored (ltv:" in text, text
        phases = next(line for line in said if line.startswith("Phases: "))
        for phase in ("local AWS", "resources", "replay put", "drain", "persona rebuild", "LTV rebuild", "API ready"):
            assert f"{phase} " in phases, phases

        # The hints run as printed, from where the stack was started.
        hint = next(line for line in said if " state user " in line).strip().split("  ")[0]
        shown = subprocess.run(hint, shell=True, capture_output=True, text=True, timeout=60)
        assert shown.returncode == 0 and json.JSONDecoder().raw_decode(shown.stdout)[0]["user_id"], shown
        aws = next(line for line in said if " aws --region " in line).strip().split("  ")[0]
        if shutil.which("aws"):
            assert subprocess.run(aws, shell=True, capture_output=True, timeout=60).returncode == 0, aws

        tables = subprocess.run([*tailor, "state", "tables"], capture_output=True, text=True, timeout=60)
        assert tables.returncode == 0, tables.stderr
        shoppers = next(line for line in tables.stdout.splitlines() if line.startswith("ShoppersTable"))
        assert shoppers.split()[-2] == "3"

        # A catalog file goes to the running stack's API, and the item's row holds it.
        listing = tmp_path / "catalog.csv"
        listing.write_text("item_id,name,category,price,available\nnew-lamp,Brass lamp,home_decor,49,true\n")
        loaded = subprocess.run([*tailor, "catalog", "load", str(listing)], capture_output=True, text=True,
                                timeout=120)
        assert loaded.returncode == 0, loaded.stderr
        assert json.loads(loaded.stdout) == {"entries": 1, "requests": 1, "sent": 1, "written": 1, "stale": 0,
                                             "refused": None}
        item = subprocess.run([*tailor, "state", "item", "new-lamp"], capture_output=True, text=True, timeout=60)
        assert item.returncode == 0 and '"Brass lamp"' in item.stdout, item
    finally:
        up.stop()  # how fast is measured by the reliability benchmark; here only that Ctrl-C stops it cleanly
    assert up.process.returncode == 130
    assert not state_path(template).exists()
    log = (state_path(template).parent / "functions.log").read_text()
    assert "REPORT RequestId: " in log and "<html" not in log.lower() and "cannot use AppConfig" not in log
