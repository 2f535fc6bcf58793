"""End to end over HTTP: `tailor local up` serves the API on 127.0.0.1 and every curl command it prints works as
printed (with and without the key, with malformed parameters); events posted over HTTP become state that the API
then serves, and erasure removes it."""

import json
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from tailor_local.stack import LocalStack

from tests.helpers.api import repo_copy
from tests.helpers.local_up import UP_LINE, LocalUp

pytestmark = [pytest.mark.e2e]

STARTUP_TIMEOUT_S = 300
EXAMPLE = re.compile(r"^  # (?P<purpose>.*) \(expect HTTP (?P<status>\d{3})\)$")


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_every_curl_command_tailor_local_up_prints_works_as_printed(tmp_path):
    up = LocalUp(repo_copy(tmp_path / "repo"), "--port", "0", "--api-port", "0", "--shoppers", "4", "--days", "0.1")
    try:
        said = up.wait_until_up(STARTUP_TIMEOUT_S)
        assert any(UP_LINE in line for line in said), "\n".join(said)
        examples = [(EXAMPLE.match(said[i]), said[i + 1].strip()) for i in range(len(said) - 1)
                    if EXAMPLE.match(said[i])]
        assert len(examples) >= 12 and all(command.startswith("curl ") for _, command in examples)

        for match, command in examples:
            result = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=60)
            body, _, status = result.stdout.rstrip("\n").rpartition("\n")
            assert (result.returncode, status) == (0, f"HTTP {match['status']}"), (command, result.stdout)
            answer = json.loads(body)
            if match["status"] == "403":
                assert answer == {"message": "Forbidden"}
            elif match["status"] == "422":
                assert "query n:" in answer["message"] and "query min_price:" in answer["message"]
            elif "feed_id" in answer:
                assert answer["items"] or "search" in command, command
    finally:
        up.stop()


def test_events_posted_over_http_become_state_the_api_serves_until_the_shopper_is_erased(tmp_path):
    user = "u-http-1"
    events = [{"event_id": f"http-{n}", "user_id": user, "session_id": "s-http-1", "timestamp": f"2026-11-02T10:0{n}:00Z",
               "event_type": kind, "item_id": "i-7", "category": "books", "price": 12.5}
              for n, kind in enumerate(["view", "add_to_cart", "purchase"])]
    with open(tmp_path / "functions.log", "w") as log, \
            LocalStack(repo_copy(tmp_path / "repo"), port=0, stack_name="tailor-e2e-api", function_log=log) as stack:
        url, key = stack.handle.api_url, stack.handle.api_key
        status, body = call(url + "/events", key, method="POST", body={"events": events})
        assert (status, body["accepted"], body["failed"]) == (200, 3, 0)

        deadline = time.monotonic() + 120
        while (profile := call(f"{url}/users/{user}/profile", key))[0] == 404:
            assert time.monotonic() < deadline, "the posted events never reached the shopper's state"
            time.sleep(0.2)
        status, profile = profile
        assert status == 200 and profile["events"] == 3 and profile["rfm"]["purchases"] == 1

        status, feed = call(f"{url}/users/{user}/feed?n=5", key)
        assert status == 200 and "i-7" in [item["item_id"] for item in feed["items"]]
        assert call(f"{url}/users/{user}/feed", None)[0] == 403

        status, erased = call(f"{url}/users/{user}", key, method="DELETE")
        assert status == 202 and erased["removed"]["shopper_state"]
        assert call(f"{url}/users/{user}/profile", key)[0] == 404
        while (erased := call(url + erased["status_url"], key)[1])["status"] != "done":
            assert time.monotonic() < deadline, f"the erasure never finished: {erased}"
            time.sleep(0.2)
        assert erased["removed"]["archive_events"] == 3 and erased["removed"]["sessions"] == 1


def call(url: str, key: str | None, *, method: str = "GET", body=None) -> tuple[int, dict]:
    request = urllib.request.Request(url, method=method, data=None if body is None else json.dumps(body).encode(),
                                     headers={"content-type": "application/json", **({"x-api-key": key} if key else {})})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)
