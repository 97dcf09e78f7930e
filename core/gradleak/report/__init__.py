"""``gradleak report DIR``: one static, self-contained HTML page of a study (no server, no network).

Sections: a summary (runs by status, failures with their errors), per-modality comparison tables (mean +- sd
over seeds, the best value of each column in bold), the cross-modality success-rate table with each
modality's criterion under it, plots, and galleries of reconstructions beside the truth.
"""

from __future__ import annotations

import datetime as _dt
import html
from pathlib import Path

from ..errors import UsageError
from .gallery import gallery
from .plots import modality_bars, strength_plots
from .tables import comparison_tables, describe, status_counts, success_table

__all__ = ["build_report", "write_report"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1200px;color:#222;padding:0 1rem}
h1{font-size:1.6rem}h2{font-size:1.25rem;margin-top:2rem;border-bottom:1px solid #ddd}h3{font-size:1.05rem}
table{border-collapse:collapse;margin:.5rem 0;font-size:.85rem}th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:right}
th{background:#f3f3f3}td.id{text-align:left}td.best{font-weight:bold;background:#eef7ee}
.note{color:#555;font-size:.85rem}.fail{color:#a00}.plots img{max-width:100%;margin:.5rem 1rem .5rem 0}
.gallery{display:flex;flex-wrap:wrap;gap:1rem}.item{border:1px solid #ddd;padding:.5rem;max-width:560px}
.item img{max-width:100%;image-rendering:pixelated}del{background:#fdd;color:#900}ins{background:#dfd;text-decoration:none}
.diff{font-family:ui-monospace,monospace;font-size:.8rem;margin:.2rem 0}
"""


def _study_dir(directory: str | Path) -> Path:
    d = Path(directory)
    if not (d / "results.sqlite").is_file():
        raise UsageError(f"{d}: no results.sqlite here; pass the --out folder of a study "
                         "(gradleak study FILE.toml --out DIR)")
    return d


def build_report(directory: str | Path) -> str:
    """The HTML text of the report of the study in ``directory``."""
    from ..study.store import ResultStore

    d = _study_dir(directory)
    with ResultStore(d) as store:
        frame = store.frame()
        rows = store.rows()
    names = sorted(set(frame["study"])) if len(frame) else []
    title = f"gradleak report: {', '.join(names) or d.name}"
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{_CSS}</style></head><body>", f"<h1>{html.escape(title)}</h1>"]
    when = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    counts = status_counts(frame) if len(frame) else {}
    summary = ", ".join(f"{n} {k}" for k, n in counts.items()) or "no runs yet"
    parts.append(f"<p class='note'>{html.escape(str(d))}: {summary}. Generated {when}.</p>")
    if len(frame) == 0:
        parts.append("</body></html>")
        return "".join(parts)
    modalities, metrics = describe(frame)
    parts.append("<h2 id='tables'>Comparison by modality</h2>")
    parts.append("<p class='note'>Mean &plusmn; standard deviation over seeds; n = runs. "
                 "The best value of each column is in bold (&uarr; higher is better, &darr; lower).</p>")
    for table in comparison_tables(frame, metrics, modalities):
        parts.append(_table_html(table, modalities[table.modality].primary_metric))
    attacks, srows = success_table(frame)
    if srows:
        parts.append("<h2 id='success'>Success rate across modalities</h2><table><tr><th>modality</th>"
                     "<th>defense</th>" + "".join(f"<th>{html.escape(a)}</th>" for a in attacks) + "</tr>")
        for mod, defense, rates in srows:
            cells = "".join(f"<td>{rates[a]:.0%}</td>" if a in rates else "<td>-</td>" for a in attacks)
            parts.append(f"<tr><td class='id'>{html.escape(mod)}</td><td class='id'>{html.escape(defense)}</td>{cells}</tr>")
        parts.append("</table><ul class='note'>")
        for mod in sorted({r[0] for r in srows}):
            crit = modalities.get(mod)
            text = crit.success_criterion if crit and crit.success_criterion else "criterion unknown (plugin not loaded)"
            parts.append(f"<li><b>{html.escape(mod)}</b>: a sample counts as recovered when {html.escape(text)}</li>")
        parts.append("</ul>")
    primary = {m: info.primary_metric for m, info in modalities.items()}
    plots = modality_bars(frame, primary) + strength_plots(frame, primary)
    if plots:
        parts.append("<h2 id='plots'>Plots</h2><div class='plots'>")
        for p in plots:
            parts.append(f"<figure><img alt='{html.escape(p.title)}' src='data:image/png;base64,{p.png_base64}'>"
                         f"<figcaption class='note'>{html.escape(p.title)}</figcaption></figure>")
        parts.append("</div>")
    failed = frame[frame["status"].isin(["failed", "skipped"])]
    if len(failed):
        parts.append("<h2 id='problems'>Failed and skipped runs</h2><table><tr><th>status</th><th>case</th>"
                     "<th>attack</th><th>defense</th><th>seed</th><th>reason</th></tr>")
        for r in failed.itertuples(index=False):
            reason = str(r.error or "").splitlines()[0] if r.error else ""
            parts.append(f"<tr class='fail'><td class='id'>{r.status}</td><td class='id'>{html.escape(r.case)}</td>"
                         f"<td class='id'>{html.escape(r.attack)}</td><td class='id'>{html.escape(r.defense)}</td>"
                         f"<td>{r.seed}</td><td class='id'>{html.escape(reason)}</td></tr>")
        parts.append("</table>")
    items = gallery(d, rows)
    if items:
        parts.append("<h2 id='gallery'>Reconstructions beside the truth</h2><div class='gallery'>")
        for it in items:
            parts.append(f"<div class='item'><h3>{html.escape(it.title)}</h3><p class='note'>{html.escape(it.subtitle)}</p>")
            for name, b64 in it.images:
                parts.append(f"<img alt='{html.escape(name)}' src='data:image/png;base64,{b64}'>")
            for frag in it.diffs:
                parts.append(f"<p class='diff'>{frag}</p>")
            if it.links:
                parts.append("<p class='note'>" + " &middot; ".join(
                    f"<a href='{html.escape(rel)}'>{html.escape(name)}</a>" for name, rel in it.links) + "</p>")
            parts.append("</div>")
        parts.append("</div>")
    # Marks the page once loaded: how many pictures failed to decode (checked by the browser test).
    parts.append("<script>window.addEventListener('load',function(){var b=0;"
                 "document.querySelectorAll('img').forEach(function(i){if(!i.complete||i.naturalWidth===0)b++;});"
                 "document.body.setAttribute('data-broken-images',String(b));});</script>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _table_html(table, primary: str | None) -> str:
    head = "".join(f"<th>{html.escape(c)} {'&uarr;' if table.directions.get(c, True) else '&darr;'}</th>"
                   for c in table.columns)
    out = [f"<h3>{html.escape(table.modality)}" + (f" (primary metric: {html.escape(primary)})" if primary else "")
           + "</h3>", f"<table><tr><th>case</th><th>attack</th><th>defense</th><th>n</th>{head}</tr>"]
    for (case, attack, defense), n, cells in table.rows:
        tds = "".join(f"<td class='{'best' if cells[c].best else ''}'>{cells[c].text()}</td>" for c in table.columns)
        out.append(f"<tr><td class='id'>{html.escape(case)}</td><td class='id'>{html.escape(attack)}</td>"
                   f"<td class='id'>{html.escape(defense)}</td><td>{n}</td>{tds}</tr>")
    out.append("</table>")
    return "\n".join(out)


def write_report(directory: str | Path, output: str | Path | None = None) -> Path:
    """Write the report of ``directory`` to ``output`` (default ``DIR/report.html``); return its path."""
    text = build_report(directory)
    path = Path(output) if output is not None else Path(directory) / "report.html"
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"-o {path}: cannot write the report ({exc.strerror or exc}); choose a writable path") from None
    return path
