"""`tailor evaluate ltv --transactions`: a shop's own CSV log, its checks, and the protocol run on it."""

from __future__ import annotations

import csv
import json
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest

from tailor_lab.datasets.transactions import TransactionsError, read_transactions, transaction_events
from tailor_lab.evaluation.ltv import CALIBRATION_END, main, rfm_summary
from tailor_lab.training import ltv as ltv_training
from tailor_lab.training.ltv import parse_events

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "ltv_transactions.csv"


def _write_shop_log(path: Path, customers: int, seed: int) -> None:
    """A log on another calendar than CDNOW's: customers arrive all through 2021 and buy on at their own rates."""
    rng = np.random.default_rng(seed)
    rows = ["order_ref,customer_id,amount,date"]  # columns in another order, and one more
    for c in range(1, customers + 1):
        day = date(2021, 3, 1) + timedelta(days=int(rng.integers(0, 200)))
        rate, drop, value = rng.gamma(0.8, 1 / 2.0) + 0.03, rng.beta(1, 4), rng.lognormal(3.5, 0.5)
        while day <= date(2022, 6, 30):
            for line in range(int(rng.integers(1, 3))):  # several lines on one day: one purchase day
                rows.append(f"r{len(rows)},shopper-{c},{value * rng.uniform(0.5, 1.5):.2f},{day.isoformat()}")
            if rng.random() < drop:
                break
            day += timedelta(days=1 + int(rng.exponential(7 / rate)))
    path.write_text("\n".join(rows) + "\n")


def _error(tmp_path: Path, text: str) -> str:
    path = tmp_path / "log.csv"
    path.write_text(text)
    with pytest.raises(TransactionsError) as raised:
        read_transactions(path)
    return str(raised.value)


def test_the_fixture_reads_as_purchase_days_with_several_lines_a_day_one_day():
    transactions = read_transactions(FIXTURE)
    assert transactions[0].customer_id == "a" and transactions[0].day == date(2020, 1, 6)
    assert transactions[0].amount == pytest.approx(12.5) and transactions[0].row == 2
    events = parse_events(transaction_events(transactions))
    assert len(events) == len(transactions)
    summary = rfm_summary(events, CALIBRATION_END.replace(year=2020, month=4))
    at = summary.index
    # a: 2020-01-06 (two lines), 2020-02-03, 2020-03-02: three purchase days, the first worth 12.50 + 7.50.
    assert summary.x[at["a"]] == 2 and summary.mean_value[at["a"]] == pytest.approx((20.0 + 30.0 + 10.0) / 3)
    assert summary.tx[at["a"]] == pytest.approx(8.0)


@pytest.mark.parametrize(("text", "expected"), [
    ("customer_id,amount\na,1\n", "row 1 (header): missing column date"),
    ("id,day,value\n", "missing columns customer_id, date, amount"),
    ("customer_id,date,amount\na,2020-01-06,1\nb,06/01/2020,2\n", "row 3, column date: '06/01/2020' is not an ISO date"),
    ("customer_id,date,amount\na,20200106,1\n", "row 2, column date"),
    ("customer_id,date,amount\na,2020-01-06,ten\n", "row 2, column amount: 'ten' is not a number"),
    ("customer_id,date,amount\na,2020-01-06,-3.5\n", "row 2, column amount: -3.5 is negative"),
    ("customer_id,date,amount\na,2020-01-06,nan\n", "row 2, column amount: 'nan' is not a finite number"),
    ("customer_id,date,amount\n,2020-01-06,1\n", "row 2, column customer_id: empty"),
    ("customer_id,date,amount\na,2020-01-06\n", "row 2, column amount: missing"),
    ("", "empty file"),
    ("customer_id,date,amount\na,2020-01-06,1,234.50\n", "row 2: 4 fields where the header names 3"),
    ("customer_id;date;amount\na;2020-01-06;1\n", "the header holds ';'"),
])
def test_a_bad_file_names_the_row_and_the_column(tmp_path, text, expected):
    assert expected in _error(tmp_path, text)


