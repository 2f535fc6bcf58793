"""`tailor experiments create|start|stop|list|shoppers|report`: experiments through the API of the running stack (or, with
--api and --key, of a deployed one), as a shop would run them."""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from .common import running, say, shown

__all__ = ["NAME", "add_parser", "parse_variant"]

NAME = "experiments"


def add_parser(commands: Any) -> None:
    group = commands.add_parser(NAME, help="create, start, stop, list and report experiments of feed strategies")
    group.add_argument("--api", help="the API's base URL (default: the running local stack's)")
    group.add_argument("--key", help="its API key (default: the running local stack's)")
    verbs = group.add_subparsers(required=True, metavar="VERB")

    create = verbs.add_parser("create", help="define an experiment (a draft until started)")
    create.add_argument("--id", dest="experiment_id", help="its id (default: one is made up)")
    create.add_argument("--name", help="what it tests, in words")
    create.add_argument("--surface", default="feed", choices=("feed", "search", "related"))
    create.add_argument("--variant", action="append", type=parse_variant, metavar="NAME=STRATEGY[:SHARE]",
                        help="a variant and its strategy, e.g. control=baseline:0.5 (the first is the control; "
                             "shares default to equal)")
    create.add_argument("--design", default="ab", choices=("ab", "interleaving"),
                        help="ab: each shopper sees one variant; interleaving: every shopper the team draft of two "
                             "variants' rankings, each click credited by how much higher one ranked the item")
    create.add_argument("--holdout", type=float, default=0.0, help="share of shoppers held out (served the default)")
    create.add_argument("--traffic", type=float, default=1.0, help="share of the layer's shoppers it takes")
    create.add_argument("--layer", default="", help="experiments of one surface and layer never share a shopper")
    create.add_argument("--days", type=float, help="how long it runs (default 14)")
    create.add_argument("--start", help="when it starts (ISO 8601; default now)")
    create.add_argument("--end", help="when it ends (ISO 8601; instead of --days)")
    create.add_argument("--planned-units", type=int,
                        help="shoppers it is planned to expose: the report's confidence sequences are tightest there "
                             "(default 5000)")
    create.add_argument("--file", type=Path, help="the whole definition as JSON (POST /experiments' body)")
    create.add_argument("--start-now", action="store_true", help="start it right away")
    create.set_defaults(command=_create)

    for verb, help_text in (("start", "start a draft"), ("stop", "stop a running experiment, for good")):
        sub = verbs.add_parser(verb, help=help_text)
        sub.add_argument("experiment_id")
        if verb == "stop":
            sub.add_argument("--yes", action="store_true",
                             help="stop it without asking (a stopped experiment cannot be started again)")
        sub.set_defaults(command=_change, verb=verb)

    listed = verbs.add_parser("list", help="every experiment, and the strategies they may serve")
    listed.add_argument("--json", action="store_true", help="the API's answer as it is")
    listed.set_defaults(command=_list)

    visit = verbs.add_parser("shoppers", help="simulated shoppers visit the feed, act on it and send their events")
    visit.add_argument("--shoppers", type=int, default=200, help="simulated shoppers (200)")
    visit.add_argument("--visits", type=int, default=2, help="feed visits each (2)")
    visit.add_argument("--n", type=int, default=20, help="items per feed (20)")
    visit.add_argument("--seed", type=int, default=7, help="simulation seed (7: the catalog `make run` replays)")
    visit.set_defaults(command=_shoppers)

    report = verbs.add_parser("report", help="an experiment's report as a table, and as an HTML page with plots")
    report.add_argument("experiment_id")
    report.add_argument("--html", type=Path, help="where to write the page (default: experiment-<id>.html here)")
    report.add_argument("--json", type=Path, help="also write the report's JSON here")
    report.set_defaults(command=_report)


def parse_variant(text: str) -> dict[str, Any]:
    """NAME=STRATEGY[:SHARE] as a variant of POST /experiments' body."""
    name, sep, rest = text.partition("=")
    strategy, _, share = rest.partition(":")
    if not sep or not name or not strategy:
        raise argparse.ArgumentTypeError(f"{text!r}: give NAME=STRATEGY or NAME=STRATEGY:SHARE")
    variant: dict[str, Any] = {"name": name, "strategy": strategy}
    if share:
        try:
            variant["share"] = float(share)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: the share must be a number") from None
    return variant


