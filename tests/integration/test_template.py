"""The SAM template: it lints, keeps its contract, grants what Ingest, the API and erasure use, guards the API with the
usage plan's key as the local gateway does, and builds small enough for Lambda."""

import fnmatch
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
import types
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest
from aws_lambda_powertools import Metrics
from cfnlint.decode import cfn_yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from samtranslator.translator.transform import transform

import tailor.aws_clients
from tailor.archive import archived_events
from tailor.erasure import TOMBSTONE_SECONDS
from tailor.ingest.kinesis import publish_metrics
from tailor.ingest.service import BatchOutcome
from tailor.shopper import EXPIRY_FIELD
from tailor.store.aws import S3BlobStore
from tailor.store.port import INDEXES, TABLES
from tailor_local.aws import STATE_TABLE_TTL, plan_resources
from tailor_local.http import rest_apis
from tailor_local.template import Template

from tests.helpers import ROOT
from tests.helpers.events import load_event
from tests.helpers.lambdas import MotoFunctions, functions_on_moto, kinesis_batch

TEMPLATE = ROOT / "template.yaml"
BIN = Path(sys.executable).parent
LAMBDA_UNZIPPED_LIMIT = 262_144_000  # Lambda's "250 MB" for a function and all its layers, in bytes
# logical id -> (environment variable, hash key), as the domain library's store port names them
STATE_TABLES = {f"{name.capitalize()}Table": (f"{name.upper()}_TABLE", key) for name, key in TABLES.items()}
TRANSIENT_TABLES = {"SessionsTable", "TrendsTable", "BuffersTable", "ExposuresTable"}  # expire instead of being backed up
BUCKET_NAME = "tailor-data-test"
# IAM actions for API operations whose action is not simply service:Operation.
IAM_ACTION_OF = {("s3", "ListObjectsV2"): "s3:ListBucket", ("s3", "HeadObject"): "s3:GetObject",
                 ("s3", "DeleteObjects"): "s3:DeleteObject", ("s3", "CopyObject"): "s3:PutObject",
                 ("appconfigdata", "StartConfigurationSession"): "appconfig:StartConfigurationSession",
                 ("appconfigdata", "GetLatestConfiguration"): "appconfig:GetLatestConfiguration"}


@pytest.fixture(scope="module")
def template() -> dict:
    return cfn_yaml.load(str(TEMPLATE))


def test_cfn_lint_passes():
    result = run([BIN / "cfn-lint", TEMPLATE])
    assert result.returncode == 0, result.stdout + result.stderr


def test_sam_validate_lint_passes():
    result = run([BIN / "sam", "validate", "--lint", "--template-file", TEMPLATE])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is a valid SAM Template" in result.stdout


def test_every_function_and_layer_builds_with_its_makefile_for_python312_x86_64(template):
    functions = resources_of(template, "AWS::Serverless::Function")
    layers = resources_of(template, "AWS::Serverless::LayerVersion")
    assert {"IngestFunction", "ApiFunction", "EraseFunction"} <= set(functions)
    assert set(layers) == {"TailorLayer", "RuntimeLayer"}
    globals_ = template["Globals"]["Function"]
    for name, resource in functions.items():
        properties = resource["Properties"]
        assert resource["Metadata"]["BuildMethod"] == "makefile", name
        assert properties.get("Runtime", globals_["Runtime"]) == "python3.12", name
        assert properties.get("Architectures", globals_["Architectures"]) == ["x86_64"], name
        assert (ROOT / properties["CodeUri"] / "Makefile").is_file(), name
    for name, resource in layers.items():
        properties = resource["Properties"]
        assert resource["Metadata"]["BuildMethod"] == "makefile", name
        assert properties["CompatibleRuntimes"] == ["python3.12"], name
        assert properties["CompatibleArchitectures"] == ["x86_64"], name
        assert (ROOT / properties["ContentUri"] / "Makefile").is_file(), name


