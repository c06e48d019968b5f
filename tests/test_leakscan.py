"""The leak scan: every known identifier of the identity zone, as tokens inside any text, categorical
or date column; identifying-by-shape ones everywhere, names, birth dates and addresses in their own
person's rows only."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anonymisation.leakscan import (
    LeakScan,
    birth_date_images,
    identifiers_from_patients,
    mask_identifiers,
    scan_table,
    scan_text,
)

MULLER, DUPONT, PETIT = 1, 2, 3
PATIENTS = pl.DataFrame({
    "person_id": [MULLER, DUPONT, PETIT],
    "patient_id": ["A0000001", "A0000002", "A0000003"],
    "matricule": ["1980010112302", "1975060304559", None],
    "birth_date": [dt.date(1980, 1, 1), dt.date(1975, 6, 3), dt.date(1990, 2, 2)],
    "last_name": ["Müller", "Dupont", "Petit"],
    "first_name": ["Anne", "Paul", "Léa"],
    "phone": ["+352 621 123 456", "+352 44 12 34", "06 12 34 56 78"],
    "email": ["anne.muller@example.lu", None, None],
    "address": ["12, rue de la Gare", "3, Rue Émile Mayrisch", "7, Grand-Rue"],
    "other_names": ["Anne Weber", None, None],
})
IDS = identifiers_from_patients(PATIENTS)


def cells(person: int | None, *texts: str) -> pl.DataFrame:
    """One text cell per row, all in ``person``'s rows (None: a table without persons)."""
    df = pl.DataFrame({"value_as_string": list(texts)})
    return df if person is None else df.with_columns(person_id=pl.lit(person, pl.Int64))


def test_a_name_is_caught_in_its_own_persons_row_in_any_spelling() -> None:
    assert scan_table(cells(MULLER, "Muller est venue", "MUELLER", "Müller", "vue par mme muller."), IDS) == {"name": 4}
    assert scan_table(cells(MULLER, "Weber"), IDS) == {"name": 1}  # an other name (maiden name)
    # the same surname in another person's row is no leak (a common surname is shared by thousands)
    assert scan_table(cells(DUPONT, "Muller est venue", "MÜLLER"), IDS) == {}
    # nor is a common word that happens to be somebody's name elsewhere
    assert scan_table(cells(MULLER, "un petit nodule", "Paul"), IDS) == {}
    assert scan_table(cells(PETIT, "un petit nodule"), IDS) == {"name": 1}  # ... but Petit's own row: it may be her


def test_a_surname_used_as_a_medical_eponym_in_its_own_persons_row_is_no_leak() -> None:
    ids = identifiers_from_patients(pl.DataFrame({"person_id": [1], "last_name": ["Wagner"], "first_name": ["Marie"]}))
    eponyms = ["plaie classée grade 2 de la classification de Wagner", "grade Wagner 2", "Wagner classification",
               "Wagner's disease"]
    assert scan_table(cells(1, *eponyms), ids) == {}
    assert scan_table(cells(1, "Mme Wagner vue ce jour (classification de Wagner)", "Marie Wagner"), ids) == {
        "name": 2, "full_name": 1}


def test_full_names_are_caught_everywhere_in_either_order() -> None:
    assert scan_table(cells(DUPONT, "vu Anne MÜLLER hier", "Mueller, Anne", "Anne Weber"), IDS) == {"full_name": 3}
    assert scan_table(cells(None, "Paul Dupont"), IDS) == {"full_name": 1}


def test_a_birth_date_is_caught_in_its_own_persons_row_in_any_format() -> None:
    forms = ["né le 1980-01-01", "01/01/1980", "01.01.80", "1.1.1980", "le 1er janvier 1980", "January 1, 1980",
             "19800101", "geb. 1. Januar 1980"]
    assert scan_table(cells(MULLER, *forms), IDS) == {"birth_date": len(forms)}
    assert scan_table(cells(DUPONT, *forms), IDS) == {}  # a birth date shared by thousands: not in another's row
    assert scan_table(cells(MULLER, "1980", "01/02/1980", "2001-01-01"), IDS) == {}


def test_a_month_first_birth_date_counts_only_where_no_day_first_date_reads_the_same() -> None:
    # Dupont, born 3 June 1975: "06/03/1975" is the 6th of March in a European note, no leak
    assert scan_table(cells(DUPONT, "revu le 06/03/1975", "né le 03/06/1975"), IDS) == {"birth_date": 1}
    ids = identifiers_from_patients(pl.DataFrame({"person_id": [9], "birth_date": [dt.date(1980, 7, 24)]}))
    assert scan_table(cells(9, "DOB 07/24/1980", "24.07.1980"), ids) == {"birth_date": 2}


