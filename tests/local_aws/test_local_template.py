"""Reading templates for the local stack: short tags, parameters, conditions, SAM globals and intrinsic functions."""

import textwrap

import pytest

from tailor_local.aws import plan_resources
from tailor_local.template import Template, TemplateError

ENDPOINT = "http://127.0.0.1:4566"

TEMPLATE = textwrap.dedent("""\
    AWSTemplateFormatVersion: "2010-09-09"
    Transform: AWS::Serverless-2016-10-31
    Parameters:
      Stage: {Type: String, Default: dev, AllowedValues: [dev, prod]}
      Zones: {Type: CommaDelimitedList, Default: "a,b"}
    Conditions:
      IsProd: !Equals [!Ref Stage, prod]
      IsDev: !Not [!Condition IsProd]
    Globals:
      Function:
        Timeout: 10
        Layers: [!Ref SharedLayer]
        Environment:
          Variables:
            TABLE: !Ref Table
            STAGE: !Ref Stage
    Resources:
      Table:
        Type: AWS::DynamoDB::Table
        Properties:
          KeySchema: [{AttributeName: id, KeyType: HASH}]
      ProdOnlyQueue:
        Type: AWS::SQS::Queue
        Condition: IsProd
      Queue:
        Type: AWS::SQS::Queue
      Bucket:
        Type: AWS::S3::Bucket
      SharedLayer:
        Type: AWS::Serverless::LayerVersion
        Properties: {ContentUri: layers/shared}
      OwnLayer:
        Type: AWS::Serverless::LayerVersion
        Properties: {ContentUri: layers/own}
      Worker:
        Type: AWS::Serverless::Function
        Properties:
          CodeUri: functions/worker
          Handler: app.handler
          Timeout: 30
          Layers: [!Ref OwnLayer]
          Environment:
            Variables:
              STAGE: overridden
              QUEUE: !Ref Queue
              BUCKET_ARN: !GetAtt Bucket.Arn
              KEY_PREFIX: !Sub "${AWS::StackName}/${Stage}/${Table.Arn}/${!Literal}"
              NAMED: !Sub ["${Name}-x", {Name: !Ref Stage}]
              CHOSEN: !If [IsProd, big, small]
              MAYBE: !If [IsProd, extra, !Ref AWS::NoValue]
              JOINED: !Join ["+", !Ref Zones]
              SECOND: !Select [1, !Split [",", "p,q,r"]]
""")


@pytest.fixture
def template(tmp_path):
    (tmp_path / "template.yaml").write_text(TEMPLATE)
    return Template.load(tmp_path / "template.yaml", stack_name="demo")


def resolved_env(template):
    resources = plan_resources(template, ENDPOINT)
    return template.resolve(template.functions()["Worker"].properties, resources)["Environment"]["Variables"]


def test_short_tags_and_intrinsics_resolve_to_local_names(template):
    env = resolved_env(template)
    assert env["TABLE"] == "demo-Table"
    assert env["QUEUE"] == f"{ENDPOINT}/123456789012/demo-Queue"
    assert env["BUCKET_ARN"] == "arn:aws:s3:::demo-bucket"
    assert env["KEY_PREFIX"] == "demo/dev/arn:aws:dynamodb:us-east-1:123456789012:table/demo-Table/${Literal}"
    assert env["NAMED"] == "dev-x"
    assert env["JOINED"] == "a+b"
    assert env["SECOND"] == "q"


def test_conditions_choose_values_and_drop_resources(template, tmp_path):
    env = resolved_env(template)
    assert env["CHOSEN"] == "small" and "MAYBE" not in env
    assert "ProdOnlyQueue" not in template.resources

    prod = Template.load(tmp_path / "template.yaml", stack_name="demo", parameter_overrides={"Stage": "prod"})
    prod_env = resolved_env(prod)
    assert prod_env["CHOSEN"] == "big" and prod_env["MAYBE"] == "extra"
    assert "ProdOnlyQueue" in prod.resources


def test_globals_merge_as_sam_merges_them(template):
    worker = template.functions()["Worker"].properties
    assert worker["Timeout"] == 30  # scalars: the function wins
    assert worker["Layers"] == [{"Ref": "SharedLayer"}, {"Ref": "OwnLayer"}]  # lists: globals first
    variables = worker["Environment"]["Variables"]
    assert variables["STAGE"] == "overridden" and variables["TABLE"] == {"Ref": "Table"}  # maps: merged


def test_parameters_are_checked(tmp_path):
    (tmp_path / "template.yaml").write_text(TEMPLATE)
    with pytest.raises(TemplateError, match="not one of"):
        Template.load(tmp_path / "template.yaml", parameter_overrides={"Stage": "qa"})
    with pytest.raises(TemplateError, match="unknown parameters"):
        Template.load(tmp_path / "template.yaml", parameter_overrides={"Nope": "1"})


def test_what_cannot_be_evaluated_locally_is_an_error(template):
    resources = plan_resources(template, ENDPOINT)
    with pytest.raises(TemplateError, match="Fn::ImportValue"):
        template.resolve({"Fn::ImportValue": "other-stack-output"}, resources)
    with pytest.raises(TemplateError, match="unknown name"):
        template.resolve({"Ref": "Missing"}, resources)
    with pytest.raises(TemplateError, match="no Table.StreamArn"):
        template.resolve({"Fn::GetAtt": ["Table", "StreamArn"]}, resources)


def test_a_broken_template_says_so(tmp_path):
    (tmp_path / "template.yaml").write_text("Resources: [\n")
    with pytest.raises(TemplateError, match="not a readable template"):
        Template.load(tmp_path / "template.yaml")
