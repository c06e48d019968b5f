from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from tests.test_adapters_synthea import assert_accounting_holds, assert_staging_conforms
from transforms.adapters.fhir import fhir_to_staging, read_fhir, ref_id
from transforms.ingest import ExtractError, IngestResult


def test_fhir_bulk_sample(shared: Path) -> None:
    raw = read_fhir("f1", shared / "data" / "fhir-r4-bulk-10")
    assert_accounting_holds(raw)
    # Synthea's FHIR Devices carry only a manufactureDate, no date of use: quarantined with the reason
    # (issue 13: the manufacture date was taken as the exposure start)
    assert {n: r.quarantined for n, r in raw.entities.items() if r.quarantined} == {"device": 16}
    st = fhir_to_staging(raw)
    assert_staging_conforms(st)
    counts = {k: v.height for k, v in st.items()}
    print("fhir-r4-bulk-10 staging:", counts)
    assert counts["persons"] == 13
    assert counts["visits"] == 1215
    assert counts["notes"] == 1215
    assert counts["events"] == 555 + 1745 + 2056 + 161 + 11  # the 16 devices are quarantined (no date of use)
    assert st["notes"]["text"].null_count() == 0
    assert st["notes"]["text"].str.contains("# Chief Complaint").any()
    assert set(st["visits"]["visit_class"].unique()) <= {"AMBULATORY", "EMERGENCY", "INPATIENT", "HOME", "VIRTUAL"}
    # conditional references (Practitioner?identifier=...|npi) resolve to the Practitioner ids
    prov = st["providers"]["provider_key"].implode()
    assert st["visits"]["provider_key"].is_in(prov).all()
    assert st["visits"]["care_site_key"].is_in(st["care_sites"]["care_site_key"].implode()).all()
    assert st["providers"]["specialty"].null_count() == 0
    assert st["persons"]["death_date"].null_count() == 10
    assert st["persons"]["phone"].null_count() == 0 and st["persons"]["first_name"].null_count() == 0


def test_reference_forms() -> None:
    assert ref_id("Patient/abc") == "abc"
    assert ref_id("urn:uuid:abc") == "abc"
    assert ref_id("https://x.org/fhir/Patient/abc/_history/3") == "abc"
    assert ref_id("Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|999") == "?http://hl7.org/fhir/sid/us-npi|999"
    assert ref_id("Practitioner?identifier=http%3A%2F%2Fx%7C1") == "?http://x|1"


def res(rtype: str, rid: str, **fields: Any) -> dict[str, Any]:
    return {"resourceType": rtype, "id": rid, **fields}


def cc(system: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}], "text": display}


SCT = "http://snomed.info/sct"
LOINC = "http://loinc.org"
P1 = res("Patient", "p1", gender="female", birthDate="1970-03-04",
         name=[{"use": "official", "family": "Lopez", "given": ["Ana", "Maria"]}],
         telecom=[{"system": "phone", "value": "555-1"}, {"system": "email", "value": "a@x.org"}],
         address=[{"line": ["1 Main St"], "city": "Town", "postalCode": "01234", "country": "US"}])
E1 = res("Encounter", "e1", status="finished", **{"class": {"code": "EMER"}},
         subject={"reference": "Patient/p1"}, period={"start": "2019-01-02T05:00:00-05:00", "end": "2019-01-02T06:00:00-05:00"})
BP = res("Observation", "bp1", status="final", code=cc(LOINC, "85354-9", "Blood pressure panel"),
         subject={"reference": "Patient/p1"}, encounter={"reference": "Encounter/e1"},
         effectiveDateTime="2019-01-02T10:00:00Z",
         component=[{"code": cc(LOINC, "8480-6", "Systolic"), "valueQuantity": {"value": 120, "unit": "mm[Hg]"}},
                    {"code": cc(LOINC, "8462-4", "Diastolic"), "valueQuantity": {"value": 80.5, "unit": "mm[Hg]"}}])
SMOKE = res("Observation", "o2", status="final", code=cc(LOINC, "72166-2", "Tobacco smoking status"),
            subject={"reference": "urn:uuid:p1"}, effectiveDateTime="2019-01-02",
            valueCodeableConcept=cc(SCT, "266919005", "Never smoked tobacco"))
NOTE = res("DocumentReference", "d1", status="current", type=cc(LOINC, "34117-2", "History and physical note"),
           subject={"reference": "Patient/p1"}, date="2019-01-02T10:00:00Z",
           context={"encounter": [{"reference": "Encounter/e1"}]},
           content=[{"attachment": {"contentType": "text/plain; charset=utf-8",
                                    "data": base64.b64encode("Patiente vue, Zoë va bien.".encode()).decode()}}])
