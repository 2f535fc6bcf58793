"""Experiments as a person reads them: a report's table and plots as one self-contained HTML page (inline SVG, no
script, nothing fetched: deployments may be offline), and the console that lists experiments beside it.

The console is a page anyone can open (a browser sends no API key) that asks for the key once, keeps it for the tab,
and fetches its view (the list and the chosen report, which need the key like every route) with it.

Plots: per metric and variant, the cumulative relative lift over the days with its always-valid confidence sequence
(the band a shop may look at daily) and its fixed-horizon 95% interval; and the shoppers exposed per variant. An
interleaving experiment's page shows its shoppers' mean credit over the days likewise.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import quote

__all__ = ["KEY_STORAGE", "console_page", "console_view", "interleaving_rows", "report_html", "report_rows"]

WIDTH, HEIGHT, PAD, LEFT = 640, 220, 36, 72
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#7f7f7f")
STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222;max-width:1100px}
table{border-collapse:collapse;margin:.5rem 0 1rem}td,th{border:1px solid #ccc;padding:.25rem .5rem;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}.flag{color:#b00;font-weight:bold}
.ok{color:#070}figure{margin:.5rem 0 1.2rem}figcaption{font-size:.9rem;color:#555}svg{background:#fff}
nav a{margin-right:.8rem}
"""


