"""Text de-identification: Luxembourg recognisers, known-identifier deny list, CLI and evaluation."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from anonymisation.deid import Deidentifier, Span, evaluate, merge_spans, redact, shift_date_text
from anonymisation.deid_recognizers import DETECTORS, find_known, is_valid_iban, normalise
from generator.notes import known_identifiers, make_notes, make_patients, write_notes_files
from pipelines.commands.deid import deidentifier, register
from schemas.matricule import make_matricule

IBAN = "LU280019400644750000"


@pytest.fixture(scope="module")
def deid() -> Deidentifier:
    return deidentifier("fr", 64)  # shared with the CLI commands of this process


def _found(text: str, name: str) -> list[str]:
    det = next(d for d in DETECTORS if d.name == name)
    return [text[s:e] for s, e, _k, _sc in det.find(text)]


def _masked(
    deid: Deidentifier, text: str, known: dict[str, list[str]] | None = None
) -> list[tuple[str, str]]:
    return [(text[s.start : s.end], s.entity_type) for s in deid.analyze(text, known)]


# ---------------------------------------------------------------- pure detectors


def test_matricule_accepts_valid_rejects_one_digit_change() -> None:
    m = make_matricule(date(1985, 7, 14), 123)
    assert _found(f"matricule {m} ", "matricule") == [m]
    spaced = f"{m[:4]} {m[4:8]} {m[8:11]} {m[11:]}"
    assert _found(f"matricule {spaced}.", "matricule") == [spaced]
    for i in range(13):
        changed = m[:i] + str((int(m[i]) + 1) % 10) + m[i + 1 :]
        assert _found(f"matricule {changed} ", "matricule") == []


def test_postcodes_across_the_border() -> None:
    """Letters of Luxembourg hospitals write a neighbour's postcode with its letter: F-57100 Thionville."""
    text = "Domicile : 12, rue de Metz, F-57100 Thionville. Puis B-6700 Arlon, D-54290 Trier, L-1234 Esch."
    assert _found(text, "postcode_city") == ["F-57100 Thionville", "B-6700 Arlon", "D-54290 Trier", "L-1234 Esch"]
    assert _found(text, "street") == ["12, rue de Metz"]
    # a dose or a lab value is not a postcode
    assert _found("D-dimères 500 ng/mL, HbA1c 7,2 %, 57100 plaquettes.", "postcode_city") == []


def test_iban_mod97() -> None:
    assert is_valid_iban(IBAN)
    assert is_valid_iban("LU28 0019 4006 4475 0000")
    assert not is_valid_iban("LU28 0019 4006 4475 0001")
    assert not is_valid_iban("LU2800194006447500")  # too short for Luxembourg
    assert _found("IBAN LU28 0019 4006 4475 0000.", "iban") == ["LU28 0019 4006 4475 0000"]
    assert _found("IBAN LU28 0019 4006 4475 0001.", "iban") == []


def test_phones_of_four_countries() -> None:
    text = "Tél. +352 621 123 456, 00352621123456, 06 12 34 56 78, +33 6 12 34 56 78, +32 470 12 34 56, +49 151 2345678."
    found = [t for d in DETECTORS if d.entity == "PHONE" for t in _found(text, d.name)]
    for phone in (
        "+352 621 123 456",
        "00352621123456",
        "06 12 34 56 78",
        "+33 6 12 34 56 78",
        "+32 470 12 34 56",
        "+49 151 2345678",
    ):
        assert phone in found


def test_normalise_keeps_offsets() -> None:
    s = "Éloïse MÜLLER-Gonçalves, 1ᵉʳ œdème"
    assert len(normalise(s)) == len(s)
    assert normalise("Éloïse MÜLLER") == "eloise muller"


