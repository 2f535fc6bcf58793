"""The local runtime's Extensions API: a function's internal extension registers at init, gets each invocation's
event, and the invocation ends (its environment serves again) only once the extension asks for the next one, while
the caller has had the response already."""

import json
import sys
import textwrap
import time
import urllib.error
import urllib.request

import pytest

from tailor_local.aws import LocalAws, plan_resources
from tailor_local.runtime import LambdaRuntime
from tailor_local.template import Template

from tests.helpers.threads import at_once

TEMPLATE = textwrap.dedent("""\
    Transform: AWS::Serverless-2016-10-31
    Resources:
      DeferringFunction:
        Type: AWS::Serverless::Function
        Properties: {CodeUri: functions/deferring, Handler: app.lambda_handler, Timeout: 5}
      StuckFunction:
        Type: AWS::Serverless::Function
        Properties: {CodeUri: functions/stuck, Handler: app.lambda_handler, Timeout: 1}
    """)
DEFERRING_APP = textwrap.dedent("""\
    import json
    import os
    import threading
    import urllib.request

    from tailor.after_response import AfterResponse

    after = AfterResponse.register(os.environ.get("AWS_LAMBDA_RUNTIME_API"))
    DONE, RELEASE = [], threading.Event()

    def register_late():
        request = urllib.request.Request(
            f"http://{os.environ['AWS_LAMBDA_RUNTIME_API']}/2020-01-01/extension/register", method="POST",
            data=json.dumps({"events": ["INVOKE"]}).encode(), headers={"Lambda-Extension-Name": "late"})
        try:
            urllib.request.urlopen(request, timeout=5)
        except urllib.error.HTTPError as error:
            return error.code
        return 200

    @after.handler
    def lambda_handler(event, context):
        if event.get("register"):
            return {"status": register_late()}
        hold = event.get("hold")
        after.defer(lambda: (hold and RELEASE.wait(10), DONE.append(event["n"])), "work", n=event["n"])
        return {"n": event["n"], "done_before": list(DONE), "deferring": after.deferring}
    """)
# An extension that serves every invocation until one asks it to be stuck: then it never asks for the next event.
STUCK_APP = textwrap.dedent("""\
    import json
    import os
    import threading
    import time
    import urllib.request

    API = f"http://{os.environ['AWS_LAMBDA_RUNTIME_API']}/2020-01-01/extension"
    registered = urllib.request.urlopen(urllib.request.Request(
        f"{API}/register", method="POST", data=json.dumps({"events": ["INVOKE"]}).encode(),
        headers={"Lambda-Extension-Name": "stuck"}), timeout=5)
    IDENTIFIER = registered.headers["Lambda-Extension-Identifier"]
    STUCK, HANDLED = threading.Event(), threading.Event()

    def serve():
        while True:
            try:
                event = json.load(urllib.request.urlopen(urllib.request.Request(
                    f"{API}/event/next", headers={"Lambda-Extension-Identifier": IDENTIFIER})))
            except OSError:  # the environment is gone
                return
            if event["eventType"] == "SHUTDOWN":
                return
            HANDLED.wait()
            HANDLED.clear()
            if STUCK.is_set():
                return

    threading.Thread(target=serve, daemon=True).start()

    def lambda_handler(event, context):
        if event.get("stuck"):
            STUCK.set()
        time.sleep(event.get("sleep", 0))
        HANDLED.set()
        return {"ok": True, "module": __name__}
    """)


@pytest.fixture
def runtime(tmp_path):
    (tmp_path / "template.yaml").write_text(TEMPLATE)
    for folder, text in (("functions/deferring", DEFERRING_APP), ("functions/stuck", STUCK_APP)):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "app.py").write_text(text)
    template = Template.load(tmp_path / "template.yaml", stack_name="ext")
    aws = LocalAws("http://127.0.0.1:9")
    runtime = LambdaRuntime(template, plan_resources(template, aws.endpoint), aws)
    yield runtime
    runtime.close()


def test_work_after_the_response_ends_the_invocation_and_only_then_frees_the_environment(runtime):
    function = runtime.find("deferring")
    first = function.invoke({"n": 1, "hold": True})
    module = sys.modules[function.handler.__module__]
    assert first.payload == {"n": 1, "done_before": [], "deferring": True}  # answered while its work waits
    assert not function.settled(timeout=0.2) and module.DONE == []
    module.RELEASE.set()
    assert function.settled() and module.DONE == [1]
    # The next invocations find the environment free again: no second one is started, and each one's work is done
    # within it, before the one after.
    for n in (2, 3):
        assert function.invoke({"n": n}).payload["done_before"] == list(range(1, n))
    assert function.settled() and module.DONE == [1, 2, 3] and function.environments == 1


def test_an_invocation_that_comes_while_one_is_finishing_waits_for_its_environment(runtime):
    function = runtime.find("deferring")
    assert function.invoke({"n": 1}).ok
    sys.modules[function.handler.__module__].RELEASE.set()
    for n in range(2, 6):  # each straight after the one before, whose extension may still be at work
        assert function.invoke({"n": n}).ok
    assert function.settled() and function.environments == 1


def test_an_extension_registers_only_during_init(runtime):
    function = runtime.find("deferring")
    assert function.invoke({"register": True}).payload == {"status": 403}


def test_an_environment_whose_extension_never_asks_again_is_discarded(runtime):
    function = runtime.find("stuck")
    assert function.invoke({"stuck": True}).payload["ok"]
    assert function.environments == 1 and not function.settled(timeout=0.5)
    assert function.settled(timeout=5) and function.environments == 0
    assert function.invoke({}).ok and function.environments == 1  # a fresh one


def test_an_environment_started_after_one_was_discarded_takes_a_number_no_live_one_has(runtime):
    function = runtime.find("stuck")
    # Two environments: the first one's invocation ends last, so the next invocation takes it.
    first, second = at_once(lambda: function.invoke({"sleep": 0.6}),
                            lambda: (time.sleep(0.1), function.invoke({"sleep": 0.2}))[1])
    assert first.ok and second.ok and function.settled() and function.environments == 2
    assert function.invoke({"stuck": True}).payload["module"] == first.payload["module"]
    assert function.settled(timeout=5) and function.environments == 1  # the first one discarded
    both = at_once(lambda: function.invoke({"sleep": 0.3}), lambda: function.invoke({"sleep": 0.3}))
    modules = [invocation.payload["module"] for invocation in both]
    assert len(set(modules)) == 2 and second.payload["module"] in modules
    assert all(sys.modules[name].lambda_handler.__module__ == name for name in modules)
    assert sys.modules[function.handler.__module__].lambda_handler is function.handler


def test_closing_the_runtime_ends_the_extensions_threads(runtime):
    function = runtime.find("deferring")
    assert function.invoke({"n": 1}).ok and function.settled()
    after = sys.modules[function.handler.__module__].after
    runtime.close()
    after.thread.join(timeout=5)
    assert not after.thread.is_alive() and not after.deferring



def test_the_local_extensions_api_answers_unknown_callers_and_paths_with_errors():
    from tailor_local.extensions import ExtensionsApi

    with ExtensionsApi() as api:
        for request in (urllib.request.Request(f"http://{api.address}/2020-01-01/extension/event/next",
                                               headers={"Lambda-Extension-Identifier": "someone"}),
                        urllib.request.Request(f"http://{api.address}/2020-01-01/runtime/invocation/next")):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request, timeout=5)
            assert refused.value.code in (403, 404) and json.loads(refused.value.read())["errorType"]
