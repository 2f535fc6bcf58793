"""The local stack creates in moto what the template declares: names from logical ids, keys, TTL, streams, queues."""

import textwrap

import pytest

from tailor_local.aws import LocalAws, MotoServer, create_resources
from tailor_local.kinesis import kinesis_sources
from tailor_local.runtime import LambdaRuntime
from tailor_local.template import Template

from tests.helpers import ROOT


@pytest.fixture(scope="module")
def server():
    with MotoServer(port=0) as running:
        yield running


@pytest.fixture(scope="module")
def stack(server):
    template = Template.load(ROOT / "template.yaml", stack_name="res-test")
    aws = LocalAws(server.endpoint)
    return template, aws, create_resources(template, aws)


def test_every_table_has_the_templates_keys_billing_ttl_and_recovery(stack):
    template, aws, resources = stack
    dynamodb = aws.client("dynamodb")
    tables = template.resources_of_type("AWS::DynamoDB::Table")
    assert set(tables) >= {"ShoppersTable", "SessionsTable", "ItemsTable", "AssociationsTable", "QueriesTable",
                           "CheckpointsTable"}
    for logical_id, declared in tables.items():
        props = declared["Properties"]
        name = resources.name(logical_id)
        assert name == f"res-test-{logical_id}"
        table = dynamodb.describe_table(TableName=name)["Table"]
        assert table["KeySchema"] == props["KeySchema"]
        assert sorted(table["AttributeDefinitions"], key=str) == sorted(props["AttributeDefinitions"], key=str)
        assert table["BillingModeSummary"]["BillingMode"] == props["BillingMode"]

        ttl = dynamodb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
        if props.get("TimeToLiveSpecification", {}).get("Enabled"):
            attribute = props["TimeToLiveSpecification"]["AttributeName"]
            assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": attribute}
        else:
            assert ttl["TimeToLiveStatus"] == "DISABLED"

        backups = dynamodb.describe_continuous_backups(TableName=name)["ContinuousBackupsDescription"]
        recovery = backups["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"]
        wanted = props.get("PointInTimeRecoverySpecification", {}).get("PointInTimeRecoveryEnabled", False)
        assert recovery == ("ENABLED" if wanted else "DISABLED"), logical_id


def test_sessions_expire_by_ttl_as_the_contract_says(stack):
    _, aws, resources = stack
    ttl = aws.client("dynamodb").describe_time_to_live(TableName=resources.name("SessionsTable"))
    assert ttl["TimeToLiveDescription"]["AttributeName"] == "expires_at"


def test_stream_queue_and_bucket_exist_as_declared(stack):
    template, aws, resources = stack
    for logical_id, declared in template.resources_of_type("AWS::Kinesis::Stream").items():
        summary = aws.client("kinesis").describe_stream_summary(StreamName=resources.name(logical_id))
        summary = summary["StreamDescriptionSummary"]
        mode = declared["Properties"].get("StreamModeDetails", {}).get("StreamMode", "PROVISIONED")
        assert summary["StreamModeDetails"]["StreamMode"] == mode
        assert summary["StreamARN"] == resources[logical_id].arn
    for logical_id, declared in template.resources_of_type("AWS::SQS::Queue").items():
        attributes = aws.client("sqs").get_queue_attributes(QueueUrl=resources.ref(logical_id),
                                                            AttributeNames=["All"])["Attributes"]
        assert attributes["QueueArn"] == resources[logical_id].arn
        if "MessageRetentionPeriod" in declared.get("Properties", {}):
            assert attributes["MessageRetentionPeriod"] == str(declared["Properties"]["MessageRetentionPeriod"])
    for logical_id, declared in template.resources_of_type("AWS::S3::Bucket").items():
        name = resources.name(logical_id)
        assert name == f"res-test-{logical_id}".lower()
        versioning = aws.client("s3").get_bucket_versioning(Bucket=name).get("Status")
        assert versioning == declared["Properties"].get("VersioningConfiguration", {}).get("Status")