def _create(args: argparse.Namespace) -> int:
    if args.file is not None:
        body = json.loads(args.file.read_text(encoding="utf-8"))
    else:
        variants = args.variant or [{"name": "control", "strategy": "baseline"}, {"name": "treatment",
                                                                                "strategy": "default"}]
        if all("share" not in v for v in variants):
            variants = [{**v, "share": 1.0 / len(variants)} for v in variants]
        body = {"surface": args.surface, "variants": variants, "holdout": args.holdout, "traffic": args.traffic,
                "layer": args.layer, "design": args.design}
        for name in ("experiment_id", "name", "days", "start", "end", "planned_units"):
            if getattr(args, name) is not None:
                body[name] = getattr(args, name)
    status, created = _call(args, "POST", "/experiments", body)
    if status != 201:
        return _refused(status, created)
    say(f"Created {'interleaving ' if created.get('design') == 'interleaving' else ''}experiment "
        f"{created['experiment_id']} ({created['surface']}): "
        + ", ".join(f"{v['name']}={v['strategy']} {v['share']:.0%}" for v in created["variants"])
        + f"; {created['start']} to {created['end']}.")
    if args.start_now:
        args.experiment_id, args.verb = created["experiment_id"], "start"
        return _change(args)
    say(f"Start it with `tailor experiments start {created['experiment_id']}`.")
    return 0


def _change(args: argparse.Namespace) -> int:
    if args.verb == "stop" and not getattr(args, "yes", False):
        # Final: a stopped experiment's shoppers go back to the default and it cannot be started again.
        if sys.stdin is None or not sys.stdin.isatty():
            say(f"tailor: stopping {args.experiment_id} is final; give --yes to stop it without being asked")
            return 2
        # Asked on stderr, where the command's messages go (its stdout may be a file), and read a line: an end of
        # input is a no.
        print(f"Stop experiment {args.experiment_id} for good? It cannot be started again. [y/N] ", end="",
              file=sys.stderr, flush=True)
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            say(f"Experiment {args.experiment_id} left as it was.")
            return 1
    status, changed = _call(args, "POST", f"/experiments/{_quoted(args.experiment_id)}/{args.verb}", {})
    if status != 200:
        return _refused(status, changed)
    say(f"Experiment {changed['experiment_id']} is {changed['status']}"
        + (f" (slot {changed['slot'][0]:g}-{changed['slot'][1]:g} of layer {changed['surface']}/"
           f"{changed['layer'] or 'main'})." if changed["status"] == "running" and changed.get("slot") else "."))
    return 0


def _list(args: argparse.Namespace) -> int:
    status, found = _call(args, "GET", "/experiments")
    if status != 200:
        return _refused(status, found)
    if args.json:
        print(json.dumps(found, indent=2))
        return 0
    print(f"{'experiment':<24} {'status':<8} {'surface':<8} {'start':<21} {'end':<21} variants")
    for e in found["experiments"]:
        variants = (" vs ".join(f"{v['name']}={v['strategy']}" for v in e["variants"]) + " interleaved"
                    if e.get("design") == "interleaving" else
                    ", ".join(f"{v['name']}={v['strategy']} {v['share']:.0%}" for v in e["variants"]))
        print(f"{e['experiment_id']:<24} {e['status']:<8} {e['surface']:<8} {e['start']:<21} {e['end']:<21} "
              f"{variants}")
    print("\nstrategies: " + ", ".join(sorted(found.get("strategies", {}))))
    return 0


def _shoppers(args: argparse.Namespace) -> int:
    from tailor_lab.simulator.api_visits import visit_api

    base, key = _endpoint(args)
    done = visit_api(base, key, shoppers=args.shoppers, visits=args.visits, n=args.n, seed=args.seed, echo=say)
    say(f"{done.feeds} feeds served ({', '.join(f'{k}: {v}' for k, v in sorted(done.feed_ids.items()))}); "
        f"{done.events} events sent, {done.refused} refused; Ingest applies them within seconds and the merge adds "
        "them to the experiments' statistics within a minute or two.")
    return 0 if done.refused == 0 else 1


