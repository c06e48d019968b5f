"""Pseudonymisation on a small generated extract: determinism, keys, opt-outs, dates, identifiers."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import polars as pl
import pytest

from anonymisation.leakscan import identifiers_from_patients, scan_table
from anonymisation.pseudonym import offset_days
from anonymisation.pseudonymise import PseudoResult, identity_frame, pseudonymise_site, pseudonyms
from generator.hospital import SiteSpec, generate
from pipelines.leaks import as_pseudonymous
from schemas.policy import PrivacyPolicy
from transforms.adapters.hospital_csv import hospital_to_staging
from transforms.ingest import ingest_site
from transforms.omop import harmonise_site
from transforms.vocabulary import load_vocabulary

KEY_A = bytes.fromhex("11" * 32)


def assert_one_person_gone_everywhere(res_all: PseudoResult, res: PseudoResult) -> None:
    gone = set(res_all.tables["person"]["person_id"]) - set(res.tables["person"]["person_id"])
    assert len(gone) == 1
    for t, df in res.tables.items():
        if "person_id" in df.columns:
            assert not df["person_id"].is_in(sorted(gone)).any(), t
KEY_B = bytes.fromhex("22" * 32)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, pl.DataFrame], pl.DataFrame]:
    out = tmp_path_factory.mktemp("gen")
    generate(out, 120, [SiteSpec("hospital-a")], seed=3, dirty=0.0)
    raw = ingest_site("hospital-a", out / "hospital-a", today=dt.date(2026, 1, 1))
    stg = hospital_to_staging({n: e.table for n, e in raw.entities.items()})
    omop = harmonise_site("hospital-a", stg, load_vocabulary(), dt.date(2026, 1, 1)).tables
    return omop, identity_frame(stg["persons"], omop["person"])


def _bytes(df: pl.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.write_parquet(buf)
    return buf.getvalue()


def test_same_key_same_bytes_other_key_unlinkable(site: tuple[dict[str, pl.DataFrame], pl.DataFrame]) -> None:
    omop, ident = site
    a1 = pseudonymise_site("hospital-a", omop, ident, KEY_A, PrivacyPolicy())
    a2 = pseudonymise_site("hospital-a", omop, ident, KEY_A, PrivacyPolicy())
    b = pseudonymise_site("hospital-a", omop, ident, KEY_B, PrivacyPolicy())
    for t in a1.tables:
        assert _bytes(a1.tables[t]) == _bytes(a2.tables[t]), t
    assert not set(a1.tables["person"]["person_id"]) & set(b.tables["person"]["person_id"])
    assert not set(a1.tables["visit_occurrence"]["visit_occurrence_id"]) & set(b.tables["visit_occurrence"]["visit_occurrence_id"])


def test_dates_shift_by_one_nonzero_offset_per_person(site: tuple[dict[str, pl.DataFrame], pl.DataFrame]) -> None:
    omop, ident = site
    res = pseudonymise_site("hospital-a", omop, ident, KEY_A, PrivacyPolicy(date_shift_days=30))
    # match visits through their order within each person (ids are re-keyed)
    before = omop["visit_occurrence"].sort("person_id", "visit_start_date").select("person_id", "visit_start_date", "visit_end_date")
    after = res.tables["visit_occurrence"].sort("person_id", "visit_start_date")
    assert before.height == after.height
    lengths_before = sorted((before["visit_end_date"] - before["visit_start_date"]).to_list())
    lengths_after = sorted((after["visit_end_date"] - after["visit_start_date"]).to_list())
    assert lengths_before == lengths_after  # intervals within a person are exact
    # every date of a person moves by that person's offset, derived from the key and the identity
    ident2 = ident.with_columns(identity=pl.when(pl.col("matricule").is_not_null()).then(pl.lit("nat:LU:") + pl.col("matricule"))
                                .otherwise(pl.lit("site:hospital-a:") + pl.col("patient_id")))
    first_before = before.group_by("person_id").agg(pl.col("visit_start_date").min()).join(ident2, on="person_id")
    first_after = dict(after.group_by("person_id").agg(pl.col("visit_start_date").min()).iter_rows())
    from anonymisation.pseudonym import id63

    checked = 0
    for row in first_before.iter_rows(named=True):
        off = offset_days(KEY_A, row["identity"], 30)
        assert off != 0 and -30 <= off <= 30
        new_id = id63(KEY_A, "person", row["identity"])
        assert first_after[new_id] == row["visit_start_date"] + dt.timedelta(days=off)
        checked += 1
    assert checked > 50
    assert res.tables["person"]["month_of_birth"].null_count() == res.tables["person"].height
    assert offset_days(KEY_A, "x", 30) != 0


def test_opted_out_patient_is_absent_everywhere(site: tuple[dict[str, pl.DataFrame], pl.DataFrame]) -> None:
    omop, ident = site
    person = ident.filter(pl.col("matricule").is_not_null()).row(0, named=True)
    res_all = pseudonymise_site("hospital-a", omop, ident, KEY_A, PrivacyPolicy())
    res = pseudonymise_site("hospital-a", omop, ident, KEY_A, PrivacyPolicy(), {person["matricule"]})
    assert res.opted_out_persons == 1
    assert_one_person_gone_everywhere(res_all, res)
    acc = res.accounting.filter(pl.col("category") == "opted_out")
    assert acc.filter(pl.col("table") == "person")["rows"].item() == 1
    assert "matricule" not in str(res.accounting.to_dicts())


def test_no_direct_identifier_in_pseudonymised_tables(site: tuple[dict[str, pl.DataFrame], pl.DataFrame]) -> None:
    omop, ident = site
    res = pseudonymise_site("hospital-a", omop, ident, KEY_A, PrivacyPolicy())
    pmap = pseudonyms(ident, "hospital-a", KEY_A, PrivacyPolicy().date_shift_days)
    assert set(pmap["pseudo_person_id"]) >= set(res.tables["person"]["person_id"])
    # keyed as the pseudo zone holds persons: each person's names, birth date and street in their rows
    pseudo_ids = identifiers_from_patients(as_pseudonymous(ident, pmap))
    for t, df in res.tables.items():
        assert scan_table(df, pseudo_ids, t) == {}, t
    ids = identifiers_from_patients(ident)
    assert res.tables["location"]["address_1"].null_count() == res.tables["location"].height
    # the identifiable zone itself does hold identifiers (the scan is not blind)
    assert scan_table(omop["visit_occurrence"], ids) or scan_table(omop["person"], ids)


def test_missing_opt_out_registry_is_a_clear_error(tmp_path: Path) -> None:
    from anonymisation.pseudonymise import read_opt_outs

    with pytest.raises(FileNotFoundError, match="opt_out_registry"):
        read_opt_outs(str(tmp_path / "nope.txt"))
    f = tmp_path / "optout.txt"
    f.write_text("# objections\n1980 0101 123 45\n\n")
    assert read_opt_outs(str(f)).matricules == {"1980010112345"}


def _tiny_site(birth_dates: list[dt.date | None], years: list[int]) -> tuple[dict[str, pl.DataFrame], pl.DataFrame]:
    """A person table (and its identity) of a few persons, nothing else."""
    from schemas import omop as cdm

    n = len(birth_dates)
    person = cdm.conform(pl.DataFrame({
        "person_id": list(range(1, n + 1)), "gender_concept_id": [8532] * n, "year_of_birth": years,
        "race_concept_id": [0] * n, "ethnicity_concept_id": [0] * n,
        "person_source_value": [f"P{i}" for i in range(1, n + 1)],
    }), "person")
    identity = pl.DataFrame({
        "person_id": person["person_id"], "patient_id": person["person_source_value"],
        "matricule": pl.Series([None] * n, dtype=pl.String), "birth_date": pl.Series(birth_dates, dtype=pl.Date),
        **{c: pl.Series([None] * n, dtype=pl.String)
           for c in ("last_name", "first_name", "phone", "email", "address", "other_names")},
    })
    return {"person": person}, identity


def test_year_of_birth_is_the_true_year_not_the_shifted_one(monkeypatch: pytest.MonkeyPatch) -> None:
    import anonymisation.pseudonym as ps

    monkeypatch.setattr(ps, "offset_days", lambda secret, value, max_days: 30)
    omop, ident = _tiny_site([dt.date(1950, 12, 20), None], [1950, 1961])
    res = pseudonymise_site("hospital-a", omop, ident, KEY_A, PrivacyPolicy())
    # shifted by +30 days the first birth date falls in 1951; the published year stays 1950, and a
    # person without a birth date keeps the year of the OMOP person row
    years = res.tables["person"]["year_of_birth"].to_list()
    assert sorted(years, key=lambda y: -1 if y is None else y) == [1950, 1961], years


def test_opt_out_registry_by_matricule_or_site_and_local_id(tmp_path: Path) -> None:
    from anonymisation.pseudonymise import OptOutError, OptOuts, read_opt_outs

    f = tmp_path / "optout.txt"
    f.write_text("# objections\n1980 0101 123 45\n\nhospital-a, P-000123  # by letter\nhospital-b,77\n")
    got = read_opt_outs(str(f), ["hospital-a", "hospital-b"])
    assert got == OptOuts(frozenset({"1980010112345"}), frozenset({("hospital-a", "P-000123"), ("hospital-b", "77")}))
    assert got.at("hospital-a") == {"P-000123"} and got.at("hospital-c") == set()
    for bad, what in (("hospital-a,P1,x\n", "3 fields"), ("# ok\n\nhospital-z,P1\n", "not a configured site"),
                      ("1980 0101 123 45\nhospital-a P1\n", "matricule"), ("hospital-a,\n", "empty")):
        f.write_text(bad)
        with pytest.raises(OptOutError, match=what) as e:
            read_opt_outs(str(f), ["hospital-a", "hospital-b"])
        line = len(bad.splitlines())
        assert f"line {line}:" in str(e.value) and "P1" not in str(e.value) and "hospital-z" not in str(e.value)
    f.write_text("any-site,P1\n")
    assert read_opt_outs(str(f)).local == {("any-site", "P1")}  # sites unknown: any site name


def test_opted_out_by_local_id_is_removed_at_that_site_only(site: tuple[dict[str, pl.DataFrame], pl.DataFrame]) -> None:
    from anonymisation.pseudonymise import OptOuts

    omop, ident = site
    person = ident.filter(pl.col("matricule").is_null()).row(0, named=True)
    res_all = pseudonymise_site("hospital-a", omop, ident, KEY_A, PrivacyPolicy())
    elsewhere = pseudonymise_site("hospital-a", omop, ident, KEY_A, PrivacyPolicy(),
                                  OptOuts(local=frozenset({("hospital-b", person["patient_id"])})))
    assert elsewhere.opted_out_persons == 0
    res = pseudonymise_site("hospital-a", omop, ident, KEY_A, PrivacyPolicy(),
                            OptOuts(local=frozenset({("hospital-a", person["patient_id"])})))
    assert res.opted_out_persons == 1
    assert_one_person_gone_everywhere(res_all, res)
    assert res.accounting.filter((pl.col("category") == "opted_out") & (pl.col("table") == "person"))["rows"].item() == 1


@pytest.mark.parametrize("domain", ["visit_occurrence", "condition_occurrence", "episode", "location"])
def test_colliding_ids_in_any_domain_fail_loudly(site: tuple[dict[str, pl.DataFrame], pl.DataFrame],
                                                 monkeypatch: pytest.MonkeyPatch, domain: str) -> None:
    import anonymisation.pseudonym as ps
    from anonymisation.pseudonym import CollisionError

    real = ps.id63_many

    def colliding(secret: bytes, dom: str, values: list[str]) -> list[int]:
        return [42] * len(values) if dom == domain else real(secret, dom, values)

    monkeypatch.setattr(ps, "id63_many", colliding)
    omop, ident = site
    with pytest.raises(CollisionError, match=f"domain '{domain}'") as e:
        pseudonymise_site("hospital-a", omop, ident, KEY_A, PrivacyPolicy())
    assert "hospital-a:" not in str(e.value) and "42" not in str(e.value)  # never a value


def test_person_ids_colliding_across_person_buckets_fail_loudly(
        site: tuple[dict[str, pl.DataFrame], pl.DataFrame], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Each part's person_map sees only its own persons: two persons in different buckets must be checked too."""
    import anonymisation.pseudonym as ps
    from anonymisation.pseudonym import CollisionError
    from anonymisation.pseudonymise import OptOuts
    from pipelines.buckets import pseudo_in_parts
    from transforms.omop import GLOBAL_TABLES
    from transforms.storage import PartitionWriter, Workspace

    omop, ident = site
    first, last = ident["person_id"].min(), ident["person_id"].max()
    ws = Workspace(tmp_path)
    parts = {t: (df, df.clear()) for t, df in omop.items()}  # part 1: one person, nothing else
    parts["person"] = (omop["person"].filter(pl.col("person_id") != last), omop["person"].filter(pl.col("person_id") == last))
    for t, (p0, p1) in [*parts.items(), ("identity", (ident.filter(pl.col("person_id") != last),
                                                       ident.filter(pl.col("person_id") == last)))]:
        w = ws.identity_writer("hospital-a") if t == "identity" else PartitionWriter(ws.lake("omop", t, "hospital-a"))
        w.write(p0, 0)
        if t not in GLOBAL_TABLES:
            w.write(p1, 1)
        w.commit()
    pair = ident.filter(pl.col("person_id").is_in([first, last])).select(i=ps.identity_expr("hospital-a"))
    names = set(pair["i"].to_list())  # the identities of a person in part 0 and the one in part 1
    real_one, real_many = ps.id63, ps.id63_many

    def one(s: bytes, d: str, v: str) -> int:
        return 42 if d == "person" and v in names else real_one(s, d, v)

    monkeypatch.setattr(ps, "id63", one)
    monkeypatch.setattr(ps, "id63_many", lambda s, d, vs: [one(s, d, v) for v in vs] if d == "person" else real_many(s, d, vs))
    with pytest.raises(CollisionError, match="domain 'person'"):
        pseudo_in_parts("hospital-a", ws, KEY_A, PrivacyPolicy(), OptOuts(), None, lambda m: None)


