"""The model registry in S3 (moto): versions, the current pointer, the fallback to the shipped default; the API's
Recommender built from the environment; the training command reading Ingest's archive and publishing."""

from __future__ import annotations

import json
from datetime import datetime

import boto3
import pytest
from moto import mock_aws

from tailor.archive import archived_events
from tailor.ingest.service import Ingestor
from tailor.models import ModelRegistry, StoredModel, default_model, load_model, model_version
from tailor.ranking import MODEL_NAME, RankingModel
from tailor.serving import Recommender
from tailor.store.aws import DynamoStateStore, S3BlobStore
from tailor.store.memory import MemoryBlobStore, MemoryStateStore
from tailor.store.port import TABLES
from tailor_lab.simulator import BUSY_PARAMETERS, simulate
from tailor_lab.training import ranker as ranker_training
from tailor_local.aws import create_state_tables

from tests.helpers.events import random_events, to_records

BUCKET = "tailor-data-test"


@pytest.fixture
def aws(monkeypatch):
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        dynamodb = boto3.client("dynamodb")
        for table, name in create_state_tables(dynamodb, "test").items():
            monkeypatch.setenv(f"{table.upper()}_TABLE", name)
        monkeypatch.setenv("DATA_BUCKET", BUCKET)
        yield s3, dynamodb


@pytest.fixture(params=["memory", "s3"])
def registry(request):
    if request.param == "memory":
        yield ModelRegistry(MemoryBlobStore())
        return
    with mock_aws():
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        yield ModelRegistry(S3BlobStore(boto3.client("s3"), BUCKET))


def shipped() -> StoredModel:
    return default_model(MODEL_NAME)


def test_publish_promote_and_fetch_versions(registry):
    assert registry.current_version(MODEL_NAME) is None
    with pytest.raises(LookupError):
        registry.fetch(MODEL_NAME)
    base = shipped()
    first = registry.publish(MODEL_NAME, base.onnx, {**base.metadata, "trained_at": "2026-11-01T10:00:00Z"})
    second = registry.publish(MODEL_NAME, base.onnx + b"", {**base.metadata, "trained_at": "2026-11-02T10:00:00Z"},
                              make_current=False)
    assert first == model_version(base.onnx, "2026-11-01T10:00:00Z") and first.startswith("20261101T100000Z-")
    assert registry.versions(MODEL_NAME) == [first, second]
    assert registry.current_version(MODEL_NAME) == first
    registry.promote(MODEL_NAME, second)
    fetched = registry.fetch(MODEL_NAME)
    assert (fetched.version, fetched.origin, fetched.onnx) == (second, "registry", base.onnx)
    assert fetched.metadata["version"] == second and fetched.metadata["feature_names"] == base.metadata["feature_names"]
    assert registry.fetch(MODEL_NAME, first).metadata["trained_at"] == "2026-11-01T10:00:00Z"
    with pytest.raises(LookupError):
        registry.promote(MODEL_NAME, "20200101T000000Z-deadbeef")
    with pytest.raises(LookupError):  # a version that is not there, on S3 as in memory
        registry.fetch(MODEL_NAME, "20200101T000000Z-deadbeef")
    with pytest.raises(ValueError):
        registry.versions("../escape")


def test_a_model_that_is_not_a_graph_is_stored_under_its_own_file_name(registry):
    vectors = b"PK\x03\x04 item vectors"
    version = registry.publish("item-vectors", vectors, {"trained_at": "2026-11-03T10:00:00Z"}, artifact="vectors.npz")
    folder = f"models/item-vectors/{version}/"
    assert registry.blobs.list(folder + "vectors.npz") == [folder + "vectors.npz"]
    assert registry.blobs.list(folder + "model.onnx") == []
    fetched = registry.fetch("item-vectors")
    assert (fetched.onnx, fetched.metadata["artifact"]) == (vectors, "vectors.npz")
    assert "artifact" not in registry.fetch(MODEL_NAME, registry.publish(MODEL_NAME, b"graph", {})).metadata
    for bad in ("../vectors.npz", "", ".hidden"):
        with pytest.raises(ValueError):
            registry.publish("item-vectors", vectors, {}, artifact=bad)


