"""`tailor catalog load`: a catalog file read and checked line by line before anything is sent, then sent to
POST /items a page a request, stamped so that a request sent again changes nothing, and sent again while the API
answers "not now"; a refusal part way says what was sent. Against a stand-in API."""

from __future__ import annotations

import argparse
import json
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tailor_cli.catalog import CatalogFileError, catalog_entries, check_catalog_file, send_catalog
from tailor_cli.main import main

KEY = "catalog-test-key"
API_DATE = "Mon, 02 Nov 2026 12:00:00 GMT"


class StandInApi:
    """POST /items on a local port: each request's entries kept, answers scripted as (status, body, headers) first."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.probes: list[tuple[str, str]] = []
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

            def do_GET(self) -> None:  # noqa: N802 - GET /items/ID: the clock's probe, an item Tailor does not hold
                api.probes.append((self.path, self.headers["x-api-key"]))
                status, payload = (404, b'{"message": "no item"}') if self.headers["x-api-key"] == KEY else (
                    403, b'{"message": "Forbidden"}')
                self.send_response(status)
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def date_time_string(self, timestamp=None) -> str:
                return API_DATE  # the API's clock, not the test's

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


STAMP = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)


def entries_of(path) -> list:
    assert check_catalog_file(path) >= 0
    return list(catalog_entries(path))


def test_a_csv_is_read_typed_with_empty_cells_left_out(tmp_path):
    path = tmp_path / "catalog.csv"
    path.write_text("\ufeffitem_id, name,category,price,available,updated_at,clear\r\n"  # a spreadsheet's BOM, CRLF
                    "i-1,Red lamp,lamps,19.90,true,2026-11-02T10:00:00Z,\r\n"
                    "i-2,,,,FALSE,,\r\n\r\n"
                    'i-3,"Lamp, brass",lamps,5,,,\r\n'
                    "i-4,,,1e2,,,brand  name\r\n", encoding="utf-8")
    assert check_catalog_file(path) == 4
    entries = entries_of(path)
    assert [line for line, _ in entries] == [2, 3, 5, 6]
    assert [entry.model_dump(mode="json", exclude_defaults=True) for _, entry in entries] == [
        {"item_id": "i-1", "name": "Red lamp", "category": "lamps", "price": 19.9, "available": True,
         "updated_at": "2026-11-02T10:00:00Z"},
        {"item_id": "i-2", "available": False},
        {"item_id": "i-3", "name": "Lamp, brass", "category": "lamps", "price": 5.0},
        {"item_id": "i-4", "price": 100.0, "clear": ["brand", "name"]}]


@pytest.mark.parametrize(("text", "problems"), [
    ("sku,price\na,1\n", ["line 1: the header names no item_id column (found: 'sku', 'price')"]),
    ('{"item_id": "a"}\n', ["line 1: the header names no item_id column (found: '{\"item_id\": \"a\"}'); a JSON "
                            "lines file ends in .jsonl"]),
    ("", ["line 1: the header names no item_id column (found: nothing)"]),
    ("item_id,colour\na,red\n", ["line 1: unknown column(s) 'colour'; the columns are item_id, category, brand, "
                                 "price, name, available, clear, updated_at"]),
    ("item_id,price,price\na,1,2\n", ["line 1: column(s) named twice: price"]),
    ("item_id,clear\na,\"price,brand\"\n", ["line 2: clear: 'price,brand' names no field; the fields, apart by "
                                           "spaces, are category, brand, price, name, available"]),
    ("item_id,price,available\na,12 EUR,\nb,,perhaps\nc,-1,\nd,,\ne,1,true,extra\nf,1\ng,1_000,\n,1,\n"
     '"h\ni",1,\nj,2,\n',
     ["line 2: price: '12 EUR' is not a number", "line 3: available: 'perhaps' is neither true nor false",
      "line 4: price: Input should be greater than or equal to 0",
      "line 5: entry: sets none of category, brand, price, name, available, and clears none",
      "line 6: 4 cells where the header has 3 columns", "line 7: 2 cells where the header has 3 columns",
      "line 8: price: '1_000' is not a number", "line 9: item_id: Field required",
      "line 10: item_id: String should match pattern '^[^\\x00-\\x1f\\x7f-\\x9f]*$'"]),  # a record's first line
])
def test_every_line_that_is_no_entry_is_named(tmp_path, text, problems):
    path = tmp_path / "catalog.csv"
    path.write_text(text)
    with pytest.raises(CatalogFileError) as refused:
        check_catalog_file(path)
    assert (refused.value.problems, refused.value.count) == (problems, len(problems))


def test_a_file_that_is_not_utf8_is_refused_as_a_whole(tmp_path):
    path = tmp_path / "catalog.csv"
    path.write_bytes("item_id,name\ni-1,\u00e9t\u00e9\n".encode("latin-1"))
    with pytest.raises(CatalogFileError) as refused:
        check_catalog_file(path)
    assert refused.value.problems[0].startswith("the file is not UTF-8 text (invalid continuation byte")


def test_json_lines_are_read_as_entries_and_bad_lines_named(tmp_path):
    path = tmp_path / "catalog.JSONL"
    path.write_text('{"item_id": "i-1", "price": 3, "available": false}\n\n{"item_id": "i-2", "price": "3"}\n'
                    '[1]\n{oops\n{"item_id": "i-3", "price": ' + "9" * 5000 + "}\n")
    with pytest.raises(CatalogFileError) as refused:
        check_catalog_file(path)
    assert refused.value.problems[:3] == [
        "line 3: price: Input should be a valid number", "line 4: not a JSON object",
        "line 5: not JSON (Expecting property name enclosed in double quotes)"]
    assert refused.value.problems[3].startswith("line 6: not JSON (Exceeds the limit")
    path.write_text('{"item_id": "i-1", "price": 3, "available": false}\n')
    assert [(line, entry.price, entry.available) for line, entry in entries_of(path)] == [(1, 3.0, False)]


def test_entries_go_a_page_a_request_stamped_and_a_busy_api_is_asked_again_after_it_says(api, tmp_path):
    path = tmp_path / "catalog.csv"
    path.write_text("item_id,price,updated_at\n" + "".join(f"i-{n},{n},\n" for n in range(4))
                    + "i-4,4,2026-11-01T00:00:00Z\n")
    api.scripted = [(503, {"message": "busy"}, {"Retry-After": "2"}),
                    (200, {"written": 1, "stale": [{"index": 1, "item_id": "i-1", "fields": ["price"]}]}, {}),
                    (429, {"message": "Too Many Requests"}, {"Retry-After": "120"})]
    waits: list[float] = []
    sent = send_catalog(catalog_entries(path), api.url + "/", KEY, batch=2, stamp=STAMP, sleep=waits.append)
    assert waits == [2.0, 30.0]  # the API's Retry-After, at most 30 s
    assert [[item["item_id"] for item in r["items"]] for r in api.requests] == [
        ["i-0", "i-1"], ["i-0", "i-1"], ["i-2", "i-3"], ["i-2", "i-3"], ["i-4"]]
    assert api.requests[0]["items"] == api.requests[1]["items"]  # sent again as it was: it changes nothing
    # Each stamped by its line: a later line of one item wins over an earlier one.
    assert [item["updated_at"] for item in api.requests[0]["items"] + api.requests[2]["items"]] == [
        f"2026-11-02T12:00:00.00000{line}+00:00" for line in (2, 3, 4, 5)]
    assert api.requests[4]["items"][0]["updated_at"] == "2026-11-01T00:00:00Z"  # the file's own stamp
    assert {(r["path"], r["key"]) for r in api.requests} == {("/dev/items", KEY)}
    assert (sent.requests, sent.sent, sent.written, sent.refused) == (3, 5, 4, None)
    assert sent.stale == [{"line": 3, "item_id": "i-1", "fields": ["price"]}]


def test_a_refusal_ends_the_load_saying_what_was_sent_and_an_unanswered_request_is_given_up_on(api, tmp_path):
    path = tmp_path / "catalog.csv"
    path.write_text("item_id,price\n" + "".join(f"i-{n},{n}\n" for n in range(5)))
    api.scripted = [(200, {"written": 2, "stale": []}, {}), (403, {"message": "Forbidden"}, {})]
    sent = send_catalog(catalog_entries(path), api.url, KEY, batch=2, sleep=lambda _: pytest.fail("sent again"))
    assert len(api.requests) == 2 and (sent.requests, sent.sent, sent.written) == (2, 2, 2)
    assert sent.refused == {"answer": 'HTTP 403: {"message": "Forbidden"}', "first_line": 4, "last_line": 5}

    api.scripted = [(200, {"nothing": "like it"}, {})]
    sent = send_catalog(catalog_entries(path), api.url, KEY, sleep=lambda _: None)
    assert sent.refused["answer"].startswith("not POST /items' answer")

    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        nowhere = f"http://127.0.0.1:{closed.getsockname()[1]}"
    waits: list[float] = []
    sent = send_catalog(catalog_entries(path), nowhere, KEY, sleep=waits.append)
    assert waits == [1.0, 2.0, 4.0, 8.0, 16.0] and sent.refused["answer"].startswith("no answer after 6 tries")


def test_the_command_sends_a_checked_file_and_sends_nothing_of_a_bad_one(api, tmp_path, capsys):
    good, bad = tmp_path / "good.csv", tmp_path / "bad.csv"
    good.write_text("item_id,available\ni-1,false\ni-2,true\n")
    bad.write_text("item_id,available\ni-1,false\ni-2,maybe\n")
    report = tmp_path / "report.json"
    assert main(["catalog", "load", str(good), "--api", api.url, "--api-key", KEY, "--json", str(report)]) == 0
    assert json.loads(capsys.readouterr().out) == {"entries": 2, "requests": 1, "sent": 2, "written": 2, "stale": 0,
                                                   "refused": None}
    assert json.loads(report.read_text())["stale"] == []
    # Stamped by the API's clock, read from its answer to a keyed request for an item it does not hold.
    assert api.probes == [("/dev/items/tailor-catalog-load", KEY)]
    assert [item["updated_at"] for item in api.requests[0]["items"]] == [
        "2026-11-02T12:00:00.000002+00:00", "2026-11-02T12:00:00.000003+00:00"]
    assert main(["catalog", "load", str(good), "--api", api.url, "--api-key", "wrong"]) == 1
    assert "HTTP 403: the key is refused; nothing was sent" in capsys.readouterr().err and len(api.requests) == 1
    assert main(["catalog", "load", str(bad), "--api", api.url, "--api-key", KEY]) == 2
    assert "line 3: available: 'maybe' is neither true nor false" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["catalog", "load", str(good), "--api", api.url, "--api-key", KEY, "--batch", "501"])
    api.scripted = [(422, {"message": "invalid request: body items.0.price: too dear"}, {})]
    assert main(["catalog", "load", str(good), "--api", api.url, "--api-key", KEY]) == 1
    assert "the request of lines 2 to 3 was refused: HTTP 422" in capsys.readouterr().err
    assert len(api.requests) == 2


def test_the_key_of_a_deployed_api_is_never_sent_to_the_local_stack(monkeypatch):
    from tailor_cli import catalog

    class LocalStack:
        api_url, api_key = "http://127.0.0.1:3000", "local-key"

    monkeypatch.setattr(catalog, "running", lambda args: LocalStack)
    environ = {"TAILOR_API_KEY": "deployed-key"}

    def args(**given) -> argparse.Namespace:
        return argparse.Namespace(**{"api": None, "api_key": None, "template": None} | given)

    assert catalog._api_and_key(args(), environ) == ("http://127.0.0.1:3000", "local-key")
    assert catalog._api_and_key(args(api_key="given"), environ) == ("http://127.0.0.1:3000", "given")
    assert catalog._api_and_key(args(api="https://x/dev"), environ) == ("https://x/dev", "deployed-key")
    assert catalog._api_and_key(args(api="https://x/dev", api_key="given"), environ) == ("https://x/dev", "given")
    assert catalog._api_and_key(args(api="https://x/dev"), {}) == ("https://x/dev", None)
