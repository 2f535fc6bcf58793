"""Is Tailor's next-item ranking above V-SKNN in small shops too? Shops cut from the public session logs.

    python -m tailor_lab.evaluation.small_shops [--json F]     # a few minutes on two cores

A shop is a run of consecutive sessions of a public log's training part (YooChoose's 100k sample `train_tr.txt`,
Diginetica's SR-GNN `train.txt`; never their test files), in the order they began: its first 85% are its training
sessions, the rest its test, with session-rec's test filter. Each shop runs `tailor evaluate next-item`'s protocol
(evaluate_next_item: Tailor with its item vectors trained on the shop's training sessions, V-SKNN, in both modes).
The goal it checks is issue 18's for other shops' sessions: never below V-SKNN on either metric. A shop of a few
thousand sessions has few repeat co-occurrences to learn from, where a neighbourhood method holds up best.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tailor_lab import report_json
from tailor_lab.datasets import SHARED_DATA, load_yoochoose
from tailor_lab.evaluation.nextitem import (
    BLEND_LIVE,
    BLEND_TRAIN_ONLY,
    VSKNN_LIVE,
    NextItemSplit,
    evaluate_next_item,
    session_rec_split,
)

__all__ = ["SHOPS", "Shop", "cut_shop", "main", "measure"]

TEST_SHARE = 0.15


@dataclass(frozen=True)
class Shop:
    name: str
    log: str  # a session-rec file under the data directory
    first: int  # its first session's place among the log's sessions, in the order they began
    sessions: int


# Two small shops of each log and a larger one of Diginetica, from different stretches of the logs.
SHOPS = (Shop("yoochoose 4k a", "yoochoose-100k/train_tr.txt", 0, 4000),
         Shop("yoochoose 4k b", "yoochoose-100k/train_tr.txt", 8000, 4000),
         Shop("diginetica 5k a", "diginetica-srgnn/train.txt", 20000, 5000),
         Shop("diginetica 5k b", "diginetica-srgnn/train.txt", 90000, 5000),
         Shop("diginetica 20k", "diginetica-srgnn/train.txt", 140000, 20000))


def cut_shop(events: Sequence[dict], shop: Shop, test_share: float = TEST_SHARE) -> NextItemSplit:
    """The shop's split of a log's events (load_yoochoose's, in time order): its sessions, the last `test_share` of
    them (by when they began) the test."""
    begun: dict[str, int] = {}
    for event in events:
        begun.setdefault(event["session_id"], len(begun))
    chosen = [s for s, place in begun.items() if shop.first <= place < shop.first + shop.sessions]
    if len(chosen) < 2:
        raise ValueError(f"{shop.name}: the log has {len(begun)} sessions, none from session {shop.first}")
    train_sessions = set(chosen[:max(1, round(len(chosen) * (1.0 - test_share)))])
    test_sessions = set(chosen) - train_sessions
    return session_rec_split(f"{shop.name} ({len(train_sessions)} + {len(test_sessions)} sessions)",
                             [e for e in events if e["session_id"] in train_sessions],
                             [e for e in events if e["session_id"] in test_sessions])


def measure(data: Path = SHARED_DATA, shops: Sequence[Shop] = SHOPS,
            echo: Callable[[str], None] = lambda _: None) -> list[dict[str, Any]]:
    """Each shop's figures: evaluate_next_item's, per shop."""
    logs: dict[str, list[dict]] = {}
    rows = []
    for shop in shops:
        if shop.log not in logs:
            logs[shop.log] = list(load_yoochoose(data / shop.log))
        split = cut_shop(logs[shop.log], shop)
        figures = evaluate_next_item(split)
        rows.append({"shop": shop.name, "log": shop.log, "first_session": shop.first, "sessions": shop.sessions,
                     **figures})
        echo(_line(rows[-1]))
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tailor_lab.evaluation.small_shops",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=SHARED_DATA, help="the data directory (default: %(default)s)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    missing = sorted({shop.log for shop in SHOPS if not (args.data / shop.log).exists()})
    if missing:
        print(f"small_shops: no {', '.join(missing)} under {args.data}", file=sys.stderr)
        return 2
    print(HEADER)
    rows = measure(args.data, echo=print)
    below = [row["shop"] for row in rows for name in _VERSUS if any(
        row["relative"][name][m]["relative"] < 0 for m in ("hr", "mrr"))]
    print("every shop above V-SKNN on both metrics in both modes" if not below else
          f"below V-SKNN: {', '.join(dict.fromkeys(below))}")
    if args.json:
        report_json.write(args.json, {"shops": rows})
    return 0


# -- helpers --------------------------------------------------------------------------------------

_VERSUS = (f"{BLEND_TRAIN_ONLY} vs V-SKNN", f"{BLEND_LIVE} vs {VSKNN_LIVE}")
HEADER = ("shop               points   V-SKNN HR / MRR    train-only vs V-SKNN: HR, MRR [95%]"
          "                   live vs V-SKNN given the live events: HR, MRR [95%]")


def _line(row: dict[str, Any]) -> str:
    vsknn = row["methods"]["V-SKNN"]
    parts = []
    for name in _VERSUS:
        figures = row["relative"][name]
        parts.append(", ".join(f"{figures[m]['relative']:+.1%} [{figures[m]['low']:+.1%}, {figures[m]['high']:+.1%}]"
                               for m in ("hr", "mrr")))
    return (f"{row['shop']:<18} {row['test']['points']:>6}   {vsknn['hr']:.4f} / {vsknn['mrr']:.4f}   "
            f"{parts[0]:<40}   {parts[1]}")


if __name__ == "__main__":
    sys.exit(main())
