"""The release audit (anonymisation/audit.py) against hand-worked numbers and a brute-force reading of
docs/privacy.md (tests/release_check.py), on release folders written here by hand."""

from __future__ import annotations

import json
import tempfile
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anonymisation import audit
from anonymisation.audit import AuditError, audit_release
from tests.release_check import release_check

I32, I64, STR, DATE = pa.int32(), pa.int64(), pa.large_string(), pa.date32()
SCHEMAS: dict[str, dict[str, pa.DataType]] = {
    "person": {"person_id": I64, "gender_concept_id": I32, "year_of_birth": I32, "location_id": I64},
    "location": {"location_id": I64, "zip": STR},
    "death": {"person_id": I64, "death_date": DATE, "cause_concept_id": I32, "cause_source_value": STR},
    "visit_occurrence": {"person_id": I64, "visit_concept_id": I32, "visit_source_value": STR,
                         "care_site_id": I64, "provider_id": I64},
    "condition_occurrence": {"person_id": I64, "condition_concept_id": I32, "condition_source_value": STR,
                             "condition_start_date": DATE},
    "condition_era": {"person_id": I64, "condition_concept_id": I32},
    "drug_exposure": {"person_id": I64, "drug_concept_id": I32, "drug_source_value": STR},
    "drug_era": {"person_id": I64, "drug_concept_id": I32},
    "measurement": {"person_id": I64, "measurement_concept_id": I32, "value_as_number": pa.float64()},
}


def write(version: Path, table: str, rows: list[dict[str, Any]], parts: int = 1) -> None:
    """Write ``rows`` as ``parts`` Parquet files of omop/<table>/ (columns and types from SCHEMAS)."""
    folder = version / "omop" / table
    folder.mkdir(parents=True, exist_ok=True)
    schema = pa.schema(list(SCHEMAS[table].items()))
    for i in range(parts):
        chunk = rows[i::parts]
        pq.write_table(pa.Table.from_pylist(chunk, schema=schema), folder / f"part-{i}.parquet")


def person(pid: int, gender: int, yob: int | None, loc: int | None) -> dict[str, Any]:
    return {"person_id": pid, "gender_concept_id": gender, "year_of_birth": yob, "location_id": loc}


def agree(version: Path, k: int, m: int, earlier: list[Path] | None = None) -> dict[str, Any]:
    """Run both implementations; assert they agree; return the audit's dict."""
    result = audit_release(version, k, m, earlier=earlier if earlier is not None else []).as_dict()
    brute = release_check(version, k, m, earlier)
    json.dumps(result)  # JSON-ready
    for name, mine in (("release", result["release"]),
                       ("joint", result["joint"]["check"] if result["joint"] else None)):
        ref = brute[name]
        if ref is None:
            assert mine is None
            continue
        for field in ("persons", "classes", "at_risk", "violating_sets", "violating_columns"):
            assert mine[field] == ref[field], (name, field, mine[field], ref[field])
    return result


# ------------------------------------------------------------------------------ the planted release

