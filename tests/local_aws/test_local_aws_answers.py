"""The local AWS writes DynamoDB attribute values directly, exactly as moto's generic serializer writes them."""

import base64
import json
import uuid

import pytest
from moto.core.serialize import BaseJSONSerializer, JSONSerializer, XFormedAttributePicker
from moto.core.utils import get_service_model

from tailor_local.aws import LocalAws, MotoServer, _plain_attribute_values

ITEM = {
    "id": {"S": "u-1"}, "count": {"N": "42"}, "ratio": {"N": "0.125"}, "flag": {"BOOL": False},
    "nothing": {"NULL": True}, "blob": {"B": b"\x00\xffbytes"}, "tags": {"SS": ["a", "b"]}, "scores": {"NS": ["1", "2.5"]},
    "blobs": {"BS": [b"\x01", b"\x02\x03"]}, "empty": {"S": ""}, "unset": {"S": None},
    "nested": {"M": {"list": {"L": [{"S": "x"}, {"N": "1"}, {"M": {"deep": {"BOOL": True}}}, {"L": []}]},
                     "map": {"M": {}}, "blob": {"B": b"\x10"}}},
    "odd": {"S": "a", "N": "1"},  # not an attribute value: the generic walk writes what it makes of it
}


@pytest.mark.parametrize(("operation", "result"), [
    ("BatchGetItem", {"Responses": {"t": [ITEM, {"id": {"S": "u-2"}}]}, "UnprocessedKeys": {},
                      "ConsumedCapacity": [{"CapacityUnits": 2, "TableName": "t"}]}),
    ("GetItem", {"Item": ITEM}),
    ("Query", {"Items": [ITEM], "Count": 1, "ScannedCount": 1, "LastEvaluatedKey": {"id": {"S": "u-1"}}}),
    ("UpdateItem", {"Attributes": ITEM}),
])
def test_answers_with_attribute_values_are_written_as_moto_writes_them(monkeypatch, operation, result):
    model = get_service_model("dynamodb").operation_model(operation)  # as moto loads it

    def body():
        serializer = JSONSerializer(operation_model=model, value_picker=XFormedAttributePicker())
        return json.loads(serializer.serialize(result)["body"])

    generic = body()
    monkeypatch.setattr(BaseJSONSerializer, "_serialize_type_structure",
                        _plain_attribute_values(BaseJSONSerializer._serialize_type_structure))
    assert body() == generic


def test_items_of_every_attribute_type_come_back_as_they_were_put():
    item = {k: v for k, v in ITEM.items() if k not in ("odd", "unset")}
    with MotoServer(port=0) as server:
        dynamodb = LocalAws(server.endpoint).client("dynamodb")
        table = f"t-{uuid.uuid4().hex[:8]}"
        dynamodb.create_table(TableName=table, BillingMode="PAY_PER_REQUEST",
                              AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                              KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}])
        dynamodb.put_item(TableName=table, Item=item)
        assert dynamodb.get_item(TableName=table, Key={"id": {"S": "u-1"}}, ConsistentRead=True)["Item"] == item
        got = dynamodb.batch_get_item(RequestItems={table: {"Keys": [{"id": {"S": "u-1"}}]}})
        assert got["Responses"][table] == [item]


def test_requests_are_routed_and_dispatched_as_moto_routes_and_dispatches_them(monkeypatch):
    from moto import backends
    from moto.core import responses
    from moto.dynamodb.responses import DynamoHandler

    from tailor_local.aws import _look_up_dispatch_once

    modules, methods = list(backends.list_of_moto_modules()), responses.method_names_from_class(DynamoHandler)
    monkeypatch.setattr(backends, "list_of_moto_modules", backends.list_of_moto_modules)
    monkeypatch.setattr(responses, "method_names_from_class", responses.method_names_from_class)
    _look_up_dispatch_once()
    assert "dynamodb" in modules and "update_item" in methods
    assert list(backends.list_of_moto_modules()) == modules == list(backends.list_of_moto_modules())
    assert responses.method_names_from_class(DynamoHandler) == methods


def test_results_are_converted_to_plain_data_as_moto_converts_them(monkeypatch):
    import datetime as dt
    from collections import OrderedDict

    from moto.dynamodb import responses
    from moto.dynamodb.models import DynamoType, utilities

    from tailor_local.aws import _convert_results_plainly

    typed = {k: DynamoType(v) for k, v in ITEM.items() if k not in ("odd", "unset")}
    typed["blob"] = DynamoType({"B": base64.b64encode(b"\x00\xff").decode()})
    typed["blobs"] = DynamoType({"BS": [base64.b64encode(b"\x01").decode(), b"\x02"]})
    result = {"Responses": {"t": [typed, {"id": typed["id"]}]}, "Count": 2, "Ratio": 0.5, "Flag": True, "Nothing": None,
              "At": dt.datetime(2026, 12, 5, tzinfo=dt.UTC), "Ordered": OrderedDict(a=[typed["nested"], b"x"])}
    generic = utilities.dynamo_to_dict(result)
    monkeypatch.setattr(utilities, "dynamo_to_dict", utilities.dynamo_to_dict)
    monkeypatch.setattr(responses, "dynamo_to_dict", responses.dynamo_to_dict)
    _convert_results_plainly()
    assert responses.dynamo_to_dict is utilities.dynamo_to_dict
    assert responses.dynamo_to_dict(result) == generic
    assert generic["Responses"]["t"][0]["blob"] == {"B": b"\x00\xff"}
