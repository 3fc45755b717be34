"""What a block buys: published ImageNet top-1 joined to the cost of the whole network measured here.

Two sources of published accuracy are data in ``profiles/`` (read as files, like any result file): the papers'
tables (``papers.toml``: an entry's ``top1`` and its table's plain network's ``base_top1``) and timm's own
results (``published/timm-imagenet.toml``: a model with its pretrained tag at an image size, and the plain
network of the same recipe). :func:`join` matches each entry to network rows (``attnzoo profile --network``):
its network with the block at the entry's shape, and the plain network it is compared with, and gives per
entry the params, MACs and forward time measured here, what the block adds over the plain network, and the
published gain in top-1 over the same source's baseline. Absolute top-1 of different sources is never compared:
recipes differ (ResNet-50 is 75.20 in ECA-Net, 75.44 in CBAM, 80.38 with timm's a1 recipe).

:func:`chart_svg` draws the gain against a cost added (time on this device, or MACs) as an inline SVG: one
colour per source, the Pareto front (no other entry gains more for less) joined by a line. Pure Python; no
torch, no matplotlib.
"""

from __future__ import annotations

import html
import tomllib
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from attnzoo.rowdata import number, text

PAPERS_FILE = "papers.toml"
TIMM_FILE = "published/timm-imagenet.toml"
#: The costs a block adds that the chart can draw against: (row column, axis label).
COSTS = {"added_fwd_ms": "forward time added on this device (ms)", "added_macs": "MACs added (G)"}
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#393b79", "#637939")


def profiles_dir() -> Path:
    """The bundled profiles: inside the wheel, or the repository's profiles/ in a checkout."""
    package = Path(__file__).resolve().parent.parent
    packaged = package / "_data" / "profiles"
    return packaged if packaged.is_dir() else package.parent / "profiles"


def _shape(size: int) -> str:
    return f"1,3,{size},{size}"


def paper_entries(path: Path | None = None) -> list[dict[str, Any]]:
    """The entries of papers.toml that carry a published top-1 (plain networks included, gain None)."""
    data = tomllib.loads((path or profiles_dir() / PAPERS_FILE).read_text(encoding="utf-8"))
    entries = []
    for run in data["runs"]:
        paper = run.get("paper", {})
        if "top1" not in paper:
            continue
        network, block = run["networks"][0], (run["blocks"][0] if run["blocks"] else "none")
        base = paper.get("base_top1")
        entries.append({
            "source": paper["table"], "kind": "paper", "label": f"{network} + {block}" if block != "none" else network,
            "network": network, "block": block, "shape": run["shapes"][0], "model": "", "img_size": 224,
            "base_network": network if block != "none" else None, "base_block": "none",
            "top1": paper["top1"], "base_top1": base,
            "gain": round(paper["top1"] - base, 3) if base is not None else None,
            "link": paper.get("source", ""), "checked": paper.get("checked", ""),
            "why_no_gain": paper.get("no_base", "") if block != "none" else "the plain network",
            "cost_note": (f"the table's baseline is {paper['base_network']}, not attnzoo's {network}: the cost the "
                          "block adds here is not the table's ablation" if paper.get("base_network") else ""),
        })
    return entries


def timm_entries(path: Path | None = None) -> list[dict[str, Any]]:
    """timm's entries: ``network`` is ``timm:MODEL`` with its tag, measured at the entry's image size."""
    data = tomllib.loads((path or profiles_dir() / TIMM_FILE).read_text(encoding="utf-8"))
    published = {(e["model"], e["img_size"]): e for e in data["entries"]}
    link = f"{data['source']['file']} (commit {data['source']['commit'][:10]})"
    entries = []
    for e in data["entries"]:
        base = published.get((e.get("base"), e["img_size"])) if e.get("base") else None
        entries.append({
            "source": "timm", "kind": "timm", "label": f"{e['model']} @{e['img_size']}",
            "network": f"timm:{e['model']}", "block": "none", "shape": _shape(e["img_size"]),
            "model": e["model"], "img_size": e["img_size"], "crop_pct": e["crop_pct"], "published_params_m": e["params_m"],
            "attention": e.get("block", ""),
            "base_network": f"timm:{base['model']}" if base else None, "base_block": "none",
            "top1": e["top1"], "base_top1": base["top1"] if base else None,
            "gain": round(e["top1"] - base["top1"], 3) if base else None,
            "link": link, "checked": data["source"].get("checked", ""),
            "why_no_gain": e.get("no_base", "") if e.get("block") else "the plain network",
        })
    return entries


