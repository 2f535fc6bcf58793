"""Scheduled functions run locally: their EventBridge event, fired by `tailor invoke` on demand or by a rate timer."""

import json
import textwrap
import time

import pytest

from tailor_cli.main import main
from tailor_local.runtime import LocalFunction
from tailor_local.schedule import ScheduleSource, ScheduleTimer, rate_seconds, schedule_sources, scheduled_event
from tailor_local.template import Template, TemplateError

TEMPLATE = textwrap.dedent("""\
    Transform: AWS::Serverless-2016-10-31
    Resources:
      NightlyFunction:
        Type: AWS::Serverless::Function
        Properties:
          CodeUri: functions/nightly
          Handler: app.lambda_handler
          Events:
            Nightly:
              Type: ScheduleV2
              Properties: {ScheduleExpression: "cron(0 3 * * ? *)"}
      RefreshFunction:
        Type: AWS::Serverless::Function
        Properties:
          CodeUri: functions/nightly
          Handler: app.lambda_handler
          Events:
            Often:
              Type: Schedule
              Properties: {Schedule: rate(5 minutes), Input: '{"job": "refresh"}'}
            Paused:
              Type: Schedule
              Properties: {Schedule: rate(1 hour), Enabled: false}
    """)
ECHO_APP = "def lambda_handler(event, context):\n    return {'received': event}\n"


@pytest.fixture
def repo(tmp_path):
    (tmp_path / "template.yaml").write_text(TEMPLATE)
    (tmp_path / "functions" / "nightly").mkdir(parents=True)
    (tmp_path / "functions" / "nightly" / "app.py").write_text(ECHO_APP)
    return tmp_path


def test_schedule_events_are_read_from_the_template(repo):
    sources = {(s.function_id, s.event_name): s for s in schedule_sources(Template.load(repo / "template.yaml"))}
    assert sources[("NightlyFunction", "Nightly")].expression == "cron(0 3 * * ? *)"
    assert sources[("RefreshFunction", "Often")].input == '{"job": "refresh"}'
    assert sources[("RefreshFunction", "Often")].enabled and not sources[("RefreshFunction", "Paused")].enabled


@pytest.mark.parametrize("expression, seconds", [
    ("rate(1 minute)", 60), ("rate(5 minutes)", 300), ("rate(2 hours)", 7200), ("rate(1 day)", 86400),
    ("cron(0 3 * * ? *)", None),
])
def test_rate_expressions_give_their_period(expression, seconds):
    assert rate_seconds(expression) == seconds


def test_a_bad_expression_is_an_error():
    with pytest.raises(TemplateError):
        rate_seconds("every tuesday")


def test_the_scheduled_event_is_eventbridges_or_the_configured_input():
    plain = scheduled_event(ScheduleSource("JobFunction", "Nightly", "rate(1 day)"), region="us-east-1",
                            account_id="123456789012", stack_name="demo")
    assert plain["detail-type"] == "Scheduled Event" and plain["source"] == "aws.events"
    assert plain["resources"] == ["arn:aws:events:us-east-1:123456789012:rule/demo-JobFunctionNightly"]
    assert plain["detail"] == {} and plain["time"].endswith("Z")
    with_input = scheduled_event(ScheduleSource("JobFunction", "Nightly", "rate(1 day)", '{"job": "x"}'),
                                 region="us-east-1", account_id="123456789012", stack_name="demo")
    assert with_input == {"job": "x"}


def test_a_rate_timer_fires_until_stopped():
    received = []
    function = LocalFunction.from_handler("job", lambda event, context: received.append(event))
    timer = ScheduleTimer(ScheduleSource("JobFunction", "Often", "rate(1 minute)"), function, 0.05,
                          region="us-east-1", account_id="123456789012", stack_name="demo")
    timer.start()
    deadline = time.monotonic() + 10
    while len(received) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    timer.stop()
    count = len(received)
    time.sleep(0.15)
    assert count >= 3 and len(received) == count
    assert all(event["detail-type"] == "Scheduled Event" for event in received)


def test_tailor_invoke_fires_a_scheduled_function_on_demand(repo, capsys):
    assert main(["--template", str(repo / "template.yaml"), "invoke", "nightly"]) == 0
    assert json.loads(capsys.readouterr().out)["received"]["detail-type"] == "Scheduled Event"
    assert main(["--template", str(repo / "template.yaml"), "invoke", "RefreshFunction"]) == 0
    assert json.loads(capsys.readouterr().out) == {"received": {"job": "refresh"}}
