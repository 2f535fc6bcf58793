"""The API's experiment routes: create, start, stop, list and read experiments, their reports, and the console page;
their request and response models, which the OpenAPI document shows.

A refused request is answered with the status the domain gives (404 unknown, 409 a state it cannot change from, 422
a field at fault) and a message naming the field.
"""

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from tailor.events import ID_PATTERN
from tailor.experiments.definitions import MAX_DAYS, MAX_VARIANTS, ExperimentError, new_experiment
from tailor.experiments.pages import console_page, console_view
from tailor.experiments.storage import ExperimentStore, LiveExperiments
from tailor.experiments.strategies import StrategySource

# Strict: a number given as text or as true/false is refused, as the domain refuses it, not converted.
Share = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False, strict=True)]
ExperimentId = Annotated[str, Path(min_length=1, max_length=256, pattern=ID_PATTERN, description="the experiment's id")]
Text = Annotated[str, Field(max_length=2000)]


class VariantIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(description="1 to 32 of letters, digits, _ and -; the first variant is the control")]
    strategy: Annotated[str, Field(description="a feed strategy: baseline, default or one defined in AppConfig")]
    share: Share | None = Field(None, description="its share of the experiment's shoppers (default: equal shares)")


class ExperimentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    experiment_id: str | None = Field(None, description="1 to 48 of a-z, 0-9 and - (default: one is made up)")
    name: Text | None = None
    surface: Literal["feed", "search", "related"] = "feed"
    variants: Annotated[list[VariantIn], Field(min_length=2, max_length=MAX_VARIANTS)]
    holdout: Share = Field(0.0, description="share of its shoppers held out: served the default, not counted")
    traffic: Share = Field(1.0, description="share of its layer's shoppers it takes")
    layer: str = Field("", description="experiments of one surface and layer never share a shopper")
    start: str | None = Field(None, description="ISO 8601 (default: now)")
    end: str | None = Field(None, description="ISO 8601 (or days)")
    days: float | None = Field(None, gt=0, le=MAX_DAYS, allow_inf_nan=False, strict=True,
                               description="how long it runs (14)")
    description: Text = ""
    planned_units: int | None = Field(None, ge=2, le=10**9, strict=True,
                                      description="shoppers it is planned to expose: its "
                                      "reports' confidence sequences are tightest there (default 5000)")
    design: Literal["ab", "interleaving"] = Field(
        "ab", description="ab: each shopper sees one variant; interleaving: every shopper sees the team draft of the "
                          "two variants' rankings, each click credited by how much higher one ranked the item")


class VariantOut(BaseModel):
    name: str
    strategy: str
    share: float


class ExperimentOut(BaseModel):
    experiment_id: str
    name: str
    surface: str
    variants: list[VariantOut]
    start: str
    end: str
    holdout: float
    traffic: float
    layer: str
    status: Literal["draft", "running", "stopped"]
    slot: list[float] | None = Field(description="the part of its layer's shoppers it took when it started")
    created_at: str
    started_at: str | None
    stopped_at: str | None
    description: str
    planned_units: int | None = None
    design: Literal["ab", "interleaving"] = "ab"


class ExperimentsOut(BaseModel):
    experiments: list[ExperimentOut]
    strategies: dict[str, dict[str, Any]] = Field(description="the strategies experiments may serve, by name")


class Refusal(BaseModel):
    statusCode: int
    message: str
    detail: list[dict[str, Any]]


REFUSED = {"content": {"application/json": {"model": Refusal}}}
NOT_FOUND = {404: {"description": "No such experiment", **REFUSED}}
CONFLICT = {409: {"description": "Its status does not allow it (or its layer has no room)", **REFUSED}}


