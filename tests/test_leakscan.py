from __future__ import annotations

import polars as pl

from anonymisation.leakscan import identifiers_from_patients, scan_table

PATIENTS = pl.DataFrame({
    "patient_id": ["A0000001"], "matricule": ["1980010112345"], "last_name": ["Müller"], "first_name": ["Anne"],
    "phone": ["+352 621 123 456"], "email": ["anne.muller@example.lu"], "address": ["12, rue de la Gare"],
})


def test_finds_identifiers_in_normalised_forms() -> None:
    ids = identifiers_from_patients(PATIENTS)
    df = pl.DataFrame({
        "a": ["MULLER", "appel au 621 12 34 56? non: 621 123 456", "12 Rue de la gare", "vu Anne MÜLLER hier"],
        "b": ["a0000001", None, "ANNE.MULLER@EXAMPLE.LU", "né 1980 0101 123 45"],
    })
    assert scan_table(df, ids) == {"name": 1, "full_name": 2, "phone": 1, "address": 1, "local_id": 1, "email": 1, "matricule": 1}


def test_no_false_positive_on_pseudonyms_codes_and_place_names() -> None:
    ids = identifiers_from_patients(PATIENTS.with_columns(last_name=pl.lit("Biwer")))
    df = pl.DataFrame({
        "token": ["ab621123456cd", "50ca9c1980010112345e"],  # hex pseudonyms hold digit runs inside letters
        "city": ["Biwer", "Wiltz"],  # a surname that is also a commune is not a leak in a location column
        "code": ["E11.9", "M"],
        "n": [1, 2],
    })
    assert scan_table(df, ids) == {}


def test_eszett_and_capitals_match() -> None:
    ids = identifiers_from_patients(pl.DataFrame({"last_name": ["Spieß"], "first_name": ["Rotraud"]}))
    assert scan_table(pl.DataFrame({"t": ["vu SPIESS Rotraud hier", "Rotraud Spieß", "rien"]}), ids) == {"full_name": 2}


def test_place_columns_of_location_are_not_searched_for_names() -> None:
    # a town abroad may be a patient's surname (Metz): the location's place columns hold public places
    ids = identifiers_from_patients(pl.DataFrame({"last_name": ["Thionville"], "first_name": ["Anne"]}))
    loc = pl.DataFrame({"city": ["Thionville"], "location_source_value": ["Thionville"]})
    assert scan_table(loc, ids, "location") == {"name": 1}  # only the free column
    assert scan_table(loc.select("city"), ids, "observation") == {"name": 1}  # elsewhere a name is a name
