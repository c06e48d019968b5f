"""Text de-identification: recognisers, known-identifier deny list, date shifting, CLI and evaluation.

The sentences here are written for these tests (not taken from generator/notes.py)."""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from anonymisation.deid import Deidentifier, Span, evaluate, merge_spans, redact, shift_date_text
from anonymisation.deid_recognizers import (
    SCANNER,
    find_all,
    find_known,
    is_valid_be_national_number,
    is_valid_iban,
    is_valid_nir,
    normalise,
)
from generator.notes import known_identifiers, make_notes, make_patients, write_notes_files
from pipelines.commands.deid import deidentifier, register
from schemas.matricule import make_matricule

IBAN = "LU280019400644750000"


@pytest.fixture(scope="module")
def deid() -> Deidentifier:
    return deidentifier("fr", 64)  # shared with the CLI commands of this process


def _scan(text: str, kind: str | None = None) -> list[str]:
    """Surfaces the one-pass scanner finds (of ``kind``; DATE includes birth dates)."""
    out = []
    for s, e, k, _sc in find_all(text):
        k = "DATE" if k == "BIRTH_DATE" else k
        if kind is None or k == kind:
            out.append(text[s:e])
    return out


def _masked(
    deid: Deidentifier, text: str, known: dict[str, list[str]] | None = None
) -> list[tuple[str, str]]:
    return [(text[s.start : s.end], s.entity_type) for s in deid.analyze(text, known)]


def _app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


# ---------------------------------------------------------------- the recognisers, one form at a time


@pytest.mark.parametrize(
    ("sentence", "surface"),
    [
        ("Scanner thoracique réalisé le 2021-03-14 au matin.", "2021-03-14"),
        ("Bilan de contrôle prévu le 2022/11/05.", "2022/11/05"),
        ("Revue en consultation le 05/07/2019 avec sa fille.", "05/07/2019"),
        ("Chute à domicile le 3.2.21, sans perte de connaissance.", "3.2.21"),
        ("Sortie le 30-09-2020 vers un centre de rééducation.", "30-09-2020"),
        ("Opéré le 14 mars 2021 d'une cholécystectomie.", "14 mars 2021"),
        ("Première séance le 1er avril, bien tolérée.", "1er avril"),
        ("Dernières règles le 12 Janv. 2023 selon la patiente.", "12 Janv. 2023"),
        ("Hospitalisée en mars 2021 pour une pneumopathie.", "mars 2021"),
        ("Bilan lipidique de 03/2021 normal.", "03/2021"),
        ("Infarctus du myocarde en 2019, stenté.", "2019"),
        ("Coronarographie le lundi 14 mars 2022 à 9 h.", "lundi 14 mars 2022"),
        ("Examen du mardi 03/05/2022 sans particularité.", "mardi 03/05/2022"),
        ("Échographie faite le 17/06 : pas d'épanchement.", "17/06"),
        ("Séjour du 3 au 7 janvier 2022 en unité de soins continus.", "3 au 7 janvier 2022"),
        ("Prothèse de hanche droite (2016), bien tolérée.", "2016"),
        ("Suivi en oncologie depuis 2017.", "2017"),
    ],
)
def test_every_date_form_is_found(sentence: str, surface: str) -> None:
    assert surface in _scan(sentence, "DATE"), _scan(sentence)


@pytest.mark.parametrize(
    ("sentence", "surface"),
    [
        ("Monsieur Hoffmann, 97 ans, vit seul.", "97 ans"),
        ("Patiente âgée de 84 ans, autonome.", "84 ans"),
        ("Nourrisson de 3 mois amené par ses parents.", "3 mois"),
        ("Enfant de 4 ans, vacciné.", "4 ans"),
        ("Âge : 91 ans.", "91 ans"),
        ("Madame Lentz (88 ans) est revue ce jour.", "88 ans"),
    ],
)
def test_ages(sentence: str, surface: str) -> None:
    assert _scan(sentence, "AGE") == [surface]


@pytest.mark.parametrize(
    ("sentence", "surface"),
    [
        ("Né en 1950 à Wiltz, ancien instituteur.", "1950"),
        ("Patiente née en 1938, veuve.", "1938"),
        ("Il est de la classe 1950, comme son frère.", "1950"),
        ("Né le 11 octobre 1959 à Esch-sur-Alzette.", "11 octobre 1959"),
    ],
)
def test_years_and_dates_of_birth_are_birth_dates(sentence: str, surface: str) -> None:
    found = [(sentence[s:e], k) for s, e, k, _ in find_all(sentence)]
    assert (surface, "BIRTH_DATE") in found


@pytest.mark.parametrize(
    "phone",
    [
        "26 12 34 56", "45 12 34", "2612 3456", "26.12.34.56", "26123456",
        "621 123 456", "691123456", "+352 621 123 456", "00352 26 12 34 56", "(+352) 45 12 34",
        "06 12 34 56 78", "01.23.45.67.89", "+33 6 12 34 56 78", "+33 (0)3 82 12 34 56", "0033 6 12 34 56 78",
        "0470 12 34 56", "02 123 45 67", "063 21 43 65", "+32 470 12 34 56", "0032 4 123 45 67",
        "0651 123456", "0651/12345-67", "+49 651 1234567", "+49 (0)171 1234567", "0049 651 123456",
    ],
)  # fmt: skip
def test_phone_numbers_of_four_countries(phone: str) -> None:
    sentence = f"Sa fille est joignable au {phone}, le soir."
    assert phone in _scan(sentence, "PHONE") or any(phone in p for p in _scan(sentence, "PHONE")), _scan(sentence)
    bare = f"Numéros utiles : {phone}."
    if not re.fullmatch(r"\d{8}", phone):  # eight digits in a row: only after a word that announces a number
        assert _scan(bare, "PHONE") == [phone], _scan(bare)


