"""Each function's settings read from the variables template.yaml sets, with the domain's defaults when unset."""

import pydantic
import pytest

from tailor.intent_config import CONFIG_VARIABLES
from tailor.settings import ApiSettings, IngestSettings, RebuildLtvSettings, TrainLtvSettings
from tailor.store.port import TABLES

STATE = {"DATA_BUCKET": "data", **{f"{table.upper()}_TABLE": f"stack-{table}" for table in TABLES}}


def test_tables_map_every_logical_table_named_to_its_physical_name():
    assert IngestSettings.read(STATE).tables == {table: f"stack-{table}" for table in TABLES}
    assert IngestSettings.read({"DATA_BUCKET": "data", "SHOPPERS_TABLE": "s"}).tables == {"shoppers": "s"}


def test_api_settings_carry_the_intent_config_location_and_leave_unset_values_to_the_domain():
    environ = {**STATE, "EVENT_STREAM": "events", "ERASURE_QUEUE_URL": "https://sqs/q", "PERSONA_WEIGHT": "0.25",
               **{name: f"v{i}" for i, name in enumerate(CONFIG_VARIABLES)}}
    settings = ApiSettings.read(environ)
    assert settings.intent_config == {name: f"v{i}" for i, name in enumerate(CONFIG_VARIABLES)}
    assert settings.persona_weight == 0.25 and settings.persona_mode is None and settings.cors_allow_origin == ""
    assert settings.persona_model_refresh_seconds is None


def test_numbers_come_from_text_and_a_missing_or_malformed_variable_is_named():
    ltv = RebuildLtvSettings.read({**STATE, "LTV_WRITERS": "4"})
    assert (ltv.ltv_writers, ltv.ltv_page_size, ltv.ltv_rebuild_every_hours) == (4, 500, 24.0)
    assert TrainLtvSettings.read({"DATA_BUCKET": "d", "LTV_HORIZON_WEEKS": "4"}).ltv_horizon_weeks == 4.0
    with pytest.raises(pydantic.ValidationError, match="EVENT_STREAM"):
        ApiSettings.read({**STATE, "ERASURE_QUEUE_URL": "q"})
    with pytest.raises(pydantic.ValidationError, match="LTV_WRITERS"):
        RebuildLtvSettings.read({**STATE, "LTV_WRITERS": "many"})
