"""The release: one global privacy decision over all sites, applied to every site's rows.

1. persons are consolidated across sites (one row per pseudonymous person);
2. their person-level fields (year of birth, sex, location, death year, and race and ethnicity as
   soon as they vary) form a frequency table; earlier published versions of the dataset add one
   fixed column each (their class key of the person, or ABSENT); the k-anonymity engine chooses the
   optimal generalisation with record suppression;
3. anonymised mode: the facts of each record are made k^m-anonymous within the classes
   (anonymisation/kmanon.py), generalising a concept up CONCEPT_ANCESTOR or a code to a shorter
   code before suppressing a single fact; pseudonymised mode: facts are kept and measured, ids and
   date offsets are re-derived per data permit;
4. the decision is applied table by table: suppressed persons' rows go, facts take their new
   values, what derives from a removed row follows it (eras recomputed, episode links dropped,
   observation periods recomputed), dates move (death anchor, permit shift) and are coarsened;
5. every row is accounted for per stage, site and table: ``generalised`` rows stay in ``out`` (and
   are counted as such besides), removed facts are ``fact_suppressed``.

Generalised year of birth is stored as the first year of its band (``year_of_birth`` stays an
integer as the CDM requires); the manifest's ``generalisation`` section says which band width.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from anonymisation import dates
from anonymisation.consolidate import consolidate_persons
from anonymisation.facts import (
    ROWS,
    UNIT,
    TableOutcome,
    TableUnits,
    UnitLinks,
    apply_to_rows,
    build_factbook,
    collect_units,
    unit_decisions,
    unit_links,
    units_matrix,
)
from anonymisation.hierarchy import Hierarchy
from anonymisation.kanon import (
    Evaluator,
    Metric,
    NoSolutionError,
    PrivacyModel,
    Problem,
    SearchResult,
    apply_levels,
    encode,
    frequency_table,
    group_ids,
    hierarchies_for,
)
from anonymisation.kmanon import NONE, KmResult, Units, enforce_km, persons_at_risk
from anonymisation.locations import location_qi, release_location_rows
from anonymisation.permit import rekey_table
from anonymisation.providers import protect_providers
from anonymisation.pseudonym import CollisionError, id63_many
from anonymisation.risk import read_population
from anonymisation.risk_report import full_report, model_of, protection, search_keeping, suggest_keeping
from anonymisation.utility import ceilings, describe_levels, field_utility, utility_summary
from anonymisation.versions import Earlier, read_earlier
from schemas import omop as cdm
from schemas.column_policy import EPISODE_EVENT_FIELDS, EVENT_LINKS, TOKENISED
from schemas.facts import FACT_TABLES
from schemas.policy import PrivacyPolicy
from transforms import eras
from transforms.ingest import accounting_frame
from transforms.omop import PERIOD_DATES
from transforms.storage import parquet_rows, scan_parquet_files

IntArray = npt.NDArray[np.int64]
_KEPT = frozenset({"person", "location", "observation_period", "cdm_source"})  # small, used after the loop
# tables released whole (all sites at once): small, and without person_id (publishing sorts a table by
# person_id; one without keeps the release's order, the whole table's sort); a provider's attributes
# need every provider
_WHOLE = frozenset({"provider", "care_site", "cdm_source", "episode_event"})
SEX = {8507: "M", 8532: "F"}
SEX_BACK = {"M": 8507, "F": 8532}
MISSING = "*"
# every published person-level field: a QI of the policy, or added (flat) as soon as it varies
FIELDS = ("year_of_birth", "sex", "postcode", "death_year", "race", "ethnicity")
# the order tables are released in: events before what derives from them
ORDER = ("visit_occurrence", "visit_detail", "condition_occurrence", "drug_exposure", "procedure_occurrence",
         "device_exposure", "measurement", "observation", "specimen", "note", "death", "episode", "episode_event",
         "condition_era", "drug_era", "dose_era", "care_site", "provider", "cdm_source")


@dataclass
class ReleaseResult:
    tables: dict[str, pl.DataFrame]
    accounting: pl.DataFrame
    search: SearchResult
    report: dict[str, Any]  # the steward's risk report (JSON-ready; render_html draws it)
    summary: dict[str, Any] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)  # rows of every released table (sunk ones too)
    timings: dict[str, float] = field(default_factory=dict)  # never in the published report (byte-stable)
    # person_id (pseudonymous), _delta_days: how far the release moved each person's dates beyond the
    # pseudonymisation offset (death anchor, permit shift; none: 0), before event_dates coarsening
    date_deltas: pl.DataFrame | None = None

    @property
    def risk_after(self) -> dict[str, Any]:
        return dict(self.report["risk"]["after"])

    @property
    def risk_before(self) -> dict[str, Any]:
        return dict(self.report["risk"]["before"])


# --------------------------------------------------------------------------- person-level fields


def death_years(deaths: pl.DataFrame | None) -> pl.DataFrame:
    """person_id, death_year (the earliest death of the person), from the pseudonymised death rows."""
    if deaths is None or deaths.is_empty():
        return pl.DataFrame(schema={"person_id": pl.Int64, "death_year": pl.Int32})
    year = pl.col("death_year") if "death_year" in deaths.columns else pl.col("death_date").dt.year()
    return deaths.group_by("person_id").agg(death_year=year.min().cast(pl.Int32), death_date=pl.col("death_date").min())


def qi_frame(persons: pl.DataFrame, locations: pl.DataFrame, deaths: pl.DataFrame | None = None) -> pl.DataFrame:
    """person_id and every person-level field as a string (missing values as ``*``: the living have
    no death year, which no generalisation changes): year_of_birth, sex, postcode, death_year, race,
    ethnicity."""
    loc = location_qi(locations.unique("location_id"))
    dead = death_years(deaths).select("person_id", death_year=pl.col("death_year").cast(pl.String))

    def coded(col: str) -> pl.Expr:
        return pl.col(col).fill_null(0).cast(pl.String) if col in persons.columns else pl.lit("0")

    return persons.join(loc, on="location_id", how="left").join(dead, on="person_id", how="left").select(
        "person_id",
        year_of_birth=pl.col("year_of_birth").cast(pl.String),
        sex=pl.col("gender_concept_id").replace_strict(SEX, default="U", return_dtype=pl.String),
        postcode=pl.col("postcode").fill_null(MISSING),
        death_year=pl.col("death_year").fill_null(MISSING),
        race=coded("race_concept_id"),
        ethnicity=coded("ethnicity_concept_id"),
    )


def qi_specs(qis: pl.DataFrame, policy: PrivacyPolicy) -> tuple[dict[str, str], list[str]]:
    """The QI columns and their hierarchies: the policy's, plus every other person-level field that
    varies, flat (published fields are QIs whatever the policy lists: docs/privacy.md); the year of
    birth is none when ``birth: none`` (it is not published)."""
    specs = {q.column: q.hierarchy for q in policy.quasi_identifiers}
    if policy.birth == "none":
        specs.pop("year_of_birth", None)
    missing = [c for c in specs if c not in qis.columns]
    if missing:
        raise ValueError(f"policy names quasi-identifier(s) {missing}; person-level fields are {qis.columns[1:]}")
    auto = [c for c in FIELDS if c not in specs and qis[c].n_unique() > 1
            and not (c == "year_of_birth" and policy.birth == "none")]
    for c in auto:
        specs[c] = "builtin:flat"
    return specs, auto


def _band_start(label: pl.Expr) -> pl.Expr:
    """'1950' -> 1950, '[1950-1954]' or '1950-1954' -> 1950, '*' -> null."""
    return label.str.extract(r"(\d{3,4})", 1).cast(pl.Int32)


def _band(label: str) -> tuple[int, int] | None:
    years = [int(x) for x in re.findall(r"\d{4}", label)]
    if not years:
        return None
    return min(years), max(years)


def _fixed_hierarchy(name: str, values: list[str]) -> Hierarchy:
    return Hierarchy.fixed(name, sorted({str(v) for v in values}))


# --------------------------------------------------------------------------- levels that spare facts


def result_at(problem: Problem, model: PrivacyModel, metric: Metric, node: tuple[int, ...],
              evaluations: int = 0, seconds: float = 0.0) -> SearchResult:
    """A search result for a given node (its suppressed classes and every metric)."""
    ev = Evaluator(problem, model)
    final, sup_codes = ev.suppressed_classes(node)
    if not final.anonymous:
        raise NoSolutionError(f"node {node} is not {model.k}-anonymous within the suppression limit")
    sup_frame = pl.DataFrame({
        q: pl.Series(q, [problem.hierarchies[j].labels[node[j]][int(c)] for c in sup_codes[:, j]], dtype=pl.String)
        for j, q in enumerate(problem.qis)
    })
    return SearchResult(problem.qis, {q: int(node[j]) for j, q in enumerate(problem.qis)}, node, metric,
                        final.metrics[metric], final.classes, final.suppressed, problem.n, final.metrics, sup_frame,
                        problem.lattice_size, evaluations, seconds, model,
                        dict(zip(problem.qis, problem.hierarchies, strict=True)))


@dataclass
class FactLoss:
    """Estimates the share of fact rows a node loses, averaged over the fact tables: rows of suppressed
    persons, plus what the k^m engine itself removes (1) or generalises (1/2) on a sample of the
    node's classes (all of them for a small release, else every n-th class by size, about ``sample_units``
    units)."""

    leaf: IntArray  # (persons, q) leaf codes of every person
    units: Units
    rows: npt.NDArray[np.float64]  # rows behind each unit
    table: IntArray  # fact table of each unit
    tables: int
    parent: IntArray
    m: int
    sample_units: int = 100_000  # the engine runs on about this many units per node tried
    _seen: dict[bytes, float] = field(default_factory=dict)  # a partition already estimated

    def __call__(self, problem: Problem, node: tuple[int, ...], k: int) -> float:
        hs = problem.hierarchies
        gen = [hs[j].maps[lv][self.leaf[:, j]] for j, lv in enumerate(node)]
        key, space, _ = group_ids(gen, [hs[j].cardinality(lv) for j, lv in enumerate(node)], len(self.leaf))
        size = np.bincount(key, minlength=space)
        # the same partition of the persons (another node that splits nothing more) loses the same
        _, first, inv = np.unique(key, return_index=True, return_inverse=True)
        rank = np.empty(len(first), dtype=np.int64)
        rank[np.argsort(first)] = np.arange(len(first))
        signature = hashlib.blake2b(rank[inv].tobytes() + str(k).encode(), digest_size=16).digest()
        if signature in self._seen:
            return self._seen[signature]
        kept_classes = np.flatnonzero(size >= k)
        share = min(1.0, self.sample_units / max(len(self.units.person), 1))
        step = max(1, int(1.0 / share)) if len(kept_classes) > 20 else 1
        sampled = np.zeros(space, dtype=bool)
        by_size = kept_classes[np.lexsort((kept_classes, size[kept_classes]))]  # every size is represented
        sampled[by_size[step // 2::step]] = True
        cls = key[self.units.person]
        person_kept = size[key] >= k
        unit_kept = person_kept[self.units.person]
        total = np.bincount(self.table, weights=self.rows, minlength=self.tables)
        lost: npt.NDArray[np.float64] = np.bincount(self.table[~unit_kept], weights=self.rows[~unit_kept],
                                                    minlength=self.tables).astype(np.float64)
        pick = unit_kept & sampled[cls]
        if pick.any():
            sub = Units(self.units.person[pick], self.units.facts[pick], self.units.removable[pick])
            person_class = np.where(person_kept, key, -1)
            r = enforce_km(sub, person_class, self.parent, k, self.m)
            moved = (r.facts != sub.facts).any(axis=1) & ~r.removed
            weight = r.removed.astype(np.float64) + 0.5 * moved
            t = self.table[pick]
            kept_rows = np.bincount(self.table[unit_kept], weights=self.rows[unit_kept], minlength=self.tables)
            sample_rows = np.bincount(t, weights=self.rows[pick], minlength=self.tables)
            sample_lost = np.bincount(t, weights=self.rows[pick] * weight, minlength=self.tables)
            rate = np.divide(sample_lost, sample_rows, out=np.zeros(self.tables), where=sample_rows > 0)
            lost = lost + rate * kept_rows
        shares = lost[total > 0] / total[total > 0]
        self._seen[signature] = float(shares.mean()) if len(shares) else 0.0
        return self._seen[signature]


def fact_loss_estimator(frame: pl.DataFrame, problem: Problem, units: list[TableUnits], um: Units,
                        parent: IntArray, m: int) -> FactLoss:
    """What ``FactLoss`` needs: persons' leaf codes (in the order of ``frame``) and the units."""
    leaf = np.stack([np.asarray(frame[q].cast(pl.String).replace_strict(
        h.labels[0], list(range(h.domain_size)), return_dtype=pl.Int64).to_numpy(), dtype=np.int64)
        for q, h in zip(problem.qis, problem.hierarchies, strict=True)], axis=1)
    table_of = np.concatenate([np.full(tu.frame.height, i, dtype=np.int64) for i, tu in enumerate(units)])
    rows = np.concatenate([tu.frame["_rows"].to_numpy().astype(np.float64) for tu in units])
    return FactLoss(leaf, um, rows, table_of, len(units), parent, m)


