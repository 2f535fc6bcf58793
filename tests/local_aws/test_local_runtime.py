"""The in-process Lambda runtime: handlers from CodeUri with their layers and environment, each function kept apart."""

import io
import json
import os
import sys
import textwrap
import threading
import time

import pytest

from tailor_local.aws import LocalAws, plan_resources
from tailor_local.runtime import LambdaRuntime, LocalFunction
from tailor_local.template import Template, TemplateError

from tests.helpers.threads import at_once

TEMPLATE = textwrap.dedent("""\
    Transform: AWS::Serverless-2016-10-31
    Globals:
      Function:
        MemorySize: 256
        Layers: [!Ref SharedLayer, !Ref BuiltLayer, arn:aws:lambda:us-east-1:999999999999:layer:elsewhere:3]
        Environment:
          Variables: {TABLE: !Ref Table, GREETING: hello}
    Resources:
      Table:
        Type: AWS::DynamoDB::Table
      SharedLayer:
        Type: AWS::Serverless::LayerVersion
        Properties: {ContentUri: layers/shared}
      BuiltLayer:
        Type: AWS::Serverless::LayerVersion
        Properties: {ContentUri: layers/built}
      FirstFunction:
        Type: AWS::Serverless::Function
        Properties:
          CodeUri: functions/first
          Handler: app.lambda_handler
          Timeout: 5
          Environment:
            Variables: {GREETING: hi}
      SecondFunction:
        Type: AWS::Serverless::Function
        Properties: {CodeUri: functions/second, Handler: app.lambda_handler}
      BrokenFunction:
        Type: AWS::Serverless::Function
        Properties: {CodeUri: functions/broken, Handler: app.lambda_handler}
      RoutesFunction:
        Type: AWS::Serverless::Function
        Properties: {CodeUri: functions/routes, Handler: app.lambda_handler}
    """)

FIRST_APP = textwrap.dedent("""\
    import os

    import helper
    import shared_lib

    def lambda_handler(event, context):
        if event.get("together"):  # meet the other invocation, so both are running at once
            shared_lib.MEETING.wait()
            print(f"first says {os.environ['GREETING']}")
            return {"greeting": os.environ["GREETING"], "module": __name__}
        if event.get("fail"):
            raise ValueError("asked to fail")
        if event.get("unserializable"):
            return {"value": object()}
        return {
            "helper": helper.NAME,
            "shared": shared_lib.VALUE,
            "table": os.environ["TABLE"],
            "greeting": os.environ["GREETING"],
            "endpoint": os.environ["AWS_ENDPOINT_URL"],
            "function_name": context.function_name,
            "memory": context.memory_limit_in_mb,
            "arn": context.invoked_function_arn,
            "remaining_ms": context.get_remaining_time_in_millis(),
            "request_id": context.aws_request_id,
            "event": event,
        }
    """)
SECOND_APP = textwrap.dedent("""\
    import os

    import helper
    import shared_lib

    def lambda_handler(event, context):
        if event.get("together"):
            shared_lib.MEETING.wait()
            print(f"second says {os.environ['GREETING']}")
            return {"greeting": os.environ["GREETING"]}
        if event.get("late"):
            import late  # imported by the handler, not at init: found in its folder all the same
            return {"late": late.NAME}
        print("second says hello")
        return {"helper": helper.NAME}
    """)
# A REST resolver whose route reads the current event once another invocation has set its own.
ROUTES_APP = textwrap.dedent("""\
    import shared_lib
    from aws_lambda_powertools.event_handler import APIGatewayRestResolver

    app = APIGatewayRestResolver()

    @app.get("/echo")
    def echo():
        shared_lib.MEETING.wait()
        return {"q": app.current_event.get_query_string_value("q")}

    def lambda_handler(event, context):
        return app.resolve(event, context)
    """)


