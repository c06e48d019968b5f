"""The pseudo stage rules out birth-date coincidences of its date shift, for Date cells and for dates
written in notes (a newborn's discharge date, shifted with the note, may fall on the true birth date)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl

from anonymisation.leakscan import LeakScan, identifiers_from_patients
from pipelines.leaks import explain_pseudo_dates, written_dates
from transforms.storage import Workspace

BIRTH = dt.date(2024, 6, 6)


def test_written_dates_are_the_full_dates_the_deidentification_reads() -> None:
    texts = pl.DataFrame({"person_id": [1, 2], "text": [
        "Entrée le 30 mai 2024, sortie le 06/06/2024. Contrôle prévu le 27 juin.", "Né en 1950, vu en mars 2021."]})
    assert written_dates(texts).rows() == [(1, dt.date(2024, 5, 30)), (1, dt.date(2024, 6, 6))]


def _workspace(tmp_path: Path, original_note: str) -> Workspace:
    ws = Workspace(tmp_path)
    folder = ws.lake("omop", "note", "site-a")
    folder.mkdir(parents=True)
    pl.DataFrame({"person_id": [1], "note_date": [dt.date(2024, 5, 1)], "note_text": [original_note]}).write_parquet(
        folder / "part-0.parquet")
    return ws


def _scan_of_the_pseudo_note(pseudo_note: str) -> LeakScan:
    ids = identifiers_from_patients(pl.DataFrame({"person_id": [101], "birth_date": [BIRTH]}))
    scan = LeakScan(ids)
    scan.table("note", pl.DataFrame({"person_id": [101], "note_text": [pseudo_note]}))
    assert scan.hits() == {"note": {"birth_date": 1}}
    return scan


PMAP = pl.DataFrame({"person_id": [1], "pseudo_person_id": [101], "date_offset": [7]})
IDENTITY = pl.DataFrame({"person_id": [1], "birth_date": [BIRTH]})


def test_a_written_date_shifted_onto_the_birth_date_is_explained(tmp_path: Path) -> None:
    # the original note says "sortie le 30 mai 2024"; shifted by 7 days it reads 6 juin 2024, the birth date
    ws = _workspace(tmp_path, "Date de sortie : 30 mai 2024.")
    scan = _scan_of_the_pseudo_note("Date de sortie : 6 juin 2024.")
    assert explain_pseudo_dates(ws, "site-a", scan, PMAP, IDENTITY) == {101}
    assert scan.hits() == {}


def test_a_birth_date_the_deidentification_missed_stays_a_leak(tmp_path: Path) -> None:
    # the original note wrote the birth date itself; nothing of the person lands on it by the shift
    ws = _workspace(tmp_path, "Patient 6 juin 2024 x.")
    scan = _scan_of_the_pseudo_note("Patient 6 juin 2024 x.")
    assert explain_pseudo_dates(ws, "site-a", scan, PMAP, IDENTITY) == set()
    assert scan.hits() == {"note": {"birth_date": 1}}
