"""AWS adapters of the store ports: DynamoDB for state rows and counters, S3 for blobs, SQS for queues."""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from decimal import Clamped, Context, Decimal, Inexact, Overflow, Rounded, Underflow
from typing import Any

from botocore.exceptions import ClientError

from tailor.store.port import INDEXES, TABLES, BlobInfo, Conflict, check_segment

__all__ = ["DynamoStateStore", "S3BlobStore", "SqsQueue"]

logger = logging.getLogger(__name__)
DELETE_TRIES = 3  # DeleteObjects calls for the keys S3 could not delete the time before

_BATCH_GET_LIMIT = 100
_BATCH_WRITE_LIMIT = 25
_UNPROCESSED_RETRIES = 8


class DynamoStateStore:
    """The StateStore port on DynamoDB; `calls` counts the API calls made, by kind."""

    def __init__(self, client: Any, tables: Mapping[str, str]):
        self.client = client
        self.tables = dict(tables)
        self.calls: dict[str, int] = {"read": 0, "write": 0}
        self._calls_lock = threading.Lock()  # jobs call from several threads (a parallel scan, the merge's writers)
        events = getattr(getattr(client, "meta", None), "events", None)
        if events is not None:  # a real client (a test's stand-in has none)
            for operation in _ITEMS_MEMBER:
                events.register(f"before-parse.dynamodb.{operation}", _items_as_sent, unique_id=f"tailor-{operation}")

    def _count(self, kind: str) -> None:
        with self._calls_lock:
            self.calls[kind] = self.calls.get(kind, 0) + 1

    def read(self, table: str, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        return self.read_many({table: keys})[table]

    def read_many(self, requests: Mapping[str, Iterable[str]]) -> dict[str, dict[str, dict[str, Any]]]:
        pending = [(table, key) for table, keys in requests.items() for key in dict.fromkeys(keys)]
        rows: dict[str, dict[str, dict[str, Any]]] = {table: {} for table in requests}
        by_name = {self.tables[table]: table for table in requests}
        for start in range(0, len(pending), _BATCH_GET_LIMIT):
            request: dict[str, Any] = {}
            for table, key in pending[start:start + _BATCH_GET_LIMIT]:
                entry = request.setdefault(self.tables[table], {"Keys": [], "ConsistentRead": True})
                entry["Keys"].append({TABLES[table]: {"S": key}})
            for attempt in range(_UNPROCESSED_RETRIES):
                self._count("read")
                response = self.client.batch_get_item(RequestItems=request)
                for name, items in response["Responses"].items():
                    table = by_name[name]
                    for item in items:
                        row = from_dynamo(item)
                        rows[table][row[TABLES[table]]] = row
                request = response.get("UnprocessedKeys") or {}
                if not request:
                    break
                time.sleep(min(1.0, 0.05 * 2**attempt))
            else:
                raise RuntimeError(f"DynamoDB left keys unprocessed after {_UNPROCESSED_RETRIES} tries")
        return rows

    def write_state(self, table, key, fields, *, watermark, expected, new, unchanged=None) -> None:
        names, values, sets = {"#wm": watermark}, {":new": new}, ["#wm = :new"]
        for i, (field_name, value) in enumerate(fields.items()):
            if field_name == TABLES[table]:
                continue
            names[f"#f{i}"] = field_name
            values[f":f{i}"] = value
            sets.append(f"#f{i} = :f{i}")
        if expected is None:
            condition = "attribute_not_exists(#wm)"
        else:
            condition = "#wm = :expected"
            values[":expected"] = expected
        if unchanged is not None:
            names["#unchanged"] = unchanged[0]
            if unchanged[1] is None:  # absent, or null: what a read gives as None
                condition += " AND (attribute_not_exists(#unchanged) OR attribute_type(#unchanged, :null))"
                values[":null"] = "NULL"
            else:
                condition += " AND #unchanged = :unchanged"
                values[":unchanged"] = unchanged[1]
        self._update(table, key, "SET " + ", ".join(sets), condition, names, values, watermark)

    def add(self, table, key, increments, latest, *, watermark, first, last) -> None:
        names, values = {"#wm": watermark}, {":first": first, ":last": last}
        adds, sets = [], ["#wm = :last"]
        for i, (name, amount) in enumerate(increments.items()):
            names[f"#a{i}"], values[f":a{i}"] = name, amount
            adds.append(f"#a{i} :a{i}")
        for i, (name, value) in enumerate(latest.items()):
            names[f"#s{i}"], values[f":s{i}"] = name, value
            sets.append(f"#s{i} = :s{i}")
        expression = "SET " + ", ".join(sets) + (" ADD " + ", ".join(adds) if adds else "")
        self._update(table, key, expression, "attribute_not_exists(#wm) OR #wm < :first", names, values, watermark)

    def delete(self, table: str, key: str) -> None:
        self._count("write")
        self.client.delete_item(TableName=self.tables[table], Key={TABLES[table]: {"S": key}})

    def delete_many(self, table: str, keys: Iterable[str]) -> None:
        keys = list(dict.fromkeys(keys))
        name, key_name = self.tables[table], TABLES[table]
        for start in range(0, len(keys), _BATCH_WRITE_LIMIT):
            request = {name: [{"DeleteRequest": {"Key": {key_name: {"S": key}}}}
                              for key in keys[start:start + _BATCH_WRITE_LIMIT]]}
            for attempt in range(_UNPROCESSED_RETRIES):
                self._count("write")
                request = self.client.batch_write_item(RequestItems=request).get("UnprocessedItems") or {}
                if not request:
                    break
                time.sleep(min(1.0, 0.05 * 2**attempt))
            else:
                raise RuntimeError(f"DynamoDB left deletes unprocessed after {_UNPROCESSED_RETRIES} tries")

    def replace(self, table: str, key: str, fields: Mapping[str, Any]) -> None:
        item = {name: to_dynamo(value) for name, value in fields.items() if name != TABLES[table]}
        self._count("write")
        self.client.put_item(TableName=self.tables[table], Item={**item, TABLES[table]: {"S": key}})

    def query(self, table: str, attribute: str, value: str) -> list[dict[str, Any]]:
        index, projected = INDEXES[(table, attribute)]
        names = (TABLES[table], attribute, *projected)
        rows: list[dict[str, Any]] = []
        pages = self.client.get_paginator("query").paginate(
            TableName=self.tables[table], IndexName=index, KeyConditionExpression="#a = :v",
            ProjectionExpression=", ".join(f"#p{i}" for i in range(len(names))),
            ExpressionAttributeNames={"#a": attribute, **{f"#p{i}": name for i, name in enumerate(names)}},
            ExpressionAttributeValues={":v": {"S": value}})
        for page in pages:
            self._count("query")
            rows += [from_dynamo(item) for item in page.get("Items", [])]
        return rows

    def scan(self, table: str, *, limit: int, start: str | None = None,
             attributes: Sequence[str] | None = None, segment: int = 0,
             segments: int = 1) -> tuple[list[dict[str, Any]], str | None]:
        check_segment(segment, segments)
        request: dict[str, Any] = {"TableName": self.tables[table], "Limit": limit}
        if segments > 1:
            request.update(Segment=segment, TotalSegments=segments)
        if start is not None:
            request["ExclusiveStartKey"] = {TABLES[table]: {"S": start}}
        if attributes:
            request["ProjectionExpression"] = ", ".join(f"#p{i}" for i in range(len(attributes)))
            request["ExpressionAttributeNames"] = {f"#p{i}": name for i, name in enumerate(attributes)}
        self._count("scan")
        response = self.client.scan(**request)
        last = response.get("LastEvaluatedKey")
        return [from_dynamo(item) for item in response.get("Items", [])], (last[TABLES[table]]["S"] if last else None)

    def annotate(self, table: str, key: str, fields: Mapping[str, Any], *, requires: str, stamp: str,
                 at: str) -> bool:
        names = {"#req": requires, "#stamp": stamp}
        values: dict[str, Any] = {":at": at}
        sets = ["#stamp = :at"]
        for i, (name, value) in enumerate(fields.items()):
            names[f"#f{i}"], values[f":f{i}"] = name, value
            sets.append(f"#f{i} = :f{i}")
        self._count("write")
        try:
            self.client.update_item(
                TableName=self.tables[table], Key={TABLES[table]: {"S": key}},
                UpdateExpression="SET " + ", ".join(sets),
                ConditionExpression="attribute_exists(#req) AND (attribute_not_exists(#stamp) OR #stamp <= :at)",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues={k: to_dynamo(v) for k, v in values.items()},
            )
        except ClientError as err:
            if err.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            return False
        return True

    def _update(self, table, key, expression, condition, names, values, watermark) -> None:
        self._count("write")
        try:
            self.client.update_item(
                TableName=self.tables[table],
                Key={TABLES[table]: {"S": key}},
                UpdateExpression=expression,
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues={k: to_dynamo(v) for k, v in values.items()},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as err:
            if err.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            old = err.response.get("Item")
            current = from_dynamo(old).get(watermark) if old else None
            raise Conflict(table, key, current) from None


class S3BlobStore:
    def __init__(self, client: Any, bucket: str):
        self.client = client
        self.bucket = bucket
        self._if_match: bool | None = None  # whether the SDK can send IfMatch, once looked at

    def put(self, key: str, body: bytes, content_type: str = "application/octet-stream") -> None:
        self.client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=content_type)

    def get(self, key: str) -> bytes:
        """The object's body; KeyError when there is none, as the port says (S3 answers NoSuchKey)."""
        try:
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except self.client.exceptions.NoSuchKey:
            raise KeyError(key) from None

    def get_tagged(self, key: str) -> tuple[bytes, str]:
        try:
            found = self.client.get_object(Bucket=self.bucket, Key=key)
        except self.client.exceptions.NoSuchKey:
            raise KeyError(key) from None
        return found["Body"].read(), found["ETag"]

    def replace_if(self, key: str, body: bytes, tag: str, content_type: str = "application/octet-stream") -> bool:
        """A conditional put (If-Match on the ETag); S3 answers 412 when the object changed, 409 when another
        conditional write of it is under way. An SDK older than S3's conditional writes (late 2024) cannot send it:
        the object is then written as it is (what was done before), and the log says so once."""
        if not self._conditional_puts():
            self.put(key, body, content_type)
            return True
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=content_type, IfMatch=tag)
        except self.client.exceptions.ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict",
                                                                "NoSuchKey"):
                return False
            raise
        return True

    def _conditional_puts(self) -> bool:
        if self._if_match is None:
            members = self.client.meta.service_model.operation_model("PutObject").input_shape.members
            self._if_match = "IfMatch" in members
            if not self._if_match:
                logger.warning("this SDK cannot make conditional puts (IfMatch): objects are rewritten unconditionally")
        return self._if_match

    def list(self, prefix: str) -> list[str]:
        return [info.key for info in self.describe(prefix)]

    def describe(self, prefix: str) -> Iterator[BlobInfo]:
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            for o in page.get("Contents", []):
                yield BlobInfo(o["Key"], o["ETag"], o["LastModified"].timestamp(), o["Size"])

    def copy_if(self, source: str, target: str, tag: str) -> bool:
        """CopyObject with CopySourceIfMatch: S3 answers 412 when the source changed. The source's tag is looked at
        first too, for stores that take the copy whatever its condition (moto)."""
        try:
            if self.client.head_object(Bucket=self.bucket, Key=source)["ETag"] != tag:
                return False
            self.client.copy_object(Bucket=self.bucket, Key=target, CopySource={"Bucket": self.bucket, "Key": source},
                                    CopySourceIfMatch=tag)
        except self.client.exceptions.ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("PreconditionFailed", "NoSuchKey", "404"):
                return False
            raise
        return True

    def delete_many(self, keys: Sequence[str]) -> None:
        """DeleteObjects, a thousand keys a call (its limit); a key it could not delete raises."""
        for start in range(0, len(keys), 1000):
            chunk = list(keys[start:start + 1000])
            for attempt in range(DELETE_TRIES):
                answer = self.client.delete_objects(Bucket=self.bucket, Delete={
                    "Objects": [{"Key": key} for key in chunk], "Quiet": True})
                errors = answer.get("Errors") or []
                if not errors:
                    break
                chunk = [error["Key"] for error in errors]  # a key S3 could not delete this time (SlowDown, ...)
                if attempt + 1 < DELETE_TRIES:
                    time.sleep(0.2 * 2 ** attempt)
            else:
                error = errors[0]
                raise OSError(f"S3 did not delete {len(errors)} objects, {error.get('Key')}: {error.get('Code')} "
                              f"{error.get('Message')}")


