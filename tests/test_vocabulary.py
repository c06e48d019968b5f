"""Vocabulary: Athena download -> Parquet (``ds4h vocabulary load``), Usagi STCM files, code mapping."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest
import typer
from typer.testing import CliRunner

from pipelines.commands.vocabulary import register
from transforms import athena
from transforms.vocabulary import BUNDLED, Vocabulary, VocabularyError, load_vocabulary

SHARED_VOCAB = Path(__file__).resolve().parents[2] / "shared" / "data" / "vocabulary-demo"
needs_shared = pytest.mark.skipif(not SHARED_VOCAB.is_dir(), reason="../shared is not beside this checkout")

USAGI_HEADER = ("source_code,source_concept_id,source_vocabulary_id,source_code_description,target_concept_id,"
                "target_vocabulary_id,valid_start_date,valid_end_date,invalid_reason")

app = typer.Typer()
register(app)


@app.callback()
def _root() -> None: ...


runner = CliRunner()


def cli(*args: str) -> tuple[int, str, str]:
    r = runner.invoke(app, list(args), catch_exceptions=False)
    return r.exit_code, r.stdout, r.stderr


def data_lines(path: Path) -> int:
    with path.open("rb") as f:
        return sum(1 for line in f if line.strip()) - 1


def write_tsv(path: Path, header: str, rows: list[str]) -> None:
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")


@pytest.fixture
def tiny_athena(tmp_path: Path) -> Path:
    """A hand-made Athena folder, lower-case file names, with the cases code_map must handle."""
    d = tmp_path / "tiny-athena"
    d.mkdir()
    write_tsv(d / "concept.csv",
              "concept_id\tconcept_name\tdomain_id\tvocabulary_id\tconcept_class_id\tstandard_concept\tconcept_code\t"
              "valid_start_date\tvalid_end_date\tinvalid_reason", [
                  "10\tsource A\tCondition\tICD10\t3-char\t\tA00\t19700101\t20991231\t",
                  "11\tsource B\tCondition\tICD10\t3-char\t\tB00\t19700101\t20991231\t",
                  "12\tsource C (no map)\tCondition\tICD10\t3-char\t\tC00\t19700101\t20991231\t",
                  "100\tstandard cond\tCondition\tSNOMED\tClinical Finding\tS\t1\t19700101\t20991231\t",
                  "101\tstandard obs\tObservation\tSNOMED\tClinical Finding\tS\t2\t19700101\t20991231\t",
                  "102\tnon-standard\tCondition\tSNOMED\tClinical Finding\t\t3\t19700101\t20991231\t",
                  '103\tname with "quotes\tMeasurement\tLOINC\tLab Test\tS\t9-9\t19700101\t20991231\t',
              ])
    write_tsv(d / "concept_relationship.csv",
              "concept_id_1\tconcept_id_2\trelationship_id\tvalid_start_date\tvalid_end_date\tinvalid_reason", [
                  "10\t101\tMaps to\t19700101\t20991231\t",
                  "10\t100\tMaps to\t19700101\t20991231\t",  # two standard targets: lowest (100) kept
                  "11\t102\tMaps to\t19700101\t20991231\t",  # target not standard: 0
                  "12\t100\tMaps to\t19700101\t20180101\tD",  # invalid relationship: ignored
              ])
    write_tsv(d / "concept_ancestor.csv",
              "ancestor_concept_id\tdescendant_concept_id\tmin_levels_of_separation\tmax_levels_of_separation",
              ["100\t100\t0\t0"])
    write_tsv(d / "vocabulary.csv",
              "vocabulary_id\tvocabulary_name\tvocabulary_reference\tvocabulary_version\tvocabulary_concept_id",
              ["ICD10\tICD-10\tWHO\t2021 Release\t44819124", "SNOMED\tSNOMED CT\tIHTSDO\tv20240101\t44819097"])
    return d


# --- loading --------------------------------------------------------------------------------


@needs_shared
def test_load_demo_download(tmp_path: Path) -> None:
    out = tmp_path / "vocab"
    code, stdout, stderr = cli("vocabulary", "load", str(SHARED_VOCAB), "--out", str(out))
    assert code == 0, stderr
    assert str(out) in stdout
    assert "skipped" in stderr and "drug_strength" in stderr
    manifest = json.loads((out / "vocabulary.json").read_text())
    for table in athena.REQUIRED:
        src = SHARED_VOCAB / f"{table.upper()}.csv"
        df = pl.read_parquet(out / f"{table}.parquet")
        assert df.height == data_lines(src) == manifest["tables"][table]["rows"], table
        assert df.schema == athena.vocabulary_schema(table), table
    assert set(manifest["skipped"]) == set(athena.OPTIONAL)
    assert manifest["source"] == str(SHARED_VOCAB.resolve())
    assert manifest["checksum"].startswith("sha256:")
    assert manifest["vocabularies"]["LOINC"]
    concept = pl.read_parquet(out / "concept.parquet")
    assert concept["concept_id"].dtype == pl.Int32
    assert concept["valid_start_date"].dtype == pl.Date and concept["valid_start_date"].null_count() == 0
    assert not list(tmp_path.glob(".vocab.tmp-*"))


@needs_shared
def test_loaded_folder_maps_loinc_and_usagi_icd10(tmp_path: Path) -> None:
    out = tmp_path / "vocab"
    athena.load_athena(SHARED_VOCAB, out)
    vocab = load_vocabulary(str(out))
    m = vocab.code_map("LOINC").filter(pl.col("source_code") == "4548-4").row(0, named=True)
    assert m == {"source_code": "4548-4", "source_concept_id": 3004410, "concept_id": 3004410, "domain_id": "Measurement"}
    assert vocab.ancestor.columns == ["ancestor_concept_id", "descendant_concept_id", "min_levels_of_separation"]
    assert vocab.ancestor.height == data_lines(SHARED_VOCAB / "CONCEPT_ANCESTOR.csv")

    usagi = tmp_path / "usagi.csv"
    usagi.write_text(USAGI_HEADER + "\n"
                     'E11.9,0,ICD10,"Type 2 diabetes mellitus, without complications",201826,SNOMED,2020-01-01,2099-12-31,\n')
    site = vocab.with_stcm(usagi)
    d = site.lookup(pl.DataFrame({"code": ["e11.9", "Z99.9"]}), "code", "ICD10", "condition")
    assert d["condition_concept_id"].to_list() == [201826, 0]
    assert d["condition_domain"].to_list() == ["Condition", None]
    assert d["code"].to_list() == ["e11.9", "Z99.9"]  # unmapped rows are kept
    assert vocab.code_map("ICD10").height == 0  # with_stcm returns a new vocabulary

    # the same file through the CLI ends in source_to_concept_map.parquet
    out2 = tmp_path / "vocab2"
    code, _, stderr = cli("vocabulary", "load", str(SHARED_VOCAB), "--out", str(out2), "--stcm", str(usagi))
    assert code == 0, stderr
    stcm = pl.read_parquet(out2 / "source_to_concept_map.parquet")
    assert stcm.height == 1 and stcm.schema == athena.vocabulary_schema("source_to_concept_map")
    assert load_vocabulary(str(out2)).code_map("ICD10")["concept_id"].to_list() == [201826]


@needs_shared
def test_missing_concept_is_one_clear_error(tmp_path: Path) -> None:
    broken = tmp_path / "athena"
    shutil.copytree(SHARED_VOCAB, broken)
    (broken / "CONCEPT.csv").unlink()
    code, _, stderr = cli("vocabulary", "load", str(broken), "--out", str(tmp_path / "out"))
    assert code == 1
    lines = [x for x in stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and "CONCEPT.csv" in lines[0] and "CONCEPT_RELATIONSHIP" not in lines[0]
    assert not (tmp_path / "out").exists()


def test_missing_tables_named_together(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(VocabularyError, match=r"CONCEPT\.csv, CONCEPT_RELATIONSHIP\.csv, CONCEPT_ANCESTOR\.csv, VOCABULARY\.csv"):
        athena.load_athena(tmp_path / "empty", tmp_path / "out")


def test_lower_case_files_and_default_output(tiny_athena: Path, isolated_env: Path) -> None:
    code, _, stderr = cli("vocabulary", "load", str(tiny_athena))
    assert code == 0, stderr
    out = isolated_env / "vocabulary" / "tiny-athena"
    assert (out / "vocabulary.json").is_file()
    assert pl.read_parquet(out / "concept.parquet").filter(pl.col("concept_id") == 103)["concept_name"][0] == \
        'name with "quotes'
    # a second load needs --force, and never replaces a folder that is not a loaded vocabulary
    code, _, stderr = cli("vocabulary", "load", str(tiny_athena))
    assert code == 1 and "--force" in stderr
    assert cli("vocabulary", "load", str(tiny_athena), "--force")[0] == 0
    other = tiny_athena.parent / "precious"
    other.mkdir()
    (other / "keep.txt").write_text("x")
    code, _, stderr = cli("vocabulary", "load", str(tiny_athena), "--out", str(other), "--force")
    assert code == 1 and (other / "keep.txt").exists()


def test_bad_date_names_the_file(tiny_athena: Path, tmp_path: Path) -> None:
    with (tiny_athena / "vocabulary.csv").open("a") as f:
        f.write("X\tX\tX\tX\t1\n")
    with (tiny_athena / "concept.csv").open("a") as f:
        f.write("104\tbad\tCondition\tSNOMED\tClinical Finding\tS\t4\t2024-13-45\t20991231\t\n")
    with pytest.raises(VocabularyError, match=r"concept\.csv"):
        athena.load_athena(tiny_athena, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_iso_dates_accepted(tiny_athena: Path, tmp_path: Path) -> None:
    p = tiny_athena / "concept_relationship.csv"
    p.write_text(p.read_text().replace("19700101", "1970-01-01").replace("20991231", "2099-12-31")
                 .replace("20180101", "2018-01-01"))
    athena.load_athena(tiny_athena, tmp_path / "out")
    rel = pl.read_parquet(tmp_path / "out" / "concept_relationship.parquet")
    assert rel["valid_end_date"].to_list()[-1].isoformat() == "2018-01-01"


# --- Usagi STCM -------------------------------------------------------------------------------


def test_usagi_csv_format(tmp_path: Path) -> None:
    p = tmp_path / "usagi.csv"
    p.write_text(USAGI_HEADER + "\n"
                 'A01.0,0,ICD10,"Typhoid fever, unspecified",100,SNOMED,2020-01-01,2099-12-31,\n'
                 "A01.1,,ICD10,Paratyphoid,101,SNOMED,20200101,20991231,\n"
                 "A01.2,0,ICD10,Old,100,SNOMED,1970-01-01,2019-12-31,D\n")
    df = athena.read_stcm(p)
    assert df.schema == athena.vocabulary_schema("source_to_concept_map")
    assert df["source_code_description"][0] == "Typhoid fever, unspecified"
    assert df["source_concept_id"].to_list() == [0, 0, 0]
    assert [d.isoformat() for d in df["valid_start_date"]] == ["2020-01-01", "2020-01-01", "1970-01-01"]
    assert df["invalid_reason"].to_list() == [None, None, "D"]


def test_usagi_minimal_columns_and_errors(tmp_path: Path) -> None:
    p = tmp_path / "min.csv"
    p.write_text("source_code,source_vocabulary_id,target_concept_id\nX1,LOCAL,100\n")
    df = athena.read_stcm(p)
    assert df["valid_end_date"][0].isoformat() == "2099-12-31" and df["source_concept_id"][0] == 0
    p.write_text("source_code,target_concept_id\nX1,100\n")
    with pytest.raises(VocabularyError, match="source_vocabulary_id"):
        athena.read_stcm(p)
    p.write_text("source_code,source_vocabulary_id,target_concept_id\nX1,LOCAL,abc\n")
    with pytest.raises(VocabularyError, match="1 row"):
        athena.read_stcm(p)


# --- code_map ---------------------------------------------------------------------------------


def test_code_map_rules(tiny_athena: Path, tmp_path: Path) -> None:
    athena.load_athena(tiny_athena, tmp_path / "out")
    vocab = load_vocabulary(str(tmp_path / "out"))
    m = {r["source_code"]: r for r in vocab.code_map("ICD10").iter_rows(named=True)}
    assert m["A00"] == {"source_code": "A00", "source_concept_id": 10, "concept_id": 100, "domain_id": "Condition"}
    assert m["B00"]["concept_id"] == 0 and m["B00"]["source_concept_id"] == 11 and m["B00"]["domain_id"] is None
    assert m["C00"]["concept_id"] == 0  # invalid "Maps to" ignored

    usagi = tmp_path / "site.csv"
    usagi.write_text(USAGI_HEADER + "\n"
                     "b00,0,ICD10,B via STCM,101,SNOMED,2020-01-01,2099-12-31,\n"
                     "A00,0,ICD10,unmapped in Usagi,0,None,2020-01-01,2099-12-31,\n"
                     "L1,0,ICD10,local code,101,SNOMED,2020-01-01,2099-12-31,\n"
                     "L1,0,ICD10,local code again,100,SNOMED,2020-01-01,2099-12-31,\n"
                     "L2,0,ICD10,withdrawn,100,SNOMED,2020-01-01,2099-12-31,D\n")
    m = {r["source_code"]: r for r in vocab.with_stcm(usagi).code_map("ICD10").iter_rows(named=True)}
    assert m["B00"] == {"source_code": "B00", "source_concept_id": 11, "concept_id": 101, "domain_id": "Observation"}
    assert m["A00"]["concept_id"] == 100  # an STCM row with target 0 does not hide a "Maps to"
    assert m["L1"] == {"source_code": "L1", "source_concept_id": 0, "concept_id": 100, "domain_id": "Condition"}
    assert "L2" not in m  # an invalid STCM row is ignored (lookup then gives 0)
    assert list(m) == sorted(m)


def test_raw_athena_folder_loaded_into_workspace_once(tiny_athena: Path, isolated_env: Path) -> None:
    vocab = load_vocabulary(str(tiny_athena))
    target = isolated_env / "vocabulary" / "tiny-athena"
    assert vocab.folder == target and vocab.kind == "parquet"
    assert vocab.versions == {"ICD10": "2021 Release", "SNOMED": "v20240101"}
    stamp = (target / "vocabulary.json").stat().st_mtime_ns
    assert load_vocabulary(str(tiny_athena)) is vocab
    assert (target / "vocabulary.json").stat().st_mtime_ns == stamp
    # a changed download is loaded again
    with (tiny_athena / "concept_ancestor.csv").open("a") as f:
        f.write("101\t101\t0\t0\n")
    again = load_vocabulary(str(tiny_athena))
    assert again is not vocab and again.ancestor.height == 2


def test_not_a_vocabulary_folder(tmp_path: Path) -> None:
    with pytest.raises(VocabularyError, match="neither"):
        load_vocabulary(str(tmp_path))
    with pytest.raises(VocabularyError, match="does not exist"):
        load_vocabulary(str(tmp_path / "nope"))
    with pytest.raises(VocabularyError, match="bundled:demo"):
        load_vocabulary("bundled:full")


def test_bundled_demo_still_maps() -> None:
    vocab = load_vocabulary(BUNDLED)
    assert isinstance(vocab, Vocabulary)
    icd = vocab.code_map("ICD10")
    assert icd.filter(pl.col("source_code") == "E10.9")["concept_id"].to_list() == [201254]
    assert icd["source_code"].is_unique().all()
    assert vocab.ancestor.height > 0
    assert vocab.versions
