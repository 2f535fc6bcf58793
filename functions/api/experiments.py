"""The API's experiment routes: create, start, stop, list and read experiments, their reports, and the console page.

A refused request is answered with the status the domain gives (404 unknown, 409 a state it cannot change from, 422
a field at fault) and a message naming the field.
"""

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types

from tailor.experiments.definitions import ExperimentError, new_experiment
from tailor.experiments.pages import console_html
from tailor.experiments.storage import ExperimentStore, LiveExperiments
from tailor.experiments.strategies import StrategySource


def register(app: APIGatewayRestResolver, store: ExperimentStore, live: LiveExperiments,
             strategies: StrategySource, base_path: Any) -> None:

    @app.exception_handler(ExperimentError)
    def _refused(error: ExperimentError) -> Response:
        return Response(status_code=error.status, content_type=content_types.APPLICATION_JSON,
                        body={"statusCode": error.status, "message": f"{error.field}: {error.message}",
                              "detail": [{"loc": ["body" if error.status == 422 else "path", error.field],
                                          "msg": error.message}]})

    @app.post("/experiments", summary="Create an experiment (a draft until started)", tags=["experiments"],
              include_in_schema=False)
    def create():
        body = _body(app)
        experiment = store.create(new_experiment(body, now=datetime.now(UTC), known_strategies=set(strategies())))
        return Response(status_code=201, content_type=content_types.APPLICATION_JSON, body=experiment.public())

    @app.get("/experiments", summary="Every experiment", tags=["experiments"], include_in_schema=False)
    def listed() -> dict[str, Any]:
        return {"experiments": [e.public() for e in store.list()],
                "strategies": {name: s.describe() for name, s in sorted(strategies().items())}}

    @app.get("/experiments/<experiment_id>", summary="One experiment", tags=["experiments"], include_in_schema=False)
    def one(experiment_id: str) -> dict[str, Any]:
        found = store.get(experiment_id)
        if found is None:
            raise ExperimentError("experiment_id", f"no experiment {experiment_id!r}", 404)
        return found.public()

    @app.post("/experiments/<experiment_id>/start", summary="Start an experiment", tags=["experiments"],
              include_in_schema=False)
    def start(experiment_id: str) -> dict[str, Any]:
        started = store.start(experiment_id, datetime.now(UTC))
        live.refresh()
        return started.public()

    @app.post("/experiments/<experiment_id>/stop", summary="Stop an experiment", tags=["experiments"],
              include_in_schema=False)
    def stop(experiment_id: str) -> dict[str, Any]:
        stopped = store.stop(experiment_id, datetime.now(UTC))
        live.refresh()
        return stopped.public()

    @app.get("/experiments/<experiment_id>/report", summary="An experiment's latest report", tags=["experiments"],
             include_in_schema=False)
    def report(experiment_id: str) -> dict[str, Any]:
        experiment = store.get(experiment_id)
        if experiment is None:
            raise ExperimentError("experiment_id", f"no experiment {experiment_id!r}", 404)
        # Until the schedule writes one (every 15 minutes), the report is built here from the same daily rows.
        return store.report(experiment_id) or store.build_report(experiment)

    @app.get("/console", summary="The experiments console", include_in_schema=False)
    def console():
        selected = (app.current_event.query_string_parameters or {}).get("experiment")
        experiment = store.get(selected) if selected else None
        found = None if experiment is None else store.report(selected) or store.build_report(experiment)
        page = console_html([e.public() for e in store.list()], found, selected=selected, base=base_path())
        return Response(status_code=200, content_type="text/html; charset=utf-8", body=page)


def _body(app: APIGatewayRestResolver) -> Any:
    try:
        return app.current_event.json_body
    except ValueError:
        raise ExperimentError("body", "not valid JSON") from None
