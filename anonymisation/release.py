"""The release: one global privacy decision over all sites, applied to every site's rows.

1. persons are consolidated across sites (one row per pseudonymous person);
2. their quasi-identifiers (year of birth, sex, postcode by default) form a frequency table, and
   the k-anonymity engine chooses the optimal generalisation with record suppression;
3. the decision is applied: QIs generalised, suppressed persons removed with all their rows,
   concepts used by fewer than ``rare_threshold`` persons removed;
4. every row is accounted for per stage, site and table.

Generalised year of birth is stored as the first year of its band (``year_of_birth`` stays an
integer as the CDM requires); the manifest's ``generalisation`` section says which band width.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from anonymisation.consolidate import consolidate_persons
from anonymisation.kanon import (
    SearchResult,
    apply_levels,
    encode,
    frequency_table,
    hierarchies_for,
    search,
)
from anonymisation.pseudonym import id63
from anonymisation.rare import GENERALISED, generalise_rare_concepts
from anonymisation.risk import read_population
from anonymisation.risk_report import full_report, model_of
from schemas import omop as cdm
from schemas.policy import PrivacyPolicy
from transforms.ingest import accounting_frame

_KEPT = frozenset({"person", "location", "observation_period", "cdm_source"})  # small, used after the loop
SEX = {8507: "M", 8532: "F"}
SEX_BACK = {"M": 8507, "F": 8532}
MISSING = "*"
# the concept column whose rarity (fewer than rare_threshold persons) removes a row
RARE_CONCEPT_COLUMN: dict[str, str] = {
    "condition_occurrence": "condition_concept_id", "drug_exposure": "drug_concept_id",
    "procedure_occurrence": "procedure_concept_id", "measurement": "measurement_concept_id",
    "observation": "observation_concept_id", "device_exposure": "device_concept_id",
    "condition_era": "condition_concept_id", "drug_era": "drug_concept_id", "episode": "episode_object_concept_id",
}


@dataclass
class ReleaseResult:
    tables: dict[str, pl.DataFrame]
    accounting: pl.DataFrame
    search: SearchResult
    report: dict[str, Any]  # the steward's risk report (JSON-ready; render_html draws it)
    summary: dict[str, Any] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)  # rows of every released table (sunk ones too)

    @property
    def risk_after(self) -> dict[str, Any]:
        return dict(self.report["risk"]["after"])

    @property
    def risk_before(self) -> dict[str, Any]:
        return dict(self.report["risk"]["before"])


def qi_frame(persons: pl.DataFrame, locations: pl.DataFrame, deaths: pl.DataFrame | None = None) -> pl.DataFrame:
    """person_id, year_of_birth, sex, postcode, death_year as strings (missing values as ``*``: the
    living have no death year, which no generalisation changes)."""
    loc = locations.select("location_id", postcode="zip").unique("location_id")
    dead = (deaths.group_by("person_id").agg(death_year=pl.col("death_date").min().dt.year().cast(pl.String))
            if deaths is not None and deaths.height else pl.DataFrame(schema={"person_id": pl.Int64, "death_year": pl.String}))
    return persons.join(loc, on="location_id", how="left").join(dead, on="person_id", how="left").select(
        "person_id",
        year_of_birth=pl.col("year_of_birth").cast(pl.String),
        sex=pl.col("gender_concept_id").replace_strict(SEX, default="U", return_dtype=pl.String),
        postcode=pl.col("postcode").fill_null(MISSING),
        death_year=pl.col("death_year").fill_null(MISSING),
    )


def _record_sizes(df: pl.DataFrame, cols: list[str]) -> pl.Series:
    return df.select(pl.len().over(cols).alias("size"))["size"]


def _band_start(label: pl.Expr) -> pl.Expr:
    """'1950' -> 1950, '[1950-1954]' or '1950-1954' -> 1950, '*' -> null."""
    return label.str.extract(r"(\d{3,4})", 1).cast(pl.Int32)


def build_release(
    site_tables: Mapping[str, Mapping[str, pl.DataFrame]],
    policy: PrivacyPolicy,
    secret: bytes,
    ancestor: pl.DataFrame | None = None,
    concept: pl.DataFrame | None = None,
    sink: Callable[[str, pl.DataFrame], None] | None = None,
) -> ReleaseResult:
    """``site_tables[site][table]``: the pseudo tables of every site (a mapping that reads each table
    when asked, e.g. ``transforms.storage.LazyTables``, keeps one table in memory at a time).

    With ``sink``, each event table is handed to it as soon as it is released and not kept in the
    result (``rows`` still counts it); person, location, observation_period and cdm_source stay."""
    sites = sorted(site_tables)
    cons = consolidate_persons(
        {s: site_tables[s]["person"] for s in sites}, {s: site_tables[s]["observation_period"] for s in sites}
    )
    locations = pl.concat([site_tables[s]["location"] for s in sites], how="vertical_relaxed").unique("location_id")
    deaths = [site_tables[s]["death"] for s in sites if "death" in site_tables[s]]
    qis = qi_frame(cons.persons, locations, pl.concat(deaths, how="vertical_relaxed") if deaths else None)
    qi_cols = [q.column for q in policy.quasi_identifiers]
    missing = [c for c in qi_cols if c not in qis.columns]
    if missing:
        raise ValueError(f"policy names quasi-identifier(s) {missing} not in the person QI table {qis.columns[1:]}")
    freq = frequency_table(qis, qi_cols)
    hierarchies = hierarchies_for(freq, {q.column: q.hierarchy for q in policy.quasi_identifiers})
    problem = encode(freq, hierarchies)
    result = search(problem, model_of(policy), policy.metric)
    kept = apply_levels(qis, hierarchies, result.levels, result.suppressed_classes)
    assert isinstance(kept, pl.DataFrame)
    suppressed_ids = qis.filter(~pl.col("person_id").is_in(kept["person_id"].implode()))["person_id"]

    # persons: generalised QIs written back
    persons = cons.persons.filter(~pl.col("person_id").is_in(suppressed_ids.implode()))
    g = kept.rename({c: f"g_{c}" for c in qi_cols})
    persons = persons.join(g, on="person_id", how="left")
    updates: list[pl.Expr] = []
    if "year_of_birth" in qi_cols:
        updates.append(_band_start(pl.col("g_year_of_birth")).fill_null(0).alias("year_of_birth"))
    if "sex" in qi_cols:
        updates.append(pl.col("g_sex").replace_strict(SEX_BACK, default=0, return_dtype=pl.Int32).alias("gender_concept_id"))
        updates.append(pl.when(pl.col("g_sex").is_in(["M", "F"])).then(pl.col("g_sex")).otherwise(None).alias("gender_source_value"))
    # location: one row per generalised postcode label
    pc_level = result.levels.get("postcode")
    if "postcode" in qi_cols and pc_level is not None:
        labels = sorted(set(persons["g_postcode"].drop_nulls().to_list()) - {MISSING})
        loc_ids = {lab: id63(secret, "release-location", lab) for lab in labels}
        updates.append(pl.col("g_postcode").replace_strict(loc_ids, default=None, return_dtype=pl.Int64).alias("location_id"))
        loc = _release_locations(loc_ids)
    else:
        loc = locations
    persons = persons.with_columns(updates).drop([f"g_{c}" for c in qi_cols])
    persons = persons.with_columns(person_source_value=pl.lit(None, pl.String))
    tables: dict[str, pl.DataFrame] = {"person": cdm.conform(persons, "person").sort("person_id"),
                                       "location": cdm.conform(loc, "location").sort("location_id")}
    acc: list[dict[str, object]] = []
    rows: dict[str, int] = {}
    sup = suppressed_ids.implode()
    acc += _per_person_accounting("person", {s: site_tables[s]["person"] for s in sites}, sup)

    # every other table: suppressed persons' rows go; rows of rare concepts go
    rare_threshold = policy.rare_threshold
    rare_counts: dict[str, int] = {}
    generalised: dict[str, int] = {}
    names = sorted({t for s in sites for t in site_tables[s]} - {"person", "location", "observation_period"})
    removed_episodes: set[int] = set()
    for t in [n for n in names if n != "episode_event"] + (["episode_event"] if "episode_event" in names else []):
        frames = [site_tables[s][t].with_columns(_site=pl.lit(s)) for s in sites if t in site_tables[s]]
        all_rows = pl.concat(frames, how="vertical_relaxed")
        has_person = "person_id" in all_rows.columns
        all_rows = all_rows.with_columns(_sup=pl.col("person_id").is_in(sup) if has_person else pl.lit(False))
        if t == "episode_event":
            all_rows = all_rows.with_columns(_sup=pl.col("episode_id").is_in(sorted(removed_episodes)))
        concept_col = RARE_CONCEPT_COLUMN.get(t)
        all_rows = all_rows.with_columns(_row=pl.int_range(pl.len(), dtype=pl.Int64))
        if concept_col is not None and has_person:
            source_col = concept_col.replace("_concept_id", "_source_value")
            candidates = all_rows.filter(~pl.col("_sup"))
            rr = generalise_rare_concepts(candidates, concept_col, rare_threshold, ancestor, concept,
                                          source_col=source_col if source_col in all_rows.columns else None)
            rare_kept = rr.table
            # a generalised row no longer names its rare source code
            src_cols = [c for c in (source_col, concept_col.replace("_concept_id", "_source_concept_id")) if c in rare_kept.columns]
            rare_kept = rare_kept.with_columns([pl.when(pl.col(GENERALISED)).then(None).otherwise(pl.col(c)).alias(c) for c in src_cols])
            generalised[t] = rr.generalised_rows
            rare_counts[f"{t}.{concept_col}"] = len(rr.generalised_concepts) + rr.removed_concepts + rr.removed_source_values
            all_rows = all_rows.with_columns(_rare=~pl.col("_sup") & ~pl.col("_row").is_in(rare_kept["_row"].implode()))
            replaced = rare_kept.select("_row", concept_col)
            all_rows = all_rows.join(replaced.rename({concept_col: "_new_concept"}), on="_row", how="left").with_columns(
                pl.coalesce("_new_concept", concept_col).alias(concept_col)).drop("_new_concept")
            if src_cols:
                nulled = rare_kept.filter(pl.col(GENERALISED))["_row"].implode()
                all_rows = all_rows.with_columns([pl.when(pl.col("_row").is_in(nulled)).then(None).otherwise(pl.col(c)).alias(c) for c in src_cols])
        else:
            all_rows = all_rows.with_columns(_rare=pl.lit(False))
        # death dates follow the generalisation of the death year: the first day of the band's first
        # year; a death year generalised away (``*``) removes the row, counted as suppressed
        death_level = result.levels.get("death_year", 0)
        all_rows = all_rows.with_columns(_dgen=pl.lit(False))
        if t == "note" and not policy.publish_notes:
            all_rows = all_rows.with_columns(_dgen=~pl.col("_sup"), _rare=pl.col("_rare") | ~pl.col("_sup"))
        if t == "death" and death_level:
            band = kept.select("person_id", _band=_band_start(pl.col("death_year")))
            all_rows = all_rows.join(band, on="person_id", how="left").with_columns(
                death_date=pl.date(pl.col("_band"), 1, 1), death_datetime=pl.lit(None, pl.Datetime("us")),
                _dgen=~pl.col("_sup") & pl.col("_band").is_null(),
            ).drop("_band")
            all_rows = all_rows.with_columns(_rare=pl.col("_rare") | pl.col("_dgen"))
        if t == "episode":
            removed_episodes = set(all_rows.filter(pl.col("_sup") | pl.col("_rare"))["episode_id"].to_list())
        for s in sites:
            part = all_rows.filter(pl.col("_site") == s)
            if not has_person and t != "episode_event":
                acc.append(dict(site=s, table=t, category="produced", reason_code=None, rows=part.height))
                continue
            acc.append(dict(site=s, table=t, category="in", reason_code=None, rows=part.height))
            n_sup = int(part["_sup"].sum())
            n_dgen = int(part["_dgen"].sum())
            n_rare = int(part["_rare"].sum()) - n_dgen
            if n_sup:
                acc.append(dict(site=s, table=t, category="suppressed", reason_code="release.k_anonymity", rows=n_sup))
            if n_dgen:
                reason = "release.notes_withheld" if t == "note" else "release.death_year_generalised"
                acc.append(dict(site=s, table=t, category="suppressed", reason_code=reason, rows=n_dgen))
            if n_rare:
                acc.append(dict(site=s, table=t, category="rare_concept", reason_code="release.rare_concept", rows=n_rare))
            acc.append(dict(site=s, table=t, category="out", reason_code=None, rows=part.height - n_sup - n_rare - n_dgen))
        kept_rows = all_rows.filter(~pl.col("_sup") & ~pl.col("_rare")).drop("_site", "_sup", "_rare", "_row", "_dgen", strict=False)
        spec = cdm.table(t)
        pk = spec.primary_key
        order = [c for c in ("person_id", pk) if c and c in kept_rows.columns] or kept_rows.columns[:2]
        tables[t] = cdm.conform(kept_rows, t).sort(order)
        del all_rows, kept_rows
        rows[t] = tables[t].height
        if sink is not None and t not in _KEPT:
            sink(t, tables.pop(t))
    # one cdm_source row for the release, naming the sites it comes from
    if "cdm_source" in tables and tables["cdm_source"].height:
        first = tables["cdm_source"].sort("cdm_source_abbreviation").head(1)
        tables["cdm_source"] = cdm.conform(first.with_columns(
            cdm_source_name=pl.lit("ds4h release"), cdm_source_abbreviation=pl.lit("ds4h"),
            cdm_holder=pl.lit(", ".join(sites)),
            source_description=pl.lit(f"Pseudonymised and k-anonymised OMOP CDM from {len(sites)} site(s)"),
        ), "cdm_source")
    # observation periods: one per person over all sites (merged)
    op_all = pl.concat([site_tables[s]["observation_period"] for s in sites], how="vertical_relaxed")
    op_kept = op_all.filter(~pl.col("person_id").is_in(sup))
    op = op_kept.group_by("person_id").agg(
        observation_period_start_date=pl.col("observation_period_start_date").min(),
        observation_period_end_date=pl.col("observation_period_end_date").max(),
        period_type_concept_id=pl.col("period_type_concept_id").first(),
    ).with_columns(observation_period_id=pl.col("person_id"))
    tables["observation_period"] = cdm.conform(op, "observation_period").sort("person_id")
    acc += _per_person_accounting("observation_period", {s: site_tables[s]["observation_period"] for s in sites}, sup)
    accounting = pl.concat(
        [accounting_frame("release", str(r["site"]), [{k: v for k, v in r.items() if k != "site"}]) for r in acc]
        + [accounting_frame("release", "all", [dict(table="location", category="produced", reason_code=None,
                                                   rows=tables["location"].height)])]
    )
    population = read_population(policy.population) if policy.population else None
    report = full_report(problem, result, policy, population=population, rare_concepts=rare_counts)
    # the published report must be byte-stable for the same inputs: timings go to the asset metadata
    report.pop("seconds", None)
    report.get("search", {}).pop("seconds", None)
    summary = {
        "k": policy.k,
        "levels": dict(result.levels),
        "classes": result.classes,
        "suppressed_persons": int(suppressed_ids.len()),
        "persons": int(cons.persons.height),
        "persons_released": int(tables["person"].height),
        "merged_person_rows": cons.merged_rows,
        "conflicts": cons.conflicts,
        "metric": policy.metric,
        "metrics": dict(result.metrics),
        "rare_concept_rows_generalised": generalised,
        "smallest_class": int(_record_sizes(kept, qi_cols).min() or 0) if kept.height else 0,  # type: ignore[arg-type,unused-ignore]
    }
    rows.update({t: df.height for t, df in tables.items()})
    return ReleaseResult(tables, accounting, result, report, summary, rows)


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


def _release_locations(loc_ids: dict[str, int]) -> pl.DataFrame:
    """Location rows for generalised postcode labels: postcode, commune, canton or country."""
    from schemas.geo import COUNTRY, communes, postcode_index

    by_commune = {c.name: c for c in communes()}
    cantons = {c.canton for c in communes()}
    idx = postcode_index()
    rows = []
    for label, lid in loc_ids.items():
        row: dict[str, object] = {"location_id": lid, "country_source_value": "LU"}
        if label in idx:
            c = idx[label]
            row.update(zip=label, city=c.name, county=c.canton)
        elif label in by_commune:
            row.update(city=label, county=by_commune[label].canton)
        elif label in cantons:
            row.update(county=label)
        elif label == COUNTRY:
            pass
        else:
            row.update(location_source_value=re.sub(r"[^\w\- ]", "", label)[:50])
        rows.append(row)
    schema = {"location_id": pl.Int64, "country_source_value": pl.String, "zip": pl.String, "city": pl.String,
              "county": pl.String, "location_source_value": pl.String}
    if not rows:
        return pl.DataFrame(schema=schema)
    return pl.DataFrame(rows, schema=schema)
