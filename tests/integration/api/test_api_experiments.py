"""Experiments through the API on the local stack: created, started, served, attributed, reported and stopped; refused
requests name their field."""

import json
import threading
import time
from datetime import UTC, datetime

import pytest

from tailor.experiments.feed_ids import INTERLEAVED, parse_feed_id

from tests.helpers.api import put_and_wait
from tests.helpers.events import load_event

EXPERIMENT = {"experiment_id": "exp-api", "name": "Baseline against the blend", "surface": "feed", "layer": "api",
              "variants": [{"name": "control", "strategy": "baseline", "share": 0.5},
                           {"name": "blend", "strategy": "default", "share": 0.5}], "days": 7}


def test_refused_experiments_name_their_field(api):
    answer = api.post("/experiments", {**EXPERIMENT, "surface": "homepage"})
    assert answer.status_code == 422 and "body surface:" in answer.get_json()["message"]
    answer = api.post("/experiments", {**EXPERIMENT, "variants": [{"name": "a", "strategy": "mystery"},
                                                                  {"name": "b", "strategy": "default"}]})
    assert answer.status_code == 422 and answer.get_json()["message"].startswith("variants[0].strategy:")
    answer = api.post("/experiments", {**EXPERIMENT, "experiment_id": "Not An Id"})
    assert answer.status_code == 422 and answer.get_json()["message"].startswith("experiment_id:")
    answer = api.post("/experiments", {**EXPERIMENT, "holdout": 2})
    assert answer.status_code == 422 and "body holdout:" in answer.get_json()["message"]
    answer = api.post("/experiments", {**EXPERIMENT, "planned_units": 1})
    assert answer.status_code == 422 and "body planned_units:" in answer.get_json()["message"]
    planned = api.post("/experiments", {**EXPERIMENT, "experiment_id": "exp-planned", "planned_units": 800})
    assert planned.status_code == 201 and planned.get_json()["planned_units"] == 800
    assert api.get("/experiments/exp-planned/report").get_json()["tuning_units"] == 800
    answer = api.post("/experiments", "not an object")
    assert answer.status_code == 422 and "body" in answer.get_json()["message"]
    answer = api.post("/experiments", [{**EXPERIMENT, "experiment_id": "exp-in-an-array"}])
    assert answer.status_code == 422 and "body: must be a JSON object, not an array" in answer.get_json()["message"]
    assert api.get("/experiments/exp-in-an-array").status_code == 404
    for change, where in (({"traffic": True}, "body traffic:"), ({"days": "7"}, "body days:"),
                          ({"planned_units": "100"}, "body planned_units:"),
                          ({"variants": [{"name": "a", "strategy": "baseline", "share": "0.5"},
                                         {"name": "b", "strategy": "default", "share": 0.5}]}, "body variants.0.share:")):
        answer = api.post("/experiments", {**EXPERIMENT, **change})
        assert answer.status_code == 422 and where in answer.get_json()["message"], (change, answer.get_json())
    answer = api.post("/experiments", {**EXPERIMENT, "surface": "related",
                                       "variants": [{"name": "a", "strategy": "default"},
                                                    {"name": "b", "strategy": "adaptive"}]})
    assert answer.status_code == 422 and answer.get_json()["message"].startswith("variants[1].strategy:")
    answer = api.post("/experiments", {**EXPERIMENT, "experiment_id": ""})
    assert answer.status_code == 422 and answer.get_json()["message"].startswith("experiment_id:")
    answer = api.post("/experiments", {**EXPERIMENT, "start": "2099-12-01T00:00:00Z", "days": 366})
    assert answer.status_code == 422 and answer.get_json()["message"].startswith("days:")
    assert api.post("/experiments/exp-none/start", {}).status_code == 404
    assert api.get("/experiments/exp-none/report").status_code == 404