def test_known_identifiers_tolerate_case_accents_spacing() -> None:
    known = {
        "names": ["Éloïse Müller"],
        "phones": ["+352 621 123 456"],
        "emails": ["eloise.muller@pt.lu"],
        "addresses": ["12, rue de la Gare", "L-1234 Esch-sur-Alzette"],
        "national_ids": ["1985071412341"],
    }
    text = (
        "ELOISE MULLER, dite Eloise, Mme muller ; tél 00352621123456 ou 621 123 456 ; "
        "ELOISE.MULLER@PT.LU ; 12 Rue de la gare, L-1234 Esch sur Alzette ; NIN 1985 0714 123 41."
    )
    found = {(text[s:e], k) for s, e, k, _ in find_known(text, known)}
    for surface, kind in [
        ("ELOISE MULLER", "PATIENT_NAME"),
        ("Eloise", "PATIENT_NAME"),
        ("muller", "PATIENT_NAME"),
        ("00352621123456", "PHONE"),
        ("621 123 456", "PHONE"),
        ("ELOISE.MULLER@PT.LU", "EMAIL"),
        ("12 Rue de la gare", "ADDRESS"),
        ("L-1234 Esch sur Alzette", "ADDRESS"),
        ("1985 0714 123 41", "MATRICULE"),
    ]:
        assert (surface, kind) in found, surface


def test_merge_redact_and_date_shift() -> None:
    spans = merge_spans([(0, 4, "OTHER_NAME", 0.8), (2, 9, "PATIENT_NAME", 1.0), (12, 22, "DATE", 0.9)])
    assert spans == [Span(0, 9, "PATIENT_NAME", 1.0), Span(12, 22, "DATE", 0.9)]
    text = "Anne Weber, le 12/03/2021."
    assert redact(text, [Span(0, 10, "PATIENT_NAME", 1), Span(15, 25, "DATE", 1)]) == "[NOM], le [DATE]."
    assert redact(text, [Span(15, 25, "DATE", 1)], date_offset=3) == "Anne Weber, le 15/03/2021."
    assert shift_date_text("12.03.2021", -12) == "28.02.2021"
    assert shift_date_text("11 octobre 1959", 21) == "1er novembre 1959"
    assert shift_date_text("28 février", 1) == "29 février"
    assert shift_date_text("pas une date", 1) is None


def test_evaluate_arithmetic() -> None:
    gold = {"a": [(0, 10, "PATIENT_NAME"), (20, 30, "DATE"), (40, 50, "PHONE")], "b": [(0, 5, "EMAIL")]}
    pred = {
        "a": [(0, 8, "OTHER_NAME"), (20, 25, "DATE"), (60, 65, "DATE")],  # 80 % covered; 50 %; one FP
        "b": [(0, 5, "EMAIL"), (10, 12, "PERSON")],  # found; FP of PERSON -> OTHER_NAME
    }
    r = evaluate(gold, pred)
    assert r["PATIENT_NAME"] == {"precision": 1.0, "recall": 1.0, "support": 1}
    assert r["DATE"] == {"precision": 0.5, "recall": 0.0, "support": 1}
    assert r["PHONE"] == {"precision": 1.0, "recall": 0.0, "support": 1}
    assert r["OTHER_NAME"] == {"precision": 0.0, "recall": 1.0, "support": 0}
    assert r["ALL"] == {"precision": 3 / 5, "recall": 2 / 4, "support": 4}


# ---------------------------------------------------------------- with the spaCy model


def test_long_french_dates(deid: Deidentifier) -> None:
    text = "Né le 11 octobre 1959, opéré le 1er mars 2020, revu le 3 mars et le 12.03.2021."
    dates = [s for s, k in _masked(deid, text) if k == "DATE"]
    assert dates == ["11 octobre 1959", "1er mars 2020", "3 mars", "12.03.2021"]


def test_clinical_numbers_and_eponyms_are_not_masked(deid: Deidentifier) -> None:
    known = {"names": ["Jean Wagner"]}
    text = (
        "M. WAGNER présente une plaie classée grade 2 de la classification de Wagner. "
        "HbA1c 7,2 %, glycémie 1,26 g/L, metformine 500 mg, TA 135/85 mmHg. Signe de Babinski négatif, "
        "maladie de Parkinson. Jean est accompagné de sa fille Claire."
    )
    masked = _masked(deid, text, known)
    surfaces = [s for s, _k in masked]
    assert ("WAGNER", "PATIENT_NAME") in masked
    da_silva = "DA SILVA Thierry est revu."
    assert _masked(deid, da_silva, {"names": ["Thierry Da Silva"]})[0] == ("DA SILVA Thierry", "PATIENT_NAME")
    assert ("Jean", "PATIENT_NAME") in masked
    assert "Claire" in surfaces
    assert "Wagner" not in surfaces and "Babinski" not in surfaces and "Parkinson" not in surfaces
    assert not any(ch.isdigit() for s in surfaces for ch in s)


