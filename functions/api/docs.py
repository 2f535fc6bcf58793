"""The API's OpenAPI document at /docs (?format=json) and the page to explore and try the API with."""

import functools
from pathlib import Path as FilePath

from aws_lambda_powertools import event_handler
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types


def register(app: APIGatewayRestResolver) -> None:
    """GET /docs, left out of the document it serves."""

    @app.get("/docs", include_in_schema=False)
    def docs():
        """The OpenAPI document with ?format=json, else a page to explore and try the API with."""
        document = _openapi_document(app, base_path(app))
        if app.current_event.get_query_string_value("format") == "json":
            return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body=document)
        return Response(status_code=200, content_type="text/html", body=_explorer(document))


def base_path(app: APIGatewayRestResolver) -> str:
    """The stage in the URL the request came by (/dev), or nothing when it came by a custom domain or locally."""
    context = app.current_event.request_context
    stage = context.stage
    return f"/{stage}" if stage and stage != "$default" and (context.path or "").startswith(f"/{stage}/") else ""


@functools.lru_cache(maxsize=4)
def _openapi_document(app: APIGatewayRestResolver, base_path: str) -> str:
    # Built on first use, not at import: the resolver's OpenAPI models take a fifth of a second to load, which a
    # cold start should not pay for a page few requests ask for.
    from aws_lambda_powertools.event_handler.openapi.models import APIKey, APIKeyIn, Server

    return app.get_openapi_json_schema(
        title="Tailor", version="1", servers=[Server(url=base_path or "/")],
        description="Personalized feeds, search re-ranking and related items for a shop's backend.",
        security_schemes={"apiKey": APIKey(name="x-api-key", in_=APIKeyIn.header)}, security=[{"apiKey": []}],
    )


def _explorer(document: str) -> str:
    from aws_lambda_powertools.event_handler.openapi.swagger_ui.html import generate_swagger_html

    assets = FilePath(event_handler.__file__).parent / "openapi" / "swagger_ui"  # shipped with the resolver
    return generate_swagger_html(document.replace("</", "<\\/"), (assets / "swagger-ui-bundle.min.js").read_text(),
                                 (assets / "swagger-ui.min.css").read_text(), "", None)
