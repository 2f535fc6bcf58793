"""The one way functions build boto3 clients: explicit connect and read timeouts, standard retries, a pool size.

botocore's defaults (a minute to connect, a minute per read, legacy retries) would let one slow call hold a request
or a batch for longer than the function has; every function states what it can afford instead.
"""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

__all__ = ["client"]


def client(service: str, *, connect_timeout: float, read_timeout: float, max_attempts: int,
           max_pool_connections: int = 10) -> Any:
    """A boto3 client of `service` (the endpoint, region and credentials from the environment, as boto3 finds
    them); `max_attempts` counts the first call, retried in botocore's standard mode."""
    # botocore's own `max_attempts` counts the retries only; `total_max_attempts` counts the first call too.
    # Tailor builds every request itself and each service checks what it is sent (a 4xx names the parameter), so
    # botocore's walk of every parameter against the service model before sending is skipped: for an update of a
    # row of nested maps it is a third of what the call costs the function.
    config = Config(connect_timeout=connect_timeout, read_timeout=read_timeout,
                    retries={"mode": "standard", "total_max_attempts": max_attempts},
                    max_pool_connections=max_pool_connections, parameter_validation=False)
    return boto3.client(service, config=config)
