"""One self-contained HTML page of result files: the environment, a table of every row that sorts by any
column and filters by family and name, each block linked to its paper, and the plots of the sweeps.

Everything is inline (styles, script, plots as base64 PNG): the file opens from a disk, a mail attachment or
a CI artefact with no network. Reads cards for families and links; never imports torch. Network rows that
match a published entry (profiles/papers.toml, timm's results) get a section of what the block buys: the
published top-1 gain beside the cost measured here, charted (:mod:`attnzoo.results.accuracy`).
"""

from __future__ import annotations

import base64
import html
import io
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

from attnzoo.columns import ENV_COLUMNS
from attnzoo.errors import ConfigError
from attnzoo.results import load_results
from attnzoo.results.files import environment, result_files
from attnzoo.rowdata import number, text

#: Measured columns the table shows when some row has a value, in this order.
TABLE_COLUMNS = ("params", "macs", "flops", "fwd_ms", "fwd_iqr_ms", "train_ms", "train_iqr_ms", "fwd_peak_mib",
                 "train_peak_mib", "efficiency", "added_params", "added_macs", "added_fwd_ms", "added_train_ms",
                 "attn_macs_share", "attn_time_share", "rel_err", "grad_rel_err", "nonfinite")
#: A network row's identity (attnzoo.networks): shown when some row is in a network.
NETWORK_COLUMNS = ("network", "placement", "stages", "inserted")
NUMERIC = set(TABLE_COLUMNS) | {"threads", "inserted"}

STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px; color: #1d2330; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; }
.meta { color: #5b6475; margin: 0 0 12px; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { padding: 4px 8px; border-bottom: 1px solid #e3e6ec; text-align: left; white-space: nowrap; }
td.num, th.num { text-align: right; }
#results th { cursor: pointer; user-select: none; background: #f3f5f9; position: sticky; top: 0; }
#results th:hover { background: #e6eaf2; }
#results th[aria-sort="ascending"]::after { content: " \\25B2"; font-size: 10px; }
#results th[aria-sort="descending"]::after { content: " \\25BC"; font-size: 10px; }
#results tr.failed td { color: #a33; }
.controls { display: flex; gap: 18px; align-items: center; margin: 8px 0 10px; }
.controls input, .controls select { font: inherit; padding: 3px 6px; }
#count { color: #5b6475; }
a { color: #2456c7; text-decoration: none; } a:hover { text-decoration: underline; }
figure { margin: 12px 0 20px; } figure img { max-width: 100%; border: 1px solid #e3e6ec; }
figcaption { color: #5b6475; font-size: 13px; }
table.env th { background: #f3f5f9; }
.scroll { overflow-x: auto; max-width: 100%; }
"""

SCRIPT = """
(function () {
  var table = document.getElementById('results');
  if (!table) { return; }
  var body = table.tBodies[0];
  var headers = table.tHead.rows[0].cells;
  var family = document.getElementById('family');
  var filter = document.getElementById('filter');
  var count = document.getElementById('count');
  var total = body.rows.length;

  function key(row, index, numeric) {
    var value = row.cells[index].getAttribute('data-v');
    if (numeric) { return value === '' ? NaN : parseFloat(value); }
    return value.toLowerCase();
  }
  function sortBy(index) {
    var th = headers[index];
    var numeric = th.getAttribute('data-type') === 'num';
    var ascending = th.getAttribute('aria-sort') !== 'ascending';
    for (var i = 0; i < headers.length; i++) { headers[i].removeAttribute('aria-sort'); }
    th.setAttribute('aria-sort', ascending ? 'ascending' : 'descending');
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a, index, numeric), y = key(b, index, numeric);
      if (numeric) {  // empty cells last whatever the direction
        if (isNaN(x) || isNaN(y)) { return isNaN(x) - isNaN(y); }
        return ascending ? x - y : y - x;
      }
      return ascending ? x.localeCompare(y) : y.localeCompare(x);
    });
    rows.forEach(function (row) { body.appendChild(row); });
  }
  function applyFilter() {
    var wanted = family.value, needle = filter.value.trim().toLowerCase(), shown = 0;
    Array.prototype.forEach.call(body.rows, function (row) {
      var ok = (!wanted || row.getAttribute('data-family') === wanted) &&
               (!needle || row.getAttribute('data-name').indexOf(needle) !== -1);
      row.hidden = !ok;
      if (ok) { shown++; }
    });
    count.textContent = shown + ' of ' + total + ' rows';
  }
  Array.prototype.forEach.call(headers, function (th, index) {
    th.addEventListener('click', function () { sortBy(index); });
  });
  family.addEventListener('change', applyFilter);
  filter.addEventListener('input', applyFilter);
  applyFilter();
})();
"""


def _esc(value: Any) -> str:
    return html.escape(text(value), quote=True)


def _shown(column: str, value: Any) -> str:
    """A cell as the page shows it (the raw value stays in data-v for sorting)."""
    if value is None or value == "":
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if column in NUMERIC and number(value) is not None:
        v = number(value)
        if float(v).is_integer():
            return f"{int(v):,}"
        return f"{v:.4g}"
    return text(value)


def _cards(registry: Sequence[str]) -> dict[str, Any]:
    from attnzoo.registry import all_specs

    return all_specs(registry)


def _link(url: str) -> str | None:
    return url if url.startswith(("https://", "http://")) else None


def sweep_axis(rows: Sequence[dict[str, Any]]) -> str | None:
    """The axis a file's rows sweep (hw, channels or batch), or None when it is not a sweep.

    An explicit ``over`` column wins; otherwise each block's shapes must differ along one axis only.
    """
    from attnzoo.growth import AXES

    explicit = {r.get("over") for r in rows if r.get("over") in AXES}
    if len(explicit) == 1:
        return explicit.pop()
    shapes: dict[str, set[tuple[int, ...]]] = {}
    for row in rows:
        if text(row.get("status")) != "ok":
            continue
        try:
            dims = tuple(int(d) for d in text(row["shape"]).split(","))
        except ValueError:
            return None
        shapes.setdefault(row["block"], set()).add(dims)
    found = set()
    for block_shapes in shapes.values():
        if len(block_shapes) < 2:
            continue
        if len({len(s) for s in block_shapes}) != 1:
            return None
        first = next(iter(block_shapes))
        varying = {i for s in block_shapes for i, d in enumerate(s) if d != first[i]}
        if len(first) == 4:
            axis = ("hw" if varying <= {2, 3} else "channels" if varying == {1} else
                    "batch" if varying == {0} else None)
        elif len(first) == 3:
            axis = {frozenset({1}): "hw", frozenset({2}): "channels", frozenset({0}): "batch"}.get(frozenset(varying))
        else:
            axis = None
        if axis is None:
            return None
        found.add(axis)
    return found.pop() if len(found) == 1 else None


def _sweep_section(name: str, rows: list[dict[str, Any]], cards: dict[str, Any]) -> str:
    """A plot (inline PNG) and the fitted exponents of one file's sweep; "" when the file is no sweep."""
    from attnzoo.growth import AXIS_VARIABLE, fit_rows
    from attnzoo.columns import METRICS
    from attnzoo.sweep import plot

    over = sweep_axis(rows)
    if over is None:
        return ""
    metrics = [m for m in ("macs", "fwd_ms", "fwd_peak_mib", "train_ms") if any(number(r.get(m)) for r in rows)]
    if not metrics:
        return ""
    buffer = io.BytesIO()
    plot(rows, over, buffer, metrics=metrics[:3])
    image = base64.b64encode(buffer.getvalue()).decode("ascii")
    stated = {b: (cards[b].complexity, cards[b].macs_exponent) for b in {r["block"] for r in rows} if b in cards}
    fits = fit_rows(rows, over, [m for m in METRICS if m in metrics], stated)
    variable = AXIS_VARIABLE[over]
    lines = [f'<figure><img alt="sweep of {_esc(name)}: cost against {variable}" '
             f'src="data:image/png;base64,{image}"><figcaption>{_esc(name)}: cost against {variable} '
             f"(log-log), one line per block</figcaption></figure>",
             f'<table class="fits"><thead><tr><th>block</th><th>metric</th><th class="num">k in cost ~ {variable}^k'
             '</th><th class="num">r²</th><th class="num">points</th><th>card complexity</th></tr></thead><tbody>']
    for fit in fits:
        lines.append(f"<tr><td>{_esc(fit['block'])}</td><td>{_esc(fit['metric'])}</td>"
                     f"<td class=\"num\">{_esc(fit['exponent'])}</td><td class=\"num\">{_esc(fit['r2'])}</td>"
                     f"<td class=\"num\">{fit['points']}</td><td>{_esc(fit['complexity'])}</td></tr>")
    lines.append("</tbody></table>")
    return "\n".join(lines)


def _accuracy_section(rows: Sequence[dict[str, Any]]) -> str:
    """The published top-1 of the network rows' entries (papers.toml, timm's results) beside their measured
    cost, with the charts of gain against time and MACs added; "" when no network row matches an entry."""
    if not any(text(r.get("network")) for r in rows):
        return ""
    from attnzoo.results.accuracy import html_section, join

    return html_section(join(rows))


TRAIN_STYLE = """
.train .controls label { margin-right: 4px; }
.train tr.front td:first-child { font-weight: 600; }
.train td.front::before { content: ""; }
"""

TRAIN_SCRIPT = """
(function () {
  Array.prototype.forEach.call(document.querySelectorAll('section.train'), function (section) {
    var cost = section.querySelector('select.train-cost'), loss = section.querySelector('select.train-loss');
    function show() {
      var key = cost.value + '|' + loss.value;
      Array.prototype.forEach.call(section.querySelectorAll('figure.tradeoff'), function (f) {
        f.hidden = f.getAttribute('data-key') !== key;
      });
      Array.prototype.forEach.call(section.querySelectorAll('table.train-summary tbody tr'), function (row) {
        var front = (row.getAttribute('data-front') || '').split(' ').indexOf(key) !== -1;
        row.classList.toggle('front', front);
        row.querySelector('td.front').textContent = front ? 'yes' : '';
      });
    }
    cost.addEventListener('change', show);
    loss.addEventListener('change', show);
    show();
  });
})();
"""

#: The train summary's columns on the page: (column, heading); a mean with its ± standard deviation.
TRAIN_TABLE = (("block", "block"), ("family", "family"), ("seeds", "seeds"), ("block_params", "block params"),
               ("macs", "MACs"), ("fwd_ms", "fwd ms"), ("min_test_loss", "min test loss"),
               ("last_test_loss", "last-epochs test loss"), ("best_test_acc", "best test acc"),
               ("epochs_to_target", "epochs to target"), ("article_min_test_loss", "article's min test loss"))


def _png(draw) -> str:
    """``draw(stream)`` into an inline PNG's base64 text."""
    buffer = io.BytesIO()
    draw(buffer)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _train_cell(line: dict[str, Any], column: str) -> tuple[str, str]:
    """(raw value for sorting, shown text) of one summary cell."""
    from attnzoo.train_results import with_spread

    value = line.get(column)
    if column in ("min_test_loss", "last_test_loss", "best_test_acc"):
        return text(value), with_spread(value, line.get(f"{column}_std"))
    if column == "epochs_to_target":
        shown = f"{value:.3g}" if value is not None else "-"
        return text(value), f"{shown} ({line['reached_target']})"
    return text(value), _shown("macs" if column in ("macs", "block_params") else "fwd_ms", value)


def _train_section(name: str, rows: list[dict[str, Any]], cards: dict[str, Any]) -> str:
    """What a block buys, for one file of ``attnzoo train --compare`` runs: the summary over seeds, a chart
    of cost against test loss with error bars and the Pareto front (cost and loss chosen on the page),
    and the test-loss curves (mean and band over seeds)."""
    from attnzoo.train_results import ARTICLE, COST_LABELS, LOSS_LABELS, plot_loss_curves, plot_tradeoff, summarise

    summary = summarise(rows, ARTICLE)
    first = rows[0]
    seeds = sorted({r.get("seed") for r in rows if r.get("seed") is not None})
    protocol = (f"{text(first.get('epochs'))} epochs, {text(first.get('train_size'))} training and "
                f"{text(first.get('test_size'))} test images ({text(first.get('dataset'))}"
                + (f", difficulty {text(first.get('difficulty'))}" if text(first.get("difficulty")) else "")
                + f"), batch {text(first.get('batch_size'))}, lr {text(first.get('lr'))}, {len(seeds)} seeds; "
                f"target loss {text(first.get('target_loss'))}; last-epochs loss over the last "
                f"{text(first.get('last_epochs'))}")
    costs = [c for c in ("macs", "fwd_ms", "block_params") if any(line.get(c) is not None for line in summary)]
    losses = ["min_test_loss", "last_test_loss"]
    fronts: dict[str, list[str]] = {}
    figures = []
    for cost in costs:
        for loss in losses:
            key = f"{cost}|{loss}"
            front: list[str] = []
            image = _png(lambda stream: front.extend(plot_tradeoff(summary, stream, cost, loss)))
            for block in front:
                fronts.setdefault(block, []).append(key)
            figures.append(f'<figure class="tradeoff" data-key="{_esc(key)}"><img alt="{_esc(LOSS_LABELS[loss])} '
                           f'against {_esc(COST_LABELS[cost])}" src="data:image/png;base64,{image}"><figcaption>'
                           f"{_esc(name)}: {_esc(LOSS_LABELS[loss])} (mean ± std over seeds) against "
                           f"{_esc(COST_LABELS[cost])}; the dashed line joins the Pareto front (filled points: "
                           "no block is both cheaper and better)</figcaption></figure>")
    curves = _png(lambda stream: plot_loss_curves(rows, stream))
    body = []
    for line in summary:
        card = cards.get(line["block"])
        cells = []
        for column, _ in TRAIN_TABLE:
            raw, shown = _train_cell(line, column)
            if column == "block" and card and _link(card.url):
                shown_html = f'<a href="{_esc(_link(card.url))}" title="{_esc(card.paper)}">{_esc(shown)}</a>'
            else:
                shown_html = _esc(shown)
            numeric = column not in ("block", "family")
            cells.append(f'<td data-v="{_esc(raw)}"{" class=num" if numeric else ""}>{shown_html}</td>')
        cells.append('<td class="front"></td>')
        body.append(f'<tr data-block="{_esc(line["block"])}" data-front="{_esc(" ".join(fronts.get(line["block"], [])))}">'
                    + "".join(cells) + "</tr>")
    head = "".join(f'<th{" class=num" if c not in ("block", "family") else ""}>{_esc(h)}</th>' for c, h in TRAIN_TABLE)
    cost_options = "".join(f'<option value="{c}">{_esc(COST_LABELS[c])}</option>' for c in costs)
    loss_options = "".join(f'<option value="{c}">{_esc(LOSS_LABELS[c])}</option>' for c in losses)
    return "\n".join([
        f'<section class="train" data-source="{_esc(name)}"><h3>{_esc(name)}</h3>',
        f'<p class="meta">{_esc(protocol)}</p>',
        f'<div class="controls"><label>Cost <select class="train-cost">{cost_options}</select></label>'
        f'<label>Loss <select class="train-loss">{loss_options}</select></label></div>',
        f'<div class="scroll"><table class="train-summary"><thead><tr>{head}<th>on the front</th></tr></thead>'
        "<tbody>", *body, "</tbody></table></div>", *figures,
        f'<figure class="curves"><img alt="test loss per epoch" src="data:image/png;base64,{curves}"><figcaption>'
        f"{_esc(name)}: test loss per epoch, the mean over seeds in a band from the lowest to the highest seed"
        "</figcaption></figure></section>",
    ])


def build_report(paths: Sequence[str | os.PathLike], registry: Sequence[str] = (), title: str = "attnzoo report",
                 note: Callable[[str], None] | None = None) -> str:
    """The HTML page for the result files ``paths`` (files of rows, or folders of them). The other files
    attnzoo writes (settings, plans, training summaries and metrics, figures) are skipped, each with a line
    to ``note``."""
    from attnzoo._version import __version__

    from attnzoo.train_results import is_train_rows

    sources, skipped = [], []
    for path in paths:
        files, notes = result_files([path])
        skipped += notes
        if files or Path(path).is_dir():  # a folder's own load says when it holds no rows
            sources.append((str(path), load_results(path)))
    if not sources:
        raise ConfigError("no rows to report: " + "; ".join(skipped))
    for line in skipped:
        if note is not None:
            note(line)
    cards = _cards(registry)
    names = [Path(p).name for p, _ in sources]
    if len(set(names)) < len(names):
        names = [p for p, _ in sources]
    trains = [(n, r) for n, (_, r) in zip(names, sources) if is_train_rows(r)]
    kept = [(n, s) for n, s in zip(names, sources) if not is_train_rows(s[1])]
    names, sources = [n for n, _ in kept], [s for _, s in kept]
    rows: list[dict[str, Any]] = []
    for name, (_, file_rows) in zip(names, sources):
        rows += [{**r, "source": name} for r in file_rows]

    env_varying = [c for c in ENV_COLUMNS if len({text(r.get(c)) for r in rows}) > 1]
    columns = ["block", "family", "shape", "status"]
    columns[1:1] = [c for c in NETWORK_COLUMNS if any(text(r.get(c)) for r in rows)]
    if any(text(r.get("overrides")) for r in rows):
        columns.append("overrides")
    columns += [c for c in TABLE_COLUMNS if any(number(r.get(c)) is not None for r in rows)]
    columns += env_varying
    if len(sources) > 1:
        columns.append("source")

    families = sorted({cards[r["block"]].family for r in rows if r["block"] in cards})
    body = []
    for row in rows:
        card = cards.get(row["block"])
        family = card.family if card else ""
        cells = []
        for column in columns:
            value = family if column == "family" else row.get(column)
            numeric = column in NUMERIC
            raw = "" if value is None else (text(number(value)) if numeric and number(value) is not None else text(value))
            shown = _esc(_shown(column, value))
            url = _link(card.url) if card and column == "block" else None
            if url:
                shown = f'<a href="{_esc(url)}" title="{_esc(card.paper)}">{shown}</a>'
            cells.append(f'<td data-v="{_esc(raw)}"{" class=num" if numeric else ""}>{shown}</td>')
        failed = ' class="failed"' if text(row.get("status")) not in ("ok", "") else ""
        body.append(f'<tr data-family="{_esc(family)}" data-name="{_esc(row["block"].lower())}"{failed}>'
                    + "".join(cells) + "</tr>")
    head = "".join(f'<th data-type="{"num" if c in NUMERIC else "text"}"{" class=num" if c in NUMERIC else ""}>'
                   f"{_esc(c)}</th>" for c in columns)

    env_keys = list(dict.fromkeys(k for _, r in sources for k in environment(r)))
    env = ['<table class="env"><thead><tr><th></th>' + "".join(f"<th>{_esc(n)}</th>" for n in names)
           + "</tr></thead><tbody>",
           "<tr><td>rows</td>" + "".join(f"<td>{len(r)}</td>" for _, r in sources) + "</tr>"]
    for key in env_keys:
        env.append(f"<tr><td>{_esc(key)}</td>" + "".join(f"<td>{_esc(environment(r).get(key, ''))}</td>"
                                                          for _, r in sources) + "</tr>")
    env.append("</tbody></table>")
    if not env_keys:
        env.append('<p class="meta">These files record no environment (written by an older attnzoo).</p>')

    sweeps = [s for s in (_sweep_section(n, r, cards) for n, (_, r) in zip(names, sources)) if s]
    accuracy = _accuracy_section(rows)
    options = "".join(f'<option value="{_esc(f)}">{_esc(f)}</option>' for f in families)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_esc(title)}</title><style>{STYLE}{TRAIN_STYLE}</style></head><body>",
        f"<h1>{_esc(title)}</h1>",
        f'<p class="meta">{len(rows) + sum(len(r) for _, r in trains)} rows from '
        f'{", ".join(_esc(n) for n in [*names, *(n for n, _ in trains)])} · made {stamp} by attnzoo '
        f"{_esc(__version__)} · 1 MAC = 1 multiply-add = 2 FLOPs · times are medians in ms, iqr their "
        "interquartile range · MiB: peak above inputs and weights</p>",
        *(["<h2>Environment</h2>", *env,
           "<h2>Results</h2>",
           '<div class="controls"><label>Family <select id="family"><option value="">all</option>'
           f"{options}</select></label>"
           '<label>Name <input id="filter" type="search" placeholder="filter by name" autocomplete="off"></label>'
           '<span id="count"></span><span class="meta">click a column header to sort</span></div>',
           f'<div class="scroll"><table id="results"><thead><tr>{head}</tr></thead><tbody>', *body,
           "</tbody></table></div>"] if sources else []),
        *(["<h2>What a block buys: published ImageNet top-1 beside the cost measured here</h2>", accuracy]
          if accuracy else []),
        *(["<h2>Sweeps</h2>", *sweeps] if sweeps else []),
        *(["<h2>Training: what a block buys</h2>", *(_train_section(n, r, cards) for n, r in trains)]
          if trains else []),
        f"<script>{SCRIPT}{TRAIN_SCRIPT if trains else ''}</script>", "</body></html>", "",
    ])