def _report(args: argparse.Namespace) -> int:
    from tailor.experiments.pages import interleaving_rows, report_html, report_rows

    status, report = _call(args, "GET", f"/experiments/{_quoted(args.experiment_id)}/report")
    if status != 200:
        return _refused(status, report)
    days = f"days {report['days'][0] if report['days'] else '-'} to {report['days'][-1] if report['days'] else '-'}"
    if report.get("design") == "interleaving":
        print(f"{report.get('name')} ({report['experiment_id']}), {report.get('status')}, interleaving, {days}")
        for row in interleaving_rows(report):
            print(f"ranker A {row['ranker A']}, ranker B {row['ranker B']}: {row['shoppers']} shoppers, "
                  f"{_num(row['clicks'])} clicks, CTR {_num(row['ctr'])}")
            print(f"mean rank credit per shopper (> 0 prefers A) {_num(row['mean_credit'])}, 95% interval "
                  f"{_plain(row['ci'])}, confidence sequence {_plain(row['cs'])}, p = {_num(row['p_value'])}; "
                  f"preferred: {row['preferred'] or 'neither yet'}")
        shows = "the preference, its credit over time with its confidence sequence, shoppers"
    else:
        print(f"{report.get('name')} ({report['experiment_id']}), {report.get('status')}, control variant "
              f"{report['control']}, {days}")
        print("shoppers: " + ", ".join(f"{name} {count}" for name, count in report["units"].items())
              + f"; sample-ratio mismatch p = {_num(report['srm']['p_value'])}"
              + (" FLAGGED" if report["srm"]["flagged"] else ""))
        print(f"\n{'metric':<11} {'variant':<12} {'control':>10} {'variant':>10} {'lift':>8} {'95% interval':>20} "
              f"{'conf. sequence':>20} {'p':>7}")
        for row in report_rows(report):
            print(f"{row['metric']:<11} {row['variant']:<12} {_num(row['control']):>10} {_num(row['treatment']):>10} "
                  f"{_pct(row['lift']):>8} {_range(row['lift_ci']):>20} {_range(row['lift_cs']):>20} "
                  f"{_num(row['p_value']):>7}")
        shows = "the table, lift over time with its confidence sequence, exposures per variant"
    page = args.html or Path(f"experiment-{args.experiment_id}.html")
    page.write_text(report_html(report), encoding="utf-8")
    say(f"\nWrote {shown(page)} ({shows}).")
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2), encoding="utf-8")
        say(f"Wrote {shown(args.json)}.")
    return 0


# -- helpers ---------------------------------------------------------------------------------------------------


def _call(args: argparse.Namespace, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """The API's status and JSON answer."""
    base, key = _endpoint(args)
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base.rstrip("/") + path, data=data, method=method,
                                     headers={"x-api-key": key, "content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as error:
        text = error.read()
        try:
            return error.code, json.loads(text)
        except json.JSONDecodeError:
            return error.code, {"message": text.decode(errors="replace")}


def _endpoint(args: argparse.Namespace) -> tuple[str, str]:
    """The API's base URL and key: given, or the running local stack's."""
    base, key = args.api, args.key
    if base is None or key is None:
        handle = running(args)
        if not handle.api_url:
            raise OSError("the running stack serves no API")
        base, key = base or handle.api_url, key or handle.api_key
    return base, key


def _refused(status: int, answer: Any) -> int:
    message = answer.get("message") if isinstance(answer, dict) else answer
    say(f"tailor: the API answered {status}: {message}")
    return 1


def _quoted(text: str) -> str:
    return urllib.request.quote(text, safe="")


def _num(value: Any) -> str:
    return "-" if not isinstance(value, int | float) else f"{value:.4g}"


def _pct(value: Any) -> str:
    return "-" if not isinstance(value, int | float) else f"{value:+.2%}"


def _plain(bounds: Any) -> str:
    if not bounds or not all(isinstance(b, int | float) for b in bounds):
        return "-"
    return f"[{bounds[0]:+.4g}, {bounds[1]:+.4g}]"


def _range(bounds: Any) -> str:
    if not bounds or not all(isinstance(b, int | float) for b in bounds):
        return "-"
    return f"[{bounds[0]:+.1%}, {bounds[1]:+.1%}]"