@pytest.mark.parametrize(
    ("sentence", "surfaces"),
    [
        ("Domicile : Rue de Hollerich 5, L-1471 Luxembourg.", ["Rue de Hollerich 5", "L-1471 Luxembourg"]),
        ("Adresse : 12 bis, avenue de la Liberté, 1930 Luxembourg.", ["12 bis, avenue de la Liberté", "1930 Luxembourg"]),
        ("Vit Op der Heed 3, 9999 Wemperhardt, avec son épouse.", ["Op der Heed 3", "9999 Wemperhardt"]),
        ("Wohnt Hauptstraße 5, D-54290 Trier.", ["Hauptstraße 5", "D-54290 Trier"]),
        ("Domiciliée 7, Am Duerf, L 8124 Bridel.", ["7, Am Duerf", "L 8124 Bridel"]),
        ("Frontalier : 3 rue des Écoles, F-57100 Thionville.", ["3 rue des Écoles", "F-57100 Thionville"]),
        ("Courrier à B-6700 Arlon, Grand-Rue 23.", ["B-6700 Arlon", "Grand-Rue 23"]),
        ("Domicile Kiirchestrooss 12 à Rambrouch.", ["Kiirchestrooss 12"]),
        ("Transfert vers la maison de soins, Maison 14, Hosingen.", ["Maison 14"]),
    ],
)
def test_addresses_street_first_and_number_first(sentence: str, surfaces: list[str]) -> None:
    found = _scan(sentence, "ADDRESS")  # a labelled line may be found whole ("Adresse : 12 bis, ..., 1930 Luxembourg")
    assert all(any(x in f for f in found) for x in surfaces), found
    assert not any(w in f for f in found for w in ("Domicil", "Adresse", "Courrier", "Transfert", "avec", " à "))


@pytest.mark.parametrize(
    ("sentence", "surface"),
    [
        ("Vu ce jour avec Mme Anne-Marie WEBER-SCHMIT.", "Anne-Marie WEBER-SCHMIT"),
        ("Avis demandé au Dr van den Berg (cardiologie).", "van den Berg"),
        ("Le Pr Da Silva Ferreira a relu l'IRM.", "Da Silva Ferreira"),
        ("Courrier adressé à M. d'Ornano.", "d'Ornano"),
        ("Mlle Le Gall, interne, était présente.", "Le Gall"),
        ("Présents : REUTER Claude, KREMER Sophie.", "REUTER Claude"),
        ("Appel de sa belle-fille Patricia ce matin.", "Patricia"),
        ("Madame Weber, épouse Thill, est accompagnée.", "Thill"),
        ("Médecin traitant : Dr Paul Lentz.", "Paul Lentz"),
        ("Le dossier a été discuté avec Nathalie Becker.", "Nathalie Becker"),
    ],
)
def test_names_in_capitals_hyphenated_and_with_particles(sentence: str, surface: str) -> None:
    assert surface in _scan(sentence, "OTHER_NAME"), _scan(sentence)


def test_matricule_grouped_and_check_digits() -> None:
    m = make_matricule(date(1980, 1, 1), 123)
    for written in (m, f"{m[:4]} {m[4:8]} {m[8:11]} {m[11:]}", f"{m[:8]} {m[8:]}"):
        assert _scan(f"Sa carte CNS porte le {written} au verso.", "MATRICULE") == [written]
    for i in range(13):
        changed = m[:i] + str((int(m[i]) + 1) % 10) + m[i + 1 :]
        assert _scan(f"Référence {changed} du laboratoire.", "MATRICULE") == []
    # after its label, a matricule is masked whatever its check digits
    bad = m[:-1] + str((int(m[-1]) + 1) % 10)
    assert _scan(f"Matricule : {bad}.", "MATRICULE") == [bad]


def test_french_and_belgian_national_numbers() -> None:
    nir = "2840975123456"
    key = 97 - int(nir) % 97
    full = f"{nir}{key:02d}"
    assert is_valid_nir(full)
    spaced = f"{full[0]} {full[1:3]} {full[3:5]} {full[5:7]} {full[7:10]} {full[10:13]} {full[13:]}"
    assert _scan(f"Assurée sociale française, NIR {spaced}.", "MATRICULE") == [spaced]
    body = "850714123"
    nn = f"{body}{97 - int(body) % 97:02d}"
    assert is_valid_be_national_number(nn)
    written = f"{nn[:2]}.{nn[2:4]}.{nn[4:6]}-{nn[6:9]}.{nn[9:]}"
    assert _scan(f"Registre national belge : {written}.", "MATRICULE") == [written]


def test_ibans_of_four_countries_grouped_or_not() -> None:
    assert is_valid_iban(IBAN) and is_valid_iban("LU28 0019 4006 4475 0000")
    assert not is_valid_iban("LU28 0019 4006 4475 0001") and not is_valid_iban("LU2800194006447500")
    for iban in ("LU28 0019 4006 4475 0000", IBAN, "FR76 3000 6000 0112 3456 7890 189", "BE68 5390 0754 7034",
                 "DE89 3704 0044 0532 0130 00", "DE89370400440532013000"):
        assert _scan(f"Virement sur le compte {iban} demain.", "IBAN") == [iban]
    assert _scan("Virement sur le compte LU28 0019 4006 4475 0001 demain.", "IBAN") == []


