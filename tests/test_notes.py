"""Synthetic French clinical notes: determinism, gold spans and the traps they carry."""

from __future__ import annotations

import itertools
import json
import random
from datetime import date
from pathlib import Path

import pytest

from generator.notes import (
    EPONYM_PHRASES,
    NOTE_KINDS,
    SPAN_TYPES,
    StayContext,
    known_identifiers,
    make_notes,
    make_patients,
    one_line,
    stay_note,
    write_notes_files,
)
from schemas.matricule import is_valid_matricule


def test_notes_are_deterministic() -> None:
    a = make_notes(make_patients(7, 12), seed=7, per_patient=2)
    b = make_notes(make_patients(7, 12), seed=7, per_patient=2)
    assert [(n.id, n.text, n.spans) for n in a] == [(n.id, n.text, n.spans) for n in b]
    c = make_notes(make_patients(8, 12), seed=8, per_patient=2)
    assert [n.text for n in a] != [n.text for n in c]
    assert len(a) == 24 and len({n.id for n in a}) == 24


def test_gold_spans_match_text_and_types() -> None:
    notes = make_notes(make_patients(3, 60), seed=3)
    kinds: set[str] = set()
    for n in notes:
        for start, end, kind, surface in n.spans:
            assert n.text[start:end] == surface
            assert kind in SPAN_TYPES
            kinds.add(kind)
        # spans never overlap
        ordered = sorted(n.spans)
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(ordered))
    assert kinds == set(SPAN_TYPES) - {"LOCAL_ID"}  # LOCAL_ID: in the vocabulary, never written by these notes


def test_identifiers_are_valid_and_traps_present() -> None:
    patients = make_patients(5, 80)
    notes = make_notes(patients, seed=5)
    texts = "\n".join(n.text for n in notes)
    for n in notes:
        for _s, _e, kind, surface in n.spans:
            if kind == "MATRICULE":
                assert is_valid_matricule(surface)
            if kind == "IBAN":
                assert surface.replace(" ", "").startswith("LU")
    assert any(phrase in texts for phrase in EPONYM_PHRASES.values())
    assert "HbA1c" in texts and " mg" in texts
    # some patients carry an eponym surname (the trap the de-identifier must get right)
    assert any(p.last_name in EPONYM_PHRASES for p in patients)
    # the eponyms of the phrases are never spans (the year of a past event in them is a DATE)
    for n in notes:
        for eponym, phrase in EPONYM_PHRASES.items():
            i = n.text.lower().find(phrase.lower())
            if i >= 0:
                inside = [(k, x) for s, e, k, x in n.spans if s < i + len(phrase) and i < e]
                assert all(k == "DATE" and x.isdigit() for k, x in inside), inside
                j = n.text.find(eponym, i)
                assert not any(s < j + len(eponym) and j < e for s, e, _k, _x in n.spans)
    # ages are AGE spans: "71 ans"
    ages = [x for n in notes for _s, _e, k, x in n.spans if k == "AGE"]
    assert ages and all(x.endswith(" ans") for x in ages)


def test_write_notes_files(tmp_path: Path) -> None:
    patients = make_patients(2, 4)
    notes = make_notes(patients, seed=2)
    known = {p.patient_id: known_identifiers(p) for p in patients}
    write_notes_files(tmp_path, notes, known)
    lines = [json.loads(x) for x in (tmp_path / "notes.jsonl").read_text(encoding="utf-8").splitlines()]
    gold = [json.loads(x) for x in (tmp_path / "notes_gold.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [x["id"] for x in lines] == [n.id for n in notes] == [g["id"] for g in gold]
    assert lines[0]["known"]["names"] == [f"{patients[0].first_name} {patients[0].last_name}"]
    assert gold[0]["spans"] == [list(s) for s in notes[0].spans]


def test_one_line_keeps_spans_on_their_surface() -> None:
    for n in make_notes(make_patients(4, 30), seed=4, per_patient=2):
        flat = one_line(n)
        assert "\n" in n.text and "\n" not in flat.text
        assert " / " in flat.text and flat.text == flat.text.strip()
        assert [(k, x) for _s, _e, k, x in flat.spans] == [(k, x) for _s, _e, k, x in n.spans]
        assert all(flat.text[s:e] == x for s, e, _k, x in flat.spans)


@pytest.mark.parametrize("kind", sorted(NOTE_KINDS))
def test_stay_notes_use_the_stay(kind: str) -> None:
    p = make_patients(6, 1)[0]
    ctx = StayContext(
        date(2023, 3, 4), date(2023, 3, 9), "Cardiologie", "une fibrillation atriale", 71, "lung"
    )
    n = one_line(stay_note(p, "N1", random.Random(1), kind, ctx))
    assert n.id == "N1" and n.patient_id == p.patient_id
    assert all(n.text[s:e] == x for s, e, _k, x in n.spans)
    assert {k for _s, _e, k, _x in n.spans} >= {"PATIENT_NAME", "OTHER_NAME", "DATE"}
    if kind in ("hospitalisation", "consultation", "emergency"):
        assert "une fibrillation atriale" in n.text
    if kind == "oncology":
        assert "bronchique" in n.text