def test_an_experiment_from_creation_to_its_report_and_console(api):
    created = api.post("/experiments", EXPERIMENT)
    assert created.status_code == 201, created.get_data(as_text=True)
    assert created.get_json()["status"] == "draft" and "salt" not in created.get_json()
    assert api.post("/experiments", EXPERIMENT).status_code == 409
    started = api.post("/experiments/exp-api/start", {})
    assert started.status_code == 200 and started.get_json()["status"] == "running"
    assert started.get_json()["slot"] == [0.0, 1.0]
    listed = api.get("/experiments").get_json()
    assert "exp-api" in [e["experiment_id"] for e in listed["experiments"]]
    assert {"baseline", "default"} <= set(listed["strategies"])

    # Every shopper's feed is served in their variant, the same on every request, and logged.
    served = {}
    for n in range(16):
        user = f"exp-shopper-{n}"
        first = api.get(f"/users/{user}/feed?n=5").get_json()
        again = api.get(f"/users/{user}/feed?n=5").get_json()
        feed = parse_feed_id(first["feed_id"])
        assert feed.experiment_id == "exp-api" and feed.unit_kind == "u"
        assert parse_feed_id(again["feed_id"]).variant == feed.variant
        served[user] = (first["feed_id"], [item["item_id"] for item in first["items"]])
    variants = {parse_feed_id(feed_id).variant for feed_id, _ in served.values()}
    assert variants == {"control", "blend"}
    exposures = api.stack.aws.client("dynamodb")
    table = api.function.environment["EXPOSURES_TABLE"]
    user, (feed_id, items) = next(iter(served.items()))
    logged = exposures.get_item(TableName=table, Key={"feed_id": {"S": feed_id}})["Item"]
    assert [i["S"] for i in logged["items"]["L"]] == items
    assert all(float(p["N"]) == 1.0 for p in logged["probabilities"]["L"]) and logged["unit"]["S"] == user
    assert logged["ranker"]["S"].startswith("ranker:")  # the version that scored it, beside the strategy's name

    # Shoppers see their lists, click some and buy: Ingest attributes them to the variants.
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    events = []
    for i, (user, (feed_id, items)) in enumerate(served.items()):
        base = {"user_id": user, "session_id": f"{user}-s", "timestamp": now, "feed_id": feed_id}
        events.append({**base, "event_id": f"{user}-imp", "event_type": "impression", "item_ids": items})
        if i % 2 == 0 and items:
            events.append({**base, "event_id": f"{user}-click", "event_type": "click", "item_id": items[0],
                           "position": 0})
            events.append({"user_id": user, "session_id": f"{user}-s", "timestamp": now, "event_id": f"{user}-buy",
                           "event_type": "purchase", "item_id": items[0], "price": 25.0, "quantity": 1})
    put_and_wait(api.stack, load_event("ingest-kinesis-batch.json")["Records"][:1], events)  # one replayed, too

    report = api.get("/experiments/exp-api/report").get_json()
    assert sum(report["units"].values()) == len(served)
    assert sum(sum(days) for days in report["exposures"]["impressions"].values()) == len(served)
    assert report["metrics"]["ctr"]["values"]["control"]["value"] is not None
    written = api.stack.runtime.find("ReportExperimentsFunction").invoke(
        load_event("report-experiments-schedule.json"))
    assert written.ok, written.error
    assert "exp-api" in written.payload["written"]
    stored = api.get("/experiments/exp-api/report").get_json()
    assert stored["units"] == report["units"] and stored["as_of"]

    view = api.get("/console/view?experiment=exp-api")
    assert view.status_code == 200 and view.content_type.startswith("text/html")
    text = view.get_data(as_text=True)
    assert "exp-api" in text and "<svg" in text and "lift-ctr-blend" in text
    page = api.get("/console?experiment=exp-api").get_data(as_text=True)  # the page fetches the view with the key
    assert "id='key-form'" in page and "/console/view" in page and "exp-api" not in page

    stopped = api.post("/experiments/exp-api/stop", {})
    assert stopped.status_code == 200 and stopped.get_json()["status"] == "stopped"
    assert parse_feed_id(api.get("/users/exp-shopper-0/feed?n=5").get_json()["feed_id"]) is None
    assert api.post("/experiments/exp-api/stop", {}).status_code == 409


def test_an_exposure_is_logged_once_the_response_has_gone(api, monkeypatch):
    """The function registers an extension with its environment's Extensions API (tailor.after_response; the local
    runtime serves one, as Lambda does): the feed answers without waiting for its exposure log, which is written
    before the invocation ends."""
    assert api.module.after_response.deferring
    experiment = {**EXPERIMENT, "experiment_id": "exp-after", "layer": "after-response"}
    assert api.post("/experiments", experiment).status_code == 201
    assert api.post("/experiments/exp-after/start", {}).status_code == 200
    store, table = api.module.experiment_store, api.function.environment["EXPOSURES_TABLE"]
    write, release, written = store.log_exposure, threading.Event(), []

    def held_write(feed_id, *args, **kwargs):  # as slow as the test wants: until it has seen the answer
        release.wait(timeout=10)
        write(feed_id, *args, **kwargs)
        written.append(feed_id)

    def logged(feed_id):
        return api.stack.aws.client("dynamodb").get_item(TableName=table, Key={"feed_id": {"S": feed_id}}).get("Item")

    try:
        with monkeypatch.context() as patch:
            patch.setattr(store, "log_exposure", held_write)
            feed_id = api.get("/users/after-shopper/feed?n=5", settle=False).get_json()["feed_id"]
            assert parse_feed_id(feed_id).experiment_id == "exp-after"
            assert written == [] and logged(feed_id) is None and not api.function.settled(timeout=0.2)
            release.set()
            assert api.function.settled() and written == [feed_id]
            assert logged(feed_id)["unit"]["S"] == "after-shopper"
        # The shopper sent no event, so Tailor keeps no row of theirs; their DELETE still takes the list they were shown.
        status, requested = api.invoke_file("api-delete-user.json", path_parameters={"user_id": "after-shopper"})
        assert status == 202 and requested["status"] in ("pending", "done")
        deadline = time.monotonic() + 60
        while requested["status"] != "done" and time.monotonic() < deadline:
            time.sleep(0.2)
            _, requested = api.invoke_file("api-get-erasure.json", path_parameters={"user_id": "after-shopper"})
        assert requested["status"] == "done" and requested["removed"]["exposures"] == 1
        assert logged(feed_id) is None
    finally:
        release.set()
        assert api.post("/experiments/exp-after/stop", {}).status_code == 200