CONDITIONS = [
    res("Condition", "c1", code=cc(SCT, "44054006", "Diabetes"), subject={"reference": "Patient/p1"},
        encounter={"reference": "Encounter/e1"}, onsetDateTime="2019-01-02"),
    res("Condition", "c2", code={"text": "no coding"}, subject={"reference": "Patient/p1"}, onsetDateTime="2019-01-02"),
    res("Condition", "c3", code=cc(SCT, "1", "x"), subject={"reference": "Patient/nobody"}, onsetDateTime="2019-01-02"),
    res("Condition", "c4", code=cc(SCT, "1", "x"), subject={"reference": "Patient/p1"}, onsetDateTime="2019-02-30"),
]


def line(r: dict[str, Any]) -> str:
    return json.dumps(r)


def reasons(raw: IngestResult, entity: str) -> dict[int, str]:
    q = raw.entities[entity].quarantine
    return dict(zip(q["source_line"].to_list(), q["reason_code"].to_list(), strict=True))


def test_fhir_faults_are_quarantined_and_the_rest_goes_on(tmp_path: Path) -> None:
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "Patient.000.ndjson").write_text(line(P1) + "\n" + line(res("Patient", "p9")) + "\n")
    (folder / "Encounter.000.ndjson").write_text(line(E1) + "\n")
    cond_lines = [line(c) for c in CONDITIONS]
    cond_lines.insert(1, '{"resourceType": "Condition", "id": "broken"')  # line 2: not JSON
    cond_lines.append(line(CONDITIONS[0]))  # line 6: the same resource again
    cond_lines.append(line({**CONDITIONS[0], "onsetDateTime": "2019-01-03"}))  # line 7: same id, other content
    cond_lines.append(line(res("Claim", "cl1")))  # line 8: a type this adapter does not read
    cond_lines.append("")  # a blank line is not a row
    (folder / "Condition.000.ndjson").write_text("\n".join(cond_lines) + "\n")
    (folder / "Observation.000.ndjson").write_text(line(BP) + "\n" + line(SMOKE) + "\n")
    (folder / "DocumentReference.000.ndjson").write_text(
        line(NOTE) + "\n" + line({**NOTE, "id": "d2", "content": [{"attachment": {"data": "%%%"}}]}) + "\n")
    (folder / "ExplanationOfBenefit.000.ndjson").write_text(line(res("ExplanationOfBenefit", "x")) + "\n")
    (folder / "broken.json").write_text("{not json")

    raw = read_fhir("f", folder)
    assert_accounting_holds(raw)
    assert reasons(raw, "patient") == {2: "raw.missing_required"}  # no birthDate
    assert reasons(raw, "condition") == {
        2: "raw.invalid_json", 3: "raw.missing_required", 4: "raw.orphan", 5: "raw.invalid_date",
        7: "raw.duplicate_key"}
    assert raw.entities["condition"].deduplicated == 1
    q = raw.entities["condition"].quarantine
    assert q.filter(pl.col("source_line") == 2)["raw"].to_list() == ['{"resourceType": "Condition", "id": "broken"']
    assert set(q["source_file"]) == {"Condition.000.ndjson"}
    assert reasons(raw, "claim") == {8: "raw.unknown_resource"}
    assert reasons(raw, "explanationofbenefit") == {1: "raw.unknown_resource"}
    assert reasons(raw, "documentreference") == {2: "raw.invalid_value"}
    assert reasons(raw, "bundle") == {0: "raw.invalid_json"}

    st = fhir_to_staging(raw)
    assert_staging_conforms(st)
    p = st["persons"].row(0, named=True)
    assert (p["first_name"], p["last_name"], p["phone"], p["email"], p["sex"]) == ("Ana", "Lopez", "555-1", "a@x.org", "F")
    v = st["visits"].row(0, named=True)
    assert v["visit_class"] == "EMERGENCY" and str(v["start"]) == "2019-01-02 10:00:00"  # naive UTC
    ev = st["events"].sort("event_key")
    assert ev["event_key"].to_list() == ["condition/c1", "observation/bp1#0", "observation/bp1#1", "observation/o2"]
    assert ev["kind"].to_list() == ["condition", "measurement", "measurement", "observation"]
    assert ev["value_number"].to_list()[1:3] == [120.0, 80.5]
    assert ev["value_text"].to_list()[3] == "Never smoked tobacco"
    assert ev["visit_key"].to_list() == ["e1", "e1", "e1", None]
    assert st["notes"]["text"].to_list() == ["Patiente vue, Zoë va bien."]
    assert st["notes"]["note_class"].to_list() == ["34117-2"]


