from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest

from generator.hospital import (
    FAULT_KINDS,
    FAULT_OUTCOMES,
    GenerationResult,
    SiteSpec,
    default_site_specs,
    generate,
)
from generator.reference import FOREIGN_TOWNS, vocabulary
from schemas.extract import ENTITIES, entity
from schemas.geo import communes
from schemas.matricule import is_valid_matricule
from transforms.ingest import ingest_site

REF = date(2026, 1, 1)
_PATHWAY = {"E10", "E11", "C18", "C19", "C20", "C34", "C50", "C61"}
SITES = default_site_specs(3)
N = 200


@dataclass
class Extract:
    root: Path
    result: GenerationResult

    def spec(self, site: str) -> SiteSpec:
        return next(s for s in SITES if s.site == site)

    def rows(self, site: str, name: str) -> list[list[str]]:
        """All lines of the CSV file, header first (so that index + 1 is the line number)."""
        spec = self.spec(site)
        path = self.root / site / entity(name).file
        with open(path, encoding=spec.encoding, newline="") as fh:
            return list(csv.reader(fh, delimiter=spec.delimiter))

    def dicts(self, site: str, name: str) -> list[dict[str, str]]:
        header, *body = self.rows(site, name)
        return [dict(zip(header, r, strict=True)) for r in body]

    def faults(self, site: str) -> list[dict[str, object]]:
        text = (self.root / site / "_truth" / "faults.jsonl").read_text(encoding="utf-8")
        return [json.loads(line) for line in text.splitlines()]


def _make(root: Path, patients: int, seed: int, dirty: float) -> Extract:
    return Extract(root, generate(root, patients, SITES, seed, dirty))


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Extract:
    return _make(tmp_path_factory.mktemp("clean"), N, 7, 0.0)


@pytest.fixture(scope="module")
def dirty(tmp_path_factory: pytest.TempPathFactory) -> Extract:
    return _make(tmp_path_factory.mktemp("dirty"), N, 7, 0.05)


@pytest.fixture(scope="module")
def large(tmp_path_factory: pytest.TempPathFactory) -> Extract:
    return _make(tmp_path_factory.mktemp("large"), 1500, 11, 0.0)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _is_iso_date(s: str) -> bool:
    try:
        date.fromisoformat(s)
    except ValueError:
        return False
    return len(s) == 10


def _is_iso_datetime(s: str) -> bool:
    try:
        datetime.strptime(s, "%Y-%m-%d %H:%M")
    except ValueError:
        try:
            datetime.strptime(s, "%Y-%m-%d %H:%M:%S")
        except ValueError:
            return False
    return True


# --- sites ----------------------------------------------------------------------------------------


def test_default_site_specs() -> None:
    specs = default_site_specs(4)
    assert [s.site for s in specs] == ["hospital-a", "hospital-b", "hospital-c", "hospital-d"]
    assert specs[2] == SiteSpec("hospital-c", "cp1252", ";")
    assert all(s.encoding == "utf-8" and s.delimiter == "," for i, s in enumerate(specs) if i != 2)
    assert [s.site for s in default_site_specs(1)] == ["hospital-a"]
    many = [s.site for s in default_site_specs(28)]
    assert many[25:] == ["hospital-z", "hospital-aa", "hospital-ab"]
    assert len(set(many)) == 28
    with pytest.raises(ValueError):
        default_site_specs(0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"patients": -1}, "patients"),
        ({"dirty": 1.5}, "dirty"),
        ({"sites": []}, "site"),
        ({"sites": [SiteSpec("x"), SiteSpec("x")]}, "unique"),
    ],
)
def test_generate_rejects_bad_arguments(tmp_path: Path, kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"out_dir": tmp_path, "patients": 5, "sites": SITES, "seed": 1, "dirty": 0.0}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        generate(**args)  # type: ignore[arg-type]


# --- determinism ----------------------------------------------------------------------------------


def test_same_arguments_give_identical_bytes(tmp_path: Path, dirty: Extract) -> None:
    again = generate(tmp_path, N, SITES, 7, 0.05)
    assert _files(tmp_path) == _files(dirty.root)
    assert again.rows == dirty.result.rows
    assert again.faults == dirty.result.faults


def test_different_seeds_differ(tmp_path: Path, dirty: Extract) -> None:
    generate(tmp_path, N, SITES, 8, 0.05)
    for site in ("hospital-a", "hospital-c"):
        for e in ENTITIES:
            assert (tmp_path / site / e.file).read_bytes() != (dirty.root / site / e.file).read_bytes()


