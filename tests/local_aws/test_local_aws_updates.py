"""The local AWS applies the state tables' plain updates itself, leaving items, answers and errors as moto leaves
them."""

import base64

import pytest
from moto import mock_aws

from tailor_local.aws import ACCOUNT_ID, _plain_actions, _plain_update

KEY = {"id": {"S": "k"}}
NAMES = {"#wm": "wm", "#a": "a", "#b": "b", "#c": "c", "#n": "n", "#m": "m"}
BLOB = base64.b64encode(b"\x00\xffbytes").decode()


@pytest.fixture
def backend():
    import boto3
    from moto.dynamodb.models import dynamodb_backends

    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        for table in ("by_moto", "plain"):
            client.create_table(TableName=table, BillingMode="PAY_PER_REQUEST",
                                AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                                KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}])
        yield dynamodb_backends[ACCOUNT_ID]["us-east-1"]


# (update expression, its values, condition, what it does)
STEPS = [
    ("SET #wm = :one, #a = :s, #b = :n", {":one": {"N": "1"}, ":s": {"S": "x"}, ":n": {"N": "0.1"}},
     "attribute_not_exists(#wm)", "creates the item"),
    ("SET #wm = :two, #c = :m ADD #b :n, #n :k", {":two": {"N": "2"}, ":m": {"M": {"l": {"L": [{"S": "q"}, {"N": "3"}]},
                                                                           "b": {"B": BLOB}, "t": {"BOOL": True}}},
                                                ":n": {"N": "0.2"}, ":k": {"N": "-7"}, ":one": {"N": "1"}},
     "#wm = :one", "adds to a decimal and to a missing number; sets a map"),
    ("SET #wm = :three, #a = :e, #m = :z ADD #n :k", {":three": {"N": "3"}, ":e": {"S": ""}, ":z": {"NULL": True},
                                                      ":k": {"N": "12"}, ":two": {"N": "2"}},
     "attribute_not_exists(#wm) OR #wm < :three", "sets an empty string and a null"),
    ("SET #wm = :nine, #a = :s", {":nine": {"N": "9"}, ":s": {"S": "y"}, ":one": {"N": "1"}},
     "#wm = :one", "fails its condition"),
]


def test_plain_updates_leave_items_and_errors_as_moto_leaves_them(backend):
    from moto.dynamodb.exceptions import ConditionalCheckFailed
    from moto.dynamodb.models import DynamoDBBackend

    assert DynamoDBBackend.update_item.__module__.startswith("moto")  # moto's own, not this module's patch of it
    table = backend.get_table("plain")
    for expression, values, condition, what in STEPS:
        outcomes = []
        for apply in (lambda r: DynamoDBBackend.update_item(backend, "by_moto", KEY, expression, NAMES, values,
                                                            condition_expression=condition,
                                                            return_values_on_condition_check_failure=r),
                      lambda r: _plain_update(backend, table, KEY, expression, NAMES, values,
                                              condition_expression=condition,
                                              return_values_on_condition_check_failure=r)):
            for returned in ("ALL_OLD", None):
                try:
                    outcomes.append(("item", apply(returned).to_json()))
                except ConditionalCheckFailed as error:
                    outcomes.append(("refused", error.description, getattr(error, "item", None)))
        assert outcomes[2:] == outcomes[:2], what
    assert outcomes[0][0] == "refused"
    assert backend.get_item("plain", KEY).to_json() == backend.get_item("by_moto", KEY).to_json()


def test_a_refused_update_of_a_missing_item_creates_nothing(backend):
    from moto.dynamodb.exceptions import ConditionalCheckFailed

    with pytest.raises(ConditionalCheckFailed):
        _plain_update(backend, backend.get_table("plain"), KEY, "SET #a = :s", {"#a": "a"}, {":s": {"S": "x"},
                      ":one": {"N": "1"}}, condition_expression="#a = :one")
    assert backend.get_item("plain", KEY) is None


@pytest.mark.parametrize(("expression", "names", "values"), [
    ("REMOVE #a", {"#a": "a"}, {}),
    ("SET #a = :s + :s", {"#a": "a"}, {":s": {"N": "1"}}),
    ("SET a = :s", {}, {":s": {"S": "x"}}),
    ("set #a = :s", {"#a": "a"}, {":s": {"S": "x"}}),
    ("ADD #a :s", {"#a": "a"}, {":s": {"SS": ["x"]}}),
    ("SET #a = :s", {"#a": "a"}, {":s": {"SS": []}}),
    ("SET #a = :s, #b = :s", {"#a": "a", "#b": "a"}, {":s": {"S": "x"}}),
    ("SET #k = :s", {"#k": "id"}, {":s": {"S": "x"}}),
    ("SET #a = :s", {"#a": "a"}, {":t": {"S": "x"}}),
    ("SET #a = :s ADD #b :s", {"#a": "a", "#b": "b"}, {":s": {"S": "x"}}),
])
def test_any_other_update_is_left_to_moto(backend, expression, names, values):
    assert _plain_update(backend, backend.get_table("plain"), KEY, expression, names, values) is None
    assert backend.get_item("plain", KEY) is None


def test_an_add_to_an_attribute_that_is_not_a_number_is_left_to_moto(backend):
    table = backend.get_table("plain")
    _plain_update(backend, table, KEY, "SET #a = :s", {"#a": "a"}, {":s": {"S": "x"}})
    assert _plain_update(backend, table, KEY, "ADD #a :n", {"#a": "a"}, {":n": {"N": "1"}}) is None


def test_the_actions_of_a_plain_update_are_read_in_order():
    assert _plain_actions(" SET #wm = :new,#f0=:f0 ADD #a0 :a0 , #a1  :a1 ") == (
        ("SET", "#wm", ":new"), ("SET", "#f0", ":f0"), ("ADD", "#a0", ":a0"), ("ADD", "#a1", ":a1"))
    assert _plain_actions("ADD #a0 :a0 SET #b = :b") is None
