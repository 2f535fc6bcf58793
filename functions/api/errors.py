"""How the API answers what it cannot serve: 422 naming each field at fault and why."""

import json
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from botocore.exceptions import BotoCoreError, ClientError

from tailor.catalog import CatalogBusy
from tailor.events import load_json
from tailor.ranking.limits import RequestError

NOT_AN_OBJECT = "must be a JSON object"

logger = Logger(child=True)


def register(app: APIGatewayRestResolver) -> None:
    """The resolver's errors, answered as 422s that name the field and say why."""

    @app.exception_handler(RequestValidationError)
    def _invalid_request(error: RequestValidationError) -> Response:
        """422 naming each field at fault and why (the resolver's default leaves out the why)."""
        return unprocessable([readable(e) for e in error.errors()])

    @app.exception_handler(RequestError)
    def _refused_by_the_domain(error: RequestError) -> Response:
        """422 naming the parameter the domain refused. A body's model runs the domain's checks as it validates and
        locates the field itself (models.py), so what the domain refuses here came by the query string."""
        return unprocessable([{"loc": ["query", error.field], "msg": error.message, "type": error.kind}])

    @app.exception_handler([BotoCoreError, ClientError])
    def _store_unavailable(error: Exception) -> Response:
        """A call to DynamoDB or S3 that failed after its tries (throttled, timed out, unreachable): 503 at once, so
        the shop's page falls back to its own list rather than wait, where the invocation's error was a bare 502."""
        logger.exception("a store call failed after its tries")
        return try_again("Tailor's state could not be read just now; try again")

    @app.exception_handler(CatalogBusy)
    def _catalog_busy(error: CatalogBusy) -> Response:
        """Other loads of the same items kept writing first: 503, for the caller to send the request again."""
        logger.warning("catalog load gave way to others", extra={"reason": str(error)})
        return try_again("other catalog loads of the same items were being written; send the request again")

    @app.exception_handler(UnicodeDecodeError)
    def _undecodable_body(error: UnicodeDecodeError) -> Response:
        # The resolver decodes a base64 body as UTF-8 before it validates anything.
        return unprocessable([{"loc": ["body"], "msg": "not UTF-8 text", "type": "unicode_decode"}])

    @app.exception_handler(ValueError)
    def _multipart_without_boundary(error: ValueError) -> Response:
        # The resolver parses multipart bodies before it validates, and fails when the boundary is missing.
        if not app.current_event.headers.get("content-type", "").lower().startswith("multipart/"):
            raise error
        return unprocessable([{"loc": ["body"], "msg": "send JSON (multipart without a boundary)", "type": "multipart"}])


def json_object(text: str, *, max_depth: int) -> dict[str, Any]:
    """A request body decoded, which every route with a body takes as one JSON object: anything else (an array
    above all, whose first element alone the resolver would validate) is refused as the body's fault. NaN and
    Infinity are decoded, for the request models to refuse naming the field."""
    value = load_json(text, max_depth=max_depth, allow_nan=True)
    if not isinstance(value, dict):
        raise json.JSONDecodeError(f"{NOT_AN_OBJECT}, not {_json_type(value)}", text, 0)
    return value


def try_again(message: str) -> Response:
    """503 with a second's Retry-After: nothing is wrong with the request, and it may be sent again."""
    return Response(status_code=503, content_type=content_types.APPLICATION_JSON, headers={"Retry-After": "1"},
                    body={"statusCode": 503, "message": message})


def unprocessable(detail: list[dict[str, Any]]) -> Response:
    message = "; ".join(f"{field(d['loc'])}: {d['msg']}" for d in detail)
    return Response(status_code=422, content_type=content_types.APPLICATION_JSON,
                    body={"statusCode": 422, "message": f"invalid request: {message}", "detail": detail})


def readable(error: dict[str, Any]) -> dict[str, Any]:
    if error["type"] == "json_invalid":  # located at a character of the body, not at a field
        position = error["loc"][-1]
        reason = (error.get("ctx") or {}).get("error", "")
        if reason.startswith(NOT_AN_OBJECT):
            return {"loc": ["body"], "msg": reason, "type": "json_invalid"}
        return {"loc": ["body"], "msg": f"not valid JSON at character {position}: {reason}".rstrip(": "),
                "type": "json_invalid"}
    given = error.get("input")
    repeated = isinstance(given, list) and len(given) > 1 and error["type"].endswith("_type")
    if error["loc"][:1] == ("query",) and repeated:
        # A parameter of one value sent more than once reaches its model as the list of them.
        return {"loc": list(error["loc"]), "msg": f"given {len(given)} times: give it once", "type": "repeated"}
    return {"loc": list(error["loc"]), "msg": error.get("msg", ""), "type": error["type"]}


def field(loc: list[Any]) -> str:
    """Where a validation error is: `query n`, `body items.3`."""
    return " ".join([str(loc[0]), ".".join(str(part) for part in loc[1:])]).strip() if loc else "request"


def _json_type(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "true or false"
    return "null" if value is None else "a number"