def test_a_date_column_equal_to_the_birth_date_is_caught_in_its_own_persons_row() -> None:
    df = pl.DataFrame({
        "person_id": [MULLER, DUPONT, MULLER],
        "visit_start_date": [dt.date(1980, 1, 1), dt.date(1980, 1, 1), dt.date(1980, 1, 2)],
        "visit_start_datetime": [dt.datetime(1980, 1, 1, 8, 30), None, None],
    })
    assert scan_table(df, IDS) == {"birth_date": 2}
    assert scan_table(df.drop("person_id"), IDS) == {}  # without persons, a date is just a date


def test_phones_in_any_spacing_with_or_without_country_code() -> None:
    forms = ["appel au 621 12 34 56", "tel +352621123456", "00352 621 123 456", "621-123-456", "(+352) 621.123.456"]
    assert scan_table(cells(DUPONT, *forms), IDS) == {"phone": len(forms)}  # 8+ digits: anyone's row
    assert scan_table(cells(MULLER, "0033 6 12 34 56 78", "+33 6 12 34 56 78", "06.12.34.56.78"), IDS) == {"phone": 3}
    # a 6-digit landline only as the person's own number
    assert scan_table(cells(DUPONT, "rappeler le 44 12 34"), IDS) == {"phone": 1}
    assert scan_table(cells(MULLER, "rappeler le 44 12 34", "4412.34"), IDS) == {}
    # any international number is a phone by its shape
    assert scan_table(cells(None, "joindre le +49 171 2345678"), IDS) == {"phone": 1}
    assert scan_table(cells(None, "123456.78", "12.5", "dose 621"), IDS) == {}


def test_matricules_known_or_by_their_check_digits() -> None:
    assert scan_table(cells(DUPONT, "matricule 1980 0101 123 02", "1980010112302"), IDS) == {"matricule": 2}
    # somebody else's (valid check digits): a matricule by its shape
    assert scan_table(cells(None, "1990 0202 007 14"), IDS) == {"matricule": 1}
    assert scan_table(cells(None, "1990 0202 007 15", "2024050112000"), IDS) == {}  # check digits do not hold


def test_ibans_by_their_shape() -> None:
    assert scan_table(cells(None, "virement sur LU28 0019 4006 4475 0000 svp", "FR7630006000011234567890189"), IDS) == {"iban": 2}
    assert scan_table(cells(None, "LU28 0019 4006 4475 0001", "ee12a0b3c4d5e6f7a8b9"), IDS) == {}


def test_emails_inside_sentences() -> None:
    assert scan_table(cells(None, "écrire à Anne.Muller@Example.lu svp", "ou à x.y@z.org"), IDS) == {"email": 2, "full_name": 1}
    allowed = identifiers_from_patients(PATIENTS, allowed_emails={"x.y@z.org", "anne.muller@example.lu"})
    # a publisher's contact may be named; a patient's e-mail never
    assert scan_table(cells(None, "ou à x.y@z.org"), allowed) == {}
    assert scan_table(cells(None, "anne.muller@example.lu"), allowed) == {"email": 1, "full_name": 1}


def test_the_street_line_in_its_own_persons_row_in_any_case_or_accents() -> None:
    assert scan_table(cells(MULLER, "habite 12 RUE DE LA GARE", "12 rue de la gare, Mersch"), IDS) == {"address": 2}
    assert scan_table(cells(DUPONT, "3 rue emile mayrisch", "3, Rue Émile Mayrisch"), IDS) == {"address": 2}
    assert scan_table(cells(DUPONT, "12 rue de la Gare"), IDS) == {}  # another person's street


def test_a_local_patient_id_inside_text() -> None:
    assert scan_table(cells(DUPONT, "dossier A0000001 transmis", "a0000001"), IDS) == {"local_id": 2}
    assert scan_table(cells(None, "xa0000001", "A00000012"), IDS) == {}  # tokens, not substrings


def test_no_false_positive_on_pseudonyms_codes_and_numbers() -> None:
    df = pl.DataFrame({
        "person_id": [MULLER, DUPONT, PETIT],
        "token": ["ab621123456cd", "50ca9c1980010112302e", "a0000001b"],  # hex pseudonyms hold digit runs
        "code": ["E11.9", "M", "1980"],
        "value": ["44.0", "0.84", "1"],
        "n": [1, 2, 3],
    })
    assert scan_table(df, IDS) == {}


