"""The DynamoDB store reads items as DynamoDB sent them and makes the same rows of them as boto3's deserializer does,
and writes values as boto3's serializer does."""

import base64
import random
from decimal import Decimal

import boto3
import pytest
from boto3.dynamodb.types import Binary, TypeDeserializer, TypeSerializer
from moto import mock_aws

from tailor.store.aws import DynamoStateStore, _decimals, from_dynamo, to_dynamo
from tailor_local.aws import create_state_tables


def _deserialized(item):
    """The rows as the store made them before: boto3's TypeDeserializer, then Decimals as int or float."""
    def plain(value):
        if isinstance(value, Decimal):
            return int(value) if value == value.to_integral_value() else float(value)
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (list, set)):
            return [plain(v) for v in value]
        return value

    deserializer = TypeDeserializer()
    return {k: plain(deserializer.deserialize(v)) for k, v in item.items()}


def _value(rng, depth=0):
    kinds = ["S", "N", "BOOL", "NULL", "SS", "NS"] + (["L", "M", "M"] if depth < 3 else [])
    kind = rng.choice(kinds)
    if kind == "S":
        return {"S": "".join(rng.choice("aé€ 0") for _ in range(rng.randrange(0, 5)))}
    if kind == "N":
        return {"N": rng.choice(["0", "-12", "3.25", "1E+3", "-0.5", "12.000", "1e-7", "123456789012345678901234567890",
                                 str(rng.random()), str(rng.randrange(-10**6, 10**6))])}
    if kind == "BOOL":
        return {"BOOL": rng.random() < 0.5}
    if kind == "NULL":
        return {"NULL": True}
    if kind == "SS":
        return {"SS": [f"s{i}" for i in range(rng.randrange(1, 4))]}
    if kind == "NS":
        return {"NS": [str(rng.randrange(-99, 99) / 4) for _ in range(rng.randrange(1, 4))]}
    if kind == "L":
        return {"L": [_value(rng, depth + 1) for _ in range(rng.randrange(0, 4))]}
    return {"M": {f"k{i}": _value(rng, depth + 1) for i in range(rng.randrange(0, 4))}}


def test_items_become_the_rows_boto3s_deserializer_makes():
    rng = random.Random(3)
    for _ in range(3000):
        item = {f"a{i}": _value(rng) for i in range(rng.randrange(1, 6))}
        mine, theirs = from_dynamo(item), _deserialized(item)
        assert mine == theirs
        assert [type(v) for v in mine.values()] == [type(v) for v in theirs.values()]


def _python(rng, depth=0):
    kinds = ["str", "int", "big", "float", "bool", "none", "set", "bytes", "decimal"] + \
        (["list", "tuple", "dict", "dict"] if depth < 3 else [])
    kind = rng.choice(kinds)
    if kind == "str":
        return "".join(rng.choice("aé€ 0") for _ in range(rng.randrange(0, 5)))
    if kind == "int":
        return rng.randrange(-10**6, 10**6)
    if kind == "big":
        return rng.choice([10**37, -(10**38) + 1, 2**64])
    if kind == "float":
        return rng.choice([0.1, -2.5, 1e-7, 3.0, 1e20, rng.random()])
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "none":
        return None
    if kind == "set":
        return {f"s{i}" for i in range(rng.randrange(1, 3))}
    if kind == "bytes":
        return b"\x00\x01"
    if kind == "decimal":
        return Decimal("12.50")
    if kind in ("list", "tuple"):
        items = [_python(rng, depth + 1) for _ in range(rng.randrange(0, 4))]
        return items if kind == "list" else tuple(items)
    return {f"k{i}": _python(rng, depth + 1) for i in range(rng.randrange(0, 4))}


def _serialized(value):
    """What the store wrote before: floats as exact decimals, then boto3's TypeSerializer."""
    return TypeSerializer().serialize(_decimals(value))


def test_values_become_the_attribute_values_boto3s_serializer_makes():
    rng = random.Random(9)
    for _ in range(3000):
        value = _python(rng)
        assert to_dynamo(value) == _serialized(value), value


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 10**40, 1e300, 5e-324])
def test_values_dynamodb_cannot_hold_are_refused_as_boto3_refuses_them(value):
    with pytest.raises(Exception) as mine:
        to_dynamo({"a": [value]})
    with pytest.raises(Exception) as theirs:
        _serialized({"a": [value]})
    assert type(mine.value) is type(theirs.value)


@pytest.mark.parametrize("value", [0.1 + 0.2, -0.0, 1e-130, 1e125, 2.0**-60, -1.7976931348623157e125])
def test_floats_at_dynamodbs_limits_become_what_boto3s_serializer_makes(value):
    assert to_dynamo(value) == _serialized(value)


def test_binary_values_are_read_from_botocore_bytes_and_from_the_wires_base64_alike():
    assert from_dynamo({"b": {"B": b"\x00\xff"}}) == from_dynamo({"b": {"B": base64.b64encode(b"\x00\xff").decode()}}) \
        == {"b": Binary(b"\x00\xff")}


def test_an_unknown_attribute_type_is_refused_naming_it():
    with pytest.raises(TypeError, match="'Q'"):
        from_dynamo({"a": {"Q": "1"}})


@pytest.fixture
def tables():
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        yield client, create_state_tables(client, "test")


def test_reads_give_the_rows_botocores_own_parse_gives(tables):
    client, names = tables
    rng = random.Random(5)
    rows = {f"s{n}": {"user_id": f"u{n % 7}", **{f"f{i}": from_dynamo({"x": _value(rng)})["x"] for i in range(8)},
                      "blob": b"\x01\x02" if n % 3 == 0 else "text"}
            for n in range(150)}
    for key, row in rows.items():
        client.put_item(TableName=names["sessions"], Item={"session_id": {"S": key},
                                                           **{k: to_dynamo(v) for k, v in row.items()}})
    plain_client = boto3.client("dynamodb", region_name="us-east-1")  # botocore's parse, no store hooked to it
    expected = {item["session_id"]["S"]: _deserialized(item)
                for page in plain_client.get_paginator("scan").paginate(TableName=names["sessions"])
                for item in page["Items"]}
    store = DynamoStateStore(client, names)

    read = store.read_many({"sessions": list(rows) + ["missing"]})["sessions"]
    scanned, _ = store.scan("sessions", limit=1000)
    queried = store.query("sessions", "user_id", "u3")

    assert read == expected
    sent = client.batch_get_item(RequestItems={names["sessions"]: {"Keys": [{"session_id": {"S": "s0"}}]}})
    assert sent["Responses"][names["sessions"]][0]["blob"] == {"B": "AQI="}  # as sent: botocore left it unparsed
    assert {row["session_id"]: row for row in scanned} == expected
    assert queried and all(row == {k: expected[row["session_id"]][k] for k in row} for row in queried)
    assert store.calls["read"] == 2  # 150 keys: two BatchGetItem calls of at most 100


def test_a_refused_read_still_raises_botocores_error(tables):
    client, names = tables
    store = DynamoStateStore(client, {**names, "sessions": "no-such-table"})

    with pytest.raises(client.exceptions.ResourceNotFoundException):
        store.read_many({"sessions": ["s1"]})