class SqsQueue:
    """The Queue port on an SQS queue, each message its JSON body."""

    def __init__(self, client: Any, url: str):
        self.client = client
        self.url = url

    def send(self, message: Mapping[str, Any]) -> None:
        self.client.send_message(QueueUrl=self.url, MessageBody=json.dumps(message, separators=(",", ":")))


def to_dynamo(value: Any) -> dict[str, Any]:
    """A Python value as a DynamoDB attribute value (floats become exact decimals): what boto3's TypeSerializer makes
    of it, in one walk for the strings, numbers, booleans, nulls, lists and dicts rows are made of."""
    kind = type(value)
    if kind is str:
        return {"S": value}
    if kind is dict:
        return {"M": {k: to_dynamo(v) for k, v in value.items()}}
    if kind is int and -_INT_DIGITS_LIMIT < value < _INT_DIGITS_LIMIT:
        return {"N": str(value)}
    if kind is float:
        number = str(_NUMBER_CONTEXT.create_decimal(repr(value)))
        if number in ("Infinity", "-Infinity", "NaN"):
            raise TypeError(f"DynamoDB holds no {number}")
        return {"N": number}
    if kind is bool:
        return {"BOOL": value}
    if kind is list or kind is tuple:
        return {"L": [to_dynamo(v) for v in value]}
    if value is None:
        return {"NULL": True}
    # Sets, binary data, decimals, mappings of other kinds: rows hold none of them but where a caller asks, and
    # boto3 (with its S3 transfer manager) is imported then rather than at every cold start.
    from boto3.dynamodb.types import TypeSerializer

    return TypeSerializer().serialize(_decimals(value))


