"""The local API Gateway: serves the template's REST API on 127.0.0.1, turning each HTTP request into the proxy event
API Gateway would send the function, asking for the usage plan's API key where the template does, and turning the
function's answer back into the HTTP response."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import secrets
import string
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TextIO
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from .runtime import Invocation
from .template import ResourceLookup, Template, TemplateError

__all__ = [
    "API_KEY_HEADER",
    "DEFAULT_API_PORT",
    "ApiGateway",
    "ApiRoute",
    "Cors",
    "LocalApiServer",
    "RestApi",
    "new_api_key",
    "proxy_event",
    "rest_apis",
]

API_KEY_HEADER = "x-api-key"
# `sam local start-api` listens here, so tools and habits that expect a local API find this one too.
DEFAULT_API_PORT = 3000
# API Gateway stops waiting for a Lambda integration after 29 s and answers 504.
INTEGRATION_TIMEOUT_S = 29.0
# API Gateway refuses larger request payloads.
MAX_PAYLOAD_BYTES = 10 * 1024 * 1024
IMPLICIT_API = "ServerlessRestApi"  # SAM's name for the API of Api events that name no RestApiId

Invoke = Callable[[str, dict[str, Any]], Invocation]


@dataclass(frozen=True)
class ApiRoute:
    """One method on one resource, as an Api event of a function declares it."""

    resource: str  # /users/{user_id}/feed
    method: str  # GET, POST, ... or ANY
    function_id: str
    api_key_required: bool

    def match(self, segments: list[str]) -> dict[str, str] | None:
        """The path parameters, decoded, if the request's raw path segments fit this resource; else None."""
        parts = self.resource.strip("/").split("/") if self.resource.strip("/") else []
        params: dict[str, str] = {}
        for i, part in enumerate(parts):
            if part.startswith("{") and part.endswith("+}"):  # greedy: the rest of the path, at least one segment
                rest = segments[i:]
                if not rest or not rest[0]:
                    return None
                params[part[1:-2]] = unquote("/".join(rest))
                return params
            if i >= len(segments):
                return None
            if part.startswith("{") and part.endswith("}"):
                if not segments[i]:
                    return None
                params[part[1:-1]] = unquote(segments[i])
            elif unquote(segments[i]) != part:
                return None
        return params if len(segments) == len(parts) else None

    @property
    def specificity(self) -> tuple[int, int]:
        """API Gateway prefers literal segments to parameters, and parameters to a greedy tail."""
        parts = self.resource.strip("/").split("/")
        return (sum(not p.startswith("{") for p in parts), -sum(p.endswith("+}") for p in parts))


@dataclass(frozen=True)
class Cors:
    """What the API answers a browser's preflight with (SAM's Cors property, quotes removed)."""

    allow_origin: str
    allow_methods: str
    allow_headers: str | None = None
    max_age: str | None = None
    allow_credentials: bool = False

    def headers(self) -> dict[str, str]:
        headers = {"Access-Control-Allow-Origin": self.allow_origin, "Access-Control-Allow-Methods": self.allow_methods}
        if self.allow_headers:
            headers["Access-Control-Allow-Headers"] = self.allow_headers
        if self.max_age:
            headers["Access-Control-Max-Age"] = self.max_age
        if self.allow_credentials:
            headers["Access-Control-Allow-Credentials"] = "true"
        return headers


@dataclass(frozen=True)
class RestApi:
    """An AWS::Serverless::Api with the routes its functions' Api events give it."""

    logical_id: str
    stage: str
    routes: tuple[ApiRoute, ...]
    cors: Cors | None = None
    key_required_on_preflight: bool = True  # SAM's AddApiKeyRequiredToCorsPreflight

    @property
    def needs_key(self) -> bool:
        return any(route.api_key_required for route in self.routes)