def test_dirty_extract_holds_the_clean_rows(clean: Extract, dirty: Extract) -> None:
    """Faults use their own random stream: every unfaulted row of the dirty extract is a clean row."""
    for spec in SITES:
        faulty = {(f["entity"], f["line"]) for f in dirty.faults(spec.site)}
        for e in ENTITIES:
            clean_rows = {tuple(r) for r in clean.rows(spec.site, e.name)[1:]}
            dirty_rows = dirty.rows(spec.site, e.name)
            kept = [tuple(r) for i, r in enumerate(dirty_rows) if i > 0 and (e.name, i + 1) not in faulty]
            assert kept and set(kept) <= clean_rows, (spec.site, e.name)


def test_progress_is_reported(tmp_path: Path) -> None:
    calls: list[tuple[str, int, int]] = []
    generate(
        tmp_path, 30, SITES[:2], 3, 0.0, progress=lambda what, done, total: calls.append((what, done, total))
    )
    labels = {c[0] for c in calls}
    assert labels == {"population", "hospital-a", "hospital-b"}
    for label in labels:
        last = [c for c in calls if c[0] == label][-1]
        assert last[1] == last[2]
    assert ("population", 30, 30) in calls


# --- contract -------------------------------------------------------------------------------------


def test_every_file_has_exactly_the_contract_columns(dirty: Extract) -> None:
    for spec in SITES:
        for e in ENTITIES:
            rows = dirty.rows(spec.site, e.name)
            assert rows[0] == e.column_names
            assert all(len(r) == len(e.column_names) for r in rows[1:])
            assert len(rows) - 1 == dirty.result.rows[spec.site][e.name] > 0


def test_clean_extract_is_valid(clean: Extract) -> None:
    v = vocabulary()
    postcodes = {c.name: set(c.postcodes) for c in communes()}
    towns = {(t.country, t.postcode, t.name) for t in FOREIGN_TOWNS}
    ref = REF.isoformat()
    for spec in SITES:
        site = spec.site
        for e in ENTITIES:
            records = clean.dicts(site, e.name)
            keys = [r[e.key] for r in records]
            assert len(set(keys)) == len(keys), (site, e.name)
            for r in records:
                for col in e.required:
                    assert r[col], (site, e.name, col, r)
                for c in e.columns:
                    value = r[c.name]
                    if c.type == "date" and value:
                        assert _is_iso_date(value) and value < ref, (c.name, value)
                    if c.type == "datetime" and value:
                        assert _is_iso_datetime(value) and value < ref, (c.name, value)
                    if c.code and value:
                        assert value == value.strip().upper()
        patients = {r["patient_id"]: r for r in clean.dicts(site, "patients")}
        for p in patients.values():
            assert p["sex"] in {"M", "F", "U"}
            if p["country"] == "LU":
                assert p["postcode"] in postcodes[p["city"]]
            else:
                assert (p["country"], p["postcode"], p["city"]) in towns
            assert p["patient_id"].startswith(site[-1].upper())
            assert not p["phone"] or p["phone"].startswith("+352 ")
            assert not p["phone"] or 6 <= sum(ch.isdigit() for ch in p["phone"]) - 3 <= 9
            assert not p["email"] or (p["email"].isascii() and "@" in p["email"])
            assert "1930-01-01" <= p["birth_date"] <= "2024-12-31"
            assert p["birth_date"] <= p["updated_at"][:10]
        stays = {r["stay_id"]: r for r in clean.dicts(site, "stays")}
        for s in stays.values():
            p = patients[s["patient_id"]]
            assert s["admission"][:10] > p["birth_date"]
            assert s["admission"] <= s["discharge"] < ref
            if s["stay_type"] in ("OUTPATIENT", "EMERGENCY"):
                assert s["admission"][:10] == s["discharge"][:10]
            else:
                assert s["stay_type"] == "INPATIENT"
                assert (
                    1
                    <= (
                        date.fromisoformat(s["discharge"][:10]) - date.fromisoformat(s["admission"][:10])
                    ).days
                    <= 15
                )
            assert (s["ward"] == "Urgences") == (s["stay_type"] == "EMERGENCY")
        # up to 6 random stays per patient; diabetes and cancer pathways add their scheduled visits
        pathway = {r["patient_id"] for r in clean.dicts(site, "diagnoses") if r["icd10_code"][:3] in _PATHWAY}
        per_patient = Counter(s["patient_id"] for s in stays.values() if s["patient_id"] not in pathway)
        assert max(per_patient.values()) <= 6
        children = {
            "diagnoses": ("icd10_code", "diagnosis_date", v.icd10),
            "procedures": ("procedure_code", "procedure_date", v.snomed_procedures),
            "labs": ("loinc_code", "sampled_at", v.loinc),
            "medications": ("atc_code", "start_date", v.atc),
        }
        for name, (code_col, date_col, codes) in children.items():
            for r in clean.dicts(site, name):
                s = stays[r["stay_id"]]
                assert r["patient_id"] == s["patient_id"]
                assert r[code_col] in codes, (name, r[code_col])
                when = r[date_col]
                assert s["admission"][: len(when)] <= when <= s["discharge"][: len(when)], (name, r, s)
        for r in clean.dicts(site, "medications"):
            assert not r["end_date"] or r["start_date"] <= r["end_date"] < ref
        for r in clean.dicts(site, "labs"):
            if r["value_code"]:  # a coded result (smoking status): no value, no unit
                assert r["loinc_code"] == "72166-2" and not r["value"] and not r["unit"], r
                assert r["value_code"] in {"77176002", "8517006", "266919005"}
                continue
            float(r["value"])
            assert r["unit"] in v.ucum
        diagnoses_per_stay = Counter(r["stay_id"] for r in clean.dicts(site, "diagnoses"))
        assert set(diagnoses_per_stay) == set(stays)
        assert max(diagnoses_per_stay.values()) <= 4
        ranks = Counter(r["diagnosis_rank"] for r in clean.dicts(site, "diagnoses"))
        assert ranks["PRINCIPAL"] == len(stays)
        assert (clean.root / site / "_truth" / "faults.jsonl").read_bytes() == b""
    assert clean.result.faults == []