@pytest.fixture
def runtime(tmp_path):
    (tmp_path / "template.yaml").write_text(TEMPLATE)
    for folder, files in {
        "functions/first": {"app.py": FIRST_APP, "helper.py": 'NAME = "first helper"\n'},
        "functions/second": {"app.py": SECOND_APP, "helper.py": 'NAME = "second helper"\n',
                             "late.py": 'NAME = "late"\n'},
        "functions/broken": {"app.py": "import not_a_module_anywhere\n"},
        "functions/routes": {"app.py": ROUTES_APP},
        "layers/shared/python": {"shared_lib.py": 'import threading\nVALUE = "from the layer"\n'
                                                  'MEETING = threading.Barrier(2, timeout=10)\n'},
        "layers/built": {"Makefile": "build-BuiltLayer:\n"},  # its python/ exists only after a build
    }.items():
        (tmp_path / folder).mkdir(parents=True)
        for name, text in files.items():
            (tmp_path / folder / name).write_text(text)
    template = Template.load(tmp_path / "template.yaml", stack_name="rt")
    aws = LocalAws("http://127.0.0.1:9")
    runtime = LambdaRuntime(template, plan_resources(template, aws.endpoint), aws)
    yield runtime
    runtime.close()


@pytest.fixture(params=["thread", "process"])
def either_runtime(runtime, request):
    """The runtime with every function's environments on threads of this process, or in processes of their own."""
    for function in runtime.functions.values():
        function.isolation = request.param
    return runtime


def test_the_handler_runs_with_its_code_layers_environment_and_context(either_runtime):
    runtime = either_runtime
    invocation = runtime.find("FirstFunction").invoke({"hello": "world"})
    assert invocation.ok, invocation.error
    answer = invocation.payload
    assert answer["helper"] == "first helper" and answer["shared"] == "from the layer"
    assert answer["table"] == "rt-Table" and answer["greeting"] == "hi"
    assert answer["endpoint"] == "http://127.0.0.1:9"
    assert answer["function_name"] == "rt-FirstFunction" and answer["memory"] == 256
    assert answer["arn"] == "arn:aws:lambda:us-east-1:123456789012:function:rt-FirstFunction"
    assert 0 < answer["remaining_ms"] <= 5000
    assert answer["request_id"] == invocation.request_id and answer["event"] == {"hello": "world"}


def test_layers_that_exist_only_after_a_build_or_elsewhere_add_nothing(runtime, tmp_path):
    assert runtime.find("first").layer_dirs == [tmp_path / "layers" / "shared" / "python"]


def test_functions_with_the_same_module_names_stay_apart(runtime):
    first = runtime.find("first").invoke({})
    second = runtime.find("second").invoke({})
    again = runtime.find("first").invoke({})
    assert (first.payload["helper"], second.payload["helper"], again.payload["helper"]) == (
        "first helper", "second helper", "first helper")
    assert "app" not in sys.modules and "helper" not in sys.modules


def test_the_process_environment_is_left_as_it_was(runtime):
    before = dict(os.environ)
    path_before = list(sys.path)
    runtime.find("first").invoke({})
    assert dict(os.environ) == before and sys.path == path_before
    assert "AWS_LAMBDA_FUNCTION_NAME" not in os.environ and "GREETING" not in os.environ


def test_errors_are_reported_as_lambda_reports_them(either_runtime):
    runtime = either_runtime
    failed = runtime.find("first").invoke({"fail": True})
    assert not failed.ok and failed.payload is None
    assert failed.error["errorType"] == "ValueError" and failed.error["errorMessage"] == "asked to fail"
    assert any("lambda_handler" in line for line in failed.error["stackTrace"])

    unserializable = runtime.find("first").invoke({"unserializable": True})
    assert unserializable.error["errorType"] == "Runtime.MarshalError"

    broken = runtime.find("broken").invoke({})
    assert broken.error["errorType"] == "ModuleNotFoundError"


def test_handler_output_goes_to_the_function_log(either_runtime, tmp_path, capsys):
    function = either_runtime.find("second")
    with open(tmp_path / "functions.log", "w+") as log:
        function.log_stream = log
        invocation = function.invoke({})
        log.seek(0)
        said, report = log.read().splitlines()
    assert said == "second says hello" and "second says hello" not in capsys.readouterr().out
    # Lambda's REPORT line: the duration, and the init's on a cold start
    assert report.endswith(f"SecondFunction: REPORT RequestId: {invocation.request_id} "
                           f"Duration: {invocation.duration_ms:.1f} ms Init Duration: "
                           + report.rsplit("Init Duration: ", 1)[1]) and report.endswith(" ms")


