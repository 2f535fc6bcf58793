"""Where the intent scaling factors come from: AppConfig when configured and reachable, else the shipped file.

The template names an AppConfig application, environment and configuration profile and passes them to
the functions as INTENT_CONFIG_APPLICATION, INTENT_CONFIG_ENVIRONMENT and INTENT_CONFIG_PROFILE. A
function asks `FactorsSource` for the current factors on every batch or request; the source reads
AppConfig's data plane at most once every `max_age` seconds, so a new configuration deployed in
AppConfig takes effect within a minute, without a deploy. Without
those variables, or when AppConfig cannot be reached or holds an invalid document, the factors
shipped in the layer (tailor/intent_factors.json) apply, or the last valid AppConfig ones when
there were some. A fallback is logged in one line, once until its reason changes or AppConfig
answers again: a function polls every minute, and an outage need not fill its log.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar

from tailor.intent import IntentFactors

__all__ = ["CONFIG_VARIABLES", "AppConfigData", "FactorsSource", "PolledDocument"]

T = TypeVar("T")

logger = logging.getLogger(__name__)

CONFIG_VARIABLES = ("INTENT_CONFIG_APPLICATION", "INTENT_CONFIG_ENVIRONMENT", "INTENT_CONFIG_PROFILE")
MAX_AGE_SECONDS = 60
# AppConfigData is asked once at start and then at most once a minute, from within a request or batch: it answers in
# that time or the last factors stay, rather than hold a request for botocore's minute-long defaults.
_CLIENT = {"connect_timeout": 2, "read_timeout": 5, "max_attempts": 2}
_REASON_CHARS = 200  # an error's text in the log line, at most (some come with a whole HTML page)


class FactorsSource:
    """The intent scaling factors in force now; call it for each batch or request."""

    def __init__(self, environ: Mapping[str, str] | None = None, *, max_age: float = MAX_AGE_SECONDS,
                 fetch: Callable[[str, str, str, int], Any] | None = None, clock: Callable[[], float] = time.monotonic):
        """`fetch(profile, environment, application, max_age)` returns the AppConfig document (bytes, str or
        dict); by default AppConfigData's, through a client (tailor.aws_clients) made on the first fetch."""
        self._polled = PolledDocument("intent factors", CONFIG_VARIABLES, IntentFactors.default(), _factors,
                                      environ=environ, max_age=max_age, fetch=fetch, clock=clock,
                                      describe=lambda factors: factors.origin)
        if self.location is None:
            logger.info("intent factors: no AppConfig configured (%s); using %s", ", ".join(CONFIG_VARIABLES),
                        self._polled.current.origin)

    @property
    def location(self) -> tuple[str, str, str] | None:
        return self._polled.location

    def __call__(self) -> IntentFactors:
        return self._polled()


class PolledDocument(Generic[T]):
    """A value parsed from an AppConfig document (located by the variables `variables` name: application,
    environment, profile), asked for at most once every `max_age` seconds. While AppConfig is unreachable or its
    document invalid, the last good value stays, and why is logged once."""

    def __init__(self, what: str, variables: Sequence[str], initial: T, parse: Callable[[Any], T], *,
                 environ: Mapping[str, str] | None = None, max_age: float = MAX_AGE_SECONDS,
                 fetch: Callable[[str, str, str, int], Any] | None = None, clock: Callable[[], float] = time.monotonic,
                 describe: Callable[[T], str] = str):
        environ = os.environ if environ is None else environ
        names = [environ.get(v, "") for v in variables]
        self.location: tuple[str, str, str] | None = tuple(names) if all(names) else None  # type: ignore[assignment]
        self.current = initial
        self.max_age = max_age
        self._what = what
        self._parse = parse
        self._describe = describe
        self._fetch = fetch or AppConfigData()
        self._clock = clock
        self._checked_at: float | None = None
        self._failing: str | None = None  # why the last fetch failed, once logged

    def __call__(self) -> T:
        if self.location is None:
            return self.current
        now = self._clock()
        if self._checked_at is not None and now - self._checked_at < self.max_age:
            return self.current
        self._checked_at = now
        application, environment, profile = self.location
        try:
            value = self._parse(self._fetch(profile, environment, application, int(self.max_age)))
        except Exception as exc:  # unreachable, or an invalid document
            reason = _reason(exc)
            if reason != self._failing:
                logger.warning("%s: cannot use AppConfig %s/%s/%s (%s); using %s until it answers", self._what,
                               application, environment, profile, reason, self._describe(self.current))
            self._failing = reason
            return self.current
        if self._failing is not None:
            logger.info("%s: AppConfig %s/%s/%s answers again", self._what, application, environment, profile)
            self._failing = None
        self.current = value
        return value


class AppConfigData:
    """A configuration from AppConfig's data plane, polled as AppConfig asks: a session started once, then the latest
    configuration asked for with the token the previous answer gave; an empty answer means it has not changed.

    Its client is made on the first call, from the process's one session (whose loaded service data
    every client shares); a failed call starts a new session on the next, so that an expired token mends itself."""

    def __init__(self, client: Any = None):
        self._client = client
        self._token: str | None = None
        self._document: bytes | None = None

    def __call__(self, profile: str, environment: str, application: str, max_age: int) -> bytes:
        if self._client is None:
            from tailor.aws_clients import client

            self._client = client("appconfigdata", **_CLIENT)
        try:
            if self._token is None:
                self._token = self._client.start_configuration_session(
                    ApplicationIdentifier=application, EnvironmentIdentifier=environment,
                    ConfigurationProfileIdentifier=profile,
                    RequiredMinimumPollIntervalInSeconds=max(15, min(max_age, 86_400)),
                )["InitialConfigurationToken"]
            answer = self._client.get_latest_configuration(ConfigurationToken=self._token)
        except Exception:
            self._token = None
            raise
        self._token = answer["NextPollConfigurationToken"]
        content = answer["Configuration"].read()
        if content:
            self._document = content
        if self._document is None:
            raise LookupError(f"AppConfig holds no configuration for {application}/{environment}/{profile}")
        return self._document


def _factors(document: Any) -> IntentFactors:
    if isinstance(document, Mapping):
        return IntentFactors(document.get("factors", document), origin="appconfig")
    return IntentFactors.from_json(document, origin="appconfig")


def _reason(exc: Exception) -> str:
    """The error in one short line: an endpoint that is not AppConfig can answer with an HTML page."""
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]*>", " ", str(exc))).strip()
    if len(text) > _REASON_CHARS:
        text = text[:_REASON_CHARS - 3] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
