"""Each function's settings, one model per function, read from the variables template.yaml sets.

A function reads its settings once, at module level (`ApiSettings.read(os.environ)`), and hands the domain plain
values; nothing else in the layer reads the environment. A setting left unset (None) takes the domain's default.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Self

from pydantic import BaseModel, ConfigDict, Field

from tailor.store.port import TABLES

__all__ = ["ApiSettings", "CompactArchiveSettings", "EraseSettings", "IngestSettings", "MergeCountersSettings",
           "RebuildClustersSettings", "RebuildLtvSettings", "RebuildPersonasSettings", "ReportExperimentsSettings",
           "TrainEmbeddingsSettings", "TrainLtvSettings"]

# tailor.intent_config.CONFIG_VARIABLES; not imported from there, which loads the intent model's runtime.
_INTENT_CONFIG = ("INTENT_CONFIG_APPLICATION", "INTENT_CONFIG_ENVIRONMENT", "INTENT_CONFIG_PROFILE")


class _Settings(BaseModel):
    # Each function reads its own settings: the others' validators are built only if read (defer_build).
    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore", defer_build=True)

    @classmethod
    def read(cls, environ: Mapping[str, str]) -> Self:
        """The settings in `environ` (os.environ in a function); a missing or malformed one raises naming it."""
        return cls.model_validate(dict(environ))


class _State(_Settings):
    """The DynamoDB tables (SHOPPERS_TABLE, ...) and the data bucket."""

    data_bucket: str = Field(alias="DATA_BUCKET", min_length=1)
    shoppers_table: str | None = Field(None, alias="SHOPPERS_TABLE")
    sessions_table: str | None = Field(None, alias="SESSIONS_TABLE")
    items_table: str | None = Field(None, alias="ITEMS_TABLE")
    associations_table: str | None = Field(None, alias="ASSOCIATIONS_TABLE")
    queries_table: str | None = Field(None, alias="QUERIES_TABLE")
    trends_table: str | None = Field(None, alias="TRENDS_TABLE")
    checkpoints_table: str | None = Field(None, alias="CHECKPOINTS_TABLE")
    buffers_table: str | None = Field(None, alias="BUFFERS_TABLE")
    experiments_table: str | None = Field(None, alias="EXPERIMENTS_TABLE")
    outcomes_table: str | None = Field(None, alias="OUTCOMES_TABLE")
    exposures_table: str | None = Field(None, alias="EXPOSURES_TABLE")
    # Days after a shopper's first exposure to an experiment in which their purchases are its realized revenue: Ingest
    # counts them, the reports read the statistics rows as long (tailor.experiments.attribution, .storage).
    realized_revenue_days: int = Field(28, alias="REALIZED_REVENUE_DAYS", ge=0, le=366)

    @property
    def tables(self) -> dict[str, str]:
        """Logical table -> physical name, for the tables named."""
        named = {table: getattr(self, f"{table}_table") for table in TABLES}
        return {table: name for table, name in named.items() if name}


class _Intent(_Settings):
    """Where the intent scaling factors live in AppConfig (tailor.intent_config); unset: the shipped ones."""

    intent_config_application: str = Field("", alias="INTENT_CONFIG_APPLICATION")
    intent_config_environment: str = Field("", alias="INTENT_CONFIG_ENVIRONMENT")
    intent_config_profile: str = Field("", alias="INTENT_CONFIG_PROFILE")

    @property
    def intent_config(self) -> dict[str, str]:
        """The AppConfig location as tailor.intent_config.FactorsSource takes it."""
        values = (self.intent_config_application, self.intent_config_environment, self.intent_config_profile)
        return dict(zip(_INTENT_CONFIG, values))


class ApiSettings(_State, _Intent):
    event_stream: str = Field(alias="EVENT_STREAM", min_length=1)
    erasure_queue_url: str = Field(alias="ERASURE_QUEUE_URL", min_length=1)
    cors_allow_origin: str = Field("", alias="CORS_ALLOW_ORIGIN")
    persona_weight: float | None = Field(None, alias="PERSONA_WEIGHT")
    persona_mode: str | None = Field(None, alias="PERSONA_MODE")
    persona_model_refresh_seconds: float | None = Field(None, alias="PERSONA_MODEL_REFRESH_SECONDS")
    strategy_config_application: str = Field("", alias="STRATEGY_CONFIG_APPLICATION")
    strategy_config_environment: str = Field("", alias="STRATEGY_CONFIG_ENVIRONMENT")
    strategy_config_profile: str = Field("", alias="STRATEGY_CONFIG_PROFILE")
    # Lambda's runtime API, where the function registers the extension that writes exposure logs after the response
    # (tailor.after_response); unset outside Lambda. EXPOSURES_AFTER_RESPONSE=false writes them before it instead.
    runtime_api: str | None = Field(None, alias="AWS_LAMBDA_RUNTIME_API")
    exposures_after_response: bool = Field(True, alias="EXPOSURES_AFTER_RESPONSE")

    @property
    def strategy_config(self) -> dict[str, str]:
        """The AppConfig location of the feed strategies, as tailor.experiments.strategies.StrategySource takes it."""
        return {"STRATEGY_CONFIG_APPLICATION": self.strategy_config_application,
                "STRATEGY_CONFIG_ENVIRONMENT": self.strategy_config_environment,
                "STRATEGY_CONFIG_PROFILE": self.strategy_config_profile}


class IngestSettings(_State, _Intent):
    session_ttl_days: float = Field(7.0, alias="SESSION_TTL_DAYS")
    persona_model_refresh_seconds: float | None = Field(None, alias="PERSONA_MODEL_REFRESH_SECONDS")
    # On: shared counters go through the counter buffer that MergeCounters merges (tailor.ingest.buffer).
    counter_buffer: bool = Field(True, alias="COUNTER_BUFFER")
    # Purchases this long after a click on an experiment's list are its orders (tailor.experiments.attribution).
    attribution_window_hours: float = Field(24.0, alias="ATTRIBUTION_WINDOW_HOURS", gt=0)


class MergeCountersSettings(_State):
    pass


class EraseSettings(_State):
    pass


class ReportExperimentsSettings(_State):
    pass


class RebuildPersonasSettings(_State):
    pass


class RebuildLtvSettings(_State):
    ltv_page_size: int = Field(500, alias="LTV_PAGE_SIZE", ge=1)
    ltv_rebuild_every_hours: float = Field(24.0, alias="LTV_REBUILD_EVERY_HOURS")
    ltv_writers: int = Field(16, alias="LTV_WRITERS", ge=1)


class TrainLtvSettings(_Settings):
    data_bucket: str = Field(alias="DATA_BUCKET", min_length=1)
    ltv_history_weeks: float = Field(104.0, alias="LTV_HISTORY_WEEKS")
    ltv_horizon_weeks: float = Field(39.0, alias="LTV_HORIZON_WEEKS")


class TrainEmbeddingsSettings(_State):
    embedding_history_days: float = Field(28.0, alias="EMBEDDING_HISTORY_DAYS", gt=0)
    embedding_dim: int = Field(256, alias="EMBEDDING_DIM", ge=2)


class RebuildClustersSettings(_State):
    cluster_history_days: float = Field(28.0, alias="CLUSTER_HISTORY_DAYS", gt=0)
    cluster_count: int = Field(36, alias="CLUSTER_COUNT", ge=2)


class CompactArchiveSettings(_State):
    # Archive objects older than this are merged (tailor.archive): the longer, the fewer parts a day.
    archive_compact_after_hours: float = Field(1.0, alias="ARCHIVE_COMPACT_AFTER_HOURS", gt=0)
    # The days of events a run looks at, up to today; a firing's input may say {"days": 0}: the whole archive.
    # At most tailor.archive.MAX_LISTED_DAYS (not imported: every function reads its settings at its cold start).
    archive_compact_days: int = Field(3, alias="ARCHIVE_COMPACT_DAYS", ge=0, le=3660)