def test_functions_are_found_by_logical_id_short_name_or_physical_name(runtime):
    assert runtime.find("SecondFunction") is runtime.find("second") is runtime.find("rt-SecondFunction")
    with pytest.raises(TemplateError, match="no function 'third'"):
        runtime.find("third")


def test_a_handler_that_outlives_its_timeout_fails_as_in_lambda():
    def slow(event, context):
        time.sleep(0.2)
        return {"late": True}

    function = LocalFunction.from_handler("slow", slow, timeout_s=0.05)
    invocation = function.invoke({})
    assert invocation.error["errorType"] == "Sandbox.Timedout" and invocation.payload is None



def test_a_slow_function_does_not_hold_up_another():
    release, entered = threading.Event(), threading.Event()

    def slow(event, context):
        entered.set()
        release.wait(10)
        return {"slow": True}

    slow_function = LocalFunction.from_handler("slow", slow, timeout_s=30)
    quick_function = LocalFunction.from_handler("quick", lambda event, context: {"quick": True})
    waiting = threading.Thread(target=slow_function.invoke, args=({},))
    waiting.start()
    try:
        assert entered.wait(5)
        started = time.monotonic()
        assert quick_function.invoke({}).payload == {"quick": True}
        assert time.monotonic() - started < 1 and waiting.is_alive()
    finally:
        release.set()
        waiting.join()


def test_functions_running_at_once_each_see_their_own_environment_and_log(runtime):
    first, second = runtime.find("first"), runtime.find("second")
    first.log_stream, second.log_stream = io.StringIO(), io.StringIO()
    one, two = at_once(lambda: first.invoke({"together": True}), lambda: second.invoke({"together": True}))
    assert one.ok and two.ok, (one.error, two.error)
    assert (one.payload["greeting"], two.payload["greeting"]) == ("hi", "hello")
    said = [[line for line in f.log_stream.getvalue().splitlines() if "REPORT" not in line] for f in (first, second)]
    assert said == [["first says hi"], ["second says hello"]]
    assert "GREETING" not in os.environ


def test_invocations_of_one_function_at_once_get_environments_of_their_own(runtime):
    first = runtime.find("first")
    assert first.invoke({}).ok  # one environment, warm
    one, two = at_once(lambda: first.invoke({"together": True}), lambda: first.invoke({"together": True}))
    assert one.ok and two.ok, (one.error, two.error)
    assert one.payload["module"] != two.payload["module"] and first.environments == 2
    assert all(first.invoke({}).ok for _ in range(3)) and first.environments == 2  # warm ones are reused


def test_concurrent_api_requests_each_read_their_own_event(runtime):
    routes = runtime.find("routes")

    def ask(q):
        event = {"resource": "/echo", "path": "/echo", "httpMethod": "GET", "headers": {},
                 "queryStringParameters": {"q": q}, "multiValueQueryStringParameters": {"q": [q]},
                 "requestContext": {"stage": "dev", "resourcePath": "/echo", "httpMethod": "GET"}, "body": None}
        return routes.invoke(event)

    one, two = at_once(lambda: ask("one"), lambda: ask("two"))
    assert one.ok and two.ok, (one.error, two.error)
    assert (json.loads(one.payload["body"])["q"], json.loads(two.payload["body"])["q"]) == ("one", "two")


def test_a_handler_imports_from_its_folder_at_call_time(runtime):
    assert runtime.find("second").invoke({"late": True}).payload == {"late": "late"}


def test_threads_a_handler_starts_write_to_its_log_and_see_its_environment():
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=2)

    def handler(event, context):
        def work():
            print("from the pool")
            return os.environ.get("WHERE")
        return {"where": pool.submit(work).result()}

    log = io.StringIO()
    function = LocalFunction.from_handler("pooled", handler, environment={"WHERE": "inside"}, log_stream=log)
    try:
        assert function.invoke({}).payload == {"where": "inside"}
    finally:
        pool.shutdown()
    assert log.getvalue().startswith("from the pool\n") and "WHERE" not in os.environ


def test_a_handler_still_at_work_when_its_log_is_closed_writes_nowhere(tmp_path, capsys):
    log = open(tmp_path / "functions.log", "w")
    function = LocalFunction.from_handler("late", lambda event, context: log.close() or print("too late"),
                                          log_stream=log)
    assert function.invoke({}).ok
    assert "too late" not in capsys.readouterr().out
