"""Person buckets: a site split into buckets gives exactly what it gives in one piece."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from schemas import omop as cdm
from transforms.adapters.synthea import (
    bucket_accounting,
    read_synthea,
    read_synthea_bucket,
    split_synthea,
    synthea_to_staging,
)
from transforms.buckets import bucket_count, bucket_lookup, csv_column, split_csv
from transforms.ingest import ExtractError
from transforms.omop import GLOBAL_TABLES, harmonise_buckets, harmonise_site
from transforms.vocabulary import load_vocabulary

TODAY = dt.date(2026, 1, 1)


def _sorted(df: pl.DataFrame) -> pl.DataFrame:
    return df.sort(df.columns, nulls_last=True)


def _acc(df: pl.DataFrame) -> pl.DataFrame:
    return df.sort("table", "category", "reason_code", nulls_last=True)


def test_bucket_assignment_is_stable_and_balanced() -> None:
    keys = pl.Series([f"patient-{i}" for i in range(10_000)])
    lut = bucket_lookup(keys, 8)
    assert lut.height == 10_000 and lut["_bucket"].max() == 7
    sizes = lut["_bucket"].value_counts()["count"]
    assert sizes.min() > 1_000 and sizes.max() < 1_500  # a hash, not ranges
    # the assignment is a blake2b of the key: the same on every machine and polars version
    assert bucket_lookup(pl.Series(["patient-0", "patient-1"]), 8)["_bucket"].to_list() == \
        lut.filter(pl.col("_person_key").is_in(["patient-0", "patient-1"])).sort("_person_key")["_bucket"].to_list()
    assert bucket_count(0) == 1 and bucket_count(10_001, 5_000) == 3
    with pytest.raises(ValueError, match="at least 1"):
        bucket_count(10, 0)


def test_split_csv_keeps_every_row_and_its_line(tmp_path: Path) -> None:
    text = "Id,PATIENT,NOTE\n" + "".join(f'{i},p{i % 7},"a, ""quoted""\nvalue {i}"\n' for i in range(50)) + "x,unknown,z\n"
    src = tmp_path / "events.csv"
    src.write_text(text, encoding="utf-8")
    lut = bucket_lookup(pl.Series([f"p{i}" for i in range(7)]), 3)
    split = split_csv(src, "PATIENT", lut, tmp_path / "split", chunk_rows=8)
    assert split.rows == 51
    whole = pl.concat([split.bucket(k) for k in range(3)]).sort("_line")
    assert whole["_line"].to_list() == list(range(2, 53))
    assert whole["NOTE"][3] == 'a, "quoted"\nvalue 3'
    assert whole.filter(pl.col("Id") == "x")["_line"].item() == 52
    b0 = split.bucket(0)
    assert "unknown" in b0["PATIENT"].to_list()  # a row naming no patient goes to bucket 0
    for k in range(3):  # every patient's rows sit in one bucket
        got = set(split.bucket(k)["PATIENT"]) - {"unknown"}
        want = set(lut.filter(pl.col("_bucket") == k)["_person_key"])
        assert got == want
    assert csv_column(src, "Id").len() == 51


def test_split_csv_errors_say_what_to_check(tmp_path: Path) -> None:
    src = tmp_path / "bad.csv"
    src.write_text("Id,PATIENT\n1,p1\n2,p2,extra\n", encoding="utf-8")
    with pytest.raises(ExtractError, match=r"bad\.csv is not a readable CSV"):
        split_csv(src, "PATIENT", bucket_lookup(pl.Series(["p1"]), 2), tmp_path / "out")


def _faulty_synthea(shared: Path, folder: Path) -> Path:
    """The 27-patient sample plus faults that cross buckets."""
    src = shared / "data" / "synthea-v3-27"
    folder.mkdir()
    for name in ("patients", "encounters", "conditions", "medications", "observations", "procedures",
                 "immunizations", "allergies", "devices", "organizations", "providers"):
        (folder / f"{name}.csv").write_bytes((src / f"{name}.csv").read_bytes())
    patients = pl.read_csv(src / "patients.csv", infer_schema=False)
    enc = pl.read_csv(src / "encounters.csv", infer_schema=False)
    p_a, p_b = patients["Id"][0], patients["Id"][5]
    e_a = enc.filter(pl.col("PATIENT") == p_a)["Id"][0]
    e_b = enc.filter(pl.col("PATIENT") == p_b)["Id"][0]
    extra_enc = enc.filter(pl.col("Id") == e_a).with_columns(PATIENT=pl.lit(p_b))  # e_a given to a second patient
    pl.concat([enc, extra_enc]).write_csv(folder / "encounters.csv")
    cond = pl.read_csv(src / "conditions.csv", infer_schema=False)
    wrong = cond.head(1).with_columns(PATIENT=pl.lit(p_a), ENCOUNTER=pl.lit(e_b))  # another patient's encounter
    ghost = cond.head(1).with_columns(PATIENT=pl.lit("no-such-patient"))
    pl.concat([cond, wrong, ghost, cond.head(2)]).write_csv(folder / "conditions.csv")  # + 2 exact repeats
    return folder


def test_buckets_give_what_the_whole_site_gives(shared: Path, tmp_path: Path) -> None:
    folder = _faulty_synthea(shared, tmp_path / "src")
    vocab = load_vocabulary(str(shared / "data" / "vocabulary-demo"))
    whole_raw = read_synthea("s", folder)
    split = split_synthea("s", folder, tmp_path / "work", persons_per_bucket=7)
    assert split.buckets == 4 and split.persons == 27

    # raw: the same rows, quarantine and accounting
    raws = [read_synthea_bucket(split, k) for k in range(split.buckets)]
    for name, r in whole_raw.entities.items():
        parts = [b.entities[name] for b in raws] if name not in split.shared else [raws[0].entities[name]]
        assert _sorted(pl.concat([p.table for p in parts])).equals(_sorted(r.table)), name
        assert _sorted(pl.concat([p.quarantine for p in parts])).equals(_sorted(r.quarantine)), name
    q = whole_raw.entities["encounters"].quarantine
    assert q["reason_code"].to_list() == ["raw.duplicate_key"]
    assert q["reason_detail"].to_list() == ["id repeats an earlier row of another patient"]
    cq = whole_raw.entities["conditions"].quarantine.sort("source_line")
    assert cq["reason_code"].to_list() == ["raw.orphan", "raw.orphan"]
    assert cq["reason_detail"][0].startswith("encounter names no encounter of this row's patient: ")
    assert cq["reason_detail"][1] == "patient names no valid patients: no-such-patient"
    assert whole_raw.entities["conditions"].deduplicated == 2
    assert _acc(bucket_accounting(split, [b.accounting() for b in raws])).equals(_acc(whole_raw.accounting()))

    # OMOP: per-person tables concatenate to the whole site's; site-wide tables and sums agree
    whole = harmonise_site("s", synthea_to_staging(whole_raw), vocab, TODAY)
    parts: dict[str, list[pl.DataFrame]] = {}
    result = harmonise_buckets("s", (synthea_to_staging(b) for b in raws), vocab,
                               lambda t, k, df: parts.setdefault(t, []).append(df), TODAY)
    assert result.stats["buckets"] == 4
    for t, df in whole.tables.items():
        got = result.tables[t] if t in GLOBAL_TABLES else pl.concat(parts[t])
        assert got.schema == cdm.table(t).polars_schema, t
        assert _sorted(got).equals(_sorted(df)), t
        if t not in GLOBAL_TABLES and df.height:
            assert all(p.height < df.height for p in parts[t]), t  # really split
    assert _acc(result.accounting).equals(_acc(whole.accounting))
    drop = ["description"]
    assert _sorted(result.coverage.drop(drop)).equals(_sorted(whole.coverage.drop(drop)))
    assert result.stats["mapped_share"] == pytest.approx(whole.stats["mapped_share"])


def test_split_synthea_reports_missing_files_and_needs_patients(shared: Path, tmp_path: Path) -> None:
    src = shared / "data" / "synthea-v3-27"
    folder = tmp_path / "min"
    folder.mkdir()
    for name in ("patients", "encounters"):
        (folder / f"{name}.csv").write_bytes((src / f"{name}.csv").read_bytes())
    split = split_synthea("s", folder, tmp_path / "w")
    assert split.buckets == 1 and "conditions.csv" in split.missing_files
    raw = read_synthea_bucket(split, 0)
    assert raw.entities["conditions"].table.height == 0
    assert raw.entities["patients"].table.height == 27
    (folder / "encounters.csv").unlink()
    with pytest.raises(ExtractError, match=r"encounters\.csv is missing"):
        split_synthea("s", folder, tmp_path / "w2")


def test_partition_writer_parts_follow_their_numbers_and_replace_atomically(tmp_path: Path) -> None:
    from transforms.storage import LazyTables, PartitionWriter, read_partition

    folder = tmp_path / "lake" / "t" / "site=a"
    folder.parent.mkdir(parents=True)
    w = PartitionWriter(folder)
    for k in (0, 1, 2, 10, 11):
        w.write(pl.DataFrame({"k": [k]}), k)
    assert not folder.exists()  # nothing visible before commit
    w.commit()
    assert read_partition(folder)["k"].to_list() == [0, 1, 2, 10, 11]
    empty = PartitionWriter(folder)
    empty.commit(pl.Schema({"k": pl.Int64()}))  # replaces the old parts with one empty, typed part
    assert read_partition(folder).schema == pl.Schema({"k": pl.Int64()}) and read_partition(folder).height == 0
    lazy = LazyTables({"t": folder})
    assert list(lazy) == ["t"] and len(lazy) == 1 and lazy["t"].height == 0 and len(lazy.files("t")) == 1


def test_hospital_buckets_with_a_mapping_give_what_the_whole_site_gives(tmp_path: Path) -> None:
    """Renamed files and key columns (a mapping), padded patient ids: the buckets read the keys as the
    checks do, and an event naming a stay of a patient of another bucket keeps it."""
    from generator.hospital import default_site_specs, generate
    from pipelines.buckets import raw_in_buckets
    from schemas.config import Source
    from schemas.mapping import load_mapping
    from transforms.adapters.registry import FORMATS
    from transforms.contracts import validate_entity as validate_contract
    from transforms.ingest import ingest_site
    from transforms.storage import Workspace, read_partition

    generate(tmp_path / "landing", 70, default_site_specs(1), seed=4, dirty=0.06)
    folder = tmp_path / "landing" / "hospital-a"
    for f in sorted(folder.glob("*.csv")):
        df = pl.read_csv(f, infer_schema=False).rename(lambda c: {"patient_id": "NO_PATIENT", "stay_id": "NO_SEJOUR"}.get(c, c))
        if f.name == "diagnoses.csv":  # padded ids: the checks trim them, so must the buckets
            df = df.with_columns(pl.when(pl.int_range(pl.len()) % 3 == 0).then(" " + pl.col("NO_PATIENT") + " ")
                                 .otherwise(pl.col("NO_PATIENT")).alias("NO_PATIENT"))
        if f.name == "labs.csv":  # a lab of one patient naming the first stay of a patient of another bucket
            stays = pl.read_csv(folder / "stays.csv", infer_schema=False)
            first = stays.row(0, named=True)
            df = df.with_columns(pl.when(pl.col("NO_PATIENT") != first["patient_id"]).then(pl.lit(first["stay_id"]))
                                 .otherwise(pl.col("NO_SEJOUR")).alias("NO_SEJOUR"))
        f.unlink()
        df.write_csv(folder / ("SEJOURS.csv" if f.name == "stays.csv" else f.name))
    cols = {e: {"patient_id": "NO_PATIENT", **({"stay_id": "NO_SEJOUR"} if e != "patients" else {})}
            for e in ("patients", "stays", "diagnoses", "procedures", "labs", "medications", "notes")}
    import yaml

    (tmp_path / "map.yaml").write_text(yaml.safe_dump({"files": {"stays": "SEJOURS.csv"}, "columns": cols}))
    src = Source(site="hospital-a", path=folder, mapping=tmp_path / "map.yaml", persons_per_bucket=9)
    ws = Workspace(tmp_path / "home")
    now = dt.datetime.combine(TODAY, dt.time.max)
    outcome = raw_in_buckets("hospital-a", src, FORMATS["hospital-csv"], ws, now, lambda _m: None)
    assert outcome.buckets >= 5
    whole = ingest_site("hospital-a", folder, today=TODAY, mapping=load_mapping(src.mapping),
                        row_checks=lambda e, df: validate_contract(e.name, df, now=now).failed_rows.select(
                            "_line", "reason_code", "reason_detail"))
    for name, er in whole.entities.items():
        got = read_partition(ws.lake("raw", name, "hospital-a"))
        assert _sorted(got.select(sorted(got.columns))).equals(_sorted(er.table.select(sorted(got.columns)))), name
        q = read_partition(ws.quarantine("raw", name, "hospital-a"))
        assert q.height == er.quarantine.height, name
    labs = read_partition(ws.lake("raw", "labs", "hospital-a"))
    assert labs.filter(pl.col("stay_id") == first["stay_id"]).height > 1  # found in another bucket
    assert _acc(outcome.accounting.drop("stage", "site")).equals(_acc(whole.accounting().drop("stage", "site")))


def test_hospital_split_errors_name_the_setting_and_no_cell(tmp_path: Path) -> None:
    """A wrong delimiter or encoding: one line naming the file and the source's settings; pyarrow's
    quote of the offending row (names, matricules) is left out."""
    from generator.hospital import SiteSpec, generate
    from transforms.adapters.hospital_csv import split_hospital

    generate(tmp_path / "landing", 12, [SiteSpec("hospital-c", "cp1252", ";")], seed=1, dirty=0.0)
    folder = tmp_path / "landing" / "hospital-c"
    first = pl.read_csv(folder.joinpath("patients.csv").read_bytes().decode("cp1252").encode(), separator=";",
                        infer_schema=False).row(0, named=True)
    for encoding, delimiter in (("cp1252", ","), ("utf-8", ";")):
        with pytest.raises(ExtractError) as e:
            split_hospital("hospital-c", folder, tmp_path / "work", encoding=encoding, delimiter=delimiter)
        msg = str(e.value)
        assert "patients.csv is not a readable CSV" in msg and "the source's 'encoding' and 'delimiter'" in msg
        assert first["last_name"] not in msg and first["matricule"] not in msg and first["patient_id"] not in msg


def _fhir_site(folder: Path, patients: int) -> tuple[str, str]:
    """A small fhir-bulk NDJSON site; -> two patients of different buckets (2 patients a bucket)."""
    import json

    folder.mkdir(parents=True)
    ids = [f"p{i}" for i in range(patients)]
    bucket = dict(bucket_lookup(pl.Series(ids), bucket_count(patients, 2)).iter_rows())
    a = ids[0]
    b = next(i for i in ids if bucket[i] != bucket[a])

    def res(rtype: str, rid: str, **fields: object) -> str:
        return json.dumps({"resourceType": rtype, "id": rid, **fields})

    code = {"coding": [{"system": "http://snomed.info/sct", "code": "44054006", "display": "Diabetes"}]}
    (folder / "Patient.000.ndjson").write_text("".join(
        res("Patient", p, gender="female", birthDate="1970-03-04") + "\n" for p in ids))
    (folder / "Organization.000.ndjson").write_text(res("Organization", "o1", name="Hospital") + "\n")
    (folder / "Encounter.000.ndjson").write_text("".join(
        res("Encounter", f"e-{p}", status="finished", subject={"reference": f"Patient/{p}"},
            period={"start": "2019-01-02T05:00:00Z", "end": "2019-01-02T06:00:00Z"},
            serviceProvider={"reference": "Organization/o1"}) + "\n" for p in ids))

    def cond(rid: str, p: str, day: str) -> str:
        return res("Condition", rid, code=code, subject={"reference": f"Patient/{p}"},
                   encounter={"reference": f"Encounter/e-{p}"}, onsetDateTime=day) + "\n"

    # the same id in two files: the first file's row (a later line) wins, whatever the buckets
    (folder / "Condition.000.ndjson").write_text(cond("c0", b, "2019-01-03") + cond("dup", a, "2019-01-02"))
    (folder / "Condition.001.ndjson").write_text(cond("dup", b, "2019-01-04") + cond("c9", a, "2019-01-05"))
    # line 1 of a third file fails the suite (a date in the future): line 1 of the others stays
    (folder / "Condition.002.ndjson").write_text(cond("future", a, "2999-01-01"))
    return a, b


def test_fhir_buckets_decide_ids_across_files_and_buckets_as_the_whole_site(tmp_path: Path) -> None:
    from pipelines.buckets import raw_in_buckets
    from schemas.config import Source
    from transforms.adapters.fhir import read_fhir
    from transforms.adapters.registry import FORMATS
    from transforms.contracts import format_suite, move_failed_rows
    from transforms.contracts import validate_entity as validate_contract
    from transforms.storage import Workspace, read_partition

    folder = tmp_path / "fhir"
    _fhir_site(folder, 7)
    src = Source(site="f", format="fhir-bulk", path=folder, persons_per_bucket=2)
    ws = Workspace(tmp_path / "home")
    outcome = raw_in_buckets("f", src, FORMATS["fhir-bulk"], ws, dt.datetime.combine(TODAY, dt.time.max),
                             lambda _m: None)
    assert outcome.buckets == 4
    whole = read_fhir("f", folder)
    now = dt.datetime.combine(TODAY, dt.time.max)
    for name, er in whole.entities.items():  # the suites, as the raw asset runs them on a site in one piece
        suite = format_suite("fhir-bulk", name)
        if suite is not None and er.table.height:
            move_failed_rows(er, validate_contract(name, er.table, suite, now=now))
    assert whole.entities["condition"].table["id"].to_list() == ["c0", "dup", "c9"]
    for name, er in whole.entities.items():
        got = read_partition(ws.lake("raw", f"fhir_{name}", "f"))
        assert got.sort("_file", "_line").equals(er.table.sort("_file", "_line")), name
        q = read_partition(ws.quarantine("raw", f"fhir_{name}", "f"))
        assert q.sort("source_file", "source_line").equals(er.quarantine.sort("source_file", "source_line")), name
    q = read_partition(ws.quarantine("raw", "fhir_condition", "f"))
    assert sorted(q.select("source_line", "reason_code").rows()) == [
        (1, "contract.expect_column_values_to_be_between"), (1, "raw.duplicate_key")]
    assert q.filter(pl.col("reason_code") == "raw.duplicate_key")["source_file"].to_list() == ["Condition.001.ndjson"]
    assert len(list(ws.lake("raw", "fhir_organization", "f").glob("*.parquet"))) == 1


def test_fhir_bundles_are_read_in_one_piece_and_say_so(tmp_path: Path) -> None:
    import json

    from pipelines.buckets import raw_in_buckets
    from schemas.config import Source
    from transforms.adapters.registry import FORMATS
    from transforms.storage import Workspace, read_partition

    folder = tmp_path / "fhir"
    _fhir_site(folder, 3)
    entries = [{"resource": json.loads(x)} for x in (folder / "Patient.000.ndjson").read_text().splitlines()]
    (folder / "more.json").write_text(json.dumps({"resourceType": "Bundle", "type": "collection", "entry": entries}))
    logs: list[str] = []
    src = Source(site="f", format="fhir-bulk", path=folder, persons_per_bucket=1)
    ws = Workspace(tmp_path / "home")
    outcome = raw_in_buckets("f", src, FORMATS["fhir-bulk"], ws, dt.datetime.combine(TODAY, dt.time.max), logs.append)
    assert outcome.buckets == 1
    assert any("Bundles" in m and "one piece" in m for m in logs)
    assert read_partition(ws.lake("raw", "fhir_bundle", "f")).height == 1
    # the Bundle repeats the NDJSON patients (its entries' text differs): decided over the whole site
    assert (outcome.stats["patient"].rows_in, outcome.stats["patient"].by_reason) == (6, {"raw.duplicate_key": 3})