def test_state_tables_keys_billing_ttl_recovery_and_environment(template):
    tables = resources_of(template, "AWS::DynamoDB::Table")
    assert set(tables) == set(STATE_TABLES)
    env = template["Globals"]["Function"]["Environment"]["Variables"]
    for name, (variable, key) in STATE_TABLES.items():
        properties = tables[name]["Properties"]
        assert properties["KeySchema"] == [{"AttributeName": key, "KeyType": "HASH"}], name
        assert properties["BillingMode"] == "PAY_PER_REQUEST", name
        assert env[variable] == {"Ref": name}
        recovery = properties.get("PointInTimeRecoverySpecification", {}).get("PointInTimeRecoveryEnabled")
        if name in TRANSIENT_TABLES:
            assert properties["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
            assert not recovery
        else:
            assert recovery is True, name
            assert tables[name]["DeletionPolicy"] == "Retain", name
    assert env["DATA_BUCKET"] == {"Ref": "DataBucket"}
    # The tables tailor_local creates without the template expire rows as the template's do.
    expiring = {logical: properties["TimeToLiveSpecification"]["AttributeName"] for logical, properties in
                ((name, table["Properties"]) for name, table in tables.items()) if "TimeToLiveSpecification" in properties}
    assert expiring == {f"{table.capitalize()}Table": attribute for table, attribute in STATE_TABLE_TTL.items()}
    # The secondary indexes the store port queries, as it names them.
    declared = {(logical, index["KeySchema"][0]["AttributeName"]): (
                    index["IndexName"], tuple(index["Projection"].get("NonKeyAttributes", ())))
                for logical, table in tables.items() for index in table["Properties"].get("GlobalSecondaryIndexes", [])}
    assert declared == {(f"{table.capitalize()}Table", attribute): index for (table, attribute), index in INDEXES.items()}


def test_erasure_tombstones_expire_only_after_the_stream_can_no_longer_deliver_what_was_sent_before(template):
    shoppers = template["Resources"]["ShoppersTable"]["Properties"]
    assert shoppers["TimeToLiveSpecification"] == {"AttributeName": EXPIRY_FIELD, "Enabled": True}
    retention_hours = template["Resources"]["EventStream"]["Properties"]["RetentionPeriodHours"]
    assert TOMBSTONE_SECONDS > retention_hours * 3600


def test_erasures_are_queued_retried_and_dead_lettered_and_no_message_outlives_its_record(template):
    resources = template["Resources"]
    queue = resources["ErasureQueue"]["Properties"]
    assert queue["RedrivePolicy"] == {"deadLetterTargetArn": {"Fn::GetAtt": ["ErasureDeadLetterQueue", "Arn"]},
                                      "maxReceiveCount": 5}
    for name in ("ErasureQueue", "ErasureDeadLetterQueue"):
        assert resources[name]["Properties"]["MessageRetentionPeriod"] <= TOMBSTONE_SECONDS, name
    erase = resources["EraseFunction"]["Properties"]
    assert (erase["CodeUri"], erase["Handler"]) == ("functions/erase", "app.lambda_handler")
    assert erase["Timeout"] == 900 and queue["VisibilityTimeout"] > erase["Timeout"]
    (source,) = erase["Events"].values()
    assert source["Type"] == "SQS" and source["Properties"]["Queue"] == {"Fn::GetAtt": ["ErasureQueue", "Arn"]}
    assert source["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    api = resources["ApiFunction"]["Properties"]
    assert api["Environment"]["Variables"]["ERASURE_QUEUE_URL"] == {"Ref": "ErasureQueue"}
    assert {(e["Properties"]["Method"], e["Properties"]["Path"]) for e in api["Events"].values()} >= {
        ("DELETE", "/users/{user_id}"), ("GET", "/users/{user_id}/erasure")}
    assert ({"sqs:SendMessage"}, "queue", "ErasureQueue") in granted(template, "ApiFunction")


def test_events_the_stream_gave_up_on_and_failed_erasures_raise_alarms_told_to_an_optional_topic(template):
    resources = template["Resources"]
    for alarm, queue in (("IngestFailureAlarm", "IngestFailureQueue"), ("ErasureFailureAlarm", "ErasureDeadLetterQueue")):
        found = resources[alarm]
        assert found["Type"] == "AWS::CloudWatch::Alarm"
        props = found["Properties"]
        assert props["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": [queue, "QueueName"]}}]
        assert (props["MetricName"], props["Threshold"], props["ComparisonOperator"]) == (
            "ApproximateNumberOfMessagesVisible", 1, "GreaterThanOrEqualToThreshold")
        assert props["AlarmActions"] == {"Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]}
    assert template["Parameters"]["AlarmTopicArn"]["Default"] == ""
    quarantine = next(rule for rule in resources["DataBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
                      if rule["Id"] == "ExpireQuarantine")
    assert quarantine["NoncurrentVersionExpiration"]["NoncurrentDays"] <= 1


def test_operators_hear_when_ingest_falls_behind_a_scheduled_job_fails_events_go_unapplied_or_the_api_errs(template):
    resources, env = template["Resources"], template["Globals"]["Function"]["Environment"]["Variables"]
    alarms = {name: r["Properties"] for name, r in resources.items() if r["Type"] == "AWS::CloudWatch::Alarm"}
    assert {"IngestLagAlarm", "IngestStoppedAlarm", "ScheduledJobFailureAlarm", "EventsNotApplicableAlarm",
            "ApiErrorsAlarm"} <= set(alarms)
    for props in alarms.values():
        assert props["AlarmActions"] == {"Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]}
        assert props["TreatMissingData"] == "notBreaching"

    def metrics_of(props: dict) -> dict[str, dict]:
        return {m["Id"]: m for m in props["Metrics"]}

    def answer(props: dict) -> dict:
        (returned,) = [m for m in props["Metrics"] if m.get("ReturnData", True)]
        return returned

    lag = alarms["IngestLagAlarm"]
    age = metrics_of(lag)["age"]["MetricStat"]
    assert (age["Metric"]["Namespace"], age["Metric"]["MetricName"], age["Stat"]) == ("AWS/Lambda", "IteratorAge", "Maximum")
    assert age["Metric"]["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": "IngestFunction"}}]
    assert answer(lag)["Expression"] == "age / 1000" and lag["Threshold"] == {"Ref": "IngestLagAlarmSeconds"}
    stopped = alarms["IngestStoppedAlarm"]
    incoming, invoked = (metrics_of(stopped)[k]["MetricStat"]["Metric"] for k in ("incoming", "invoked"))
    assert (incoming["Namespace"], incoming["MetricName"], incoming["Dimensions"]) == (
        "AWS/Kinesis", "IncomingRecords", [{"Name": "StreamName", "Value": {"Ref": "EventStream"}}])
    assert (invoked["Namespace"], invoked["MetricName"], invoked["Dimensions"]) == (
        "AWS/Lambda", "Invocations", [{"Name": "FunctionName", "Value": {"Ref": "IngestFunction"}}])
    assert answer(stopped)["Expression"] == "IF(incoming > 0 AND FILL(invoked, 0) == 0, 1, 0)"
    assert {metrics_of(stopped)[k]["MetricStat"]["Period"] for k in ("incoming", "invoked")} == {900}
    assert (stopped["EvaluationPeriods"], stopped["DatapointsToAlarm"], stopped["Threshold"],
            stopped["ComparisonOperator"]) == (2, 2, 1, "GreaterThanOrEqualToThreshold")

    # Every function a schedule runs, and no other, is watched: a job added later cannot fail unheard.
    scheduled = scheduled_functions(resources)
    jobs = alarms["ScheduledJobFailureAlarm"]
    watched = [m["MetricStat"] for m in jobs["Metrics"] if "MetricStat" in m]
    assert {(s["Metric"]["Namespace"], s["Metric"]["MetricName"], s["Stat"]) for s in watched} == {
        ("AWS/Lambda", "Errors", "Sum")}
    assert sorted(s["Metric"]["Dimensions"][0]["Value"]["Ref"] for s in watched) == sorted(scheduled)
    assert len(scheduled) >= 8 and len(jobs["Metrics"]) <= 10  # CloudWatch's limit on an alarm's metrics
    assert answer(jobs)["Expression"] == "SUM(FILL(METRICS(), 0))"
    assert (jobs["Threshold"], jobs["ComparisonOperator"]) == (1, "GreaterThanOrEqualToThreshold")

    # The metric Ingest publishes, under the namespace and service dimension Powertools gives it from the globals:
    # the stack's own namespace.
    unapplicable = alarms["EventsNotApplicableAlarm"]
    assert unapplicable["Namespace"] == env["POWERTOOLS_METRICS_NAMESPACE"] == {"Fn::Sub": "Tailor/${AWS::StackName}"}
    metrics = Metrics(namespace="Tailor/stack", service=env["POWERTOOLS_SERVICE_NAME"])
    metrics.clear_metrics()
    publish_metrics(metrics, BatchOutcome(records=1, quarantined=1, unapplicable=1))
    published = metrics.serialize_metric_set()
    metrics.clear_metrics()
    (directive,) = published["_aws"]["CloudWatchMetrics"]
    assert unapplicable["MetricName"] in {m["Name"] for m in directive["Metrics"]}
    assert published[unapplicable["MetricName"]] in (1, [1])
    assert unapplicable["Dimensions"] == [{"Name": d, "Value": published[d]} for d in directive["Dimensions"][0]]

    # API Gateway names a REST API's metrics by the API's name and stage, as SAM deploys them.
    transformed = sam_transform(template)["Resources"]
    api = alarms["ApiErrorsAlarm"]
    name = transformed["ServingApi"]["Properties"]["Body"]["info"]["title"]
    stage = transformed["ServingApiStage"]["Properties"]["StageName"]
    # API Gateway's documentation: Sum of 5XXError counts the errors, SampleCount of Count the requests.
    for metric_id, metric_name, statistic in (("errors", "5XXError", "Sum"), ("requests", "Count", "SampleCount")):
        stat = metrics_of(api)[metric_id]["MetricStat"]
        assert (stat["Metric"]["Namespace"], stat["Metric"]["MetricName"], stat["Stat"]) == (
            "AWS/ApiGateway", metric_name, statistic)
        assert stat["Metric"]["Dimensions"] == [{"Name": "ApiName", "Value": name}, {"Name": "Stage", "Value": stage}]
    assert answer(api)["Expression"] == "IF(requests >= 20, errors / requests, 0)"
    assert api["Threshold"] == {"Ref": "ApiErrorRateAlarm"}


def test_the_operations_dashboard_shows_every_alarm_and_only_metrics_the_stack_publishes(template):
    import re

    resources = template["Resources"]
    dashboard = resources["OperationsDashboard"]
    assert dashboard["Type"] == "AWS::CloudWatch::Dashboard"
    text = dashboard["Properties"]["DashboardBody"]["Fn::Sub"]
    names = set(re.findall(r"\$\{([^}]+)\}", text))
    # Every name the body substitutes is a parameter, a pseudo parameter or a resource (attribute) of the template.
    assert all(n.split(".")[0] in resources or n in template["Parameters"] or n.startswith("AWS::") for n in names), names
    body = json.loads(re.sub(r"\$\{([^}]+)\}", r"<\1>", text))
    widgets = body["widgets"]
    alarms = {name for name, r in resources.items() if r["Type"] == "AWS::CloudWatch::Alarm"}
    (shown,) = [w["properties"]["alarms"] for w in widgets if w["type"] == "alarm"]
    assert sorted(shown) == sorted(f"<{name}.Arn>" for name in alarms)

    # The stack's own metrics: each one some function publishes, in the namespace and dimension of the globals.
    published = {name for path in [*(ROOT / "functions").rglob("*.py"), *(ROOT / "layers").rglob("*.py")]
                 for name in re.findall(r'add_metric\(name="(\w+)"', path.read_text())}
    env = template["Globals"]["Function"]["Environment"]["Variables"]
    namespace = env["POWERTOOLS_METRICS_NAMESPACE"]["Fn::Sub"].replace("${AWS::StackName}", "<AWS::StackName>")
    rows = [row for w in widgets if w["type"] == "metric" for row in w["properties"]["metrics"]
            if isinstance(row[0], str)]
    own = [row for row in rows if row[0] == namespace]
    assert own and all(row[1] in published and row[2:4] == ["service", env["POWERTOOLS_SERVICE_NAME"]] for row in own)
    # AWS's metrics: each one the service publishes under that dimension, for a resource of the stack.
    aws_metrics = {("AWS/Lambda", "FunctionName"): {"IteratorAge", "Errors", "Duration", "Invocations"},
                   ("AWS/ApiGateway", "ApiName"): {"Count", "4XXError", "5XXError", "Latency"},
                   ("AWS/SQS", "QueueName"): {"ApproximateNumberOfMessagesVisible"},
                   ("AWS/Kinesis", "StreamName"): {"IncomingRecords"}}
    for row in rows:
        if row[0] != namespace:
            assert row[1] in aws_metrics[(row[0], row[2])], row
            assert row[3].split(".")[0].strip("<>") in resources or row[3] == "<AWS::StackName>", row
    for widget in widgets:
        if widget["type"] != "metric":
            continue
        properties = widget["properties"]
        assert properties["region"] == "<AWS::Region>" and properties["view"] == "timeSeries"
        ids = {row[-1]["id"] for row in properties["metrics"] if isinstance(row[-1], dict) and "id" in row[-1]}
        for row in properties["metrics"]:
            options = row[-1] if isinstance(row[-1], dict) else {}
            assert options.get("stat", properties["stat"]) in {"Sum", "Maximum", "SampleCount", "p50", "p99"}
            if "expression" in options:
                assert set(re.findall(r"[a-z]\w*", options["expression"])) <= ids, options
    functions = {row[3].strip("<>") for row in rows if row[0] == "AWS/Lambda"}
    assert functions <= {n for n, r in resources.items() if r["Type"] == "AWS::Serverless::Function"}
    scheduled = scheduled_functions(resources)
    assert scheduled | {"IngestFunction", "ApiFunction"} == functions
    assert all(row[2:6] == ["ApiName", "<AWS::StackName>", "Stage", "<Stage>"] for row in rows
               if row[0] == "AWS/ApiGateway")
    # Laid out on CloudWatch's 24-column grid without overlaps.
    cells = [(x, y) for w in widgets for x in range(w["x"], w["x"] + w["width"]) for y in range(w["y"], w["y"] + w["height"])]
    assert len(cells) == len(set(cells)) and all(w["x"] + w["width"] <= 24 for w in widgets)


def test_every_function_that_reads_objects_may_list_where_it_reads(template):
    """Without s3:ListBucket, S3 answers a read of a missing object (a model not published yet) with 403, not the
    404 the readers take for "none yet"."""
    import fnmatch

    for name, resource in template["Resources"].items():
        if resource["Type"] != "AWS::Serverless::Function" or not resource["Properties"].get("Policies"):
            continue
        grants = granted(template, name)
        listed = [pattern for actions, kind, pattern in grants if kind == "prefix" and "s3:ListBucket" in actions]
        for actions, kind, pattern in grants:
            if kind == "object" and "s3:GetObject" in actions:
                assert any(fnmatch.fnmatch(pattern, prefix) for prefix in listed), (name, pattern)


def test_stream_is_on_demand_and_ingest_reads_it_with_bounded_partial_batch_retries(template):
    stream = template["Resources"]["EventStream"]["Properties"]
    assert stream["StreamModeDetails"] == {"StreamMode": "ON_DEMAND"} and "ShardCount" not in stream
    ingest = template["Resources"]["IngestFunction"]["Properties"]
    assert (ingest["CodeUri"], ingest["Handler"]) == ("functions/ingest", "app.lambda_handler")
    source = ingest["Events"]["Stream"]
    assert source["Type"] == "Kinesis"
    mapping = source["Properties"]
    assert mapping["Stream"] == {"Fn::GetAtt": ["EventStream", "Arn"]}
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["BisectBatchOnFunctionError"] is True
    assert 0 <= mapping["MaximumRetryAttempts"] <= 10
    assert 1 <= mapping["BatchSize"] <= 10_000 and "MaximumBatchingWindowInSeconds" in mapping
    assert mapping["DestinationConfig"]["OnFailure"] == {
        "Type": "SQS", "Destination": {"Fn::GetAtt": ["IngestFailureQueue", "Arn"]}}


def test_outputs_name_everything_a_client_uses(template):
    outputs = template["Outputs"]
    named = {output["Value"]["Ref"] for output in outputs.values() if "Ref" in output["Value"]}
    needed = set(STATE_TABLES) | {"EventStream", "DataBucket", "IngestFailureQueue", "IngestFunction",
                                  "EventProducerPolicy", "ApiFunction", "ServingApiApiKey", "ServingApiUsagePlan",
                                  "ErasureQueue", "ErasureDeadLetterQueue", "EraseFunction"}
    assert needed <= named
    assert all(output.get("Description") for output in outputs.values())


def test_runtime_layer_requirements_pin_the_project_dependencies_lambda_lacks():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {canonicalize_name(r.name): r for r in map(Requirement, project["dependencies"])}
    provided_by_lambda = {"boto3"}
    lines = (ROOT / "layers/runtime/requirements.txt").read_text().splitlines()
    pinned = {canonicalize_name(r.name): r for r in map(Requirement, (ln for ln in lines if ln and ln[0] != "#"))}
    assert set(pinned) == set(wanted) - provided_by_lambda
    for name, requirement in pinned.items():
        (spec,) = requirement.specifier
        assert spec.operator == "==", f"{name} is not pinned"
        assert wanted[name].specifier.contains(spec.version), f"{name} {spec.version} is outside pyproject's range"
        assert requirement.extras == wanted[name].extras, name


def test_constraints_pin_every_dependency_within_range_and_the_functions_packages_as_the_layer_does():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]]
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and line[0] != "#":
            requirement = Requirement(line)
            (spec,) = requirement.specifier
            assert spec.operator == "==" and not requirement.extras, f"{line!r} is not a plain pin"
            pins[canonicalize_name(requirement.name)] = spec.version
    for requirement in wanted:
        name = canonicalize_name(requirement.name)
        assert name in pins, f"constraints.txt does not pin {name}"
        assert requirement.specifier.contains(pins[name]), f"{name} {pins[name]} is outside pyproject's range"
    layer = (ROOT / "layers/runtime/requirements.txt").read_text().splitlines()
    for requirement in (Requirement(ln) for ln in layer if ln and ln[0] != "#"):
        (spec,) = requirement.specifier
        assert pins[canonicalize_name(requirement.name)] == spec.version, f"{requirement.name} differs from the layer's"


