"""The embedded AWS: a moto server on loopback in a process of its own, boto3 clients for it, and the template's
resources created in it."""

from __future__ import annotations

import contextlib
import copy
import functools
import gc
import io
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from .template import Template, TemplateError

__all__ = [
    "ACCOUNT_ID",
    "DEFAULT_PORT",
    "LocalAws",
    "MotoServer",
    "PhysicalResource",
    "Resources",
    "STATE_TABLE_TTL",
    "create_resources",
    "create_state_tables",
    "plan_resources",
]

# The port local AWS emulators conventionally listen on, so tools pointed at it find this one too.
DEFAULT_PORT = 4566
# moto's default account: every ARN it hands out carries it.
ACCOUNT_ID = "123456789012"
_CREDENTIALS = {"aws_access_key_id": "local", "aws_secret_access_key": "local"}
# Logical state table -> its TTL attribute, as the template's TimeToLiveSpecification sets them (a test compares).
STATE_TABLE_TTL = {"shoppers": "expires_at", "sessions": "expires_at", "trends": "expires_at",
                   "buffers": "expires_at", "exposures": "expires_at"}
_CREATED_TYPES = ("AWS::SQS::Queue", "AWS::Kinesis::Stream", "AWS::S3::Bucket", "AWS::DynamoDB::Table")


