"""The S3 blob store's conditional rewrite with an SDK too old to send IfMatch: written as before, and said once."""

from __future__ import annotations

import logging
from types import SimpleNamespace

from tailor.store.aws import S3BlobStore


class _OldSdkClient:
    """An S3 client whose PutObject knows no IfMatch (botocore before S3's conditional writes)."""

    def __init__(self):
        shape = SimpleNamespace(members={"Bucket": None, "Key": None, "Body": None, "ContentType": None})
        self.meta = SimpleNamespace(service_model=SimpleNamespace(
            operation_model=lambda name: SimpleNamespace(input_shape=shape)))
        self.puts = []

    def put_object(self, **kwargs):
        assert "IfMatch" not in kwargs  # an old SDK would fail on it in its serializer, not with a ClientError
        self.puts.append(kwargs)


def test_an_sdk_without_conditional_puts_rewrites_as_before_and_says_so_once(caplog):
    client = _OldSdkClient()
    blobs = S3BlobStore(client, "bucket")
    with caplog.at_level(logging.WARNING, logger="tailor.store.aws"):
        assert blobs.replace_if("archive/a.jsonl.gz", b"kept", "etag-1")
        assert blobs.replace_if("archive/b.jsonl.gz", b"kept", "etag-2")
    assert [p["Key"] for p in client.puts] == ["archive/a.jsonl.gz", "archive/b.jsonl.gz"]
    assert sum("conditional puts" in r.getMessage() for r in caplog.records) == 1