def spare_facts(problem: Problem, result: SearchResult, model: PrivacyModel, policy: PrivacyPolicy,
                loss: FactLoss, movable: list[int]) -> tuple[tuple[int, ...], list[dict[str, Any]]]:
    """From the optimal node, generalise one person-level field at a time while the combined loss
    (1 - w) * ARX loss of the fields + w * estimated share of facts lost (w = policy.fact_weight)
    decreases. Returns the node and every node tried (for the report)."""
    ev = Evaluator(problem, model)
    w = policy.fact_weight

    def cost(node: tuple[int, ...]) -> dict[str, Any] | None:
        e = ev.evaluate(node, keep=False, metrics=True)
        if not e.anonymous:
            return None
        qi = float(e.metrics["loss"])
        fl = loss(problem, node, model.k)
        return {"levels": {problem.qis[j]: int(node[j]) for j in movable}, "fields_loss": round(qi, 6),
                "facts_lost_estimate": round(fl, 6), "combined": round((1 - w) * qi + w * fl, 6),
                "persons_suppressed": int(e.suppressed)}

    node = tuple(result.node)
    # never generalise a field further into collapse than the search had to (the utility guard)
    ceiling = [max(c, lv) for c, lv in zip(ceilings(problem.qis, problem.hierarchies, policy), node, strict=True)]
    here = cost(node)
    assert here is not None
    tried = [{**here, "chosen": False}]
    while True:
        best: tuple[tuple[int, ...], dict[str, Any]] | None = None
        for j in movable:
            if node[j] >= min(problem.hierarchies[j].height, ceiling[j]):
                continue
            cand = tuple(lv + 1 if i == j else lv for i, lv in enumerate(node))
            c = cost(cand)
            if c is None:
                continue
            tried.append({**c, "chosen": False})
            if best is None or c["combined"] < best[1]["combined"]:
                best = (cand, c)
        if best is None or best[1]["combined"] >= here["combined"] - 1e-12:
            break
        node, here = best
    for t in tried:
        if t["levels"] == here["levels"]:
            t["chosen"] = True
            break
    return node, tried


# --------------------------------------------------------------------------- reading


def _read(tables: Mapping[str, pl.DataFrame], table: str, cols: list[str] | None = None) -> pl.DataFrame:
    """A table of one site, only ``cols`` when given (read from its Parquet files when it has any)."""
    files = getattr(tables, "files", None)
    if cols is not None and callable(files):
        paths = files(table)
        if paths:
            return scan_parquet_files(paths, cols).collect()
    df = tables[table]
    return df.select([c for c in cols if c in df.columns]) if cols is not None else df


def _has(tables: Mapping[str, pl.DataFrame], table: str) -> bool:
    """Whether a site has the table (by its names: ``in`` on a lazy mapping would read the table)."""
    return table in list(tables)


def _parts(tables: Mapping[str, pl.DataFrame], table: str, cols: list[str] | None = None) -> Iterator[pl.DataFrame]:
    """A table of one site part by part: each of its Parquet parts in name order (part-0, part-00001,
    ...), only ``cols`` when given; a table held in memory is one part."""
    files = getattr(tables, "files", None)
    paths = files(table) if callable(files) else []
    if not paths:
        df = tables[table]
        yield df.select([c for c in cols if c in df.columns]) if cols is not None else df
        return
    for path in paths:
        yield scan_parquet_files([path], cols).collect()