class MotoServer:
    """moto's server on 127.0.0.1 in a process of its own; port 0 picks a free port.

    A process of its own, because moto is pure Python: in the functions' process its work (a DynamoDB update costs
    it over 10 ms of interpreter time) would take turns for the one interpreter lock with everything the functions
    do, so that an API request waited behind Ingest's writes even where the local AWS lets it pass them. Apart, the
    two run side by side on two cores, as AWS and Lambda do, and the state of moto's in-process mocks (mock_aws)
    is not this server's. The process serves until `stop()`, or until the process that started it is gone (its end
    of the pipe closes)."""

    def __init__(self, port: int = DEFAULT_PORT, host: str = "127.0.0.1"):
        self.host = host
        self.port = port
        self._process: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()  # one command to the server process at a time

    def start(self) -> MotoServer:
        if self.port:
            _ensure_port_free(self.host, self.port)
        package_root = str(Path(__file__).resolve().parent.parent)
        environment = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [package_root, *filter(None, [os.environ.get("PYTHONPATH")])])}
        self._process = subprocess.Popen(
            [sys.executable, "-c", "from tailor_local.aws import serve; serve()", self.host, str(self.port)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=environment)
        answer = self._process.stdout.readline().split() if self._process.stdout else []
        if len(answer) != 3 or answer[0] != "serving":
            self._process.kill()
            self._process.wait()
            self._process = None
            raise RuntimeError(f"the local AWS did not start on {self.host}:{self.port} (it said {answer!r})")
        self.host, self.port = answer[1], int(answer[2])
        return self

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The server process's id while it runs."""
        return self._process.pid if self._process is not None else None

    def pause(self) -> None:
        """Make the local AWS unreachable: from now on every request it receives has its connection cut, the
        connections clients keep open included, as when an endpoint goes away. Its state stays as it is."""
        self._command("pause")

    def resume(self) -> int:
        """Answer again after `pause()`; how many requests had their connection cut meanwhile."""
        return int(self._command("resume"))

    def stop(self, timeout: float = 5.0) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        with contextlib.suppress(OSError, ValueError):
            assert process.stdin is not None
            process.stdin.close()  # the server's cue to stop
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()

    def _command(self, command: str) -> str:
        with self._lock:
            if self._process is None or self._process.stdin is None or self._process.stdout is None:
                raise RuntimeError("the local AWS is not running")
            self._process.stdin.write(command + "\n")
            self._process.stdin.flush()
            return self._process.stdout.readline().strip()

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve() -> None:
    """The local AWS's process (MotoServer starts it): moto on the host and port its arguments give, until its
    standard input closes; "pause" and "resume" lines on it cut every request meanwhile, or stop doing so."""
    # Imported here: loading moto takes a while, and only this process needs it.
    from moto.server import ThreadedMotoServer

    # Ctrl-C and SIGTERM reach the whole process group: the stack stops this process itself once its functions are
    # done with it, and if the stack dies, its end of the pipe closes.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    host, port = sys.argv[1], int(sys.argv[2])
    # A call that arrives while another runs gets the interpreter lock within 0.2 ms rather than five: a feed's read
    # takes it at every step of its parsing and answering, and Ingest's call beside it would make it wait each time.
    sys.setswitchinterval(0.0002)
    _look_up_dispatch_once()
    _serve_attribute_values_plainly()
    _convert_results_plainly()
    _check_item_sizes_once_per_call()
    _size_attribute_values_directly()
    _validate_updates_in_linear_time()
    gc.callbacks.append(_freeze_after_full_collection)
    # werkzeug logs every request at INFO; the stack's own output is what matters.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    werkzeug_server = server._server  # serves each request on a thread of its own, and looks its app up for each
    gate = werkzeug_server.app = _AtomicCalls(werkzeug_server.app)
    outage = _Outage()
    host, port = server.get_host_and_port()
    print(f"serving {host} {port}", flush=True)
    for line in sys.stdin:
        if line.strip() == "pause":
            outage = _Outage()
            werkzeug_server.app = outage
            print("paused", flush=True)
        elif line.strip() == "resume":
            werkzeug_server.app = gate
            print(outage.cut, flush=True)
    server.stop()


def _look_up_dispatch_once() -> None:
    """moto routes every request by listing its own package's directory (a stat of each of some 200 entries) and
    dispatches it by listing its handler class's methods: the same answers for the server's life, so each is found
    once."""
    from moto import backends
    from moto.core import responses

    modules = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: modules  # type: ignore[assignment]
    responses.method_names_from_class = functools.cache(responses.method_names_from_class)  # type: ignore[assignment]


def _freeze_after_full_collection(phase: str, info: dict[str, Any]) -> None:
    """moto's state lives as long as the server, and a full collection walks all of it with every call on hold: over
    100 ms once the stack holds a few thousand rows and records. What survives one is frozen, left out of the full
    collections after it, so that each walks only what came since; reference counting still frees what moto lets go
    of, and only garbage in reference cycles among frozen objects would stay."""
    if phase == "stop" and info["generation"] == 2:
        gc.freeze()


def _serve_attribute_values_plainly() -> None:
    """moto writes a DynamoDB answer by walking it through the service model, and each attribute value of an item
    member by member (ten members, each looked up under several names): that is most of what a read costs it, some
    20 ms for a shopper's and a session's rows. An attribute value is in its wire form already but for binary data,
    so here it is written as it is, as the generic walk would write it; anything else takes the generic walk."""
    from moto.core.serialize import BaseJSONSerializer

    BaseJSONSerializer._serialize_type_structure = _plain_attribute_values(  # type: ignore[method-assign]
        BaseJSONSerializer._serialize_type_structure)


def _convert_results_plainly() -> None:
    """moto turns every DynamoDB result into plain data member by member (dynamo_to_dict), importing a class and
    asking four questions of each member: over a third of what a read of a hundred rows costs it. Here attribute
    values (but binary ones), plain dicts, lists and scalars are walked directly, as it would walk them; anything
    else (binary values, timestamps, objects with to_json) takes its own path."""
    from moto.dynamodb import responses
    from moto.dynamodb.models import utilities
    from moto.dynamodb.models.dynamo_type import DynamoType

    generic = utilities.dynamo_to_dict

    def convert(value: Any) -> Any:
        kind = type(value)
        if kind is DynamoType and value.type not in ("B", "BS"):  # binary data is decoded: its own path
            return {value.type: convert(value.value)}
        if kind is dict:
            return {k: convert(v) for k, v in value.items()}
        if kind is list:
            return [convert(v) for v in value]
        if kind in _PLAIN_SCALARS:
            return value
        return generic(value)

    utilities.dynamo_to_dict = responses.dynamo_to_dict = convert  # type: ignore[assignment]


_PLAIN_SCALARS = frozenset({str, int, float, bool, bytes, type(None)})


# moto's own limit: DynamoDB's 400 KB, which it measured to lie between 409 and 410 KB.
_ITEM_SIZE_LIMIT = 405_000


def _check_item_sizes_once_per_call() -> None:
    """moto checks DynamoDB's 400 KB item limit on every attribute it sets, summing the whole item each time: an update
    of a hundred counters on a row of a few thousand costs it most of a second. Here the limit is checked once per
    call, on the item as the call leaves it, and an update that would pass it changes nothing, as in DynamoDB."""
    from moto.dynamodb.exceptions import ItemSizeTooLarge, ItemSizeToUpdateTooLarge
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.dynamo_type import DynamoType, Item, LimitedSizeDict

    LimitedSizeDict.__setitem__ = dict.__setitem__  # type: ignore[assignment,method-assign]
    build, update = Item.__init__, DynamoDBBackend.update_item

    def checked_item(self: Any, *args: Any, **kwargs: Any) -> None:
        build(self, *args, **kwargs)
        if self.size() > _ITEM_SIZE_LIMIT:
            raise ItemSizeTooLarge

    def checked_update(self: Any, table_name: str, key: dict[str, Any], update_expression: str | None = None,
                       expression_attribute_names: dict[str, Any] | None = None,
                       expression_attribute_values: dict[str, Any] | None = None, *args: Any, **kwargs: Any) -> Any:
        table = self.get_table(table_name)
        before = table.get_item(*self.get_keys_value(table, key)) if table.hash_key_attr in key else None
        # An update at most doubles an item (SET a = b) and adds what it names: only near the limit is a copy kept.
        named = [*(expression_attribute_names or {}).values(), update_expression or ""]
        growth = (sum(DynamoType(v).size() for v in (expression_attribute_values or {}).values())
                  + sum(len(str(name).encode()) for name in named))
        saved = copy.deepcopy(before) if before is not None and 2 * before.size() + growth > _ITEM_SIZE_LIMIT else None
        item = _plain_update(self, table, key, update_expression, expression_attribute_names,
                             expression_attribute_values, *args, **kwargs)
        if item is None:
            item = update(self, table_name, key, update_expression, expression_attribute_names,
                          expression_attribute_values, *args, **kwargs)
        if item.size() > _ITEM_SIZE_LIMIT:
            if saved is not None:
                item.attrs = saved.attrs
            elif before is None:
                table.delete_item(item.hash_key, item.range_key)
            raise ItemSizeToUpdateTooLarge
        return item

    Item.__init__ = checked_item  # type: ignore[method-assign]
    DynamoDBBackend.update_item = checked_update  # type: ignore[method-assign]


def _size_attribute_values_directly() -> None:
    """moto sizes an attribute value (for the 400 KB item limit and BatchGetItem's 16 MB answer, where it sizes each
    item twice) by building a copy of every map member's whole subtree before sizing it, so a row of nested maps and
    lists costs it time in the square of its depth: over half of what a hundred-row BatchGetItem of the state tables
    costs it. Here each value is sized where it stands, to the same byte counts."""
    from moto.dynamodb.models.dynamo_type import DynamoType

    DynamoType.size = attribute_value_size  # type: ignore[method-assign,assignment]


def attribute_value_size(value: Any) -> int:
    """What moto's DynamoType.size() counts for `value` (a DynamoType): a number's bytes, a string's or binary's
    bytes, 1 for a boolean or null, a collection's members and a map's keys, summed."""
    kind, held = value.type, value.value
    if kind == "N":
        return _number_size()(str(held))
    if kind in _SET_TYPES:
        member = kind[0]
        return sum(_number_size()(str(v)) if member == "N" else _bytesize(v) for v in held)
    if kind == "L":
        return sum(attribute_value_size(v) for v in held)
    if kind == "M":
        return sum(_bytesize(k) + _member_size(v) for k, v in held.items())
    if isinstance(held, bool):
        return 1
    return _bytesize(held)


_SET_TYPES = frozenset({"SS", "NS", "BS"})


@functools.cache
def _number_size() -> Callable[[str], int]:
    """moto's count of a number's bytes: DynamoDB's (about one per two significant digits) from moto 5.2.6, the
    length of its text before."""
    try:
        from moto.dynamodb.models.utilities import number_size
    except ImportError:
        return len
    return number_size


def _member_size(value: Any) -> int:
    if isinstance(value, dict):  # a member an update left as plain JSON (rare): sized as moto would wrap it
        from moto.dynamodb.models.dynamo_type import DynamoType

        value = DynamoType(value)
    return attribute_value_size(value)


def _bytesize(value: str | bytes) -> int:
    return len(value if isinstance(value, bytes) else value.encode("utf-8"))


def _plain_update(backend: Any, table: Any, key: dict[str, Any], update_expression: str | None,
                  names: dict[str, Any] | None, values: dict[str, Any] | None, attribute_updates: Any = None,
                  expected: Any = None, condition_expression: str | None = None,
                  return_values_on_condition_check_failure: str | None = None) -> Any:
    """DynamoDBBackend.update_item for the plain updates the state tables take call after call ("SET #a = :a, ...
    ADD #n :n, ...": top-level attributes set to values, numbers added), applied as moto's executor applies them,
    without its validator's walks of the expression (several per call, most of what an update costs it) or its
    copy of the item for a stream; None for any other update, which moto applies itself, errors and all."""
    actions = _plain_actions(update_expression) if update_expression else None
    if actions is None or attribute_updates or expected or table.stream_shard is not None or not names or not values:
        return None
    from moto.dynamodb.comparisons import create_condition_expression_parser
    from moto.dynamodb.exceptions import ConditionalCheckFailed
    from moto.dynamodb.models.dynamo_type import DynamoType

    if any(n not in names or v not in values for _, n, v in actions):
        return None
    attributes = [names[n] for _, n, _ in actions]
    keys = {table.hash_key_attr, table.range_key_attr}
    if len(set(attributes)) != len(attributes) or any(not isinstance(a, str) or not a or a in keys
                                                      for a in attributes):
        return None
    hash_value, range_value = backend.get_keys_value(table, key)
    item = table.get_item(hash_value, range_value)
    changes: list[tuple[str, Any]] = []
    for (verb, _, value_name), attribute in zip(actions, attributes):
        value = values[value_name]
        if not isinstance(value, dict) or len(value) != 1 or next(iter(value)) not in _SETTABLE_KINDS:
            return None
        if verb == "ADD":
            current = item.attrs.get(attribute) if item is not None else None
            if "N" not in value or (current is not None and current.type != "N"):
                return None
        changes.append((verb, DynamoType(value)))
    if condition_expression:
        condition = create_condition_expression_parser(condition_expression, names, values).parse()
        if not condition.expr(item):
            if return_values_on_condition_check_failure == "ALL_OLD" and item is not None:
                raise ConditionalCheckFailed(item=item.to_json()["Attributes"])
            raise ConditionalCheckFailed
    if item is None:
        data = {table.hash_key_attr: {hash_value.type: hash_value.value}}
        if range_value:
            data[table.range_key_attr] = {range_value.type: range_value.value}
        table.put_item(data)
        item = table.get_item(hash_value, range_value)
    for (verb, value), attribute in zip(changes, attributes):
        if verb == "ADD":
            value = item.attrs.get(attribute, DynamoType({"N": "0"})) + value
        item.attrs[attribute] = value
    return item


_SETTABLE_KINDS = frozenset({"S", "N", "B", "BOOL", "NULL", "M", "L"})  # sets: moto's own checks of empty ones
_SET_ACTION = r"(#\w+)\s*=\s*(:\w+)"
_ADD_ACTION = r"(#\w+)\s+(:\w+)"
_PLAIN_UPDATE = re.compile(rf"\s*SET\s+(?P<set>{_SET_ACTION}(?:\s*,\s*{_SET_ACTION})*)"
                           rf"(?:\s+ADD\s+(?P<add>{_ADD_ACTION}(?:\s*,\s*{_ADD_ACTION})*))?\s*")


@functools.lru_cache(maxsize=4096)
def _plain_actions(expression: str) -> tuple[tuple[str, str, str], ...] | None:
    """(verb, name placeholder, value placeholder) per action of a plain update, in order; None for anything else."""
    match = _PLAIN_UPDATE.fullmatch(expression)
    if match is None:
        return None
    sets = re.findall(_SET_ACTION, match["set"])
    adds = re.findall(_ADD_ACTION, match["add"]) if match["add"] else []
    return tuple(("SET", n, v) for n, v in sets) + tuple(("ADD", n, v) for n, v in adds)


def _validate_updates_in_linear_time() -> None:
    """moto's update-expression tree nests each action under the one before it, and its clause search copies every
    result up through each level: quadratic in the actions. Its two structural checks (one clause of each kind, no
    path set twice) run the search at every level of the tree, though what holds at its root holds below. Here the
    search takes one walk (`_update_clauses`, the same clauses in the same order), the checks look at the root, the
    tree walks look their maps up once (`_traverse`), each expression shape is parsed once and the validators' copy
    of a tree is made node by node (`_copy_expression`)."""
    from moto.dynamodb.parsing import validators
    from moto.dynamodb.parsing.ast_nodes import DepthFirstTraverser, Node, UpdateExpression
    from moto.dynamodb.parsing.expressions import UpdateExpressionParser
    from moto.dynamodb.parsing.validators import ActionCountValidator, OverlappingPathsValidator

    def check_root(self: Any, node: Any) -> Any:
        return self.process(node) if isinstance(node, UpdateExpression) else node

    Node.find_clauses = _update_clauses  # type: ignore[method-assign]
    for check in (ActionCountValidator, OverlappingPathsValidator):
        check.traverse = check_root  # type: ignore[method-assign]
    DepthFirstTraverser.traverse_node_recursively = _traverse  # type: ignore[method-assign]
    # An update is parsed twice per call, in the same few shapes call after call: each shape once. The tree is only
    # read, and the validators change a copy of it, copied here without deepcopy's bookkeeping.
    UpdateExpressionParser.make = staticmethod(functools.lru_cache(maxsize=4096)(UpdateExpressionParser.make))
    validators.deepcopy = _copy_expression


def _traverse(self: Any, node: Any, child_id: int = -1) -> Any:
    """moto's depth-first walk of an expression tree (DepthFirstTraverser.traverse_node_recursively), step for step,
    but for the processing map, which moto builds anew for every node it meets, and type checks against abstract
    classes, which are slow: here both are looked up once."""
    processors = self.__dict__.get("_processors_once")
    if processors is None:
        processors = self._processors_once = (self.nodes_to_be_processed(), self._processing_map())
    kind = type(node)
    if _is_node(kind):
        parent_node = node.parent
        if node.children is not None:
            for i, child_node in enumerate(node.children):
                self.pre_processing_of_child(node, i)
                self.traverse_node_recursively(child_node, i)
        if issubclass(kind, processors[0]):
            node = next(process(node) for node_type, process in processors[1].items() if issubclass(kind, node_type))
            node.parent = parent_node
            if parent_node:
                parent_node.children[child_id] = node
    return node


def _copy_expression(value: Any) -> Any:
    """copy.deepcopy(value) for a parsed expression's tree (nodes of a type, children and a parent, leaves of plain
    strings and numbers), node by node; anything else goes to copy.deepcopy."""
    if not _is_node(type(value)) or value.parent is not None or not _plain_tree(value):
        return copy.deepcopy(value)
    return _copy_tree(value, None)


def _plain_tree(node: Any) -> bool:
    if node.__dict__.keys() - _NODE_FIELDS:
        return False
    return all(_plain_tree(child) if _is_node(type(child)) else type(child) in _PLAIN_LEAVES
               for child in node.children or ())


def _copy_tree(node: Any, parent: Any) -> Any:
    copied = object.__new__(type(node))
    copied.__dict__.update(node.__dict__)
    copied.parent = parent
    if node.children is not None:
        copied.children = [_copy_tree(child, copied) if _is_node(type(child)) else child for child in node.children]
    return copied


_NODE_FIELDS = frozenset({"type", "children", "parent"})
_PLAIN_LEAVES = frozenset({str, int, float, bool, type(None)})


@functools.cache
def _is_node(kind: type) -> bool:
    from moto.dynamodb.parsing.ast_nodes import Node

    return issubclass(kind, Node)


def _update_clauses(node: Any, clause_types: Any) -> list[Any]:
    """The clauses of `clause_types` under `node`, in the order moto's own search finds them: depth first, left to
    right, not looking inside a clause found."""
    found: list[Any] = []
    pending = list(reversed(node.children or []))
    while pending:
        child = pending.pop()
        kind = type(child)
        if kind in clause_types:
            found.append(child)
        elif _holds_clauses(kind):
            pending.extend(reversed(child.children or []))
    return found


@functools.cache
def _holds_clauses(kind: type) -> bool:
    # Expression is an abstract base class: isinstance on it is slow, and asked of every node.
    from moto.dynamodb.parsing.ast_nodes import Expression, UpdateExpressionFunction

    return issubclass(kind, Expression | UpdateExpressionFunction)


def _plain_attribute_values(generic: Any) -> Any:
    """moto's JSON serializer's structure method `generic`, with DynamoDB attribute values written directly."""

    def serialize_structure(self: Any, serialized: Any, value: Any, shape: Any, key: str) -> None:
        plain = _plain(value, self._base64) if key and shape.name == "AttributeValue" else None
        if plain is None:
            generic(self, serialized, value, shape, key)
        else:
            self._default_serialize(serialized, plain, shape, key)

    return serialize_structure


def _plain(value: Any, base64: Callable[[Any], str]) -> dict[str, Any] | None:
    """An attribute value ({"S": ...}, {"M": {...}}, ...) as moto's serializer writes it: strings as text, binary
    data in base64, maps and lists member by member; None for what is not one (for the generic walk)."""
    if not isinstance(value, dict) or len(value) != 1:
        return None
    ((kind, inner),) = value.items()
    if inner is None:
        return {} if kind in _ATTRIBUTE_KINDS else None
    if kind in ("S", "N"):
        return {kind: _text(inner)}
    if kind in ("BOOL", "NULL"):
        return {kind: inner}
    if kind in ("SS", "NS") and isinstance(inner, list):
        return {kind: [_text(x) for x in inner]}
    if kind == "B":
        return {kind: base64(inner)}
    if kind == "BS" and isinstance(inner, list):
        return {kind: [base64(x) for x in inner]}
    if kind == "M" and isinstance(inner, dict):
        members = {k: _plain(v, base64) for k, v in inner.items()}
        return None if any(v is None for v in members.values()) else {kind: members}
    if kind == "L" and isinstance(inner, list):
        elements = [_plain(v, base64) for v in inner]
        return None if any(v is None for v in elements) else {kind: elements}
    return None


def _text(value: Any) -> Any:
    # As moto's serializer writes a string member.
    return str(value) if value not in (None, {}, []) else value


_ATTRIBUTE_KINDS = frozenset({"S", "N", "B", "SS", "NS", "BS", "M", "L", "NULL", "BOOL"})


class _Outage:
    """The local AWS unreachable: a request has its connection cut, after it was read to its end (left in the
    buffer, werkzeug would parse it as the next request)."""

    def __init__(self) -> None:
        self.cut = 0

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        self.cut += 1
        with contextlib.suppress(OSError, ValueError):
            environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))  # the raw socket: no more than that
        connection = environ.get("werkzeug.socket")
        if connection is not None:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        # werkzeug takes a ConnectionError from the application for a dropped connection and answers nothing.
        raise ConnectionResetError("the local AWS is paused")