def rest_apis(template: Template, resources: ResourceLookup) -> dict[str, RestApi]:
    """Every REST API of the template by logical id: its stage, routes, key requirements and CORS preflight."""
    declared = template.resources_of_type("AWS::Serverless::Api")
    global_api = ((template.body.get("Globals") or {}).get("Api")) or {}
    properties = {lid: template.resolve({**global_api, **(res.get("Properties") or {})}, resources)
                  for lid, res in declared.items()}
    routes: dict[str, list[ApiRoute]] = {}
    for function_id, function in template.functions().items():
        for name, event in function.events_of_type("Api").items():
            event = template.resolve(event, resources)
            api_id = _api_of(event.get("RestApiId"), declared, resources) if "RestApiId" in event else IMPLICIT_API
            if api_id == IMPLICIT_API:
                properties.setdefault(IMPLICIT_API, {"StageName": "Prod", **template.resolve(global_api, resources)})
            api_auth = properties[api_id].get("Auth") or {}
            event_auth = event.get("Auth") or {}
            key_required = bool(event_auth.get("ApiKeyRequired", api_auth.get("ApiKeyRequired", False)))
            if "Path" not in event or "Method" not in event:
                raise TemplateError(f"{function_id}.{name}: an Api event needs Path and Method")
            method = str(event["Method"]).upper()
            routes.setdefault(api_id, []).append(ApiRoute(
                "/" + str(event["Path"]).strip("/"), "ANY" if method in ("ANY", "X-AMAZON-APIGATEWAY-ANY-METHOD")
                else method, function_id, key_required))
    return {
        api_id: RestApi(
            logical_id=api_id,
            stage=str(props.get("StageName", "Prod")),
            routes=tuple(sorted(routes.get(api_id, []), key=lambda r: r.specificity, reverse=True)),
            cors=_cors(props.get("Cors")),
            key_required_on_preflight=bool((props.get("Auth") or {}).get("AddApiKeyRequiredToCorsPreflight", True)),
        )
        for api_id, props in properties.items()
    }


def new_api_key() -> str:
    """A key like the ones API Gateway generates: 40 letters and digits."""
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(40))


def proxy_event(method: str, path: str, *, resource: str, path_parameters: Mapping[str, str] | None = None,
                query: Iterable[tuple[str, str]] = (), headers: Iterable[tuple[str, str]] = (),
                body: bytes | None = None, stage: str = "dev", request_path: str | None = None,
                api_key: str | None = None, source_ip: str = "127.0.0.1", request_id: str | None = None,
                api_id: str = "local", account_id: str = "123456789012", domain_name: str = "127.0.0.1",
                now: dt.datetime | None = None) -> dict[str, Any]:
    """The REST API's Lambda proxy event (payload 1.0) for one request. `path` is as sent, percent-encoded, without the
    stage; `request_path` is what the client asked for (with the stage when it gave one); `query` pairs are decoded."""
    now = now or dt.datetime.now(dt.UTC)
    multi_headers: dict[str, list[str]] = {}
    for name, value in headers:
        multi_headers.setdefault(name, []).append(value)
    multi_query: dict[str, list[str]] = {}
    for name, value in query:
        multi_query.setdefault(name, []).append(value)
    text, encoded = _body_text(body)
    request_id = request_id or str(uuid.uuid4())
    user_agent = next((v[-1] for k, v in multi_headers.items() if k.lower() == "user-agent"), None)
    identity: dict[str, Any] = {"sourceIp": source_ip, "userAgent": user_agent, "accessKey": None, "accountId": None,
                                "caller": None, "cognitoIdentityId": None, "user": None, "userArn": None}
    if api_key is not None:
        identity |= {"apiKey": api_key, "apiKeyId": hashlib.sha256(api_key.encode()).hexdigest()[:10]}
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        # A header or parameter given more than once appears with its last value, as API Gateway does it.
        "headers": {k: v[-1] for k, v in multi_headers.items()} or None,
        "multiValueHeaders": multi_headers or None,
        "queryStringParameters": {k: v[-1] for k, v in multi_query.items()} or None,
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": dict(path_parameters) if path_parameters else None,
        "stageVariables": None,
        "requestContext": {
            "resourceId": hashlib.sha256(resource.encode()).hexdigest()[:6],
            "resourcePath": resource,
            "httpMethod": method,
            "extendedRequestId": request_id,
            "requestTime": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "path": request_path if request_path is not None else f"/{stage}{path}",
            "accountId": account_id,
            "protocol": "HTTP/1.1",
            "stage": stage,
            "domainPrefix": domain_name.split(".")[0],
            "requestTimeEpoch": int(now.timestamp() * 1000),
            "requestId": request_id,
            "identity": identity,
            "domainName": domain_name,
            "apiId": api_id,
        },
        "body": text,
        "isBase64Encoded": encoded,
    }