def report_rows(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per metric and treatment: the control's and the treatment's values, the lift with its 95% interval and
    confidence sequence, the p-value (adjusted past two variants). What the CLI prints and the page shows."""
    rows = []
    control = report.get("control")
    for metric, found in (report.get("metrics") or {}).items():
        values = found.get("values") or {}
        for variant, comparison in (found.get("comparisons") or {}).items():
            rows.append({
                "metric": metric, "variant": variant,
                "control": _value(values.get(control)), "treatment": _value(values.get(variant)),
                "lift": comparison.get("relative"), "lift_ci": comparison.get("relative_ci"),
                "lift_cs": comparison.get("relative_cs"),
                "p_value": comparison.get("p_value_adjusted", comparison.get("p_value")),
            })
    return rows


def report_html(report: Mapping[str, Any], *, standalone: bool = True) -> str:
    """The report as HTML: a whole page, or (standalone False) the section the console embeds."""
    name = report.get("name") or report.get("experiment_id")
    if report.get("design") == "interleaving":
        body = _interleaving_html(report)
        return body if not standalone else _page(f"Experiment {name}", body)
    srm = report.get("srm") or {}
    parts = [f"<section class='report' id='report-{_e(report.get('experiment_id'))}'>",
             f"<h2>{_e(name)}</h2>",
             f"<p>Experiment <code>{_e(report.get('experiment_id'))}</code> on {_e(report.get('surface', 'feed'))}, "
             f"{_e(report.get('status'))}, {_e(report.get('start'))} to {_e(report.get('end'))}; control "
             f"<b>{_e(report.get('control'))}</b>; report as of {_e(report.get('as_of', ''))}.</p>",
             _units_table(report),
             "<p>Sample-ratio mismatch: " + (
                 f"<span class='flag'>flagged</span> (p = {_num(srm.get('p_value'))})" if srm.get("flagged")
                 else f"<span class='ok'>none</span> (p = {_num(srm.get('p_value'))})") + "</p>",
             "<h3>Metrics</h3>", _metrics_table(report)]
    if report.get("correction"):
        parts.append(f"<p>More than two variants: {_e(report['correction'])}.</p>")
    parts.append("<h3>Exposures per variant</h3>")
    parts.append(_figure(exposures_svg(report), "Shoppers exposed so far, per variant, by day"))
    parts.append("<h3>Cumulative lift over time</h3>")
    for metric, found in (report.get("metrics") or {}).items():
        for variant, points in (found.get("daily") or {}).items():
            parts.append(_figure(lift_svg(points), f"{metric}: relative lift of {variant} over "
                                                   f"{report.get('control')}, with its confidence sequence (light "
                                                   "band, valid at every daily look) and 95% interval (dark)",
                                 f"lift-{metric}-{variant}"))
    parts.append("</section>")
    body = "\n".join(parts)
    if not standalone:
        return body
    return _page(f"Experiment {name}", body)


KEY_STORAGE = "tailor-api-key"  # where the console keeps the key, in the tab's session storage


def console_page(base: str = "") -> str:
    """The console's page: a form for the API key (also taken once from the address's #key=...) and the view,
    fetched with the key from `{base}/console/view` with the page's own query (?experiment=ID)."""
    body = f"""<h1>Tailor experiments</h1>
<form id='key-form' hidden><label>API key <input name='key' type='password' autocomplete='off' required></label>
<button>Show</button></form>
<main id='console'><p>Loading ...</p></main>
<script>
const base = {json.dumps(base)}, stored = {json.dumps(KEY_STORAGE)};
const form = document.getElementById('key-form'), view = document.getElementById('console');
function key() {{
  const given = /(?:^#|&)key=([^&]+)/.exec(location.hash);
  if (given) {{
    sessionStorage.setItem(stored, decodeURIComponent(given[1]));
    history.replaceState(null, '', location.pathname + location.search);  // not left in the address or history
  }}
  return sessionStorage.getItem(stored);
}}
async function show() {{
  const k = key();
  if (!k) {{ form.hidden = false; view.innerHTML = "<p id='no-key'>Enter the API key to see the experiments.</p>"; return; }}
  const answer = await fetch(base + '/console/view' + location.search, {{headers: {{'x-api-key': k}}}});
  if (answer.status === 403) {{
    sessionStorage.removeItem(stored);
    form.elements.key.value = '';
    form.hidden = false;
    view.innerHTML = "<p id='refused'>The API refused that key: enter another.</p>";
    return;
  }}
  form.hidden = true;
  view.innerHTML = answer.ok ? await answer.text() : `<p id='failed'>The API answered ${{answer.status}}.</p>`;
}}
form.addEventListener('submit', event => {{
  event.preventDefault();
  sessionStorage.setItem(stored, form.elements.key.value);
  show();
}});
show();
</script>"""
    return _page("Tailor experiments", body)


def console_view(experiments: Sequence[Mapping[str, Any]], report: Mapping[str, Any] | None, *,
                 selected: str | None = None, base: str = "") -> str:
    """What the console shows (an HTML fragment): every experiment with its status, surface, variants and dates,
    each linking to its report, and the selected experiment's report with its plots (None: there is no such
    experiment)."""
    rows = ["<table id='experiments'><tr><th>experiment</th><th>name</th><th>surface</th><th>status</th>"
            "<th>variants</th><th>start</th><th>end</th></tr>"]
    for e in experiments:
        link = f"{base}/console?experiment={quote(str(e['experiment_id']))}"
        if e.get("design") == "interleaving":
            variants = " vs ".join(f"{v['name']} ({v['strategy']})" for v in e.get("variants", [])) + ", interleaved"
        else:
            variants = ", ".join(f"{v['name']} ({v['strategy']}, {float(v['share']):.0%})"
                                 for v in e.get("variants", []))
        rows.append(f"<tr><td><a href='{_e(link)}'>{_e(e['experiment_id'])}</a></td><td>{_e(e.get('name'))}</td>"
                    f"<td>{_e(e.get('surface'))}</td><td class='status'>{_e(e.get('status'))}</td>"
                    f"<td>{_e(variants)}</td><td>{_e(e.get('start'))}</td><td>{_e(e.get('end'))}</td></tr>")
    rows.append("</table>")
    if not experiments:
        rows = ["<p>No experiments yet: create one with <code>tailor experiments create</code> or POST /experiments."
                "</p>"]
    body = list(rows)
    if selected is not None:
        body.append(report_html(report, standalone=False) if report is not None else
                    f"<p id='no-report'>No experiment <code>{_e(selected)}</code>.</p>")
    return "\n".join(body)


def lift_svg(points: Sequence[Mapping[str, Any]], key: str = "relative") -> str:
    """The cumulative relative lift by day (or another estimate, `key`, with `key`_cs and `key`_ci), its confidence
    sequence and its 95% interval as bands."""
    percent = key == "relative"
    usable = [p for p in points if p.get(key) is not None]
    if not usable:
        return _empty("no estimate yet: too few shoppers exposed, or no event of this metric")
    xs = list(range(len(usable)))
    lows = [b for p in usable for b in (p.get(f"{key}_cs") or [p[key]] * 2) if _finite(b)]
    values = [p[key] for p in usable] + lows + [0.0]
    low, high = min(values), max(values)
    if high - low < 1e-9:
        low, high = low - 0.05, high + 0.05
    scale = _Scale(len(xs), low, high)
    parts = [_axes(scale, [p["day"] for p in usable], percent=percent, signed=not percent)]
    for suffix, opacity, width in (("cs", 0.18, 14), ("ci", 0.35, 6)):
        band_key, name = f"{key}_{suffix}", f"relative_{suffix}"  # the class names the plots have always had
        band = [(i, p.get(band_key)) for i, p in zip(xs, usable) if p.get(band_key) and all(map(_finite, p[band_key]))]
        if len(band) > 1:
            upper = [scale.point(i, b[1]) for i, b in band]
            lower = [scale.point(i, b[0]) for i, b in reversed(band)]
            parts.append(f"<polygon class='{name}' points='{_points(upper + lower)}' fill='#1f77b4' "
                         f"fill-opacity='{opacity}'/>")
        for i, (low_end, high_end) in ((i, b) for i, b in band[:1] if len(band) == 1):
            (x, y1), (_, y2) = scale.point(i, low_end), scale.point(i, high_end)
            parts.append(f"<line class='{name}' x1='{x:.1f}' y1='{y1:.1f}' x2='{x:.1f}' y2='{y2:.1f}' "
                         f"stroke='#1f77b4' stroke-opacity='{opacity}' stroke-width='{width}'/>")
    line = [scale.point(i, p[key]) for i, p in zip(xs, usable)]
    parts.append(f"<polyline class='lift' points='{_points(line)}' fill='none' stroke='#1f77b4' stroke-width='2'/>")
    parts += [f"<circle cx='{x:.1f}' cy='{y:.1f}' r='3' fill='#1f77b4'/>" for x, y in line]
    return _svg(parts)


def exposures_svg(report: Mapping[str, Any]) -> str:
    """The shoppers exposed so far per variant, by day (cumulative)."""
    days = report.get("days") or []
    units = (report.get("exposures") or {}).get("units") or {}
    if not days or not units:
        return _empty("no shopper exposed yet")
    series = {name: _cumulative(values) for name, values in units.items()}
    high = max(max(values, default=0) for values in series.values()) or 1
    scale = _Scale(len(days), 0, high)
    parts = [_axes(scale, days, percent=False)]
    for k, ((name, values), colour) in enumerate(zip(series.items(), COLOURS)):
        line = [scale.point(i, v) for i, v in enumerate(values)]
        parts.append(f"<polyline class='exposures' data-variant='{_e(name)}' points='{_points(line)}' fill='none' "
                     f"stroke='{colour}' stroke-width='2'/>")
        parts += [f"<circle cx='{x:.1f}' cy='{y:.1f}' r='3' fill='{colour}'/>" for x, y in line]
        # The variants' names in a column at the top right, each in its line's colour, with its count so far.
        parts.append(f"<text x='{WIDTH - 8}' y='{14 + 13 * k}' font-size='11' text-anchor='end' fill='{colour}'>"
                     f"{_e(name)}: {values[-1]:,}</text>")
    return _svg(parts)


def interleaving_rows(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """An interleaving experiment's preference as rows: what the CLI prints and the page shows (empty for an A/B
    test's report)."""
    found = report.get("interleaving")
    if not found:
        return []
    variants = report.get("variants") or ["A", "B"]
    strategies = report.get("strategies") or {}
    ctr = (found.get("ctr") or {}).get("value")
    return [{"ranker A": f"{variants[0]} ({strategies.get(variants[0], '')})",
             "ranker B": f"{variants[1]} ({strategies.get(variants[1], '')})", "shoppers": found.get("units"),
             "clicks": found.get("clicks"), "ctr": ctr, "mean_credit": found.get("mean"),
             "ci": found.get("mean_ci"), "cs": found.get("mean_cs"), "p_value": found.get("p_value"),
             "preferred": found.get("preferred")}]


# -- helpers ---------------------------------------------------------------------------------------------------


def _interleaving_html(report: Mapping[str, Any]) -> str:
    name = report.get("name") or report.get("experiment_id")
    found = report.get("interleaving") or {}
    rows = ["<table class='interleaving'><tr><th>ranker A</th><th>ranker B</th><th>shoppers</th><th>clicks</th>"
            "<th>CTR</th><th>mean rank credit (&gt; 0: A)</th><th>95% interval</th><th>confidence sequence</th>"
            "<th>p</th><th>preferred</th></tr>"]
    for row in interleaving_rows(report):
        rows.append(f"<tr><td>{_e(row['ranker A'])}</td><td>{_e(row['ranker B'])}</td><td>{_e(row['shoppers'])}</td>"
                    f"<td>{_fixed(row['clicks'])}</td><td>{_num(row['ctr'])}</td><td>{_num(row['mean_credit'])}</td>"
                    f"<td>{_plain_range(row['ci'])}</td><td>{_plain_range(row['cs'])}</td>"
                    f"<td>{_num(row['p_value'])}</td><td class='preferred'>{_e(row['preferred'] or 'neither yet')}"
                    "</td></tr>")
    parts = [f"<section class='report' id='report-{_e(report.get('experiment_id'))}'>", f"<h2>{_e(name)}</h2>",
             f"<p>Interleaving experiment <code>{_e(report.get('experiment_id'))}</code> on "
             f"{_e(report.get('surface', 'feed'))}, {_e(report.get('status'))}, {_e(report.get('start'))} to "
             f"{_e(report.get('end'))}: every shopper in it sees the team draft of both rankers' lists; a click "
             "earns the clicked item's rank in B's list minus its rank in A's, less the slot's expected difference. "
             f"Report as of {_e(report.get('as_of', ''))}.</p>",
             "<h3>Preference</h3>", "".join(rows) + "</table>",
             "<h3>Shoppers in the experiment</h3>",
             _figure(exposures_svg(report), "Shoppers shown an interleaved list so far, by day"),
             "<h3>Mean credit over time</h3>",
             _figure(lift_svg(found.get("daily") or [], key="mean"),
                     "The shoppers' mean rank credit, cumulative, with its confidence sequence (light band, valid "
                     "at every daily look) and 95% interval (dark): above 0 prefers A",
                     "credit-interleaved"),
             "</section>"]
    return "\n".join(parts)


def _plain_range(bounds: Any) -> str:
    if not bounds or not all(map(_finite, bounds)):
        return "–"
    return f"[{bounds[0]:+.4g}, {bounds[1]:+.4g}]"



class _Scale:
    def __init__(self, count: int, low: float, high: float):
        self.count, self.low, self.high = max(count, 1), low, high

    def point(self, i: int, value: float) -> tuple[float, float]:
        span = WIDTH - LEFT - PAD
        x = LEFT + (span * i / (self.count - 1) if self.count > 1 else span / 2)
        y = HEIGHT - PAD + (-(HEIGHT - 2 * PAD) * (value - self.low) / (self.high - self.low))
        return x, y


def _axes(scale: _Scale, days: Sequence[str], *, percent: bool, signed: bool = False) -> str:
    """Axes with three value labels: percents, signed small numbers (both with a zero line) or counts."""
    lines = [f"<line x1='{LEFT}' y1='{HEIGHT - PAD}' x2='{WIDTH - PAD}' y2='{HEIGHT - PAD}' stroke='#999'/>",
             f"<line x1='{LEFT}' y1='{PAD}' x2='{LEFT}' y2='{HEIGHT - PAD}' stroke='#999'/>"]
    _, zero = scale.point(0, 0.0)
    for value in (scale.low, (scale.low + scale.high) / 2, scale.high):
        _, y = scale.point(0, value)
        if (percent or signed) and value not in (scale.low, scale.high) and abs(y - zero) < 12:
            continue  # the zero line's label is there
        label = f"{value:+.1%}" if percent else f"{value:+.3g}" if signed else f"{value:,.0f}"
        lines.append(f"<text x='{LEFT - 4}' y='{y + 4:.1f}' font-size='10' text-anchor='end'>{label}</text>")
    if (percent or signed) and scale.low < 0 < scale.high:
        _, y = scale.point(0, 0.0)
        lines.append(f"<line class='zero' x1='{LEFT}' y1='{y:.1f}' x2='{WIDTH - PAD}' y2='{y:.1f}' stroke='#444' "
                     "stroke-dasharray='4 3'/>")
        lines.append(f"<text x='{LEFT - 4}' y='{y + 4:.1f}' font-size='10' text-anchor='end'>0</text>")
    for i in sorted({0, len(days) - 1}):
        x, _ = scale.point(i, scale.low)
        lines.append(f"<text x='{x:.1f}' y='{HEIGHT - PAD + 16}' font-size='10' text-anchor='middle'>"
                     f"{_e(days[i])}</text>")
    return "".join(lines)


def _svg(parts: Iterable[str]) -> str:
    return (f"<svg xmlns='http://www.w3.org/2000/svg' width='{WIDTH}' height='{HEIGHT}' "
            f"viewBox='0 0 {WIDTH} {HEIGHT}' role='img'>{''.join(parts)}</svg>")


def _empty(why: str) -> str:
    return _svg([f"<text x='{WIDTH / 2}' y='{HEIGHT / 2}' text-anchor='middle' fill='#777'>{_e(why)}</text>"])


def _figure(svg: str, caption: str, ident: str | None = None) -> str:
    ident_attr = f" id='{_e(ident)}'" if ident else ""
    return f"<figure{ident_attr}>{svg}<figcaption>{_e(caption)}</figcaption></figure>"


def _units_table(report: Mapping[str, Any]) -> str:
    units = report.get("units") or {}
    expected = (report.get("srm") or {}).get("expected") or {}
    strategies = report.get("strategies") or {}
    rows = ["<table class='units'><tr><th>variant</th><th>strategy</th><th>shoppers</th><th>expected</th></tr>"]
    for name, count in units.items():
        rows.append(f"<tr><td>{_e(name)}</td><td>{_e(strategies.get(name, ''))}</td><td>{count}</td>"
                    f"<td>{_fixed(expected.get(name))}</td></tr>")
    return "".join(rows) + "</table>"


def _metrics_table(report: Mapping[str, Any]) -> str:
    rows = ["<table class='metrics'><tr><th>metric</th><th>variant</th><th>control</th><th>variant value</th>"
            "<th>lift</th><th>95% interval</th><th>confidence sequence</th><th>p</th></tr>"]
    for row in report_rows(report):
        rows.append(f"<tr><td>{_e(row['metric'])}</td><td>{_e(row['variant'])}</td><td>{_num(row['control'])}</td>"
                    f"<td>{_num(row['treatment'])}</td><td>{_pct(row['lift'])}</td><td>{_range(row['lift_ci'])}</td>"
                    f"<td>{_range(row['lift_cs'])}</td><td>{_num(row['p_value'])}</td></tr>")
    return "".join(rows) + "</table>"


def _page(title: str, body: str) -> str:
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{_e(title)}</title>"
            f"<style>{STYLE}</style></head><body>{body}</body></html>")


def _value(found: Mapping[str, Any] | None) -> float | None:
    return None if not found else found.get("value")


def _cumulative(values: Sequence[float]) -> list[float]:
    out, total = [], 0
    for v in values:
        total += v
        out.append(total)
    return out


def _points(points: Iterable[tuple[float, float]]) -> str:
    return " ".join(f"{x:.1f},{y:.1f}" for x, y in points)


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _num(value: Any, digits: int = 4) -> str:
    return "–" if not _finite(value) else f"{value:.{digits}g}"


def _fixed(value: Any) -> str:
    return "–" if not _finite(value) else f"{value:,.1f}"


def _pct(value: Any) -> str:
    return "–" if not _finite(value) else f"{value:+.2%}"


def _range(bounds: Any) -> str:
    if not bounds or not all(map(_finite, bounds)):
        return "–"
    return f"[{bounds[0]:+.2%}, {bounds[1]:+.2%}]"


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)