def test_about_five_percent_live_across_the_border(large: Extract) -> None:
    patients = [p for spec in SITES for p in large.dicts(spec.site, "patients")]
    countries = Counter(p["country"] for p in patients)
    assert set(countries) == {"LU", "FR", "BE", "DE"}
    abroad = sum(n for c, n in countries.items() if c != "LU")
    assert 0.03 <= abroad / len(patients) <= 0.07, countries
    assert countries["FR"] > countries["DE"] > 0 and countries["BE"] > 0
    digits = {"FR": 5, "BE": 4, "DE": 5}
    for p in patients:
        if p["country"] == "LU":
            assert p["postcode"].startswith("L-")
        else:
            assert p["postcode"].isdigit() and len(p["postcode"]) == digits[p["country"]], p
    assert {p["postcode"][:2] for p in patients if p["country"] == "FR"} <= {"57", "54"}
    assert {p["postcode"][:2] for p in patients if p["country"] == "BE"} <= {"67", "66"}
    # notes write a foreign postcode as Luxembourg hospitals do: F-57100 Thionville (and de-identify it)
    prefixes = {"FR": "F-", "BE": "B-", "DE": "D-"}
    abroad_ids = {p["patient_id"]: p for p in patients if p["country"] != "LU"}
    seen = 0
    for spec in SITES:
        rows = large.dicts(spec.site, "notes")
        for row, line in zip(rows, _jsonl(large.root / spec.site / "_truth" / "notes.jsonl"), strict=True):
            p = abroad_ids.get(row["patient_id"])
            if p is not None:
                seen += 1
                assert f"{prefixes[p['country']]}{p['postcode']} {p['city']}" in line["known"]["addresses"]
    assert seen > 0


def test_prostate_cancer_only_for_men(large: Extract) -> None:
    for spec in SITES:
        sex = {r["patient_id"]: r["sex"] for r in large.dicts(spec.site, "patients")}
        for r in large.dicts(spec.site, "diagnoses"):
            if r["icd10_code"] == "C61":
                assert sex[r["patient_id"]] == "M"


# --- people across sites --------------------------------------------------------------------------


def test_matricules_valid_and_unique_per_person(large: Extract) -> None:
    persons: dict[str, tuple[str, str, str]] = {}
    seen_at: Counter[str] = Counter()
    for spec in SITES:
        site_matricules = []
        for p in large.dicts(spec.site, "patients"):
            if not p["matricule"]:
                continue
            assert is_valid_matricule(p["matricule"])
            assert p["matricule"][:8] == p["birth_date"].replace("-", "")
            site_matricules.append(p["matricule"])
            person = (p["last_name"], p["first_name"], p["birth_date"])
            assert persons.setdefault(p["matricule"], person) == person
            seen_at[p["matricule"]] += 1
        assert len(set(site_matricules)) == len(site_matricules)
    assert max(seen_at.values()) == 2
    without = large.result.without_matricule
    assert 0.01 <= without / 1500 <= 0.05
    with_matricule = (
        sum(len(large.dicts(s.site, "patients")) for s in SITES) - large.result.shared_patients - without
    )
    assert len(persons) == with_matricule == 1500 - without