class ApiGateway:
    """A WSGI application that answers as API Gateway does in front of the template's functions.

    What API Gateway answers itself: 403 {"message":"Missing Authentication Token"} for a path or method the API does
    not have; 403 {"message":"Forbidden"} without the right x-api-key where the usage plan asks for one; the CORS
    preflight (OPTIONS) where the template configures CORS; 502 {"message":"Internal server error"} when the function
    fails or answers something that is not a proxy response; 504 when it takes longer than 29 s."""

    def __init__(self, api: RestApi, invoke: Invoke, *, api_key: str | None, region: str = "us-east-1",
                 account_id: str = "123456789012", access_log: TextIO | None = None):
        if api.needs_key and not api_key:
            raise ValueError(f"{api.logical_id} asks for an API key on some routes; give the key to expect")
        self.api = api
        self.invoke = invoke
        self.api_key = api_key
        self.region = region
        self.account_id = account_id
        self.access_log = access_log
        self.api_id = hashlib.sha256(api.logical_id.encode()).hexdigest()[:10]
        self._log_lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        started = time.monotonic()
        response = self.handle(request)
        self._log(request, response, started)
        return response(environ, start_response)

    def handle(self, request: Request) -> Response:
        raw_path = _raw_path(request)
        path = self._without_stage(raw_path)
        if path != "/":
            path = path.rstrip("/") or "/"  # API Gateway takes /items/1/related/ for /items/1/related
        segments = path.split("/")[1:] if path != "/" else []
        matches = [(route, params) for route in self.api.routes if (params := route.match(segments)) is not None]
        if not matches:
            return _message(403, "Missing Authentication Token")
        method = request.method.upper()
        if method == "OPTIONS" and self.api.cors and not any(r.method == "OPTIONS" for r, _ in matches):
            needs_key = self.api.key_required_on_preflight and any(r.api_key_required for r, _ in matches)
            if needs_key and not self._has_key(request):
                return _message(403, "Forbidden")
            # SAM's preflight is a mock integration that answers {} with the configured headers.
            return Response(b"{}", 200, headers=self.api.cors.headers(), content_type="application/json")
        route, params = next(((r, p) for r, p in matches if r.method in (method, "ANY")), (None, None))
        if route is None:
            return _message(403, "Missing Authentication Token")
        if route.api_key_required and not self._has_key(request):
            return _message(403, "Forbidden")
        if (request.content_length or 0) > MAX_PAYLOAD_BYTES:
            return _message(413, "Request Too Long")
        body = request.get_data(cache=False)
        if len(body) > MAX_PAYLOAD_BYTES:
            return _message(413, "Request Too Long")
        # WSGI carries the raw query as latin-1 text; decode its bytes as UTF-8, as API Gateway does.
        raw_query = request.environ.get("QUERY_STRING", "").encode("latin-1").decode("utf-8", errors="replace")
        event = proxy_event(
            method, path, resource=route.resource, path_parameters=params,
            query=parse_qsl(raw_query, keep_blank_values=True),
            headers=[*request.headers.items(), *_forwarded(request)], body=body or None,
            stage=self.api.stage, request_path=raw_path, source_ip=request.remote_addr or "127.0.0.1",
            api_key=request.headers.get(API_KEY_HEADER) if route.api_key_required else None,
            api_id=self.api_id, account_id=self.account_id, domain_name=request.host or "127.0.0.1",
        )
        invocation = self.invoke(route.function_id, event)
        response = self._response(invocation)
        response.headers["x-amzn-RequestId"] = event["requestContext"]["requestId"]
        return response

    def _has_key(self, request: Request) -> bool:
        given = request.headers.get(API_KEY_HEADER)
        return given is not None and self.api_key is not None and secrets.compare_digest(given, self.api_key)

    def _without_stage(self, raw_path: str) -> str:
        # Deployed URLs carry the stage (/dev/users/...); local ones need not, as with `sam local start-api`.
        prefix = f"/{self.api.stage}"
        if raw_path == prefix:
            return "/"
        return raw_path[len(prefix):] if raw_path.startswith(prefix + "/") else raw_path

    def _response(self, invocation: Invocation) -> Response:
        if not invocation.ok:
            error = invocation.error or {}
            self._log_error(error)
            if error.get("errorType") == "Sandbox.Timedout":
                return _message(504, "Endpoint request timed out")
            return _message(502, "Internal server error")
        if invocation.duration_ms > INTEGRATION_TIMEOUT_S * 1000:
            return _message(504, "Endpoint request timed out")
        payload = invocation.payload
        if not isinstance(payload, dict) or not isinstance(payload.get("statusCode"), int):
            self._log_error({"errorMessage": f"not a proxy response: {str(payload)[:200]}"})
            return _message(502, "Internal server error")
        body = payload.get("body") or ""
        try:
            data = base64.b64decode(body, validate=True) if payload.get("isBase64Encoded") else str(body).encode("utf-8")
        except ValueError:
            self._log_error({"errorMessage": "isBase64Encoded is set but the body is not base64"})
            return _message(502, "Internal server error")
        response = Response(data, payload["statusCode"])
        response.headers.remove("Content-Type")
        for name, value in (payload.get("headers") or {}).items():
            response.headers[name] = str(value)
        for name, values in (payload.get("multiValueHeaders") or {}).items():
            response.headers.remove(name)
            for value in values:
                response.headers.add(name, str(value))
        return response

    def _log(self, request: Request, response: Response, started: float) -> None:
        if self.access_log is None:
            return
        elapsed_ms = (time.monotonic() - started) * 1000
        line = f"{dt.datetime.now(dt.UTC):%H:%M:%S} API {request.method} {_raw_path(request)}" \
               f"{'?' + request.query_string.decode('latin-1') if request.query_string else ''} " \
               f"-> {response.status_code} in {elapsed_ms:.0f} ms\n"
        self._write(line)

    def _log_error(self, error: dict[str, Any]) -> None:
        # The function's own output went to its log; this is what the gateway saw of the failure.
        self._write(f"API function failed: {error.get('errorType', '')} {error.get('errorMessage', '')}".rstrip()
                    + "\n")

    def _write(self, line: str) -> None:
        out = self.access_log or sys.stderr
        with self._log_lock:
            out.write(line)
            out.flush()