def _site_parts(site_tables: Mapping[str, Mapping[str, pl.DataFrame]], table: str) -> Iterator[pl.DataFrame]:
    """Every part of a table, site by site (sorted), then part by part, tagged with its ``_site``."""
    for s in sorted(site_tables):
        if _has(site_tables[s], table):
            for part in _parts(site_tables[s], table):
                yield part.with_columns(_site=pl.lit(s))


def _whole(site_tables: Mapping[str, Mapping[str, pl.DataFrame]], table: str) -> pl.DataFrame:
    """A (small) table of every site in one frame, tagged with its ``_site``."""
    out = _all_sites(site_tables, table, tag=True)
    assert out is not None
    return out


UNIT_RANGE_ROWS = 4_000_000  # rows of a table whose units are counted at once (a range of person ids)


def _table_units(site_tables: Mapping[str, Mapping[str, pl.DataFrame]], table: str, offset: int) -> TableUnits | None:
    """The fact units of a table over all sites (only person_id and the fact columns are read). A table
    in Parquet files is counted by the streaming engine one range of person ids at a time (ranges in
    ascending order: the units come out in the same order as one sort of the whole table); a table in
    memory part by part, each part reduced to its distinct tuples before they are combined."""
    cols = ["person_id", *_fact_columns(table)]
    lazy: list[pl.LazyFrame] = []
    rows = 0
    for s in sorted(site_tables):
        files = getattr(site_tables[s], "files", None)
        paths = files(table) if callable(files) and _has(site_tables[s], table) else []
        if paths:
            lazy.append(scan_parquet_files(paths, cols))
            rows += sum(parquet_rows(p) for p in paths)
    if lazy and len(lazy) == sum(_has(site_tables[s], table) for s in site_tables):
        return _units_by_range(table, pl.concat(lazy, how="vertical_relaxed"), rows, offset)
    counted = []
    for s in sorted(site_tables):
        if _has(site_tables[s], table):
            for part in _parts(site_tables[s], table, cols):
                if part.height:
                    counted.append(part.group_by(part.columns).agg(pl.len().cast(pl.Int64).alias(ROWS)))
    if not counted:
        return None
    tu = collect_units(table, pl.concat(counted, how="vertical_relaxed"), offset)
    return tu if tu is not None and tu.frame.height else None


