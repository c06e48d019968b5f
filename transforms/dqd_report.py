"""The HTML page of a DQD run: one self-contained file (inline CSS, no script, no network).

Overview by Kahn category first, then the failures (fatal first), each with its description, numbers
and a sample of offending rows (key columns only), then errors, then the passed and not applicable
checks folded away.
"""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transforms.dqd import CheckResult, DqdRun

_SEVERITY_ORDER = {"fatal": 0, "convention": 1, "characterization": 2}

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2rem auto;max-width:70rem;color:#1d2330;
padding:0 1rem;line-height:1.4}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ccd}
.meta{color:#556;font-size:.9rem}
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}
th,td{border:1px solid #d5d9e2;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f1f3f7}td.n{text-align:right;font-variant-numeric:tabular-nums}
.card{border:1px solid #d5d9e2;border-left:6px solid #999;border-radius:4px;padding:.6rem .9rem;margin:.8rem 0}
.card.fatal{border-left-color:#b3261e}.card.convention{border-left-color:#e08a00}
.card.characterization{border-left-color:#4a6fa5}.card.error{border-left-color:#6b2fa5}
.tag{display:inline-block;font-size:.75rem;padding:.05rem .4rem;border-radius:3px;background:#eef;margin-right:.3rem}
.tag.fatal{background:#f9dedc;color:#8c1d18}.tag.convention{background:#ffe8c2}.tag.characterization{background:#dde7f5}
.banner{padding:.6rem .9rem;border-radius:4px;margin:1rem 0;font-weight:600}
.banner.bad{background:#f9dedc;color:#8c1d18}.banner.good{background:#dcefdc;color:#1e5b1e}
code{background:#f4f5f8;padding:0 .2rem;border-radius:2px}
summary{cursor:pointer;font-weight:600}
"""


def _pct(x: float | None) -> str:
    return "" if x is None else f"{x * 100:.2f}%"


def _where(r: CheckResult) -> str:
    parts = [r.cdm_table_name]
    if r.cdm_field_name:
        parts.append(r.cdm_field_name)
    out = ".".join(parts)
    if r.concept_id:
        out += f" · concept {r.concept_id}"
    if r.unit_concept_id:
        out += f" · unit {r.unit_concept_id}"
    return out


def _sample_table(r: CheckResult) -> str:
    if not r.sample:
        return ""
    cols: list[str] = []
    for row in r.sample:
        cols += [c for c in row if c not in cols]
    head = "".join(f"<th>{escape(c)}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape('' if row.get(c) is None else str(row.get(c)))}</td>" for c in cols) + "</tr>"
        for row in r.sample
    )
    return f"<div>Sample of offending rows (keys only):</div><table><tr>{head}</tr>{body}</table>"


def _card(r: CheckResult) -> str:
    kind = "error" if r.is_error else r.severity
    threshold = "0 (any violation fails)" if not r.threshold else f"{r.threshold:g}%"
    numbers = (
        f"<table><tr><th>violated rows</th><th>denominator</th><th>violated</th><th>threshold</th></tr>"
        f"<tr><td class=n>{'' if r.num_violated_rows is None else r.num_violated_rows}</td>"
        f"<td class=n>{'' if r.num_denominator_rows is None else r.num_denominator_rows}</td>"
        f"<td class=n>{_pct(r.pct_violated_rows)}</td><td class=n>{threshold}</td></tr></table>"
    )
    tags = (
        f"<span class='tag {escape(r.severity)}'>{escape(r.severity)}</span>"
        f"<span class=tag>{escape(r.category)}{' / ' + escape(r.subcategory) if r.subcategory else ''}</span>"
        f"<span class=tag>{escape(r.context)}</span>"
    )
    error = f"<div><b>Error:</b> <code>{escape(r.error)}</code></div>" if r.error else ""
    notes = f"<div><b>Notes:</b> {escape(r.notes)}</div>" if r.notes else ""
    return (
        f"<div class='card {escape(kind)}'><div><b>{escape(r.check_name)}</b> — <code>{escape(_where(r))}</code></div>"
        f"<div>{tags}</div><p>{escape(r.description)}</p>{error}{numbers if not r.error else ''}{notes}"
        f"{_sample_table(r)}</div>"
    )


def _overview(run: DqdRun) -> str:
    counts = run.counts
    rows = []
    for cat in (*sorted(k for k in counts if k != "total"), "total"):
        c = counts[cat]
        applicable = c["run"] - c["not_applicable"]
        pct = f"{100 * c['passed'] / applicable:.0f}%" if applicable else ""
        label = "All" if cat == "total" else cat
        rows.append(
            f"<tr><th>{escape(label)}</th><td class=n>{c['run']}</td><td class=n>{c['passed']}</td>"
            f"<td class=n>{c['failed']}</td><td class=n>{c['errors']}</td><td class=n>{c['not_applicable']}</td>"
            f"<td class=n>{pct}</td></tr>"
        )
    by_context: dict[tuple[str, str], list[int]] = {}
    for r in run.results:
        v = by_context.setdefault((r.category, r.context), [0, 0])
        v[0] += r.passed
        v[1] += r.failed or r.is_error
    ctx_rows = "".join(
        f"<tr><th>{escape(cat)}</th><td>{escape(ctx)}</td><td class=n>{p}</td><td class=n>{f}</td></tr>"
        for (cat, ctx), (p, f) in sorted(by_context.items())
    )
    return (
        "<table><tr><th>Kahn category</th><th>checks</th><th>passed</th><th>failed</th><th>errors</th>"
        "<th>not applicable</th><th>% passed of applicable</th></tr>" + "".join(rows) + "</table>"
        "<details><summary>By category and context</summary><table><tr><th>category</th><th>context</th>"
        f"<th>passed</th><th>failed</th></tr>{ctx_rows}</table></details>"
    )


def _compact(results: list[CheckResult], reason: bool) -> str:
    head = "<tr><th>check</th><th>where</th><th>category</th>" + (
        "<th>why not applicable</th>" if reason else "<th>violated</th><th>threshold</th>") + "</tr>"
    body = []
    for r in results:
        last = (f"<td>{escape(r.not_applicable_reason or '')}</td>" if reason else
                f"<td class=n>{_pct(r.pct_violated_rows)}</td><td class=n>{'' if r.threshold is None else r.threshold}</td>")
        body.append(f"<tr><td>{escape(r.check_name)}</td><td><code>{escape(_where(r))}</code></td>"
                    f"<td>{escape(r.category)}</td>{last}</tr>")
    return f"<table>{head}{''.join(body)}</table>"


def render_html(run: DqdRun, *, timings: bool = True) -> str:
    from transforms.dqd import fatal_failures

    src = run.cdm_source
    name = str(src.get("cdm_source_name") or "OMOP CDM")
    failed = sorted(
        (r for r in run.results if r.failed),
        key=lambda r: (_SEVERITY_ORDER.get(r.severity, 9), r.category, r.cdm_table_name, r.check_name),
    )
    errors = [r for r in run.results if r.is_error]
    passed = [r for r in run.results if r.passed]
    na = [r for r in run.results if r.not_applicable]
    fatal = fatal_failures(run)
    banner = (
        f"<div class='banner bad'>{len(fatal)} fatal failure(s): the pipeline stops here.</div>" if fatal else
        "<div class='banner good'>No fatal failure.</div>"
    )
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>Data quality — {escape(name)}</title><style>{_CSS}</style></head><body>",
        f"<h1>Data quality — {escape(name)}</h1>",
        f"<div class=meta>OHDSI DataQualityDashboard 2.8 checks on the OMOP CDM {escape(str(src.get('cdm_version', '5.4')))}"
        + (f" · run {escape(run.start_time.strftime('%Y-%m-%d %H:%M:%S'))} UTC · {run.execution_seconds:.1f} s"
           if timings else "") + "</div>",
        banner,
        "<h2>Overview by Kahn category</h2>",
        _overview(run),
        f"<h2>Failures ({len(failed)})</h2>",
        "".join(_card(r) for r in failed) or "<p>None.</p>",
    ]
    if errors:
        parts += [f"<h2>Errors ({len(errors)})</h2>", "".join(_card(r) for r in errors)]
    parts += [
        f"<h2>Passed ({len(passed)})</h2><details><summary>Show the passed checks</summary>",
        _compact(passed, reason=False), "</details>",
        f"<h2>Not applicable ({len(na)})</h2><details><summary>Show the checks that did not apply</summary>",
        _compact(na, reason=True), "</details>",
        "<p class=meta>Check definitions: OHDSI DataQualityDashboard 2.8.4 (Apache-2.0). Samples show key columns only.</p>",
        "</body></html>",
    ]
    return "\n".join(parts)