@pytest.mark.parametrize("name", ["api-experiments-3-list.json", "api-experiments-5-console.json"])
def test_the_experiment_samples_are_answered(api, name):
    invocation = api.function.invoke(load_event(name))
    assert invocation.ok, invocation.error
    assert invocation.payload["statusCode"] == 200
    if name.endswith("list.json"):
        assert "experiments" in json.loads(invocation.payload["body"])


def test_an_interleaving_experiment_from_creation_to_its_report(api):
    body = {"experiment_id": "exp-il", "design": "interleaving", "surface": "feed", "layer": "interleaving",
            "variants": [{"name": "shop", "strategy": "baseline"}, {"name": "blend", "strategy": "default"}], "days": 7}
    created = api.post("/experiments", body)
    assert created.status_code == 201 and created.get_json()["design"] == "interleaving"
    refused = api.post("/experiments", {**body, "experiment_id": "exp-il3", "variants": [*body["variants"], {
        "name": "third", "strategy": "default"}]})
    assert refused.status_code == 422 and refused.get_json()["message"].startswith("variants:")
    assert api.post("/experiments/exp-il/start", {}).status_code == 200
    try:
        served = {}
        for n in range(12):
            user = f"il-shopper-{n}"
            answer = api.get(f"/users/{user}/feed?n=6").get_json()
            feed = parse_feed_id(answer["feed_id"])
            assert (feed.experiment_id, feed.variant, len(feed.credits)) == ("exp-il", INTERLEAVED, len(answer["items"]))
            served[user] = (answer["feed_id"], [item["item_id"] for item in answer["items"]], feed.credits)
        table = api.function.environment["EXPOSURES_TABLE"]
        feed_id, items, _ = next(iter(served.values()))
        logged = api.stack.aws.client("dynamodb").get_item(TableName=table, Key={"feed_id": {"S": feed_id}})["Item"]
        assert {t["S"] for t in logged["teams"]["L"]} <= {"A", "B"} and len(logged["teams"]["L"]) == len(items)
        assert logged["variant"]["S"] == INTERLEAVED

        # Each shopper clicks the first item and, every other one, the second: each earns what its slot's does.
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        events, credits = [], []
        for i, (user, (feed_id, items, earned)) in enumerate(served.items()):
            base = {"user_id": user, "session_id": f"{user}-s", "timestamp": now, "feed_id": feed_id}
            events.append({**base, "event_id": f"{user}-imp", "event_type": "impression", "item_ids": items})
            clicked = [0, 1] if i % 2 else [0]
            events += [{**base, "event_id": f"{user}-click-{p}", "event_type": "click", "item_id": items[p],
                        "position": p} for p in clicked]
            credits.append(sum(earned[p] for p in clicked))
        put_and_wait(api.stack, load_event("ingest-kinesis-batch.json")["Records"][:1], events)

        report = api.get("/experiments/exp-il/report").get_json()
        assert report["design"] == "interleaving" and report["units"] == {INTERLEAVED: 12}
        found = report["interleaving"]
        assert found["clicks"] == 18 and found["mean"] == pytest.approx(sum(credits) / 12)
        text = api.get("/console/view?experiment=exp-il").get_data(as_text=True)
        assert "credit-interleaved" in text and "shop (baseline)" in text
    finally:
        assert api.post("/experiments/exp-il/stop", {}).status_code == 200
    assert parse_feed_id(api.get("/users/il-shopper-0/feed?n=6").get_json()["feed_id"]) is None
