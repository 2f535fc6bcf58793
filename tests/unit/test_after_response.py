"""Work deferred until the response has gone: run by the internal extension once the handler is done and before the
extension lets the invocation end; at once where there is no extension."""

import logging
import time

import pytest

from tailor.after_response import EXTENSION_NAME, AfterResponse
from tailor_local.extensions import ExtensionsApi


def handle(after: AfterResponse, api, work, *, seconds: float = 30.0):
    """One invocation as Lambda runs it: the event to the extension, the handler's work, its return."""
    with after.invocation(api.invoke(seconds=seconds)):
        return work()


def test_deferred_work_runs_after_the_handler_returns_and_before_the_invocation_ends():
    done: list[tuple[int, float]] = []

    def slow_write(n):
        time.sleep(0.2)
        done.append((n, time.monotonic()))

    with ExtensionsApi() as api:
        after = AfterResponse.register(api.address)
        assert after.deferring and api.registrations == [{"name": EXTENSION_NAME, "events": ["INVOKE"]}]
        for n in range(1, 4):
            def work(n=n):
                after.defer(lambda: slow_write(n), "a slow write", n=n)
                return f"response {n}"

            started = time.monotonic()
            assert handle(after, api, work) == f"response {n}"
            answered = time.monotonic()
            assert answered - started < 0.2 and [d for d, _ in done] == list(range(1, n))  # not waited for
            assert api.ended(n)
            # The invocation ended only once its write was done, and that write ran in it, not in the next one.
            assert [d for d, _ in done] == list(range(1, n + 1)) and api.asked[n] >= done[-1][1] >= answered


def test_a_failing_task_is_logged_and_the_next_ones_and_invocations_go_on(caplog):
    ran = []
    with ExtensionsApi() as api:
        after = AfterResponse.register(api.address, settle_seconds=0)

        def work():
            after.defer(lambda: 1 / 0, "exposure log", feed_id="f-1")
            after.defer(lambda: ran.append("second"), "exposure log", feed_id="f-2")

        with caplog.at_level(logging.ERROR, logger="tailor.after_response"):
            handle(after, api, work)
            assert api.ended(1)
        assert ran == ["second"]
        (failed,) = [r for r in caplog.records if r.getMessage() == "exposure log failed"]
        assert failed.feed_id == "f-1" and failed.exc_info[0] is ZeroDivisionError
        handle(after, api, lambda: after.defer(lambda: ran.append("next invocation"), "a write"))
        assert api.ended(2) and ran == ["second", "next invocation"]


def test_a_handler_that_raises_still_lets_its_work_run_and_the_invocation_end():
    ran = []
    with ExtensionsApi() as api:
        after = AfterResponse.register(api.address, settle_seconds=0)

        def work():
            after.defer(lambda: ran.append("logged"), "a write")
            raise RuntimeError("the handler failed")

        with pytest.raises(RuntimeError):
            handle(after, api, work)
        assert api.ended(1, timeout=2) and ran == ["logged"]


def test_work_left_as_the_deadline_nears_is_logged_and_not_run(caplog):
    ran = []
    with ExtensionsApi() as api:
        after = AfterResponse.register(api.address, settle_seconds=0, margin_seconds=0.5)

        def work():
            after.defer(lambda: (time.sleep(0.6), ran.append(1)), "a write", n=1)
            after.defer(lambda: ran.append(2), "a write", n=2)

        with caplog.at_level(logging.ERROR, logger="tailor.after_response"):
            handle(after, api, work, seconds=1.0)
            assert api.ended(1)
        assert ran == [1]
        (left,) = [r for r in caplog.records if "deadline" in r.getMessage()]
        assert left.tasks_left == 1 and left.n == 2


def test_a_handler_that_never_says_it_is_done_does_not_hold_the_invocation_past_its_deadline():
    with ExtensionsApi() as api:
        assert AfterResponse.register(api.address, settle_seconds=0, margin_seconds=0.2).deferring
        api.invoke(seconds=0.5)  # a handler outside `invocation()`
        started = time.monotonic()
        assert api.ended(1, timeout=2) and time.monotonic() - started < 0.5


def test_work_of_a_handler_that_ends_after_its_extension_stopped_waiting_runs_with_the_next_and_none_lags(caplog):
    """An invocation whose handler ends past its deadline's margin: its work runs at the end of the next one (said
    so), and every later invocation's work runs within it, not one invocation behind."""
    ran = []
    with ExtensionsApi() as api, caplog.at_level(logging.WARNING, logger="tailor.after_response"):
        after = AfterResponse.register(api.address, settle_seconds=0, margin_seconds=0.5)

        def slow():
            after.defer(lambda: ran.append(1), "a write", n=1)
            time.sleep(0.7)  # past the 0.5 s its extension waits, within its 1 s

        handle(after, api, slow, seconds=1.0)
        assert api.ended(1) and ran == []
        for n in (2, 3, 4):
            handle(after, api, lambda n=n: after.defer(lambda: ran.append(n), "a write", n=n))
            assert api.ended(n) and ran == list(range(1, n + 1))
    assert [r for r in caplog.records if "waits for the next invocation" in r.getMessage()]
    assert [r for r in caplog.records if "ran in a later one" in r.getMessage()]


def test_an_event_it_cannot_read_is_logged_and_the_extension_serves_the_next_invocation(caplog):
    ran = []
    with ExtensionsApi() as api, caplog.at_level(logging.ERROR, logger="tailor.after_response"):
        after = AfterResponse.register(api.address, settle_seconds=0)
        api.send({"eventType": "INVOKE", "deadlineMs": "soon"})
        assert api.ended(1)
        handle(after, api, lambda: after.defer(lambda: ran.append("written"), "a write"))
        assert api.ended(2) and ran == ["written"]
    assert any("failed to serve an event" in r.getMessage() for r in caplog.records)


def test_without_the_runtime_api_work_runs_at_once():
    after = AfterResponse.register(None)
    ran = []
    with after.invocation("r-1"):
        after.defer(lambda: ran.append("now"), "a write")
        assert ran == ["now"] and not after.deferring


def test_a_refused_registration_runs_work_at_once_and_says_so(caplog):
    ran = []
    with ExtensionsApi(refuse=True) as api, caplog.at_level(logging.ERROR, logger="tailor.after_response"):
        after = AfterResponse.register(api.address)
        after.defer(lambda: ran.append("now"), "a write")
    assert ran == ["now"] and not after.deferring
    assert any("not registered" in r.getMessage() for r in caplog.records)


def test_when_the_environment_shuts_down_the_extension_ends_and_work_runs_at_once():
    ran = []
    api = ExtensionsApi()
    after = AfterResponse.register(api.address, settle_seconds=0)
    with after.invocation(api.invoke()):
        after.defer(lambda: ran.append("in the invocation"), "a write")
    assert api.ended(1)
    api.close()  # SHUTDOWN to the waiting extension
    after.thread.join(timeout=5)
    assert not after.thread.is_alive() and not after.deferring
    after.defer(lambda: ran.append("at once"), "a write")
    assert ran == ["in the invocation", "at once"]


def test_an_extension_the_api_stops_answering_hands_back_its_work_and_stops(caplog):
    after = AfterResponse("127.0.0.1:9", "extension-1", settle_seconds=0)  # nothing listens there
    after._current = "r-1"
    ran = []
    after.defer(lambda: ran.append("waiting"), "a write")
    with caplog.at_level(logging.ERROR, logger="tailor.after_response"):
        after._serve()  # returns once it stops
    assert ran == ["waiting"] and not after.deferring
    assert [r for r in caplog.records if "stopped" in r.getMessage()]