def test_ingest_policy_grants_every_call_the_handler_makes_and_no_more_tables_or_prefixes(template):
    """Run the sample batch through the real handler on moto, recording each AWS call, and check
    every call against the statements the template grants (moto itself enforces no IAM)."""
    with recorded_functions() as (functions, calls):
        response = functions.invoke("IngestFunction", load_event("ingest-kinesis-batch.json"))
    assert response == {"batchItemFailures": []}
    assert {action for action, _, _ in calls} >= {"dynamodb:UpdateItem", "s3:PutObject"}
    assert any(kind == "object" and name.startswith("quarantine/") for _, kind, name in calls)
    assert any(kind == "object" and name.startswith("archive/") for _, kind, name in calls)

    assert_granted(template, "IngestFunction", calls)


def test_ingest_takes_what_it_archived_of_a_shopper_erased_since_out_of_the_archive_within_its_grants(template):
    """A batch delivered again after its shopper was erased: Ingest drops their events and takes what the first
    delivery archived of them out of the archive, with calls the template grants."""
    erased, kept = "u-erased", "u-kept"
    day = datetime.now(UTC) - timedelta(days=1)
    events = [{"event_id": f"{user}-{n}", "user_id": user, "session_id": f"{user}-s", "event_type": "view",
               "timestamp": (day + timedelta(minutes=n)).isoformat(), "item_id": f"i{n}", "category": "c1"}
              for n in range(3) for user in (erased, kept)]
    batch = kinesis_batch(events)
    delete = load_event("api-delete-user.json")
    delete = {**delete, "path": f"/users/{erased}", "pathParameters": {"user_id": erased}}
    with recorded_functions() as (functions, calls):
        assert functions.invoke("IngestFunction", batch) == {"batchItemFailures": []}
        assert functions.invoke("ApiFunction", delete)["statusCode"] == 202
        calls.clear()
        assert functions.invoke("IngestFunction", batch) == {"batchItemFailures": []}
        bucket = S3BlobStore(boto3.client("s3"), functions.environment["DATA_BUCKET"])
        users = [e["user_id"] for e in archived_events(bucket)]
    assert users.count(kept) == 3 and erased not in users
    assert {("s3:ListBucket", "prefix"), ("s3:GetObject", "object")} <= {(a, kind) for a, kind, _ in calls}
    assert_granted(template, "IngestFunction", calls)


