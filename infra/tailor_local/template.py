"""Reads template.yaml as CloudFormation would, for the local stack: tags, parameters, conditions, intrinsics."""

from __future__ import annotations

import base64
import copy
import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cfnlint.decode import decode_str

__all__ = [
    "Function",
    "ResourceLookup",
    "Template",
    "TemplateError",
    "TEMPLATE_FILE",
    "find_template",
]

TEMPLATE_FILE = "template.yaml"


class TemplateError(ValueError):
    """The template cannot be read, or asks for something the local stack cannot provide."""


class ResourceLookup(Protocol):
    """What `Template.resolve` needs to answer Ref and Fn::GetAtt of a resource."""

    def ref(self, logical_id: str) -> str: ...

    def attribute(self, logical_id: str, name: str) -> str: ...


@dataclass(frozen=True)
class Function:
    """An AWS::Serverless::Function with Globals.Function merged in; intrinsics still unresolved."""

    logical_id: str
    properties: dict[str, Any]

    @property
    def code_uri(self) -> Any:
        return self.properties.get("CodeUri")

    @property
    def handler(self) -> str:
        return self.properties["Handler"]

    @property
    def events(self) -> dict[str, dict[str, Any]]:
        return self.properties.get("Events") or {}

    def events_of_type(self, *types: str) -> dict[str, dict[str, Any]]:
        return {name: ev.get("Properties") or {} for name, ev in self.events.items() if ev.get("Type") in types}


