"""Measure Tailor's LTV model on CDNOW with the classic protocol, against BG/NBD plus Gamma-Gamma.

Protocol (Fader, Hardie & Lee 2005): calibration 1997-01-01..1997-09-30 (39 weeks), holdout
1997-10-01..1998-06-30 (39 weeks), time in weeks, purchases on the same day one transaction.

The product path: the CDNOW lines are replayed as purchase events (`load_cdnow`) through
`fold_shopper`, the fold Ingest runs; the LTV model is trained on calibration events only, with
labels from time-shifted windows inside calibration; every customer is scored from their state at
the end of calibration with `ltv_features` and `LtvModel`, as RebuildLtv does (tailor.ltv.rebuild). The
per-customer predictions are those RebuildLtv quotes per shopper: the purchase days to quote
(`typical_transactions`, a whole number per customer, at the quantile level that erred least on
the calibration windows the model learned from) and the spend to quote (`typical_spend`, with no
spend quoted beside no purchase day nor the reverse: `tailor.ltv.scoring.consistent_days`). The
predicted totals are the sums of the model's expectations (`transactions`, `spend`), which is what
a total is forecast with; quoted counts near the median do not add up to a total. BG/NBD's
expectations put through the same quoting rule are printed under the table for reference: quoting
whole purchase days is what moves MAE and Spearman most, so that row shows what it is worth to
either model.

The reference: BG/NBD (purchase days) and Gamma-Gamma (spend per transaction), fitted here by
maximum likelihood of the published likelihoods, and a naive rate model (repeat rate x horizon x
mean transaction value).

    python -m tailor_lab.evaluation.ltv --data CDNOW_master.txt --out predictions.csv [--json figures.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from tailor.events import Event
from tailor.ltv.prior import expected_transactions as bgnbd_expected
from tailor.ltv.prior import gamma_gamma_mean
from tailor.ltv.scoring import LtvModel, quote
from tailor_lab.datasets import load_cdnow
from tailor_lab.training.ltv import (
    fit_bgnbd,
    fit_gamma_gamma,
    ltv_metrics,
    parse_events,
    replay_snapshots,
    totals_level,
    train_ltv,
)

__all__ = ["CALIBRATION_END", "HOLDOUT_END", "PAPER_BGNBD_SAMPLE", "bgnbd_expected", "bgnbd_totals_backtest",
           "evaluate_ltv", "fit_bgnbd", "fit_gamma_gamma", "gamma_gamma_mean", "main", "rfm_summary"]

CALIBRATION_START = datetime(1997, 1, 1, tzinfo=UTC)
CALIBRATION_END = datetime(1997, 10, 1, tzinfo=UTC)  # exclusive
HOLDOUT_END = datetime(1998, 7, 1, tzinfo=UTC)  # exclusive
DAY = timedelta(days=1)
HOLDOUT_WEEKS = (HOLDOUT_END - CALIBRATION_END).days / 7  # 39
PAPER_BGNBD_SAMPLE = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
GOALS = {"mae_below_bgnbd": 0.10, "spearman_spend": 0.50, "total_within": 0.05}
DEFAULT_DATA = Path(__file__).resolve().parents[4] / "shared" / "data" / "cdnow" / "CDNOW_master.txt"


def evaluate_ltv(data_path: str | os.PathLike[str], out_csv: str | os.PathLike[str],
                 json_path: str | os.PathLike[str] | None = None, *,
                 sample_path: str | os.PathLike[str] | None = None, model_path: str | os.PathLike[str] | None = None,
                 echo: bool = True) -> dict[str, Any]:
    """Run the protocol on a CDNOW file; write per-customer predictions (CSV), the figures (JSON), the model (ONNX)."""
    started = time.perf_counter()
    events = [e for e in parse_events(load_cdnow(data_path)) if e.epoch < HOLDOUT_END.timestamp()]
    calibration = [e for e in events if e.epoch < CALIBRATION_END.timestamp()]
    if not calibration:
        raise ValueError(f"{data_path}: no purchases before {CALIBRATION_END:%Y-%m-%d}")

    trained = train_ltv(calibration, CALIBRATION_END, horizon_weeks=HOLDOUT_WEEKS)
    cal_end, hold_end = CALIBRATION_END.timestamp(), HOLDOUT_END.timestamp()
    # Holdout events are replayed only to count what each customer went on to do.
    snaps = replay_snapshots(events, [cal_end, hold_end], with_features=lambda m: m == cal_end)
    at_end, later = snaps[cal_end], snaps[hold_end]
    later_rows = later.index()
    rows = np.array([later_rows[u] for u in at_end.user_ids])
    actual_t = later.transactions[rows] - at_end.transactions
    actual_s = later.revenue[rows] - at_end.revenue

    model = LtvModel(trained.onnx)
    prediction = model.predict(at_end.features, horizon_weeks=HOLDOUT_WEEKS)

    summary = rfm_summary(calibration, CALIBRATION_END)
    order = [summary.index[u] for u in at_end.user_ids]
    x, tx, T, m = summary.x[order], summary.tx[order], summary.T[order], summary.m[order]
    bgnbd = fit_bgnbd(x, tx, T)
    gg = fit_gamma_gamma(x, m)
    ref_t = bgnbd_expected(bgnbd, HOLDOUT_WEEKS, x, tx, T)
    ref_s = ref_t * gamma_gamma_mean(gg, x, m)
    naive_t = x / np.maximum(T, 1.0 / 7) * HOLDOUT_WEEKS
    naive_s = naive_t * summary.mean_value[order]
    count = model.metadata["count"]
    ref_quoted, ref_quoted_spend = quote(ref_t, ref_s, count["dispersion"], count["level"],
                                         totals_level(ref_t, count["dispersion"]))

    figures: dict[str, Any] = {
        "protocol": {"data": str(data_path), "customers": len(at_end.user_ids),
                     "calibration": f"{CALIBRATION_START:%Y-%m-%d}..{CALIBRATION_END - DAY:%Y-%m-%d}",
                     "holdout": f"{CALIBRATION_END:%Y-%m-%d}..{HOLDOUT_END - DAY:%Y-%m-%d}",
                     "holdout_weeks": HOLDOUT_WEEKS, "model_horizon_weeks": model.horizon_weeks},
        "models": {
            "tailor_ltv": ltv_metrics(prediction.typical_transactions, prediction.typical_spend, actual_t, actual_s),
            "bgnbd_gamma_gamma": ltv_metrics(ref_t, ref_s, actual_t, actual_s),
            "naive_rate": ltv_metrics(naive_t, naive_s, actual_t, actual_s),
        },
        # Tailor's expectations give its predicted totals; BG/NBD quoted shows what quoting, not the model, is worth.
        "reference": {
            "tailor_ltv_expected": ltv_metrics(prediction.transactions, prediction.spend, actual_t, actual_s),
            "bgnbd_quoted": ltv_metrics(ref_quoted, ref_quoted_spend, actual_t, actual_s),
        },
        "bgnbd_params": bgnbd,
        "gamma_gamma_params": gg,
        "ltv_model": {k: trained.metadata[k] for k in ("horizon_weeks", "label_weeks", "cutoffs", "training_rows",
                                                        "prior", "count", "totals_factors", "correction_features", "backtest",
                                                        "library", "boosting")},
    }
    figures["goals"] = _goals(figures["models"], figures["reference"]["tailor_ltv_expected"])
    sample = Path(sample_path) if sample_path else Path(data_path).with_name("CDNOW_sample.txt")
    if sample_path or sample.exists():
        figures["bgnbd_sample_check"] = check_bgnbd_sample(sample)
    figures["bgnbd_totals_backtest"] = bgnbd_totals_backtest(events)
    figures["seconds"] = round(time.perf_counter() - started, 1)

    # The transactions measured above: the purchase days the model quotes per customer.
    _write_csv(Path(out_csv), at_end.user_ids, prediction.typical_transactions, prediction.typical_spend)
    if json_path:
        Path(json_path).write_text(json.dumps(figures, indent=2) + "\n")
    if model_path:
        Path(model_path).write_bytes(trained.onnx)
    if echo:
        print(format_table(figures))
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tailor evaluate ltv", description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="CDNOW_master.txt (default: %(default)s)")
    parser.add_argument("--out", required=True, help="CSV: customer_id,pred_holdout_transactions,pred_holdout_spend")
    parser.add_argument("--json", help="write the figures here as JSON")
    parser.add_argument("--sample", help="CDNOW_sample.txt for the BG/NBD parameter check "
                                         "(default: next to --data, when there)")
    parser.add_argument("--model", help="also write the trained LTV model (ONNX) here")
    args = parser.parse_args(argv)
    if not Path(args.data).exists():
        parser.error(f"no such file: {args.data}")
    evaluate_ltv(args.data, args.out, args.json, sample_path=args.sample, model_path=args.model)
    return 0


# -- BG/NBD and Gamma-Gamma ------------------------------------------------------------------------

class RfmSummary:
    """Per customer, in weeks: repeat transactions x, time of the last one t_x, age T, mean repeat value m."""

    def __init__(self, users: list[str], x, tx, T, m, mean_value):
        self.users = users
        self.index = {u: i for i, u in enumerate(users)}
        self.x, self.tx, self.T, self.m, self.mean_value = (np.asarray(a, dtype=np.float64)
                                                            for a in (x, tx, T, m, mean_value))


def rfm_summary(events: Sequence[Event], end: datetime) -> RfmSummary:
    """The classic inputs from purchase events before `end`: days with purchases are transactions.

    As in Fader, Hardie & Lee: T counts the days from the first purchase to the last day of the
    period, t_x those to the last purchase; m is the mean value of the repeat transactions.
    """
    by_user: dict[str, dict[date, float]] = defaultdict(dict)
    for e in events:
        if e.event_type == "purchase" and e.epoch < end.timestamp():
            day = e.timestamp.astimezone(UTC).date()
            days = by_user[e.user_id]
            days[day] = days.get(day, 0.0) + e.price * e.quantity
    last_day = (end.astimezone(UTC) - DAY).date()
    users = sorted(by_user)
    x, tx, T, m, mean_value = [], [], [], [], []
    for user in users:
        days = sorted(by_user[user])
        values = [by_user[user][d] for d in days]
        x.append(len(days) - 1)
        tx.append((days[-1] - days[0]).days / 7)
        T.append((last_day - days[0]).days / 7)
        m.append(sum(values[1:]) / (len(values) - 1) if len(values) > 1 else 0.0)
        mean_value.append(sum(values) / len(values))
    return RfmSummary(users, x, tx, T, m, mean_value)


def check_bgnbd_sample(sample_path: str | os.PathLike[str]) -> dict[str, Any]:
    """BG/NBD fitted on the 1/10 sample, next to the parameters the paper reports for it, and its holdout total."""
    events = [e for e in parse_events(load_cdnow(sample_path)) if e.epoch < HOLDOUT_END.timestamp()]
    summary = rfm_summary(events, CALIBRATION_END)
    fitted = fit_bgnbd(summary.x, summary.tx, summary.T)
    deviation = max(abs(fitted[k] - v) / v for k, v in PAPER_BGNBD_SAMPLE.items())
    return {"customers": len(summary.users), "fitted": fitted, "paper": PAPER_BGNBD_SAMPLE,
            "max_relative_deviation": deviation, "holdout_totals": bgnbd_totals_backtest(events, (39,))[0]}


def bgnbd_totals_backtest(events: Sequence[Event], cutoff_weeks: Sequence[int] = (13, 20, 26, 39)) -> list[dict[str, Any]]:
    """BG/NBD fitted at cutoffs from the start of calibration, its total purchase days for the weeks up to
    the next period's end (calibration's for a cutoff inside it, the holdout's at 39 weeks) against what
    happened. Cutoffs inside calibration are all a forecaster may learn a totals correction from; if their
    errors and the holdout's differ in sign, no correction learnt there reaches the holdout's total."""
    rows = []
    for weeks in cutoff_weeks:
        cutoff = CALIBRATION_START + timedelta(weeks=weeks)
        end = CALIBRATION_END if cutoff < CALIBRATION_END else HOLDOUT_END
        summary = rfm_summary([e for e in events if e.epoch < cutoff.timestamp()], cutoff)
        later = rfm_summary([e for e in events if e.epoch < end.timestamp()], end)
        # Purchase days after the cutoff: those of the customers known at the cutoff.
        actual = np.array([later.x[later.index[u]] - summary.x[i] for i, u in enumerate(summary.users)])
        horizon = (end - cutoff).days / 7
        params = fit_bgnbd(summary.x, summary.tx, summary.T)
        predicted = float(bgnbd_expected(params, horizon, summary.x, summary.tx, summary.T).sum())
        rows.append({"cutoff": f"{cutoff - DAY:%Y-%m-%d}", "cutoff_weeks": weeks, "horizon_weeks": horizon,
                     "customers": len(summary.users), "predicted_transactions": predicted,
                     "actual_transactions": float(actual.sum()), "ratio": predicted / max(float(actual.sum()), 1.0)})
    return rows


def format_table(figures: dict[str, Any]) -> str:
    """The figures as a plain-text table with the goals under it."""
    p = figures["protocol"]
    names = {"tailor_ltv": "Tailor LTV (quoted)", "bgnbd_gamma_gamma": "BG/NBD + Gamma-Gamma",
             "naive_rate": "naive rate"}
    head = f"{'model':<24} {'MAE tx':>7} {'RMSE tx':>8} {'Spearman $':>10} {'top-10% $':>9} " \
           f"{'pred/actual tx':>15} {'pred/actual $':>22}"
    lines = [f"CDNOW {p['customers']:,} customers; calibration {p['calibration']}, holdout {p['holdout']} "
             f"({p['holdout_weeks']:g} weeks)", head, "-" * len(head)]
    for key, label in names.items():
        f = figures["models"][key]
        lines.append(f"{label:<24} {f['mae_transactions']:>7.3f} {f['rmse_transactions']:>8.3f} "
                     f"{f['spearman_spend']:>10.3f} {f['top_decile_revenue_share']:>9.3f} "
                     f"{f['predicted_transactions']:>7.0f}/{f['actual_transactions']:<7.0f}"
                     f"{f['predicted_spend']:>11,.0f}/{f['actual_spend']:<10,.0f}")
    b = figures["bgnbd_params"]
    lines.append(f"BG/NBD r={b['r']:.3f} alpha={b['alpha']:.3f} a={b['a']:.3f} b={b['b']:.3f}; "
                 f"Gamma-Gamma p={figures['gamma_gamma_params']['p']:.3f} q={figures['gamma_gamma_params']['q']:.3f} "
                 f"gamma={figures['gamma_gamma_params']['gamma']:.3f}")
    check = figures.get("bgnbd_sample_check")
    if check:
        f = check["fitted"]
        lines.append(f"BG/NBD on the 1/10 sample: r={f['r']:.3f} alpha={f['alpha']:.3f} a={f['a']:.3f} b={f['b']:.3f} "
                     f"(paper 0.243/4.414/0.793/2.426; max deviation {check['max_relative_deviation']:.2%}); "
                     f"its holdout total {check['holdout_totals']['predicted_transactions']:,.0f} purchase days "
                     f"against {check['holdout_totals']['actual_transactions']:,.0f} "
                     f"({check['holdout_totals']['ratio'] - 1:+.1%})")
    reference = figures.get("reference", {})
    labels = {"tailor_ltv_expected": "Tailor LTV, expectations (its totals)",
              "bgnbd_quoted": "BG/NBD + GG, quoted as Tailor quotes"}
    for key, label in labels.items():
        if key in reference:
            f = reference[key]
            lines.append(f"  for reference: {label}: MAE {f['mae_transactions']:.3f}, RMSE {f['rmse_transactions']:.3f}, "
                         f"Spearman $ {f['spearman_spend']:.3f}, top-10% $ {f['top_decile_revenue_share']:.3f}, "
                         f"predicted/actual tx {f['predicted_transactions']:.0f}/{f['actual_transactions']:.0f}, "
                         f"$ {f['predicted_spend']:,.0f}/{f['actual_spend']:,.0f}")
    backtest = figures.get("bgnbd_totals_backtest")
    if backtest:
        lines.append("BG/NBD's total purchase days, fitted at week N for the rest of the period: " + "; ".join(
            f"week {row['cutoff_weeks']} (+{row['horizon_weeks']:g} weeks) {row['ratio'] - 1:+.1%}" for row in backtest))
    for goal in figures["goals"]:
        lines.append(f"goal {'met ' if goal['met'] else 'MISSED'}  {goal['goal']}: {goal['measured']}")
    return "\n".join(lines)


# -- helpers --------------------------------------------------------------------------------------

def _goals(models: dict[str, dict[str, float]], expected: dict[str, float]) -> list[dict[str, Any]]:
    """The goals: per-customer figures from the quoted predictions, totals from the expectations."""
    ours, ref = models["tailor_ltv"], models["bgnbd_gamma_gamma"]
    mae_cut = 1 - GOALS["mae_below_bgnbd"]
    totals = (expected["transactions_total_ratio"], expected["spend_total_ratio"])
    return [
        {"goal": f"MAE <= {mae_cut:.2f} x BG/NBD+GG ({ref['mae_transactions'] * mae_cut:.3f})",
         "measured": f"{ours['mae_transactions']:.3f} ({ours['mae_transactions'] / ref['mae_transactions'] - 1:+.1%})",
         "met": ours["mae_transactions"] <= ref["mae_transactions"] * mae_cut},
        {"goal": f"Spearman of spend >= {GOALS['spearman_spend']:.2f}", "measured": f"{ours['spearman_spend']:.3f}",
         "met": ours["spearman_spend"] >= GOALS["spearman_spend"]},
        {"goal": f"top-decile revenue share > BG/NBD+GG ({ref['top_decile_revenue_share']:.3f})",
         "measured": f"{ours['top_decile_revenue_share']:.3f}",
         "met": ours["top_decile_revenue_share"] > ref["top_decile_revenue_share"]},
        {"goal": f"predicted totals (sums of expectations) within {GOALS['total_within']:.0%} of actual",
         "measured": f"transactions {totals[0] - 1:+.1%}, spend {totals[1] - 1:+.1%}",
         "met": all(abs(r - 1) <= GOALS["total_within"] for r in totals if not math.isnan(r))},
    ]


def _write_csv(path: Path, users: list[str], transactions: np.ndarray, spend: np.ndarray) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["customer_id", "pred_holdout_transactions", "pred_holdout_spend"])
        for user, t, s in sorted(zip(users, transactions, spend), key=lambda row: _natural(row[0])):
            writer.writerow([user.removeprefix("cdnow-"), f"{t:.6f}", f"{s:.4f}"])


def _natural(user: str) -> tuple[int, str]:
    """CDNOW customers in numeric order; any other id after them, by name."""
    tail = user.removeprefix("cdnow-")
    return (int(tail), "") if tail.isdigit() else (sys.maxsize, tail)


if __name__ == "__main__":
    sys.exit(main())
