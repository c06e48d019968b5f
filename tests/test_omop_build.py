"""The OMOP builder on real samples (Synthea CSV, FHIR bulk) and the omop-csv round trip."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from schemas import omop as cdm
from transforms.adapters.fhir import fhir_to_staging, read_fhir
from transforms.adapters.omop_csv import read_omop
from transforms.adapters.synthea import read_synthea, synthea_to_staging
from transforms.omop import OMOP_TABLES, harmonise_site, passthrough_omop
from transforms.vocabulary import load_vocabulary

TODAY = dt.date(2026, 1, 1)
EVENT_DATES = {
    "visit_occurrence": "visit_start_date", "condition_occurrence": "condition_start_date",
    "drug_exposure": "drug_exposure_start_date", "procedure_occurrence": "procedure_date",
    "measurement": "measurement_date", "observation": "observation_date", "device_exposure": "device_exposure_start_date",
}


@pytest.fixture(scope="module")
def built(request: pytest.FixtureRequest) -> dict[str, dict[str, pl.DataFrame]]:
    shared = Path(__file__).resolve().parents[2] / "shared" / "data"
    if not shared.exists():
        pytest.skip("../shared is not beside this checkout")
    vocab = load_vocabulary(str(shared / "vocabulary-demo"))
    out = {}
    out["synthea"] = harmonise_site("synthea", synthea_to_staging(read_synthea("synthea", shared / "synthea-v3-27")), vocab, TODAY).tables
    out["fhir"] = harmonise_site("fhir", fhir_to_staging(read_fhir("fhir", shared / "fhir-r4-bulk-10")), vocab, TODAY).tables
    return out


@pytest.mark.parametrize("source", ["synthea", "fhir"])
def test_tables_follow_the_specification(built: dict[str, dict[str, pl.DataFrame]], source: str) -> None:
    tables = built[source]
    for name, df in tables.items():
        spec = cdm.table(name)
        assert df.schema == spec.polars_schema, name
        for f in spec.required:
            assert df[f].null_count() == 0, (name, f)
        if spec.primary_key and df.height:
            assert not df[spec.primary_key].is_duplicated().any(), name
    person_ids = tables["person"]["person_id"]
    visit_ids = tables["visit_occurrence"]["visit_occurrence_id"]
    for name, df in tables.items():
        if "person_id" in df.columns and name != "person":
            assert df["person_id"].is_in(person_ids.implode()).all(), name
        if "visit_occurrence_id" in df.columns and name != "visit_occurrence":
            assert df["visit_occurrence_id"].drop_nulls().is_in(visit_ids.implode()).all(), name
    assert tables["person"].height == {"synthea": 27, "fhir": 13}[source]


@pytest.mark.parametrize("source", ["synthea", "fhir"])
def test_events_inside_observation_periods_and_not_after_death(built: dict[str, dict[str, pl.DataFrame]], source: str) -> None:
    tables = built[source]
    op = tables["observation_period"]
    death = tables["death"].select("person_id", "death_date")
    for name, col in EVENT_DATES.items():
        df = tables[name].select("person_id", d=pl.col(col)).join(op, on="person_id", how="left")
        outside = df.filter((pl.col("d") < pl.col("observation_period_start_date")) | (pl.col("d") > pl.col("observation_period_end_date")))
        assert outside.height == 0, (name, outside.head())
        after = tables[name].select("person_id", d=pl.col(col)).join(death, on="person_id", how="inner")
        # events after death are allowed only within the 60-day window DQD tolerates (post-mortem records)
        assert after.filter(pl.col("d") > pl.col("death_date") + pl.duration(days=60)).height == 0, name


def test_domain_routing_and_unmapped_codes_kept(built: dict[str, dict[str, pl.DataFrame]]) -> None:
    tables = built["synthea"]
    # Synthea observations with LOINC codes of the Measurement domain land in measurement
    assert tables["measurement"].height > 0 and tables["observation"].height > 0
    unmapped = tables["condition_occurrence"].filter(pl.col("condition_concept_id") == 0)
    assert unmapped["condition_source_value"].null_count() == 0


def test_omop_csv_round_trips_without_loss() -> None:
    folder = Path(__file__).resolve().parents[2] / "shared" / "data" / "omop-eunomia-synthea27nj"
    if not folder.exists():
        pytest.skip("../shared is not beside this checkout")
    raw = read_omop("eunomia", folder)
    assert all(e.quarantined == 0 for e in raw.entities.values())
    result = passthrough_omop("eunomia", {n: e.table for n, e in raw.entities.items()})
    for t in OMOP_TABLES:
        path = next((p for p in folder.iterdir() if p.stem.lower() == t), None)
        if path is None:
            continue
        source = pl.read_csv(path, infer_schema=False)
        out = result.tables[t]
        assert out.height == source.height, t
        for c in source.columns:
            a = source[c.lower()].fill_null("").to_list()
            f = cdm.table(t).field(c.lower())
            b = out[c.lower()]
            if f.polars_type == pl.Datetime("us"):
                b = b.dt.strftime("%Y-%m-%d %H:%M:%S")
            elif f.polars_type == pl.Date:  # Eunomia writes some dates with a 00:00:00 time: same value
                b = b.dt.strftime("%Y-%m-%d")
                a = [x[:10] for x in a]
            elif f.polars_type == pl.Float64:
                a = [str(float(x)) if x != "" else "" for x in a]
            assert b.cast(pl.String).fill_null("").to_list() == a, (t, c)


def test_locations_carry_the_country() -> None:
    """country_source_value is the ISO code; its concept comes from the vocabulary's OSM countries, else 0;
    the canton is derived from a postcode in Luxembourg only."""
    from transforms import staging
    from transforms.omop import build_location
    from transforms.vocabulary import Vocabulary

    persons = staging.conform(pl.DataFrame({
        "person_key": ["a", "b", "c", "d"], "address": ["1 rue X", "2 rue Y", "3 rue Z", None],
        "postcode": ["L-1080", "57100", "L-1080", "01234"], "city": ["Mertert", "Thionville", "Mertert", "Town"],
        "country": ["LU", "FR", "FR", "US"],
    }), "persons")
    osm = pl.DataFrame({
        "concept_id": [1001, 1002, 1003, 1004], "concept_name": ["Luxembourg", "France", "Luxembourg", "France"],
        "domain_id": ["Geography"] * 4, "vocabulary_id": ["OSM"] * 4,
        "concept_class_id": ["2nd level", "2nd level", "6th level", "2nd level"],
        "standard_concept": ["S", "S", "S", None], "concept_code": ["1", "2", "3", "4"],
    })
    vocab = Vocabulary(osm, pl.DataFrame(), pl.DataFrame())
    assert vocab.country_concepts() == {"LU": 1001, "FR": 1002}  # the country, not the canton Luxembourg
    assert load_vocabulary().country_concepts() == {}  # the demo vocabulary has no OSM
    loc = build_location("s", persons, staging.empty("care_sites"), vocab.country_concepts())
    rows = {r["zip"]: r for r in loc.sort("location_source_value").iter_rows(named=True)}
    assert loc.height == 4
    assert rows["57100"]["country_source_value"] == "FR" and rows["57100"]["country_concept_id"] == 1002
    assert rows["57100"]["county"] is None
    assert rows["01234"]["country_source_value"] == "US" and rows["01234"]["country_concept_id"] == 0
    lu = loc.filter(pl.col("zip") == "L-1080").sort("country_source_value")
    # the canton of L-1080 (schemas/geo.py) for the resident of Luxembourg only
    assert lu.select("country_source_value", "country_concept_id", "county").rows() == [
        ("FR", 1002, None), ("LU", 1001, "Grevenmacher")]


def test_sample_locations_name_their_country(built: dict[str, dict[str, pl.DataFrame]]) -> None:
    for source in ("synthea", "fhir"):
        loc = built[source]["location"]
        assert set(loc["country_source_value"].drop_nulls()) == {"US"}, source
        assert set(loc["country_concept_id"].drop_nulls()) <= {0}