def test_merge_counters_schedule_and_policy_grant_every_call_the_merge_makes(template):
    """The sample batch through Ingest, then the scheduled merge through its handler: its counters land on the items
    rows, within the calls the template grants it, every minute."""
    properties = template["Resources"]["MergeCountersFunction"]["Properties"]
    (event,) = properties["Events"].values()
    assert event["Type"] == "ScheduleV2" and event["Properties"]["ScheduleExpression"] == "rate(1 minute)"
    assert json.loads(event["Properties"]["Input"]) == load_event("merge-counters-schedule.json")
    with recorded_functions() as (functions, calls):
        functions.invoke("IngestFunction", load_event("ingest-kinesis-batch.json"))
        items = boto3.resource("dynamodb").Table(functions.environment["ITEMS_TABLE"])
        assert items.scan()["Items"] == []  # buffered, not merged yet
        calls.clear()
        report = functions.invoke("MergeCountersFunction", load_event("merge-counters-schedule.json"))
        merge_calls = list(calls)
        assert (report["generations"], report["slots"], report["missing"]) == (1, 1, 0)
        assert items.get_item(Key={"item_id": "i-101"})["Item"]["purchases"] == 1
    assert {"dynamodb:BatchGetItem", "dynamodb:Scan", "dynamodb:UpdateItem"} <= {action for action, _, _ in merge_calls}
    assert_granted(template, "MergeCountersFunction", merge_calls)