def test_about_ten_percent_shared_across_sites(large: Extract) -> None:
    rows = {s.site: large.dicts(s.site, "patients") for s in SITES}
    total_rows = sum(len(r) for r in rows.values())
    shared = large.result.shared_patients
    assert total_rows == 1500 + shared
    assert 0.07 <= shared / 1500 <= 0.13
    by_matricule: dict[str, list[dict[str, str]]] = {}
    for site_rows in rows.values():
        for p in site_rows:
            if p["matricule"]:
                by_matricule.setdefault(p["matricule"], []).append(p)
    pairs = [v for v in by_matricule.values() if len(v) == 2]
    assert len(pairs) == shared
    conflicts = 0
    moved = 0
    for a, b in pairs:
        assert a["patient_id"][0] != b["patient_id"][0]  # site-local ids, per-site prefix
        assert (a["last_name"], a["first_name"], a["birth_date"]) == (
            b["last_name"],
            b["first_name"],
            b["birth_date"],
        )
        conflicts += a["sex"] != b["sex"]
        moved += a["address"] != b["address"]
    assert conflicts == large.result.sex_conflicts
    assert 0 < moved < shared


def test_cp1252_site_reads_back_with_accents(large: Extract) -> None:
    root = large.root / "hospital-c"
    raw = (root / "stays.csv").read_bytes()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    text = raw.decode("cp1252")
    assert text.splitlines()[0] == ";".join(entity("stays").column_names)
    assert "Médecine interne" in text
    patients = large.dicts("hospital-c", "patients")
    accented = [
        p for p in patients if not (p["last_name"] + p["first_name"] + p["address"] + p["city"]).isascii()
    ]
    assert accented
    # the same person, written in UTF-8 at another site, has the same accented name
    others = {
        p["matricule"]: p
        for s in ("hospital-a", "hospital-b")
        for p in large.dicts(s, "patients")
        if p["matricule"]
    }
    pairs = [(p, others[p["matricule"]]) for p in patients if p["matricule"] in others]
    assert pairs
    for c, o in pairs:
        assert (c["last_name"], c["first_name"]) == (o["last_name"], o["first_name"])
    # addresses hold commas: quoted in the comma-delimited files, not in the ';' ones
    assert any("," in p["address"] for p in patients)
    assert b'"' not in (root / "patients.csv").read_bytes()


# --- faults ---------------------------------------------------------------------------------------


def test_faults_point_at_the_right_rows(dirty: Extract) -> None:
    v = vocabulary()
    codes = {
        "diagnoses": set(v.icd10),
        "procedures": set(v.snomed_procedures),
        "labs": set(v.loinc),
        "medications": set(v.atc),
    }
    code_col = {
        "diagnoses": "icd10_code",
        "procedures": "procedure_code",
        "labs": "loinc_code",
        "medications": "atc_code",
    }
    ref = REF.isoformat()
    kinds: Counter[str] = Counter()
    for spec in SITES:
        site = spec.site
        faults = dirty.faults(site)
        assert len({(f["entity"], f["line"]) for f in faults}) == len(faults)  # one fault per row at most
        lines = {e.name: dirty.rows(site, e.name) for e in ENTITIES}
        ids = {name: {r[0] for r in rows[1:]} for name, rows in lines.items()}
        matricules = Counter(r[1] for s in SITES for r in dirty.rows(s.site, "patients")[1:] if r[1])
        for f in faults:
            assert set(f) >= {"entity", "line", "key", "fault", "outcome", "reason_code"}
            outcome, reason = FAULT_OUTCOMES[str(f["fault"])]
            assert (f["outcome"], f["reason_code"]) == (outcome, reason)
            name = str(f["entity"])
            e = entity(name)
            line = int(str(f["line"]))
            assert line >= 2
            row = dict(zip(e.column_names, lines[name][line - 1], strict=True))
            assert f["key"] == (row[e.key] or None)
            kind = str(f["fault"])
            kinds[kind] += 1
            column = f.get("column")
            if kind == "duplicate":
                assert lines[name][line - 1] == lines[name][line - 2]
            elif kind == "invalid_date":
                value = row[str(column)]
                assert not (_is_iso_date(value[:10]) and value[10:11] in ("", " "))
            elif kind == "future_date":
                assert row[str(column)][:10] > ref
            elif kind == "missing_required":
                assert column in e.required and row[str(column)] == ""
            elif kind == "orphan":
                parent = e.references[str(column)]
                assert row[str(column)] and row[str(column)] not in ids[parent]
            elif kind == "unknown_code":
                code = row[code_col[name]]
                assert code == code.strip().upper() and code not in codes[name]
            elif kind == "dirty_code":
                code = row[code_col[name]]
                assert code != code.strip() and code.strip().upper() in codes[name]
            if name == "patients" and row["matricule"] and matricules[row["matricule"]] > 1:
                assert kind == "duplicate"  # shared patients only get harmless faults
    assert set(kinds) == set(FAULT_KINDS), kinds