def test_a_surname_that_is_a_commune_is_not_looked_for_alone() -> None:
    ids = identifiers_from_patients(pl.DataFrame({"person_id": [1], "last_name": ["Biwer"], "first_name": ["Anne"]}))
    assert scan_table(cells(1, "domicile: Biwer", "Anne Biwer"), ids) == {"name": 1, "full_name": 1}


def test_categorical_columns_are_searched() -> None:
    df = cells(MULLER, "Muller", "x").with_columns(pl.col("value_as_string").cast(pl.Categorical))
    assert scan_table(df, IDS) == {"name": 1}


def test_place_columns_of_location_are_not_searched_for_names() -> None:
    ids = identifiers_from_patients(pl.DataFrame({"person_id": [1], "last_name": ["Thionville"], "first_name": ["Anne"]}))
    loc = pl.DataFrame({"city": ["Anne Thionville"], "location_source_value": ["Anne Thionville"]})
    assert scan_table(loc, ids, "location") == {"full_name": 1}  # only the free column
    assert scan_table(loc.select("city"), ids, "observation") == {"full_name": 1}  # elsewhere a name is a name


def test_eszett_and_capitals_match() -> None:
    ids = identifiers_from_patients(pl.DataFrame({"person_id": [1], "last_name": ["Spieß"], "first_name": ["Rotraud"]}))
    assert scan_table(cells(2, "vu SPIESS Rotraud hier", "Rotraud Spieß", "rien"), ids) == {"full_name": 2}


def test_text_files_search_what_is_identifying_everywhere() -> None:
    text = "# Release\n\nContact: x.y@z.org\nA note on Paul Dupont.\nBorn 1980-01-01 (no person here)\nMuller\n"
    assert scan_text(text, IDS) == {"email": 1, "full_name": 1}
    allowed = identifiers_from_patients(PATIENTS, allowed_emails={"x.y@z.org"})
    assert scan_text(text, allowed) == {"full_name": 1}
    assert scan_text('{"phone": "+352 621 123 456", "m": "1980 0101 123 02"}', IDS) == {"phone": 1, "matricule": 1}


def test_masking_uses_the_same_matching() -> None:
    df = pl.DataFrame({"person_id": [MULLER, DUPONT, DUPONT, MULLER],
                       "value_as_string": ["Muller est venue", "Muller est venue", "tel 621 12 34 56", "E11"]})
    out, n = mask_identifiers(df, ["value_as_string"], IDS)
    assert n == 2
    assert out["value_as_string"].to_list() == [None, "Muller est venue", None, "E11"]


def test_scan_accumulates_by_table_and_explains_birth_date_coincidences() -> None:
    scan = LeakScan(IDS)
    scan.table("visit_occurrence", pl.DataFrame({"person_id": [MULLER, DUPONT],
                                                  "visit_start_date": [dt.date(1980, 1, 1), dt.date(1975, 6, 3)]}))
    scan.table("observation", cells(MULLER, "Paul Dupont"))
    scan.text("README.md", "nothing")
    assert scan.hits() == {"visit_occurrence": {"birth_date": 2}, "observation": {"full_name": 1}}
    assert sorted(scan.birth_date_persons()) == [MULLER, DUPONT]
    # Muller's date is the shifted image of one of her own dates: a coincidence, not a leak
    assert scan.explain([MULLER]) == 1
    assert scan.hits() == {"visit_occurrence": {"birth_date": 1}, "observation": {"full_name": 1}}


def test_a_birth_date_written_in_a_note_is_explained_like_a_date_cell() -> None:
    # a newborn's discharge date, shifted with the note, can fall on the true birth date: the pipeline
    # explains it by the person's own shifted dates, as for a Date cell; unexplained, it stays a leak
    scan = LeakScan(IDS)
    scan.table("note", pl.DataFrame({"person_id": [MULLER, MULLER, DUPONT],
                                     "note_text": ["date de sortie : 1er janvier 1980", "né le 01/01/1980", "RAS"]}))
    assert scan.hits() == {"note": {"birth_date": 2}}
    assert scan.birth_date_persons() == [MULLER]
    assert scan.explain([DUPONT]) == 0 and scan.hits() == {"note": {"birth_date": 2}}
    assert scan.explain([MULLER]) == 2
    assert scan.hits() == {}