def test_compact_archive_runs_hourly_and_its_policy_grants_every_call_the_compaction_makes(template):
    """Each record of the sample batch through Ingest as a batch of its own, then the compaction through its handler
    hours later: the archive reads the same, in a few parts, within the calls the template grants."""
    properties = template["Resources"]["CompactArchiveFunction"]["Properties"]
    hourly, daily = properties["Events"]["Hourly"], properties["Events"]["Daily"]
    assert hourly["Type"] == daily["Type"] == "ScheduleV2"
    assert hourly["Properties"]["ScheduleExpression"] == "rate(1 hour)"
    assert json.loads(hourly["Properties"]["Input"]) == load_event("compact-archive-schedule.json")
    assert json.loads(daily["Properties"]["Input"]) == load_event("compact-archive-daily-schedule.json")
    assert properties["EventInvokeConfig"]["MaximumRetryAttempts"] == 0
    batch = load_event("ingest-kinesis-batch.json")
    with recorded_functions() as (functions, calls):
        for record in batch["Records"]:
            functions.invoke("IngestFunction", {**batch, "Records": [record]})
        bucket = S3BlobStore(boto3.client("s3"), functions.environment["DATA_BUCKET"])
        before = list(archived_events(bucket))
        objects = bucket.list("archive/")
        handler = functions.handler("CompactArchiveFunction")
        clock = types.SimpleNamespace(time=lambda: time.time() + 2 * 3600)  # the objects are two hours old
        handler.time = clock
        calls.clear()
        recent = functions.invoke("CompactArchiveFunction", load_event("compact-archive-schedule.json"),
                                  handler=handler)
        assert recent["objects_merged"] == 0 and recent["leased"]  # the sample's days are long past
        report = functions.invoke("CompactArchiveFunction", load_event("compact-archive-daily-schedule.json"),
                                  handler=handler)
        assert report["objects_merged"] == len(objects) > report["parts_written"] > 0
        assert list(archived_events(bucket)) == before
        clock.time = lambda: time.time() + 27 * 3600  # and the parts a day old: the objects they cover go
        report = functions.invoke("CompactArchiveFunction", load_event("compact-archive-daily-schedule.json"),
                                  handler=handler)
        assert report["objects_deleted"] == len(objects) and list(archived_events(bucket)) == before
        assert len(bucket.list("archive/")) < len(objects)
        compaction_calls = list(calls)
    assert {"s3:ListBucket", "s3:GetObject", "s3:PutObject", "s3:DeleteObject", "dynamodb:BatchGetItem",
            "dynamodb:UpdateItem"} <= {a for a, _, _ in compaction_calls}
    assert_granted(template, "CompactArchiveFunction", compaction_calls)


def test_report_experiments_schedule_and_policy_grant_every_call_the_reports_take(template):
    """An experiment created and started through the API's sample requests, then the scheduled reports through their
    handler: its report is written, within the calls the template grants, every 15 minutes."""
    properties = template["Resources"]["ReportExperimentsFunction"]["Properties"]
    (event,) = properties["Events"].values()
    assert event["Type"] == "ScheduleV2" and event["Properties"]["ScheduleExpression"] == "rate(15 minutes)"
    assert json.loads(event["Properties"]["Input"]) == load_event("report-experiments-schedule.json")
    with recorded_functions() as (functions, calls):
        api = functions.handler("ApiFunction")
        for sample in ("api-experiments-1-create.json", "api-experiments-2-start.json"):
            assert functions.invoke("ApiFunction", load_event(sample), handler=api)["statusCode"] in (200, 201)
        calls.clear()
        done = functions.invoke("ReportExperimentsFunction", load_event("report-experiments-schedule.json"))
        report_calls = list(calls)
    assert done == {"written": ["exp-sample"], "failed": []}
    assert {"dynamodb:Scan", "dynamodb:BatchGetItem", "s3:PutObject"} <= {action for action, _, _ in report_calls}
    assert_granted(template, "ReportExperimentsFunction", report_calls)


def test_api_policy_grants_every_call_the_routes_make_and_no_more(template):
    """State from the sample batch, then every sample request of events/ through the real API handler on moto, each
    AWS call checked against the statements the template grants the API function."""
    with recorded_functions() as (functions, calls):
        functions.invoke("IngestFunction", load_event("ingest-kinesis-batch.json"))
        functions.invoke("MergeCountersFunction", load_event("merge-counters-schedule.json"))  # the items' rows
        calls.clear()
        api = functions.handler("ApiFunction")
        for sample in sorted((ROOT / "events").glob("api-*.json")):
            response = functions.invoke("ApiFunction", load_event(sample.name), handler=api)
            expected = {"api-delete-user.json": 202, "api-experiments-1-create.json": 201}.get(sample.name, 200)
            assert response["statusCode"] == expected, (sample.name, response["body"])
        # An id with no shopper row: the erasure looks for lists experiments served it before it answers.
        delete = load_event("api-delete-user.json")
        delete = {**delete, "path": "/users/never-seen", "pathParameters": {"user_id": "never-seen"}}
        assert functions.invoke("ApiFunction", delete, handler=api)["statusCode"] == 404
    actions = {action for action, _, _ in calls}
    assert {"dynamodb:BatchGetItem", "dynamodb:PutItem", "dynamodb:Query", "sqs:SendMessage", "kinesis:PutRecords",
            "s3:ListBucket", "s3:GetObject"} <= actions

    assert_granted(template, "ApiFunction", calls)


def test_erase_policy_grants_every_call_the_worker_makes_and_no_more(template):
    """The sample batch ingested, the sample DELETE through the API handler, then the message it queued through the
    Erase handler as the sample SQS event: each AWS call the worker makes checked against what the template grants."""
    with recorded_functions() as (functions, calls):
        functions.invoke("IngestFunction", load_event("ingest-kinesis-batch.json"))
        answer = functions.invoke("ApiFunction", load_event("api-delete-user.json"))
        assert answer["statusCode"] == 202, answer["body"]
        queue = functions.function_environment("ApiFunction")["ERASURE_QUEUE_URL"]
        (message,) = boto3.client("sqs").receive_message(QueueUrl=queue)["Messages"]
        event = load_event("erase-sqs-batch.json")
        event["Records"][0]["body"] = message["Body"]
        calls.clear()
        assert functions.invoke("EraseFunction", event) == {"batchItemFailures": []}
    actions = {action for action, _, _ in calls}
    assert {"dynamodb:BatchGetItem", "dynamodb:UpdateItem", "dynamodb:Query", "dynamodb:BatchWriteItem",
            "s3:ListBucket", "s3:GetObject", "s3:PutObject"} <= actions
    assert_granted(template, "EraseFunction", calls)