def test_emails_and_local_ids() -> None:
    assert _scan("Écrire à marie.schmit@pt.lu ou m.schmit(at)internet.lu.", "EMAIL") == [
        "marie.schmit@pt.lu", "m.schmit(at)internet.lu"]
    text = "IPP : 00451237 ; N° de séjour 2021-004512 ; dossier n° A-778812 ; numéro patient 88123."
    assert _scan(text, "LOCAL_ID") == ["00451237", "2021-004512", "A-778812", "88123"]


def test_one_combined_pattern() -> None:
    assert SCANNER.pattern.count("(?P<") >= 30  # every recogniser is an alternative of one pattern


# ---------------------------------------------------------------- what must stay


@pytest.mark.parametrize(
    "sentence",
    [
        "Signe de Babinski négatif, maladie de Parkinson évoluée, syndrome de Guillain-Barré en 2e ligne.",
        "Lymphome de Hodgkin en rémission, score de Glasgow à 15, classification de Child-Pugh A.",
        "Kardegic 75 mg, Lasilix 40 mg le matin, insuline 12 UI, énoxaparine 4000 UI/j pendant 10 jours.",
        "HbA1c 7,2 %, TA 145/90 mmHg, FC 82/min, plaquettes 250 000/mm3, CRP 45 mg/L, EVA 6/10.",
        "Douleur abdominale depuis 3 jours, fièvre depuis 48 h, contrôle dans 3 mois.",
        "Tabagisme sevré il y a 5 ans, 20 ans de diabète, survie à 5 ans de 60 %.",
        "Transfert au Centre Hospitalier Emile Mayrisch puis à l'Hôpital Robert Schuman.",
        "Rééducation à Esch-sur-Alzette, puis retour à Ettelbruck.",
        "Mise en place de 2 stents, 1 voie veineuse périphérique, 3 cures de chimiothérapie.",
        "Apgar 9/10/10 à la naissance, score ASA 2.",
    ],
)
def test_clinical_text_stays(deid: Deidentifier, sentence: str) -> None:
    assert _masked(deid, sentence) == []


# ---------------------------------------------------------------- known identifiers


def test_known_names_tolerate_case_accents_transliteration() -> None:
    known = {"names": ["Jürgen Müller", "Maria dos Santos"], "phones": ["+352 621 123 456"],
             "emails": ["eloise.muller@pt.lu"], "addresses": ["12, rue de la Gare", "L-1234 Esch-sur-Alzette"],
             "national_ids": ["1985071412341"]}
    text = ("MUELLER Juergen et Jurgen MULLER ; Mme Müller ; DOS SANTOS Maria ; tél 00352621123456 ou "
            "621 123 456 ; ELOISE.MULLER@PT.LU ; rue de la Gare 12, 1234 Esch sur Alzette ; NIN 1985 0714 123 41.")
    found = {(text[s:e], k) for s, e, k, _ in find_known(text, known)}
    for surface, kind in [
        ("MUELLER Juergen", "PATIENT_NAME"), ("Jurgen MULLER", "PATIENT_NAME"), ("Müller", "PATIENT_NAME"),
        ("DOS SANTOS Maria", "PATIENT_NAME"), ("00352621123456", "PHONE"), ("621 123 456", "PHONE"),
        ("ELOISE.MULLER@PT.LU", "EMAIL"), ("rue de la Gare 12", "ADDRESS"), ("1234 Esch sur Alzette", "ADDRESS"),
        ("1985 0714 123 41", "MATRICULE"),
    ]:
        assert (surface, kind) in found, surface


def test_known_names_in_any_order_and_with_eszett() -> None:
    text = "Votre patient LE GALL Jean-Marc, et SPIESS Rotraud, vus ce jour ; Mme Spieß."
    found = find_known(text, {"names": ["Jean-Marc Le Gall", "Rotraud Spieß"]})
    covered = {i for s, e, _k, _sc in found for i in range(s, e)}
    for surface in ("LE GALL Jean-Marc", "SPIESS Rotraud", "Spieß"):
        start = text.index(surface)
        assert all(i in covered for i in range(start, start + len(surface))), surface


def test_known_local_ids_ibans_and_birth_dates(deid: Deidentifier) -> None:
    known = {"names": ["Paul Kremer"], "local_ids": ["IPP-0045123"], "ibans": ["LU28 0019 4006 4475 0000"],
             "birth_dates": ["1950-03-14"]}
    text = ("M. Kremer (réf. IPP-0045123, ancien n° 0045123), compte LU280019400644750000, "
            "né le 14 03 1950, anniversaire le 14 mars, opéré le 2 mai 2019.")
    masked = _masked(deid, text, known)
    assert ("IPP-0045123", "LOCAL_ID") in masked and ("0045123", "LOCAL_ID") in masked
    assert ("LU280019400644750000", "IBAN") in masked
    births = [text[s.start : s.end] for s in deid.analyze(text, known) if s.birth]
    assert births == ["14 03 1950", "14 mars"]
    out = redact(text, deid.analyze(text, known), date_offset=10)
    assert "né le [DATE], anniversaire le [DATE], opéré le 12 mai 2019." in out


