"""Releases built through build_release and written by publish_release, checked on the written files.

The privacy checks (k over the class keys, k^m over the facts, jointly with earlier versions) use
tests/release_check.py, a brute force in plain Python that shares no code with the engine; the
other checks read the Parquet files with DuckDB.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from anonymisation.leakscan import identifiers_from_patients, scan_table
from anonymisation.pseudonymise import identity_frame, pseudonymise_site, pseudonyms
from anonymisation.release import ReleaseResult, build_release
from generator.hospital import SiteSpec, generate
from pipelines.leaks import as_pseudonymous, release_persons, released_identities
from pipelines.publish import approve, publish_release
from schemas.policy import PrivacyPolicy
from tests.release_check import release_check
from transforms.adapters.hospital_csv import hospital_to_staging
from transforms.ingest import ingest_site
from transforms.omop import harmonise_site
from transforms.storage import LazyTables, PartitionWriter
from transforms.vocabulary import Vocabulary, load_vocabulary

KEY = bytes.fromhex("5a" * 32)
TODAY = dt.date(2026, 1, 1)
Sites = dict[str, dict[str, pl.DataFrame]]
IDENTITIES: list[pl.DataFrame] = []  # the fixture's identity rows, keyed by pseudonymous person ids


@pytest.fixture(scope="module")
def vocab() -> Vocabulary:
    return load_vocabulary()


@pytest.fixture(scope="module")
def pseudo(tmp_path_factory: pytest.TempPathFactory, vocab: Vocabulary) -> tuple[Sites, pl.DataFrame]:
    """Two generated hospitals (600 patients, some at both), pseudonymised; a few persons of each
    are given a death 20 days after their last visit, with its true year in the pseudo stage's side
    table (they replace the generator's own deaths, whose gaps the tests do not know)."""
    out = tmp_path_factory.mktemp("gen")
    specs = [SiteSpec("hospital-a"), SiteSpec("hospital-b")]
    generate(out, 600, specs, seed=5, dirty=0.0)
    sites: Sites = {}
    for spec in specs:
        raw = ingest_site(spec.site, out / spec.site, today=TODAY)
        stg = hospital_to_staging({n: e.table for n, e in raw.entities.items()})
        omop = harmonise_site(spec.site, stg, vocab, TODAY).tables
        ident = identity_frame(stg["persons"], omop["person"])
        r = pseudonymise_site(spec.site, omop, ident, KEY, PrivacyPolicy())
        sites[spec.site] = dict(r.tables)
        IDENTITIES.append(as_pseudonymous(ident, pseudonyms(ident, spec.site, KEY, PrivacyPolicy().date_shift_days)))
    visits = pl.concat([t["visit_occurrence"] for t in sites.values()])
    last = visits.group_by("person_id").agg(d=pl.col("visit_end_date").max())
    dead = last.sort("person_id").gather_every(9).with_columns(death_date=pl.col("d") + pl.duration(days=20))
    home = sites["hospital-a"]
    death = dead.select("person_id", "death_date", death_datetime=pl.col("death_date").cast(pl.Datetime("us")),
                        death_type_concept_id=pl.lit(32817, pl.Int32))
    home["death"] = pl.concat([home["death"].clear(), death], how="diagonal_relaxed")
    sites["hospital-b"]["death"] = sites["hospital-b"]["death"].clear()
    return sites, dead.select("person_id", death_year=pl.col("death_date").dt.year().cast(pl.Int32))


def release(sites: Sites, vocab: Vocabulary, policy: PrivacyPolicy, dataspace: Path, dataset: str = "omop-test",
            permit: str | None = None, death_years: pl.DataFrame | None = None) -> tuple[ReleaseResult, Path]:
    """build_release, then publish_release into ``dataspace`` (earlier versions there count)."""
    result = build_release(sites, policy, KEY, vocab.ancestor, vocab.concept, dataset_dir=dataspace / dataset,
                           permit=permit, true_death_years=death_years)
    extra: dict[str, Any] = {"project": "test", "key_fingerprint": "f" * 32, "mode": policy.mode,
                             "policy": policy.model_dump(mode="json"),
                             "risk": {"summary": result.summary, "km": result.report["km"],
                                      "facts": result.report["facts"]}}
    if permit:
        extra["permit"] = permit
    pub = publish_release(dataspace, dataset, result.tables, extra, demo=False,
                          created=dt.datetime(2026, 1, 2, tzinfo=dt.UTC))
    return result, pub.path


def q(version: Path, sql: str) -> list[tuple[Any, ...]]:
    """``sql`` with {table} placeholders read from the version's Parquet files."""
    con = duckdb.connect()
    for t in (version / "omop").iterdir():
        con.execute(f"CREATE VIEW {t.name} AS SELECT * FROM read_parquet('{t}/*.parquet')")
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def _policy(**kw: Any) -> PrivacyPolicy:
    return PrivacyPolicy.model_validate({"k": 3, **kw})


def test_pseudonymised_releases_of_two_permits_do_not_join(pseudo: tuple[Sites, pl.DataFrame], vocab: Vocabulary,
                                                            tmp_path: Path) -> None:
    sites, years = pseudo
    pol = _policy(mode="pseudonymised")
    a, va = release(sites, vocab, pol, tmp_path, "deliver-a", permit="EHDS-LU-2026-001", death_years=years)
    _b, vb = release(sites, vocab, pol, tmp_path, "deliver-b", permit="EHDS-LU-2026-002", death_years=years)
    _anon, vn = release(sites, vocab, _policy(), tmp_path, "open", death_years=years)
    ids = {v: {r[0] for r in q(v, "SELECT person_id FROM person")} for v in (va, vb, vn)}
    assert ids[va] and not ids[va] & ids[vb] and not ids[va] & ids[vn]
    visits = {v: {r[0] for r in q(v, "SELECT visit_occurrence_id FROM visit_occurrence")} for v in (va, vb)}
    assert not visits[va] & visits[vb]
    # the same permit again: the same ids (a re-delivery joins with the first one)
    _a2, va2 = release(sites, vocab, pol, tmp_path, "deliver-a2", permit="EHDS-LU-2026-001", death_years=years)
    assert {r[0] for r in q(va2, "SELECT person_id FROM person")} == ids[va]
    # dates are moved per permit: the two deliveries' visit dates of the same stay differ
    da = sorted(r[0] for r in q(va, "SELECT visit_start_date FROM visit_occurrence"))
    db = sorted(r[0] for r in q(vb, "SELECT visit_start_date FROM visit_occurrence"))
    assert da != db and len(da) == len(db)
    # facts are kept as recorded (nothing generalised or suppressed), and measured
    assert a.report["facts"]["attacker_facts"] == 0
    assert all(o["removed"] == 0 and o["generalised"] == 0 for o in a.report["facts"]["tables"].values())
    assert a.report["km"]["after"][2] > 0 and a.report["km"]["passed"]
    assert "NOT guaranteed" in " ".join(a.report["protection"]["does_not_cover"])
    # personal data, never in a public catalogue
    meta = json.loads((va / "metadata" / "healthdcat-ap.jsonld").read_text())
    assert meta["dct:accessRights"]["@id"].endswith("NON_PUBLIC") and meta["dpv:hasPersonalData"]
    assert "EHDS-LU-2026-001" in (va / "README.md").read_text()
    # approved, a pseudonymised release still stays out of the public catalogue; an anonymised one is in it
    approve(tmp_path, "deliver-a", 1, by="steward")
    approve(tmp_path, "open", 1, by="steward")
    listed = json.loads((tmp_path / "catalog.jsonld").read_text())["dcat:dataset"]
    assert [d["dct:identifier"] for d in listed] == ["open/1"]


def test_event_dates_by_month_keep_order(pseudo: tuple[Sites, pl.DataFrame], vocab: Vocabulary, tmp_path: Path) -> None:
    sites, years = pseudo
    _, v = release(sites, vocab, _policy(event_dates="month"), tmp_path, death_years=years)
    days = q(v, "SELECT DISTINCT day(visit_start_date) FROM visit_occurrence UNION SELECT DISTINCT day(condition_start_date) "
                "FROM condition_occurrence UNION SELECT DISTINCT day(death_date) FROM death UNION SELECT DISTINCT "
                "day(observation_period_end_date) FROM observation_period")
    assert days == [(1,)]
    bad = q(v, "SELECT count(*) FROM visit_occurrence WHERE visit_end_date < visit_start_date")
    assert bad == [(0,)]


def test_dead_persons_timelines_reveal_only_the_death_year_band(pseudo: tuple[Sites, pl.DataFrame],
                                                                 vocab: Vocabulary, tmp_path: Path) -> None:
    sites, years = pseudo
    policy = _policy(quasi_identifiers=[{"column": "year_of_birth", "hierarchy": "builtin:year5"},
                                        {"column": "sex", "hierarchy": "builtin:sex"},
                                        {"column": "postcode", "hierarchy": "builtin:lu-postcode"},
                                        {"column": "death_year", "hierarchy": "builtin:year5"}])
    result, v = release(sites, vocab, policy, tmp_path, death_years=years)
    level = result.summary["levels"]["death_year"]
    deaths = q(v, "SELECT person_id, death_date FROM death")
    assert deaths, "the planted deaths are released"
    # intervals are exact: the last visit ends 20 days before death, as in the pseudonymised data
    gaps = q(v, "SELECT d.death_date - max(v.visit_end_date) FROM death d JOIN visit_occurrence v USING (person_id) "
                "GROUP BY d.person_id, d.death_date")
    assert {g[0] for g in gaps} == {20}
    # DQD's plausibleBeforeDeath: nothing after death (+ 60 days)
    assert q(v, "SELECT count(*) FROM condition_occurrence c JOIN death d USING (person_id) "
                "WHERE c.condition_start_date > d.death_date + 60") == [(0,)]
    # the death date falls in the first year of the band of the true death year
    true = dict(zip(years["person_id"].to_list(), years["death_year"].to_list(), strict=True))
    width = {0: 1, 1: 5, 2: 10, 3: 20}.get(level)
    if width is not None:
        for pid, date in deaths:
            y = true[pid]
            assert date.year == y - y % width if width > 1 else date.year == y


def test_birth_none_publishes_no_year_of_birth(pseudo: tuple[Sites, pl.DataFrame], vocab: Vocabulary,
                                                tmp_path: Path) -> None:
    sites, years = pseudo
    result, v = release(sites, vocab, _policy(birth="none"), tmp_path, death_years=years)
    assert q(v, "SELECT DISTINCT year_of_birth FROM person") == [(0,)]
    assert "year_of_birth" not in result.summary["levels"]


def test_l_diversity_is_refused_for_a_release(pseudo: tuple[Sites, pl.DataFrame]) -> None:
    # every published person-level field is known to the attacker: none can be a sensitive attribute
    sites, _ = pseudo
    with pytest.raises(ValueError, match="l_diversity does not apply to a release"):
        build_release(sites, _policy(l_diversity={"attribute": "race", "l": 2}), KEY)


def _accounting(result: ReleaseResult) -> Mapping[tuple[str, str], int]:
    acc = result.accounting.group_by("table", "category").agg(pl.col("rows").sum())
    return {(t, c): n for t, c, n in acc.iter_rows()}


def test_generalised_rows_stay_and_suppressed_facts_are_counted(pseudo: tuple[Sites, pl.DataFrame],
                                                                 vocab: Vocabulary, tmp_path: Path) -> None:
    sites, years = pseudo
    result, v = release(sites, vocab, _policy(k=5), tmp_path, death_years=years)
    acc = _accounting(result)
    for t in ("condition_occurrence", "drug_exposure"):
        released = q(v, f"SELECT count(*) FROM {t}")[0][0]
        assert acc[(t, "out")] == released
        assert acc[(t, "in")] == acc[(t, "out")] + acc.get((t, "suppressed"), 0) + acc.get((t, "fact_suppressed"), 0)
        facts = result.report["facts"]["tables"][t]
        assert acc.get((t, "fact_suppressed"), 0) == facts["removed"]
    assert acc.get(("drug_exposure", "generalised"), 0) > 0  # ATC codes shortened rather than dropped
    # visit source values are hospital tokens: never published
    assert q(v, "SELECT count(visit_source_value) FROM visit_occurrence") == [(0,)]


def test_written_release_is_km_anonymous_alone_and_with_an_earlier_version(
        pseudo: tuple[Sites, pl.DataFrame], vocab: Vocabulary, tmp_path: Path) -> None:
    """The issue's attack: the steward publishes v1 (metric loss), then v2 of the same data with the
    metric switched to discernibility; a recipient of both joins them on person_id. Checked on the
    written files by the brute force of tests/release_check.py (no engine code)."""
    sites, years = pseudo
    r1, v1 = release(sites, vocab, _policy(), tmp_path, death_years=years)
    r2, v2 = release(sites, vocab, _policy(metric="discernibility"), tmp_path, death_years=years)
    assert r2.summary["earlier_versions"] == [1]
    alone = release_check(v1, 3, 2)["release"]
    assert alone["at_risk"] == [0, 0, 0] and alone["persons"] == r1.summary["persons_released"]
    both = release_check(v2, 3, 2, earlier=[v1])
    assert both["release"]["at_risk"] == [0, 0, 0]
    assert both["joint"]["at_risk"] == [0, 0, 0]
    # the attack by hand: persons in both versions, joined on person_id, with their two class keys
    p1 = {r[0]: r[1:] for r in q(v1, "SELECT person_id, year_of_birth, gender_concept_id, location_id FROM person")}
    p2 = {r[0]: r[1:] for r in q(v2, "SELECT person_id, year_of_birth, gender_concept_id, location_id FROM person")}
    joined: dict[tuple[Any, ...], int] = {}
    for pid in p1.keys() & p2.keys():
        joined[(p1[pid], p2[pid])] = joined.get((p1[pid], p2[pid]), 0) + 1
    assert joined and min(joined.values()) >= 3
    # the engine's own figures agree with the brute force
    assert r2.report["km"]["after"] == [0, 0, 0]
    # what it costs: the share of facts kept, per table, is reported
    facts = r1.report["facts"]["tables"]["condition_occurrence"]["facts"]["condition_concept_id"]
    assert facts["exact"] > 0 and facts["exact"] + facts["generalised"] + facts["suppressed"] > 0


def test_fact_weight_trades_the_fields_for_the_facts(pseudo: tuple[Sites, pl.DataFrame], vocab: Vocabulary,
                                                    tmp_path: Path) -> None:
    sites, years = pseudo
    keep, _ = release(sites, vocab, _policy(fact_weight=0.0), tmp_path, "w0", death_years=years)
    spare, _ = release(sites, vocab, _policy(fact_weight=1.0), tmp_path, "w1", death_years=years)
    assert keep.report["levels_tried"] == []  # the metric's optimum, as it is
    assert any(t["chosen"] for t in spare.report["levels_tried"])
    assert all(spare.summary["levels"][q] >= keep.summary["levels"][q] for q in keep.summary["levels"])

    def removed(r: ReleaseResult) -> int:
        return sum(int(o["removed"]) for o in r.report["facts"]["tables"].values())

    assert removed(spare) <= removed(keep)


def test_leak_scan_of_a_pseudonymised_release_knows_whose_rows_are_whose(pseudo: tuple[Sites, pl.DataFrame],
                                                                         vocab: Vocabulary, tmp_path: Path) -> None:
    """A permit's release re-keys person ids: the scan's identities are re-keyed the same way, so a
    surname is found in its person's rows (and only there)."""
    sites, years = pseudo
    permit = "EHDS-LU-2026-007"
    result, _path = release(sites, vocab, _policy(mode="pseudonymised"), tmp_path, "deliver-leak", permit=permit,
                            death_years=years)
    identities = pl.concat(IDENTITIES, how="diagonal_relaxed")
    persons = release_persons(identities["person_id"], KEY, permit)
    ids = identifiers_from_patients(released_identities(identities, persons))
    meas = result.tables["measurement"]
    for t, df in result.tables.items():  # a real release: nothing, birth dates included (no shifted date on one)
        assert scan_table(df, ids, t) == {}, t
    row = meas.row(0, named=True)
    who = released_identities(identities, persons).filter(pl.col("person_id") == row["person_id"]).row(0, named=True)
    planted = meas.with_columns(unit_source_value=pl.when(pl.int_range(pl.len()) == 0)
                                .then(pl.lit(f"{str(who['last_name']).upper()} est venue")).otherwise("unit_source_value"))
    assert scan_table(planted, ids, "measurement") == {"name": 1}
    # keyed by the project's pseudonyms instead of the permit's, the same scan would not know her rows
    unmapped = identifiers_from_patients(identities)
    assert scan_table(planted, unmapped, "measurement") == {}


def test_a_modifier_of_a_removed_diagnosis_leaves_with_it(pseudo: tuple[Sites, pl.DataFrame], vocab: Vocabulary,
                                                          tmp_path: Path) -> None:
    """A stage measurement linked (Oncology WG: measurement_event_id, field 1147127) to a diagnosis that
    k^m removes is removed too: left behind it would still say "a staged cancer" and point nowhere."""
    sites, years = pseudo
    home = dict(sites["hospital-a"])
    cond = home["condition_occurrence"]
    victim = cond.row(0, named=True)
    rare_id = int(cond["condition_occurrence_id"].max()) + 1  # type: ignore[arg-type]
    rare = pl.DataFrame([{**victim, "condition_occurrence_id": rare_id, "condition_concept_id": 0,
                          "condition_source_concept_id": 0, "condition_source_value": "8070/3-C34.3"}],
                        schema=cond.schema)
    home["condition_occurrence"] = pl.concat([cond, rare])
    meas = home["measurement"]
    # the modifier repeats facts its person already has (a copy of one of their measurements): only
    # its link can make it go
    base = meas.filter(pl.col("person_id") == victim["person_id"]).row(0, named=True)
    stage = pl.DataFrame([{**base, "measurement_id": int(meas["measurement_id"].max()) + 1,  # type: ignore[arg-type]
                           "value_source_value": "IIIA", "measurement_event_id": rare_id,
                           "meas_event_field_concept_id": 1147127}], schema=meas.schema)
    home["measurement"] = pl.concat([meas, stage])
    _, v = release({**sites, "hospital-a": home}, vocab, _policy(k=5), tmp_path, death_years=years)
    con = duckdb.connect()
    dangling = con.sql(f"""
        select count(*) from read_parquet('{v}/omop/measurement/**/*.parquet', hive_partitioning = true) m
        where m.meas_event_field_concept_id = 1147127 and m.measurement_event_id not in (
            select condition_occurrence_id from read_parquet('{v}/omop/condition_occurrence/**/*.parquet',
                                                             hive_partitioning = true))""").fetchall()
    assert dangling == [(0,)]
    staged = con.sql(f"""select count(*) from read_parquet('{v}/omop/measurement/**/*.parquet', hive_partitioning = true)
                         where value_source_value = 'IIIA'""").fetchall()
    assert staged == [(0,)]


def _in_parts(sites: Sites, folder: Path, parts: int) -> dict[str, LazyTables]:
    """The pseudo zone as the lake holds it: every site's table in ``parts`` Parquet parts (consecutive
    slices of rows: a person's rows may be in two parts)."""
    out: dict[str, LazyTables] = {}
    for site, tables in sites.items():
        folders: dict[str, Path] = {}
        for t, df in tables.items():
            writer = PartitionWriter(folder / t / f"site={site}")
            size = max(1, -(-df.height // parts))
            for i, start in enumerate(range(0, max(df.height, 1), size)):
                writer.write(df.slice(start, size), i)
            folders[t] = writer.commit()
        out[site] = LazyTables(folders)
    return out


@pytest.mark.parametrize("mode", ["anonymised", "pseudonymised"])
def test_the_release_part_by_part_equals_the_release_of_whole_sites(pseudo: tuple[Sites, pl.DataFrame],
                                                                    vocab: Vocabulary, tmp_path: Path,
                                                                    mode: str) -> None:
    """Each site's tables in 3 Parquet parts, released part by part into a sink, give the rows (sorted)
    and the row accounting of the release of the same sites held whole, one part each."""
    sites, years = pseudo
    pol = _policy(mode=mode)
    permit = "EHDS-LU-2026-001" if mode == "pseudonymised" else None
    whole = build_release(sites, pol, KEY, vocab.ancestor, vocab.concept, permit=permit, true_death_years=years)
    sunk: dict[str, list[pl.DataFrame]] = {}

    def sink(t: str, df: pl.DataFrame) -> None:
        sunk.setdefault(t, []).append(df)

    parted = build_release(_in_parts(sites, tmp_path / "pseudo", 3), pol, KEY, vocab.ancestor, vocab.concept,
                           sink=sink, permit=permit, true_death_years=years)
    assert max(len(v) for v in sunk.values()) > 1  # tables were handed on in several parts
    assert not set(sunk) & set(parted.tables)  # person, location, observation_period, cdm_source stay whole
    for t, df in parted.tables.items():
        sunk[t] = [df]
    assert sorted(sunk) == sorted(whole.tables)
    for t, expected in whole.tables.items():
        got = pl.concat(sunk[t])
        assert got.schema == expected.schema, t
        order = list(dict.fromkeys(c for c in ("person_id", cdm_pk(t)) if c and c in got.columns)) or got.columns[:2]
        for part in sunk[t]:  # each part sorted as the whole table was
            assert part.select(order).equals(part.select(order).sort(order)), t
        if t in parted.tables:  # a table kept whole is sorted as a whole
            assert got.select(order).equals(got.select(order).sort(order)), t
        everything = list(got.columns)
        assert_frame_equal(got.sort(everything, nulls_last=True), expected.sort(everything, nulls_last=True),
                           check_row_order=True)
        assert parted.rows[t] == whole.rows[t] == expected.height, t
    assert parted.accounting.equals(whole.accounting)
    assert parted.accounting.filter(pl.col("category") == "out")["rows"].sum() > 0
    assert parted.report == whole.report and parted.summary == whole.summary
    assert (parted.date_deltas is None) == (whole.date_deltas is None)
    if parted.date_deltas is not None and whole.date_deltas is not None:
        assert parted.date_deltas.sort("person_id").equals(whole.date_deltas.sort("person_id"))
    # published from the release zone's parts (as the release asset writes them), the tables are the
    # same bytes as published from the whole tables
    folders: dict[str, Path] = {}
    for t, frames in sunk.items():
        writer = PartitionWriter(tmp_path / "release" / t)
        for i, df in enumerate(frames):
            writer.write(df, i)
        folders[t] = writer.commit()
    created = dt.datetime(2026, 1, 2, tzinfo=dt.UTC)
    extra = {"project": "test", "key_fingerprint": "f" * 32, "mode": pol.mode, "policy": pol.model_dump(mode="json")}
    a = publish_release(tmp_path / "a", "d", whole.tables, extra, demo=False, created=created)
    b = publish_release(tmp_path / "b", "d", LazyTables(folders), extra, demo=False, created=created)
    tables_a = {f["path"]: f["sha256"] for f in a.manifest["files"] if "table" in f}
    assert tables_a and tables_a == {f["path"]: f["sha256"] for f in b.manifest["files"] if "table" in f}


def cdm_pk(table: str) -> str | None:
    from schemas import omop as cdm

    return cdm.table(table).primary_key
