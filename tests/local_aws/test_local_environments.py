"""Execution environments in processes of their own: apart from this process, stopped when they time out or die."""

import os
import sys
import textwrap

import pytest

from tailor_local.runtime import LocalFunction

APP = textwrap.dedent("""\
    import os
    import time

    CALLS = []

    def handler(event, context):
        CALLS.append(event)
        if event.get("sleep"):
            time.sleep(event["sleep"])
        if event.get("exit"):
            os._exit(3)
        return {"pid": os.getpid(), "calls": len(CALLS), "colour": os.environ["COLOUR"]}
    """)


@pytest.fixture
def function(tmp_path):
    (tmp_path / "fn").mkdir()
    (tmp_path / "fn" / "app.py").write_text(APP)
    function = LocalFunction(logical_id="Fn", name="fn", arn="arn:aws:lambda:us-east-1:123456789012:function:fn",
                             handler_path="app.handler", code_dir=tmp_path / "fn", environment={"COLOUR": "teal"},
                             timeout_s=2.0, isolation="process")
    yield function
    function.close()


def test_the_handler_runs_in_a_process_of_its_own_that_keeps_its_state(function):
    first, second = function.invoke({}), function.invoke({})
    assert first.ok and second.ok, (first.error, second.error)
    assert first.payload["pid"] == second.payload["pid"] != os.getpid()
    assert (first.payload["calls"], second.payload["calls"]) == (1, 2)  # one warm environment
    assert first.payload["colour"] == "teal" and "COLOUR" not in os.environ and "app" not in sys.modules


def test_an_invocation_past_its_timeout_is_stopped_and_the_next_one_starts_afresh(function):
    function.timeout_s = 0.3
    late = function.invoke({"sleep": 5})
    assert late.error["errorType"] == "Sandbox.Timedout" and late.duration_ms < 3000
    after = function.invoke({})
    assert after.ok and after.payload["calls"] == 1 and function.environments == 1


def test_an_environment_whose_process_exits_is_replaced(function):
    before = function.invoke({})
    died = function.invoke({"exit": True})
    assert died.error["errorType"] == "Runtime.ExitError" and "status 3" in died.error["errorMessage"]
    after = function.invoke({})
    assert after.ok and after.payload["pid"] != before.payload["pid"] and after.payload["calls"] == 1


def test_closing_the_function_stops_its_processes(function):
    pid = function.invoke({}).payload["pid"]
    function.close()
    with pytest.raises(ProcessLookupError):  # close() waits for the process, so it is gone, not a zombie
        os.kill(pid, 0)


def test_isolation_is_thread_or_process(tmp_path):
    with pytest.raises(ValueError, match="isolation"):
        LocalFunction(logical_id="Fn", name="fn", arn="arn", handler_path="app.handler", isolation="vm")
