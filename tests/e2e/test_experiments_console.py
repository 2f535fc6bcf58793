"""End to end: an experiment created with the CLI on a local stack, simulated shoppers served its variants over HTTP
and acting on them, its report read through the API and the CLI, and the console page opened in a real headless
Chromium (Debian's chromium and chromium-driver; .ci/run installs them), which shows the experiment and its plots;
then an interleaving experiment likewise."""

import json
import shutil
import time
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest

from tailor_cli.main import main as tailor
from tailor_lab.simulator import simulate
from tailor_local.stack import LocalStack

from tests.helpers.api import merge_counters, put_and_wait, repo_copy
from tests.helpers.events import load_event

pytestmark = [pytest.mark.e2e]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


def browser():
    """A headless Chromium driven by chromedriver; the test skips, saying why, when there is none."""
    if CHROMIUM is None or DRIVER is None:
        pytest.skip("no headless browser: install Debian's chromium and chromium-driver (.ci/run does)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e .[dev])")
    options = webdriver.ChromeOptions()
    options.add_argument("--window-size=1280,2400")
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    return webdriver.Chrome(service=webdriver.ChromeService(executable_path=DRIVER), options=options)


def test_an_experiment_run_by_the_cli_and_seen_in_the_console(tmp_path, capsys):
    driver = browser()
    try:
        with open(tmp_path / "functions.log", "w") as log, \
                LocalStack(repo_copy(tmp_path / "repo"), port=0, stack_name="tailor-e2e-experiments",
                           function_log=log) as stack:
            # A history of the simulator's shop (its catalog is the one the visiting shoppers know).
            start = datetime.now(UTC) - timedelta(hours=12)
            put_and_wait(stack, load_event("ingest-kinesis-batch.json")["Records"], simulate(shoppers=60, days=0.5, seed=7, start=start).events)
            url, key = stack.handle.api_url, stack.handle.api_key
            api = ["experiments", "--api", url, "--key", key]
            assert tailor([*api, "create", "--id", "exp-e2e", "--name", "Baseline or the blend",
                           "--variant", "control=baseline", "--variant", "blend=default", "--days", "3",
                           "--start-now"]) == 0
            assert tailor([*api, "shoppers", "--shoppers", "40", "--visits", "2", "--n", "10"]) == 0
            said = capsys.readouterr().err
            assert "exp-e2e.control" in said and "exp-e2e.blend" in said and " 0 refused" in said
            assert " 0 events sent" not in said

            # Ingest applies the posted events from the stream; the merge adds them to the statistics rows.
            deadline = time.monotonic() + 180
            while True:
                merge_counters(stack)
                report = get(f"{url}/experiments/exp-e2e/report", key)
                if sum(sum(days) for days in report["exposures"]["impressions"].values()) >= 80:
                    break
                assert time.monotonic() < deadline, f"the statistics never caught up: {report['units']}"
                time.sleep(1)
            assert sum(report["units"].values()) == 40  # each shopper counted once, in one variant
            assert report["metrics"]["ctr"]["values"]["control"]["value"] is not None

            page = tmp_path / "report.html"
            assert tailor([*api, "report", "exp-e2e", "--html", str(page)]) == 0
            printed = capsys.readouterr().out
            assert "ctr" in printed and "blend" in printed and "sample-ratio mismatch" in printed
            assert page.read_text().count("<svg") >= 6

            # The page needs no key; it asks for one, and fetches what it shows with it.
            driver.get(f"{url}/console")
            shown(driver, "#no-key")
            driver.find_element("css selector", "#key-form input[name=key]").send_keys("not-the-key")
            driver.find_element("css selector", "#key-form button").click()
            shown(driver, "#refused")
            driver.find_element("css selector", "#key-form input[name=key]").send_keys(key)
            driver.find_element("css selector", "#key-form button").click()
            shown(driver, "#experiments")
            rows = driver.find_elements("css selector", "#experiments tr")
            assert any("exp-e2e" in row.text and "running" in row.text for row in rows)
            assert not driver.find_element("css selector", "#key-form").is_displayed()
            driver.find_element("link text", "exp-e2e").click()  # a new page: the key stays with the tab
            assert "Baseline or the blend" in shown(driver, "h2").text
            metrics = driver.find_element("css selector", "table.metrics").text
            assert "ctr" in metrics and "blend" in metrics
            lift = driver.find_element("css selector", "#lift-ctr-blend svg")
            assert lift.size["width"] > 300 and lift.find_elements("css selector", "polyline.lift")
            exposures = driver.find_elements("css selector", "polyline.exposures")
            assert {e.get_attribute("data-variant") for e in exposures} == {"control", "blend"}
            # As `make run` prints it: the key in the address, which the page takes and then leaves out of it.
            driver.execute_script("sessionStorage.clear()")
            driver.get(f"{url}/console#key={key}")
            shown(driver, "#experiments")
            assert "key=" not in driver.current_url
            driver.save_screenshot(str(tmp_path / "console.png"))

            # An interleaving experiment of the same strategies, on a layer of its own: every shopper in it sees
            # both rankers' lists merged, and the report says which one their clicks prefer.
            assert tailor([*api, "create", "--id", "exp-il", "--design", "interleaving", "--layer", "il",
                           "--variant", "shop=baseline", "--variant", "blend=default", "--days", "3",
                           "--start-now"]) == 0
            assert tailor([*api, "shoppers", "--shoppers", "40", "--visits", "2", "--n", "10"]) == 0
            said = capsys.readouterr().err
            assert "exp-il.interleaved" in said and " 0 refused" in said
            deadline = time.monotonic() + 180
            while True:
                merge_counters(stack)
                report = get(f"{url}/experiments/exp-il/report", key)
                if report["interleaving"]["clicks"] and report["interleaving"]["units"] >= 2:
                    break
                assert time.monotonic() < deadline, f"the statistics never caught up: {report['units']}"
                time.sleep(1)
            assert report["design"] == "interleaving" and list(report["units"]) == ["interleaved"]
            assert tailor([*api, "report", "exp-il", "--html", str(tmp_path / "il.html")]) == 0
            assert "mean rank credit per shopper" in capsys.readouterr().out
            driver.get(f"{url}/console?experiment=exp-il")
            table = shown(driver, "table.interleaving").text
            assert "shop (baseline)" in table and "blend (default)" in table
            assert driver.find_elements("css selector", "#credit-interleaved svg")
            rows = driver.find_elements("css selector", "#experiments tr")
            assert any("exp-il" in row.text and "interleaved" in row.text for row in rows)
    finally:
        driver.quit()


def shown(driver, selector: str, timeout: float = 30):
    """The element once the page's script has put it there."""
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(
        lambda d: next((e for e in d.find_elements("css selector", selector) if e.is_displayed()), False))


def get(url: str, key: str):
    request = urllib.request.Request(url, headers={"x-api-key": key})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)