# How long a change waits for reads of other items under way, at most.
READS_FIRST_S = 0.1
# Calls from work in the background (stream and queue consumers, schedules) name this app in their user agent
# (AWS_SDK_UA_APP_ID); they run one at a time, each in a pause of the other calls (FOREGROUND_FIRST_S at most): in
# AWS, a feed's read does not share a server with Ingest's writes, here it shares one interpreter lock, for which
# every call under way takes turns, reads of Ingest's batch beside it or not.
BACKGROUND_APP_ID = "tailor-local-background"
FOREGROUND_FIRST_S = 0.05
# A pause of the other calls: none under way, and none ended this recently. An API request's calls come a few
# milliseconds apart (the function's own work between them); a background call begun in that gap would take turns
# with the request's next call.
FOREGROUND_PAUSE_S = 0.006


class _AtomicCalls:
    """moto's backends are not safe for concurrent calls (two PutRecords at once can take the same sequence number, and
    one record is lost; a DynamoDB update is read, changed and written back), while AWS applies each call atomically.
    Functions call the local AWS from several threads at once, so calls that change something take turns, one at a
    time, and a call never runs beside a change to what it touches.

    What a call touches is read off its request: the items of a DynamoDB GetItem, BatchGetItem, UpdateItem, PutItem,
    DeleteItem or batch and transaction call (a key by the table's key schema, seen when it was created), the whole
    table for any other DynamoDB call, and the whole service for the others (Kinesis, S3, SQS). So a feed's read of a
    shopper's rows runs beside Ingest's write of another row, as it does in AWS, where a read waits for no write.
    A read of what a change touches waits for at most that change, the one under way or next, not for every change
    queued before it; a change waits for the reads under way: of what it touches until they end, of anything else
    for READS_FIRST_S at most. SQS ReceiveMessage runs
    outside: a long poll waits inside moto for a message that another call must send (two receives at once may
    rarely get the same message, which standard queues allow)."""

    def __init__(self, app: Any):
        self.app = app
        self._state = threading.Condition()
        self._change_turn = threading.Lock()  # held by the change under way, or by the next one while it waits for reads
        self._change: _Footprint = _EVERYTHING  # what the holder of the turn touches, while it holds it
        self._changing = False
        self._reads: list[_Footprint] = []  # what the reads under way touch
        self._reads_waiting = 0
        self._let_in = 0  # reads let go by the end of a change that have not yet begun
        self._key_names: dict[str, tuple[str, ...]] = {}  # a DynamoDB table's key attributes
        self._foreground = 0  # calls under way that are not from the background
        self._foreground_ended = 0.0  # when the last of them ended (time.monotonic)
        self._foreground_done = threading.Condition()
        self._background_turn = threading.Lock()  # see BACKGROUND_APP_ID

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        if _is_receive_message(environ):
            return list(self.app(environ, start_response))
        if f"app/{BACKGROUND_APP_ID}" in environ.get("HTTP_USER_AGENT", ""):
            # A background call waits for a pause of the others at each of its steps: before it starts, before it
            # reads or changes anything, and before its answer is written; a call that arrives meanwhile then shares
            # the interpreter lock with one step at most.
            with self._background_turn:
                self._in_foreground_pause()
                answer = self._atomically(environ, start_response, background=True)
                self._in_foreground_pause()
                return answer
        with self._foreground_done:
            self._foreground += 1
        try:
            return self._atomically(environ, start_response)
        finally:
            with self._foreground_done:
                self._foreground -= 1
                self._foreground_ended = time.monotonic()
                if not self._foreground:
                    self._foreground_done.notify_all()

    def _in_foreground_pause(self) -> None:
        """Return once no other call is under way or has ended in FOREGROUND_PAUSE_S, or after FOREGROUND_FIRST_S."""
        deadline = time.monotonic() + FOREGROUND_FIRST_S
        with self._foreground_done:
            while (left := deadline - time.monotonic()) > 0:
                if self._foreground:
                    self._foreground_done.wait(left)
                elif (quiet_in := self._foreground_ended + FOREGROUND_PAUSE_S - time.monotonic()) > 0:
                    self._foreground_done.wait(min(quiet_in, left))
                else:
                    return

    def _atomically(self, environ: dict[str, Any], start_response: Any, *, background: bool = False) -> list[bytes]:
        reading = _only_reads(environ)
        touched = self._touched(environ)
        if background:
            self._in_foreground_pause()
        if reading:
            self._begin_read(touched)
        else:
            self._begin_change(touched)
        try:
            return list(self.app(environ, start_response))
        finally:
            self._end_read(touched) if reading else self._end_change()

    def _begin_read(self, touched: _Footprint) -> None:
        with self._state:
            if self._changing and _overlap(self._change, touched):
                self._reads_waiting += 1
                while self._changing and _overlap(self._change, touched):
                    self._state.wait()
                self._reads_waiting -= 1
                self._let_in -= 1
                if not self._let_in:
                    self._state.notify_all()
            self._reads.append(touched)

    def _end_read(self, touched: _Footprint) -> None:
        with self._state:
            self._reads.remove(touched)
            if self._changing and (not self._reads or _overlap(self._change, touched)):
                self._state.notify_all()

    def _begin_change(self, touched: _Footprint) -> None:
        self._change_turn.acquire()
        with self._state:
            while self._let_in:  # the reads that waited for the change before go first
                self._state.wait()
            self._change, self._changing = touched, True
            # Reads under way go first, even of other items: beside them the change would take turns with them for
            # moto's interpreter lock, and a feed's read would take twice as long, where in AWS it waits for no
            # write. Reads of other items that keep coming hold a change up for READS_FIRST_S at most.
            deadline = time.monotonic() + READS_FIRST_S
            while self._reads:
                if any(_overlap(touched, read) for read in self._reads):
                    self._state.wait()
                elif (left := deadline - time.monotonic()) > 0:
                    self._state.wait(left)
                else:
                    break

    def _end_change(self) -> None:
        with self._state:
            self._changing = False
            self._let_in = self._reads_waiting
            self._state.notify_all()
        self._change_turn.release()

    def _touched(self, environ: dict[str, Any]) -> _Footprint:
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        service, _, operation = target.partition(".")
        if not service.startswith("DynamoDB_"):
            return {_service(environ): None}
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length) if length else b""
            environ["wsgi.input"] = io.BytesIO(body)
            request = json.loads(body or b"{}")
        except (KeyError, ValueError, OSError):
            return _EVERYTHING
        try:
            return self._dynamodb_touched(operation, request)
        except (AttributeError, KeyError, TypeError):  # a request moto will refuse: no other call waits on its guess
            return _EVERYTHING

    def _dynamodb_touched(self, operation: str, request: dict[str, Any]) -> _Footprint:
        touched: dict[str, set[str] | None] = {}

        def item(table: str, key: dict[str, Any] | None) -> None:
            keys = touched.setdefault(table, set())
            if keys is not None:
                if key is None:
                    touched[table] = None
                else:
                    keys.add(json.dumps(key, sort_keys=True))

        def put(table: str, row: dict[str, Any]) -> None:
            names = self._key_names.get(table)
            item(table, {name: row[name] for name in names} if names else None)

        if operation in ("GetItem", "UpdateItem", "DeleteItem"):
            item(request["TableName"], request["Key"])
        elif operation == "PutItem":
            put(request["TableName"], request["Item"])
        elif operation == "BatchGetItem":
            for table, asked in request["RequestItems"].items():
                for key in asked["Keys"]:
                    item(table, key)
        elif operation == "BatchWriteItem":
            for table, writes in request["RequestItems"].items():
                for write in writes:
                    if "PutRequest" in write:
                        put(table, write["PutRequest"]["Item"])
                    else:
                        item(table, write["DeleteRequest"]["Key"])
        elif operation in ("TransactGetItems", "TransactWriteItems"):
            for entry in request["TransactItems"]:
                for kind, part in entry.items():
                    if kind == "Put":
                        put(part["TableName"], part["Item"])
                    else:
                        item(part["TableName"], part["Key"])
        elif "TableName" in request:
            if operation == "CreateTable":
                self._key_names[request["TableName"]] = tuple(k["AttributeName"] for k in request["KeySchema"])
            touched[request["TableName"]] = None
        else:
            return _EVERYTHING
        return {f"dynamodb:{table}": keys for table, keys in touched.items()}