def test_notes_get_each_patients_birth_date_local_id_and_offset(site: tuple[dict[str, pl.DataFrame], pl.DataFrame]) -> None:
    """The note de-identifier receives, per note, the patient's known identifiers (with the birth date
    and the site's own patient id), the patient's date offset and the birth date to tag."""
    omop, ident = site
    assert omop["note"].height > 0
    calls: list[tuple[list[str], list[dict[str, list[str]]], list[int], list[set[dt.date]]]] = []

    def fake(texts: list[str], known: list[dict[str, list[str]]], offsets: list[int],
             births: list[set[dt.date]]) -> list[str]:
        calls.append((texts, known, offsets, births))
        return ["x"] * len(texts)

    policy = PrivacyPolicy(date_shift_days=40)
    res = pseudonymise_site("hospital-a", omop, ident, KEY_A, policy, note_deid=fake)
    assert res.tables["note"]["note_text"].to_list() == ["x"] * omop["note"].height
    _texts, known, offsets, births = calls[0]
    by_person = {r["person_id"]: r for r in ident.iter_rows(named=True)}
    for person_id, k, off, born in zip(omop["note"]["person_id"].to_list(), known, offsets, births, strict=True):
        p = by_person[person_id]
        assert k["birth_dates"] == [p["birth_date"].isoformat()] and born == {p["birth_date"]}
        assert k["local_ids"] == [p["patient_id"]]
        assert f"{p['first_name']} {p['last_name']}" in k["names"]
        assert 1 <= abs(off) <= 40