def test_function_environment_names_the_resources_that_exist(stack):
    template, aws, resources = stack
    ingest = LambdaRuntime(template, resources, aws).find("ingest")
    env = ingest.environment
    for variable, logical_id in (("SHOPPERS_TABLE", "ShoppersTable"), ("SESSIONS_TABLE", "SessionsTable"),
                                 ("ITEMS_TABLE", "ItemsTable"), ("ASSOCIATIONS_TABLE", "AssociationsTable"),
                                 ("QUERIES_TABLE", "QueriesTable"), ("CHECKPOINTS_TABLE", "CheckpointsTable")):
        assert env[variable] == resources.name(logical_id)
        aws.client("dynamodb").describe_table(TableName=env[variable])
    aws.client("s3").head_bucket(Bucket=env["DATA_BUCKET"])
    assert env["AWS_ENDPOINT_URL"] == aws.endpoint
    assert ingest.code_dir == ROOT / "functions" / "ingest"
    assert ROOT / "layers" / "tailor" / "python" in ingest.layer_dirs
    assert ingest.timeout_s == template.functions()["IngestFunction"].properties["Timeout"]


def test_kinesis_settings_come_from_the_template(stack):
    template, _, resources = stack
    declared = template.functions()["IngestFunction"].events["Stream"]["Properties"]
    (source,) = [s for s in kinesis_sources(template, resources) if s.function_id == "IngestFunction"]
    assert source.stream_name == resources.name("EventStream")
    assert source.batch_size == declared["BatchSize"]
    assert source.batching_window_s == declared["MaximumBatchingWindowInSeconds"]
    assert source.starting_position == declared["StartingPosition"]
    assert source.report_batch_item_failures == ("ReportBatchItemFailures" in declared["FunctionResponseTypes"])
    assert source.bisect_on_function_error == declared["BisectBatchOnFunctionError"]
    assert source.maximum_retry_attempts == declared["MaximumRetryAttempts"]
    assert source.on_failure_queue_url == resources.ref("IngestFailureQueue")


def test_any_template_is_created_from_what_it_declares(server, tmp_path):
    (tmp_path / "template.yaml").write_text(textwrap.dedent("""\
        Resources:
          Events:
            Type: AWS::Kinesis::Stream
            Properties: {ShardCount: 3, RetentionPeriodHours: 48}
          Dead:
            Type: AWS::SQS::Queue
            Properties: {FifoQueue: true}
          Work:
            Type: AWS::SQS::Queue
            Properties:
              FifoQueue: true
              VisibilityTimeout: 45
              RedrivePolicy: {deadLetterTargetArn: !GetAtt Dead.Arn, maxReceiveCount: 3}
          Orders:
            Type: AWS::DynamoDB::Table
            Properties:
              BillingMode: PAY_PER_REQUEST
              AttributeDefinitions:
                - {AttributeName: pk, AttributeType: S}
                - {AttributeName: sk, AttributeType: N}
                - {AttributeName: customer, AttributeType: S}
              KeySchema: [{AttributeName: pk, KeyType: HASH}, {AttributeName: sk, KeyType: RANGE}]
              GlobalSecondaryIndexes:
                - IndexName: by-customer
                  KeySchema: [{AttributeName: customer, KeyType: HASH}]
                  Projection: {ProjectionType: ALL}
              StreamSpecification: {StreamViewType: NEW_IMAGE}
        """))
    template = Template.load(tmp_path / "template.yaml", stack_name="any")
    aws = LocalAws(server.endpoint)
    resources = create_resources(template, aws)

    stream = aws.client("kinesis").describe_stream_summary(StreamName="any-Events")["StreamDescriptionSummary"]
    assert stream["OpenShardCount"] == 3 and stream["RetentionPeriodHours"] == 48
    work = aws.client("sqs").get_queue_attributes(QueueUrl=resources.ref("Work"), AttributeNames=["All"])["Attributes"]
    assert resources.name("Work") == "any-Work.fifo" and work["VisibilityTimeout"] == "45"
    assert resources["Dead"].arn in work["RedrivePolicy"]
    table = aws.client("dynamodb").describe_table(TableName="any-Orders")["Table"]
    assert [k["AttributeName"] for k in table["KeySchema"]] == ["pk", "sk"]
    assert table["GlobalSecondaryIndexes"][0]["IndexName"] == "by-customer"
    assert resources.attribute("Orders", "StreamArn") == table["LatestStreamArn"]