# k = 3. Classes (gender, year of birth, location zip, death year):
#   A  persons 1-6   8507, 1950, zip 1000, -      6 persons
#   B  person 7      8507, 1950, zip 2000, -      location column splits it from A
#   C  persons 8, 9  8532, 1960, zip 1000, -      death year splits C and D
#   D  person 10     8532, 1960, zip 1000, 2020
#   E  persons 11-14 8532, null, null row         11-13 without location_id, 14 at a location whose zip is null
#   F  persons 15-17 8532, 1980, zip 1000, 2019   17 has two death rows (2019, 2020): the earliest counts
# Facts of class A (frequent: held by >= 3 of its 6 persons):
#   F1 condition_occurrence.condition_concept_id 201826   1 2 3 4 5 6
#   F2 condition_occurrence.condition_source_value E11    1 2 3 4 5
#   F3 condition_occurrence.condition_source_value E11.9  6           (concept shared, source differs: rare)
#   F4 condition_era.condition_concept_id 201826          1 2 3 4 5 6 (era: another fact than F1)
#   F5 visit_occurrence.care_site_id 77                   1 2 3 4
#   F6 drug_exposure.drug_concept_id 1111                 1 2 5
#   F7 drug_era.drug_concept_id 1111                      1 2 5
#   a  measurement.measurement_concept_id 3004249         2 3 4 5 6
#   b  measurement.measurement_concept_id 3012888         1 3 4 5 6
#   c  measurement.measurement_concept_id 3027018         1 2 4 5
# plus values that are not facts (0 concepts, null or '' source values, null care sites).
# Level 1: {F3} -> person 6.
# Level 2 (pairs of frequent facts held by < 3): {F5,F6} {F5,F7} (1 2), {F6,a} {F7,a} (2 5), {F6,b} {F7,b} (1 5).
# Level 3 (triples whose pairs are all frequent): {F5,a,b} (3 4), {F5,a,c} (2 4), {F5,b,c} (1 4), {a,b,c} (4 5).
PLANTED = {
    "persons": 17,
    "classes": 6,
    "smallest_class": 1,
    "at_risk": [4, 5, 8, 10],  # 7 8 9 10 | + 6 | + 1 2 5 | + 3 4
    "violating_sets": [3, 1, 6, 4],  # classes B C D | F3 | pairs | triples
    "violating_columns": [
        {},
        {"condition_occurrence.condition_source_value": 1},
        {"visit_occurrence.care_site_id": 2, "drug_exposure.drug_concept_id": 3, "drug_era.drug_concept_id": 3,
         "measurement.measurement_concept_id": 4},
        {"visit_occurrence.care_site_id": 3, "measurement.measurement_concept_id": 9},
    ],
}


def planted(version: Path) -> None:
    people = [person(p, 8507, 1950, 1) for p in range(1, 7)]
    people += [person(7, 8507, 1950, 2)]
    people += [person(p, 8532, 1960, 1) for p in (8, 9, 10)]
    people += [person(p, 8532, None, None) for p in (11, 12, 13)] + [person(14, 8532, None, 3)]
    people += [person(p, 8532, 1980, 1) for p in (15, 16, 17)]
    write(version, "person", people)
    write(version, "location", [{"location_id": 1, "zip": "1000"}, {"location_id": 2, "zip": "2000"},
                                {"location_id": 3, "zip": None}])
    write(version, "death", [
        {"person_id": 10, "death_date": date(2020, 3, 1), "cause_concept_id": 4306655, "cause_source_value": "I21"},
        *({"person_id": p, "death_date": date(2019, 6, 1), "cause_concept_id": 4306655, "cause_source_value": "I21"}
          for p in (15, 16, 17)),
        {"person_id": 17, "death_date": date(2020, 2, 1), "cause_concept_id": 0, "cause_source_value": ""},
    ])
    cond = [{"person_id": p, "condition_concept_id": 201826, "condition_source_value": "E11",
             "condition_start_date": date(2020, 1, p)} for p in range(1, 6)]
    cond.append({"person_id": 6, "condition_concept_id": 201826, "condition_source_value": "E11.9"})
    cond.append({"person_id": 7, "condition_concept_id": 201826, "condition_source_value": "E11"})
    # not facts: a 0 concept, an empty and a null source value (else person 3 would be at risk at level 1)
    cond.append({"person_id": 3, "condition_concept_id": 0, "condition_source_value": ""})
    cond.append({"person_id": 3, "condition_concept_id": None, "condition_source_value": None})
    # a row of a person who is not in the release: ignored
    cond.append({"person_id": 99, "condition_concept_id": 201826, "condition_source_value": "E11"})
    write(version, "condition_occurrence", cond, parts=2)
    write(version, "condition_era", [{"person_id": p, "condition_concept_id": 201826} for p in range(1, 7)])
    visits = [{"person_id": p, "visit_concept_id": 0, "visit_source_value": "", "care_site_id": 77}
              for p in (1, 2, 3, 4)]
    visits.append({"person_id": 5, "visit_concept_id": None, "visit_source_value": None, "care_site_id": None})
    visits += [{"person_id": p, "visit_concept_id": 9202} for p in (11, 12, 13, 14)]
    visits.append({"person_id": 14, "visit_concept_id": 0, "care_site_id": None})
    write(version, "visit_occurrence", visits)
    write(version, "drug_exposure", [{"person_id": p, "drug_concept_id": 1111, "drug_source_value": None}
                                     for p in (1, 2, 5)])
    write(version, "drug_era", [{"person_id": p, "drug_concept_id": 1111} for p in (1, 2, 5)])
    meas = [(3004249, (2, 3, 4, 5, 6)), (3012888, (1, 3, 4, 5, 6)), (3027018, (1, 2, 4, 5))]
    write(version, "measurement", [{"person_id": p, "measurement_concept_id": c, "value_as_number": 1.0 * p}
                                   for c, ps in meas for p in ps] +
          [{"person_id": 4, "measurement_concept_id": 3004249, "value_as_number": 99.0}])  # a repeat