def test_serving_falls_back_to_the_shipped_default(registry):
    build = RankingModel.from_stored
    assert load_model(MODEL_NAME, None, build=build).version == shipped().version
    assert load_model(MODEL_NAME, registry, build=build).version == shipped().version  # nothing published yet
    registry.publish(MODEL_NAME, b"not an onnx graph", {"trained_at": "2026-11-03T00:00:00Z"})
    assert load_model(MODEL_NAME, registry, build=build).version == shipped().version
    base = shipped()
    registry.publish(MODEL_NAME, base.onnx, {**base.metadata, "trained_at": "2026-11-04T00:00:00Z",
                                             "feature_names": ["a_feature_this_code_lacks"]})
    # The graph's own metadata names the features it reads; the registry's copy says otherwise: refuse it.
    stored = registry.fetch(MODEL_NAME)
    with pytest.raises(ValueError):
        RankingModel(stored.onnx, metadata=stored.metadata)
    good = registry.publish(MODEL_NAME, base.onnx, {**base.metadata, "trained_at": "2026-11-05T00:00:00Z"})
    assert load_model(MODEL_NAME, registry, build=build).version == good


def test_the_recommender_reads_dynamodb_and_the_current_model_from_the_environment(aws):
    base = shipped()
    published = ModelRegistry(S3BlobStore(boto3.client("s3"), BUCKET)).publish(
        MODEL_NAME, base.onnx, {**base.metadata, "trained_at": "2026-11-06T00:00:00Z"})
    events = random_events(seed=8, n=300)
    store = DynamoStateStore(boto3.client("dynamodb"), {t: f"test-{t}" for t in TABLES})
    assert not Ingestor(store, MemoryBlobStore(), max_workers=1).ingest(to_records(events)).failed

    end = datetime.fromisoformat(events[-1]["timestamp"].replace("Z", "+00:00")).timestamp()
    recommender = Recommender.start(store, ModelRegistry(S3BlobStore(boto3.client("s3"), BUCKET)),
                                    clock=lambda: end + 10)
    assert recommender.model.label == f"{MODEL_NAME}:{published}"
    user = events[-1]["user_id"]
    for _ in range(3):
        before = recommender.store.calls["read"]
        ranking = recommender.feed(user, session_id=events[-1]["session_id"], n=5)
        assert ranking.items and ranking.round_trips == recommender.store.calls["read"] - before <= 2
    assert recommender.profile(user)["user_id"] == user


def test_the_training_command_learns_from_the_archive_and_publishes(aws, capsys):
    s3 = S3BlobStore(boto3.client("s3"), BUCKET)
    events = simulate(shoppers=30, days=4.0, seed=4, params=BUSY_PARAMETERS).events  # purchases in both windows
    ingestor = Ingestor(MemoryStateStore(), s3, max_workers=1)
    records = to_records(events)
    for start in range(0, len(records), 2000):
        assert not ingestor.ingest(records[start:start + 2000]).failed
    assert any(k.endswith(".jsonl.gz") for k in s3.list("archive/date="))
    first_day = events[0]["timestamp"][:10]
    assert {e["timestamp"][:10] for e in archived_events(s3, until=first_day)} == {first_day}

    arguments = ["--archive", BUCKET, "--publish", "--eval-days", "2", "--max-moments", "150",
                 "--max-eval-moments", "80", "--max-candidates", "50", "--iterations", "10"]
    # The registry has no ranker yet, so the stack serves the layer's default, which this small retrain does not beat
    assert ranker_training.main(arguments) == 1
    assert "not published" in capsys.readouterr().err and ModelRegistry(s3).current_version(MODEL_NAME) is None
    code = ranker_training.main(arguments + ["--force"])
    assert code == 0
    printed = capsys.readouterr().out
    current = ModelRegistry(s3).current_version(MODEL_NAME)
    assert f"published {MODEL_NAME}:{current}" in printed
    # Retrained on the same archive, it is weighed against the registry's current ranker now, scores the same, and
    # replaces it
    assert ranker_training.main(arguments) == 0
    printed = capsys.readouterr().out
    assert f"published: the registry's current ranker, {current}" in printed and "published blend" in printed
    assert ModelRegistry(s3).current_version(MODEL_NAME) != current
    current = ModelRegistry(s3).current_version(MODEL_NAME)
    stored = ModelRegistry(s3).fetch(MODEL_NAME)
    assert stored.metadata["data"] == f"archive s3://{BUCKET}"
    assert json.loads(json.dumps(stored.metadata["evaluation"]))["requests"] > 0
    assert Recommender.start(MemoryStateStore(), ModelRegistry(s3), warm=False).model.label == f"{MODEL_NAME}:{current}"