def test_a_patients_name_is_masked_in_their_notes_even_as_a_common_word(deid: Deidentifier) -> None:
    """As the leak scan reads a note, "un petit épanchement" in Jean Petit's note may be him: masked.
    A function word stays ("sa fille" in André Sá's note): the leak scan counts it only in a whole name."""
    masked = _masked(deid, "Un petit épanchement pleural ; M. Petit est revu.", {"names": ["Jean Petit"]})
    assert masked == [("petit", "PATIENT_NAME"), ("M. Petit", "PATIENT_NAME")]
    assert _masked(deid, "Vu avec sa fille.", {"names": ["André Sá"]}) == []
    assert normalise("Éloïse MÜLLER-Gonçalves, 1ᵉʳ œdème") == "eloise muller-goncalves, 1er œdeme"


# ---------------------------------------------------------------- date shifting


@pytest.mark.parametrize(
    ("surface", "days", "shifted"),
    [
        ("12.03.2021", -12, "28.02.2021"),
        ("05/07/2019", 30, "04/08/2019"),
        ("3.2.21", 1, "4.2.21"),
        ("30-09-2020", 2, "02-10-2020"),
        ("2021-03-14", 20, "2021-04-03"),
        ("2022/11/05", -5, "2022/10/31"),
        ("11 octobre 1959", 21, "1er novembre 1959"),
        ("1er avril", 3, "4 avril"),
        ("28 février", 1, "29 février"),
        ("12 Janv. 2023", 31, "12 Févr. 2023"),
        ("3 fevrier 2020", 30, "4 mars 2020"),
        ("lundi 14 mars 2022", 1, "mardi 15 mars 2022"),
        ("Mardi 03/05/2022", 7, "Mardi 10/05/2022"),
        ("mars 2021", 20, "avril 2021"),  # through the 15th: 15 mars + 20 = 4 avril
        ("mars 2021", -10, "mars 2021"),
        ("décembre 2021", 20, "janvier 2022"),
        ("03/2021", 20, "04/2021"),
        ("2021-03", -20, "2021-02"),
        ("2019", 150, "2019"),  # through the 1st of July: within ±180 days a year stays
        ("2019", 200, "2020"),
        ("17/06", 20, "07/07"),
        ("3 au 7 janvier 2022", 10, "13 au 17 janvier 2022"),
        ("28 au 31 janvier 2022", 3, "31 janvier au 3 février 2022"),
    ],
)
def test_every_date_form_shifts_in_its_own_format(surface: str, days: int, shifted: str) -> None:
    assert shift_date_text(surface, days) == shifted


def test_unparsable_dates_are_masked_never_left() -> None:
    for text in ("Vu le 31/02/2021 en urgence.", "Contrôle le 30 février 2022."):
        spans = [Span(s, e, "DATE", 1.0) for s, e, k, _ in find_all(text) if k == "DATE"]
        assert len(spans) == 1
        assert "[DATE]" in redact(text, spans, date_offset=15)
    assert shift_date_text("pas une date", 1) is None


def test_merge_redact_and_birth_dates_are_tagged() -> None:
    spans = merge_spans([(0, 4, "OTHER_NAME", 0.8), (2, 9, "PATIENT_NAME", 1.0), (12, 22, "DATE", 0.9)])
    assert spans == [Span(0, 9, "PATIENT_NAME", 1.0), Span(12, 22, "DATE", 0.9)]
    text = "Anne Weber, le 12/03/2021."
    assert redact(text, [Span(0, 10, "PATIENT_NAME", 1), Span(15, 25, "DATE", 1)]) == "[NOM], le [DATE]."
    assert redact(text, [Span(15, 25, "DATE", 1)], date_offset=3) == "Anne Weber, le 15/03/2021."
    text = "né(e) le 08/07/1956, revu le 15 avril 2018, en 1956 et en juillet 1956."
    spans = [Span(s, e, "DATE", 1.0) for s, e, _k, _ in find_all(text)]
    out = redact(text, spans, date_offset=10, tagged_dates={date(1956, 7, 8)})
    assert out == "né(e) le [DATE], revu le 25 avril 2018, en [DATE] et en [DATE]."
    # a date that its context makes a birth date is tagged even when the birth date is not known
    text = "Patiente née le 2 juin 1931, hospitalisée le 2 juin 2020."
    assert redact(text, merge_spans(find_all(text)), date_offset=5) == "Patiente née le [DATE], hospitalisée le 7 juin 2020."


def test_evaluate_arithmetic() -> None:
    gold = {"a": [(0, 10, "PATIENT_NAME"), (20, 30, "DATE"), (40, 50, "PHONE")], "b": [(0, 5, "EMAIL")]}
    pred = {
        "a": [(0, 8, "OTHER_NAME"), (20, 25, "DATE"), (60, 65, "DATE")],  # 80 % covered; 50 %; one FP
        "b": [(0, 5, "EMAIL"), (10, 12, "PERSON")],  # found; FP of PERSON -> OTHER_NAME
    }
    r = evaluate(gold, pred)
    assert r["PATIENT_NAME"] == {"precision": 1.0, "recall": 1.0, "support": 1, "unchanged": 0}
    assert r["DATE"] == {"precision": 0.5, "recall": 0.0, "support": 1, "unchanged": 0}  # half masked
    assert r["PHONE"] == {"precision": 1.0, "recall": 0.0, "support": 1, "unchanged": 1}  # not touched
    assert r["OTHER_NAME"] == {"precision": 0.0, "recall": 1.0, "support": 0, "unchanged": 0}
    assert r["ALL"] == {"precision": 3 / 5, "recall": 2 / 4, "support": 4, "unchanged": 1}