@pytest.mark.parametrize("m", [0, 1, 2, 3])
def test_planted_release(tmp_path: Path, m: int) -> None:
    version = tmp_path / "omop-test" / "1"
    planted(version)
    result = agree(version, 3, m)
    r = result["release"]
    assert r["persons"] == PLANTED["persons"]
    assert r["classes"] == PLANTED["classes"]
    assert r["smallest_class"] == PLANTED["smallest_class"]
    assert r["at_risk"] == PLANTED["at_risk"][: m + 1]
    assert r["violating_sets"] == PLANTED["violating_sets"][: m + 1]
    assert r["violating_columns"] == PLANTED["violating_columns"][: m + 1]
    assert result["passed"] is False and r["passed"] is False
    assert result["joint"] is None
    read = {"person", "location", "death"} | ({"condition_occurrence", "measurement"} if m else set())
    assert set(result["tables"]) >= read  # m = 0 reads no fact table
    assert (r["facts"] is None) == (m == 0)


MODES = {  # how the classes are computed: (DENSE_CELLS, TRIPLE_CELLS, GROUP_PAIRS)
    "at once": (audit.DENSE_CELLS, audit.TRIPLE_CELLS, audit.GROUP_PAIRS),  # one product per class (small classes)
    "by fact": (audit.DENSE_CELLS, 0, audit.GROUP_PAIRS),  # conditioned on each fact (large classes)
    "in row chunks": (3, 0, audit.GROUP_PAIRS),  # no class fits a dense block (very large classes)
    "class by class": (audit.DENSE_CELLS, audit.TRIPLE_CELLS, 1),  # every class its own group of pairs
    "in class groups": (3, 0, 5),  # groups of a few classes, and row chunks
}