_INT_DIGITS_LIMIT = 10**38  # DynamoDB's 38 digits of precision: a longer integer is TypeSerializer's to refuse
# DynamoDB's numbers: 38 significant digits, exponents from -128 to 126, nothing rounded (boto3's DYNAMODB_CONTEXT).
_NUMBER_CONTEXT = Context(Emin=-128, Emax=126, prec=38, traps=[Clamped, Overflow, Inexact, Rounded, Underflow])


def from_dynamo(item: Mapping[str, Any]) -> dict[str, Any]:
    """A DynamoDB item as plain Python (integral numbers as int, others as float), from botocore's answer or from
    the wire (where binary values are base64 text)."""
    return {k: _from_attribute_value(v) for k, v in item.items()}


# The member of a read's answer that holds its items, by operation.
_ITEMS_MEMBER = {"BatchGetItem": "Responses", "Query": "Items", "Scan": "Items"}


def _items_as_sent(operation_model: Any, response_dict: dict[str, Any], customized_response_dict: dict[str, Any],
                   **_: Any) -> None:
    """botocore's `before-parse` hook on a read: its items are handed over as DynamoDB sent them, and botocore parses
    the rest of the answer. Its parser walks every attribute value through the service model to build what the wire
    already holds (but for binary values, which from_dynamo decodes): for a hundred rows of nested maps and lists, most
    of what a read costs the function; from_dynamo then makes plain Python of them in one walk."""
    member = _ITEMS_MEMBER.get(operation_model.name)
    if member is None or response_dict.get("status_code") != 200 or not response_dict.get("body"):
        return
    body = json.loads(response_dict["body"])
    if not isinstance(body, dict) or member not in body:
        return
    customized_response_dict[member] = body.pop(member)
    response_dict["body"] = json.dumps(body).encode()


