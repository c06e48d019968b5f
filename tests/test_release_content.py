"""What a release carries for analysis: death from the hospital-csv contract, an observation period
for every person, drug eras with the bundled vocabulary, source concept ids, the vocabulary rows of
every concept used (with their licences) and a README that says why a table is empty."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest

from generator.hospital import default_site_specs, generate
from pipelines.publish import publish_release, used_concept_ids
from pipelines.researcher_readme import empty_tables, researcher_readme
from schemas.mapping import HospitalMapping
from transforms.adapters.hospital_csv import hospital_to_staging
from transforms.ingest import ingest_site
from transforms.omop import harmonise_site
from transforms.storage import sha256_file
from transforms.vocabulary import Vocabulary, load_vocabulary, release_subset

TODAY = dt.date(2026, 1, 1)
PATIENTS = (
    "patient_id,birth_date,sex,updated_at,death_date,death_cause_code\n"
    "P1,1940-01-01,M,2020-01-01 10:00,2020-03-05, i21.9 \n"  # died after his stay, cause ICD-10
    "P2,1950-01-01,F,2019-06-01 08:00,,\n"  # alive
    "P3,1960-01-01,F,2018-04-02 09:00,,\n"  # no stay: known only by the record's date
    "P4,1970-01-01,M,,,\n"  # no dated fact at all
    "P5,1980-01-01,F,2020-01-01,1979-12-31,I50.9\n"  # death before birth
    "P6,1945-01-01,M,2020-01-01,2020-02-01,\n"  # dead, cause unknown
)
STAYS = (
    "stay_id,patient_id,admission,discharge,stay_type,ward\n"
    "S1,P1,2020-01-01 10:00,2020-01-03 12:00,INPATIENT,X\n"
    "S2,P2,2020-01-01 10:00,2020-01-01 12:00,OUTPATIENT,X\n"
    "S6,P6,2020-01-10 10:00,2020-02-01 12:00,INPATIENT,X\n"
)
DIAGNOSES = (
    "diagnosis_id,stay_id,patient_id,icd10_code,diagnosis_date,diagnosis_rank,description\n"
    "D1,S1,P1,I21.9,2020-01-01,PRINCIPAL,x\n"
    "D2,S2,P2,I10,2020-01-01,PRINCIPAL,x\n"
)
MEDICATIONS = (
    "medication_id,stay_id,patient_id,atc_code,drug_name,dose,dose_unit,route,start_date,end_date\n"
    "M1,S1,P1,A10BA02,metformin,500,mg,ORAL,2020-01-01,2020-01-03\n"
    "M2,S2,P2,C09AA03,lisinopril,10,mg,ORAL,2020-01-01,2020-01-20\n"
)


def _site(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, dict[str, pl.DataFrame], pl.DataFrame]:
    folder = _site(tmp_path_factory.mktemp("site"), {"patients.csv": PATIENTS, "stays.csv": STAYS,
                                                     "diagnoses.csv": DIAGNOSES, "medications.csv": MEDICATIONS})
    raw = ingest_site("a", folder, today=TODAY)
    stg = hospital_to_staging({n: e.table for n, e in raw.entities.items()})
    result = harmonise_site("a", stg, load_vocabulary(), TODAY)
    return raw, result.tables, result.accounting


def _by_key(tables: dict[str, pl.DataFrame]) -> dict[str, int]:
    return dict(tables["person"].select("person_source_value", "person_id").iter_rows())


def test_death_date_and_cause_come_from_the_patients_file(built: tuple[Any, dict[str, pl.DataFrame], pl.DataFrame]) -> None:
    raw, tables, _ = built
    q = raw.entities["patients"].quarantine
    assert q.select("patient_id", "reason_code", "reason_detail").rows() == [
        ("P5", "raw.inconsistent_dates", "death_date before birth_date")]
    ids = _by_key(tables)
    death = tables["death"].sort("death_date")
    assert death["person_id"].to_list() == [ids["P6"], ids["P1"]]
    assert death["death_date"].to_list() == [dt.date(2020, 2, 1), dt.date(2020, 3, 5)]
    # I21.9 maps (the demo STCM) to "Acute myocardial infarction", a Condition
    assert death.row(1, named=True)["cause_source_value"] == "I21.9"
    assert death.row(1, named=True)["cause_concept_id"] == 4329847
    assert death.row(0, named=True)["cause_concept_id"] is None  # no cause given: not "unmapped" (0)


def test_a_mapped_hospital_declares_the_death_columns(tmp_path: Path) -> None:
    folder = _site(tmp_path, {"PAT.csv": "NO,NE_LE,SEXE,DECES,CAUSE\nP1,1940-01-01,M,2020-03-05,I50.9\n",
                              "stays.csv": STAYS.splitlines()[0] + "\n"})
    mapping = HospitalMapping.model_validate({
        "files": {"patients": "PAT.csv"},
        "columns": {"patients": {"patient_id": "NO", "birth_date": "NE_LE", "sex": "SEXE", "death_date": "DECES",
                                 "death_cause_code": "CAUSE"}},
        "code_systems": {"patients": "ICD10"}})
    raw = ingest_site("a", folder, today=TODAY, mapping=mapping)
    stg = hospital_to_staging({n: e.table for n, e in raw.entities.items()}, mapping.code_systems)
    persons = stg["persons"]
    assert persons.select("death_date", "death_cause_code", "death_cause_system").row(0) == (
        dt.date(2020, 3, 5), "I50.9", "ICD10")
    death = harmonise_site("a", stg, load_vocabulary(), TODAY).tables["death"]
    assert death["cause_concept_id"].to_list() == [316139]  # heart failure


def test_every_person_has_an_observation_period(built: tuple[Any, dict[str, pl.DataFrame], pl.DataFrame]) -> None:
    _, tables, acc = built
    ids = _by_key(tables)
    assert set(ids) == {"P1", "P2", "P3", "P6"}  # P5 quarantined; P4 has no dated fact
    op = tables["observation_period"]
    assert op["person_id"].sort().to_list() == tables["person"]["person_id"].sort().to_list()
    span = {k: op.filter(pl.col("person_id") == v).select("observation_period_start_date",
                                                           "observation_period_end_date").row(0)
            for k, v in ids.items()}
    assert span["P1"] == (dt.date(2020, 1, 1), dt.date(2020, 3, 5))  # observation ends with death
    assert span["P2"] == (dt.date(2020, 1, 1), dt.date(2020, 1, 20))  # the drug's end
    assert span["P3"] == (dt.date(2018, 4, 2), dt.date(2018, 4, 2))  # no event: the record's date, one day
    person = acc.filter(pl.col("table") == "person")
    assert dict(zip(person["category"], person["rows"], strict=True)) == {"in": 5, "quarantined": 1, "out": 4}
    assert person.filter(pl.col("category") == "quarantined")["reason_code"].item() == "omop.no_dated_fact"


def test_drug_eras_with_the_bundled_vocabulary(built: tuple[Any, dict[str, pl.DataFrame], pl.DataFrame]) -> None:
    _, tables, _ = built
    era = tables["drug_era"].sort("drug_concept_id")
    assert era["drug_concept_id"].to_list() == [1308216, 1503297]  # lisinopril, metformin: their ingredients
    assert era["drug_era_end_date"].to_list() == [dt.date(2020, 1, 20), dt.date(2020, 1, 3)]


def test_source_concept_ids_are_filled_where_the_vocabulary_has_the_source_code(tmp_path: Path) -> None:
    demo = load_vocabulary()
    # an ICD-10 concept as Athena has them (the demo vocabulary has none: its ICD-10 codes map through its STCM)
    icd = pl.DataFrame({"concept_id": [45576876], "concept_name": ["Essential (primary) hypertension"],
                        "domain_id": ["Condition"], "vocabulary_id": ["ICD10"], "concept_class_id": ["ICD10 code"],
                        "standard_concept": [None], "concept_code": ["I10"]}).cast(demo.concept.schema)
    vocab = Vocabulary(pl.concat([demo.concept, icd]), demo.maps_to, demo.stcm)
    raw = ingest_site("a", _site(tmp_path, {"patients.csv": PATIENTS, "stays.csv": STAYS, "diagnoses.csv": DIAGNOSES}),
                      today=TODAY)
    stg = hospital_to_staging({n: e.table for n, e in raw.entities.items()})
    co = harmonise_site("a", stg, vocab, TODAY).tables["condition_occurrence"].sort("condition_source_value")
    assert co.select("condition_source_value", "condition_concept_id", "condition_source_concept_id").rows() == [
        ("I10", 320128, 45576876), ("I21.9", 4329847, 0)]


def test_release_subset_has_every_used_concept_and_its_ancestors() -> None:
    vocab = load_vocabulary()
    sub = release_subset(vocab, [19080128, 201826, 0, 8507, 123456789])
    concept = sub.tables["concept"]
    assert {19080128, 1308216, 201826, 0, 8507} <= set(concept["concept_id"].to_list())
    assert sub.missing == [123456789] and sub.used == 5
    anc = sub.tables["concept_ancestor"]
    assert (1308216, 19080128) in set(anc.select("ancestor_concept_id", "descendant_concept_id").iter_rows())
    assert anc["descendant_concept_id"].is_in([19080128, 201826, 0, 8507, 123456789]).all()
    rel = sub.tables["concept_relationship"]
    assert rel.filter(pl.col("relationship_id") == "Maps to").height > 0
    assert rel["concept_id_1"].is_in(concept["concept_id"].implode()).all()
    assert "vocabulary" in sub.tables and set(sub.tables["vocabulary"]["vocabulary_id"]) == set(concept["vocabulary_id"])
    again = release_subset(vocab, [8507, 201826, 19080128, 123456789, 0])
    for t, df in sub.tables.items():
        assert df.equals(again.tables[t]), t


def _manifest_extra() -> dict[str, Any]:
    return {"project": "demo", "key_fingerprint": "0" * 32, "policy": {"k": 5, "publish_notes": False}, "risk": {},
            "row_accounting": [
                {"stage": "omop", "site": "a", "table": "death", "category": "produced", "reason_code": None, "rows": 0},
                {"stage": "omop", "site": "a", "table": "drug_era", "category": "produced", "reason_code": None,
                 "rows": 0},
            ]}


def test_the_release_carries_the_vocabulary_and_says_why_tables_are_empty(
        built: tuple[Any, dict[str, pl.DataFrame], pl.DataFrame], tmp_path: Path) -> None:
    _, tables, _ = built
    out = {t: tables[t] for t in ("person", "observation_period", "visit_occurrence", "condition_occurrence",
                                  "drug_exposure", "measurement", "note")}
    out["death"] = tables["death"].clear()
    out["drug_era"] = tables["drug_era"].clear()
    pub = publish_release(tmp_path, "ds", out, _manifest_extra(), demo=True, vocabulary=load_vocabulary())
    root = pub.path
    used = used_concept_ids(root, sorted(out))
    assert {8507, 8532, 9201, 320128, 40163924} <= set(used)
    # every concept id of every published table has its concept row, read back from the written Parquet
    concept = pl.read_parquet(root / "omop" / "concept" / "part-0.parquet")
    assert set(used) <= set(concept["concept_id"].to_list())
    assert 1503297 in concept["concept_id"].to_list()  # metformin, the ancestor of the drug used
    for t in ("concept_ancestor", "concept_relationship", "vocabulary"):
        assert (root / "omop" / t / "part-0.parquet").is_file()
    con = duckdb.connect(str(root / "catalog.duckdb"), read_only=True)
    con.execute(f"SET file_search_path = '{root}'")
    assert con.execute("SELECT concept_name FROM concept WHERE concept_id = 8507").fetchall() == [("MALE",)]
    con.close()
    licences = (root / "VOCABULARY-LICENCES.md").read_text(encoding="utf-8")
    assert "SNOMED CT, (c) SNOMED International" in licences and "demo vocabulary bundled" in licences
    assert "| LOINC |" not in licences  # only the vocabularies used
    manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    assert "VOCABULARY-LICENCES.md" in {f["path"] for f in manifest["files"]}
    readme = (root / "README.md").read_text(encoding="utf-8")
    assert "VOCABULARY-LICENCES.md" in readme
    assert "- `death`: no deaths in the extracts" in readme
    assert "- `drug_era`: no drug exposure maps to a drug whose RxNorm ingredient" in readme
    assert "- `note`: withheld by the policy (`publish_notes` is off" in readme
    assert "`concept`" not in readme.split("**Empty tables**")[0].split("| table | rows |")[1]
    # deterministic: the same tables and vocabulary give byte-identical vocabulary files
    again = publish_release(tmp_path, "ds", out, _manifest_extra(), demo=True, vocabulary=load_vocabulary()).path
    for t in ("concept", "concept_ancestor", "concept_relationship", "vocabulary"):
        assert sha256_file(root / "omop" / t / "part-0.parquet") == sha256_file(again / "omop" / t / "part-0.parquet")
    assert (root / "VOCABULARY-LICENCES.md").read_bytes() == (again / "VOCABULARY-LICENCES.md").read_bytes()


def test_empty_tables_are_explained_from_the_release() -> None:
    def manifest(rows: dict[str, int], acc: list[dict[str, Any]], notes: bool = False) -> dict[str, Any]:
        return {"files": [{"path": f"omop/{t}/part-0.parquet", "table": t, "rows": n} for t, n in rows.items()],
                "policy": {"publish_notes": notes}, "row_accounting": acc}

    def acc(stage: str, table: str, category: str, rows: int) -> dict[str, Any]:
        return {"stage": stage, "site": "a", "table": table, "category": category, "reason_code": None, "rows": rows}

    m = manifest({"person": 3, "death": 0, "drug_exposure": 0, "drug_era": 0, "note": 0, "device_exposure": 0,
                  "condition_occurrence": 4, "condition_era": 0, "location": 0},
                 [acc("omop", "death", "produced", 2), acc("release", "death", "suppressed", 2),
                  acc("raw", "device_exposure", "quarantined", 3), acc("omop", "location", "produced", 5)], notes=True)
    m["risk"] = {"summary": {"levels": {"postcode": 4}}}
    why = dict(empty_tables(m))
    assert why["location"].startswith("places of residence were generalised away")
    assert why["death"].startswith("its 2 row(s) were removed by the anonymisation (2 counted")
    assert why["drug_era"] == "derived from `drug_exposure`, which is empty"
    assert why["condition_era"].startswith("no condition maps to a standard concept")
    assert why["note"] == "the extracts hold no rows for it"
    assert why["device_exposure"].startswith("every source row was quarantined (3 rows")
    assert "person" not in why and "condition_occurrence" not in why
    text = researcher_readme({**m, "dataset": "d", "version": 1, "created": "x", "facts": {"individuals": 3}}, {}, {})
    assert "- `drug_era`: derived from `drug_exposure`, which is empty." in text


def test_the_generator_writes_deaths_after_the_last_stay(tmp_path: Path) -> None:
    result = generate(tmp_path, 600, default_site_specs(2), seed=3, dirty=0.0)
    assert sum(result.deaths.values()) > 0
    for site in result.sites:
        p = pl.read_csv(tmp_path / site / "patients.csv", infer_schema=False)
        s = pl.read_csv(tmp_path / site / "stays.csv", infer_schema=False)
        dead = p.filter(pl.col("death_date").is_not_null())
        assert dead.height == result.deaths[site]
        assert 0.01 < dead.height / p.height < 0.2  # a plausible share of hospital patients over ten years
        assert dead["death_cause_code"].str.contains(r"^[A-Z]\d\d(\.\d)?$").all()  # ICD-10
        assert (dead["death_date"] >= dead["birth_date"]).all()
        last = s.group_by("patient_id").agg(pl.col("discharge").str.slice(0, 10).max())
        joined = dead.join(last, on="patient_id", how="left")
        assert joined["discharge"].null_count() == 0  # the dead had a stay
        assert (joined["death_date"] >= joined["discharge"]).all()  # no stay after death
        meds = pl.read_csv(tmp_path / site / "medications.csv", infer_schema=False).group_by("patient_id").agg(
            pl.col("end_date").max())
        after = dead.join(meds, on="patient_id", how="inner").filter(pl.col("end_date") > pl.col("death_date"))
        assert after.height == 0  # nor a drug taken after it


def _tsv(path: Path, header: str, rows: list[str]) -> None:
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")


def test_release_subset_of_a_loaded_athena_vocabulary(tmp_path: Path) -> None:
    """A vocabulary loaded from an Athena download (Parquet): the optional tables it has come along,
    restricted to the rows the subset names; "Is a" and "Maps to" rows between kept concepts."""
    from transforms import athena

    src = tmp_path / "athena"
    src.mkdir()
    _tsv(src / "CONCEPT.csv", "concept_id\tconcept_name\tdomain_id\tvocabulary_id\tconcept_class_id\t"
         "standard_concept\tconcept_code\tvalid_start_date\tvalid_end_date\tinvalid_reason", [
             "10\tsource I10\tCondition\tICD10\tICD10 code\t\tI10\t19700101\t20991231\t",
             "100\tHypertension\tCondition\tSNOMED\tClinical Finding\tS\t38341003\t19700101\t20991231\t",
             "200\tVascular disorder\tCondition\tSNOMED\tClinical Finding\tS\t27550009\t19700101\t20991231\t",
             "300\tUnused\tCondition\tSNOMED\tClinical Finding\tS\t1\t19700101\t20991231\t",
         ])
    _tsv(src / "CONCEPT_RELATIONSHIP.csv", "concept_id_1\tconcept_id_2\trelationship_id\tvalid_start_date\t"
         "valid_end_date\tinvalid_reason", [
             "10\t100\tMaps to\t19700101\t20991231\t", "100\t10\tMapped from\t19700101\t20991231\t",
             "100\t200\tIs a\t19700101\t20991231\t", "300\t200\tIs a\t19700101\t20991231\t",
         ])
    _tsv(src / "CONCEPT_ANCESTOR.csv", "ancestor_concept_id\tdescendant_concept_id\tmin_levels_of_separation\t"
         "max_levels_of_separation", ["100\t100\t0\t0", "200\t100\t1\t1", "200\t300\t1\t1", "200\t200\t0\t0"])
    _tsv(src / "VOCABULARY.csv", "vocabulary_id\tvocabulary_name\tvocabulary_reference\tvocabulary_version\t"
         "vocabulary_concept_id", ["ICD10\tICD-10\tWHO\t2021\t1", "SNOMED\tSNOMED CT\tIHTSDO\tv1\t2",
                                   "LOINC\tLOINC\tRegenstrief\t2.76\t3"])
    _tsv(src / "DOMAIN.csv", "domain_id\tdomain_name\tdomain_concept_id", ["Condition\tCondition\t19", "Drug\tDrug\t13"])
    _tsv(src / "CONCEPT_CLASS.csv", "concept_class_id\tconcept_class_name\tconcept_class_concept_id",
         ["ICD10 code\tICD10 code\t4", "Clinical Finding\tClinical Finding\t5", "Ingredient\tIngredient\t6"])
    _tsv(src / "RELATIONSHIP.csv", "relationship_id\trelationship_name\tis_hierarchical\tdefines_ancestry\t"
         "reverse_relationship_id\trelationship_concept_id", [
             "Maps to\tMaps to\t0\t0\tMapped from\t7", "Mapped from\tMapped from\t0\t0\tMaps to\t8",
             "Is a\tIs a\t1\t1\tSubsumes\t9", "Subsumes\tSubsumes\t1\t1\tIs a\t10"])
    out = tmp_path / "loaded"
    athena.load_athena(src, out)
    sub = release_subset(load_vocabulary(str(out)), [10, 100])
    t = sub.tables
    assert t["concept"]["concept_id"].to_list() == [10, 100, 200]  # 200: the ancestor; 300 unused
    assert t["concept_ancestor"].select("ancestor_concept_id", "descendant_concept_id").rows() == [(100, 100), (200, 100)]
    assert t["concept_relationship"].select("concept_id_1", "concept_id_2", "relationship_id").rows() == [
        (10, 100, "Maps to"), (100, 10, "Mapped from"), (100, 200, "Is a")]
    assert t["vocabulary"]["vocabulary_id"].to_list() == ["ICD10", "SNOMED"]
    assert t["domain"]["domain_id"].to_list() == ["Condition"]
    assert t["concept_class"]["concept_class_id"].to_list() == ["Clinical Finding", "ICD10 code"]
    assert t["relationship"]["relationship_id"].to_list() == ["Is a", "Mapped from", "Maps to"]
    assert sub.missing == []
