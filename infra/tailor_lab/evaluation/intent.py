"""Measure the session intent classifier: on the simulator's ground truth, and on real sessions by proxy.

Simulator. A simulation with another seed than the training one (its shoppers, sessions and intent
paths are new) is folded event by event as Ingest folds it; after each event with a recorded
intent the model predicts that intent from the session's features. Reported: macro F1, accuracy,
per-intent F1, and calibration: expected calibration error of the top probability (15 equal-width
bins) and the multi-class Brier score. The baseline is the training data's intent shares (its
prediction is the most common intent): what a model must beat to know anything. The oracle is the
Bayes-optimal posterior of the intent given the events so far, filtered with the simulator's own
process and parameters (tailor_lab.evaluation.intent_oracle): what no model can beat; the JSON's
"oracle" holds its macro F1 (most probable intent, and the F1-optimal decision) and accuracy, and
those of the same filter blind to the shopper (`blind_macro_f1`: what the events alone tell). A model
with a forward filter (tailor.intent_filter) folds the sessions with it, and the filter's own posterior
is reported beside the model ("intent filter alone").

Real proxy. No public data set labels intent, so the real check is the one outcome intent should
foresee: whether a session ends in a purchase. Diginetica's item views joined with its purchases
(same session id): for every session with at least k views, the session state after its first k
views (purchase events left out) gives P(intent_to_purchase); AUC against "the session has a
purchase", for k = 1, 3, 5, with a 95% bootstrap interval over sessions. Diginetica carries no
dwell, scroll, cart or search events, so this tests how the model generalizes from view patterns
alone (timing, item and category spread); as a reference for the signal those features hold, a
logistic regression is refitted on Diginetica itself (sessions of its earlier half of days, tested
on the later half).

    tailor evaluate intent [--model DIR_OR_ONNX] [--shoppers 2000 --days 4 --seed 8]
                           [--diginetica DIR] [--k 1 3 5] [--json FILE]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from tailor.events import parse_event
from tailor.intent import INTENTS, IntentModel, intent_matrix
from tailor.intent_filter import IntentFilter
from tailor.models import default_model
from tailor.session import SessionState, fold_session
from tailor_lab import report_json
from tailor_lab.datasets import SHARED_DATA
from tailor_lab.training.intent_truth import evaluate_simulated, format_simulated

__all__ = ["evaluate_purchase_proxy", "format_proxy", "main"]

PROXY_KS = (1, 3, 5)
BOOTSTRAP = 500
DEFAULT_DIGINETICA = SHARED_DATA / "diginetica"


def evaluate_purchase_proxy(model: IntentModel, events: Iterable[dict], *, ks: Sequence[int] = PROXY_KS,
                            seed: int = 0) -> dict[str, Any]:
    """AUC of P(intent_to_purchase) after a session's first k views for "the session has a purchase"."""
    sessions: dict[str, list[dict]] = defaultdict(list)
    bought: set[str] = set()
    for raw in events:
        if raw["event_type"] == "purchase":
            bought.add(raw["session_id"])
        else:
            sessions[raw["session_id"]].append(raw)
    purchase = INTENTS.index("intent_to_purchase")
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {}
    for k in ks:
        ids = sorted(s for s, views in sessions.items() if len(views) >= k)
        states = [_fold(sessions[s][:k], model.filter) for s in ids]
        labels = np.array([s in bought for s in ids])
        if labels.all() or not labels.any():
            out[f"k={k}"] = {"sessions": len(ids), "purchasing": int(labels.sum()), "auc": None}
            continue
        X = intent_matrix(states)
        scores = model.predict(X)[:, purchase]
        days = np.array([states[i].started_at // 86400 for i in range(len(ids))])
        out[f"k={k}"] = {
            "sessions": len(ids),
            "purchasing": int(labels.sum()),
            "auc": roc_auc_score(labels, scores),
            "auc_95": _bootstrap_auc(scores, labels, rng),
            "refit_reference_auc": _refit_auc(X, labels, days),
        }
    return out


def format_proxy(proxy: dict[str, Any]) -> str:
    lines = ["purchase in the session from its first k views (Diginetica views + purchases)",
             f"{'k':>3} {'sessions':>9} {'purchasing':>11} {'AUC':>7} {'95% interval':>16} {'refit reference':>16}"]
    for key, m in proxy.items():
        if m["auc"] is None:
            lines.append(f"{key[2:]:>3} {m['sessions']:>9} {m['purchasing']:>11}   (one class only)")
            continue
        low, high = m["auc_95"]
        ref = m["refit_reference_auc"]
        lines.append(f"{key[2:]:>3} {m['sessions']:>9} {m['purchasing']:>11} {m['auc']:>7.4f} "
                     f"{f'{low:.3f}..{high:.3f}':>16} {'' if ref is None else f'{ref:.4f}':>16}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tailor evaluate intent", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="model.onnx, or a folder holding one (default: the shipped model)")
    parser.add_argument("--shoppers", type=int, default=2000, help="held-out simulated shoppers (default 2000)")
    parser.add_argument("--days", type=float, default=4.0, help="held-out simulated days (default 4)")
    parser.add_argument("--seed", type=int, default=8, help="held-out simulation seed (default 8; training uses 7)")
    parser.add_argument("--diginetica", type=Path, default=DEFAULT_DIGINETICA,
                        help="folder with train-item-views*.csv and train-purchases.csv (default: the shared data)")
    parser.add_argument("--k", type=int, nargs="+", default=list(PROXY_KS), help="first k views (default 1 3 5)")
    parser.add_argument("--json", type=Path, help="write the figures as JSON here")
    args = parser.parse_args(argv)

    from tailor_lab.datasets import load_diginetica

    from .intent_oracle import intent_posteriors, simulate_recorded

    started = time.perf_counter()
    model = _model(args.model)
    print(f"model {model.label}")
    sim, recorder = simulate_recorded(shoppers=args.shoppers, days=args.days, seed=args.seed)
    simulated = evaluate_simulated(model, sim.events, sim.truth, oracle=intent_posteriors(sim, recorder),
                                   blind_oracle=intent_posteriors(sim, recorder, blind=True))
    simulated["data"] = f"simulator ({args.shoppers} shoppers, {args.days:g} days, seed {args.seed})"
    print(f"{simulated['data']}")
    print(format_simulated(simulated))
    report: dict[str, Any] = {"model": model.label, "simulated": simulated, "purchase_proxy": None}
    views = next(iter(sorted(args.diginetica.glob("train-item-views*.csv"))), None) if args.diginetica.is_dir() else None
    purchases = args.diginetica / "train-purchases.csv"
    if views is None or not purchases.exists():
        print(f"\n(no Diginetica views and purchases in {args.diginetica}: the real proxy is skipped)")
    else:
        categories = args.diginetica / "product-categories.csv"
        events = load_diginetica(views, purchases, categories if categories.exists() else None)
        proxy = evaluate_purchase_proxy(model, events, ks=args.k)
        report["purchase_proxy"] = {"data": f"diginetica {views.name} + {purchases.name}", **proxy}
        print()
        print(format_proxy(proxy))
    report["seconds"] = round(time.perf_counter() - started, 1)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        report_json.write(args.json, report)
    return 0


# -- helpers ----------------------------------------------------------------------------------------

def _fold(events: Sequence[dict], intent_filter: IntentFilter | None) -> SessionState:
    state = None
    for raw in events:
        state = fold_session(state, parse_event(raw), ttl_seconds=0, intent_filter=intent_filter)
    return state


def _bootstrap_auc(scores: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> list[float]:
    values = []
    for _ in range(BOOTSTRAP):
        pick = rng.integers(0, len(scores), len(scores))
        if labels[pick].all() or not labels[pick].any():
            continue
        values.append(roc_auc_score(labels[pick], scores[pick]))
    return [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))]


def _refit_auc(X: np.ndarray, labels: np.ndarray, days: np.ndarray) -> float | None:
    """AUC of a logistic regression on the same features fitted on the earlier half of the days."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    split = np.median(days)
    train, test = days <= split, days > split
    if len(set(labels[train])) < 2 or len(set(labels[test])) < 2:
        return None
    fitted = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X[train], labels[train])
    return roc_auc_score(labels[test], fitted.predict_proba(X[test])[:, 1])


def _model(path: Path | None) -> IntentModel:
    if path is None:
        return IntentModel.from_stored(default_model("intent"))
    onnx = path / "model.onnx" if path.is_dir() else path
    return IntentModel(onnx.read_bytes())


if __name__ == "__main__":
    sys.exit(main())