def test_matricule_and_iban_in_text(deid: Deidentifier) -> None:
    m = make_matricule(date(1970, 1, 2), 45)
    bad = m[:-1] + str((int(m[-1]) + 1) % 10)
    masked = _masked(deid, f"Matricule {m}, ancien numéro {bad}, IBAN {IBAN}.")
    assert (m, "MATRICULE") in masked and (IBAN, "IBAN") in masked
    assert bad not in [s for s, _k in masked]


def test_cli_round_trip_and_eval(tmp_path: Path, deid: Deidentifier, monkeypatch: pytest.MonkeyPatch) -> None:
    patients = make_patients(11, 6)
    notes = make_notes(patients, seed=11)
    write_notes_files(tmp_path, notes, {p.patient_id: known_identifiers(p) for p in patients})
    app = typer.Typer()
    register(app)
    runner = CliRunner()
    out = tmp_path / "out.jsonl"
    res = runner.invoke(app, ["deid-text", str(tmp_path / "notes.jsonl"), "--out", str(out)])
    assert res.exit_code == 0, res.output
    lines = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert [x["id"] for x in lines] == [n.id for n in notes]
    for line, note in zip(lines, notes, strict=True):
        for _s, _e, _k, surface in note.spans:
            assert surface not in line["text_deid"] or len(surface) < 4
        assert {"start", "end", "entity_type", "score"} <= set(line["spans"][0])
    assert "[DATE]" in lines[0]["text_deid"]

    report = tmp_path / "report.json"
    res = runner.invoke(
        app, ["eval-deid", str(tmp_path / "notes_gold.jsonl"), str(out), "--json", str(report)]
    )
    assert res.exit_code == 0, res.output
    data = json.loads(report.read_text(encoding="utf-8"))
    assert data["ALL"]["recall"] >= 0.95 and data["ALL"]["precision"] >= 0.85
    assert "PATIENT_NAME" in res.output

    # --project shifts dates instead of tagging them
    monkeypatch.setenv("DS4H_KEY_DEMO", "ab" * 32)
    out2 = tmp_path / "out2.jsonl"
    res = runner.invoke(
        app, ["deid-text", str(tmp_path / "notes.jsonl"), "--out", str(out2), "--project", "demo"]
    )
    assert res.exit_code == 0, res.output
    shifted = [json.loads(x) for x in out2.read_text(encoding="utf-8").splitlines()]
    assert all("[DATE]" not in x["text_deid"] for x in shifted)
    assert [x["spans"] for x in shifted] == [x["spans"] for x in lines]


def test_cli_malformed_line(tmp_path: Path) -> None:
    bad = tmp_path / "in.jsonl"
    bad.write_text('{"id": "a", "text": "ok"}\n{"id": "b", "text": \n', encoding="utf-8")
    app = typer.Typer()
    register(app)
    res = CliRunner().invoke(app, ["deid-text", str(bad), "--out", str(tmp_path / "o.jsonl")])
    assert res.exit_code == 1
    assert "in.jsonl:2" in res.output
    assert not (tmp_path / "o.jsonl").exists()


def test_known_names_in_any_order_and_with_eszett() -> None:
    from anonymisation.deid_recognizers import find_known

    text = "Votre patient LE GALL Jean-Marc, et SPIESS Rotraud, vus ce jour."
    found = find_known(text, {"names": ["Jean-Marc Le Gall", "Rotraud Spieß"]})
    covered = {i for s, e, _k, _sc in found for i in range(s, e)}
    for surface in ("LE GALL Jean-Marc", "SPIESS Rotraud"):
        start = text.index(surface)
        assert all(i in covered for i in range(start, start + len(surface))), surface


def test_birth_dates_are_tagged_while_other_dates_shift() -> None:
    import datetime as dt

    from anonymisation.deid import Span, redact

    text = "né(e) le 08/07/1956, revu le 15 avril 2018."
    spans = [Span(9, 19, "DATE", 1.0), Span(29, 42, "DATE", 1.0)]
    out = redact(text, spans, date_offset=10, tagged_dates={dt.date(1956, 7, 8)})
    assert out == "né(e) le [DATE], revu le 25 avril 2018."