def test_a_row_ending_in_a_comma_is_read_as_its_fields(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("customer_id,date,amount\na,2020-01-06,10.5,\n")
    assert [(t.customer_id, t.amount) for t in read_transactions(path)] == [("a", 10.5)]


def test_a_file_not_in_utf8_or_a_directory_is_refused_naming_it(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("customer_id,date,amount\nmüller,2020-01-06,1\n".encode("latin-1"))
    with pytest.raises(TransactionsError, match="not UTF-8 text"):
        read_transactions(path)
    with pytest.raises(TransactionsError, match="a directory"):
        read_transactions(tmp_path)


def test_logs_that_leave_nothing_to_forecast_or_to_rank_are_refused_before_any_training(tmp_path, capsys):
    out = tmp_path / "pred.csv"

    def refused(rows: list[str], *dates: str, validate: bool = False) -> str:
        log = tmp_path / "log.csv"
        log.write_text("customer_id,date,amount\n" + "\n".join(rows) + "\n")
        with pytest.raises(SystemExit):
            main(["--transactions", str(log), "--calibration-end", dates[0], "--holdout-end", dates[1],
                  "--out", str(out), *(["--validate"] if validate else [])])
        return capsys.readouterr().err

    many = [f"c{k},2020-01-{1 + k:02d},{5 + k}" for k in range(12)] + ["c1,2020-05-01,9"]
    assert "no purchase falls after --calibration-end" in refused(many, "2020-06-30", "2020-12-31")
    assert "a cohort of 2 customers" in refused(["a,2020-01-06,1", "b,2020-01-07,2", "a,2020-05-01,3"],
                                                "2020-03-31", "2020-06-30")
    zero = [row.rsplit(",", 1)[0] + ",0" for row in many]
    assert "every purchase up to --calibration-end 2020-03-31 is 0" in refused(zero, "2020-03-31", "2020-06-30")
    # The validation inside calibration refuses the same logs the same way, before any training.
    assert "a cohort of 2 customers" in refused(["a,2020-01-06,1", "b,2020-01-07,2", "a,2020-05-01,3"],
                                                "2020-03-31", "2020-06-30", validate=True)
    assert "is 0, so there is no spend" in refused(zero, "2020-03-31", "2020-06-30", validate=True)
    assert "must come after --calibration-end" in refused(many, "2020-03-31", "2020-03-01", validate=True)
    # Each week the validation starts from needs a cohort to rank too, and one week inside calibration at least.
    late = ["a,2020-01-06,1", "b,2020-01-07,2"] + [f"c{k},2020-07-{1 + k:02d},{5 + k}" for k in range(10)]
    assert "as of week 20 of calibration (2020-05-24), a cohort of 2 customers" in refused(
        late, "2020-09-30", "2020-12-31", validate=True)
    assert "shorter than 20 weeks" in refused(many, "2020-03-31", "2020-06-30", validate=True)
    assert "is outside" in refused(many, "2020-03-31", "9999-12-31")
    with pytest.raises(SystemExit):
        main(["--transactions", str(FIXTURE), "--calibration-end", "2020-03-31", "--holdout-end", "2020-06-30",
              "--out", str(tmp_path / "no-such-dir" / "pred.csv")])
    assert "--out" in capsys.readouterr().err and not out.exists()


def test_an_empty_cohort_and_a_holdout_before_calibration_are_refused(tmp_path, capsys):
    out = tmp_path / "pred.csv"
    with pytest.raises(SystemExit):
        main(["--transactions", str(FIXTURE), "--calibration-end", "2019-12-31", "--holdout-end", "2020-06-30",
              "--out", str(out)])
    assert "empty cohort" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--transactions", str(FIXTURE), "--calibration-end", "2020-03-31", "--holdout-end", "2020-03-01",
              "--out", str(out)])
    assert "must come after --calibration-end" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--transactions", str(FIXTURE), "--out", str(out)])
    assert "needs --calibration-end and --holdout-end" in capsys.readouterr().err
    assert not out.exists()