def find_template(start: Path | None = None) -> Path:
    """The template.yaml in `start` or its nearest parent, else the one in the repository this package lives in."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / TEMPLATE_FILE).is_file():
            return folder / TEMPLATE_FILE
    beside_package = Path(__file__).resolve().parents[2] / TEMPLATE_FILE
    if beside_package.is_file():
        return beside_package
    raise TemplateError(f"no {TEMPLATE_FILE} in {here} or its parents; pass --template")


class Template:
    """A parsed template: parameter values, the resources whose conditions hold, functions, and `resolve`."""

    def __init__(
        self,
        path: Path,
        body: Mapping[str, Any],
        *,
        region: str = "us-east-1",
        account_id: str = "123456789012",
        stack_name: str = "tailor-local",
        parameter_overrides: Mapping[str, str] | None = None,
    ):
        self.path = Path(path).resolve()
        self.body = _plain(body)
        self.pseudo_parameters: dict[str, str] = {
            "AWS::Region": region,
            "AWS::AccountId": account_id,
            "AWS::StackName": stack_name,
            "AWS::StackId": f"arn:aws:cloudformation:{region}:{account_id}:stack/{stack_name}/local",
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
        }
        self.parameters = self._parameter_values(parameter_overrides or {})
        self._condition_values: dict[str, bool] = {}
        self.resources: dict[str, dict[str, Any]] = {
            logical_id: resource
            for logical_id, resource in (self.body.get("Resources") or {}).items()
            if "Condition" not in resource or self.condition(resource["Condition"])
        }

    @classmethod
    def load(cls, path: Path | str, **options: Any) -> Template:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise TemplateError(f"cannot read {path}: {exc.strerror}") from None
        body, problems = decode_str(text)
        if problems or not isinstance(body, dict):
            raise TemplateError(f"{path} is not a readable template: " + "; ".join(str(p) for p in problems))
        return cls(path, body, **options)

    @property
    def root(self) -> Path:
        """The folder that CodeUri and ContentUri paths are relative to."""
        return self.path.parent

    @property
    def region(self) -> str:
        return self.pseudo_parameters["AWS::Region"]

    @property
    def account_id(self) -> str:
        return self.pseudo_parameters["AWS::AccountId"]

    @property
    def stack_name(self) -> str:
        return self.pseudo_parameters["AWS::StackName"]

    def resources_of_type(self, *types: str) -> dict[str, dict[str, Any]]:
        return {lid: res for lid, res in self.resources.items() if res.get("Type") in types}

    def functions(self) -> dict[str, Function]:
        global_props = ((self.body.get("Globals") or {}).get("Function")) or {}
        return {
            lid: Function(lid, _merge_globals(global_props, res.get("Properties") or {}))
            for lid, res in self.resources_of_type("AWS::Serverless::Function").items()
        }

    def condition(self, name: str) -> bool:
        if name not in self._condition_values:
            conditions = self.body.get("Conditions") or {}
            if name not in conditions:
                raise TemplateError(f"unknown condition {name!r}")
            self._condition_values[name] = bool(self._evaluate_condition(conditions[name]))
        return self._condition_values[name]

    def resolve(self, value: Any, resources: ResourceLookup | None = None) -> Any:
        """`value` with every intrinsic function evaluated; Ref AWS::NoValue removes its key or list entry."""
        result = self._resolve(value, resources)
        return None if result is _NO_VALUE else result

    # ---- parameters and conditions ---------------------------------------------------------------

    def _parameter_values(self, overrides: Mapping[str, str]) -> dict[str, Any]:
        declared = self.body.get("Parameters") or {}
        unknown = set(overrides) - set(declared)
        if unknown:
            raise TemplateError(f"unknown parameters: {', '.join(sorted(unknown))}")
        values: dict[str, Any] = {}
        for name, spec in declared.items():
            if name in overrides:
                raw = overrides[name]
            elif "Default" in spec:
                raw = spec["Default"]
            else:
                raise TemplateError(f"parameter {name} has no Default; give it a value")
            value = _scalar_text(raw)
            allowed = [_scalar_text(v) for v in spec.get("AllowedValues") or []]
            if allowed and value not in allowed:
                raise TemplateError(f"parameter {name}={value!r} is not one of {allowed}")
            if str(spec.get("Type", "String")).startswith(("List<", "CommaDelimitedList")):
                values[name] = [part.strip() for part in value.split(",")] if value else []
            else:
                values[name] = value
        return values

    def _evaluate_condition(self, expr: Any) -> Any:
        if isinstance(expr, dict) and len(expr) == 1:
            (key, arg), = expr.items()
            if key == "Condition":
                return self.condition(arg)
            if key == "Fn::Equals":
                left, right = (self._evaluate_condition(a) for a in arg)
                return _scalar_text(left) == _scalar_text(right)
            if key == "Fn::Not":
                return not self._evaluate_condition(arg[0])
            if key == "Fn::And":
                return all(self._evaluate_condition(a) for a in arg)
            if key == "Fn::Or":
                return any(self._evaluate_condition(a) for a in arg)
        return self.resolve(expr)

    # ---- intrinsic functions ---------------------------------------------------------------------

    def _resolve(self, value: Any, resources: ResourceLookup | None) -> Any:
        if isinstance(value, dict):
            if len(value) == 1:
                (key, arg), = value.items()
                if key == "Ref":
                    return self._ref(arg, resources)
                if key in _INTRINSICS:
                    return _INTRINSICS[key](self, arg, resources)
                if key.startswith("Fn::"):
                    raise TemplateError(f"the local stack cannot evaluate {key}")
            resolved = {k: self._resolve(v, resources) for k, v in value.items()}
            return {k: v for k, v in resolved.items() if v is not _NO_VALUE}
        if isinstance(value, list):
            return [r for r in (self._resolve(v, resources) for v in value) if r is not _NO_VALUE]
        return value

    def _ref(self, name: str, resources: ResourceLookup | None) -> Any:
        if name == "AWS::NoValue":
            return _NO_VALUE
        if name in self.pseudo_parameters:
            return self.pseudo_parameters[name]
        if name in self.parameters:
            return self.parameters[name]
        if name in self.resources:
            if resources is None:
                raise TemplateError(f"Ref {name} needs the stack's resources")
            return resources.ref(name)
        raise TemplateError(f"Ref to unknown name {name!r}")

    def _get_att(self, arg: Any, resources: ResourceLookup | None) -> str:
        logical_id, attribute = arg.split(".", 1) if isinstance(arg, str) else self._resolve(arg, resources)
        if logical_id not in self.resources:
            raise TemplateError(f"Fn::GetAtt of unknown resource {logical_id!r}")
        if resources is None:
            raise TemplateError(f"Fn::GetAtt {logical_id}.{attribute} needs the stack's resources")
        return resources.attribute(logical_id, attribute)

    def _sub(self, arg: Any, resources: ResourceLookup | None) -> str:
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
        variables = {k: self._resolve(v, resources) for k, v in variables.items()}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return _scalar_text(variables[name])
            if "." in name and not name.startswith("AWS::"):
                return self._get_att(name, resources)
            return _scalar_text(self._ref(name, resources))

        return _SUB_VARIABLE.sub(replace, text)

    def _join(self, arg: Any, resources: ResourceLookup | None) -> str:
        delimiter, items = arg
        return delimiter.join(_scalar_text(v) for v in self._resolve(items, resources))

    def _select(self, arg: Any, resources: ResourceLookup | None) -> Any:
        index, items = self._resolve(arg, resources)
        return items[int(index)]

    def _split(self, arg: Any, resources: ResourceLookup | None) -> list[str]:
        delimiter, text = self._resolve(arg, resources)
        return text.split(delimiter)

    def _if(self, arg: Any, resources: ResourceLookup | None) -> Any:
        name, when_true, when_false = arg
        return self._resolve(when_true if self.condition(name) else when_false, resources)

    def _find_in_map(self, arg: Any, resources: ResourceLookup | None) -> Any:
        map_name, top, second = self._resolve(arg, resources)
        try:
            return self.body["Mappings"][map_name][top][second]
        except KeyError:
            raise TemplateError(f"Fn::FindInMap {map_name}/{top}/{second} is not in Mappings") from None

    def _base64(self, arg: Any, resources: ResourceLookup | None) -> str:
        return base64.b64encode(_scalar_text(self._resolve(arg, resources)).encode()).decode()


_NO_VALUE = object()
_SUB_VARIABLE = re.compile(r"\$\{([^}]+)\}")
_INTRINSICS = {
    "Fn::GetAtt": Template._get_att,
    "Fn::Sub": Template._sub,
    "Fn::Join": Template._join,
    "Fn::Select": Template._select,
    "Fn::Split": Template._split,
    "Fn::If": Template._if,
    "Fn::FindInMap": Template._find_in_map,
    "Fn::Base64": Template._base64,
}


def _merge_globals(global_props: Mapping[str, Any], own: Mapping[str, Any]) -> dict[str, Any]:
    """SAM's Globals rules: maps merge (the function wins), lists concatenate (globals first), scalars override."""
    merged = copy.deepcopy(dict(global_props))
    for key, value in own.items():
        current = merged.get(key)
        both_maps = isinstance(current, dict) and isinstance(value, dict)
        if both_maps and not (_is_intrinsic(current) or _is_intrinsic(value)):
            merged[key] = _merge_globals(current, value)
        elif isinstance(current, list) and isinstance(value, list):
            merged[key] = current + copy.deepcopy(value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _is_intrinsic(value: Mapping[str, Any]) -> bool:
    return len(value) == 1 and next(iter(value)) in ("Ref", "Condition", *_INTRINSICS)


def _scalar_text(value: Any) -> str:
    """A scalar as CloudFormation passes it on: booleans lower-case, numbers and dates as written."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, list):
        return ",".join(_scalar_text(v) for v in value)
    return str(value)


def _plain(value: Any) -> Any:
    """cfn-lint's nodes (dict/str subclasses carrying line marks) as plain Python values."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, str):
        return str(value)
    return value
