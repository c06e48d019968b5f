"""The README.md a researcher finds in each release folder, written from the manifest."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

VOCABULARY_TABLES = ("concept", "concept_ancestor", "concept_relationship", "vocabulary", "domain", "concept_class",
                     "relationship")
# what an empty derived table depends on: table -> (the table it is derived from, why it can be empty when that
# one is not)
DERIVED = {
    "drug_era": ("drug_exposure", "no drug exposure maps to a drug whose RxNorm ingredient the vocabulary used "
                 "holds (eras are built per ingredient)"),
    "condition_era": ("condition_occurrence", "no condition maps to a standard concept (unmapped conditions, "
                      "concept 0, make no era)"),
    "episode": ("condition_occurrence", "no cancer diagnosis maps to a concept the oncology episodes are built from"),
    "episode_event": ("episode", "no event is linked to an episode"),
}


def _accounted(manifest: Mapping[str, Any], table: str, stages: tuple[str, ...], categories: tuple[str, ...]) -> int:
    return sum(int(r.get("rows") or 0) for r in manifest.get("row_accounting") or []
               if r.get("table") == table and r.get("stage") in stages and r.get("category") in categories)


def empty_tables(manifest: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(table, why it is empty) for every published table with no row, from the release itself: the
    files' row counts, the row accounting of each stage and the policy."""
    rows: dict[str, int] = {}
    for f in manifest.get("files") or []:
        if "table" in f:
            rows[f["table"]] = rows.get(f["table"], 0) + int(f.get("rows") or 0)
    policy = manifest.get("policy") or {}
    levels = ((manifest.get("risk") or {}).get("summary") or {}).get("levels") or {}
    out: list[tuple[str, str]] = []
    for t in sorted(t for t, n in rows.items() if n == 0):
        built = _accounted(manifest, t, ("omop",), ("out", "produced"))
        raw_bad = _accounted(manifest, t, ("raw", "omop"), ("quarantined",))
        removed = _accounted(manifest, t, ("release",), ("suppressed", "removed", "fact_suppressed", "quarantined"))
        if t == "note" and not policy.get("publish_notes"):
            why = "withheld by the policy (`publish_notes` is off: free text keeps quasi-identifiers)"
        elif t == "location" and built > 0 and levels.get("postcode") == 4:
            why = ("places of residence were generalised away (the top level of the location hierarchy), so no "
                   "location is published")
        elif t == "death" and built == 0:
            why = ("no deaths in the extracts (no source recorded a death date; hospital-csv extracts carry it in "
                   "`patients.csv` since 2026-12-06)")
        elif built > 0:
            why = (f"its {built:,} row(s) were removed by the anonymisation"
                   + (f" ({removed:,} counted in `row_accounting`)" if removed else "")
                   + (": the death year was generalised away" if t == "death" else ""))
        elif t in DERIVED and rows.get(DERIVED[t][0], 0) > 0:
            why = DERIVED[t][1]
        elif t in DERIVED:
            why = f"derived from `{DERIVED[t][0]}`, which is empty"
        elif raw_bad:
            why = f"every source row was quarantined ({raw_bad:,} rows; see `row_accounting`)"
        else:
            why = "the extracts hold no rows for it"
        out.append((t, why))
    return out


