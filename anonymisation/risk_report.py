"""The data steward's risk report: thresholds, suggested policy changes, JSON and self-contained HTML.

The HTML page has no script and no network reference: its charts are inline SVG drawn here.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import polars as pl

from anonymisation.kanon import NoSolutionError, PrivacyModel, Problem, SearchResult, search
from anonymisation.risk import (
    QIContribution,
    RiskProfile,
    population_uniqueness,
    profile_from_sizes,
    qi_contributions,
    risk_at,
)
from anonymisation.utility import ceilings, cost_words, field_name, removed_by_levels
from schemas.policy import PrivacyPolicy

_EPS = 1e-12


class ThresholdCheck(NamedTuple):
    name: str
    value: float
    limit: float
    passed: bool


def _share_above(risk: RiskProfile | Mapping[str, Any], level: float) -> float:
    if isinstance(risk, RiskProfile):
        return risk.share_above(level)
    sizes = risk.get("size_counts")
    records = int(risk.get("records", 0) or 0)
    if isinstance(sizes, Mapping) and records:
        return sum(int(s) * int(c) for s, c in sizes.items() if 1.0 / int(s) > level) / records
    return float(risk.get("records_at_risk", 0.0))


def evaluate_thresholds(
    risk_after: RiskProfile | Mapping[str, Any], policy: PrivacyPolicy
) -> list[ThresholdCheck]:
    """Each risk threshold of the policy: (name, value, limit, passed). Pure; the release check blocks
    when any is not passed."""
    t = policy.thresholds

    def get(name: str) -> float:
        if isinstance(risk_after, RiskProfile):
            return float(getattr(risk_after, name))
        return float(risk_after.get(name, 0.0) or 0.0)

    checks: list[tuple[str, float, float]] = [("average prosecutor risk", get("prosecutor_avg"), t.avg_risk)]
    if t.max_risk is not None:
        checks.insert(0, ("highest prosecutor risk", get("prosecutor_max"), t.max_risk))
    if t.max_share_at_risk is not None:
        checks.append((f"share of records with risk above {t.risk_level:g}", _share_above(risk_after, t.risk_level),
                       t.max_share_at_risk))
    return [ThresholdCheck(name, value, limit, value <= limit + _EPS) for name, value, limit in checks]


def model_of(policy: PrivacyPolicy) -> PrivacyModel:
    ld = policy.l_diversity
    return PrivacyModel(
        k=policy.k,
        suppression=policy.suppression,
        l=ld.l if ld else None,
        l_variant=ld.variant if ld else "distinct",
    )


@dataclass(frozen=True)
class PolicyChange:
    """A change to the policy that, re-running the search, makes every threshold hold."""

    setting: str  # "k" or "suppression"
    value: float
    text: str  # the change and what it costs: "raise k to 7: sex removed, ..., 3.1% of records suppressed"
    levels: dict[str, int]
    suppressed: int
    checks: list[ThresholdCheck] = field(default_factory=list)
    cost: str = ""  # the levels in words and the share of records suppressed
    refused: list[str] = field(default_factory=list)  # QIs it would remove that the policy does not allow

    def as_dict(self) -> dict[str, object]:
        return {
            "setting": self.setting,
            "value": self.value,
            "text": self.text,
            "levels": self.levels,
            "suppressed": self.suppressed,
            "checks": [c._asdict() for c in self.checks],
            "cost": self.cost,
            "removes_not_allowed": self.refused,
        }


def _change(problem: Problem, policy: PrivacyPolicy, setting: str, value: float, change: str,
            result: SearchResult, checks: list[ThresholdCheck]) -> PolicyChange:
    """A policy change with its cost computed from the search result it gives."""
    hierarchies = dict(zip(problem.qis, problem.hierarchies, strict=True))
    cost, refused = cost_words(result.levels, hierarchies, result.suppressed, result.records, policy)
    return PolicyChange(setting, value, f"{change}: {cost}", dict(result.levels), result.suppressed, checks, cost,
                        refused)


def _try(
    problem: Problem, policy: PrivacyPolicy, population: pl.DataFrame | None
) -> tuple[SearchResult, list[ThresholdCheck]] | None:
    model = model_of(policy)
    try:
        result = search_keeping(problem, model, policy)
    except NoSolutionError:
        return None
    after = risk_at(problem, result.node, model, policy.thresholds.risk_level, population)
    return result, evaluate_thresholds(after, policy)


def search_keeping(problem: Problem, model: PrivacyModel, policy: PrivacyPolicy) -> SearchResult:
    """The optimal node that removes no quasi-identifier the policy does not allow to be removed
    (anonymisation/utility.py); when there is none, the optimal node of the whole lattice (the
    release is then blocked by its utility guard, with the reason in words)."""
    try:
        return search(problem, model, policy.metric, ceiling=ceilings(problem.qis, problem.hierarchies, policy))
    except NoSolutionError:
        return search(problem, model, policy.metric)


SUPPRESSION_STEPS = (0.06, 0.08, 0.1, 0.15, 0.2, 0.25, 0.3)


def suggest_policy_change(
    problem: Problem,
    policy: PrivacyPolicy,
    population: pl.DataFrame | None = None,
    max_k: int | None = None,
) -> list[PolicyChange]:
    """When a threshold fails, the smallest k (same suppression) and the smallest suppression limit
    (same k, from a fixed ladder) for which the re-run search passes every threshold. Empty when the
    policy already passes. Each candidate is found by actually re-running the search."""
    current = _try(problem, policy, population)
    if current is not None and all(c.passed for c in current[1]):
        return []
    t = policy.thresholds
    guarantee = max(
        policy.k + 1,
        math.ceil(1 / t.max_risk - _EPS) if t.max_risk is not None else policy.k + 1,
        math.ceil(1 / t.avg_risk - _EPS),
        (math.floor(1 / t.risk_level + _EPS) + 1) if t.max_share_at_risk is not None and t.max_share_at_risk < 1
        else policy.k + 1,
    )
    cap = min(guarantee, max_k) if max_k else guarantee
    out: list[PolicyChange] = []
    for k in range(policy.k + 1, cap + 1):
        trial = policy.model_copy(update={"k": k})
        got = _try(problem, trial, population)
        if got is None:
            break
        if all(c.passed for c in got[1]):
            out.append(_change(problem, trial, "k", k, f"raise k to {k}", got[0], got[1]))
            break
    for s in SUPPRESSION_STEPS:
        if s <= policy.suppression:
            continue
        trial = policy.model_copy(update={"suppression": s})
        got = _try(problem, trial, population)
        if got is not None and all(c.passed for c in got[1]):
            out.append(_change(problem, trial, "suppression", s, f"allow suppression of {s:.0%} of records",
                               got[0], got[1]))
            break
    return out


def suggest_keeping(problem: Problem, policy: PrivacyPolicy, population: pl.DataFrame | None = None) -> list[PolicyChange]:
    """When the chosen levels remove a quasi-identifier the policy does not allow to be removed: the
    smallest suppression limit of the ladder (same k) whose re-run search removes none such and passes
    every threshold. Empty when there is none."""
    hierarchies = dict(zip(problem.qis, problem.hierarchies, strict=True))
    allowed = {q.column for q in policy.quasi_identifiers if q.allow_removal}
    for s in SUPPRESSION_STEPS:
        if s <= policy.suppression:
            continue
        trial = policy.model_copy(update={"suppression": s})
        got = _try(problem, trial, population)
        if got is None or not all(c.passed for c in got[1]):
            continue
        if not [q for q in removed_by_levels(got[0].levels, hierarchies) if q not in allowed]:
            return [_change(problem, trial, "suppression", s, f"allow suppression of {s:.0%} of records",
                            got[0], got[1])]
    return []


# --------------------------------------------------------------------------- the report


def build_report(
    result: SearchResult,
    before: RiskProfile,
    after: RiskProfile,
    policy: PrivacyPolicy,
    *,
    contributions: Sequence[QIContribution] | None = None,
    contributions_before: Sequence[QIContribution] | None = None,
    suggestions: Sequence[PolicyChange] | None = None,
    rare_concepts: Mapping[str, int] | None = None,
    seconds: float | None = None,
) -> dict[str, Any]:
    """The report as a JSON-ready dict (the HTML page renders exactly this)."""
    checks = evaluate_thresholds(after, policy)
    return {
        "levels": dict(result.levels),
        "classes": result.classes,
        "suppressed": result.suppressed,
        "records": result.records,
        "metric": result.metric,
        "metrics": dict(result.metrics),
        "risk": {"before": before.as_dict(), "after": after.as_dict()},
        "thresholds": [c._asdict() for c in checks],
        "passed": all(c.passed for c in checks),
        "suggestions": [s.as_dict() for s in (suggestions or [])],
        "contributions": {
            "before": [c.as_dict() for c in (contributions_before or [])],
            "after": [c.as_dict() for c in (contributions or [])],
        },
        "rare_concepts": dict(rare_concepts or {}),
        "policy": json.loads(policy.model_dump_json()),
        "search": {
            "lattice_size": result.lattice_size,
            "evaluations": result.evaluations,
            "seconds": result.seconds,
            "hierarchies": {q: h.name for q, h in result.hierarchies.items()},
            "heights": {q: h.height for q, h in result.hierarchies.items()},
        },
        "seconds": seconds if seconds is not None else result.seconds,
    }


def full_report(
    problem: Problem,
    result: SearchResult,
    policy: PrivacyPolicy,
    *,
    population: pl.DataFrame | None = None,
    rare_concepts: Mapping[str, int] | None = None,
    suggest: bool = True,
    seconds: float | None = None,
) -> dict[str, Any]:
    """Risk before/after, contributions, thresholds and (when one fails) suggested changes."""
    level = policy.thresholds.risk_level
    before = risk_at(problem, (0,) * problem.q, None, level, population)
    after = risk_at(problem, result.node, result.model, level, population)
    checks = evaluate_thresholds(after, policy)
    suggestions = (
        suggest_policy_change(problem, policy, population)
        if suggest and not all(c.passed for c in checks)
        else []
    )
    report = build_report(
        result,
        before,
        after,
        policy,
        contributions=qi_contributions(problem, result.node, result.model, level),
        contributions_before=qi_contributions(problem, (0,) * problem.q, None, level),
        suggestions=suggestions,
        rare_concepts=rare_concepts,
        seconds=seconds,
    )
    if population is None and policy.population_size:
        report["population_uniqueness"] = {
            when: _uniqueness(profile, policy) for when, profile in (("before", before), ("after", after))}
    return report


def _uniqueness(profile: RiskProfile, policy: PrivacyPolicy) -> dict[str, Any]:
    """Estimated population uniqueness (ARX's models, see anonymisation/risk.py) of a profile."""
    assert policy.population_size is not None
    if not profile.records:
        return {"model": "none", "share": 0.0}
    if policy.population_size < profile.records:
        return {"error": f"population_size {policy.population_size} is smaller than the {profile.records} records"}
    try:
        return population_uniqueness(profile.size_counts, model=policy.uniqueness_model,
                                     population_size=policy.population_size).as_dict()
    except ValueError as e:
        return {"model": policy.uniqueness_model, "error": str(e)}


# --------------------------------------------------------------------------- what a release protects against

FACT_KINDS = ("diagnoses, drugs, procedures, measurements (which test, not its value), devices, observations, "
              "specimens, oncology episodes, causes of death, and the care sites and providers of visits")


def protection(report: Mapping[str, Any], policy: PrivacyPolicy, fields: Sequence[str]) -> dict[str, list[str]]:
    """What the release protects against and what it does not cover, in words, from the report's
    figures (``km``: persons at risk per level, checked on the written files when ``km.checked``)."""
    k, m = policy.k, policy.attacker_facts
    km = report.get("km", {})
    after = km.get("after") or []
    earlier = report.get("versions", {}).get("earlier") or []
    names = ", ".join(f.replace("_", " ") for f in fields)
    checked = "checked on the written files" if km.get("checked") else "computed by the engine"
    protects: list[str] = []
    gaps: list[str] = []
    if report.get("mode", policy.mode) == "anonymised":
        protects.append(f"An attacker who knows a person's published person-level fields ({names}) finds at least "
                        f"{k} persons that match ({checked}).")
        if m:
            protects.append(f"The same attacker who also knows up to {m} facts of the person's record ({FACT_KINDS}) "
                            f"still finds at least {k} persons that match ({checked}).")
        if earlier:
            protects.append(f"A recipient who also holds the earlier versions ({', '.join(map(str, earlier))}) and "
                            "joins them on person_id: the same holds over the joined records.")
        else:
            protects.append("A recipient of later versions of this dataset: each later version is checked jointly "
                            "with this one.")
        gaps.append(f"More than {m} facts, or what the facts do not include: measurement values and units "
                    "(a cancer's stage group and TNM categories, coded results such as the smoking status), "
                    "quantities and doses, how often a fact occurs, and the order and spacing of events.")
        gaps.append("Attribute disclosure: when every matching person shares a diagnosis, the attacker learns it "
                    "(k^m limits singling out, not what a group has in common).")
    else:
        n_after = ", ".join(f"{j} fact(s): {v}" for j, v in enumerate(after)) or "not measured"
        protects.append(f"Ids and date offsets are re-derived for permit {report.get('permit')}: this release cannot "
                        "be joined on ids, or aligned on dates, with another permit's release or an anonymised one.")
        gaps.append(f"k and k^m are NOT guaranteed: persons at risk, by the number of facts an attacker knows "
                    f"({n_after}). The secure processing environment must keep the data from re-identification "
                    "(access control, output checking).")
    protects.append("No direct identifier of the source data (names, national ids, phones, e-mails, addresses, "
                    "hospital ids) is published: every table is scanned before publishing.")
    shift = f"±{policy.date_shift_days} days"
    coarse = {"day": "", "week": " and truncated to the week", "month": " and truncated to the month"}[policy.event_dates]
    gaps.append(f"Dates: each person's dates move by one secret offset ({shift}){coarse}, so intervals "
                "(length of a stay, time between two events) are kept; an attacker who knows one true date of a "
                "person's events can undo that person's offset, and an unusual sequence of events is not hidden.")
    if policy.publish_notes:
        gaps.append("Clinical notes are published de-identified: free text can still describe a person in ways no "
                    "check here measures.")
    gaps.append("Another project's release: ids differ (another project key), but a record can still resemble its "
                "counterpart there.")
    return {"protects": protects, "does_not_cover": gaps}


# --------------------------------------------------------------------------- the decision


def removal_message(report: Mapping[str, Any]) -> str | None:
    """One line when the release removes a quasi-identifier the policy does not allow to be removed:
    which, and what to do (with what the computed alternatives cost); None otherwise."""
    blocked = (report.get("utility") or {}).get("blocked") or []
    if not blocked:
        return None
    names = " and ".join(field_name(q) for q in blocked)
    alts = [str(s.get("text")) for s in report.get("suggestions") or [] if not s.get("removes_not_allowed")]
    return (f"{names} removed by anonymisation (one published value for everyone): allow it with "
            f"'allow_removal: true' on that quasi-identifier in the policy, or lower k or raise the suppression "
            f"limit" + (f" (would keep it: {'; '.join(alts)})" if alts else ""))


def candidate_header(dataset: str, version: int, blocked_by: Sequence[str]) -> dict[str, str]:
    """The report's top section for a release built but not yet published: blocked (and why), or a
    candidate."""
    if blocked_by:
        return {"dataset": dataset, "version": f"{version} (not published)", "status": "blocked",
                "next_step": "blocked: " + "; ".join(blocked_by) + ". Change the policy in ds4h.yaml (see "
                "'What would pass' below) and re-run `uv run ds4h run`; nothing was published."}
    return {"dataset": dataset, "version": f"{version} (when published)", "status": "candidate",
            "next_step": f"publish it with `uv run ds4h run` (it becomes version {version} of {dataset})."}


def published_header(dataset: str, version: int, demo: bool) -> dict[str, str]:
    if demo:
        return {"dataset": dataset, "version": str(version), "status": "published (DEMO, approved automatically)",
                "next_step": f"none: a DEMO release is approved automatically; check a copy with "
                f"`uv run ds4h verify {dataset} {version}`."}
    return {"dataset": dataset, "version": str(version), "status": "published, awaiting approval",
            "next_step": f"read this report, then approve with `uv run ds4h approve {dataset} {version} --by NAME "
            "--reason WHY` (LATEST moves to it), or reject it with `uv run ds4h reject "
            f"{dataset} {version} --by NAME --reason WHY`."}


# --------------------------------------------------------------------------- HTML


def _e(x: object) -> str:
    return html.escape(str(x), quote=True)


def _fmt(x: object) -> str:
    if isinstance(x, float):
        if x == 0:
            return "0"
        return f"{x:.4g}" if abs(x) < 1e5 else f"{x:,.0f}"
    if isinstance(x, int):
        return f"{x:,}"
    return str(x)


def svg_bars(
    title: str,
    labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[float], str]],
    *,
    width: int = 680,
    value_format: str = "{:.3g}",
    empty: str = "",
) -> str:
    """Horizontal grouped bar chart as inline SVG (one group per label, one bar per series). A chart
    whose values are all zero (or missing) is not drawn: one sentence says so instead (``empty``)."""
    values = [v for _, vals, _ in series for v in vals if v is not None and math.isfinite(v)]
    if not any(values):
        return f'<p class="empty">{_e(title)}: {_e(empty or "every value is 0, nothing to draw.")}</p>'
    bar_h, gap = 14, 10
    longest = max([len(str(x)) for x in labels] + [1])
    left = max(120, 7 * longest + 16)  # labels are never clipped
    right = 80
    width = max(width, left + right + 200)
    n_series = max(len(series), 1)
    group_h = n_series * bar_h + gap
    legend_h = 20
    height = 30 + legend_h + len(labels) * group_h + 10
    peak = max([*values, 0.0])
    scale = (width - left - right) / peak if peak > 0 else 0.0
    parts = [
        f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{_e(title)}" font-family="sans-serif" font-size="11">',
        f'<text x="4" y="16" font-size="13" font-weight="bold">{_e(title)}</text>',
    ]
    x = left
    for name, _, colour in series:
        parts.append(f'<rect x="{x}" y="26" width="10" height="10" fill="{colour}"/>')
        parts.append(f'<text x="{x + 14}" y="35">{_e(name)}</text>')
        x += 14 + 7 * len(name) + 16
    y0 = 30 + legend_h
    for i, label in enumerate(labels):
        gy = y0 + i * group_h
        parts.append(
            f'<text x="{left - 6}" y="{gy + n_series * bar_h / 2 + 4}" text-anchor="end">{_e(label)}</text>'
        )
        for s, (_, vals, colour) in enumerate(series):
            v = vals[i] if i < len(vals) else None
            by = gy + s * bar_h
            if v is None:
                parts.append(f'<text x="{left + 2}" y="{by + 11}" fill="#888">n/a</text>')
                continue
            w = max(v * scale, 0.0)
            parts.append(f'<rect class="bar" x="{left}" y="{by}" width="{w:.1f}" height="{bar_h - 2}" '
                         f'fill="{colour}"/>')
            parts.append(f'<text x="{left + w + 4:.1f}" y="{by + 11}">{_e(value_format.format(v))}</text>')
    parts.append("</svg>")
    return '<figure class="chart">' + "".join(parts) + "</figure>"