def test_evaluate_ltv_on_a_shop_log_writes_expectations_for_the_cohort(tmp_path, capsys, monkeypatch):
    # The pipeline and its outputs are under test here, not the model's quality: fewer boosting rounds.
    monkeypatch.setitem(ltv_training.BOOSTING, "max_iter", 20)
    data = tmp_path / "shop.csv"
    _write_shop_log(data, customers=300, seed=5)
    out, figures_path = tmp_path / "pred.csv", tmp_path / "figures.json"
    assert main(["--transactions", str(data), "--calibration-end", "2021-12-31", "--holdout-end", "2022-06-30",
                 "--out", str(out), "--json", str(figures_path)]) == 0
    printed = capsys.readouterr().out
    assert "Tailor LTV" in printed and "BG/NBD + Gamma-Gamma" in printed and "goal" in printed

    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["customer_id", "pred_holdout_transactions", "pred_holdout_spend"]
    with open(data, newline="") as fh:
        firsts: dict[str, str] = {}
        for row in csv.DictReader(fh):
            firsts[row["customer_id"]] = min(firsts.get(row["customer_id"], row["date"]), row["date"])
    # The cohort: whoever first bought by the calibration's last day, and no one else.
    assert {r["customer_id"] for r in rows} == {c for c, first in firsts.items() if first <= "2021-12-31"}
    assert all(float(r["pred_holdout_transactions"]) >= 0 and float(r["pred_holdout_spend"]) >= 0 for r in rows)

    figures = json.loads(figures_path.read_text())
    ours = figures["models"]["tailor_ltv"]
    # The file holds expectations: they sum to the predicted totals, which whole quoted days would not.
    assert ours["predicted_transactions"] == pytest.approx(sum(float(r["pred_holdout_transactions"]) for r in rows),
                                                           rel=1e-4)
    assert any(float(r["pred_holdout_transactions"]) % 1 for r in rows)
    assert ours["actual_transactions"] == figures["models"]["bgnbd_gamma_gamma"]["actual_transactions"] > 0
    assert figures["protocol"]["holdout_weeks"] == pytest.approx(181 / 7)
    assert figures["protocol"]["calibration"].endswith("..2021-12-31")
    assert figures["ltv_model"]["horizon_weeks"] == pytest.approx(181 / 7)
    assert len(figures["goals"]) == 3


def test_validation_runs_inside_calibration_and_never_reads_the_holdout(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(ltv_training.BOOSTING, "max_iter", 20)
    data = tmp_path / "shop.csv"
    _write_shop_log(data, customers=300, seed=5)
    out, figures_path = tmp_path / "pred.csv", tmp_path / "validation.json"
    assert main(["--transactions", str(data), "--calibration-end", "2021-12-31", "--holdout-end", "2022-06-30",
                 "--validate", "--out", str(out), "--json", str(figures_path)]) == 0
    runs = json.loads(figures_path.read_text())["validation"]
    with open(data, newline="") as fh:
        rows = list(csv.DictReader(fh))
    first = min(r["date"] for r in rows)
    # As of weeks 20 and 26 after the first purchase; the rest of calibration is the holdout, 2022 is not read.
    cuts = [(week, (date.fromisoformat(first) + timedelta(weeks=week, days=-1)).isoformat()) for week in (20, 26)]
    for run, (week, cut) in zip(runs, cuts, strict=True):
        assert run["protocol"]["calibration"] == f"{first}..{cut}"
        assert run["protocol"]["holdout"].endswith("..2021-12-31")
        cohort = {r["customer_id"] for r in rows if r["date"] <= cut}
        days = {(r["customer_id"], r["date"]) for r in rows if r["customer_id"] in cohort and cut < r["date"] <= "2021-12-31"}
        assert run["models"]["tailor_ltv"]["actual_transactions"] == len(days)
        with open(tmp_path / f"pred-week{week}.csv", newline="") as fh:
            assert {r["customer_id"] for r in csv.DictReader(fh)} == cohort
    assert "validation as of week 26" in capsys.readouterr().out