def _decimals(value: Any) -> Any:
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, dict):
        return {k: _decimals(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_decimals(v) for v in value]
    return value


def _from_attribute_value(value: Mapping[str, Any]) -> Any:
    """What boto3's TypeDeserializer makes of an attribute value, with numbers as int or float and sets as lists."""
    (kind, held), = value.items()
    if kind == "S" or kind == "BOOL":
        return held
    if kind == "N":
        return _number(held)
    if kind == "M":
        return {k: _from_attribute_value(v) for k, v in held.items()}
    if kind == "L":
        return [_from_attribute_value(v) for v in held]
    if kind == "NULL":
        return None
    if kind == "B":
        return _binary(_bytes(held))
    if kind == "SS":
        return list(set(held))
    if kind == "NS":
        return [_whole_or_float(d) for d in {_NUMBER_CONTEXT.create_decimal(n) for n in held}]
    if kind == "BS":
        return [_binary(b) for b in {_bytes(b) for b in held}]
    raise TypeError(f"DynamoDB attribute value of unknown type {kind!r}")


def _number(text: str) -> int | float:
    """A number as TypeDeserializer reads it (a Decimal in DynamoDB's context), as int when integral, else float."""
    if text.isdigit() or (text[:1] == "-" and text[1:].isdigit()):
        return int(text)
    return _whole_or_float(_NUMBER_CONTEXT.create_decimal(text))


def _whole_or_float(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


def _binary(value: bytes) -> Any:
    """A binary value as boto3's TypeDeserializer gives it (its Binary), boto3 imported only where a row holds one."""
    from boto3.dynamodb.types import Binary

    return Binary(value)


def _bytes(value: str | bytes) -> bytes:
    """A binary value as botocore gives it (bytes) or as it comes over the wire (base64 text)."""
    return base64.b64decode(value) if isinstance(value, str) else value