# What a call touches: resource -> the keys of its items, or None for all of it; None alone: everything.
_Footprint = dict[str, set[str] | None] | None
_EVERYTHING: _Footprint = None


def _overlap(a: _Footprint, b: _Footprint) -> bool:
    if a is None or b is None:
        return True
    for resource, keys in a.items():
        if resource in b:
            other = b[resource]
            if keys is None or other is None or not keys.isdisjoint(other):
                return True
    return False


def _service(environ: dict[str, Any]) -> str:
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if target:
        return target.partition(".")[0].partition("_")[0]
    authorization = environ.get("HTTP_AUTHORIZATION", "")
    # A REST call's signature names its service in the credential scope: .../<region>/<service>/aws4_request.
    parts = authorization.partition("/aws4_request")[0].rsplit("/", 1)
    return parts[-1] if len(parts) == 2 else "unknown"


# Calls that change nothing in moto's backends, by X-Amz-Target.
_READS = {
    "DynamoDB_20120810": {"GetItem", "BatchGetItem", "Query", "Scan", "DescribeTable", "ListTables",
                          "DescribeTimeToLive", "TransactGetItems"},
    "Kinesis_20131202": {"GetRecords", "GetShardIterator", "ListShards", "DescribeStream", "DescribeStreamSummary",
                         "ListStreams"},
}


