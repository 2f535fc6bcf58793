"""What the API function's init makes and what it leaves to the requests that need it, through the real handler on
moto: the clients that ranking reads with at start, the Kinesis client at the first POST /events, the SQS client at
the first erasure, each once."""

import json

import pytest

import tailor.aws_clients

from tests.helpers.events import load_event
from tests.helpers.lambdas import functions_on_moto


@pytest.fixture
def made(monkeypatch):
    """The services of the clients tailor.aws_clients.client has made, in order."""
    services: list[str] = []
    real = tailor.aws_clients.client

    def client(service, **kwargs):
        services.append(service)
        return real(service, **kwargs)

    monkeypatch.setattr(tailor.aws_clients, "client", client)
    return services


def test_the_api_starts_with_the_clients_ranking_reads_with_and_makes_the_others_when_a_request_needs_them(made):
    with functions_on_moto() as functions:
        handler = functions.handler("ApiFunction")
        assert {"dynamodb", "s3"} <= set(made) and not {"kinesis", "sqs"} & set(made)

        def call(sample: str) -> int:
            answer = functions.invoke("ApiFunction", load_event(sample), handler=handler)
            return json.loads(json.dumps(answer))["statusCode"]

        assert call("api-get-feed.json") == 200 and not {"kinesis", "sqs"} & set(made)
        assert call("api-post-events.json") == 200 and call("api-post-events.json") == 200
        assert made.count("kinesis") == 1 and "sqs" not in made
        assert call("api-delete-user.json") in (202, 404)
        assert made.count("sqs") == 1