def test_birth_date_images() -> None:
    births = pl.DataFrame({"person_id": [1, 2, 3], "birth_date": [dt.date(1980, 1, 1), dt.date(1975, 6, 3), dt.date(1990, 2, 1)]})
    dates = pl.DataFrame({"person_id": [1, 2, 3, 3], "date": [dt.date(1980, 1, 11), dt.date(1975, 6, 3),
                                                              dt.date(1990, 2, 20), None]})
    shifts = pl.DataFrame({"person_id": [1, 2, 3], "shift": [-10, 5, 3]})
    assert birth_date_images(dates, shifts, births) == {1}
    assert birth_date_images(dates, shifts, births, "month") == {1, 3}
    assert birth_date_images(dates, None, births) == {2}


def test_a_surname_that_is_a_function_word_counts_only_in_a_whole_name() -> None:
    sa = pl.DataFrame({"person_id": [7], "patient_id": ["A7"], "matricule": [None], "birth_date": [dt.date(1950, 1, 1)],
                       "last_name": ["Sá"], "first_name": ["André"], "phone": [None], "email": [None],
                       "address": [None], "other_names": [None]}, schema_overrides={"matricule": pl.String,
                       "phone": pl.String, "email": pl.String, "address": pl.String, "other_names": pl.String})
    ids = identifiers_from_patients(sa)
    assert scan_table(cells(7, "Vu avec sa fille.", "sa sœur passe"), ids) == {}  # found at 100,000 patients
    assert scan_table(cells(7, "vu André Sá ce matin"), ids).get("full_name") == 1
    assert scan_table(cells(7, "André est venu"), ids) == {"name": 1}


def test_escaped_accented_name_in_a_published_json_file_is_found(tmp_path: Path) -> None:
    """json.dumps escapes é as \\u00e9: a manifest or metadata file holding an accented patient name must
    still be caught by the scan of the release's text files."""
    from pipelines.publish import scan_text_files

    patients = pl.DataFrame({"person_id": [1], "first_name": ["Émilie"], "last_name": ["Rémy"],
                             "birth_date": [dt.date(2001, 7, 1)]})
    ids = identifiers_from_patients(patients)
    (tmp_path / "manifest.json").write_text(json.dumps({"title": "Cohort of RÉMY, Émilie"}) + "\n")
    (tmp_path / "other.json").write_text(json.dumps({"title": "Cohort of diabetics"}) + "\n")
    assert "\\u00c9" in (tmp_path / "manifest.json").read_text()
    assert scan_text_files(tmp_path, ids) == {"manifest.json": {"full_name": 1}}


