"""ATLAS concept sets: parsing, resolution as ATLAS does it, and `ds4h cohort count` on a release,
checked against a count written independently in DuckDB SQL over the release's own vocabulary rows."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import polars as pl
import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.publish import publish_release
from transforms.conceptsets import ConceptSetError, ConceptSetItem, parse_concept_set, resolve

runner = CliRunner()
SHIPPED = Path(__file__).resolve().parents[1] / "schemas" / "cohorts" / "type-2-diabetes.json"

# a small hierarchy: 10 > 11 > 12, 10 > 13; 20 unrelated; source concepts 91 -> 11, 92 -> 13, 93 -> 20
ANCESTOR = pl.DataFrame({"ancestor_concept_id": [10, 10, 10, 10, 11, 11, 12, 13, 20],
                         "descendant_concept_id": [10, 11, 12, 13, 11, 12, 12, 13, 20]})
MAPS_TO = pl.DataFrame({"concept_id_1": [91, 92, 93, 11], "concept_id_2": [11, 13, 20, 11]})


def _item(cid: int, **kw: bool) -> dict[str, object]:
    return {"concept": {"CONCEPT_ID": cid}, **kw}


def test_resolution_follows_atlas() -> None:
    items = parse_concept_set({"items": [_item(10, includeDescendants=True, includeMapped=True),
                                         _item(13, isExcluded=True, includeMapped=True)]})
    assert resolve(items, ANCESTOR, MAPS_TO) == [10, 11, 12, 91]
    assert resolve([ConceptSetItem(10)], ANCESTOR, MAPS_TO) == [10]
    assert resolve([ConceptSetItem(10, include_descendants=True)], ANCESTOR, MAPS_TO) == [10, 11, 12, 13]
    assert resolve([ConceptSetItem(20, include_mapped=True)], ANCESTOR, MAPS_TO) == [20, 93]
    # an ATLAS export wraps the expression with the concept set's id and name
    wrapped = parse_concept_set({"id": 3, "name": "x", "expression": {"items": [_item(20)]}})
    assert wrapped == [ConceptSetItem(20)]


@pytest.mark.parametrize(("data", "message"), [
    ({"foo": 1}, "needs an 'items' list"),
    ({"items": []}, "has no items"),
    ({"items": [{"concept": {"CONCEPT_ID": "201826"}}]}, "no integer concept.CONCEPT_ID"),
    ({"items": [_item(1, includeDescendants="yes")]}, "includeDescendants must be true or false"),  # type: ignore[arg-type]
])
def test_bad_concept_sets_say_what_is_wrong(data: object, message: str) -> None:
    with pytest.raises(ConceptSetError, match=message):
        parse_concept_set(data)


def _release(dataspace: Path) -> Path:
    """A release whose event tables hold concepts of the set in standard and source columns."""
    people = list(range(1, 11))
    person = pl.DataFrame({"person_id": people, "gender_concept_id": [8507] * 10, "year_of_birth": [1950] * 10})
    day = pl.date(2020, 1, 1)
    cond = pl.DataFrame({"condition_occurrence_id": [1, 2, 3, 4, 5, 6, 7], "person_id": [1, 1, 2, 3, 4, 5, 6],
                         "condition_concept_id": [12, 10, 0, 13, 20, 11, 0],
                         "condition_source_concept_id": [0, 0, 91, 0, 0, 0, 93]}).with_columns(condition_start_date=day)
    drug = pl.DataFrame({"drug_exposure_id": [1, 2], "person_id": [7, 8], "drug_concept_id": [11, 20],
                         "drug_source_concept_id": [0, 0]}).with_columns(drug_exposure_start_date=day)
    visits = pl.DataFrame({"visit_occurrence_id": [1], "person_id": [1]}).with_columns(
        visit_start_date=day, visit_end_date=day)
    periods = pl.DataFrame({"observation_period_id": people, "person_id": people}).with_columns(
        observation_period_start_date=day, observation_period_end_date=day)
    concept_ancestor = ANCESTOR
    concept_relationship = MAPS_TO.with_columns(relationship_id=pl.lit("Maps to"))
    pub = publish_release(dataspace, "cs", {
        "person": person, "condition_occurrence": cond, "drug_exposure": drug, "visit_occurrence": visits,
        "observation_period": periods, "concept_ancestor": concept_ancestor,
        "concept_relationship": concept_relationship},
        {"project": "p", "key_fingerprint": "0" * 32, "policy": {"k": 3}, "risk": {}}, demo=False)
    return pub.path


def _duckdb_count(folder: Path, root: int, excluded: int) -> int:
    """The same question in SQL, written apart from transforms/conceptsets.py."""
    o = folder / "omop"
    sql = f"""
    WITH anc AS (SELECT * FROM '{o}/concept_ancestor/*.parquet'),
         rel AS (SELECT * FROM '{o}/concept_relationship/*.parquet' WHERE relationship_id = 'Maps to'),
         inc AS (SELECT descendant_concept_id AS c FROM anc WHERE ancestor_concept_id = {root}
                 UNION SELECT {root}),
         inc_m AS (SELECT c FROM inc UNION SELECT concept_id_1 FROM rel JOIN inc ON concept_id_2 = c),
         exc AS (SELECT descendant_concept_id AS c FROM anc WHERE ancestor_concept_id = {excluded}
                 UNION SELECT {excluded}),
         exc_m AS (SELECT c FROM exc UNION SELECT concept_id_1 FROM rel JOIN exc ON concept_id_2 = c),
         cs AS (SELECT c FROM inc_m EXCEPT SELECT c FROM exc_m)
    SELECT count(DISTINCT person_id) FROM ({" UNION ALL ".join(
        f"SELECT person_id FROM '{o}/{t}/*.parquet' WHERE {d}_concept_id IN (SELECT c FROM cs) "
        f"OR {d}_source_concept_id IN (SELECT c FROM cs)"
        for t, d in (("condition_occurrence", "condition"), ("drug_exposure", "drug"),
                     ("procedure_occurrence", "procedure"), ("measurement", "measurement"),
                     ("observation", "observation")) if (o / t).is_dir())})"""
    return int(duckdb.sql(sql).fetchall()[0][0])


def test_cohort_count_equals_an_independent_duckdb_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DS4H_HOME", str(tmp_path))
    folder = _release(tmp_path / "dataspace")
    cs = tmp_path / "set.json"
    cs.write_text(json.dumps({"items": [_item(10, includeDescendants=True, includeMapped=True),
                                        _item(13, isExcluded=True, includeDescendants=True, includeMapped=True)]}))
    r = runner.invoke(app, ["cohort", "count", str(cs), "--release", str(folder), "--json"])
    assert r.exit_code == 0, r.output
    got = json.loads(r.output)
    # persons 1 (12, 10), 2 (source 91 -> 11), 5 (11), 7 (drug 11); not 3 (13 excluded), 4/6/8 (20, 93)
    assert got == {"persons": 4, "suppressed": False, "concepts": [10, 11, 12, 91]}
    assert got["persons"] == _duckdb_count(folder, 10, 13)
    # DATASET/VERSION of the workspace works too
    r = runner.invoke(app, ["cohort", "count", str(cs), "--release", "cs/1", "--json"])
    assert json.loads(r.output)["persons"] == 4


def test_counts_between_1_and_k_minus_1_are_suppressed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DS4H_HOME", str(tmp_path))
    folder = _release(tmp_path / "dataspace")
    cs = tmp_path / "set.json"
    cs.write_text(json.dumps({"items": [_item(20, includeMapped=True)]}))  # persons 4, 6, 8: 3 = k, shown
    r = runner.invoke(app, ["cohort", "count", str(cs), "--release", str(folder), "--json"])
    assert json.loads(r.output) == {"persons": 3, "suppressed": False, "concepts": [20, 93]}
    cs.write_text(json.dumps({"items": [_item(20)]}))  # persons 4 and 8: 2 < k = 3
    r = runner.invoke(app, ["cohort", "count", str(cs), "--release", str(folder), "--json"])
    assert json.loads(r.output) == {"persons": None, "suppressed": True, "concepts": [20]}
    r = runner.invoke(app, ["cohort", "count", str(cs), "--release", str(folder)])
    assert r.exit_code == 0 and "fewer than 3 (suppressed)" in r.output
    cs.write_text(json.dumps({"items": [_item(999)]}))  # nobody: 0 discloses nothing
    r = runner.invoke(app, ["cohort", "count", str(cs), "--release", str(folder), "--json"])
    assert json.loads(r.output)["persons"] == 0


def test_cohort_count_errors_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DS4H_HOME", str(tmp_path))
    r = runner.invoke(app, ["cohort", "count", str(tmp_path / "missing.json")])
    assert r.exit_code == 1 and "does not exist" in r.output
    r = runner.invoke(app, ["cohort", "count", str(SHIPPED), "--release", "nope/3"])
    assert r.exit_code == 1 and "neither a release folder nor DATASET/VERSION" in r.output


def test_the_shipped_type_2_diabetes_set_parses() -> None:
    items = parse_concept_set(json.loads(SHIPPED.read_text()), str(SHIPPED))
    assert [(i.concept_id, i.is_excluded) for i in items] == [(201826, False), (201254, True)]


def test_every_shipped_concept_set_names_real_concept_rows() -> None:
    """Concept ids, names and codes are facts: each item of each shipped set matches the bundled
    vocabulary's CONCEPT row (a typo in an id would otherwise count the wrong thing silently)."""
    import csv

    vocab = Path(__file__).resolve().parents[1] / "schemas" / "vocabulary" / "demo" / "CONCEPT.csv"
    with vocab.open(encoding="utf-8", newline="") as f:
        rows = {int(r["concept_id"]): r for r in csv.DictReader(f, delimiter="\t")}
    shipped = sorted(SHIPPED.parent.glob("*.json"))
    assert len(shipped) >= 8
    for path in shipped:
        doc = json.loads(path.read_text())
        parse_concept_set(doc, str(path))
        for item in doc["expression"]["items"]:
            c = item["concept"]
            row = rows[c["CONCEPT_ID"]]
            assert (row["concept_name"], row["domain_id"], row["vocabulary_id"], row["concept_code"]) == (
                c["CONCEPT_NAME"], c["DOMAIN_ID"], c["VOCABULARY_ID"], c["CONCEPT_CODE"]), path.name
