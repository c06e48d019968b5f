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


@pytest.mark.parametrize("drop", [False, True])
def test_rekeyed_index_equals_its_own_index(drop: bool) -> None:
    """When every person keeps a (new) id, the re-keyed identifiers share the key tables of the index
    already built for the old ids instead of building them again: the index and what a scan finds are
    those of a fresh derivation. When a person loses its id, the index is built anew."""
    identity = _identity(60).filter(pl.col("person_id").is_not_null())
    kept = [i for i in range(60) if i != 3 and not (drop and i == 8)]
    mapping = pl.DataFrame({"person_id": [1000 + i for i in kept], "new_person_id": [5_000_000 + 31 * i for i in kept]})
    old = identifiers_from_patients(identity)
    old.index  # noqa: B018 -- built first, as the pseudo pass masks free text before it re-keys
    rekeyed = old.rekeyed(mapping)
    assert (rekeyed._same_keys is old) is not drop
    fresh = identifiers_from_patients(
        identity.join(mapping, on="person_id", how="left").with_columns(person_id=pl.col("new_person_id"))
        .drop("new_person_id"))  # a person without a new id keeps its everywhere keys, loses its own
    a, b = rekeyed.index, fresh.index
    for name in ("every", "own_keys", "own", "births"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.sort(x.columns).equals(y.sort(y.columns)), name
    assert a.first.sort().equals(b.first.sort()) and a.max_tokens == b.max_tokens
    person = 5_000_000 + 31 * 10
    row = identity.filter(pl.col("person_id") == 1010).row(0, named=True)
    table = pl.DataFrame({
        "person_id": [person, person, 5_000_000 + 31 * 11],
        "observation_source_value": [f"vu par {row['first_name']} {row['last_name']}",
                                     row["birth_date"].strftime("%d/%m/%Y"), row["last_name"]],
    })
    assert leakscan.scan_table(table, rekeyed) == leakscan.scan_table(table, fresh)
    assert sum(leakscan.scan_table(table, rekeyed).values()) >= 2
