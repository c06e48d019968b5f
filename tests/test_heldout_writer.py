"""The held-out note writer itself: determinism, exact gold offsets, no overlaps, every type, half with `known`."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import pytest

from tests.heldout.notes_writer import (
    KNOWN_KEYS,
    TYPES,
    iban_valid,
    luhn_digit,
    matricule_valid,
    verhoeff_digit,
    verhoeff_valid,
    write_notes,
)

N = 400


def _read(folder: Path) -> tuple[list[dict], list[dict]]:
    notes = [json.loads(x) for x in (folder / "notes.jsonl").read_text(encoding="utf-8").splitlines()]
    gold = [json.loads(x) for x in (folder / "notes_gold.jsonl").read_text(encoding="utf-8").splitlines()]
    return notes, gold


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict], list[dict]]:
    folder = tmp_path_factory.mktemp("heldout")
    write_notes(folder, N, seed=7)
    return _read(folder)


def test_same_bytes_for_same_seed(tmp_path: Path) -> None:
    write_notes(tmp_path / "a", 120, seed=3)
    write_notes(tmp_path / "b", 120, seed=3)
    write_notes(tmp_path / "c", 120, seed=4)
    for name in ("notes.jsonl", "notes_gold.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
        assert (tmp_path / "a" / name).read_bytes() != (tmp_path / "c" / name).read_bytes()


def test_ids_match_and_input_fields(written: tuple[list[dict], list[dict]]) -> None:
    notes, gold = written
    assert len(notes) == len(gold) == N
    assert [x["id"] for x in notes] == [g["id"] for g in gold]
    assert len({x["id"] for x in notes}) == N
    for note in notes:
        assert set(note) == {"id", "text", "known", "shift_days"}
        assert note["text"].strip()
        assert isinstance(note["shift_days"], int)
        assert note["shift_days"] != 0 and -365 <= note["shift_days"] <= 365


def test_gold_offsets_point_at_their_text(written: tuple[list[dict], list[dict]]) -> None:
    notes, gold = written
    for note, g in zip(notes, gold, strict=True):
        text = note["text"]
        for start, end, typ, surface in g["spans"]:
            assert typ in TYPES
            assert 0 <= start < end <= len(text)
            assert text[start:end] == surface, (note["id"], start, end, surface)
            assert surface == surface.strip() and "\n" not in surface


def test_spans_do_not_overlap(written: tuple[list[dict], list[dict]]) -> None:
    _, gold = written
    for g in gold:
        spans = sorted(g["spans"])
        for (_, e1, _, _), (s2, _, _, _) in itertools.pairwise(spans):
            assert e1 <= s2, g["id"]


def test_every_type_appears(written: tuple[list[dict], list[dict]]) -> None:
    _, gold = written
    seen = {span[2] for g in gold for span in g["spans"]}
    assert seen == set(TYPES)


def test_half_of_the_notes_carry_known(written: tuple[list[dict], list[dict]]) -> None:
    notes, _ = written
    with_known = [x for x in notes if x["known"]]
    assert len(with_known) == N // 2
    for note in with_known:
        known = note["known"]
        assert set(known) == set(KNOWN_KEYS)
        assert all(known[k] and all(isinstance(v, str) and v for v in known[k]) for k in KNOWN_KEYS)
        assert all(re.fullmatch(r"\d{13}", m) and matricule_valid(m) for m in known["national_ids"])
        assert all(re.fullmatch(r"\d{4}-\d{2}-\d{2}", d) for d in known["birth_dates"])
        assert known["national_ids"][0][:8] == known["birth_dates"][0].replace("-", "")


def test_check_digits_of_written_identifiers(written: tuple[list[dict], list[dict]]) -> None:
    _, gold = written
    for g in gold:
        for _, _, typ, surface in g["spans"]:
            if typ == "MATRICULE":
                assert matricule_valid(surface), surface
            elif typ == "IBAN":
                assert iban_valid(surface), surface


def test_check_digit_algorithms_on_public_examples() -> None:
    assert luhn_digit("7992739871") == 3
    assert verhoeff_digit("236") == 3 and verhoeff_valid("2363") and not verhoeff_valid("2364")
    assert iban_valid("GB82 WEST 1234 5698 7654 32") and not iban_valid("GB82 WEST 1234 5698 7654 33")