def test_keys_derived_chunk_by_chunk_are_those_derived_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A large identity frame is derived a chunk of persons at a time (memory): the keys, their count,
    the allowed e-mails and what a scan finds are those of one derivation, with a person of two sites
    (two rows) and rows without a person among them."""
    import anonymisation.leakscan as leakscan

    base = PATIENTS.with_columns(pl.col("person_id").cast(pl.Int64))
    frames = [base.with_columns(person_id=pl.col("person_id") + 10 * i, birth_date=pl.col("birth_date") + dt.timedelta(days=i),
                                patient_id=pl.col("patient_id") + f"-{i}") for i in range(40)]
    frames.append(base.head(1))  # the same person at a second site
    frames.append(base.with_columns(person_id=pl.lit(None, pl.Int64)).head(2))
    patients = pl.concat(frames)
    allowed = {"x.y@z.org", "anne.muller@example.lu"}
    whole = identifiers_from_patients(patients, allowed_emails=allowed)
    monkeypatch.setattr(leakscan, "IDENTIFIER_CHUNK", 7)
    chunked = identifiers_from_patients(patients, allowed_emails=allowed)
    for name in ("everywhere", "own", "births", "birth_keys"):
        a, b = getattr(whole, name), getattr(chunked, name)
        assert a.height > 0
        assert a.sort(a.columns).equals(b.sort(b.columns)), name
    assert chunked.count() == whole.count() > 0
    assert chunked.allowed_emails == whole.allowed_emails == frozenset({"x.y@z.org"})
    table = pl.DataFrame({"person_id": [21, 21, 3, 5], "value_as_string": [
        "Anne Müller vue le 02/01/1980", "tel 621 123 456", "Léa Petit, 7 Grand-Rue", "rien"]})
    assert scan_table(table, chunked) == scan_table(table, whole)
    assert scan_table(table, whole)


def test_sorted_lookups_equal_hash_lookups() -> None:
    """The binary-search lookups of the scan (_in_sorted, _rows_of) find what is_in and a join find:
    repeated keys, keys absent, nulls among the values, accented text, empty inputs."""
    import random

    from anonymisation.leakscan import _in_sorted, _rows_of

    rng = random.Random(7)
    letters = "abzéÉß 09"
    words = ["".join(rng.choice(letters) for _ in range(rng.randint(1, 4))) for _ in range(400)]
    table = pl.DataFrame({"key": [rng.choice(words) for _ in range(1500)],
                          "person_id": [rng.randint(1, 50) for _ in range(1500)]}).sort("key", "person_id")
    values = pl.Series("v", [*rng.sample(words, 200), "absent", None], dtype=pl.String)
    keys = table["key"].unique().sort()
    assert _in_sorted(values, keys).to_list() == values.is_in(keys.implode()).fill_null(False).to_list()
    assert not _in_sorted(values, keys.clear()).any()
    found = _rows_of(table, values, "key")
    expect = table.filter(pl.col("key").is_in(values.drop_nulls().implode()))
    assert found.sort(pl.all()).equals(expect.sort(pl.all()))
    by_person = table.sort("person_id")
    persons = pl.Series([3, 3, 17, 99], dtype=pl.Int64)
    assert _rows_of(by_person, persons, "person_id").sort(pl.all()).equals(
        by_person.filter(pl.col("person_id").is_in(persons.implode())).sort(pl.all()))
    assert _rows_of(table, pl.Series([], dtype=pl.String), "key").is_empty()


def _phone_forms_reference(raw: str) -> tuple[str, set[str]]:
    """phone_forms as first written (a character loop and a generator), to pin the faster one to."""
    from anonymisation.leakscan import CALLING_CODES, TRUNK_COUNTRIES

    s = raw.strip()
    digits = "".join(ch for ch in s if ch.isdigit())
    if s.startswith("+") or digits.startswith("00"):
        rest = digits[2:] if not s.startswith("+") else digits
        cc = next((rest[:n] for n in (3, 2, 1) if rest[:n] in CALLING_CODES), "")
        national = rest[len(cc):]
        if national.startswith("0"):
            national = national[1:]
        codes: tuple[str, ...] = (cc,) if cc else ()
        trunk = bool(cc) and cc != "352"
    elif digits.startswith("0"):
        national, codes, trunk = digits[1:], TRUNK_COUNTRIES, True
    else:
        national, codes, trunk = digits, ("352",), False
    forms = {national} | {c + national for c in codes} | {"00" + c + national for c in codes}
    if trunk:
        forms.add("0" + national)
    return national, forms


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.sampled_from("0123456789+ -()./x\u00b2\u0663\uff15\u096a\u00a0a"), max_size=24))
def test_phone_forms_and_digits_equal_the_character_loop(raw: str) -> None:
    from anonymisation.leakscan import _digits_of, phone_forms

    assert _digits_of(raw) == "".join(ch for ch in raw if ch.isdigit())
    assert phone_forms(raw) == _phone_forms_reference(raw)
    for fixed in ("+352 621 123 456", "0033 6 12 34 56 78", "06 12 34 56 78", "+1 (555) 010-9999", "+", "00", ""):
        assert phone_forms(fixed) == _phone_forms_reference(fixed)


@pytest.mark.parametrize("colliding", [False, True])
def test_key_lookup_by_hash_equals_a_join(monkeypatch: pytest.MonkeyPatch, colliding: bool) -> None:
    """The index finds a value's keys by their hashes, then compares the keys themselves: the pairs are
    exactly those of a join on the key, also when many keys share a hash (a hash of the length here)."""
    import random

    from anonymisation.leakscan import _Hashed, _matches

    if colliding:
        monkeypatch.setattr(pl.Series, "hash", lambda self, seed=0, **_: self.str.len_bytes().cast(pl.UInt64))
    rng = random.Random(5)
    keys = sorted({"".join(rng.choice("abcdé ") for _ in range(rng.randint(1, 6))) for _ in range(3000)})
    table = pl.DataFrame({"key": keys + keys[::7], "kind": ["name"] * len(keys) + ["local_id"] * len(keys[::7])}).sort("key")
    probes = [rng.choice(keys) for _ in range(2000)] + ["absent key", "zz", ""]
    found = pl.DataFrame({"vid": range(len(probes)), "key": probes}, schema={"vid": pl.Int64, "key": pl.String})
    got = _matches(found, table, _Hashed.of(table))
    expected = found.join(table, on="key")
    assert got.columns == expected.columns and got.schema == expected.schema
    assert got.sort(got.columns).equals(expected.sort(expected.columns))
    assert expected.height > 2000  # keys in two kinds give two rows
    empty = _matches(found.clear(), table, _Hashed.of(table))
    assert empty.height == 0 and empty.columns == expected.columns
    assert _matches(found, table.clear(), _Hashed.of(table.clear())).height == 0
