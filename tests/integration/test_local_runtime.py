"""The in-process Lambda runtime: handlers from CodeUri with their layers and environment, each function kept apart."""

import os
import sys
import textwrap
import time

import pytest

from tailor_local.aws import LocalAws, plan_resources
from tailor_local.runtime import LambdaRuntime, LocalFunction
from tailor_local.template import Template, TemplateError

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
    """)

FIRST_APP = textwrap.dedent("""\
    import os

    import helper
    import shared_lib

    def lambda_handler(event, context):
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
    import helper

    def lambda_handler(event, context):
        print("second says hello")
        return {"helper": helper.NAME}
    """)


@pytest.fixture
def runtime(tmp_path):
    (tmp_path / "template.yaml").write_text(TEMPLATE)
    for folder, files in {
        "functions/first": {"app.py": FIRST_APP, "helper.py": 'NAME = "first helper"\n'},
        "functions/second": {"app.py": SECOND_APP, "helper.py": 'NAME = "second helper"\n'},
        "functions/broken": {"app.py": "import not_a_module_anywhere\n"},
        "layers/shared/python": {"shared_lib.py": 'VALUE = "from the layer"\n'},
        "layers/built": {"Makefile": "build-BuiltLayer:\n"},  # its python/ exists only after a build
    }.items():
        (tmp_path / folder).mkdir(parents=True)
        for name, text in files.items():
            (tmp_path / folder / name).write_text(text)
    template = Template.load(tmp_path / "template.yaml", stack_name="rt")
    aws = LocalAws("http://127.0.0.1:9")
    return LambdaRuntime(template, plan_resources(template, aws.endpoint), aws)


def test_the_handler_runs_with_its_code_layers_environment_and_context(runtime):
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


def test_errors_are_reported_as_lambda_reports_them(runtime):
    failed = runtime.find("first").invoke({"fail": True})
    assert not failed.ok and failed.payload is None
    assert failed.error["errorType"] == "ValueError" and failed.error["errorMessage"] == "asked to fail"
    assert any("lambda_handler" in line for line in failed.error["stackTrace"])

    unserializable = runtime.find("first").invoke({"unserializable": True})
    assert unserializable.error["errorType"] == "Runtime.MarshalError"

    broken = runtime.find("broken").invoke({})
    assert broken.error["errorType"] == "ModuleNotFoundError"


def test_handler_output_goes_to_the_function_log(runtime, tmp_path, capsys):
    function = runtime.find("second")
    with open(tmp_path / "functions.log", "w+") as log:
        function.log_stream = log
        function.invoke({})
        log.seek(0)
        assert log.read() == "second says hello\n"
    assert "second says hello" not in capsys.readouterr().out


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