def test_fault_rate_and_result(dirty: Extract) -> None:
    result = dirty.result
    assert result.fault_counts() == Counter(f.fault for f in result.faults)
    total_rows = sum(sum(per_site.values()) for per_site in result.rows.values())
    assert 0.025 <= len(result.faults) / total_rows <= 0.07
    for spec in SITES:
        on_disk = dirty.faults(spec.site)
        assert on_disk == [f.to_json() for f in result.faults if f.site == spec.site]


def test_unfaulted_rows_are_valid(dirty: Extract) -> None:
    """Rows without a recorded fault parse, and reference rows that exist (a quarantined parent aside)."""
    ref = REF.isoformat()
    for spec in SITES:
        faulty = {(f["entity"], f["line"]) for f in dirty.faults(spec.site)}
        lines = {e.name: dirty.rows(spec.site, e.name) for e in ENTITIES}
        ids = {name: {r[0] for r in rows[1:]} for name, rows in lines.items()}
        # a parent whose key was emptied leaves a gap in the sequence of its site's ids
        max_stay = max(int(i[2:]) for i in ids["stays"] if i)
        max_patient = max(int(i[1:]) for i in ids["patients"] if i)
        for e in ENTITIES:
            for i, r in enumerate(lines[e.name][1:], start=2):
                if (e.name, i) in faulty:
                    continue
                row = dict(zip(e.column_names, r, strict=True))
                assert all(row[c] for c in e.required)
                for c in e.columns:
                    if c.type in ("date", "datetime") and row[c.name]:
                        assert row[c.name] < ref
                for col, parent in e.references.items():
                    if row[col] not in ids[parent]:
                        limit = max_patient if parent == "patients" else max_stay
                        assert int(row[col].lstrip("ABCDEFGHIJKLMNOPQRSTUVWXYZ")) <= limit


def test_no_fault_means_no_faults_file_content(tmp_path: Path) -> None:
    result = generate(tmp_path, 40, SITES[:1], 5, 0.0)
    assert result.faults == []
    assert result.fault_counts() == dict.fromkeys(FAULT_KINDS, 0)


def test_reference_date_bounds_every_date(tmp_path: Path) -> None:
    ref = date(2015, 6, 30)
    generate(tmp_path, 60, SITES[:2], 9, 0.0, reference_date=ref)
    ex = Extract(tmp_path, GenerationResult(tmp_path, 9, 60, ["hospital-a", "hospital-b"]))
    for site in ("hospital-a", "hospital-b"):
        births = {p["patient_id"]: p["birth_date"] for p in ex.dicts(site, "patients")}
        assert min(births.values()) >= "1919-01-01" and max(births.values()) <= "2013-12-31"
        for s in ex.dicts(site, "stays"):
            assert births[s["patient_id"]] < s["admission"][:10] <= s["discharge"] < ref.isoformat()
        for e in ENTITIES:
            for r in ex.dicts(site, e.name):
                for c in e.columns:
                    if c.type in ("date", "datetime") and r[c.name]:
                        assert r[c.name] < ref.isoformat()


# --- notes ----------------------------------------------------------------------------------------


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_notes_truth_files_are_deterministic_and_independent_of_faults(
    tmp_path: Path, clean: Extract, dirty: Extract
) -> None:
    generate(tmp_path, N, SITES, 7, 0.0)
    for spec in SITES:
        for name in ("notes.jsonl", "notes_gold.jsonl"):
            again = (tmp_path / spec.site / "_truth" / name).read_bytes()
            assert again == (clean.root / spec.site / "_truth" / name).read_bytes() != b""
            assert again == (dirty.root / spec.site / "_truth" / name).read_bytes()
    assert clean.result.notes == dirty.result.notes


