"""`tailor catalog load`: a catalog file read and checked line by line before anything is sent, then sent to
POST /items a page a request, each request sent again while the API answers "not now", against a stand-in API."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tailor_cli.catalog import CatalogFileError, read_catalog_file, send_catalog
from tailor_cli.main import main

KEY = "catalog-test-key"


class StandInApi:
    """POST /items on a local port: each request's entries kept, answers scripted as (status, body, headers) first."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.scripted: list[tuple[int, dict, dict]] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                api.requests.append({"path": self.path, "key": self.headers["x-api-key"], "items": body["items"]})
                status, answer, headers = api.scripted.pop(0) if api.scripted else (200, {
                    "written": len(body["items"]), "stale": []}, {})
                payload = json.dumps(answer).encode()
                self.send_response(status)
                for name, value in {"content-type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/dev"


@pytest.fixture
def api() -> Iterator[StandInApi]:
    stand_in = StandInApi()
    thread = threading.Thread(target=stand_in.server.serve_forever, daemon=True)
    thread.start()
    yield stand_in
    stand_in.server.shutdown()
    stand_in.server.server_close()


def test_a_csv_is_read_typed_with_empty_cells_left_out(tmp_path):
    path = tmp_path / "catalog.csv"
    path.write_text("\ufeffitem_id,name,category,price,available,updated_at\n"  # a spreadsheet's byte order mark
                    "i-1,Red lamp,lamps,19.90,true,2026-11-02T10:00:00Z\n"
                    "i-2,,,,FALSE,\n"
                    'i-3,"Lamp, brass",lamps,5,,\n', encoding="utf-8")
    entries = read_catalog_file(path)
    assert [line for line, _ in entries] == [2, 3, 4]
    assert [entry.model_dump(mode="json", exclude_none=True) for _, entry in entries] == [
        {"item_id": "i-1", "name": "Red lamp", "category": "lamps", "price": 19.9, "available": True,
         "updated_at": "2026-11-02T10:00:00Z"},
        {"item_id": "i-2", "available": False},
        {"item_id": "i-3", "name": "Lamp, brass", "category": "lamps", "price": 5.0}]


@pytest.mark.parametrize(("text", "problems"), [
    ("sku,price\na,1\n", ["line 1: the header names no item_id column (found: sku, price)"]),
    ("item_id,colour\na,red\n", ["line 1: unknown column(s) colour; the columns are item_id, category, brand, price, "
                                 "name, available, updated_at"]),
    ("item_id,price,available\na,12 EUR,\nb,,perhaps\nc,-1,\nd,,\ne,1,true,extra\n",
     ["line 2: price: '12 EUR' is not a number", "line 3: available: 'perhaps' is neither true nor false",
      "line 4: price: Input should be greater than or equal to 0",
      "line 5: entry: sets none of category, brand, price, name, available",
      "line 6: more cells than the header has columns"]),
])
def test_every_line_that_is_no_entry_is_named(tmp_path, text, problems):
    path = tmp_path / "catalog.csv"
    path.write_text(text)
    with pytest.raises(CatalogFileError) as refused:
        read_catalog_file(path)
    assert refused.value.problems == problems


def test_json_lines_are_read_as_entries_and_bad_lines_named(tmp_path):
    path = tmp_path / "catalog.jsonl"
    path.write_text('{"item_id": "i-1", "price": 3, "available": false}\n\n{"item_id": "i-2", "price": "3"}\n'
                    "[1]\n{oops\n")
    with pytest.raises(CatalogFileError) as refused:
        read_catalog_file(path)
    assert refused.value.problems[0] == "line 3: price: Input should be a valid number"
    assert refused.value.problems[1:] == ["line 4: not a JSON object", "line 5: not JSON (Expecting property name "
                                                                       "enclosed in double quotes)"]
    path.write_text('{"item_id": "i-1", "price": 3, "available": false}\n')
    assert [(line, entry.price, entry.available) for line, entry in read_catalog_file(path)] == [(1, 3.0, False)]


def test_entries_go_a_page_a_request_and_a_busy_api_is_asked_again_after_it_says(api, tmp_path):
    path = tmp_path / "catalog.csv"
    path.write_text("item_id,price\n" + "".join(f"i-{n},{n}\n" for n in range(5)))
    entries = read_catalog_file(path)
    api.scripted = [(503, {"message": "busy"}, {"Retry-After": "2"}),
                    (200, {"written": 1, "stale": [{"index": 1, "item_id": "i-1", "fields": ["price"]}]}, {})]
    waits: list[float] = []
    sent = send_catalog(entries, api.url + "/", KEY, batch=2, sleep=waits.append)
    assert waits == [2.0]
    assert [[item["item_id"] for item in r["items"]] for r in api.requests] == [
        ["i-0", "i-1"], ["i-0", "i-1"], ["i-2", "i-3"], ["i-4"]]
    assert {(r["path"], r["key"]) for r in api.requests} == {("/dev/items", KEY)}
    assert (sent.requests, sent.written, sent.stale) == (3, 4, [{"line": 3, "item_id": "i-1", "fields": ["price"]}])


def test_a_refusal_is_not_sent_again_and_an_api_that_stays_busy_is_given_up_on(api, tmp_path):
    path = tmp_path / "catalog.csv"
    path.write_text("item_id,price\ni-1,1\n")
    entries = read_catalog_file(path)
    api.scripted = [(403, {"message": "Forbidden"}, {})]
    with pytest.raises(RuntimeError, match=r"HTTP 403: \{\"message\": \"Forbidden\"\}"):
        send_catalog(entries, api.url, "wrong", sleep=lambda _: None)
    assert len(api.requests) == 1
    api.scripted = [(429, {"message": "Too Many Requests"}, {})] * 6
    waits: list[float] = []
    with pytest.raises(RuntimeError, match="HTTP 429"):
        send_catalog(entries, api.url, KEY, sleep=waits.append)
    assert waits == [1.0, 2.0, 4.0, 8.0, 16.0]  # doubling without a Retry-After, six tries in all


def test_the_command_sends_a_checked_file_and_sends_nothing_of_a_bad_one(api, tmp_path, capsys):
    good, bad = tmp_path / "good.csv", tmp_path / "bad.csv"
    good.write_text("item_id,available\ni-1,false\ni-2,true\n")
    bad.write_text("item_id,available\ni-1,false\ni-2,maybe\n")
    report = tmp_path / "report.json"
    assert main(["catalog", "load", str(good), "--api", api.url, "--api-key", KEY, "--json", str(report)]) == 0
    assert json.loads(capsys.readouterr().out) == {"entries": 2, "requests": 1, "written": 2, "stale": 0}
    assert json.loads(report.read_text()) == {"entries": 2, "requests": 1, "written": 2, "stale": []}
    assert main(["catalog", "load", str(bad), "--api", api.url, "--api-key", KEY]) == 2
    assert "line 3: available: 'maybe' is neither true nor false" in capsys.readouterr().err
    assert main(["catalog", "load", str(good), "--api", api.url, "--api-key", KEY, "--batch", "501"]) == 2
    assert len(api.requests) == 1