@pytest.mark.parametrize("mode", list(MODES))
def test_planted_release_every_way(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    """The same numbers whichever way the classes are computed."""
    version = tmp_path / "omop-test" / "1"
    planted(version)
    monkeypatch.setattr(audit, "DENSE_CELLS", MODES[mode][0])
    monkeypatch.setattr(audit, "TRIPLE_CELLS", MODES[mode][1])
    monkeypatch.setattr(audit, "GROUP_PAIRS", MODES[mode][2])
    r = audit_release(version, 3, 3, earlier=[]).release
    assert r.at_risk == PLANTED["at_risk"]
    assert r.violating_sets == PLANTED["violating_sets"]
    assert r.violating_columns == PLANTED["violating_columns"]


def test_a_release_that_passes(tmp_path: Path) -> None:
    """Every class of at least k persons, every fact set held by at least k of its class."""
    version = tmp_path / "omop-test" / "1"
    write(version, "person", [person(p, 8507 if p <= 3 else 8532, 1950, None) for p in range(1, 8)])
    write(version, "condition_occurrence", [
        {"person_id": p, "condition_concept_id": 201826, "condition_source_value": "E11"} for p in range(1, 8)])
    write(version, "visit_occurrence", [
        {"person_id": p, "visit_concept_id": 9202, "care_site_id": 77 if p <= 3 else 0} for p in range(1, 8)])
    write(version, "measurement", [{"person_id": p, "measurement_concept_id": 0} for p in range(1, 8)])
    for m in range(4):
        result = agree(version, 3, m)
        assert result["passed"] is True
        assert result["release"]["at_risk"] == [0] * (m + 1)
        assert result["release"]["classes"] == 2 and result["release"]["smallest_class"] == 3
    # a larger k: the class of 3 persons fails at level 0, then both classes
    assert agree(version, 4, 1)["release"]["at_risk"] == [3, 3]
    assert agree(version, 5, 0)["release"]["at_risk"] == [7]


# ------------------------------------------------------------------------------------- two versions

# k = 3. Version 2 (audited): persons 1-7, one class (8507, 1950); it passes alone (m <= 3):
#   condition 201826: 1-7; measurement 3004249: 3 4 5; care site 77: 3 4 5.
# Version 1: persons 1-6 and 8 (8 is gone in version 2, 7 is new: ABSENT in version 1); person 6 was born in
# 1955 in version 1 (class key differs between versions). Version 1 facts: measurement 3004249: 1 2 3 4;
# drug 1111: 1 2; condition source value E11: 1 4 5.
# Joint classes: 1-5 (K, K); 6 (K', K); 7 (ABSENT, K). Joint facts of class 1-5:
#   condition 201826 1-5, measurement 3004249 1-5 (union), care site 3 4 5, E11 1 4 5, drug 1111 1 2 (rare)
#   pairs: care site & E11: 4 5 (< 3); every other pair >= 3; triples with frequent pairs: all 3.
JOINT = {"at_risk": [2, 4, 6, 6], "violating_sets": [2, 1, 1, 0]}


def two_versions(dataset: Path) -> tuple[Path, Path]:
    v1, v2 = dataset / "1", dataset / "2"
    write(v2, "person", [person(p, 8507, 1950, None) for p in range(1, 8)])
    write(v2, "condition_occurrence", [{"person_id": p, "condition_concept_id": 201826} for p in range(1, 8)])
    write(v2, "measurement", [{"person_id": p, "measurement_concept_id": 3004249} for p in (3, 4, 5)])
    write(v2, "visit_occurrence", [{"person_id": p, "care_site_id": 77} for p in (3, 4, 5)])
    write(v1, "person", [person(p, 8507, 1955 if p == 6 else 1950, None) for p in (1, 2, 3, 4, 5, 6, 8)])
    write(v1, "measurement", [{"person_id": p, "measurement_concept_id": 3004249} for p in (1, 2, 3, 4)])
    write(v1, "drug_exposure", [{"person_id": p, "drug_concept_id": 1111} for p in (1, 2, 8)])
    write(v1, "condition_occurrence", [{"person_id": p, "condition_source_value": "E11"} for p in (1, 4, 5)])
    return v1, v2


@pytest.mark.parametrize("m", [0, 1, 2, 3])
def test_joint_with_an_earlier_version(tmp_path: Path, m: int) -> None:
    v1, v2 = two_versions(tmp_path / "ds")
    result = agree(v2, 3, m, earlier=[v1])
    assert result["release"]["at_risk"] == [0] * (m + 1)
    joint = result["joint"]
    assert joint["versions"] == ["1", "2"]
    assert joint["persons"] == {"1": 7, "2": 7}
    assert joint["present"] == {"1": 6, "2": 7}
    assert joint["check"]["persons"] == 7 and joint["check"]["classes"] == 3
    assert joint["check"]["at_risk"] == JOINT["at_risk"][: m + 1]
    assert joint["check"]["violating_sets"] == JOINT["violating_sets"][: m + 1]
    assert result["passed"] is False
    if m >= 2:
        assert joint["check"]["violating_columns"][2] == {
            "visit_occurrence.care_site_id": 1, "condition_occurrence.condition_source_value": 1}


def test_sibling_versions_are_found(tmp_path: Path) -> None:
    v1, v2 = two_versions(tmp_path / "ds")
    (tmp_path / "ds" / "approvals").mkdir()
    (tmp_path / "ds" / "01").mkdir()  # not a version name
    found = audit_release(v2, 3, 2)
    assert found.joint is not None and found.joint.versions == ["1", "2"]
    assert found.joint.check.at_risk == JOINT["at_risk"][:3]
    # auditing version 1: version 2 is its sibling (the joint key is (key in 2, key in 1))
    back = audit_release(v1, 3, 1)
    assert back.joint is not None and back.joint.versions == ["2", "1"]
    assert back.joint.present == {"2": 6, "1": 7}
    alone = audit_release(v2, 3, 2, earlier=[])
    assert alone.joint is None and alone.passed


def test_values_compare_as_text_across_types_and_parts(tmp_path: Path) -> None:
    """A concept written as a dictionary-encoded string in version 1 and as an integer in version 2 is one
    fact (values compare as text); part files with different columns are read together."""
    v1, v2 = tmp_path / "ds" / "1", tmp_path / "ds" / "2"
    for v in (v1, v2):
        write(v, "person", [person(p, 8507, 1950, None) for p in (1, 2, 3)])
    extra = v2 / "omop" / "person" / "part-1.parquet"  # a second part with one more (constant) column
    pq.write_table(pa.table({"person_id": pa.array([4], I64), "gender_concept_id": pa.array([8507], I32),
                             "year_of_birth": pa.array([1950], I32), "race_source_value": ["x"]}), extra)
    write(v2, "condition_occurrence", [{"person_id": p, "condition_concept_id": 201826} for p in (1, 2)])
    folder = v1 / "omop" / "condition_occurrence"
    folder.mkdir(parents=True)
    concept = pa.array(["201826"]).dictionary_encode()
    pq.write_table(pa.table({"person_id": pa.array([3], I64), "condition_concept_id": concept}),
                   folder / "part-0.parquet")
    result = agree(v2, 3, 1, earlier=[v1])
    # version 2 alone: persons 1-3 (race null) and person 4 (race x); the concept is held by 2 of 3
    assert result["release"]["classes"] == 2
    assert result["release"]["at_risk"] == [1, 3]
    # jointly: persons 1-3 all hold it (1, 2 in version 2, 3 in version 1); 4 is ABSENT from version 1
    assert result["joint"]["check"]["at_risk"] == [1, 1]


# ------------------------------------------------------------------------------------------- errors


def test_errors(tmp_path: Path) -> None:
    version = tmp_path / "ds" / "1"
    (version / "omop").mkdir(parents=True)
    with pytest.raises(AuditError, match="omop/person"):
        audit_release(version, 3, 1, earlier=[])
    write(version, "person", [person(1, 8507, 1950, None)])
    (version / "omop" / "measurement").mkdir()
    bad = version / "omop" / "measurement" / "part-0.parquet"
    bad.write_bytes(b"not parquet at all")
    with pytest.raises(AuditError, match=r"measurement/part-0\.parquet"):
        audit_release(version, 3, 1, earlier=[])
    bad.unlink()
    assert audit_release(version, 3, 1, earlier=[]).release.at_risk == [1, 1]
    with pytest.raises(ValueError, match="m = 4"):
        audit_release(version, 3, 4)
    with pytest.raises(ValueError, match="k must"):
        audit_release(version, 0, 1)
    # an earlier version without a person table
    (tmp_path / "ds" / "2" / "omop").mkdir(parents=True)
    with pytest.raises(AuditError, match="omop/person"):
        audit_release(version, 3, 1)
    write(version, "person", [person(1, 8507, 1950, None), person(1, 8532, 1950, None)])
    with pytest.raises(AuditError, match="not unique"):
        audit_release(version, 3, 1, earlier=[])


def test_result_holds_no_values(tmp_path: Path) -> None:
    version = tmp_path / "ds" / "1"
    planted(version)
    text = json.dumps(audit_release(version, 3, 3, earlier=[]).as_dict())
    for value in ("201826", "E11", "3004249", "1950", "1000", "77"):
        assert value not in text


# ------------------------------------------------------------------------------- random small releases

# Half the persons share one class key (so that pairs and triples matter), the others vary every field.
D1, D2 = date(2019, 5, 1), date(2020, 1, 1)
FACTS = {
    "conditions": st.sets(st.sampled_from([(11, "x"), (12, "x"), (13, None), (11, "y"), (14, "z")]), max_size=5),
    "eras": st.sets(st.sampled_from([11, 12]), max_size=2),
    "visits": st.lists(st.sampled_from([(9202, 5), (9202, None), (9201, 6)]), max_size=2),
    "noise": st.lists(st.sampled_from([(0, ""), (None, None), (0, None)]), max_size=2),  # no facts
}
PERSON = st.one_of(
    st.fixed_dictionaries({
        "gender_concept_id": st.just(8507), "year_of_birth": st.just(1950),
        "location_id": st.sampled_from([1, 3]), "deaths": st.just([]), **FACTS}),
    st.fixed_dictionaries({
        "gender_concept_id": st.sampled_from([8507, 8532]),
        "year_of_birth": st.sampled_from([1950, 1960, None]),
        # 1 and 3 share their zip; 2 (null zip), 9 (no such location) and None are all the null row
        "location_id": st.sampled_from([1, 3, None, 2, 9]),
        "deaths": st.sampled_from([[], [None], [D1], [D2, D1], [D2]]),
        **FACTS}),
)


def random_release(version: Path, people: list[dict[str, Any]], ids: list[int]) -> None:
    write(version, "person", [person(p, d["gender_concept_id"], d["year_of_birth"], d["location_id"])
                              for p, d in zip(ids, people, strict=True)])
    write(version, "location", [{"location_id": 1, "zip": "1000"}, {"location_id": 2, "zip": None},
                                {"location_id": 3, "zip": "1000"}])
    write(version, "death", [{"person_id": p, "death_date": dd, "cause_concept_id": 4306655 if dd else 0}
                             for p, d in zip(ids, people, strict=True) for dd in d["deaths"]])
    write(version, "condition_occurrence", [
        {"person_id": p, "condition_concept_id": c, "condition_source_value": s}
        for p, d in zip(ids, people, strict=True) for c, s in [*d["conditions"], *d["noise"]]], parts=2)
    write(version, "condition_era", [{"person_id": p, "condition_concept_id": c}
                                     for p, d in zip(ids, people, strict=True) for c in d["eras"]])
    write(version, "visit_occurrence", [{"person_id": p, "visit_concept_id": c, "care_site_id": cs}
                                        for p, d in zip(ids, people, strict=True)
                                        for c, cs in [*d["visits"], *((c, None) for c, _ in d["noise"])]])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(now=st.lists(PERSON, min_size=1, max_size=14), before=st.lists(PERSON, max_size=14),
       k=st.integers(1, 4), mode=st.sampled_from(list(MODES)))
def test_random_releases_agree(now: list[dict[str, Any]], before: list[dict[str, Any]], k: int,
                               mode: str) -> None:
    saved = audit.DENSE_CELLS, audit.TRIPLE_CELLS, audit.GROUP_PAIRS
    audit.DENSE_CELLS, audit.TRIPLE_CELLS, audit.GROUP_PAIRS = MODES[mode]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            dataset = Path(tmp) / "ds"
            # version 1 holds persons 3.. (so persons 1-2 of version 2 are ABSENT from it)
            random_release(dataset / "1", before, list(range(3, 3 + len(before))))
            random_release(dataset / "2", now, list(range(1, 1 + len(now))))
            for m in (0, 1, 2, 3):
                agree(dataset / "2", k, m, earlier=[dataset / "1"])
    finally:
        audit.DENSE_CELLS, audit.TRIPLE_CELLS, audit.GROUP_PAIRS = saved


def test_person_positions_equal_arrow_index_in() -> None:
    """The fact tables' person lookup (sorted once) gives what ``pc.index_in`` gives: first positions,
    null for absent and null values, across integer widths; other types take ``pc.index_in`` itself."""
    import numpy as np
    import pyarrow.compute as pc

    rng = np.random.default_rng(7)
    keys = pa.array(rng.permutation(np.arange(-50, 5_000, 3, dtype=np.int64)))
    positions = audit._Positions(keys)
    raw = rng.integers(-60, 5_100, 20_000)
    values = pa.array(raw, mask=rng.random(20_000) < 0.05)
    for v in (values, values.cast(pa.int32()), pa.array([], pa.int64()), pa.array([None, None], pa.int64())):
        expected = pc.index_in(v, value_set=keys, skip_nulls=True)
        got = positions(v)
        assert got.equals(expected.cast(got.type)), v.type
    assert 0 < positions(values).null_count < len(values)  # both found and absent values were tried
    text_keys = pa.array(["a", "b", "c"])
    assert audit._Positions(text_keys)(pa.array(["c", None, "z"])).to_pylist() == [2, None, None]
    assert audit._Positions(pa.array([], pa.int64()))(pa.array([1, None], pa.int64())).to_pylist() == [None, None]
