"""Schema-driven fuzzing: requests generated (schemathesis) from the OpenAPI document the API serves, sent through the
local gateway to the real handler on a stack with state. Whatever fits the document gets an answer the document
describes and never a 5xx; requests that break it (wrong types, missing fields, bytes that are not text) get no 5xx
either."""

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode, checks
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from tailor_local.template import Template

from tests.helpers import ROOT

EXAMPLES = 20  # per operation and mode: the whole run stays well under a minute
DOCUMENT = "/docs?format=json"
# Every route of the template but the document itself, as (method, path).
OPERATIONS = sorted((e["Method"].upper(), e["Path"]) for e in
                    Template.load(ROOT / "template.yaml").functions()["ApiFunction"].events_of_type("Api").values()
                    if e["Path"] != "/docs")


@pytest.fixture(scope="module")
def served(api):
    return schemathesis.openapi.from_wsgi(DOCUMENT, api.stack.api.gateway)


def test_the_document_describes_every_route_of_the_template(served):
    documented = {(method.upper(), path) for path, item in served.raw_schema["paths"].items() for method in item}
    assert documented == set(OPERATIONS)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_no_generated_request_gets_a_server_error(served, api, method, path, mode):
    operation = served[path][method]
    # Negative cases are not checked for rejection: in a query string every value is text, so a "number" where the
    # document says string still fits it.
    verify = [checks.not_a_server_error, response_schema_conformance, content_type_conformance]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def send(case):
        case.call_and_validate(headers={"x-api-key": api.key}, checks=verify)

    send()