def register(app: APIGatewayRestResolver, store: ExperimentStore, live: LiveExperiments,
             strategies: StrategySource, base_path: Any) -> None:

    @app.exception_handler(ExperimentError)
    def _refused(error: ExperimentError) -> Response:
        where = "path" if error.status != 422 else "body"
        return Response(status_code=error.status, content_type=content_types.APPLICATION_JSON,
                        body={"statusCode": error.status, "message": f"{error.field}: {error.message}",
                              "detail": [{"loc": [where, *error.field.split(".")], "msg": error.message,
                                          "type": "value_error"}]})

    @app.post("/experiments", summary="Create an experiment (a draft until started)", tags=["experiments"],
              responses={201: {"description": "Created", "content": {"application/json": {"model": ExperimentOut}}},
                         **CONFLICT})
    def create(body: Annotated[ExperimentIn, Body()]) -> Response[ExperimentOut]:
        # exclude_none reaches into the variants too: a share left out stays out (equal shares).
        request = body.model_dump(exclude_none=True)
        serving = {name: strategy.surfaces for name, strategy in strategies().items()}
        experiment = store.create(new_experiment(request, now=datetime.now(UTC), known_strategies=serving))
        return Response(status_code=201, content_type=content_types.APPLICATION_JSON,
                        body=ExperimentOut.model_validate(experiment.public()))

    @app.get("/experiments", summary="Every experiment, and the strategies they may serve", tags=["experiments"])
    def listed() -> ExperimentsOut:
        return ExperimentsOut(experiments=[e.public() for e in store.list()],
                              strategies={name: s.describe() for name, s in sorted(strategies().items())})

    @app.get("/experiments/<experiment_id>", summary="One experiment", tags=["experiments"],
             responses={200: {"description": "The experiment"}, **NOT_FOUND})
    def one(experiment_id: ExperimentId) -> ExperimentOut:
        found = store.get(experiment_id)
        if found is None:
            raise ExperimentError("experiment_id", f"no experiment {experiment_id!r}", 404)
        return ExperimentOut.model_validate(found.public())

    @app.post("/experiments/<experiment_id>/start", summary="Start an experiment", tags=["experiments"],
              responses={200: {"description": "Running"}, **NOT_FOUND, **CONFLICT})
    def start(experiment_id: ExperimentId) -> ExperimentOut:
        started = store.start(experiment_id, datetime.now(UTC))
        live.refresh()
        return ExperimentOut.model_validate(started.public())

    @app.post("/experiments/<experiment_id>/stop", summary="Stop an experiment", tags=["experiments"],
              responses={200: {"description": "Stopped"}, **NOT_FOUND, **CONFLICT})
    def stop(experiment_id: ExperimentId) -> ExperimentOut:
        stopped = store.stop(experiment_id, datetime.now(UTC))
        live.refresh()
        return ExperimentOut.model_validate(stopped.public())

    @app.get("/experiments/<experiment_id>/report", summary="An experiment's latest report", tags=["experiments"],
             responses={200: {"description": "Per metric and variant: values, lifts with 95% intervals and "
                                             "confidence sequences by day; the sample-ratio-mismatch test; shoppers "
                                             "and impressions per variant by day"}, **NOT_FOUND})
    def report(experiment_id: ExperimentId) -> dict[str, Any]:
        experiment = store.get(experiment_id)
        if experiment is None:
            raise ExperimentError("experiment_id", f"no experiment {experiment_id!r}", 404)
        # Until the schedule writes one (every 15 minutes), the report is built here from the same daily rows.
        return store.report(experiment_id) or store.build_report(experiment)

    @app.get("/console", summary="The experiments console: a page that asks for the API key once and shows the "
                                 "experiments and one's report with its plots (no key needed for the page itself)",
             tags=["experiments"], security=[],
             responses={200: {"description": "An HTML page", "content": {"text/html": {"schema": {"type": "string"}}}}})
    def console():
        return Response(status_code=200, content_type="text/html; charset=utf-8", body=console_page(base_path()))

    @app.get("/console/view", summary="What the console shows: every experiment, and one's report with its plots",
             tags=["experiments"],
             responses={200: {"description": "An HTML fragment",
                              "content": {"text/html": {"schema": {"type": "string"}}}}})
    def console_contents(experiment: Annotated[str | None, Query(min_length=1, max_length=256, pattern=ID_PATTERN,
                                                                 description="the experiment whose report to show")
                                               ] = None):
        chosen = store.get(experiment) if experiment else None
        found = None if chosen is None else store.report(experiment) or store.build_report(chosen)
        page = console_view([e.public() for e in store.list()], found, selected=experiment, base=base_path())
        return Response(status_code=200, content_type="text/html; charset=utf-8", body=page)
