"""The one way functions build AWS clients: explicit connect and read timeouts, standard retries, a pool size.

botocore's defaults (a minute to connect, a minute per read, legacy retries) would let one slow call hold a request
or a batch for longer than the function has; every function states what it can afford instead.

Clients come from botocore's session itself, not boto3's: a function uses no boto3 resource or transfer helper, and
importing boto3 imports its S3 transfer manager too, which every cold start would pay for.
"""

from __future__ import annotations

import threading
from typing import Any

from botocore.config import Config
from botocore.session import Session, get_session

__all__ = ["client", "session", "setup_session"]


def client(service: str, *, connect_timeout: float, read_timeout: float, max_attempts: int,
           max_pool_connections: int = 10) -> Any:
    """A client of `service` (the endpoint, region and credentials from the environment, as botocore finds
    them); `max_attempts` counts the first call, retried in botocore's standard mode."""
    # botocore's own `max_attempts` counts the retries only; `total_max_attempts` counts the first call too.
    # Tailor builds every request itself and each service checks what it is sent (a 4xx names the parameter), so
    # botocore's walk of every parameter against the service model before sending is skipped: for an update of a
    # row of nested maps it is a third of what the call costs the function.
    config = Config(connect_timeout=connect_timeout, read_timeout=read_timeout,
                    retries={"mode": "standard", "total_max_attempts": max_attempts},
                    max_pool_connections=max_pool_connections, parameter_validation=False)
    return session().create_client(service, config=config)


def session() -> Session:
    """The process's one botocore session, which every client comes from and shares its loaded service data with
    (as boto3's default session); made on the first client, under a lock since a client may be made on a worker
    thread. Hooks registered on it (`register`) see every client's calls."""
    global _SESSION
    with _SESSION_LOCK:
        if _SESSION is None:
            _SESSION = get_session()
        return _SESSION


def setup_session() -> Session:
    """A new session for the clients made from now on, as a fresh process would start: its credentials and hooks
    its own (boto3's setup_default_session)."""
    global _SESSION
    with _SESSION_LOCK:
        _SESSION = get_session()
        return _SESSION


_SESSION: Session | None = None
_SESSION_LOCK = threading.Lock()
