"""Where the intent factors come from when AppConfig cannot give them: said once, in one readable line."""

import logging

from tailor.intent import IntentFactors
from tailor.intent_config import FactorsSource


def test_an_unreachable_appconfig_is_told_once_in_one_line_without_the_page_it_answered(caplog):
    environ = {"INTENT_CONFIG_APPLICATION": "tailor", "INTENT_CONFIG_ENVIRONMENT": "dev",
               "INTENT_CONFIG_PROFILE": "intent-factors"}
    clock = [0.0]
    page = ("An error occurred (404) when calling the StartConfigurationSession operation: <!doctype html>\n<html "
            "lang=en>\n<title>404 Not Found</title>\n<h1>Not Found</h1>\n<p>" + "The requested URL was not found. " * 20)
    source = FactorsSource(environ, fetch=lambda *a: (_ for _ in ()).throw(RuntimeError(page)),
                           clock=lambda: clock[0], max_age=60)
    with caplog.at_level(logging.WARNING, logger="tailor.intent_config"):
        for minute in range(5):
            clock[0] = minute * 61.0
            assert source().factors == IntentFactors.default().factors
    (record,) = caplog.records
    line = record.getMessage()
    assert "\n" not in line and "<" not in line and len(line) < 400 and "404 Not Found" in line