def researcher_readme(manifest: Mapping[str, Any], schemas: Mapping[str, list[tuple[str, str]]], meta: Mapping[str, Any]) -> str:
    ds, v = manifest["dataset"], manifest["version"]
    risk = manifest.get("risk", {})
    summary = risk.get("summary", {})
    levels = summary.get("levels", {})
    policy = manifest.get("policy", {})
    facts = manifest.get("facts", {})
    tables = [f for f in manifest["files"] if f["path"].endswith(".parquet") and "table" in f]
    products = manifest.get("products") or []
    products_text = "".join(
        f"\n- `{p['path']}` ({p['name']}): {p['description']} Counts below {p['disclosure']['k']} are withheld "
        f"(null, `suppressed`){', with secondary suppression' if 'secondary' in p['disclosure']['rule'] else ''}; "
        f"see its `product.json`."
        for p in products if not p.get("person_level"))
    if products_text:
        products_text = ("\n\nData products (aggregates computed from the pseudonymised data of this release's persons, "
                         "not from the generalised tables, under disclosure control):" + products_text + "\n")
    person_level = "".join(
        f"\n- `{p['path']}` ({p['name']}): {p['description']} Files and columns: its `product.json`."
        for p in products if p.get("person_level"))
    if person_level:
        products_text += ("\n\nPerson-level data products (built from this pseudonymised release's own tables: "
                          "the same person ids and dates, under the same data permit):" + person_level + "\n")
    demo = (
        "\n> **DEMO release.** Made from synthetic data with the demo project key. It says so in its\n"
        "> manifest and metadata and cannot be approved for the catalogue. Do not use it for research.\n"
        if manifest.get("demo") else ""
    )
    rows = "\n".join(f"| `{f['table']}` | {f['rows']:,} | {len(schemas.get(f['table'], []))} |" for f in tables
                     if f["table"] not in VOCABULARY_TABLES)
    vocab_rows = ", ".join(f"`{f['table']}` ({f['rows']:,} rows)" for f in tables if f["table"] in VOCABULARY_TABLES)
    vocab_text = (f"\nThe vocabulary rows of every concept id these tables use, and of their ancestors, are under "
                  f"`omop/` too: {vocab_rows}. Name a concept id by joining `concept`; expand a concept to its "
                  "descendants (or roll it up) with `concept_ancestor`. They are not person data. "
                  "`VOCABULARY-LICENCES.md` gives the source and the terms of each vocabulary.\n") if vocab_rows else (
        "\nThis release carries no vocabulary tables: name concept ids with the OMOP vocabularies from "
        "https://athena.ohdsi.org.\n")
    empty = empty_tables(manifest)
    empty_text = ("\n**Empty tables**, and why:\n\n" + "\n".join(f"- `{t}`: {why}." for t, why in empty) + "\n"
                  if empty else "")
    yob = levels.get("year_of_birth")
    pc = levels.get("postcode")
    sex = levels.get("sex")
    pc_text = {
        0: "the postcode (`zip`, with the commune and canton names in Luxembourg)",
        1: "the commune in Luxembourg (`city`, with its canton as `county`) and the country abroad",
        2: "the canton in Luxembourg (`county`) and the country abroad",
        3: "the country only",
        4: "removed",
    }.get(pc, "as the manifest says") if pc is not None else "not generalised"
    yob_text = {0: "exact year", 1: "5-year bands", 2: "10-year bands", 3: "20-year bands", 4: "removed (0)"}.get(yob, "bands") if yob is not None else "exact year"
    mode = manifest.get("mode") or policy.get("mode", "anonymised")
    km = risk.get("km", {})
    k, m = policy.get("k", "?"), policy.get("attacker_facts", 0)
    fact_tables = risk.get("facts", {}).get("tables", {})
    fact_lines = []
    for t, o in sorted(fact_tables.items()):
        tot = {x: sum(int(c.get(x, 0)) for c in o.get("facts", {}).values()) for x in ("exact", "generalised", "suppressed")}
        whole = sum(tot.values()) or 1
        fact_lines.append(f"| `{t}` | {100 * tot['exact'] / whole:.1f}% | {100 * tot['generalised'] / whole:.1f}% | "
                          f"{100 * tot['suppressed'] / whole:.1f}% | {int(o.get('removed', 0)):,} |")
    fact_text = ("\nFacts (the values an attacker could know) kept exactly, generalised and suppressed, per table:\n"
                 "\n| table | facts exact | generalised | suppressed | rows removed |\n|---|---:|---:|---:|---:|\n"
                 + "\n".join(fact_lines) + "\n") if fact_lines else ""
    earlier = summary.get("earlier_versions") or []
    if mode == "pseudonymised":
        mode_text = (f"**Pseudonymised release** for the secure processing environment of data permit "
                     f"`{manifest.get('permit')}`: personal data under the GDPR, restricted access, never listed in a "
                     "public catalogue. Ids and date offsets are derived for this permit only: they do not join with "
                     "any other release. Facts are kept as recorded; the persons a re-identifying attacker could "
                     "single out are measured in `reports/risk-report.html`, not prevented: keep the data inside the "
                     "environment.")
    else:
        after = km.get("after") or []
        mode_text = (f"**Anonymised release**: every combination of the person-level fields below, together with "
                     f"any {m} facts of a person's record (a diagnosis, a drug, a procedure, which tests, a care "
                     f"site...), is shared by at least {k} persons"
                     + (f" (checked on these files: {after[-1] if after else 0} persons at risk)" if km.get("checked") else "")
                     + (f", also jointly with the earlier versions {', '.join(map(str, earlier))} of this dataset"
                        if earlier else "") + ". `reports/risk-report.html` says what this protects against and what "
                     "it does not.")
    event_dates = policy.get("event_dates", "day")
    dates_text = {"day": "", "week": " Every date is then truncated to its week (Monday).",
                  "month": " Every date is then truncated to the first day of its month."}.get(event_dates, "")
    return f"""# {meta.get('title', ds)}: version {v}
{demo}
Dataset `{ds}`, version {v}, created {manifest['created']} by ds4h {manifest.get('code_version', '')}.
Project `{manifest.get('project')}`, key fingerprint `{manifest.get('key_fingerprint')}`.
Publisher: {meta.get('publisher', '')}. Access through the health data access body only; re-identifying
anyone, or passing the data on, is prohibited.

{mode_text}

## What is in it

OMOP CDM v5.4 tables as Parquet (zstd), one folder per table under `omop/`, sorted by `person_id`
then date. {facts.get('individuals', '?'):,} persons; events from {facts.get('start')} to {facts.get('end')}
(shifted dates, see below).

| table | rows | columns |
|---|---:|---:|
{rows}
{empty_text}{vocab_text}{products_text}
`manifest.json` lists every file with its size, row count and SHA-256; `reports/` holds the
re-identification risk report; `metadata/` holds the HealthDCAT-AP and Croissant descriptions.
Check a copy with `ds4h verify <this folder>`.

## How it was made

Hospital extracts were validated (bad rows quarantined, never published), mapped to OMOP concepts,
pseudonymised (keyed HMAC-SHA256 ids; direct identifiers dropped), consolidated across sites (a
patient seen at two hospitals is one person) and anonymised over all sites at once with
k = {k} and at most {float(policy.get('suppression', 0)):.0%} of persons suppressed
({summary.get('suppressed_persons', '?')} were). Highest prosecutor risk after: {risk.get('after', {}).get('prosecutor_max', 0):.3f};
average: {risk.get('after', {}).get('prosecutor_avg', 0):.3f}.

## What was changed, and what it means for analyses

- **Dates** are shifted by one secret offset per person (within ±{policy.get('date_shift_days', 180)} days, never 0).
  Intervals within a person are exact (durations, time to event, order of events); calendar
  effects (seasons, weekdays, a precise date of a policy change) are blurred by up to that range.
  For a person who died, the whole timeline is moved instead so that the death date falls on a
  secret day of the first year of the published death-year band: intervals stay exact, calendar
  dates of the dead are only right to the band.{dates_text}
- **Year of birth**: {yob_text if policy.get('birth', 'year') == 'year' else 'not published (0)'}; when banded, `year_of_birth` holds the first year of the band, and
  month and day of birth are absent. Ages computed from it are approximate by up to the band width.
- **Sex**: {"kept" if not sex else "generalised away (gender_concept_id 0)"}.
- **Death**: when the death year is generalised, `death_date` is the first day of its band's first
  year; when it is generalised away, death rows are removed (counted in `row_accounting`).
- **Location**: generalised to {pc_text}; `person.location_id` points to `location` rows at that level,
  and every row names its country (`country_source_value`, ISO 3166-1 alpha-2: LU, FR, BE, DE, ...).
  Residents of other countries are generalised to their country from the commune level up.
- **Rare concepts** used by fewer than {policy.get('rare_concept_threshold') or policy.get('k', '?')} persons were removed (counted in
  the manifest's `row_accounting` as `rare_concept`): rare diseases may be under-represented.
- **Notes**: {"de-identified clinical notes are included (names, phones, addresses, identifiers replaced by tags such as [NOM]; dates shifted with the person's offset, birth dates tagged)" if policy.get("publish_notes") else "clinical notes are withheld by the policy (the note table is empty)"}.
- **Suppressed persons** (whole records) are gone: counts are slightly low in small strata.
{fact_text}
## How to read it

DuckDB (start it inside this folder: the views use relative paths):

```
cd {ds}/{v}
duckdb catalog.duckdb -c "SELECT gender_concept_id, count(*) FROM person GROUP BY 1"
```

From elsewhere, open it and set the search path first:
`SET file_search_path = '/path/to/{ds}/{v}';` then query the views; or read the files directly:
`SELECT * FROM read_parquet('/path/to/{ds}/{v}/omop/person/*.parquet')`.

polars:

```python
import polars as pl
person = pl.read_parquet("omop/person/*.parquet")
conditions = pl.scan_parquet("omop/condition_occurrence/*.parquet")
```

pandas (pyarrow):

```python
import pandas as pd
visits = pd.read_parquet("omop/visit_occurrence/part-0.parquet")
```

Spark: `spark.read.parquet("omop/person")`.
"""
