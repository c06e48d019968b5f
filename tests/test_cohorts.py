"""Cohort specs as OHDSI's cohort table: each rule of the spec on hand-made OMOP tables, the spec's
errors, and `ds4h cohort build` on a release, checked against an independent DuckDB SQL query."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.publish import publish_release
from schemas.cohort_spec import CohortSpec, CohortSpecError, load_cohort_spec, parse_cohort_spec
from transforms.cohorts import CohortError, build_cohort, build_cohort_with_attrition, collapse_eras

runner = CliRunner()
SHIPPED = Path(__file__).resolve().parents[1] / "schemas" / "cohorts" / "type-2-diabetes.yaml"

# entry set: 10 and its descendant 11; exclusion set: 30
ANCESTOR = pl.DataFrame({"ancestor_concept_id": [10, 10, 11, 30], "descendant_concept_id": [10, 11, 11, 30]})
MAPS_TO = pl.DataFrame({"concept_id_1": [91], "concept_id_2": [11]})
D = dt.date
OBS_START, OBS_END = D(2010, 1, 1), D(2020, 12, 31)


def _tables() -> dict[str, pl.DataFrame]:
    """Persons (year of birth; entry events):
    1 (1970): 2012-03-01 condition 11, 2015-06-01 condition 10 and drug 10 (same day: one event)
    2 (2005): 2019-01-01, aged 14
    3 (1950): 2015-03-01, observation from 2015-01-01 only (59 days before)
    4 (1960): 2009-05-01 (before its observation period), 2014-01-01
    5 (1960): 2016-01-01, exclusion concept 30 (a drug) on 2015-01-01, before the index
    6 (1960): 2016-01-01, exclusion concept 30 on 2017-01-01, after the index
    7 (1960): 2011-01-01, in the source concept column only
    8 (2000): 2015-01-01 (aged 15), 2019-06-01 (aged 19)
    """
    person = pl.DataFrame({"person_id": list(range(1, 9)), "gender_concept_id": [8507] * 8,
                           "year_of_birth": [1970, 2005, 1950, 1960, 1960, 1960, 1960, 2000]})
    cond = pl.DataFrame({
        "condition_occurrence_id": list(range(1, 13)),
        "person_id": [1, 1, 2, 3, 4, 4, 5, 6, 7, 8, 8, 6],
        "condition_concept_id": [11, 10, 11, 10, 10, 10, 10, 10, 0, 11, 11, 30],
        "condition_source_concept_id": [0, 0, 0, 0, 0, 0, 0, 0, 11, 0, 0, 0],
        "condition_start_date": [D(2012, 3, 1), D(2015, 6, 1), D(2019, 1, 1), D(2015, 3, 1), D(2009, 5, 1),
                                 D(2014, 1, 1), D(2016, 1, 1), D(2016, 1, 1), D(2011, 1, 1), D(2015, 1, 1),
                                 D(2019, 6, 1), D(2017, 1, 1)],
    })
    drug = pl.DataFrame({"drug_exposure_id": [1, 2], "person_id": [1, 5], "drug_concept_id": [10, 30],
                         "drug_source_concept_id": [0, 0],
                         "drug_exposure_start_date": [D(2015, 6, 1), D(2015, 1, 1)]})
    periods = pl.DataFrame({"observation_period_id": list(range(1, 9)), "person_id": list(range(1, 9)),
                            "observation_period_start_date": [OBS_START] * 2 + [D(2015, 1, 1)] + [OBS_START] * 5,
                            "observation_period_end_date": [OBS_END] * 8})
    return {"person": person, "condition_occurrence": cond, "drug_exposure": drug, "observation_period": periods}


def _sets(folder: Path) -> None:
    (folder / "entry.json").write_text(json.dumps({"items": [
        {"concept": {"CONCEPT_ID": 10}, "includeDescendants": True, "includeMapped": True}]}))
    (folder / "exclusion.json").write_text(json.dumps({"items": [{"concept": {"CONCEPT_ID": 30}}]}))


def _spec(folder: Path, **kw: Any) -> CohortSpec:
    _sets(folder)
    return parse_cohort_spec({"cohort_definition_id": 7, "name": "test", "entry": "entry.json", **kw}, folder)


def _build(folder: Path, **kw: Any) -> pl.DataFrame:
    return build_cohort(_spec(folder, **kw), {t: df.lazy() for t, df in _tables().items()}, ANCESTOR, MAPS_TO)


def _starts(cohort: pl.DataFrame) -> dict[int, list[dt.date]]:
    return {p: g["cohort_start_date"].to_list()
            for (p,), g in cohort.group_by("subject_id", maintain_order=True)}


def test_first_occurrence_inside_observation(tmp_path: Path) -> None:
    cohort = _build(tmp_path)
    assert cohort.schema == pl.Schema({"cohort_definition_id": pl.Int64, "subject_id": pl.Int64,
                                       "cohort_start_date": pl.Date, "cohort_end_date": pl.Date})
    # person 4's 2009 event lies before its observation period: its first event is 2014's
    assert _starts(cohort) == {1: [D(2012, 3, 1)], 2: [D(2019, 1, 1)], 3: [D(2015, 3, 1)], 4: [D(2014, 1, 1)],
                               5: [D(2016, 1, 1)], 6: [D(2016, 1, 1)], 7: [D(2011, 1, 1)], 8: [D(2015, 1, 1)]}
    assert cohort["cohort_definition_id"].unique().to_list() == [7]
    assert cohort["cohort_end_date"].unique().to_list() == [OBS_END]


def test_age_prior_observation_and_exclusions_each_remove_their_persons(tmp_path: Path) -> None:
    spec = _spec(tmp_path, age_at_index={"min": 18}, prior_observation_days=365, exclusions=["exclusion.json"])
    cohort, attrition = build_cohort_with_attrition(spec, {t: df.lazy() for t, df in _tables().items()},
                                                    ANCESTOR, MAPS_TO)
    # 2 (14) and 8 (15 at its first event) too young, 3 observed 59 days only, 5 excluded before index
    assert cohort["subject_id"].to_list() == [1, 4, 6, 7]
    assert attrition == [
        {"rule": "entry events (entry.json)", "persons": 8, "events": 11},
        {"rule": "inside an observation period", "persons": 8, "events": 10},
        {"rule": "first occurrence per person", "persons": 8, "events": 8},
        {"rule": "age at index >= 18 years", "persons": 6, "events": 6},
        {"rule": "at least 365 days of prior observation", "persons": 5, "events": 5},
        {"rule": "none of exclusion.json on or before index", "persons": 4, "events": 4},
        {"rule": "cohort eras (overlaps collapsed)", "persons": 4, "events": 4},
    ]


def test_age_bounds_are_included(tmp_path: Path) -> None:
    # ages at the first event: 1: 42, 2: 14, 3: 65, 4: 54, 5 and 6: 56, 7: 51, 8: 15
    assert _build(tmp_path, age_at_index={"max": 51})["subject_id"].to_list() == [1, 2, 7, 8]
    assert _build(tmp_path, age_at_index={"min": 51, "max": 56})["subject_id"].to_list() == [4, 5, 6, 7]
    assert _build(tmp_path, age_at_index={"min": 57})["subject_id"].to_list() == [3]


def test_first_is_taken_before_the_rules_all_keeps_every_event(tmp_path: Path) -> None:
    # person 8's first event (aged 15) fails the age rule: with `first` the person is out, not moved on
    first = _build(tmp_path, age_at_index={"min": 18})
    assert 8 not in first["subject_id"].to_list()
    every = _build(tmp_path, occurrence="all", age_at_index={"min": 18}, end="index")
    assert _starts(every)[8] == [D(2019, 6, 1)]
    assert _starts(every)[1] == [D(2012, 3, 1), D(2015, 6, 1)]  # two events, same-day drug counted once
    assert _starts(every)[4] == [D(2014, 1, 1)]  # the 2009 event is outside observation either way


def test_exclusion_only_before_or_on_the_index_date(tmp_path: Path) -> None:
    kept = _build(tmp_path, exclusions=["exclusion.json"])["subject_id"].to_list()
    assert 5 not in kept and 6 in kept
    # with all occurrences, person 6's 2016 event is kept: its exclusion concept comes a year later
    assert 6 in _build(tmp_path, occurrence="all", exclusions=["exclusion.json"])["subject_id"].to_list()


def test_exclusion_on_the_index_date_itself(tmp_path: Path) -> None:
    tables = _tables()
    extra = pl.DataFrame({"condition_occurrence_id": [99], "person_id": [7], "condition_concept_id": [30],
                          "condition_source_concept_id": [0], "condition_start_date": [D(2011, 1, 1)]})
    tables["condition_occurrence"] = pl.concat([tables["condition_occurrence"], extra])
    spec = _spec(tmp_path, exclusions=["exclusion.json"])
    kept = build_cohort(spec, {t: df.lazy() for t, df in tables.items()}, ANCESTOR, MAPS_TO)["subject_id"].to_list()
    assert kept == [1, 2, 3, 4, 6, 8]  # 7: exclusion concept on its index date; 5: before it


def test_end_options_and_era_collapse(tmp_path: Path) -> None:
    def person1(**kw: Any) -> list[tuple[dt.date, dt.date]]:
        c = _build(tmp_path, occurrence="all", **kw).filter(pl.col("subject_id") == 1)
        return list(zip(c["cohort_start_date"].to_list(), c["cohort_end_date"].to_list(), strict=True))

    # events 2012-03-01 and 2015-06-01 (1187 days apart)
    assert person1() == [(D(2012, 3, 1), OBS_END)]  # both end at the period's end: one era
    assert person1(end="index") == [(D(2012, 3, 1), D(2012, 3, 1)), (D(2015, 6, 1), D(2015, 6, 1))]
    assert person1(end={"days": 100}) == [(D(2012, 3, 1), D(2012, 6, 9)), (D(2015, 6, 1), D(2015, 9, 9))]
    # 1187 days after the first start, the second event starts on its era's last day: collapsed
    assert person1(end={"days": 1187}) == [(D(2012, 3, 1), D(2015, 6, 1) + dt.timedelta(days=1187))]
    # one day shorter, the first era ends the day before: two eras
    assert person1(end={"days": 1186}) == [(D(2012, 3, 1), D(2015, 5, 31)),
                                           (D(2015, 6, 1), D(2015, 6, 1) + dt.timedelta(days=1186))]
    # never after the observation period's end
    six = _build(tmp_path, end={"days": 5000}).filter(pl.col("subject_id") == 6)
    assert six["cohort_end_date"].to_list() == [OBS_END]


def test_collapse_eras_merges_overlaps_only() -> None:
    rows = pl.DataFrame({"person_id": [1, 1, 1, 1, 2, 2],
                         "start": [D(2020, 1, 1), D(2020, 1, 5), D(2020, 1, 3), D(2020, 2, 1), D(2020, 1, 10),
                                   D(2020, 1, 11)],
                         "end": [D(2020, 1, 10), D(2020, 1, 6), D(2020, 1, 20), D(2020, 2, 2), D(2020, 1, 10),
                                 D(2020, 1, 12)]})
    got = collapse_eras(rows)
    # person 1: (1-1..1-10), (1-3..1-20) and the nested (1-5..1-6) form one era; February apart.
    # person 2: an era starting the day after the previous end is not collapsed
    assert got.rows() == [(1, D(2020, 1, 1), D(2020, 1, 20)), (1, D(2020, 2, 1), D(2020, 2, 2)),
                          (2, D(2020, 1, 10), D(2020, 1, 10)), (2, D(2020, 1, 11), D(2020, 1, 12))]


def test_nobody_and_missing_tables(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    (tmp_path / "entry.json").write_text(json.dumps({"items": [{"concept": {"CONCEPT_ID": 999}}]}))
    tables = {t: df.lazy() for t, df in _tables().items()}
    cohort, attrition = build_cohort_with_attrition(spec, tables, ANCESTOR, MAPS_TO)
    assert cohort.is_empty() and cohort.columns == ["cohort_definition_id", "subject_id", "cohort_start_date",
                                                    "cohort_end_date"]
    assert attrition[-1]["persons"] == 0
    with pytest.raises(CohortError, match="no observation_period table"):
        build_cohort(spec, {"condition_occurrence": tables["condition_occurrence"]}, ANCESTOR, MAPS_TO)
    aged = _spec(tmp_path, age_at_index={"min": 18})
    with pytest.raises(CohortError, match="no person table"):
        build_cohort(aged, {t: lf for t, lf in tables.items() if t != "person"}, ANCESTOR, MAPS_TO)


@pytest.mark.parametrize(("data", "message"), [
    ({"cohort_definition_id": 1, "name": "x", "entry": "entry.json", "ocurrence": "all"}, "ocurrence: unknown key"),
    ({"cohort_definition_id": 1, "name": "x", "entry": "entry.json", "occurrence": "last"}, "occurrence: Input should"),
    ({"cohort_definition_id": 1, "name": "x", "entry": "entry.json", "age_at_index": {"min": 80, "max": 18}},
     "min \\(80\\) is greater than max \\(18\\)"),
    ({"cohort_definition_id": 1, "name": "x", "entry": "entry.json", "age_at_index": {"minimum": 18}},
     "age_at_index.minimum: unknown key"),
    ({"cohort_definition_id": 1, "name": "x", "entry": "entry.json", "prior_observation_days": -1},
     "prior_observation_days: Input should be greater than or equal to 0"),
    ({"cohort_definition_id": 1, "name": "x", "entry": "entry.json", "end": "death"}, "end"),
    ({"cohort_definition_id": 1, "name": "x", "entry": "entry.json", "end": {"days": -3}}, "end.days"),
    ({"name": "x", "entry": "entry.json"}, "cohort_definition_id: required key is missing"),
    ({"cohort_definition_id": 1, "name": "x", "entry": "missing.json"}, "entry concept set .*missing.json does not exist"),
    ({"cohort_definition_id": 1, "name": "x", "entry": "entry.json", "exclusions": ["nope.json"]},
     "exclusions concept set .*nope.json does not exist"),
    (["not", "a", "mapping"], "must be a YAML mapping"),
])
def test_bad_specs_say_what_is_wrong(tmp_path: Path, data: Any, message: str) -> None:
    _sets(tmp_path)
    with pytest.raises(CohortSpecError, match=message) as e:
        parse_cohort_spec(data, tmp_path)
    assert "\n" not in str(e.value)


def test_spec_files(tmp_path: Path) -> None:
    with pytest.raises(CohortSpecError, match="does not exist"):
        load_cohort_spec(tmp_path / "none.yaml")
    (tmp_path / "bad.yaml").write_text("name: [unclosed\n")
    with pytest.raises(CohortSpecError, match="not valid YAML at line"):
        load_cohort_spec(tmp_path / "bad.yaml")
    shipped = load_cohort_spec(SHIPPED)
    assert shipped.entry == SHIPPED.parent / "type-2-diabetes.json"
    assert shipped.occurrence == "first" and shipped.age_at_index is not None and shipped.age_at_index.min == 18


def _release(dataspace: Path) -> Path:
    tables = _tables()
    day = D(2012, 1, 1)
    tables["visit_occurrence"] = pl.DataFrame({"visit_occurrence_id": [1], "person_id": [1],
                                               "visit_start_date": [day], "visit_end_date": [day]})
    tables["concept_ancestor"] = ANCESTOR
    tables["concept_relationship"] = MAPS_TO.with_columns(relationship_id=pl.lit("Maps to"))
    pub = publish_release(dataspace, "co", tables,
                          {"project": "p", "key_fingerprint": "0" * 32, "policy": {"k": 3}, "risk": {}}, demo=False)
    return pub.path


def _duckdb_cohort(folder: Path, min_age: int, prior_days: int) -> list[tuple[Any, ...]]:
    """First occurrence, age and prior observation in SQL, written apart from transforms/cohorts.py."""
    o = folder / "omop"
    sql = f"""
    WITH cs AS (SELECT descendant_concept_id AS c FROM '{o}/concept_ancestor/*.parquet' WHERE ancestor_concept_id = 10
                UNION SELECT 10),
         cs_m AS (SELECT c FROM cs UNION SELECT concept_id_1 FROM '{o}/concept_relationship/*.parquet'
                  WHERE relationship_id = 'Maps to' AND concept_id_2 IN (SELECT c FROM cs)),
         ev AS (SELECT person_id, condition_start_date AS d FROM '{o}/condition_occurrence/*.parquet'
                WHERE condition_concept_id IN (SELECT c FROM cs_m) OR condition_source_concept_id IN (SELECT c FROM cs_m)
                UNION
                SELECT person_id, drug_exposure_start_date FROM '{o}/drug_exposure/*.parquet'
                WHERE drug_concept_id IN (SELECT c FROM cs_m) OR drug_source_concept_id IN (SELECT c FROM cs_m)),
         inobs AS (SELECT ev.person_id, d, observation_period_start_date AS s, observation_period_end_date AS e
                   FROM ev JOIN '{o}/observation_period/*.parquet' op ON op.person_id = ev.person_id
                   WHERE d BETWEEN s AND e),
         firsts AS (SELECT * FROM inobs QUALIFY row_number() OVER (PARTITION BY person_id ORDER BY d) = 1)
    SELECT 1 AS cohort_definition_id, f.person_id AS subject_id, d AS cohort_start_date, e AS cohort_end_date
    FROM firsts f JOIN '{o}/person/*.parquet' p ON p.person_id = f.person_id
    WHERE year(d) - p.year_of_birth >= {min_age} AND date_diff('day', s, d) >= {prior_days}
    ORDER BY subject_id, cohort_start_date"""
    return duckdb.connect().execute(sql).fetchall()


def test_cohort_build_equals_an_independent_duckdb_query(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DS4H_HOME", str(tmp_path))
    folder = _release(tmp_path / "dataspace")
    _sets(tmp_path)
    spec = tmp_path / "c.yaml"
    spec.write_text("cohort_definition_id: 1\nname: adults\nentry: entry.json\nage_at_index: {min: 18}\n"
                    "prior_observation_days: 365\n")
    before = sorted(p.relative_to(folder) for p in folder.rglob("*"))
    out = tmp_path / "cohort.parquet"
    r = runner.invoke(app, ["cohort", "build", str(spec), "--release", "co/1", "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    got = json.loads(r.output)
    assert got["k"] == 3 and got["out"] == str(out)
    assert [s["persons"] for s in got["attrition"]] == [8, 8, 8, 6, 5, 5]
    cohort = pl.read_parquet(out)
    expected = _duckdb_cohort(folder, 18, 365)
    assert len(expected) == 5 and cohort.rows() == expected
    # deterministic, and nothing written into the release
    first = out.read_bytes()
    runner.invoke(app, ["cohort", "build", str(spec), "--release", str(folder), "--out", str(out)])
    assert out.read_bytes() == first
    assert sorted(p.relative_to(folder) for p in folder.rglob("*")) == before


def test_cohort_build_suppresses_small_counts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DS4H_HOME", str(tmp_path))
    folder = _release(tmp_path / "dataspace")
    _sets(tmp_path)
    spec = tmp_path / "c.yaml"
    # aged 18 to 45 at the first event: person 1 (42) only, k = 3
    spec.write_text("cohort_definition_id: 2\nname: young\nentry: entry.json\nage_at_index: {min: 18, max: 45}\n"
                    "prior_observation_days: 365\n")
    r = runner.invoke(app, ["cohort", "build", str(spec), "--release", str(folder), "--json"])
    steps = json.loads(r.output)["attrition"]
    assert steps[-1] == {"rule": "cohort eras (overlaps collapsed)", "persons": None, "events": None,
                         "suppressed": True}
    assert steps[0]["persons"] == 8 and not steps[0]["suppressed"]
    r = runner.invoke(app, ["cohort", "build", str(spec), "--release", str(folder)])
    assert r.exit_code == 0 and "fewer than 3" in r.output and "give --out" in r.output
    # 0 persons discloses nothing and is shown
    spec.write_text("cohort_definition_id: 2\nname: nobody\nentry: entry.json\nage_at_index: {min: 100}\n")
    steps = json.loads(runner.invoke(app, ["cohort", "build", str(spec), "--release", str(folder), "--json"]).output)
    assert steps["attrition"][-1]["persons"] == 0


def test_cohort_build_errors_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DS4H_HOME", str(tmp_path))
    folder = _release(tmp_path / "dataspace")
    _sets(tmp_path)
    spec = tmp_path / "c.yaml"
    spec.write_text("cohort_definition_id: 1\nname: x\nentry: entry.json\n")
    r = runner.invoke(app, ["cohort", "build", str(spec), "--release", str(folder), "--out",
                            str(folder / "cohort.parquet")])
    assert r.exit_code == 1 and "inside the release" in r.output and not (folder / "cohort.parquet").exists()
    r = runner.invoke(app, ["cohort", "build", str(spec), "--release", str(folder), "--out",
                            str(tmp_path / "no" / "c.parquet")])
    assert r.exit_code == 1 and "does not exist" in r.output
    spec.write_text("cohort_definition_id: 1\nname: x\nentry: entry.json\noccurrence: every\n")
    r = runner.invoke(app, ["cohort", "build", str(spec), "--release", str(folder)])
    assert r.exit_code == 1 and "occurrence" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["cohort", "build", str(tmp_path / "none.yaml"), "--release", str(folder)])
    assert r.exit_code == 1 and "does not exist" in r.output