def test_notes_gold_spans_and_ids_match_notes_csv(clean: Extract) -> None:
    for spec in SITES:
        truth = clean.root / spec.site / "_truth"
        lines = _jsonl(truth / "notes.jsonl")
        gold = _jsonl(truth / "notes_gold.jsonl")
        rows = clean.dicts(spec.site, "notes")
        assert [r["note_id"] for r in rows] == [x["id"] for x in lines] == [g["id"] for g in gold]
        assert [r["text"] for r in rows] == [x["text"] for x in lines]
        assert len(rows) == clean.result.notes[spec.site] > 0
        patients = {p["patient_id"]: p for p in clean.dicts(spec.site, "patients")}
        for row, line, g in zip(rows, lines, gold, strict=True):
            text = line["text"]
            assert "\n" not in text and text == text.strip()
            assert set(line["known"]) == {"names", "phones", "emails", "addresses", "national_ids"}
            p = patients[row["patient_id"]]
            assert line["known"]["names"] == [f"{p['first_name']} {p['last_name']}"]
            assert line["known"]["national_ids"] == ([p["matricule"]] if p["matricule"] else [])
            assert line["known"]["addresses"][0] == p["address"]
            kinds = set()
            for start, end, kind, surface in g["spans"]:
                assert text[start:end] == surface, (row["note_id"], surface)
                kinds.add(kind)
            assert "PATIENT_NAME" in kinds and "OTHER_NAME" in kinds


def test_notes_belong_to_their_stays(large: Extract) -> None:
    noted: Counter[str] = Counter()
    stays_by_type: Counter[str] = Counter()
    noted_by_type: Counter[str] = Counter()
    for spec in SITES:
        stays = {s["stay_id"]: s for s in large.dicts(spec.site, "stays")}
        stays_by_type.update(s["stay_type"] for s in stays.values())
        rows = large.dicts(spec.site, "notes")
        per_stay = Counter(r["stay_id"] for r in rows)
        assert max(per_stay.values()) <= 2
        for r in rows:
            s = stays[r["stay_id"]]
            assert r["patient_id"] == s["patient_id"]
            assert s["admission"] <= r["note_date"] <= s["discharge"]
            assert r["author"] and r["note_type"]
            noted[r["note_type"]] += 1
        noted_by_type.update(stays[sid]["stay_type"] for sid in per_stay)
    assert 0.3 <= noted_by_type["INPATIENT"] / stays_by_type["INPATIENT"] <= 0.5
    others = noted_by_type["OUTPATIENT"] + noted_by_type["EMERGENCY"]
    assert 0.05 <= others / (stays_by_type["OUTPATIENT"] + stays_by_type["EMERGENCY"]) <= 0.15
    assert {"Compte-rendu d'hospitalisation", "Lettre de sortie", "Compte-rendu des urgences"} <= set(noted)


def test_ingest_reads_clean_notes_without_quarantine(clean: Extract) -> None:
    for spec in SITES:
        r = ingest_site(spec.site, clean.root / spec.site, spec.encoding, spec.delimiter, today=REF)
        assert {name: e.quarantined for name, e in r.entities.items() if e.quarantined} == {}
        notes = r.entities["notes"]
        assert notes.deduplicated == 0
        assert notes.table.height == clean.result.rows[spec.site]["notes"]
        assert notes.table["note_id"].to_list() == [
            x["id"] for x in _jsonl(clean.root / spec.site / "_truth" / "notes.jsonl")
        ]


def test_ingest_quarantines_the_recorded_notes_faults(dirty: Extract) -> None:
    seen: Counter[str] = Counter()
    for spec in SITES:
        r = ingest_site(spec.site, dirty.root / spec.site, spec.encoding, spec.delimiter, today=REF)
        notes = r.entities["notes"]
        where = dict(zip(notes.quarantine["source_line"], notes.quarantine["reason_code"], strict=True))
        faults = [f for f in dirty.faults(spec.site) if f["entity"] == "notes"]
        for f in faults:
            seen[str(f["fault"])] += 1
            if f["outcome"] == "quarantined":
                assert where.get(f["line"]) == f["reason_code"], f
        assert notes.deduplicated == sum(f["fault"] == "duplicate" for f in faults)
    assert set(seen) <= {"invalid_date", "future_date", "missing_required", "orphan", "duplicate"}
    assert seen
