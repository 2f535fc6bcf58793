"""`tailor train ltv`: train the LTV model on events (a file, Ingest's archive, CDNOW or the simulator) and publish it.

The training itself is tailor_lab.training.ltv, the code the scheduled TrainLtv function runs.

    tailor train ltv [--events FILE | --archive BUCKET | --cdnow FILE] [--as-of ISO] [--horizon-weeks 39]
                     [--out DIR] [--write-default] [--publish [--bucket B] [--endpoint-url URL]] [--json FILE]

The shipped default (--write-default; what RebuildLtv scores with while the registry has no LTV model) is trained
on the simulator: `tailor train ltv --shoppers 600 --days 240 --write-default`.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from tailor.archive import archived_events
from tailor.ltv.scoring import METADATA_KEY, MODEL_NAME
from tailor.models.registry import model_version
from tailor_lab import report_json
from tailor_lab.datasets import json_lines

from .ltv import parse_events, train_ltv
from .model_output import add_output_arguments, check_output_arguments, deliver, s3_blobs
from .onnx_export import with_metadata

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tailor train ltv", description=__doc__.split("\n\n")[0])
    data = parser.add_mutually_exclusive_group()
    data.add_argument("--events", type=Path, help="events as JSON lines (.jsonl or .jsonl.gz)")
    data.add_argument("--archive", metavar="BUCKET", help="the event archive in this S3 bucket (Ingest's archive/)")
    data.add_argument("--cdnow", type=Path, metavar="FILE", help="CDNOW_master.txt, replayed as purchase events")
    parser.add_argument("--shoppers", type=int, default=150, help="simulated shoppers, without another source (default 150)")
    parser.add_argument("--days", type=float, default=100.0, help="simulated days (default 100)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--as-of", help="train on events before this moment (ISO 8601; default: after the last event)")
    parser.add_argument("--horizon-weeks", type=float, default=39.0, help="the longest horizon it predicts (default 39)")
    add_output_arguments(parser)
    args = parser.parse_args(argv)
    check_output_arguments(parser, args)

    started = time.perf_counter()
    raw, source = _events(args)
    events = parse_events(raw)
    if not events:
        parser.error(f"no events in {source}")
    as_of = (datetime.fromisoformat(args.as_of.replace("Z", "+00:00")).timestamp() if args.as_of
             else events[-1].epoch + 1.0)
    trained = train_ltv(events, as_of, horizon_weeks=args.horizon_weeks)
    metadata = {**trained.metadata, "source": source}
    # The version names the graph with its metadata, and is then embedded in it too (a shipped default has no
    # registry to name it).
    metadata["version"] = model_version(with_metadata(trained.onnx, METADATA_KEY, metadata), metadata["trained_at"])
    onnx = with_metadata(trained.onnx, METADATA_KEY, metadata)
    report: dict[str, Any] = {"source": source, "events": len(events), "seconds": round(time.perf_counter() - started, 1),
                              **{k: trained.metadata[k] for k in ("as_of", "horizon_weeks", "label_weeks",
                                                                   "training_rows", "backtest", "correction_weights")}}
    published = deliver(args, MODEL_NAME, onnx, metadata).published
    report["version"] = published or metadata["version"]
    report["published"] = bool(published)
    print(_summary(report))
    if args.json:
        report_json.write(args.json, report)
    return 0


def _events(args: argparse.Namespace) -> tuple[Iterable[dict], str]:
    if args.events:
        return json_lines(args.events), f"events file {args.events}"
    if args.archive:
        return archived_events(s3_blobs(args, args.archive)), f"archive s3://{args.archive}"
    if args.cdnow:
        from tailor_lab.datasets import load_cdnow

        return load_cdnow(args.cdnow), f"CDNOW {args.cdnow}"
    from tailor_lab.simulator import simulate

    sim = simulate(shoppers=args.shoppers, days=args.days, seed=args.seed)
    return sim.events, f"simulator ({args.shoppers} shoppers, {args.days:g} days, seed {args.seed})"


def _summary(report: dict[str, Any]) -> str:
    lines = [f"LTV model trained on {report['events']:,} events ({report['source']}) as of {report['as_of']}, "
             f"horizon {report['horizon_weeks']:g} weeks, label windows {report['label_weeks']} weeks, "
             f"{report['training_rows']:,} training rows, {report['seconds']}s"]
    backtest = report["backtest"]
    if "skipped" in backtest:
        lines.append(f"backtest skipped: {backtest['skipped']}")
    else:
        lines.append(f"backtest over the last {backtest['weeks']:g} weeks: MAE {backtest['mae_transactions']:.3f}, "
                     f"Spearman of spend {backtest['spearman_spend']:.3f}, top-decile revenue share "
                     f"{backtest['top_decile_revenue_share']:.3f}, expected/actual spend "
                     f"{backtest['expected_spend_total_ratio']:.3f}")
        weights = report["correction_weights"]
        lines.append(f"the correction's share chosen on it: {weights['transactions']:g} of the purchase days "
                     f"(MAE by share {_by_share(weights['mae_by_weight'])}), {weights['spend']:g} of the spend "
                     f"(Spearman by share {_by_share(weights['spearman_by_weight'])}); the rest BG/NBD's")
    lines.append(f"{MODEL_NAME}:{report['version']}" + (" published (current)" if report["published"] else ""))
    return "\n".join(lines)


def _by_share(figures: dict[str, float]) -> str:
    return ", ".join(f"{share} {value:.3f}" for share, value in figures.items())


if __name__ == "__main__":
    sys.exit(main())