# ---------------------------------------------------------------- with the spaCy model


def test_ner_names_and_eponym_surnames(deid: Deidentifier) -> None:
    known = {"names": ["Jean Wagner"]}
    text = (
        "M. WAGNER présente une plaie classée grade 2 de la classification de Wagner. "
        "Signe de Babinski négatif, maladie de Parkinson. Jean est accompagné de sa fille Claire."
    )
    masked = _masked(deid, text, known)
    surfaces = [s for s, _k in masked]
    assert ("M. WAGNER", "PATIENT_NAME") in masked and ("Jean", "PATIENT_NAME") in masked
    assert "Claire" in surfaces
    assert "Wagner" not in surfaces and "Babinski" not in surfaces and "Parkinson" not in surfaces
    assert _masked(deid, "DA SILVA Thierry est revu.", {"names": ["Thierry Da Silva"]})[0] == (
        "DA SILVA Thierry", "PATIENT_NAME")


def test_generated_notes_regression(deid: Deidentifier) -> None:
    """The generated notes stay found: recall and precision 1.0 on every type."""
    patients = make_patients(21, 40)
    notes = make_notes(patients, seed=21, per_patient=3)
    by_id = {p.patient_id: p for p in patients}
    spans = deid.analyze_batch([n.text for n in notes], [known_identifiers(by_id[n.patient_id]) for n in notes])
    predicted = {n.id: [(s.start, s.end, s.entity_type) for s in sp] for n, sp in zip(notes, spans, strict=True)}
    gold = {n.id: [(s, e, k) for s, e, k, _x in n.spans] for n in notes}
    report = evaluate(gold, predicted)
    assert {"AGE", "DATE", "PATIENT_NAME", "OTHER_NAME", "ADDRESS", "PHONE", "MATRICULE"} <= set(report)
    for kind, row in report.items():
        assert row["recall"] == 1.0 and row["precision"] == 1.0, (kind, row)


# ---------------------------------------------------------------- the commands


def test_cli_round_trip_and_eval(tmp_path: Path, deid: Deidentifier, monkeypatch: pytest.MonkeyPatch) -> None:
    patients = make_patients(11, 6)
    notes = make_notes(patients, seed=11)
    write_notes_files(tmp_path, notes, {p.patient_id: known_identifiers(p) for p in patients})
    runner = CliRunner()
    out = tmp_path / "out.jsonl"
    res = runner.invoke(_app(), ["deid-text", str(tmp_path / "notes.jsonl"), "--out", str(out)])
    assert res.exit_code == 0, res.output
    lines = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert [x["id"] for x in lines] == [n.id for n in notes]
    for line, note in zip(lines, notes, strict=True):
        for _s, _e, _k, surface in note.spans:
            assert surface not in line["text_deid"] or len(surface) < 4
        assert {"start", "end", "entity_type", "score"} <= set(line["spans"][0])
    assert "[DATE]" in lines[0]["text_deid"]

    report = tmp_path / "report.json"
    res = runner.invoke(_app(), ["eval-deid", str(tmp_path / "notes_gold.jsonl"), str(out), "--json", str(report)])
    assert res.exit_code == 0, res.output
    data = json.loads(report.read_text(encoding="utf-8"))
    assert data["ALL"]["recall"] == 1.0 and data["ALL"]["precision"] == 1.0
    assert "PATIENT_NAME" in res.output and "AGE" in res.output

    # --project shifts dates instead of tagging them (birth dates stay tagged)
    monkeypatch.setenv("DS4H_KEY_DEMO", "ab" * 32)
    out2 = tmp_path / "out2.jsonl"
    res = runner.invoke(_app(), ["deid-text", str(tmp_path / "notes.jsonl"), "--out", str(out2), "--project", "demo"])
    assert res.exit_code == 0, res.output
    shifted = [json.loads(x) for x in out2.read_text(encoding="utf-8").splitlines()]
    assert [x["spans"] for x in shifted] == [x["spans"] for x in lines]
    for line, note in zip(shifted, notes, strict=True):
        dates = [x for x in note.spans if x[2] == "DATE" and "né(e) le" not in note.text[max(0, x[0] - 12) : x[0]]]
        assert line["text_deid"].count("[DATE]") == sum(1 for x in note.spans if x[2] == "DATE") - len(dates)


def _line(id_: str, text: str, **extra: object) -> str:
    return json.dumps({"id": id_, "text": text, **extra}, ensure_ascii=False) + "\n"