def published_entries(folder: Path | None = None) -> list[dict[str, Any]]:
    folder = folder or profiles_dir()
    return paper_entries(folder / PAPERS_FILE) + timm_entries(folder / TIMM_FILE)


def _network_keys(network: str) -> list[str]:
    """The names a measured row of ``network`` may carry: a timm model with its tag, or without it."""
    if network.startswith("timm:") and "." in network:
        return [network, network.split(".", 1)[0]]
    return [network]


def _index(rows: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str, str], Mapping[str, Any]]:
    found: dict[tuple[str, str, str], Mapping[str, Any]] = {}
    for row in rows:
        if text(row.get("status")) != "ok" or not text(row.get("network")):
            continue
        shape = ",".join(text(row.get("shape")).replace(" ", "").split(","))
        found.setdefault((text(row["network"]), text(row.get("block")), shape), row)
    return found


def _find(index, network: str | None, block: str, shape: str):
    if network is None:
        return None
    return next((index[k] for k in ((n, block, shape) for n in _network_keys(network)) if k in index), None)


def _minus(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None, column: str) -> float | None:
    x, y = (number(a.get(column)) if a else None), (number(b.get(column)) if b else None)
    return None if x is None or y is None else x - y


def join(rows: Iterable[Mapping[str, Any]], entries: Sequence[Mapping[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Each published entry whose network was measured, with what was measured: ``params``, ``macs``,
    ``fwd_ms`` of the whole network (the row of the entry's network, block and shape), and ``added_params``,
    ``added_macs``, ``added_fwd_ms`` over the plain network the entry's gain is over (the same network's plain
    row for a paper's entry; the base model's row at the same image size for timm's). Entries whose network no
    row holds are left out."""
    index = _index(rows)
    joined = []
    for entry in entries if entries is not None else published_entries():
        row = _find(index, entry["network"], entry["block"], entry["shape"])
        if row is None:
            continue
        base = _find(index, entry["base_network"], entry["base_block"], entry["shape"])
        joined.append({**entry, "params": number(row.get("params")), "macs": number(row.get("macs")),
                       "fwd_ms": number(row.get("fwd_ms")), "measured_network": text(row.get("network")),
                       "base_measured": base is not None,
                       "added_params": _minus(row, base, "params"), "added_macs": _minus(row, base, "macs"),
                       "added_fwd_ms": _minus(row, base, "fwd_ms")})
    return joined


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats: one that costs no more (x) and gains no less (y), and is
    strictly better in one of them."""
    front = []
    for i, (x, y) in enumerate(points):
        if not any((a <= x and b >= y) and (a < x or b > y) for j, (a, b) in enumerate(points) if j != i):
            front.append(i)
    return sorted(front, key=lambda i: points[i])


def plotted(joined: Sequence[Mapping[str, Any]], cost: str) -> list[Mapping[str, Any]]:
    """The entries a chart against ``cost`` draws: a gain and that cost measured, over a baseline that is the
    network measured (not SKNet's ResNeXt-50 against attnzoo's ResNet-50)."""
    return [e for e in joined if e.get("gain") is not None and e.get(cost) is not None and not e.get("cost_note")]


def source_colours(joined: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    sources = list(dict.fromkeys(e["source"] for e in joined))
    return {s: PALETTE[i % len(PALETTE)] for i, s in enumerate(sources)}


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    import math

    span = high - low or 1.0
    raw = span / count
    step = 10 ** math.floor(math.log10(raw))
    step *= next(m for m in (1, 2, 2.5, 5, 10) if m * step >= raw)
    first = math.ceil(low / step) * step
    return [round(first + i * step, 10) for i in range(int((high - first) / step + 1e-9) + 1)]


def chart_svg(joined: Sequence[Mapping[str, Any]], cost: str, width: int = 760, height: int = 440,
              title: str = "") -> str:
    """An SVG scatter of top-1 gained (over the same source's baseline) against ``cost`` added: one colour per
    source, the Pareto front joined by a dashed line and drawn with filled points. Each point is a
    ``circle.point`` with its entry (``data-entry``, ``data-source``) and values (``data-x``, ``data-y``)."""
    points = plotted(joined, cost)
    scale = 1e9 if cost == "added_macs" else 1.0
    xs = [e[cost] / scale for e in points]
    ys = [e["gain"] for e in points]
    colours = source_colours(points)
    left, right, top, bottom = 64, 200, 34, 50
    plot_w, plot_h = width - left - right, height - top - bottom
    x_lo, x_hi = (min(xs + [0.0]), max(xs + [0.0])) if xs else (0.0, 1.0)
    y_lo, y_hi = (min(ys + [0.0]), max(ys + [0.0])) if ys else (0.0, 1.0)
    pad_x, pad_y = (x_hi - x_lo or 1.0) * 0.06, (y_hi - y_lo or 1.0) * 0.08
    x_lo, x_hi, y_lo, y_hi = x_lo - pad_x, x_hi + pad_x, y_lo - pad_y, y_hi + pad_y

    def px(x: float) -> float:
        return round(left + (x - x_lo) / (x_hi - x_lo) * plot_w, 2)

    def py(y: float) -> float:
        return round(top + (y_hi - y) / (y_hi - y_lo) * plot_h, 2)

    esc = html.escape
    label = COSTS[cost]
    out = [f'<svg class="accuracy-chart" data-cost="{esc(cost)}" xmlns="http://www.w3.org/2000/svg" '
           f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" '
           f'font-size="12"><rect width="{width}" height="{height}" fill="#fff"/>',
           f'<text x="{left}" y="20" font-size="14">{esc(title or "top-1 gained against " + label)}</text>']
    for t in _ticks(x_lo, x_hi):
        out.append(f'<line x1="{px(t)}" y1="{top}" x2="{px(t)}" y2="{top + plot_h}" stroke="#eee"/>'
                   f'<text x="{px(t)}" y="{top + plot_h + 16}" text-anchor="middle">{t:g}</text>')
    for t in _ticks(y_lo, y_hi):
        out.append(f'<line x1="{left}" y1="{py(t)}" x2="{left + plot_w}" y2="{py(t)}" stroke="#eee"/>'
                   f'<text x="{left - 6}" y="{py(t) + 4}" text-anchor="end">{t:g}</text>')
    out.append(f'<line x1="{left}" y1="{py(0)}" x2="{left + plot_w}" y2="{py(0)}" stroke="#999"/>'
               f'<line x1="{px(0)}" y1="{top}" x2="{px(0)}" y2="{top + plot_h}" stroke="#999"/>')
    out.append(f'<text x="{left + plot_w / 2}" y="{height - 12}" text-anchor="middle">{esc(label)}</text>'
               f'<text transform="translate(16 {top + plot_h / 2}) rotate(-90)" text-anchor="middle">'
               "top-1 gained over the same source's baseline (points)</text>")
    front = pareto_front(list(zip(xs, ys)))
    if len(front) > 1:
        line = " ".join(f"{px(xs[i])},{py(ys[i])}" for i in front)
        out.append(f'<polyline class="front" points="{line}" fill="none" stroke="#444" stroke-dasharray="5 4"/>')
    on_front = set(front)
    for i, e in enumerate(points):
        colour = colours[e["source"]]
        fill = colour if i in on_front else "#fff"
        out.append(f'<circle class="point{" front" if i in on_front else ""}" cx="{px(xs[i])}" cy="{py(ys[i])}" '
                   f'r="5" fill="{fill}" stroke="{colour}" stroke-width="2" data-entry="{esc(e["label"])}" '
                   f'data-source="{esc(e["source"])}" data-x="{xs[i]:.6g}" data-y="{ys[i]:.6g}">'
                   f'<title>{esc(e["source"])}: {esc(e["label"])}: {ys[i]:+.3g} top-1 for {xs[i]:+.4g} '
                   f'{esc(label)}</title></circle>')
        if i in on_front:
            out.append(f'<text x="{px(xs[i]) + 7}" y="{py(ys[i]) - 6}" font-size="10" fill="#333">'
                       f'{esc(e["label"])}</text>')
    for j, (source, colour) in enumerate(colours.items()):
        y = top + 10 + j * 18
        out.append(f'<circle cx="{left + plot_w + 18}" cy="{y}" r="5" fill="{colour}"/>'
                   f'<text x="{left + plot_w + 28}" y="{y + 4}">{esc(source)}</text>')
    note_y = top + 18 + len(colours) * 18
    out.append(f'<text x="{left + plot_w + 12}" y="{note_y}" font-size="10" fill="#555">filled, dashed: Pareto '
               "front</text></svg>")
    return "\n".join(out)


def _cell(value: Any, digits: int = 4) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.{digits}g}"
    return f"{int(value):,}" if isinstance(value, (int, float)) else str(value)


def table_rows(joined: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """The joined entries as the table shows them (one dict of column -> text per entry)."""
    lines = []
    for e in joined:
        macs = e.get("macs")
        added_macs = e.get("added_macs")
        lines.append({
            "source": e["source"], "entry": e["label"] + (" (not charted: another baseline)" if e.get("cost_note")
                                                          else ""), "image": str(e["img_size"]),
            "params (M)": _cell(e["params"] / 1e6 if e.get("params") is not None else None),
            "GMACs": _cell(macs / 1e9 if macs is not None else None),
            "fwd ms": _cell(e.get("fwd_ms"), 3),
            "added params (M)": _cell(e["added_params"] / 1e6 if e.get("added_params") is not None else None, 3),
            "added GMACs": _cell(added_macs / 1e9 if added_macs is not None else None, 3),
            "added fwd ms": _cell(e.get("added_fwd_ms"), 3),
            "top-1": _cell(e["top1"], 5), "baseline top-1": _cell(e.get("base_top1"), 5),
            "gain": f"{e['gain']:+.3g}" if e.get("gain") is not None else "",
            "checked": e.get("checked", ""),
        })
    return lines


def markdown_table(joined: Sequence[Mapping[str, Any]]) -> str:
    lines = table_rows(joined)
    if not lines:
        return ""
    columns = list(lines[0])
    out = ["| " + " | ".join(columns) + " |",
           "| " + " | ".join("---" if c in ("source", "entry", "checked") else "---:" for c in columns) + " |"]
    out += ["| " + " | ".join(line[c] for c in columns) + " |" for line in lines]
    return "\n".join(out)


def html_section(joined: Sequence[Mapping[str, Any]]) -> str:
    """The report's section: the table of joined entries and the two charts ("" when nothing joined)."""
    if not joined:
        return ""
    lines = table_rows(joined)
    columns = list(lines[0])
    esc = html.escape
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{esc(line[c])}</td>" for c in columns) + "</tr>" for line in lines)
    charts = [f"<figure>{chart_svg(joined, cost)}<figcaption>Top-1 gained over the same source's baseline "
              f"(published) against {esc(label)} (measured): one colour per source; filled points on the dashed "
              "line form the Pareto front.</figcaption></figure>"
              for cost, label in COSTS.items() if plotted(joined, cost)]
    return "\n".join([
        '<section class="accuracy"><p class="meta">Published ImageNet-1k top-1 (papers.toml, timm\'s results) '
        "beside the cost of the whole network measured in these files. Gains are over the baseline of the same "
        "source: absolute top-1 of different papers is not comparable.</p>",
        f'<div class="scroll"><table class="accuracy-table"><thead><tr>{head}</tr></thead><tbody>{body}'
        "</tbody></table></div>", *charts, "</section>"])


__all__ = ["COSTS", "chart_svg", "html_section", "join", "markdown_table", "pareto_front", "published_entries",
           "paper_entries", "profiles_dir", "table_rows", "timm_entries"]
