"""The local AWS sizes DynamoDB attribute values to moto's byte counts, without moto's copies."""

import base64
import random

from moto.dynamodb.models.dynamo_type import DynamoType, Item

from tailor_local.aws import attribute_value_size


def _value(rng: random.Random, depth: int = 0) -> dict:
    kinds = ["S", "N", "B", "BOOL", "NULL", "SS", "NS", "BS"] + (["L", "M"] * 2 if depth < 4 else [])
    kind = rng.choice(kinds)
    text = "".join(rng.choice("aé€𝄞z0 ") for _ in range(rng.randrange(0, 6)))
    if kind == "S":
        return {"S": text}
    if kind == "N":
        return {"N": rng.choice(["0", "-12", "3.25", "1E+10", str(rng.random())])}
    if kind == "B":
        return {"B": base64.b64encode(text.encode()).decode()}
    if kind == "BOOL":
        return {"BOOL": rng.random() < 0.5}
    if kind == "NULL":
        return {"NULL": True}
    if kind == "SS":
        return {"SS": [text + str(i) for i in range(rng.randrange(1, 4))]}
    if kind == "NS":
        return {"NS": [str(rng.randrange(-1000, 1000)) for _ in range(rng.randrange(1, 4))]}
    if kind == "BS":
        return {"BS": [base64.b64encode(bytes([i])).decode() for i in range(rng.randrange(1, 4))]}
    if kind == "L":
        return {"L": [_value(rng, depth + 1) for _ in range(rng.randrange(0, 4))]}
    return {"M": {f"k{i}{text}": _value(rng, depth + 1) for i in range(rng.randrange(0, 4))}}


def test_attribute_values_are_sized_as_moto_sizes_them():
    assert DynamoType.size.__module__.startswith("moto")  # moto's own, not the local AWS's patch of it
    rng = random.Random(7)
    for _ in range(2000):
        value = DynamoType(_value(rng))
        assert attribute_value_size(value) == value.size(), value


def test_a_map_member_left_as_plain_json_is_sized_as_moto_sizes_it():
    value = DynamoType({"M": {"a": {"N": "1"}}})
    value.value["b"] = {"L": [{"S": "xy"}, {"M": {"c": {"BOOL": False}}}]}  # set raw, as an update may leave it

    assert attribute_value_size(value) == value.size()


def test_an_item_is_sized_as_moto_sizes_it():
    rng = random.Random(11)
    attrs = {f"attr{i}": _value(rng) for i in range(30)}
    item = Item(DynamoType({"S": "key"}), None, attrs)
    expected = item.size()

    patched = sum(len(k.encode()) + attribute_value_size(v) for k, v in item.attrs.items())

    assert patched == expected