def test_cli_shift_days_and_the_policy_range(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "in.jsonl"
    text = "Vue le 2021-03-14, puis en mars 2021, le 31/02/2021, née le 02/06/1931 ; âgée de 89 ans."
    src.write_text(_line("a", text, shift_days=10) + _line("b", text, known={"birth_dates": ["1931-06-02"]}),
                   encoding="utf-8")
    out = tmp_path / "out.jsonl"
    res = CliRunner().invoke(_app(), ["deid-text", str(src), "--out", str(out)])
    assert res.exit_code == 0, res.output
    a, b = (json.loads(x) for x in out.read_text(encoding="utf-8").splitlines())
    assert a["text_deid"] == "Vue le 2021-03-24, puis en mars 2021, le [DATE], née le [DATE] ; âgée de [AGE]."
    assert b["text_deid"] == "Vue le [DATE], puis en [DATE], le [DATE], née le [DATE] ; âgée de [AGE]."

    # --project: lines without shift_days move by the keyed offset, within the config's range
    monkeypatch.setenv("DS4H_KEY_DEMO", "cd" * 32)
    config = tmp_path / "ds4h.yaml"
    config.write_text("project: demo\nsources:\n  - {site: a, format: hospital-csv, path: landing/a}\n"
                      "policy:\n  date_shift_days: 3\n", encoding="utf-8")
    res = CliRunner().invoke(_app(), ["deid-text", str(src), "--out", str(out), "--project", "demo",
                                      "--config", str(config)])
    assert res.exit_code == 0, res.output
    a2, b2 = (json.loads(x) for x in out.read_text(encoding="utf-8").splitlines())
    assert a2["text_deid"] == a["text_deid"]  # its own shift_days wins
    moved = re.search(r"Vue le (\d{4}-\d\d-\d\d)", b2["text_deid"])
    assert moved is not None
    delta = (date.fromisoformat(moved.group(1)) - date(2021, 3, 14)).days
    assert 1 <= abs(delta) <= 3


def test_cli_rejects_bad_known_and_shift(tmp_path: Path) -> None:
    for extra, message in (
        ({"known": {"birth_dates": ["14/03/1950"]}}, "known.birth_dates"),
        ({"known": {"local_ids": "P1"}}, "known.local_ids must be a list"),
        ({"known": {"ibans": [12]}}, "known.ibans must be a list"),
        ({"shift_days": "10"}, "'shift_days' must be an integer"),
        ({"shift_days": True}, "'shift_days' must be an integer"),
    ):
        src = tmp_path / "in.jsonl"
        src.write_text(_line("a", "texte", **extra), encoding="utf-8")
        res = CliRunner().invoke(_app(), ["deid-text", str(src), "--out", str(tmp_path / "o.jsonl")])
        assert res.exit_code == 1 and message in res.output, res.output
        assert "in.jsonl:1" in res.output


def test_cli_malformed_line(tmp_path: Path) -> None:
    bad = tmp_path / "in.jsonl"
    bad.write_text('{"id": "a", "text": "ok"}\n{"id": "b", "text": \n', encoding="utf-8")
    res = CliRunner().invoke(_app(), ["deid-text", str(bad), "--out", str(tmp_path / "o.jsonl")])
    assert res.exit_code == 1
    assert "in.jsonl:2" in res.output
    assert not (tmp_path / "o.jsonl").exists()


# ---------------------------------------------------------------- the model loader


def test_only_the_ner_pipes_are_loaded(deid: Deidentifier) -> None:
    assert deid.nlp.pipe_names == ["ner"]


# ---------------------------------------------------------------- forms found while tuning on the dev seed


@pytest.mark.parametrize(
    ("sentence", "kind", "surface"),
    [
        ("Kontrolle beim Hausarzt am 29. November 2018.", "DATE", "29. November 2018"),
        ("Date de naissance : seize octobre mille neuf cent cinquante-six\n", "DATE",
         "seize octobre mille neuf cent cinquante-six"),
        ("Paramètre | 13/02 | 17/02\n", "DATE", "13/02"),
        ("Antécédents : Hystérectomie 2002, HTA.", "DATE", "2002"),
        ("DDN : 1ER AOÛT 1933 (86 a)", "DATE", "1ER AOÛT 1933"),
        ("Der 55-jährige Patient berichtete über Fieber.", "AGE", "55-jährige"),
        ("Nourrisson, né le 1 oct. 2020 (8 mois)", "AGE", "8 mois"),
        ("Âge\t8 mois\n", "AGE", "8 mois"),
        ("Épisode : EP-1926559\n", "LOCAL_ID", "EP-1926559"),
        ("(N° de dossier 949 7352) muer", "LOCAL_ID", "949 7352"),
        ("PID : H 8937895 / Acc. 50843238\n", "LOCAL_ID", "H 8937895"),
        ("Vous pouvez joindre M. LE GOFF au 21 10 5834.", "PHONE", "21 10 5834"),
        ("Tél : 87-46-10 - Fax", "PHONE", "87-46-10"),
        ("Contacts : patient : 661 822 252.", "PHONE", "661 822 252"),
        ("Adresse : montée de la Pétrusse, 142A\n", "ADDRESS", "montée de la Pétrusse, 142A"),
        ("Domicile : 3, Um Bongert L-6154 Junglinster\n", "ADDRESS", "3, Um Bongert"),
        ("Au Dr C. Marques\n7, Kapellestraat, B-6700 Arlon\n", "ADDRESS", "7, Kapellestraat"),
        ("Avis cardiologique (KRÜGER) le jeudi 6 janvier.", "OTHER_NAME", "KRÜGER"),
        ("Inf. de nuit : Chiara\n", "OTHER_NAME", "Chiara"),
        ("compagnon, M. Da silva.\n", "OTHER_NAME", "M. Da silva"),
        ("Copie : Dr Majerus; De Oliveira\n", "OTHER_NAME", "De Oliveira"),
        ("Nous vous adressons Welter (24 février 1930).", "OTHER_NAME", "Welter"),
        ("BEIER-SPAUTZ, 75 ans, aide-soignante.", "OTHER_NAME", "BEIER-SPAUTZ"),
        ("wir berichten über Ihre Patientin M. Scholz, geb. 19. Januar 1978", "OTHER_NAME", "Scholz"),
        # forms of a second round of independently written notes
        ("Nous vous adressons M Gonçalves pour avis.", "OTHER_NAME", "Gonçalves"),
        ("Labo 28/04 M Duhamel-Martinez : DFG 61", "OTHER_NAME", "Duhamel-Martinez"),
        ("Vit avec sa compagne Jan Lhoest, deux enfants.", "OTHER_NAME", "Jan Lhoest"),
        ("17/04/21 Policlinique Prof. Müller\n", "OTHER_NAME", "Müller"),
        ("Objet : FRISCH Jhemp | 11/04/1932 | IPP : P-1\n", "OTHER_NAME", "FRISCH Jhemp"),
        ("Objet : Muller (N° patient 000 197 890)\n", "OTHER_NAME", "Muller"),
        ("Objet : Schmit - Né(e) le 13.10.1930 - consultation\n", "OTHER_NAME", "Schmit"),
        ("STANDARDISÉE\nMercier née Delić, née le 02/02/1940", "OTHER_NAME", "Mercier"),
        ("LABORATOIRE - Résultats\nHaas | 19-03-1944 | ID patient\n", "OTHER_NAME", "Haas"),
        ("SCHMIT - vingt-trois septembre 1950\n", "OTHER_NAME", "SCHMIT"),
        ("salutations distinguées.\nMett Gloden, Service Facturation", "OTHER_NAME", "Mett Gloden"),
        ("Pour info : THILL (ch. 622) sort le vendredi 25 juin.", "OTHER_NAME", "THILL"),
        ("Dr Nunes, Spautz a rappelé ce matin.", "OTHER_NAME", "Spautz"),
        ("Présents : Pr Weber (oncologue), Antunes (infirmière), Kremer (radiologue)\n", "OTHER_NAME", "Antunes"),
        ("Signé Thein\n", "OTHER_NAME", "Thein"),
        ("Merci de convoquer directement M PAGES au 621/295 716.", "OTHER_NAME", "PAGES"),
        ("Dr Jérôme Fournier\nMaison 78B\nL-3797 Rumelange\n", "ADDRESS", "Maison 78B"),
        ("Dr X\nKiirchewee 12\n9999 Wemperhardt\n", "ADDRESS", "Kiirchewee 12"),
        ("Médecin généraliste\nchaussée romaine 4\nTél : 38 23 42", "ADDRESS", "chaussée romaine 4"),
        ("Domicile : 7, Grand-Place\n", "ADDRESS", "7, Grand-Place"),
        ("Rappeler la fille au 621 18 43 op Aarbecht.", "PHONE", "621 18 43"),
        ("GSM fille 621184377\n", "PHONE", "621184377"),
    ],
)
def test_more_forms(sentence: str, kind: str, surface: str) -> None:
    assert any(surface in found for found in _scan(sentence, kind)), _scan(sentence)


@pytest.mark.parametrize(
    "sentence",
    [
        "Poids 83 kg, taille 1,64 m.\nOrientation : unité 61 (médecine interne).",
        "TSH | 5,73 | mUI/l\nCRP | 203,1 | 207,8 mg/l",
        "Examen : TA 95/60 mmHg, FC 118/min.",
        "Réf. implant 625-7569, lot 8871 1705.",
        "Plaquettes 250 000/mm3, NT-proBNP 1938 pg/ml.",
        "T° 38,2 °C. Tirage intercostal.",
        "Stade M Ganglion envahi.",
        "Le patient a rappelé ce matin. Madame a appelé.",
        "Retour en chambre 12.",
    ],
)
def test_clinical_lines_are_no_identifiers(deid: Deidentifier, sentence: str) -> None:
    assert _masked(deid, sentence) == []


@pytest.mark.parametrize(
    ("sentence", "known"),
    [
        ("Validé le 19/9/2024 16h10\nDosage | 20/09/2024 | 22/09/2024", None),  # a table's row
        ("CONSULTATION DE ONCOLOGIE - 17/06/24", {"names": ["Ana de Oliveira"]}),
    ],
)
def test_headings_with_dates_are_no_names(deid: Deidentifier, sentence: str, known: dict[str, list[str]] | None) -> None:
    assert [k for _s, k in _masked(deid, sentence, known)] == ["DATE"] * sentence.count("/2")


def test_ner_reads_only_the_lines_where_it_can_add_a_name(deid: Deidentifier) -> None:
    from anonymisation.deid import _ner_lines

    text = "Motif : douleur thoracique.\nTraitement : aspirine.\nHier Sophie nous a dit son inquiétude.\nCRP 12 mg/l."
    piece = _ner_lines(text, find_all(text))
    assert piece.text == "Hier Sophie nous a dit son inquiétude."  # the only line with a first name nothing else found
    start = piece.text.index("Sophie")
    s, e = piece.to_text(start, start + len("Sophie"))
    assert text[s:e] == "Sophie"
    assert ("Sophie", "OTHER_NAME") in _masked(deid, text)


def test_known_identifiers_as_words_and_digits() -> None:
    known = {"names": ["Jörg Reichmann"], "phones": ["+352 741137"], "birth_dates": ["1930-03-12"],
             "addresses": ["143 rue de la Gare"]}
    text = ("JOERG REICHMANN, né le 12.3.1930 (12/03/30), tél. 00352741137 ou 74 11 37, "
            "habite Rue de la Gare 143 ; Mme Reichmannova n'est pas de la famille.")
    found = {(text[s:e], k) for s, e, k, _ in find_known(text, known)}
    assert ("JOERG REICHMANN", "PATIENT_NAME") in found
    assert {("12.3.1930", "BIRTH_DATE"), ("12/03/30", "BIRTH_DATE")} <= found
    assert {("00352741137", "PHONE"), ("74 11 37", "PHONE")} <= found
    assert ("Rue de la Gare 143", "ADDRESS") in found
    assert not any("Reichmannova" in surface for surface, _k in found)


def test_eval_reports_unchanged_and_splits_notes_with_and_without_known(tmp_path: Path) -> None:
    (tmp_path / "notes.jsonl").write_text(
        _line("a", "Vu Mme Weber.", known={"names": ["Anne Weber"]}) + _line("b", "Vu M. Schmit.", known={}),
        encoding="utf-8")
    (tmp_path / "gold.jsonl").write_text(
        json.dumps({"id": "a", "spans": [[7, 12, "PATIENT_NAME", "Weber"]]}) + "\n"
        + json.dumps({"id": "b", "spans": [[6, 12, "PATIENT_NAME", "Schmit"]]}) + "\n", encoding="utf-8")
    (tmp_path / "out.jsonl").write_text(
        json.dumps({"id": "a", "text_deid": "Vu Mme [NOM].", "spans": [
            {"start": 7, "end": 12, "entity_type": "PATIENT_NAME", "score": 1.0}]}) + "\n"
        + json.dumps({"id": "b", "text_deid": "Vu M. Schmit.", "spans": []}) + "\n", encoding="utf-8")
    report = tmp_path / "eval.json"
    res = CliRunner().invoke(_app(), ["eval-deid", str(tmp_path / "gold.jsonl"), str(tmp_path / "out.jsonl"),
                                      "--notes", str(tmp_path / "notes.jsonl"), "--json", str(report)])
    assert res.exit_code == 0, res.output
    data = json.loads(report.read_text(encoding="utf-8"))
    assert data["all"]["ALL"] == {"precision": 1.0, "recall": 0.5, "support": 2, "unchanged": 1}
    assert data["with_known"]["ALL"]["recall"] == 1.0 and data["with_known"]["ALL"]["unchanged"] == 0
    assert data["without_known"]["ALL"]["recall"] == 0.0 and data["without_known"]["ALL"]["unchanged"] == 1
    assert "without known (1 notes)" in res.output


def test_a_short_name_whose_canonical_form_is_shorter_is_still_found() -> None:
    found = find_known("Zoé est accompagnée de sa fille.", {"names": ["Zoé Lenoir"]})
    assert [(s, e, k) for s, e, k, _ in found] == [(0, 3, "PATIENT_NAME")]


def test_a_particle_of_a_known_name_is_never_masked_alone() -> None:
    text = "CONSULTATION DE ONCOLOGIE\nM. DE OLIVEIRA, vu avec de Oliveira fils."
    found = [text[s:e] for s, e, k, _ in find_known(text, {"names": ["Ana de Oliveira"]}) if k == "PATIENT_NAME"]
    assert found == ["DE OLIVEIRA", "de Oliveira"]


def test_a_two_letter_name_alone_when_written_as_a_name() -> None:
    known = {"names": ["André Sá"]}
    text = "M. SÁ est venu avec sa fille ; Sá va mieux. Sa sœur passe."
    found = [text[s:e] for s, e, k, _ in find_known(text, known) if k == "PATIENT_NAME"]
    assert found == ["SÁ", "Sá"]


def test_other_national_ids_of_the_identity_are_masked_in_notes() -> None:
    # an SSN or passport number the identity zone carries (staging other_ids) is passed as a national id
    known = {"national_ids": ["999-12-3456", "X12345678X"]}
    for text, surface in [("SSN 999-12-3456 on file", "999-12-3456"), ("ssn: 999 12 3456.", "999 12 3456"),
                          ("passport X12345678X ok", "X12345678X")]:
        assert [text[s:e] for s, e, _k, _ in find_known(text, known)] == [surface]


def test_repeated_texts_are_analysed_once_and_matched_per_patient(deid: Deidentifier,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A text that repeats (a note title) goes through spaCy once; each copy still gets its own patient's
    known identifiers, and the spans equal those of each text analysed on its own."""
    patients = make_patients(5, 3)
    title = f"Lettre de sortie - {patients[0].first_name} {patients[0].last_name} - Dr Schmit"
    texts = [title, "Compte rendu de consultation", title, "Compte rendu de consultation", title]
    knowns = [known_identifiers(patients[i % 3]) for i in range(len(texts))]
    alone = [deid.analyze(t, k) for t, k in zip(texts, knowns, strict=True)]
    piped: list[int] = []
    real_pipe = deid.nlp.pipe

    def counting_pipe(docs: Any, **kw: Any) -> Any:
        docs = list(docs)
        piped.append(len(docs))
        return real_pipe(docs, **kw)

    monkeypatch.setattr(deid, "nlp", SimpleNamespace(pipe=counting_pipe))
    together = list(deid.analyze_batch(texts, knowns))
    assert piped == [2]
    assert together == alone
    # the name is the first patient's own identifier only in the copy that belongs to that patient
    own = [any(s.entity_type == "PATIENT_NAME" for s in sp) for sp in together]
    assert own == [True, False, False, False, False]