def _units_by_range(table: str, lf: pl.LazyFrame, rows: int, offset: int) -> TableUnits | None:
    """:func:`_table_units` of a table scanned from its files: ``rows`` rows, in ranges of person ids of
    about ``UNIT_RANGE_ROWS`` rows (pseudonymous ids are spread evenly; the last range takes null ids)."""
    cols = lf.collect_schema().names()
    n = max(1, -(-rows // UNIT_RANGE_ROWS))
    bounds = lf.select(lo=pl.col("person_id").min(), hi=pl.col("person_id").max()).collect()
    lo, hi = bounds["lo"][0], bounds["hi"][0]
    if lo is None or hi is None:
        n = 1
    frames: list[pl.DataFrame] = []
    template: TableUnits | None = None
    for within in _person_ranges(lo, hi, n, nulls_first=False) if n > 1 else [pl.lit(True)]:
        part = lf.filter(within) if n > 1 else lf
        counted = part.group_by(cols).agg(pl.len().cast(pl.Int64).alias(ROWS)).collect(engine="streaming")
        tu = collect_units(table, counted, 0)
        del counted
        if tu is None:
            return None
        template = tu
        frames.append(tu.frame.drop(UNIT))
    assert template is not None
    frame = pl.concat(frames) if len(frames) > 1 else frames[0]
    del frames
    if not frame.height:
        return None
    frame = frame.with_columns(pl.int_range(offset, offset + frame.height, dtype=pl.Int64).alias(UNIT))
    return TableUnits(table, template.columns, template.slots, frame)


def _person_ranges(lo: int, hi: int, n: int, *, nulls_first: bool) -> list[pl.Expr]:
    """``n`` filters splitting person ids lo..hi into ascending ranges of equal width (pseudonymous ids
    are spread evenly), null ids with the first or the last range (where a sort puts them)."""
    pid = pl.col("person_id")
    out = []
    for i in range(n):
        start, end = lo + (hi - lo) * i // n, lo + (hi - lo) * (i + 1) // n
        within = (pid >= start if i else pl.lit(True)) & (pid < end if i < n - 1 else pl.lit(True))
        nulls = nulls_first if i == 0 else (not nulls_first and i == n - 1)
        out.append(within | pid.is_null() if nulls else within)
    return out


ERA_RANGE_ROWS = 2_000_000  # released rows whose eras are computed at once (a range of person ids)


def _by_person_range(df: pl.DataFrame, fn: Callable[[pl.DataFrame], pl.DataFrame],
                     rows: int | None = None) -> pl.DataFrame:
    """``fn`` (eras: person by person, sorted by person_id first) over ascending ranges of person_id of
    about ``rows`` rows (null ids with the first, as a sort puts them), concatenated: the same rows in
    the same order as ``fn`` over the whole frame, in a fraction of its memory."""
    n = max(1, -(-df.height // (rows or ERA_RANGE_ROWS)))
    lo, hi = df["person_id"].min(), df["person_id"].max()
    if n == 1 or not isinstance(lo, int) or not isinstance(hi, int):
        return fn(df)
    out = []
    for within in _person_ranges(lo, hi, n, nulls_first=True):
        chunk = df.filter(within)
        if chunk.height:
            out.append(fn(chunk))
    return pl.concat(out) if out else fn(df)


def _links(site_tables: Mapping[str, Mapping[str, pl.DataFrame]], units: list[TableUnits], total: int) -> UnitLinks:
    """Which units leave with which (``facts.UnitLinks``): the modifier rows of ``EVENT_LINKS`` (read part
    by part, only their link, field concept, person and fact columns) and the target rows they name."""
    fields = pl.Series(list(EPISODE_EVENT_FIELDS), dtype=pl.Int64).implode()
    have = {tu.table for tu in units}
    linked: dict[str, pl.DataFrame] = {}
    for (t, link_col), field_col in EVENT_LINKS.items():
        if t not in have:
            continue
        cols = ["person_id", *_fact_columns(t)]
        frames = []
        for s in sorted(site_tables):
            if not _has(site_tables[s], t):
                continue
            for part in _parts(site_tables[s], t, [*cols, link_col, field_col]):
                if link_col not in part.columns or field_col not in part.columns:
                    continue
                part = part.filter(pl.col(link_col).is_not_null()
                                   & pl.col(field_col).cast(pl.Int64, strict=False).is_in(fields))
                if part.height:
                    frames.append(part.group_by([*[c for c in cols if c in part.columns], link_col, field_col])
                                  .agg(pl.len().cast(pl.Int64).alias(ROWS)))
        if frames:
            rows = pl.concat(frames, how="vertical_relaxed")
            rows = rows.with_columns([pl.lit(None).alias(c) for c in cols if c not in rows.columns])
            linked[t] = rows.select(
                *cols, _target=pl.col(field_col).cast(pl.Int64).replace_strict(EPISODE_EVENT_FIELDS, return_dtype=pl.String),
                _link=pl.col(link_col).cast(pl.Int64), _rows=ROWS,
            ).group_by([*cols, "_target", "_link"]).agg(pl.col(ROWS).sum())
    targets: dict[str, pl.DataFrame] = {}
    wanted = {str(x) for rows in linked.values() for x in rows["_target"].unique().to_list()}
    for t in sorted(wanted):
        if not any(_has(site_tables[s], t) for s in site_tables):
            continue  # the release keeps a link to a table it does not release (nothing to follow)
        pk = cdm.table(t).primary_key
        ids = pl.concat([rows.filter(pl.col("_target") == t)["_link"] for rows in linked.values()]).unique().implode()
        cols = [pk, "person_id", *_fact_columns(t)] if pk else []
        frames = []
        for s in sorted(site_tables):
            if pk and _has(site_tables[s], t):
                for part in _parts(site_tables[s], t, cols):
                    frames.append(part.filter(pl.col(pk).cast(pl.Int64).is_in(ids)))
        found = pl.concat(frames, how="vertical_relaxed") if frames else pl.DataFrame()
        if found.height:
            found = found.with_columns([pl.lit(None).alias(c) for c in cols if c not in found.columns])
            targets[t] = found.rename({pk: "_id"}) if pk else found
        else:
            targets[t] = pl.DataFrame(schema={"_id": pl.Int64})
    return unit_links(units, linked, targets, total)


def _follow_links(km: KmResult, links: UnitLinks, sub: Units, live: npt.NDArray[np.bool_], person_class: IntArray,
                  parent: IntArray, k: int, m: int, pin_p: IntArray | None = None,
                  pin_f: IntArray | None = None) -> KmResult:
    """Remove the units that leave with the units the engine removed (modifiers of removed diagnoses, as
    the release will), then make the classes they were in k^m again (which may remove more), until
    nothing more leaves. Without this the engine counts facts the written files no longer hold: a set of
    facts it saw held by k persons is held by fewer (docs/privacy.md, "How an anonymised release is made")."""
    while True:
        full = km.removed | ~live  # units of suppressed persons: gone with their persons
        gone = links.orphaned(full) & ~full
        del full
        if not gone.any():
            return km
        km.facts[gone] = NONE  # in place: ``km`` is replaced below
        km.removed[gone] = True
        touched = np.unique(person_class[sub.person[gone]])
        # only the classes the removals touched run again (the others' class is -1 for this run): no
        # copy of their units (the whole matrix at a million patients)
        cls = np.where(np.isin(person_class, touched), person_class, -1)
        pins: dict[str, IntArray] = {}
        if pin_p is not None and pin_f is not None and len(pin_p):
            # the suppressed persons' earlier facts no longer count (they are not in this version)
            keep = np.isin(cls[pin_p], touched) & ~np.isin(pin_p, km.suppressed_persons)
            pins = {"pinned_person": pin_p[keep], "pinned_fact": pin_f[keep]}
        start = KmResult(km.facts, km.removed, km.suppressed_persons, 0, 0)
        r = enforce_km(sub, cls, parent, k, m, start=start, reuse_start=True, **pins)
        del cls, start
        stats = {key: km.stats.get(key, 0) + r.stats.get(key, 0) for key in {*km.stats, *r.stats}}
        stats["removed_with_link"] = km.stats.get("removed_with_link", 0) + int(gone.sum())
        km = KmResult(r.facts, r.removed, r.suppressed_persons, km.rounds + r.rounds, km.classes, stats)


def _all_sites(site_tables: Mapping[str, Mapping[str, pl.DataFrame]], table: str,
               cols: list[str] | None = None, tag: bool = False) -> pl.DataFrame | None:
    frames = []
    for s in sorted(site_tables):
        if _has(site_tables[s], table):
            df = _read(site_tables[s], table, cols)
            frames.append(df.with_columns(_site=pl.lit(s)) if tag else df)
    return pl.concat(frames, how="vertical_relaxed") if frames else None


# --------------------------------------------------------------------------- the release


def build_release(
    site_tables: Mapping[str, Mapping[str, pl.DataFrame]],
    policy: PrivacyPolicy,
    secret: bytes,
    ancestor: pl.DataFrame | None = None,
    concept: pl.DataFrame | None = None,
    sink: Callable[[str, pl.DataFrame], None] | None = None,
    *,
    dataset_dir: Path | None = None,
    permit: str | None = None,
    true_death_years: pl.DataFrame | None = None,
    log: Callable[[str], None] | None = None,
) -> ReleaseResult:
    """``site_tables[site][table]``: the pseudo tables of every site (a mapping that reads each table
    when asked, e.g. ``transforms.storage.LazyTables``, keeps one table in memory at a time).

    ``dataset_dir``: the dataset's folder in the data space: every version in it counts (anonymised
    mode). ``permit``: the data permit of a pseudonymised release. ``true_death_years``: person_id,
    death_year (true year, from the pseudonymisation stage; default: the year of the shifted date).
    With ``sink``, each event table is handed to it as soon as it is released and not kept in the
    result (``rows`` still counts it); person, location, observation_period and cdm_source stay."""
    say = log or (lambda _msg: None)
    started = time.perf_counter()
    anonymised = policy.mode == "anonymised"
    if not anonymised and not permit:
        raise ValueError("a pseudonymised release needs a data permit id (release.permit)")
    sites = sorted(site_tables)
    cons = consolidate_persons(
        {s: _read(site_tables[s], "person") for s in sites},
        {s: _read(site_tables[s], "observation_period") for s in sites},
    )
    locations = pl.concat([_read(site_tables[s], "location") for s in sites], how="vertical_relaxed").unique("location_id")
    deaths_all = _all_sites(site_tables, "death")
    if true_death_years is not None and deaths_all is not None:
        deaths_all = deaths_all.join(true_death_years.group_by("person_id").agg(pl.col("death_year").min()),
                                     on="person_id", how="left")
    qis = qi_frame(cons.persons, locations, deaths_all)
    specs, auto = qi_specs(qis, policy)
    qi_cols = list(specs)

    # earlier versions: fixed columns of the search (anonymised: a recipient may hold them all)
    earlier = read_earlier(dataset_dir, qis["person_id"]) if anonymised else Earlier()
    fixed = earlier.columns
    frame = qis.join(earlier.keys, on="person_id", how="left") if fixed else qis
    if policy.l_diversity is not None:
        from schemas.config import L_DIVERSITY_IN_RELEASE

        raise ValueError(L_DIVERSITY_IN_RELEASE)
    sensitive = None
    freq = frequency_table(frame, [*qi_cols, *fixed], sensitive)
    hierarchies = hierarchies_for(freq, specs)
    for c in fixed:
        hierarchies[c] = _fixed_hierarchy(c, freq[c].to_list())
    problem = encode(freq, hierarchies, sensitive)
    model = model_of(policy)
    result = search_keeping(problem, model, policy)
    say(f"person-level fields: optimal levels {result.levels}, {result.suppressed} of {result.records} persons "
        "suppressed")

    # ---- the facts of every person (units), read once
    person_index = {int(p): i for i, p in enumerate(frame["person_id"].to_list())}
    units: list[TableUnits] = []
    offset = 0
    for t in FACT_TABLES:
        tu = _table_units(site_tables, t, offset)
        if tu is not None:
            units.append(tu)
            offset += tu.frame.height
    m = policy.attacker_facts if anonymised else 0
    pinned = earlier.facts
    book = build_factbook(units, pinned["key"].unique().sort().to_list(), ancestor, concept)
    um = units_matrix(units, book, person_index)

    say(f"facts read: {offset:,} units of {len(units)} tables, {len(book.keys):,} facts "
        f"({time.perf_counter() - started:.1f} s)")
    # ---- levels that spare facts: coarser person-level fields when that loses fewer facts overall
    tried: list[dict[str, Any]] = []
    movable = [j for j, q in enumerate(problem.qis) if not problem.hierarchies[j].is_fixed]
    if m and units and policy.fact_weight > 0 and movable:
        node, tried = spare_facts(problem, result, model, policy, fact_loss_estimator(frame, problem, units, um, book.parent, m), movable)
        if node != tuple(result.node):
            result = result_at(problem, model, policy.metric, node, result.evaluations, result.seconds)
            say(f"person-level fields: levels {result.levels} lose fewer facts overall")
    say(f"levels chosen ({len(tried)} nodes tried, {time.perf_counter() - started:.1f} s)")
    kept = apply_levels(frame, hierarchies, result.levels, result.suppressed_classes)
    assert isinstance(kept, pl.DataFrame)
    suppressed_ids = set(qis.filter(~pl.col("person_id").is_in(kept["person_id"].implode()))["person_id"].to_list())

    # ---- facts: k^m within the classes (anonymised), or measured only (pseudonymised)
    class_cols = [*qi_cols, *fixed]
    kept = kept.with_columns(_class=pl.struct(class_cols).rank("dense").cast(pl.Int64) - 1)
    person_class = np.full(len(person_index), -1, dtype=np.int64)
    person_class[np.asarray(kept["person_id"].replace_strict(person_index, return_dtype=pl.Int64).to_numpy())] = (
        kept["_class"].to_numpy())
    decisions: dict[str, pl.DataFrame] = {}
    outcomes: dict[str, TableOutcome] = {}
    after_facts = um.facts
    after_removed = np.zeros(len(um.facts), dtype=bool)
    km_seconds = 0.0
    fact_suppressed_persons: set[int] = set()
    if units:
        t0 = time.perf_counter()
        # the engine works on every unit: those of persons the search suppressed (class -1) are left as
        # they are (no copy of the live units: memory at a million patients)
        live = person_class[um.person] >= 0
        pin = pinned.filter(pl.col("person_id").is_in(kept["person_id"].implode()))
        pin_p = np.asarray(pin["person_id"].replace_strict(person_index, return_dtype=pl.Int64).to_numpy(),
                           dtype=np.int64)
        pin_f = book.ids(pin["key"])
        # modifiers leave with the rows they modify (as _release_rows removes them): the engine follows
        follow = _links(site_tables, units, len(um.facts)) if m else None
        # first as if nothing had been published (a republication of unchanged data then gives the
        # same release), then, if the join with earlier versions is not k^m, on from there with them
        km = enforce_km(um, person_class, book.parent, policy.k, m)
        if follow is not None:
            km = _follow_links(km, follow, um, live, person_class, book.parent, policy.k, m)
        if len(pin_p) and m:
            final = Units(um.person, np.where(km.removed[:, None], -1, km.facts), um.removable)
            cls = person_class.copy()
            cls[km.suppressed_persons] = -1
            if any(persons_at_risk(final, cls, policy.k, m, pin_p, pin_f)[1:]):
                km = enforce_km(um, person_class, book.parent, policy.k, m, pinned_person=pin_p,
                                pinned_fact=pin_f, start=km)
                if follow is not None:
                    km = _follow_links(km, follow, um, live, person_class, book.parent, policy.k, m, pin_p, pin_f)
                say("facts: continued with the facts of the earlier versions pinned")
            del final
        if km.stats.get("removed_with_link"):
            say(f"facts: {km.stats['removed_with_link']:,} modifier units left with the rows they modify")
        after, removed = km.facts, km.removed  # the units of suppressed persons: as they were, not removed
        after_facts, after_removed = after, removed
        persons_arr = frame["person_id"].to_numpy()
        fact_suppressed_persons = {int(persons_arr[i]) for i in km.suppressed_persons}
        n_live, n_classes, n_rounds = int(live.sum()), km.classes, km.rounds
        del km, live, follow
        start = 0
        for i, tu in enumerate(units):
            dec, outcome = unit_decisions(tu, book, um.facts, after, removed, start, changed_only=True)
            # only the units that change: the rows of the others keep their values (apply_to_rows)
            decisions[tu.table] = dec.filter(pl.col("_removed") | pl.col("_generalised"))
            outcomes[tu.table] = outcome
            start += tu.frame.height
            units[i] = TableUnits(tu.table, tu.columns, tu.slots, tu.frame.clear())  # the units matrix stays
            del dec, tu
        km_seconds = time.perf_counter() - t0
        say(f"facts: k^{m} over {len(book.keys):,} facts of {n_live:,} units in {n_classes:,} classes, "
            f"{n_rounds:,} rounds, {km_seconds:.1f} s")
    # a class that lost persons to the fact stage below k loses the rest too (k over persons holds)
    if fact_suppressed_persons:
        left = kept.filter(~pl.col("person_id").is_in(sorted(fact_suppressed_persons)))
        small = left.group_by("_class").len().filter(pl.col("len") < policy.k)["_class"]
        fact_suppressed_persons |= set(left.filter(pl.col("_class").is_in(small.implode()))["person_id"].to_list())
    suppressed_ids |= fact_suppressed_persons
    limit = model.max_suppressed(int(cons.persons.height))
    if fact_suppressed_persons and len(suppressed_ids) > limit:
        raise NoSolutionError(
            f"{len(fact_suppressed_persons)} persons can only be protected by suppressing them (facts that earlier "
            f"versions {', '.join(map(str, earlier.numbers)) or '-'} already published, shared by fewer than k = "
            f"{policy.k} persons of their joint class), which with the {result.suppressed} suppressed by the search "
            f"exceeds the limit of {limit} ({policy.suppression:.0%}): raise policy.suppression, or publish under a "
            "new dataset name (release.dataset) so that no recipient can join the versions")
    sup = pl.Series("person_id", sorted(suppressed_ids), dtype=pl.Int64).implode()
    # the k^m figures before/after, now that who is suppressed is final: the units matrix and the engine's
    # result are then let go (about 0.8 GB at a million patients, not held through the tables pass)
    km_figures = _km_figures(policy, problem, frame, person_index, um, units, decisions, fact_suppressed_persons,
                             person_class, after_facts, after_removed, pinned, book, earlier.numbers)
    del um, after_facts, after_removed
    if units:
        del after, removed

    # ---- dates: death anchor (anonymised) or permit shift (pseudonymised)
    op_all = pl.concat([_read(site_tables[s], "observation_period") for s in sites], how="vertical_relaxed")
    latest = op_all["observation_period_end_date"].max()
    deltas = _deltas(kept, result, hierarchies, deaths_all, secret, anonymised, permit, policy, cons.persons,
                     latest if isinstance(latest, dt.date) else None)

    # ---- persons and locations
    persons = cons.persons.filter(~pl.col("person_id").is_in(sup))
    g = kept.select("person_id", *[pl.col(c).alias(f"g_{c}") for c in qi_cols])
    persons = persons.join(g, on="person_id", how="left")
    updates: list[pl.Expr] = [
        pl.lit(None, pl.String).alias("person_source_value"),
        pl.lit(None, pl.Int32).alias("gender_source_concept_id"),
        pl.lit(None, pl.Int32).alias("race_source_concept_id"),
        pl.lit(None, pl.Int32).alias("ethnicity_source_concept_id"),
    ]
    if "year_of_birth" in qi_cols:
        updates.append(_band_start(pl.col("g_year_of_birth")).fill_null(0).alias("year_of_birth"))
    elif policy.birth == "none":
        updates.append(pl.lit(0, pl.Int32).alias("year_of_birth"))
    if "sex" in qi_cols:
        updates.append(pl.col("g_sex").replace_strict(SEX_BACK, default=0, return_dtype=pl.Int32).alias("gender_concept_id"))
        updates.append(pl.when(pl.col("g_sex").is_in(["M", "F"])).then(pl.col("g_sex")).otherwise(None).alias("gender_source_value"))
    for c in ("race", "ethnicity"):
        if c in qi_cols:
            updates.append(pl.when(pl.col(f"g_{c}") == MISSING).then(0).otherwise(pl.col(f"g_{c}").cast(pl.Int32, strict=False))
                           .fill_null(0).cast(pl.Int32).alias(f"{c}_concept_id"))
    pc_level = result.levels.get("postcode")
    if "postcode" in qi_cols and pc_level is not None:
        labels = sorted(set(persons["g_postcode"].drop_nulls().to_list()) - {MISSING})
        loc_ids = dict(zip(labels, id63_many(secret, "release-location", labels), strict=True))
        if len(set(loc_ids.values())) != len(loc_ids):
            raise CollisionError("location id collision in the release: nothing was published; report this")
        updates.append(pl.col("g_postcode").replace_strict(loc_ids, default=None, return_dtype=pl.Int64).alias("location_id"))
        loc = release_location_rows(loc_ids)
    else:
        loc = locations
    persons = persons.with_columns(updates).drop([f"g_{c}" for c in qi_cols])
    if not anonymised:
        assert permit is not None
        persons = rekey_table(persons, "person", secret, permit)
        loc = rekey_table(loc, "location", secret, permit)
    tables: dict[str, pl.DataFrame] = {"person": cdm.conform(persons, "person").sort("person_id"),
                                       "location": cdm.conform(loc, "location").sort("location_id")}
    acc: list[dict[str, object]] = []
    rows: dict[str, int] = {}
    acc += _per_person_accounting("person", {s: _read(site_tables[s], "person", ["person_id"]) for s in sites}, sup)

    # ---- every other table, one at a time, each site by site and part by part (bounded memory): a part
    # is released as soon as it is done; only what later tables need is kept (ids, era columns, spans)
    names = {t for s in sites for t in site_tables[s]} - {"person", "location", "observation_period"}
    ordered = [t for t in ORDER if t in names] + sorted(names - set(ORDER))
    kept_ids: dict[str, pl.Series] = {}
    removed_episodes = pl.Series("episode_id", [], dtype=pl.Int64)
    period: pl.DataFrame | None = None  # person_id, start, end: the released rows' span of each person
    released_for_eras: dict[str, pl.DataFrame] = {}
    death_level = result.levels.get("death_year", 0)
    provider_summary: dict[str, Any] = {}
    ctx = _TableContext(sup, decisions, policy, hierarchies, death_level, qi_cols, deltas)
    for t in ordered:
        if t in ("condition_era", "drug_era", "dose_era"):
            continue  # recomputed below from the released rows
        pk = cdm.table(t).primary_key
        counts: dict[str, Counter[str]] = {}
        per_person = False
        keys: list[pl.Series] = []  # the primary key of every released row (the check across sites)
        links: list[pl.Series] = []  # episode: the ids it drops; target of episode events: the ids it keeps
        era_parts: list[pl.DataFrame] = []
        spans: list[pl.DataFrame] = []
        whole: list[pl.DataFrame] = []  # without a sink, or a table kept whole: its released parts
        n_rows = 0
        sunk = False
        whole_table = t in _WHOLE or (t in cdm.tables() and "person_id" not in cdm.table(t).polars_schema)
        chunks = [_whole(site_tables, t)] if whole_table else _site_parts(site_tables, t)
        for chunk in chunks:
            done = _release_rows(ctx, t, chunk, kept_ids, removed_episodes)
            per_person = per_person or done.per_person
            _count(counts, done.counts)
            if t == "provider":
                provider_summary = done.provider_summary
            if t == "episode":
                links.append(done.dropped_episodes)
            out = done.out
            if t in PERIOD_DATES:
                s_col, e_col = PERIOD_DATES[t]
                spans.append(out.group_by("person_id").agg(start=pl.col(s_col).min(),
                                                           end=pl.coalesce(pl.col(e_col), pl.col(s_col)).max()))
            if t == "condition_occurrence":
                era_parts.append(out.select("person_id", "condition_concept_id", "condition_start_date",
                                            "condition_end_date"))
            if t == "drug_exposure":
                era_parts.append(out.select("person_id", "drug_concept_id", "drug_exposure_start_date",
                                            "drug_exposure_end_date", "days_supply"))
            if t in EPISODE_EVENT_FIELDS.values() and pk:
                links.append(out[pk])
            fin = _finish(out, t, policy, secret, permit)
            del out, done
            if pk and pk != "person_id" and pk in fin.columns:
                keys.append(fin[pk])
            n_rows += fin.height
            if sink is not None and t not in _KEPT:
                if fin.height:
                    sink(t, fin)
                    sunk = True
                elif not whole:
                    whole.append(fin)  # the schema of a table with no released row
            else:
                whole.append(fin)
            del fin
        # the primary keys of every site's rows, checked once the table is done: a collision fails the
        # release (the sink's parts are then never committed)
        _check_keys(t, pk, keys)
        del keys
        if sink is not None and t not in _KEPT:
            if not sunk:  # a table with no released row: one empty part of its schema
                sink(t, whole[0] if whole else cdm.conform(pl.DataFrame(), t))
        else:
            tables[t] = _combine(whole, t)
        whole.clear()
        acc += _accounting_rows(t, counts, sites, per_person or t == "episode_event")
        if t == "episode":
            removed_episodes = pl.concat(links) if links else removed_episodes
        elif t in EPISODE_EVENT_FIELDS.values() and pk and links:
            kept_ids[t] = pl.concat(links)
        if era_parts:
            released_for_eras[t] = pl.concat(era_parts, how="vertical_relaxed")
        if spans:
            period = _spans([*([period] if period is not None else []), *spans])
        rows[t] = n_rows
        say(f"{t}: {n_rows:,} rows released ({time.perf_counter() - started:.1f} s)")

    say(f"tables released ({time.perf_counter() - started:.1f} s)")
    # ---- eras, recomputed from the released rows (their facts are then implied by released facts)
    if "condition_era" in names:
        co = released_for_eras.pop("condition_occurrence", None)
        ce = (_by_person_range(co, lambda d: eras.condition_era(d, "release")) if co is not None
              else pl.DataFrame(schema=cdm.table("condition_era").polars_schema))
        del co
        acc += _produced("condition_era", ce)
        _emit(tables, rows, sink, "condition_era", _finish(ce, "condition_era", policy, secret, permit))
    if "drug_era" in names:
        de = released_for_eras.pop("drug_exposure", None)
        if de is not None and ancestor is not None and concept is not None:
            dr = _by_person_range(de, lambda d: eras.drug_era(d, ancestor, concept, "release").eras)
        else:
            dr = pl.DataFrame(schema=cdm.table("drug_era").polars_schema)
        acc += _produced("drug_era", dr)
        _emit(tables, rows, sink, "drug_era", _finish(dr, "drug_era", policy, secret, permit))
    if "dose_era" in names:
        acc += _produced("dose_era", pl.DataFrame())
        _emit(tables, rows, sink, "dose_era", pl.DataFrame(schema=cdm.table("dose_era").polars_schema))

    # one cdm_source row for the release, naming the sites it comes from
    if "cdm_source" in tables and tables["cdm_source"].height:
        first = tables["cdm_source"].sort("cdm_source_abbreviation").head(1)
        tables["cdm_source"] = cdm.conform(first.with_columns(
            cdm_source_name=pl.lit("ds4h release"), cdm_source_abbreviation=pl.lit("ds4h"),
            cdm_holder=pl.lit(", ".join(sites)),
            source_description=pl.lit(f"{'Anonymised' if anonymised else 'Pseudonymised'} OMOP CDM from {len(sites)} site(s)"),
        ), "cdm_source")
    # observation periods: one per person over all sites, spanning the released rows (else the
    # pseudonymised period, moved like the person's other dates)
    op_kept = dates.shift(op_all.filter(~pl.col("person_id").is_in(sup)), deltas)
    base = op_kept.group_by("person_id").agg(
        observation_period_start_date=pl.col("observation_period_start_date").min(),
        observation_period_end_date=pl.col("observation_period_end_date").max(),
        period_type_concept_id=pl.col("period_type_concept_id").first(),
    )
    if period is not None:
        base = base.join(period.select("person_id", _s="start", _e="end"), on="person_id", how="left").with_columns(
            observation_period_start_date=pl.coalesce("_s", "observation_period_start_date"),
            observation_period_end_date=pl.coalesce("_e", "observation_period_end_date"),
        ).drop("_s", "_e")
    op = base.with_columns(observation_period_id=pl.col("person_id"))
    tables["observation_period"] = _finish(op, "observation_period", policy, secret, permit).sort("person_id")
    acc += _per_person_accounting("observation_period", {s: _read(site_tables[s], "observation_period", ["person_id"])
                                                         for s in sites}, sup)
    accounting = pl.concat(
        [accounting_frame("release", str(r["site"]), [{k: v for k, v in r.items() if k != "site"}]) for r in acc]
        + [accounting_frame("release", "all", [dict(table="location", category="produced", reason_code=None,
                                                   rows=tables["location"].height)])]
    )
    say(f"eras and observation periods ({time.perf_counter() - started:.1f} s)")
    population = read_population(policy.population) if policy.population else None
    report = full_report(problem, result, policy, population=population)
    report["mode"] = policy.mode
    released_qis = kept.filter(~pl.col("person_id").is_in(sup))
    utility = field_utility(qis, released_qis, result.levels, hierarchies, policy)
    report["levels_in_words"] = describe_levels(result.levels, hierarchies)
    report["utility"] = utility_summary(utility)
    if report["utility"]["blocked"]:
        keep = suggest_keeping(problem, policy, population)
        report["suggestions"] += [s.as_dict() for s in keep
                                  if s.text not in {x["text"] for x in report["suggestions"]}]
    report["facts"] = {
        "attacker_facts": m, "tables": {t: o.as_dict() for t, o in sorted(outcomes.items())},
        "persons_suppressed": len(fact_suppressed_persons), "seconds": round(km_seconds, 3),
    }
    report["quasi_identifiers_added"] = auto
    report["providers"] = provider_summary
    report["versions"] = {"earlier": earlier.numbers}
    report["permit"] = permit if not anonymised else None
    report["km"] = km_figures
    report["protection"] = protection(report, policy, [c for c in qi_cols if c not in fixed])
    report["levels_tried"] = [{**t, "levels_in_words": describe_levels(t["levels"], hierarchies)} for t in tried]
    # the published report must be byte-stable for the same inputs: timings go to the asset metadata
    report.pop("seconds", None)
    report.get("search", {}).pop("seconds", None)
    report["facts"].pop("seconds", None)
    summary = {
        "mode": policy.mode,
        "k": policy.k,
        "attacker_facts": m,
        "levels": {c: lv for c, lv in result.levels.items() if c not in fixed},
        "levels_in_words": report["levels_in_words"],
        "removed_quasi_identifiers": report["utility"]["removed"],
        "classes": result.classes,
        "suppressed_persons": len(suppressed_ids),
        "suppressed_persons_facts": len(fact_suppressed_persons),
        "persons": int(cons.persons.height),
        "persons_released": int(tables["person"].height),
        "merged_person_rows": cons.merged_rows,
        "conflicts": cons.conflicts,
        "metric": policy.metric,
        "metrics": dict(result.metrics),
        "earlier_versions": earlier.numbers,
        "quasi_identifiers_added": auto,
    }
    rows.update({t: df.height for t, df in tables.items()})
    timings = {"facts_seconds": round(km_seconds, 3), "seconds": round(time.perf_counter() - started, 3)}
    return ReleaseResult(tables, accounting, result, report, summary, rows, timings, deltas)


# --------------------------------------------------------------------------- one part of a table


@dataclass
class _TableContext:
    """The global decisions every part of every table is released with."""

    sup: pl.Series  # suppressed persons (one list)
    decisions: Mapping[str, pl.DataFrame]
    policy: PrivacyPolicy
    hierarchies: Mapping[str, Hierarchy]
    death_level: int
    qi_cols: list[str]
    deltas: pl.DataFrame | None


@dataclass
class _Released:
    out: pl.DataFrame  # the released rows (before _finish)
    counts: dict[str, Counter[str]]  # per site: in, sup, rem, with, gen
    per_person: bool
    dropped_episodes: pl.Series
    provider_summary: dict[str, Any]


def _release_rows(ctx: _TableContext, t: str, all_rows: pl.DataFrame, kept_ids: Mapping[str, pl.Series],
                  removed_episodes: pl.Series) -> _Released:
    """One part of a table (tagged ``_site``) through the release's decisions: suppressed persons, the
    facts' new values, withheld notes and deaths, dropped episode links, orphaned modifiers; tokenised
    ids nulled and dates moved."""
    policy = ctx.policy
    has_person = "person_id" in all_rows.columns
    all_rows = all_rows.with_columns(
        _sup=pl.col("person_id").is_in(ctx.sup) if has_person else pl.lit(False),
        _removed=pl.lit(False), _generalised=pl.lit(False), _withheld=pl.lit(False))
    if t in ctx.decisions:
        dec = ctx.decisions[t]
        cols = [c for c in _fact_columns(t) if c in all_rows.columns]
        # a part's column of nulls only may be typed apart from the decisions' (made over every part)
        all_rows = all_rows.with_columns([pl.col(c).cast(dec.schema[c]) for c in ["person_id", *cols]
                                          if c in dec.schema and all_rows.schema[c] != dec.schema[c]])
        applied = apply_to_rows(all_rows.drop("_removed", "_generalised"), dec, cols)
        all_rows = applied.with_columns(pl.col("_removed").fill_null(False), pl.col("_generalised").fill_null(False))
    if t == "note" and not policy.publish_notes:
        all_rows = all_rows.with_columns(_withheld=~pl.col("_sup"))
    if t == "death" and ctx.death_level and _is_top(ctx.hierarchies.get("death_year"), ctx.death_level):
        all_rows = all_rows.with_columns(_withheld=~pl.col("_sup"))  # death year withheld: no death row
    if t == "episode":
        all_rows = all_rows.with_columns(
            episode_parent_id=pl.when(pl.col("episode_parent_id").is_in(removed_episodes.implode()))
            .then(None).otherwise(pl.col("episode_parent_id")))
    if t == "episode_event":
        gone = pl.col("episode_id").is_in(removed_episodes.implode())
        for fconcept, target in EPISODE_EVENT_FIELDS.items():
            ok = kept_ids.get(target)
            if ok is not None:
                gone = gone | ((pl.col("episode_event_field_concept_id") == fconcept)
                               & ~pl.col("event_id").is_in(ok.implode()))
        all_rows = all_rows.with_columns(_removed=~pl.col("_sup") & gone)
    for (link_table, link_col), field_col in EVENT_LINKS.items():
        # a modifier (a stage measurement) of a record the release removed goes with it: left
        # behind, it would still say what the record said (a staged cancer) and dangle
        if link_table == t and link_col in all_rows.columns and field_col in all_rows.columns:
            orphaned = pl.lit(False)
            for fconcept, target in EPISODE_EVENT_FIELDS.items():
                ok = kept_ids.get(target)
                if ok is not None:
                    orphaned = orphaned | ((pl.col(field_col) == fconcept) & pl.col(link_col).is_not_null()
                                           & ~pl.col(link_col).is_in(ok.implode()))
            all_rows = all_rows.with_columns(_removed=pl.col("_removed") | (~pl.col("_sup") & orphaned))
    drop = pl.col("_sup") | pl.col("_removed") | pl.col("_withheld")
    dropped = all_rows.filter(drop)["episode_id"] if t == "episode" else pl.Series("episode_id", [], pl.Int64)
    if t == "care_site" and "postcode" in ctx.qi_cols:  # locations are the persons' generalised ones now
        all_rows = all_rows.with_columns(location_id=pl.lit(None, pl.Int64))
    provider_summary: dict[str, Any] = {}
    if t == "provider":  # staff are data subjects: attributes only where k providers share them
        prov = protect_providers(all_rows.drop("_site", "_sup", "_removed", "_generalised", "_withheld"), policy.k)
        all_rows = all_rows.select("provider_id", "_site", "_sup", "_removed", "_generalised", "_withheld").join(
            prov.frame, on="provider_id", how="left", maintain_order="left")
        provider_summary = prov.summary
    per_person = has_person or t == "episode_event"
    counts = _chunk_counts(all_rows, per_person)
    out = all_rows.filter(~drop).drop("_site", "_sup", "_removed", "_generalised", "_withheld")
    del all_rows
    out = out.with_columns([pl.lit(None, pl.String).alias(c) for c in TOKENISED.get(t, ()) if c in out.columns])
    return _Released(dates.shift(out, ctx.deltas), counts, has_person, dropped, provider_summary)


def _chunk_counts(all_rows: pl.DataFrame, per_person: bool) -> dict[str, Counter[str]]:
    """Per site: rows in, and (per person) suppressed, fact-suppressed, withheld and generalised rows,
    each counted under the first reason that applies."""
    sup, rem, wit, gen = pl.col("_sup"), pl.col("_removed"), pl.col("_withheld"), pl.col("_generalised")
    aggs = [pl.len().alias("in")]
    if per_person:
        aggs += [sup.sum().alias("sup"), (rem & ~sup).sum().alias("rem"), (wit & ~sup & ~rem).sum().alias("with"),
                 (gen & ~sup & ~rem & ~wit).sum().alias("gen")]
    out: dict[str, Counter[str]] = {}
    for r in all_rows.group_by("_site").agg(aggs).iter_rows(named=True):
        out[str(r["_site"])] = Counter({k: int(v) for k, v in r.items() if k != "_site"})
    return out


def _count(total: dict[str, Counter[str]], part: Mapping[str, Counter[str]]) -> None:
    for site, c in part.items():
        total.setdefault(site, Counter()).update(c)


def _check_keys(t: str, pk: str | None, keys: list[pl.Series]) -> None:
    """Two sites' rows with the same primary key (sorted, neighbours compared: no hash set)."""
    if not pk or not keys:
        return
    ids = pl.concat(keys).sort()
    if ids.null_count() > 1 or (ids.len() > 1 and bool((ids.slice(1) == ids.slice(0, ids.len() - 1)).any())):
        raise CollisionError(f"{t}: two sites' rows got the same {pk}; nothing was published, report this")


def _spans(frames: list[pl.DataFrame]) -> pl.DataFrame:
    """person_id, start, end: the released rows' span of each person, combined over parts and tables."""
    return pl.concat(frames, how="vertical_relaxed").group_by("person_id").agg(
        start=pl.col("start").min(), end=pl.col("end").max())


def _combine(parts: list[pl.DataFrame], table: str) -> pl.DataFrame:
    """A table released part by part, in one frame sorted as ``_finish`` sorts one part."""
    if not parts:
        return cdm.conform(pl.DataFrame(), table)
    out = parts[0] if len(parts) == 1 else pl.concat(parts, how="vertical_relaxed")
    return out.sort(_order(out, table))



def _km_figures(policy: PrivacyPolicy, problem: Problem, frame: pl.DataFrame, person_index: Mapping[int, int],
                um: Units, units: list[TableUnits], decisions: Mapping[str, pl.DataFrame],
                fact_suppressed: set[int], person_class: IntArray, after_facts: IntArray,
                after_removed: npt.NDArray[np.bool_], pinned: pl.DataFrame, book: Any,
                earlier: list[int]) -> dict[str, Any]:
    """Persons at risk per number of facts known (docs/privacy.md), before (exact fields, facts as
    pseudonymised, no earlier version) and after (the release as built; the asset adds the figures
    of the audit of the written files)."""
    m = max(policy.attacker_facts, 1)
    if not units:
        return {"k": policy.k, "m": policy.attacker_facts, "before": [], "after": [], "passed": True}
    exact = frame.select(pl.struct(list(problem.qis)).rank("dense").cast(pl.Int64) - 1)
    before_class = np.asarray(exact.to_series().to_numpy(), dtype=np.int64)
    before_cols = [q for q in problem.qis if not q.startswith("_v")]
    if len(before_cols) != len(problem.qis):
        before_class = np.asarray(frame.select(pl.struct(before_cols).rank("dense").cast(pl.Int64) - 1)
                                  .to_series().to_numpy(), dtype=np.int64)
    before = persons_at_risk(um, before_class, policy.k, m)
    cls = person_class.copy()
    for p in fact_suppressed:
        cls[person_index[p]] = -1
    keep = ~after_removed & (cls[um.person] >= 0)
    final = Units(um.person[keep], np.where(after_facts[keep] >= 0, after_facts[keep], -1), um.removable[keep])
    pin = pinned.filter(pl.col("person_id").is_in(list(person_index)))
    pin_p = np.asarray(pin["person_id"].replace_strict(person_index, return_dtype=pl.Int64).to_numpy(), dtype=np.int64)
    after = persons_at_risk(final, cls, policy.k, m, pin_p, book.ids(pin["key"]))
    return {"k": policy.k, "m": policy.attacker_facts, "before": before, "after": after,
            "persons_before": len(before_class), "persons_after": int((cls >= 0).sum()),
            "passed": policy.mode != "anonymised" or not any(after[: policy.attacker_facts + 1]),
            "checked": False, "earlier_versions": earlier}


def _fact_columns(table: str) -> list[str]:
    """The fact columns of a table the engine works on: tokenised hospital ids are never published
    (they are nulled), so they are no facts."""
    spec = FACT_TABLES[table]
    return [c for c in (spec.concept, spec.source, spec.source_concept, *spec.cells)
            if c and c not in TOKENISED.get(table, ())]


def _is_top(h: Hierarchy | None, level: int) -> bool:
    return h is not None and level >= h.height and h.height > 0


def _deltas(kept: pl.DataFrame, result: SearchResult, hierarchies: Mapping[str, Hierarchy],
            deaths: pl.DataFrame | None, secret: bytes, anonymised: bool, permit: str | None,
            policy: PrivacyPolicy, persons: pl.DataFrame, latest: dt.date | None) -> pl.DataFrame | None:
    if not anonymised:
        assert permit is not None
        return dates.permit_deltas(persons["person_id"], secret, permit, policy.date_shift_days)
    dy = death_years(deaths)
    if dy.is_empty() or "death_year" not in hierarchies:
        return None
    h = hierarchies["death_year"]
    level = result.levels.get("death_year", 0)
    years = sorted({int(y) for y in dy["death_year"].drop_nulls().to_list()})
    if not years:
        return None
    bands: dict[int, tuple[int, int]] = {}
    for y in years:
        label = h.generalise(str(y), level) if str(y) in h._index else str(y)
        band = _band(label)
        # the death date falls in the band's first year (the published year is then the band's, as
        # year_of_birth is), or anywhere in the years of the release when the death year is withheld
        bands[y] = (band[0], band[0]) if band is not None else (years[0], years[-1])
    dead = dy.join(kept.select("person_id"), on="person_id", how="semi")
    return dates.anchor_deltas(dead, bands, secret, latest)


def _finish(df: pl.DataFrame, table: str, policy: PrivacyPolicy, secret: bytes, permit: str | None) -> pl.DataFrame:
    """Coarsen the dates, re-key for a permit, conform and sort."""
    out = dates.coarsen(df, policy.event_dates)
    if permit is not None and policy.mode == "pseudonymised":
        out = rekey_table(out, table, secret, permit)
    out = cdm.conform(out, table)
    return out.sort(_order(out, table))


def _order(df: pl.DataFrame, table: str) -> list[str]:
    """A released table's (or part's) order: person_id, then the primary key."""
    pk = cdm.table(table).primary_key
    return [c for c in ("person_id", pk) if c and c in df.columns] or df.columns[:2]


def _emit(tables: dict[str, pl.DataFrame], rows: dict[str, int], sink: Callable[[str, pl.DataFrame], None] | None,
          t: str, df: pl.DataFrame) -> None:
    rows[t] = df.height
    if sink is not None:
        sink(t, df)
    else:
        tables[t] = df


def _produced(table: str, df: pl.DataFrame) -> list[dict[str, object]]:
    return [dict(site="all", table=table, category="produced", reason_code=None, rows=df.height)]


def _accounting_rows(t: str, counts: Mapping[str, Counter[str]], sites: list[str],
                     per_person: bool) -> list[dict[str, object]]:
    """The accounting of a table from its counts per site (summed over its parts)."""
    out: list[dict[str, object]] = []
    for s in sites:
        c = counts.get(s, Counter())
        height = c["in"]
        if not per_person:
            out.append(dict(site=s, table=t, category="produced", reason_code=None, rows=height))
            continue
        n_sup, n_rem, n_with, n_gen = c["sup"], c["rem"], c["with"], c["gen"]
        out.append(dict(site=s, table=t, category="in", reason_code=None, rows=height))
        if n_sup:
            out.append(dict(site=s, table=t, category="suppressed", reason_code="release.k_anonymity", rows=n_sup))
        if n_rem:
            reason = "release.episode_link_dropped" if t == "episode_event" else "release.fact_suppressed"
            out.append(dict(site=s, table=t, category="fact_suppressed", reason_code=reason, rows=n_rem))
        if n_with:
            reason = "release.notes_withheld" if t == "note" else "release.death_year_generalised"
            out.append(dict(site=s, table=t, category="suppressed", reason_code=reason, rows=n_with))
        if n_gen:
            out.append(dict(site=s, table=t, category="generalised", reason_code="release.fact_generalised", rows=n_gen))
        out.append(dict(site=s, table=t, category="out", reason_code=None, rows=height - n_sup - n_rem - n_with))
    return out


def _per_person_accounting(table: str, frames: dict[str, pl.DataFrame], suppressed: pl.Series) -> list[dict[str, object]]:
    """in / suppressed / merged / out per site for a table of one row per person and site: a person
    seen at several sites keeps the row of the first site (sorted); later sites count it as merged."""
    rows: list[dict[str, object]] = []
    seen: set[int] = set()
    for site, df in sorted(frames.items()):
        n_sup = int(df["person_id"].is_in(suppressed).sum())
        ids = df.filter(~pl.col("person_id").is_in(suppressed))["person_id"].to_list()
        merged = sum(1 for i in ids if i in seen)
        seen.update(ids)
        rows.append(dict(site=site, table=table, category="in", reason_code=None, rows=df.height))
        if n_sup:
            rows.append(dict(site=site, table=table, category="suppressed", reason_code="release.k_anonymity", rows=n_sup))
        if merged:
            rows.append(dict(site=site, table=table, category="merged", reason_code="release.same_person", rows=merged))
        rows.append(dict(site=site, table=table, category="out", reason_code=None, rows=len(ids) - merged))
    return rows


__all__ = ["ReleaseResult", "build_release", "qi_frame"]