def test_deployed_api_asks_for_the_key_where_the_local_gateway_does(template):
    """The API Gateway definition SAM generates: the usage plan and its key on the stage, the key required on every
    method but the document and the CORS preflights, exactly the routes the local gateway serves and guards."""
    transformed = sam_transform(template)
    resources = transformed["Resources"]
    assert resources["ServingApiApiKey"]["Type"] == "AWS::ApiGateway::ApiKey"
    plan = resources["ServingApiUsagePlan"]["Properties"]
    assert plan["ApiStages"] == [{"ApiId": {"Ref": "ServingApi"}, "Stage": {"Ref": "ServingApiStage"}}]
    assert plan["Throttle"]["RateLimit"] > 0
    assert resources["ServingApiUsagePlanKey"]["Properties"]["KeyId"] == {"Ref": "ServingApiApiKey"}
    body = resources["ServingApi"]["Properties"]["Body"]
    assert body["components"]["securitySchemes"]["api_key"] == {"type": "apiKey", "name": "x-api-key", "in": "header"}
    deployed = {}
    for path, methods in body["paths"].items():
        for method, operation in methods.items():
            kind = operation["x-amazon-apigateway-integration"]["type"]
            if method == "options":
                assert kind == "mock" and not operation.get("security"), path
                continue
            assert kind == "aws_proxy", (path, method)
            deployed[(method.upper(), path)] = {"api_key": []} in (operation.get("security") or [])
    local_template = Template.load(TEMPLATE, stack_name="policy-test")
    local = rest_apis(local_template, plan_resources(local_template, "http://127.0.0.1:1"))["ServingApi"]
    assert {(r.method, r.resource): r.api_key_required for r in local.routes} == deployed
    # Only the pages a browser opens go without a key: the explorer and the console, which fetch with one.
    assert {route for route, keyed in deployed.items() if not keyed} == {("GET", "/docs"), ("GET", "/console")}


def test_api_cors_origin_is_a_parameter_and_the_function_gets_it_with_the_stream(template):
    api = template["Resources"]["ServingApi"]["Properties"]
    assert api["Cors"]["AllowOrigin"] == {"Fn::Sub": "'${CorsAllowOrigin}'"}
    assert "x-api-key" in api["Cors"]["AllowHeaders"].lower()
    assert api["Auth"]["AddApiKeyRequiredToCorsPreflight"] is False
    assert template["Parameters"]["CorsAllowOrigin"]["Default"] == "*"
    function = template["Resources"]["ApiFunction"]["Properties"]
    assert (function["CodeUri"], function["Handler"]) == ("functions/api", "app.lambda_handler")
    variables = function["Environment"]["Variables"]
    assert {k: variables.get(k) for k in ("EVENT_STREAM", "CORS_ALLOW_ORIGIN")} == {
        "EVENT_STREAM": {"Ref": "EventStream"}, "CORS_ALLOW_ORIGIN": {"Ref": "CorsAllowOrigin"}}
    outputs = template["Outputs"]
    assert outputs["ApiKeyId"]["Value"] == {"Ref": "ServingApiApiKey"}
    assert "${ServingApi}.execute-api" in outputs["ApiUrl"]["Value"]["Fn::Sub"]


def test_intent_factors_are_an_appconfig_profile_that_ingest_and_the_api_read(template):
    resources = template["Resources"]
    deployment = resources["IntentFactorsDeployment"]["Properties"]
    assert deployment["ConfigurationProfileId"] == {"Ref": "IntentFactorsProfile"}
    assert deployment["ConfigurationVersion"] == {"Ref": "IntentFactorsDefaults"}
    assert resources["IntentFactorsProfile"]["Properties"]["Name"] == {"Ref": "IntentConfigProfile"}
    assert resources["IntentConfigEnvironment"]["Properties"]["Name"] == {"Ref": "Stage"}
    for function in ("IngestFunction", "ApiFunction"):
        variables = resources[function]["Properties"]["Environment"]["Variables"]
        assert variables["INTENT_CONFIG_PROFILE"] == {"Ref": "IntentConfigProfile"}
        assert variables["INTENT_CONFIG_ENVIRONMENT"] == {"Ref": "Stage"}
        assert variables["INTENT_CONFIG_APPLICATION"] == {"Fn::Sub": "${AWS::StackName}"}
        assert ({"appconfig:StartConfigurationSession", "appconfig:GetLatestConfiguration"}, "appconfigdata", "") in \
            granted(template, function)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """`sam build` into a temporary directory (its cache and dependency folders too, via the cwd)."""
    work = tmp_path_factory.mktemp("sam")
    result = run([BIN / "sam", "build", "--template-file", TEMPLATE, "--build-dir", work / "build",
                  "--cache-dir", work / "cache"], cwd=work, timeout=1800)
    assert result.returncode == 0, result.stdout + result.stderr
    return work / "build"


@pytest.mark.slow
def test_each_built_function_with_its_layers_fits_lambdas_unzipped_limit(built):
    template = cfn_yaml.load(str(built / "template.yaml"))
    default_layers = template["Globals"]["Function"]["Layers"]
    functions = resources_of(template, "AWS::Serverless::Function")
    assert functions
    for name, resource in functions.items():
        parts = [resource["Properties"]["CodeUri"]]
        parts += [layer["Ref"] for layer in resource["Properties"].get("Layers", default_layers)]
        sizes = {part: tree_size(built / part) for part in parts}
        assert all(sizes.values()), f"{name}: empty build output in {sizes}"
        assert sum(sizes.values()) < LAMBDA_UNZIPPED_LIMIT, f"{name}: {sizes}"


@pytest.mark.slow
def test_built_artifacts_hold_what_lambda_imports(built):
    runtime, domain, ingest = built / "RuntimeLayer/python", built / "TailorLayer/python", built / "IngestFunction"
    for package in ("numpy", "onnxruntime", "pydantic", "pydantic_core", "aws_lambda_powertools", "aws_xray_sdk"):
        assert (runtime / package / "__init__.py").is_file(), package
    assert list((runtime / "onnxruntime/capi").glob("onnxruntime_pybind11_state*.so"))
    assert list((runtime / "numpy/_core").glob("_multiarray_umath.cpython-312-x86_64-linux-gnu.so"))
    assert not [p for p in ("boto3", "botocore") if (runtime / p).exists()], "the Lambda runtime provides boto3"
    assert (domain / "tailor/__init__.py").is_file() and (domain / "tailor/events.py").is_file()
    assert (ingest / "app.py").is_file() and (built / "ApiFunction" / "app.py").is_file()
    for tree in (runtime, domain, ingest):
        assert not list(tree.rglob("__pycache__")), tree


