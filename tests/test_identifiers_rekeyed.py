"""Identifiers.rekeyed equals deriving the identifiers again from the re-keyed identity frame."""

import datetime as dt

import polars as pl
import pytest
from faker import Faker

import anonymisation.leakscan as leakscan
from anonymisation.leakscan import Identifiers, identifiers_from_patients


def _identity(n: int) -> pl.DataFrame:
    fake = Faker("fr_FR")
    Faker.seed(7)
    rows = []
    for i in range(n):
        rows.append({
            "person_id": None if i == 3 else 1000 + i,
            "patient_id": f"P{i:06d}",
            "first_name": fake.first_name() if i % 7 else "Jean-Paul",
            "last_name": fake.last_name(),
            "other_names": "Marie Dupont | Mimi" if i % 5 == 0 else None,
            "birth_date": dt.date(1930, 1, 1) + dt.timedelta(days=(i * 97) % 30000),
            "address": fake.street_address(),
            "phone": "+352 621 " + f"{i:06d}"[:3] + " " + f"{i:06d}"[3:],
            "matricule": f"19{i % 90 + 10:02d}0101{i:05d}",
            "email": fake.email(),
            "other_ids": "999-12-3456 | X123456X" if i % 11 == 0 else None,
        })
    return pl.DataFrame(rows)


def _sorted(ids: Identifiers) -> tuple[pl.DataFrame, ...]:
    return tuple(df.sort(df.columns) for df in (ids.everywhere, ids.own, ids.births, ids.birth_keys))


@pytest.mark.parametrize("chunk", [None, 17])
def test_rekeyed_equals_a_new_derivation(monkeypatch: pytest.MonkeyPatch, chunk: int | None) -> None:
    if chunk is not None:
        monkeypatch.setattr(leakscan, "IDENTIFIER_CHUNK", chunk)
    identity = _identity(60)
    # a person without a new id (dropped), the others with one
    mapping = pl.DataFrame({"person_id": [1000 + i for i in range(60) if i != 8],
                            "new_person_id": [5_000_000 + 31 * i for i in range(60) if i != 8]})
    direct = identifiers_from_patients(
        identity.join(mapping, on="person_id", how="left").with_columns(person_id=pl.col("new_person_id"))
        .drop("new_person_id"))
    rekeyed = identifiers_from_patients(identity).rekeyed(mapping)
    assert rekeyed.own.height > 0 and rekeyed.births.height > 0
    for a, b in zip(_sorted(rekeyed), _sorted(direct), strict=True):
        assert a.equals(b)
    assert rekeyed.allowed_emails == direct.allowed_emails
    assert 1008 not in rekeyed.own["person_id"].to_list()