def _size_buckets(size_counts: Mapping[str, int]) -> dict[str, int]:
    """Records per class-size bucket: 1, 2, 3-4, 5-9, 10-19, 20-49, 50-99, 100+."""
    edges = [(1, 1), (2, 2), (3, 4), (5, 9), (10, 19), (20, 49), (50, 99), (100, None)]
    out: dict[str, int] = {}
    for lo, hi in edges:
        label = f"{lo}+" if hi is None else (str(lo) if lo == hi else f"{lo}-{hi}")
        out[label] = sum(
            int(s) * int(c) for s, c in size_counts.items() if int(s) >= lo and (hi is None or int(s) <= hi)
        )
    return out


_CSS = """
body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.5em}h2{font-size:1.15em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left}
th{background:#f4f4f4}.pass{color:#0a6b2f;font-weight:bold}.fail{color:#b00020;font-weight:bold}
.verdict{font-size:1.2em;padding:.6em 1em;border-radius:4px;display:inline-block}
.ok{background:#e3f4e8}.ko{background:#fbe4e7}pre{background:#f7f7f7;padding:.6em;overflow:auto}
.release th{width:8em}.chart{margin:.5em 0;overflow-x:auto}svg{max-width:none}dt{font-weight:bold;float:left;
margin-right:.5em}dd{margin:0 0 .3em 0}.empty{color:#555;font-style:italic}
"""