def test_fhir_bundles(tmp_path: Path) -> None:
    npi = "http://hl7.org/fhir/sid/us-npi"
    pract = res("Practitioner", "pr-uuid", identifier=[{"system": npi, "value": "999"}],
                name=[{"family": "Who", "given": ["Doc"]}], gender="male")
    enc = {**E1, "participant": [{"individual": {"reference": f"Practitioner?identifier={npi}|999"}}],
           "subject": {"reference": "urn:uuid:p1"}}
    entries = [{"fullUrl": f"urn:uuid:{r['id']}", "resource": r, "request": {"method": "POST", "url": r["resourceType"]}}
               for r in (P1, enc, CONDITIONS[0], pract)]
    entries.append({"fullUrl": "urn:uuid:cl", "resource": res("Claim", "cl")})
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    (tmp_path / "Ana_Lopez.json").write_text(json.dumps(bundle))
    other = {"resourceType": "Bundle", "type": "transaction", "entry": [entries[3]]}  # the practitioner again
    (tmp_path / "practitionerInformation.json").write_text(json.dumps(other))
    raw = read_fhir("b", tmp_path)
    assert_accounting_holds(raw)
    assert raw.entities["bundle"].table.height == 2
    assert raw.entities["practitioner"].deduplicated == 1
    assert reasons(raw, "claim") == {4: "raw.unknown_resource"}
    st = fhir_to_staging(raw)
    assert_staging_conforms(st)
    assert st["visits"]["provider_key"].to_list() == ["pr-uuid"]
    assert st["providers"]["name"].to_list() == ["Doc Who"]
    assert st["events"]["event_key"].to_list() == ["condition/c1"]


def test_fhir_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(ExtractError, match=r"no \.ndjson or \.json"):
        read_fhir("x", tmp_path)


def test_fhir_address_country_as_iso_code(tmp_path: Path) -> None:
    """Address.country may be a name or a code: the staging holds its ISO alpha-2 code."""
    def patient(pid: str, **address: str) -> dict[str, Any]:
        return res("Patient", pid, gender="male", birthDate="1980-01-01",
                   address=[{"line": ["1 rue X"], **address}] if address else [])

    patients = [
        patient("lu", postalCode="L-1080", city="Luxembourg", country="Luxembourg"),
        patient("fr", postalCode="57100", city="Thionville", country="fr"),
        patient("be", postalCode="6700", city="Arlon", country="Belgique"),
        patient("de", postalCode="54290", city="Trier", country="DEU"),
        patient("none", postalCode="L-1080", city="Luxembourg"),  # no country: none (the release reads LU)
        patient("odd", postalCode="1", city="Nowhere", country="Atlantis"),  # kept as written
        patient("home"),
    ]
    (tmp_path / "Patient.000.ndjson").write_text("\n".join(line(p) for p in patients) + "\n")
    org = res("Organization", "o1", name="CHL", address=[{"city": "Luxembourg", "country": "Lëtzebuerg"}])
    (tmp_path / "Organization.000.ndjson").write_text(line(org) + "\n")
    st = fhir_to_staging(read_fhir("f", tmp_path))
    assert_staging_conforms(st)
    assert dict(st["persons"].select("person_key", "country").iter_rows()) == {
        "lu": "LU", "fr": "FR", "be": "BE", "de": "DE", "none": None, "odd": "Atlantis", "home": None}
    assert st["care_sites"]["country"].to_list() == ["LU"]


def test_a_device_starts_at_its_date_of_use_never_its_manufacture_date() -> None:
    from transforms.adapters.fhir import _Bad, _device

    base = {"resourceType": "Device", "patient": {"reference": "Patient/p1"}, "manufactureDate": "2001-01-01T00:00:00Z",
            "type": {"coding": [{"system": "http://snomed.info/sct", "code": "72506001", "display": "Implantable defibrillator"}]}}
    used = {**base, "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/device-implantDate",
                                   "valueDateTime": "2019-05-02T10:00:00Z"}]}
    assert _device(used)["start"] == "2019-05-02T10:00:00Z"
    with pytest.raises(_Bad, match="no date of use"):
        _device(base)