@pytest.mark.slow
def test_built_handler_imports_under_python312_with_only_its_layers_and_the_lambda_runtime(built, tmp_path):
    python312 = shutil.which("python3.12")
    if python312 is None or run([python312, "-c", "pass"]).returncode != 0:
        pytest.skip("no working python3.12 on PATH to import the built artifacts with")
    lambda_runtime = tmp_path / "var-runtime"  # what Lambda's python3.12 runtime adds: boto3 and its dependencies
    result = run([sys.executable, "-m", "pip", "install", "--quiet", "--no-compile", "--only-binary=:all:",
                  "--python-version", "3.12", "--implementation", "cp", "--platform", "manylinux2014_x86_64",
                  "--target", lambda_runtime, "boto3"], timeout=600)
    assert result.returncode == 0, result.stderr
    path = [built / "IngestFunction", built / "TailorLayer/python", built / "RuntimeLayer/python", lambda_runtime]
    probe = (
        "import sys; sys.path[:0] = sys.argv[1:]\n"
        "import numpy, onnxruntime, pydantic, tailor.events, app\n"
        "assert 'CPUExecutionProvider' in onnxruntime.get_available_providers()\n"
        "print(numpy.__file__, onnxruntime.__file__, pydantic.__file__, app.__file__, sep='\\n')\n"
    )
    env = {**resolve_environment(cfn_yaml.load(str(TEMPLATE))), "POWERTOOLS_TRACE_DISABLED": "true"}
    # -I -S: nothing from this interpreter's own site-packages, only the paths Lambda would have.
    result = run([python312, "-I", "-S", "-c", probe, *path], env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert all(line.startswith(str(built)) for line in result.stdout.split()), result.stdout


def run(command: list, *, cwd: Path = ROOT, env: dict | None = None, timeout: float = 300):
    """Run a tool offline-capable: the venv's bin first on PATH (the Makefiles call `python3 -m pip`)."""
    full_env = {**os.environ, **(env or {})}
    full_env["PATH"] = f"{BIN}{os.pathsep}{full_env.get('PATH', '')}"
    full_env.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    full_env["SAM_CLI_TELEMETRY"] = "0"
    return subprocess.run([str(part) for part in command], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=timeout)


def resources_of(template: dict, kind: str) -> dict:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


def physical_names(template: dict) -> dict[str, str]:
    names = {name: name for name in resources_of(template, "AWS::DynamoDB::Table")}
    names["DataBucket"] = BUCKET_NAME
    names["EventStream"] = "EventStream"
    return names


def resolve_environment(template: dict) -> dict[str, str]:
    """The functions' global environment, with Refs resolved to this test's resources and defaults."""
    physical = physical_names(template)
    parameters = template.get("Parameters", {})
    env = {}
    for variable, value in template["Globals"]["Function"]["Environment"]["Variables"].items():
        if isinstance(value, dict):
            ref = value["Ref"]
            value = physical[ref] if ref in physical else parameters[ref]["Default"]
        env[variable] = str(value)
    return env


@contextmanager
def recorded_functions(**overrides: str) -> Iterator[tuple[MotoFunctions, list[tuple[str, str, str]]]]:
    """The template's functions on moto (tests.helpers.lambdas), and the AWS calls made inside the block as (action,
    resource kind, resource name): moto itself enforces no IAM."""
    calls: list[tuple[str, str, str]] = []
    with functions_on_moto(**overrides) as functions:
        tailor.aws_clients.session().register("before-parameter-build", recorder(calls))
        yield functions, calls


def assert_granted(template: dict, function: str, calls: list[tuple[str, str, str]]) -> None:
    grants = granted(template, function)
    denied = sorted({call for call in calls if not any(allows(grant, *call) for grant in grants)})
    assert not denied, f"the template does not grant {len(denied)} calls, e.g. {denied[:5]}"


def recorder(calls: list[tuple[str, str, str]]):
    """A botocore hook that appends each call as (IAM action, resource kind, resource name) to `calls`."""

    def record(params, model, **_):
        service, operation = model.service_model.service_name, model.name
        action = IAM_ACTION_OF.get((service, operation), f"{service}:{operation}")
        if service == "dynamodb" and params.get("IndexName"):
            calls.append((action, "index", f"{params['TableName']}/index/{params['IndexName']}"))
        elif service == "dynamodb":
            names = params.get("RequestItems") or {params["TableName"]: None}
            calls.extend((action, "table", name) for name in names)
        elif service == "sqs":
            calls.append((action, "queue", params.get("QueueUrl", "").rsplit("/", 1)[-1]))
        elif service == "s3" and action == "s3:ListBucket":
            calls.append((action, "prefix", params.get("Prefix", "")))
        elif service == "s3" and operation == "DeleteObjects":
            calls.extend((action, "object", o["Key"]) for o in params["Delete"]["Objects"])
        elif service == "s3" and operation == "CopyObject":  # the source read, the target written
            source = params["CopySource"]
            calls.append(("s3:GetObject", "object", source["Key"] if isinstance(source, dict) else
                          source.split("/", 1)[1]))
            calls.append((action, "object", params.get("Key", "")))
        elif service == "s3":
            calls.append((action, "object", params.get("Key", "")))
        elif service == "kinesis":
            calls.append((action, "stream", params.get("StreamName") or params.get("StreamARN", "")))
        else:
            calls.append((action, service, ""))

    return record


def granted(template: dict, function: str) -> list[tuple[set[str], str, str]]:
    """The function's Allow statements as (actions, resource kind, resource name pattern)."""
    grants = []
    for policy in template["Resources"][function]["Properties"]["Policies"]:
        for statement in policy["Statement"]:
            assert statement["Effect"] == "Allow"
            actions = statement["Action"]
            actions = {actions} if isinstance(actions, str) else set(actions)
            resources = statement["Resource"]
            for resource in resources if isinstance(resources, list) else [resources]:
                if "Fn::GetAtt" in resource:  # a table's, stream's or bucket's ARN
                    logical_id = resource["Fn::GetAtt"][0]
                    kind = template["Resources"][logical_id]["Type"]
                    if kind == "AWS::S3::Bucket":  # listing: only under the prefixes the condition names
                        prefixes = statement["Condition"]["StringLike"]["s3:prefix"]
                        grants += [(actions, "prefix", p) for p in ([prefixes] if isinstance(prefixes, str)
                                                                    else prefixes)]
                    else:
                        grants.append((actions, {"AWS::Kinesis::Stream": "stream", "AWS::SQS::Queue": "queue"}.get(
                            kind, "table"), logical_id))
                elif ":appconfig:" in resource["Fn::Sub"]:  # the intent factors' configuration profile
                    grants.append((actions, "appconfigdata", ""))
                elif "/index/" in resource["Fn::Sub"]:  # "${<table>.Arn}/index/<index>": a table's index
                    table_arn, _, index = resource["Fn::Sub"].partition("/index/")
                    grants.append((actions, "index", f"{table_arn[2:-len('.Arn}')]}/index/{index}"))
                else:  # "${DataBucket.Arn}/<prefix>*"
                    bucket_arn, _, pattern = resource["Fn::Sub"].partition("/")
                    assert bucket_arn == "${DataBucket.Arn}", resource
                    grants.append((actions, "object", pattern))
    return grants


def scheduled_functions(resources: dict) -> set[str]:
    """The functions a schedule runs."""
    return {name for name, r in resources.items() if r["Type"] == "AWS::Serverless::Function"
            and any(e["Type"] in ("Schedule", "ScheduleV2") for e in r["Properties"].get("Events", {}).values())}


def sam_transform(template: dict) -> dict:
    """The template as SAM deploys it (offline: code locations stand in as S3 URIs, no managed policies)."""
    body = json.loads(json.dumps(template))
    for resource in body["Resources"].values():
        properties = resource.get("Properties") or {}
        for key in ("CodeUri", "ContentUri"):
            if isinstance(properties.get(key), str):
                properties[key] = f"s3://artifacts/{properties[key]}"

    class NoManagedPolicies:
        def load(self):
            return {}

    return transform(body, {"AWS::Region": "us-east-1"}, NoManagedPolicies())


def allows(grant: tuple[set[str], str, str], action: str, kind: str, name: str) -> bool:
    actions, granted_kind, pattern = grant
    return action in actions and kind == granted_kind and fnmatch.fnmatchcase(name, pattern)


def tree_size(path: Path) -> int:
    """Bytes of the regular files under `path`: what Lambda counts once the zip is unpacked."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def test_ltv_functions_run_on_schedules_within_lambdas_limit_and_rebuild_resumes_from_the_checkpoints_table(template):
    resources = template["Resources"]
    for name, expression in (("TrainLtvFunction", "cron("), ("RebuildLtvFunction", "rate(")):
        properties = resources[name]["Properties"]
        assert resources[name]["Metadata"]["BuildMethod"] == "makefile"
        assert (ROOT / properties["CodeUri"] / "Makefile").is_file() and properties["Timeout"] <= 900
        (event,) = properties["Events"].values()
        assert event["Type"] == "ScheduleV2" and event["Properties"]["ScheduleExpression"].startswith(expression)
        sample = f"{properties['CodeUri'].split('/')[-1].replace('_', '-')}-schedule.json"
        assert json.loads(event["Properties"]["Input"]) == load_event(sample)
    rebuild = resources["RebuildLtvFunction"]["Properties"]
    # An invocation keeps a minute in hand to checkpoint; runs start daily and resume on every firing between.
    assert rebuild["Timeout"] > 60 and rebuild["Events"]["Rebuild"]["Properties"]["ScheduleExpression"] == "rate(15 minutes)"
    assert int(rebuild["Environment"]["Variables"]["LTV_REBUILD_EVERY_HOURS"]) * 60 > 15


def test_rebuild_ltv_policy_grants_every_call_the_handler_makes_and_no_more(template, small_ltv_model):
    """The sample batch ingested, a small LTV model published, then the scheduled event through the real handler on
    moto with each AWS call checked against what the template grants RebuildLtvFunction."""
    from tailor.ltv.scoring import MODEL_NAME
    from tailor.models import ModelRegistry
    from tailor.store.aws import S3BlobStore

    trained = small_ltv_model
    with recorded_functions() as (functions, calls):
        functions.invoke("IngestFunction", load_event("ingest-kinesis-batch.json"))
        bucket = S3BlobStore(boto3.client("s3"), functions.environment["DATA_BUCKET"])
        ModelRegistry(bucket).publish(MODEL_NAME, trained.onnx, trained.metadata)
        calls.clear()
        report = functions.invoke("RebuildLtvFunction", load_event("rebuild-ltv-schedule.json"))
    assert report["status"] == "done" and report["scored"] > 0
    assert {"dynamodb:Scan", "dynamodb:UpdateItem", "dynamodb:BatchGetItem", "s3:GetObject", "s3:ListBucket"} <= {
        action for action, _, _ in calls}
    assert_granted(template, "RebuildLtvFunction", calls)


def test_rebuild_personas_runs_on_two_schedules_whose_inputs_are_the_sample_events(template):
    resources = template["Resources"]
    function = resources["RebuildPersonasFunction"]
    properties = function["Properties"]
    assert function["Metadata"]["BuildMethod"] == "makefile"
    assert (ROOT / properties["CodeUri"] / "Makefile").is_file() and properties["Timeout"] <= 900
    events = properties["Events"]
    assert {e["Type"] for e in events.values()} == {"ScheduleV2"}
    assert json.loads(events["Rebuild"]["Properties"]["Input"]) == load_event("rebuild-personas-schedule.json")
    assert json.loads(events["Refine"]["Properties"]["Input"]) == load_event("rebuild-personas-refine-schedule.json")
    # Refining runs between rebuilds, so more often.
    assert events["Rebuild"]["Properties"]["ScheduleExpression"] == "rate(1 day)"
    assert events["Refine"]["Properties"]["ScheduleExpression"] == "rate(1 hour)"
    api = resources["ApiFunction"]["Properties"]["Environment"]["Variables"]
    assert api["PERSONA_WEIGHT"] == {"Ref": "PersonaBlendWeight"} and api["PERSONA_MODE"] == {"Ref": "PersonaRerankMode"}
    assert template["Parameters"]["PersonaRerankMode"]["AllowedValues"] == ["mixture", "dominant"]


def test_personas_rebuild_and_ingest_on_moto_within_the_granted_calls(template):
    """Simulated shoppers through the real Ingest handler on moto, the scheduled rebuild through its handler, more
    events (now with persona mixtures and counters), then the refine schedule: every call the rebuild makes is one
    the template grants it, and Ingest's calls stay within its own grants."""
    from tailor_lab.simulator import simulate

    events = simulate(shoppers=40, days=0.08, seed=5).events
    half = len(events) // 2

    with recorded_functions(PERSONA_MODEL_REFRESH_SECONDS="0") as (functions, calls):
        ingest = functions.handler("IngestFunction")

        def ingested(part: list[dict], offset: int) -> None:
            for start in range(0, len(part), 100):
                batch = kinesis_batch(part[start:start + 100], first_sequence=offset + start)
                assert functions.invoke("IngestFunction", batch, handler=ingest) == {"batchItemFailures": []}
            functions.invoke("MergeCountersFunction", load_event("merge-counters-schedule.json"))

        ingested(events[:half], 0)
        rebuild = functions.handler("RebuildPersonasFunction")
        calls.clear()
        built = functions.invoke("RebuildPersonasFunction", load_event("rebuild-personas-schedule.json"),
                                 handler=rebuild)
        rebuild_calls = list(calls)
        ingested(events[half:], half)
        calls.clear()
        refined = functions.invoke("RebuildPersonasFunction", load_event("rebuild-personas-refine-schedule.json"),
                                   handler=rebuild)
        rebuild_calls += calls
        shoppers = boto3.resource("dynamodb").Table(functions.environment["SHOPPERS_TABLE"]).scan()["Items"]
        items = boto3.resource("dynamodb").Table(functions.environment["ITEMS_TABLE"]).scan()["Items"]
    assert built["published"] and refined["mode"] == "refine" and refined["ids"] == built["ids"]
    assert refined["refined_with"] > 0 and refined["adjustments"]["items_kept"] > 0
    assert sum("mixture" in s.get("personas", {}) for s in shoppers) > 10
    assert any(name.startswith("pc:") for item in items for name in item)
    assert {"dynamodb:Scan", "s3:GetObject", "s3:PutObject"} <= {action for action, _, _ in rebuild_calls}
    assert_granted(template, "RebuildPersonasFunction", rebuild_calls)