def _only_reads(environ: dict[str, Any]) -> bool:
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if target:
        service, _, operation = target.partition(".")
        return operation in _READS.get(service, ())
    # S3 speaks REST: a GET or HEAD reads (the credential scope in the signature names the service).
    return environ.get("REQUEST_METHOD") in ("GET", "HEAD") and "/s3/aws4_request" in environ.get("HTTP_AUTHORIZATION", "")


def _is_receive_message(environ: dict[str, Any]) -> bool:
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    return target == "AmazonSQS.ReceiveMessage" or "Action=ReceiveMessage" in environ.get("QUERY_STRING", "")


@dataclass
class LocalAws:
    """Where the embedded AWS answers, and boto3 clients that talk to it with throwaway credentials."""

    endpoint: str
    region: str = "us-east-1"
    # Services answered elsewhere than the embedded AWS (by their SDK name, e.g. appconfigdata): where.
    service_endpoints: dict[str, str] = field(default_factory=dict)
    app_id: str | None = None  # in the clients' user agent: BACKGROUND_APP_ID for the event sources' pollers
    _clients: dict[str, Any] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def client(self, service: str) -> Any:
        # Low-level clients are thread-safe; sessions are not, so each client gets its own.
        with self._lock:
            if service not in self._clients:
                session = boto3.session.Session(region_name=self.region, **_CREDENTIALS)
                self._clients[service] = session.client(
                    service,
                    endpoint_url=self.service_endpoints.get(service, self.endpoint),
                    config=Config(retries={"mode": "standard", "max_attempts": 8}, user_agent_appid=self.app_id),
                )
            return self._clients[service]

    def in_background(self) -> LocalAws:
        """The same endpoint, with clients whose calls the local AWS serves after the others under way."""
        return LocalAws(self.endpoint, self.region, dict(self.service_endpoints), BACKGROUND_APP_ID)

    def resource(self, service: str) -> Any:
        """A boto3 resource (not thread-safe: use it from one thread)."""
        session = boto3.session.Session(region_name=self.region, **_CREDENTIALS)
        return session.resource(service, endpoint_url=self.endpoint)

    def environment(self) -> dict[str, str]:
        """The variables that point an AWS SDK in a handler at this endpoint."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            # The SDKs' service-specific endpoint variables (AWS_ENDPOINT_URL_<SERVICE>) take precedence.
            **{f"AWS_ENDPOINT_URL_{service.upper()}": url for service, url in self.service_endpoints.items()},
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ACCESS_KEY_ID": _CREDENTIALS["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": _CREDENTIALS["aws_secret_access_key"],
        }


@dataclass(frozen=True)
class PhysicalResource:
    """One template resource as it exists locally: its name, ARN, what Ref returns, and its Fn::GetAtt values."""

    logical_id: str
    type: str
    name: str
    arn: str
    ref: str
    attributes: dict[str, str] = field(default_factory=dict)


class Resources(Mapping[str, PhysicalResource]):
    """The local stack's resources by logical id; answers Ref and Fn::GetAtt for `Template.resolve`."""

    def __init__(self, items: Mapping[str, PhysicalResource]):
        self._items = dict(items)

    def __getitem__(self, logical_id: str) -> PhysicalResource:
        return self._items[logical_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def ref(self, logical_id: str) -> str:
        return self._items[logical_id].ref

    def attribute(self, logical_id: str, name: str) -> str:
        resource = self._items[logical_id]
        if name not in resource.attributes:
            raise TemplateError(f"the local stack has no {logical_id}.{name} ({resource.type})")
        return resource.attributes[name]

    def by_arn(self, arn: str) -> PhysicalResource:
        for resource in self._items.values():
            if arn in (resource.arn, resource.attributes.get("StreamArn")):
                return resource
        raise KeyError(arn)

    def name(self, logical_id: str) -> str:
        return self._items[logical_id].name

    def of_type(self, resource_type: str) -> dict[str, PhysicalResource]:
        return {lid: r for lid, r in self._items.items() if r.type == resource_type}

    def to_json(self) -> dict[str, Any]:
        return {lid: asdict(r) for lid, r in self._items.items()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Resources:
        return cls({lid: PhysicalResource(**r) for lid, r in data.items()})


def create_state_tables(dynamodb: Any, prefix: str, tables: Iterable[str] | None = None) -> dict[str, str]:
    """The state tables (`tables`, default all of tailor.store.port.TABLES) named "<prefix>-<table>", keyed, indexed
    (tailor.store.port.INDEXES) and with the TTL the template gives them, for a bare embedded AWS without the
    template's stack; logical -> physical names."""
    from tailor.store.port import INDEXES, TABLES

    names = {}
    for table in (TABLES if tables is None else tables):
        names[table] = f"{prefix}-{table}"
        indexes = [{"IndexName": index, "KeySchema": [{"AttributeName": attribute, "KeyType": "HASH"}],
                    "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": list(projected)}}
                   for (indexed, attribute), (index, projected) in INDEXES.items() if indexed == table]
        keys = [TABLES[table], *(index["KeySchema"][0]["AttributeName"] for index in indexes)]
        dynamodb.create_table(TableName=names[table], BillingMode="PAY_PER_REQUEST",
                              AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"} for key in keys],
                              KeySchema=[{"AttributeName": TABLES[table], "KeyType": "HASH"}],
                              **({"GlobalSecondaryIndexes": indexes} if indexes else {}))
        if table in STATE_TABLE_TTL:
            dynamodb.update_time_to_live(TableName=names[table], TimeToLiveSpecification={
                "Enabled": True, "AttributeName": STATE_TABLE_TTL[table]})
    return names


def plan_resources(template: Template, endpoint: str) -> Resources:
    """Local names, ARNs, Ref values and attributes of every resource, derived from the logical ids."""
    return Resources({lid: _physical(template, lid, res["Type"], endpoint) for lid, res in template.resources.items()})


def create_resources(template: Template, aws: LocalAws) -> Resources:
    """Create every table, stream, queue and bucket of the template in the embedded AWS, as the template says."""
    resources = plan_resources(template, aws.endpoint)
    creators = {
        "AWS::SQS::Queue": _create_queue,
        "AWS::Kinesis::Stream": _create_stream,
        "AWS::S3::Bucket": _create_bucket,
        "AWS::DynamoDB::Table": _create_table,
    }
    created = dict(resources)
    # Queues first: their URL (what Ref returns) is the one thing known only once they exist.
    for resource_type in _CREATED_TYPES:
        for lid, res in template.resources_of_type(resource_type).items():
            props = template.resolve(res.get("Properties") or {}, Resources(created))
            created[lid] = creators[resource_type](aws, created[lid], props)
    return Resources(created)


# ---- naming ------------------------------------------------------------------------------------


def _physical(template: Template, logical_id: str, resource_type: str, endpoint: str) -> PhysicalResource:
    region, account, stack = template.region, template.account_id, template.stack_name
    name = f"{stack}-{logical_id}"
    service = resource_type.split("::")[1].lower()
    arn = f"arn:aws:{service}:{region}:{account}:{name}"
    ref: str | None = None  # what Ref returns when it is not the name
    attributes: dict[str, str] = {}
    if resource_type == "AWS::DynamoDB::Table":
        arn = f"arn:aws:dynamodb:{region}:{account}:table/{name}"
    elif resource_type == "AWS::Kinesis::Stream":
        arn = f"arn:aws:kinesis:{region}:{account}:stream/{name}"
    elif resource_type == "AWS::SQS::Queue":
        if (template.resources[logical_id].get("Properties") or {}).get("FifoQueue"):
            name += ".fifo"
        arn = f"arn:aws:sqs:{region}:{account}:{name}"
        ref = f"{endpoint}/{account}/{name}"
        attributes = {"QueueName": name, "QueueUrl": ref}
    elif resource_type == "AWS::S3::Bucket":
        name = name.lower()
        if len(name) > 63:
            raise TemplateError(f"local bucket name {name!r} is longer than S3's 63 characters; shorten the stack name")
        arn = f"arn:aws:s3:::{name}"
        attributes = {
            "DomainName": f"{name}.s3.amazonaws.com",
            "RegionalDomainName": f"{name}.s3.{region}.amazonaws.com",
        }
    elif resource_type in ("AWS::Serverless::Function", "AWS::Lambda::Function"):
        arn = f"arn:aws:lambda:{region}:{account}:function:{name}"
    elif resource_type in ("AWS::Serverless::LayerVersion", "AWS::Lambda::LayerVersion"):
        arn = f"arn:aws:lambda:{region}:{account}:layer:{name}:1"
        ref = arn
    return PhysicalResource(logical_id, resource_type, name, arn, ref or name, {"Arn": arn, **attributes})


# ---- creation, one function per resource type ----------------------------------------------------


def _create_queue(aws: LocalAws, planned: PhysicalResource, props: dict[str, Any]) -> PhysicalResource:
    attributes = {}
    for key, value in props.items():
        if key in ("QueueName", "Tags"):
            continue
        attributes[key] = json.dumps(value) if isinstance(value, (dict, list)) else _text(value)
    url = aws.client("sqs").create_queue(
        QueueName=planned.name,
        Attributes=attributes,
        tags={t["Key"]: t["Value"] for t in props.get("Tags", [])},
    )["QueueUrl"]
    return PhysicalResource(
        planned.logical_id, planned.type, planned.name, planned.arn, url, {**planned.attributes, "QueueUrl": url}
    )


def _create_stream(aws: LocalAws, planned: PhysicalResource, props: dict[str, Any]) -> PhysicalResource:
    kinesis = aws.client("kinesis")
    mode = (props.get("StreamModeDetails") or {}).get("StreamMode", "PROVISIONED")
    if mode == "ON_DEMAND":
        kinesis.create_stream(StreamName=planned.name, StreamModeDetails={"StreamMode": "ON_DEMAND"})
    else:
        kinesis.create_stream(StreamName=planned.name, ShardCount=int(props.get("ShardCount", 1)))
    hours = int(props.get("RetentionPeriodHours", 24))
    if hours > 24:
        kinesis.increase_stream_retention_period(StreamName=planned.name, RetentionPeriodHours=hours)
    return planned


def _create_bucket(aws: LocalAws, planned: PhysicalResource, props: dict[str, Any]) -> PhysicalResource:
    s3 = aws.client("s3")
    if aws.region == "us-east-1":
        s3.create_bucket(Bucket=planned.name)
    else:
        s3.create_bucket(Bucket=planned.name, CreateBucketConfiguration={"LocationConstraint": aws.region})
    versioning = (props.get("VersioningConfiguration") or {}).get("Status")
    if versioning:
        s3.put_bucket_versioning(Bucket=planned.name, VersioningConfiguration={"Status": versioning})
    return planned


def _create_table(aws: LocalAws, planned: PhysicalResource, props: dict[str, Any]) -> PhysicalResource:
    dynamodb = aws.client("dynamodb")
    billing = props.get("BillingMode", "PROVISIONED")
    request: dict[str, Any] = {
        "TableName": planned.name,
        "KeySchema": props["KeySchema"],
        "AttributeDefinitions": props["AttributeDefinitions"],
        "BillingMode": billing,
    }
    if billing == "PROVISIONED":
        request["ProvisionedThroughput"] = props.get(
            "ProvisionedThroughput", {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5}
        )
    for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        if props.get(key):
            request[key] = [
                {k: v for k, v in index.items() if not (billing == "PAY_PER_REQUEST" and k == "ProvisionedThroughput")}
                for index in props[key]
            ]
    if (props.get("StreamSpecification") or {}).get("StreamViewType"):
        request["StreamSpecification"] = {
            "StreamEnabled": True,
            "StreamViewType": props["StreamSpecification"]["StreamViewType"],
        }
    if "SSESpecification" in props:
        request["SSESpecification"] = {"Enabled": bool(props["SSESpecification"].get("SSEEnabled"))}
    if props.get("Tags"):
        request["Tags"] = props["Tags"]
    description = dynamodb.create_table(**request)["TableDescription"]

    ttl = props.get("TimeToLiveSpecification") or {}
    if ttl.get("Enabled"):
        dynamodb.update_time_to_live(
            TableName=planned.name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]},
        )
    pitr = props.get("PointInTimeRecoverySpecification") or {}
    if pitr.get("PointInTimeRecoveryEnabled"):
        dynamodb.update_continuous_backups(
            TableName=planned.name,
            PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
        )
    attributes = dict(planned.attributes)
    if description.get("LatestStreamArn"):
        attributes["StreamArn"] = description["LatestStreamArn"]
    return PhysicalResource(planned.logical_id, planned.type, planned.name, planned.arn, planned.ref, attributes)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _ensure_port_free(host: str, port: int) -> None:
    # moto's threaded server would wait forever if its thread cannot bind, so find out here.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            raise OSError(f"port {port} on {host} is in use; pick another with --port (0 = any free port)") from None