class LocalApiServer:
    """An ApiGateway served over HTTP on loopback from a background thread; port 0 picks a free port."""

    def __init__(self, gateway: ApiGateway, *, host: str = "127.0.0.1", port: int = DEFAULT_API_PORT):
        self.gateway = gateway
        self.host = host
        self.port = port
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> LocalApiServer:
        try:
            self._server = make_server(self.host, self.port, self.gateway, threaded=True, request_handler=_QuietHandler)
        except OSError:
            raise OSError(f"port {self.port} on {self.host} is in use; pick another with --api-port "
                          "(0 = any free port)") from None
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="tailor-api")
        self._thread.start()
        return self

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None


class _QuietHandler(WSGIRequestHandler):
    """The gateway writes its own access log; werkzeug's would go to the terminal."""

    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


def _api_of(rest_api_id: Any, declared: Mapping[str, Any], resources: ResourceLookup) -> str:
    """The logical id of the API that an event's RestApiId (resolved to the API's local name) points at."""
    for lid in declared:
        if rest_api_id in (lid, resources.ref(lid)):
            return lid
    raise TemplateError(f"an Api event's RestApiId {rest_api_id!r} is not an AWS::Serverless::Api of the template")


def _cors(value: Any) -> Cors | None:
    """SAM's Cors property (a quoted origin, or a map of quoted values) as the preflight answer."""
    if not value:
        return None
    if isinstance(value, str):
        value = {"AllowOrigin": value}
    methods = _unquoted(value.get("AllowMethods")) or "DELETE,GET,HEAD,OPTIONS,PATCH,POST,PUT"
    return Cors(allow_origin=_unquoted(value.get("AllowOrigin")) or "*", allow_methods=methods,
                allow_headers=_unquoted(value.get("AllowHeaders")), max_age=_unquoted(value.get("MaxAge")),
                allow_credentials=bool(value.get("AllowCredentials")))


def _unquoted(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value)
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == "'" else text


def _raw_path(request: Request) -> str:
    """The path as the client sent it, percent-encoding kept (API Gateway's REST proxy event passes it so)."""
    uri = request.environ.get("REQUEST_URI") or request.environ.get("RAW_URI")
    if uri:
        path = urlsplit(uri).path if "://" in uri else uri.split("?", 1)[0]
        # WSGI carries the raw bytes as latin-1; re-encode what a client sent unencoded.
        return quote(path.encode("latin-1").decode("utf-8", errors="replace"), safe="/%:@!$&'()*+,;=-._~") or "/"
    return quote(request.path, safe="/:@!$&'()*+,;=-._~") or "/"


def _body_text(body: bytes | None) -> tuple[str | None, bool]:
    """The body as API Gateway hands it over: text, or base64 when it is not UTF-8."""
    if body is None:
        return None, False
    try:
        return body.decode("utf-8"), False
    except UnicodeDecodeError:
        return base64.b64encode(body).decode("ascii"), True


def _forwarded(request: Request) -> list[tuple[str, str]]:
    host, _, port = (request.host or "127.0.0.1").partition(":")
    return [("X-Forwarded-For", request.remote_addr or "127.0.0.1"), ("X-Forwarded-Port", port or "80"),
            ("X-Forwarded-Proto", request.scheme)]


def _message(status: int, message: str) -> Response:
    return Response(json.dumps({"message": message}), status, content_type="application/json")