def _pct(part: float, whole: float) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole else "-"


def _release_sections(report: Mapping[str, Any]) -> list[str]:
    """Mode, what the release protects against, k^m before/after, facts per table, levels tried."""
    out: list[str] = []
    mode = report.get("mode")
    if mode:
        out.append(f"<p>Release mode: <b>{_e(mode)}</b>"
                   + (f" (data permit {_e(report.get('permit'))})" if report.get("permit") else "") + ".</p>")
    prot = report.get("protection") or {}
    if prot:
        out.append("<h2>What this release protects against</h2><ul>")
        out += [f"<li>{_e(x)}</li>" for x in prot.get("protects", [])]
        out.append("</ul><h2>What it does not cover</h2><ul>")
        out += [f"<li>{_e(x)}</li>" for x in prot.get("does_not_cover", [])]
        out.append("</ul>")
    km = report.get("km") or {}
    if km:
        k = km.get("k")
        out.append(f"<h2>Persons in a group of fewer than {_e(k)}</h2>")
        out.append("<p>For an attacker who knows a person's published person-level fields and j facts of the "
                   "record: how many persons match fewer than k persons. Before: the pseudonymised data (exact "
                   "fields and facts); after: the release"
                   + (" (checked on the written files)" if km.get("checked") else "") + ".</p>")
        cols = ["before", "after"] + (["after, joined with earlier versions"] if km.get("after_joint") else [])
        out.append("<table><tr><th>facts known (j)</th>" + "".join(f"<th>{_e(c)}</th>" for c in cols) + "</tr>")
        before, after, joint = km.get("before") or [], km.get("after") or [], km.get("after_joint") or []
        pb, pa, pj = km.get("persons_before") or 0, km.get("persons_after") or 0, km.get("persons_joint") or 0
        for j in range(max(len(before), len(after))):
            cells = [f"{_fmt(before[j])} of {_fmt(pb)}" if j < len(before) else "-",
                     f"{_fmt(after[j])} of {_fmt(pa)}" if j < len(after) else "-"]
            if km.get("after_joint"):
                cells.append(f"{_fmt(joint[j])} of {_fmt(pj)}" if j < len(joint) else "-")
            out.append(f"<tr><td>{j}</td>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        out.append("</table>")
    facts = (report.get("facts") or {}).get("tables") or {}
    if facts:
        out.append("<h2>Facts of the records</h2><p>Per table, the facts (concept, source code, care site, ...) "
                   "kept exactly, generalised (an ancestor concept, a shorter code) or suppressed, and the rows "
                   "removed with their facts.</p><table><tr><th>table</th><th>rows</th><th>rows removed</th>"
                   "<th>facts exact</th><th>generalised</th><th>suppressed</th></tr>")
        for t, o in facts.items():
            tot = {x: sum(int(v.get(x, 0)) for v in o.get("facts", {}).values())
                   for x in ("exact", "generalised", "suppressed")}
            whole = sum(tot.values())
            out.append(f"<tr><td>{_e(t)}</td><td>{_fmt(o.get('rows', 0))}</td>"
                       f"<td>{_fmt(o.get('removed', 0))} ({_pct(o.get('removed', 0), o.get('rows', 0))})</td>"
                       + "".join(f"<td>{_pct(tot[x], whole)}</td>" for x in ("exact", "generalised", "suppressed"))
                       + "</tr>")
        out.append("</table>")
    tried = report.get("levels_tried") or []
    if tried:
        out.append("<h2>Levels tried</h2><p>From the optimal levels of the metric, each person-level field was "
                   "generalised one more level while the combined loss (fields and facts, weighted by "
                   "<code>fact_weight</code>) went down; facts lost are estimated on a sample of classes.</p>"
                   "<table><tr><th>levels</th><th>loss of the fields</th><th>facts lost (estimate)</th>"
                   "<th>combined</th><th>persons suppressed</th><th>chosen</th></tr>")
        for t in tried:
            words = t.get("levels_in_words") or {}
            lv = ", ".join(f"{field_name(str(q))}: {words.get(q, f'level {v}')}" for q, v in t.get("levels", {}).items())
            out.append(f"<tr><td>{_e(lv)}</td><td>{_fmt(t.get('fields_loss'))}</td>"
                       f"<td>{_fmt(t.get('facts_lost_estimate'))}</td><td>{_fmt(t.get('combined'))}</td>"
                       f"<td>{_fmt(t.get('persons_suppressed'))}</td><td>{'yes' if t.get('chosen') else ''}</td></tr>")
        out.append("</table>")
    return out


MEASURES = {
    "prosecutor_max": ("highest prosecutor risk", "1 / the size of the smallest group of persons sharing the "
                       "published fields: the chance an attacker who knows the person is in the data picks the "
                       "right record"),
    "prosecutor_avg": ("average prosecutor risk", "groups / records: the share of records such an attacker "
                       "re-identifies on average"),
    "records_at_risk": ("share at risk", "share of records whose prosecutor risk is above risk_level"),
    "sample_uniques": ("sample uniques", "share of records alone in their group (unique on the published fields)"),
    "marketer": ("marketer risk", "share of records an attacker matching every record at once re-identifies"),
    "journalist_max": ("highest journalist risk", "as the prosecutor's, against the population table (the "
                       "attacker does not know who is in the data)"),
    "journalist_avg": ("average journalist risk", "average of the journalist risk over the records"),
}
THRESHOLD_HELP = {
    "highest prosecutor risk": MEASURES["prosecutor_max"][1],
    "average prosecutor risk": MEASURES["prosecutor_avg"][1],
}
TERMS = [
    ("k", "every combination of published person-level fields (year of birth, sex, place, death year) is shared "
          "by at least k persons"),
    ("k^m", "with any m facts of a record (a diagnosis, a drug, ...) added, still at least k persons match"),
    ("suppression", "persons removed from the release so that the others reach k; the policy caps their share"),
    ("generalisation level", "how coarse a field is published: exact, in bands, a larger area, or removed"),
]


def _policy_rows(policy: Mapping[str, Any]) -> list[str]:
    """The policy as table rows (quasi-identifiers as a nested table), not raw JSON."""
    out: list[str] = []
    for key, value in policy.items():
        if key == "quasi_identifiers" and isinstance(value, list):
            inner = ("<table><tr><th>field</th><th>hierarchy</th><th>may be removed</th></tr>"
                     + "".join(f"<tr><td>{_e(field_name(str(q.get('column'))))}</td><td>{_e(q.get('hierarchy'))}</td>"
                               f"<td>{'yes' if q.get('allow_removal') else 'no'}</td></tr>" for q in value)
                     + "</table>")
            out.append(f"<tr><th>quasi-identifiers</th><td>{inner}</td></tr>")
        elif isinstance(value, Mapping):
            shown = ", ".join(f"{_e(str(k).replace('_', ' '))}: {_e('not set' if v is None else _fmt(v))}"
                              for k, v in value.items())
            out.append(f"<tr><th>{_e(str(key).replace('_', ' '))}</th><td>{shown}</td></tr>")
        else:
            shown = "not set" if value is None else ("yes" if value is True else "no" if value is False else _fmt(value))
            out.append(f"<tr><th>{_e(str(key).replace('_', ' '))}</th><td>{_e(shown)}</td></tr>")
    return out


def _level_text(report: Mapping[str, Any]) -> str:
    words = report.get("levels_in_words")
    if isinstance(words, Mapping) and words:
        return ", ".join(f"{field_name(str(q))}: {w}" for q, w in words.items())
    return ", ".join(f"{q}=level {lv}" for q, lv in report.get("levels", {}).items() if not str(q).startswith("_v"))


def _utility_lines(report: Mapping[str, Any]) -> list[str]:
    """Removed, allowed-removed and constant fields, in words."""
    out: list[str] = []
    for f in (report.get("utility") or {}).get("fields") or []:
        name = field_name(str(f["qi"]))
        if f["status"] == "removed" and f["allowed"]:
            out.append(f"{name} is removed: every published value is the same ({f['words']}), as the policy allows "
                       "(allow_removal). Analyses cannot use it.")
        elif f["status"] == "removed":
            out.append(f"{name} is REMOVED: every published value is the same ({f['words']}), and the policy does "
                       "not allow it: the release is blocked.")
        elif f["status"] == "constant":
            out.append(f"{name} has one value in the input already (e.g. nobody died): not removed by anonymisation.")
    return out


def render_html(report: Mapping[str, Any], title: str = "Re-identification risk report",
                header: Mapping[str, str] | None = None) -> str:
    """A self-contained HTML page (inline CSS and SVG, no script, no external resource). ``header``:
    dataset, version, status and next step, shown at the top."""
    risk = report["risk"]
    b, a = risk["before"], risk["after"]
    km = report.get("km") or {}
    blocked_qis = (report.get("utility") or {}).get("blocked") or []
    passed = bool(report.get("passed", False)) and bool(km.get("passed", True)) and not blocked_qis
    if passed:
        verdict = "Every risk threshold of the policy holds"
        if km.get("passed") and report.get("mode") == "anonymised":
            verdict += (f", and the {'written files are' if km.get('checked') else 'release is'} "
                        f"k^m-anonymous (k = {km.get('k')}, m = {km.get('m')})")
        removed = (report.get("utility") or {}).get("removed") or []
        if removed:
            verdict += f"; removed as the policy allows: {', '.join(field_name(q) for q in removed)}"
        verdict += "."
    elif not bool(report.get("passed", False)):
        verdict = "At least one risk threshold does NOT hold."
    elif blocked_qis:
        verdict = (f"{' and '.join(field_name(q) for q in blocked_qis)} would be removed (one value for everyone), "
                   "which the policy does not allow.")
    else:
        verdict = f"The release is NOT k^m-anonymous (k = {km.get('k')}, m = {km.get('m')}): see below."
    out: list[str] = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
    ]
    if header:
        status = str(header.get("status", ""))
        css = "ko" if status.startswith("blocked") else "ok"
        out.append('<table class="release">'
                   f"<tr><th>dataset</th><td>{_e(header.get('dataset', ''))}</td></tr>"
                   f"<tr><th>version</th><td>{_e(header.get('version', ''))}</td></tr>"
                   f'<tr><th>status</th><td id="status" class="{css}">{_e(status)}</td></tr>'
                   f'<tr><th>next step</th><td id="next-step">{_e(header.get("next_step", ""))}</td></tr></table>')
    out.append(f'<p class="verdict {"ok" if passed else "ko"}">{_e(verdict)}</p>')
    out.append(f"<p>Person-level fields as published: <b>{_e(_level_text(report))}</b>.</p>")
    lines = _utility_lines(report)
    if lines:
        out.append("<ul>" + "".join(f"<li>{_e(x)}</li>" for x in lines) + "</ul>")
    out.append("<h2>Thresholds</h2><table id=\"thresholds\"><tr><th>threshold</th><th>value</th><th>limit</th>"
               "<th>holds</th><th>what it measures</th></tr>")
    for c in report.get("thresholds", []):
        ok = bool(c["passed"])
        helptext = THRESHOLD_HELP.get(str(c["name"]), MEASURES["records_at_risk"][1]
                                      if str(c["name"]).startswith("share") else "")
        out.append(
            f"<tr><td>{_e(c['name'])}</td><td>{_fmt(float(c['value']))}</td><td>{_fmt(float(c['limit']))}</td>"
            f'<td class="{"pass" if ok else "fail"}">{"yes" if ok else "no"}</td><td>{_e(helptext)}</td></tr>'
        )
    out.append("</table>")
    out.append("<dl>" + "".join(f"<dt>{_e(t)}</dt><dd>{_e(d)}</dd>" for t, d in TERMS) + "</dl>")
    if report.get("suggestions"):
        out.append("<h2>What would pass</h2><p>Each change was tried by re-running the search; what it costs "
                   "follows it.</p><ul>")
        for sg in report["suggestions"]:
            warn = sg.get("removes_not_allowed") or []
            out.append(f"<li><b>{_e(sg['text'])}</b>"
                       + (f" (it removes {_e(', '.join(field_name(q) for q in warn))}, which the policy does not "
                          "allow)" if warn else "") + "</li>")
        out.append("</ul>")
    elif not passed:
        out.append(
            "<h2>What would pass</h2><p>No change of k or of the suppression limit tried here passes.</p>"
        )

    out += _release_sections(report)
    out.append("<h2>Person-level fields</h2><table>")
    rows = [
        ("records in", report.get("records")),
        ("records suppressed", report.get("suppressed")),
        ("records released", a.get("records")),
        ("equivalence classes (groups of persons sharing the published fields)", report.get("classes")),
        ("metric optimised", report.get("metric")),
        ("levels", _level_text(report)),
    ]
    for name, count in dict(report.get("rare_concepts", {})).items():
        rows.append((f"rare concepts: {name}", count))
    for name, value in rows:
        out.append(f"<tr><th>{_e(name)}</th><td>{_e(_fmt(value))}</td></tr>")
    out.append("</table>")
    supp = [("suppressed", float(report.get("suppressed", 0) or 0))]
    supp += [(f"rare: {k}", float(v)) for k, v in dict(report.get("rare_concepts", {})).items()]
    out.append(
        svg_bars(
            "Records suppressed and rare concepts",
            [s[0] for s in supp],
            [("records", [s[1] for s in supp], "#8c6bb1")],
            value_format="{:,.0f}",
            empty="no record was suppressed.",
        )
    )

    out.append("<h2>Risk before and after</h2>")
    keys = ["prosecutor_max", "prosecutor_avg", "records_at_risk", "sample_uniques", "marketer"]
    if a.get("journalist_max") is not None:
        keys += ["journalist_max", "journalist_avg"]
    out.append("<table><tr><th>measure</th><th>before</th><th>after</th><th>what it means</th></tr>")
    for k in keys:
        name, meaning = MEASURES[k]
        out.append(f"<tr><td>{_e(name)}</td><td>{_fmt(b.get(k))}</td><td>{_fmt(a.get(k))}</td>"
                   f"<td>{_e(meaning)}</td></tr>")
    out.append("</table>")
    out.append(
        svg_bars(
            "Risk (share or probability)",
            [MEASURES[k][0] for k in keys],
            [
                ("before", [float(b.get(k) or 0.0) for k in keys], "#d95f02"),
                ("after", [float(a.get(k) or 0.0) for k in keys], "#1b9e77"),
            ],
            empty="every risk measure is 0 before and after.",
        )
    )
    pu = report.get("population_uniqueness") or {}
    if pu:
        out.append("<h2>Population uniqueness (estimated)</h2><p>Share of records unique in the whole population "
                   "(not only in the data), estimated from the class sizes and the population size with ARX's models "
                   "(Dankar et al.'s rule picks Pitman, Zayatz or SNB by the sampling fraction).</p>"
                   "<table><tr><th></th><th>model</th><th>share of records</th><th>sample uniques</th></tr>")
        for when in ("before", "after"):
            e = pu.get(when) or {}
            out.append(f"<tr><td>{when}</td><td>{_e(e.get('model', '-'))}</td><td>{_fmt(e.get('share', e.get('error', '-')))}"
                       f"</td><td>{_fmt(e.get('sample_uniques', '-'))}</td></tr>")
        out.append("</table>")
    bb, ab = _size_buckets(b.get("size_counts", {})), _size_buckets(a.get("size_counts", {}))
    out.append("<h2>Equivalence class sizes</h2><p>Records by the number of persons sharing their published "
               "fields: before anonymisation most are alone (size 1); after, every group has at least k.</p>")
    out.append(
        svg_bars(
            "Records by size of their equivalence class",
            list(bb),
            [
                ("before", [float(v) for v in bb.values()], "#d95f02"),
                ("after", [float(v) for v in ab.values()], "#1b9e77"),
            ],
            value_format="{:,.0f}",
            empty="no records.",
        )
    )
    for when in ("before", "after"):
        contrib = report.get("contributions", {}).get(when) or []
        if not contrib:
            continue
        out.append(f"<h2>Contribution of each quasi-identifier ({_e(when)})</h2>")
        out.append(
            "<p>Share of records that are unique in the data as it is, without the quasi-identifier, "
            "and with it generalised one more level.</p>"
        )
        labels = [field_name(str(c["qi"])) for c in contrib]
        out.append(
            svg_bars(
                f"Sample uniques ({when})",
                labels,
                [
                    ("as is", [float(c["uniques"]) for c in contrib], "#7570b3"),
                    ("without it", [float(c["uniques_without"]) for c in contrib], "#e7298a"),
                    ("one level up", [c["uniques_one_level_up"] for c in contrib], "#66a61e"),
                ],
                empty=f"no record is unique {'before' if when == 'before' else 'after'} anonymisation, with or "
                "without any one field.",
            )
        )
    out.append("<h2>Utility</h2><table><tr><th>metric</th><th>value</th></tr>")
    for k, v in report.get("metrics", {}).items():
        out.append(f"<tr><td>{_e(k)}</td><td>{_fmt(v)}</td></tr>")
    out.append("</table>")
    out.append('<h2>Policy</h2><table id="policy">' + "".join(_policy_rows(report.get("policy", {}))) + "</table>")
    search_info = report.get("search", {})
    out.append(
        f"<p>Search: {_fmt(search_info.get('evaluations'))} of {_fmt(search_info.get('lattice_size'))} "
        f"lattice nodes evaluated.</p>"
    )
    out.append("</body></html>")
    return "\n".join(out)


def risk_profile_from_dict(d: Mapping[str, Any]) -> RiskProfile:
    """Rebuild a profile from its JSON form (its class-size counts)."""
    sizes: list[int] = []
    for s, c in dict(d.get("size_counts", {})).items():
        sizes.extend([int(s)] * int(c))
    j = d.get("journalist_max")
    journalist = (float(j), float(d.get("journalist_avg") or 0.0)) if j is not None else None
    marketer = d.get("marketer")
    return profile_from_sizes(sizes, float(d.get("threshold", 0.2)), journalist,
                              marketer=float(marketer) if marketer is not None else None)
