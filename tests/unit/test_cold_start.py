"""What a serving container does before its first request, and what it leaves for the requests that need it: the
ranker loaded and the popular items read at start, the intent model at the first request that describes its
session; the intent factors read from AppConfig's data plane as AppConfig asks to be polled."""

from __future__ import annotations

import io
import time
from datetime import datetime

import numpy as np
import pytest

from tailor.clusters import MODEL_NAME as CLUSTERS
from tailor.embeddings import MODEL_NAME as VECTORS
from tailor.intent_config import AppConfigData, FactorsSource
from tailor.models import ModelRegistry, default_model
from tailor.ranking import MODEL_NAME
from tailor.serving import Recommender
from tailor.store.memory import MemoryBlobStore
from tailor_lab.simulator import simulate

from tests.helpers.ingest import UnreadableBlobs, clean_run

LOCATION = {"INTENT_CONFIG_APPLICATION": "tailor", "INTENT_CONFIG_ENVIRONMENT": "dev",
            "INTENT_CONFIG_PROFILE": "intent-factors"}


class AppConfigDataClient:
    """AppConfigData's two calls as AWS answers them: a token per answer, an empty configuration when unchanged."""

    def __init__(self, documents: list[bytes | Exception]):
        self.documents = list(documents)
        self.calls: list[tuple[str, str]] = []
        self.tokens = 0

    def start_configuration_session(self, **request):
        assert request["RequiredMinimumPollIntervalInSeconds"] >= 15
        self.calls.append(("start", request["ConfigurationProfileIdentifier"]))
        return {"InitialConfigurationToken": self._token()}

    def get_latest_configuration(self, ConfigurationToken):
        self.calls.append(("latest", ConfigurationToken))
        document = self.documents.pop(0)
        if isinstance(document, Exception):
            raise document
        return {"Configuration": io.BytesIO(document), "NextPollConfigurationToken": self._token()}

    def _token(self) -> str:
        self.tokens += 1
        return f"t{self.tokens}"


def test_appconfig_is_polled_with_the_token_of_the_last_answer_and_an_unchanged_configuration_is_the_last_one():
    client = AppConfigDataClient([b'{"factors": {"research": {"view": 2.0}}}', b"", ValueError("token expired"),
                                  b'{"factors": {"research": {"view": 3.0}}}'])
    fetch = AppConfigData(client)
    assert fetch("intent-factors", "dev", "tailor", 60) == b'{"factors": {"research": {"view": 2.0}}}'
    assert fetch("intent-factors", "dev", "tailor", 60) == b'{"factors": {"research": {"view": 2.0}}}'
    with pytest.raises(ValueError):
        fetch("intent-factors", "dev", "tailor", 60)
    # A refused token (they expire after a day unused) starts a new session rather than failing from then on.
    assert fetch("intent-factors", "dev", "tailor", 60) == b'{"factors": {"research": {"view": 3.0}}}'
    assert client.calls == [("start", "intent-factors"), ("latest", "t1"), ("latest", "t2"), ("latest", "t3"),
                            ("start", "intent-factors"), ("latest", "t4")]


def test_the_factors_come_from_appconfig_data():
    document = b'{"factors": {"research": {"view": 2.5}}}'
    source = FactorsSource(LOCATION, fetch=AppConfigData(AppConfigDataClient([document])))
    factors = source()
    assert factors.origin == "appconfig" and factors.factors["research"]["view"] == 2.5


def test_a_started_recommender_has_the_ranker_and_the_popular_items_and_loads_the_intent_model_when_asked():
    events, end, state, blobs, registry, shipped, version = _started_world(ReadCounting())
    blobs.listed.clear()

    recommender = Recommender.start(state, registry, clock=lambda: end + 30)
    assert recommender.model.label == f"{MODEL_NAME}:{version}"
    # At start: the ranker, the item vectors every feed's embedding source searches and the item clusters adaptive
    # feeds draw from (none of these two published here).
    assert blobs.listed and {prefix.split("/")[1] for prefix in blobs.listed} == {MODEL_NAME, VECTORS, CLUSTERS}
    assert not recommender.intent_model.loaded
    # The popular items were read at start: an unknown shopper's feed reads their row and nothing else.
    ranking = recommender.feed("u-never-seen", n=10)
    assert ranking.items and ranking.round_trips == 1

    session = [e for e in events if e["session_id"] == events[-1]["session_id"]]
    anchor = next(e["item_id"] for e in session if e.get("item_id"))
    assert recommender.related(anchor, session_events=session[:5]).intent
    assert recommender.intent_model.loaded and any(p.startswith("models/intent/") for p in blobs.listed)


def test_a_recommender_started_while_the_registry_cannot_be_read_reads_it_again_later(monkeypatch):
    import tailor.models.registry as registry_module
    from tailor.embeddings import ItemVectors

    events, end, state, blobs, registry, shipped, version = _started_world(UnreadableBlobs())
    items = sorted({e["item_id"] for e in events if e.get("item_id")})[:8]
    vectors = ItemVectors.build(items, np.eye(8, dtype=np.float32), metadata={"version": "v1"})
    registry.publish(VECTORS, vectors.to_npz(), {"format": "tailor-item-vectors/1"})
    clock = [1000.0]
    monkeypatch.setattr(registry_module.time, "monotonic", lambda: clock[0])
    blobs.failing = True  # S3 does not answer the container's start

    recommender = Recommender.start(state, registry, warm=False, clock=lambda: end + 30)
    assert recommender.feed("u-never-seen", n=5).model == f"{MODEL_NAME}:{shipped.version}"  # the shipped ranker
    assert recommender._item_vectors() is None
    blobs.failing = False
    clock[0] += 60  # answering again, but not looked at again yet
    assert recommender.feed("u-never-seen", n=5).model == f"{MODEL_NAME}:{shipped.version}"
    clock[0] += registry_module.REGISTRY_RETRY_SECONDS
    # The first request past the wait starts the read again on a thread of its own (and is served meanwhile, by
    # whichever ranker is there when it asks).
    recommender.feed("u-never-seen", n=5)
    recommender._item_vectors()
    deadline = time.monotonic() + 10
    while (recommender.feed("u-never-seen", n=5).model != f"{MODEL_NAME}:{version}"
           or recommender._item_vectors() is None):
        assert time.monotonic() < deadline, "the registry was not read again"
        time.sleep(0.01)
    assert len(recommender._item_vectors()) == 8


def _started_world(blobs):
    """A simulated day ingested, and a registry on `blobs` whose current ranker is the shipped one, published anew."""
    events = simulate(shoppers=20, days=1.0, seed=5).events
    end = datetime.fromisoformat(events[-1]["timestamp"].replace("Z", "+00:00")).timestamp()
    state = clean_run(events)[0]
    registry = ModelRegistry(blobs)
    shipped = default_model(MODEL_NAME)
    version = registry.publish(MODEL_NAME, shipped.onnx, {**shipped.metadata, "trained_at": "2026-11-06T00:00:00Z"})
    return events, end, state, blobs, registry, shipped, version


class ReadCounting(MemoryBlobStore):
    """A blob store that notes the prefixes listed."""

    def __init__(self):
        super().__init__()
        self.listed: list[str] = []

    def list(self, prefix: str) -> list[str]:
        self.listed.append(prefix)
        return super().list(prefix)
