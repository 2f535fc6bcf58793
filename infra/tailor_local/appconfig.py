"""AppConfig's data plane on the local stack: the hosted configurations the template deploys, answered as AppConfigData
answers StartConfigurationSession and GetLatestConfiguration, so functions read their configuration the way they do in
AWS (moto has AppConfig's control plane only)."""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from .template import ResourceLookup, Template

__all__ = ["AppConfigData", "HostedConfiguration", "LocalAppConfigServer", "SERVICE", "hosted_configurations"]

SERVICE = "appconfigdata"  # the SDK's name for the data plane; AWS_ENDPOINT_URL_APPCONFIGDATA points SDKs here
POLL_INTERVAL_S = 60  # AppConfigData's default minimum poll interval


@dataclass(frozen=True)
class HostedConfiguration:
    """What a Deployment of the template deploys: the names and ids that identify it, and the content."""

    application: frozenset[str]
    environment: frozenset[str]
    profile: frozenset[str]
    content: bytes
    content_type: str
    version_label: str

    def answers(self, application: str, environment: str, profile: str) -> bool:
        return application in self.application and environment in self.environment and profile in self.profile


def hosted_configurations(template: Template, resources: ResourceLookup) -> list[HostedConfiguration]:
    """The hosted configuration version each AWS::AppConfig::Deployment of the template deploys."""
    found = []
    for deployment in template.resources_of_type("AWS::AppConfig::Deployment").values():
        props = template.resolve(deployment.get("Properties") or {}, resources)
        application = _identifiers(template, resources, "AWS::AppConfig::Application", props.get("ApplicationId"))
        environment = _identifiers(template, resources, "AWS::AppConfig::Environment", props.get("EnvironmentId"))
        profile = _identifiers(template, resources, "AWS::AppConfig::ConfigurationProfile",
                               props.get("ConfigurationProfileId"))
        version = _properties(template, resources, "AWS::AppConfig::HostedConfigurationVersion",
                              props.get("ConfigurationVersion"))
        if version is None or "Content" not in version:
            continue  # not a hosted configuration: nothing to serve locally
        content = version["Content"]
        found.append(HostedConfiguration(
            application, environment, profile,
            (content if isinstance(content, str) else json.dumps(content)).encode("utf-8"),
            str(version.get("ContentType") or "application/octet-stream"), str(version.get("VersionLabel") or "1")))
    return found


class AppConfigData:
    """A WSGI application answering AppConfigData's two calls for the given configurations.

    Tokens stay valid once handed out (AWS takes each once): in a process that runs several invocations at a time,
    two of them may poll with the same token."""

    def __init__(self, configurations: Iterable[HostedConfiguration]):
        self.configurations = list(configurations)
        self._sessions: dict[str, HostedConfiguration] = {}
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        if request.method == "POST" and request.path == "/configurationsessions":
            response = self._start_session(request)
        elif request.method == "GET" and request.path == "/configuration":
            response = self._latest(request.args.get("configuration_token", ""))
        else:
            response = _error(404, "ResourceNotFoundException", f"no {request.method} {request.path} in AppConfigData")
        return response(environ, start_response)

    def _start_session(self, request: Request) -> Response:
        try:
            body = json.loads(request.get_data() or b"{}")
            wanted = (body["ApplicationIdentifier"], body["EnvironmentIdentifier"],
                      body["ConfigurationProfileIdentifier"])
        except (ValueError, KeyError) as exc:
            return _error(400, "BadRequestException", f"invalid StartConfigurationSession request: {exc}")
        configuration = next((c for c in self.configurations if c.answers(*wanted)), None)
        if configuration is None:
            return _error(404, "ResourceNotFoundException",
                          "no configuration deployed for application {}, environment {}, profile {}".format(*wanted))
        return Response(json.dumps({"InitialConfigurationToken": self._token(configuration)}), 201,
                        content_type="application/json")

    def _latest(self, token: str) -> Response:
        with self._lock:
            configuration = self._sessions.get(token)
        if configuration is None:
            return _error(400, "BadRequestException", "the configuration token is not one this service handed out")
        return Response(configuration.content, 200, headers={
            "Content-Type": configuration.content_type,
            "Next-Poll-Configuration-Token": self._token(configuration),
            "Next-Poll-Interval-In-Seconds": str(POLL_INTERVAL_S),
            "Version-Label": configuration.version_label,
        })

    def _token(self, configuration: HostedConfiguration) -> str:
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._sessions[token] = configuration
        return token


class LocalAppConfigServer:
    """AppConfigData served on loopback from a background thread, on a free port."""

    def __init__(self, app: AppConfigData, *, host: str = "127.0.0.1", port: int = 0):
        self.app = app
        self._server = make_server(host, port, app, threaded=True, request_handler=_QuietHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True,
                                        name="tailor-appconfig")

    @property
    def url(self) -> str:
        return f"http://{self._server.server_address[0]}:{self._server.server_port}"

    def start(self) -> LocalAppConfigServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


def _identifiers(template: Template, resources: ResourceLookup, resource_type: str, ref: Any) -> frozenset[str]:
    """What a request may name a resource by: its id (what Ref gives) or its Name."""
    if ref is None:
        return frozenset()
    names = {str(ref)}
    properties = _properties(template, resources, resource_type, ref)
    if properties and properties.get("Name"):
        names.add(str(properties["Name"]))
    return frozenset(names)


def _properties(template: Template, resources: ResourceLookup, resource_type: str, ref: Any) -> dict[str, Any] | None:
    for lid, resource in template.resources_of_type(resource_type).items():
        if resources.ref(lid) == ref:
            return template.resolve(resource.get("Properties") or {}, resources)
    return None


def _error(status: int, error_type: str, message: str) -> Response:
    # AppConfigData speaks REST-JSON: the error's type in a header, its message in the body.
    return Response(json.dumps({"Message": message}), status, content_type="application/json",
                    headers={"x-amzn-ErrorType": error_type})
