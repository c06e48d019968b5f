"""Harmonise one site's staging tables into OMOP CDM v5.4 (the identifiable zone).

- codes map through the vocabulary (source code -> source concept -> "Maps to" -> standard concept,
  or the SOURCE_TO_CONCEPT_MAP for local systems); unmapped codes keep their source value and
  source concept with concept_id 0 and are never dropped;
- the standard concept's domain decides the table (a LOINC code mapping to an Observation concept
  goes to observation): such rows are counted as ``rerouted``;
- visits roll up as OHDSI's Synthea ETL does: inpatient stays merged across gaps of at most one
  day, emergency (and urgent care) visits of the same person and day grouped, an emergency visit
  inside an inpatient stay absorbed into it (Emergency Room and Inpatient Visit, 262); every
  original visit stays as a visit_detail; events go to their (covering) visit;
- observation periods span each person's events; eras and oncology episodes are derived.

Ids are stable, unkeyed 63-bit hashes of the site and the source key (they survive new extracts);
the pseudonymisation stage replaces them with keyed pseudonyms. Source values keep the hospital's
own codes and ids: this zone never leaves the hospital.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field

import polars as pl

from schemas import omop as cdm
from schemas.geo import COUNTRY_CODE, postcode_index, state_code
from transforms import cancer_registry, episodes, eras
from transforms.ids import stable_id
from transforms.ingest import accounting_frame, merge_accounting
from transforms.staging import KINDS, Staging, vocabulary_of
from transforms.vocabulary import Vocabulary

GENDER = {"M": 8507, "F": 8532}
HOSPICE = 8546  # "Hospice" (CMS Place of Service 34)
SNF = 8863  # "Skilled Nursing Facility" (CMS Place of Service 31)
VISIT_CONCEPT = {
    "INPATIENT": 9201, "EMERGENCY": 9203, "URGENTCARE": 9203, "OUTPATIENT": 9202, "AMBULATORY": 9202,
    "WELLNESS": 9202, "HOME": 9202, "VIRTUAL": 9202, "HOSPICE": HOSPICE, "SNF": SNF,
}
OUTPATIENT = 9202
ER_CLASSES = ("EMERGENCY", "URGENTCARE")
ERIP = 262
EHR = 32817
EHR_ADMINISTRATION = 32818  # "EHR administration record": an administered vaccine
EHR_ENCOUNTER = 32827
EHR_PHYSICAL_EXAM = 32836  # "EHR physical examination": vital signs and exam findings
EHR_PRESCRIPTION = 32838
LAB = 32856
SURVEY = 32862  # "Patient filled survey"
PERIOD_TYPE = 32882
# preferred concept -> what stands in for it when the vocabulary lacks it (a subset, e.g. Eunomia's)
FALLBACK = {HOSPICE: OUTPATIENT, SNF: OUTPATIENT, EHR_ADMINISTRATION: EHR_ENCOUNTER, EHR_PHYSICAL_EXAM: EHR,
            SURVEY: EHR}
# the source's record category (staging ``category``) -> type concept, per table
CATEGORY_TYPE: dict[str, dict[str, int]] = {
    "measurement": {"vital-signs": EHR_PHYSICAL_EXAM, "exam": EHR_PHYSICAL_EXAM, "survey": SURVEY, "laboratory": LAB},
    "observation": {"vital-signs": EHR_PHYSICAL_EXAM, "exam": EHR_PHYSICAL_EXAM, "survey": SURVEY, "laboratory": LAB},
    "drug_exposure": {"immunization": EHR_ADMINISTRATION},
}
DEFAULT_TYPE = {"condition_occurrence": EHR, "drug_exposure": EHR_PRESCRIPTION, "procedure_occurrence": EHR,
                "measurement": LAB, "observation": EHR, "device_exposure": EHR}
# race and ethnicity as sources write them (Synthea's words, the OMB categories of US Core, their codes),
# folded to lower-case letters and digits -> the OMB concept (OHDSI's Race and Ethnicity vocabularies)
RACE = {
    "white": 8527, "21063": 8527,
    "black": 8516, "blackorafricanamerican": 8516, "20545": 8516,
    "asian": 8515, "20289": 8515,
    "hawaiian": 8557, "nativehawaiianorotherpacificislander": 8557, "pacificislander": 8557, "20768": 8557,
    "native": 8657, "americanindianoralaskanative": 8657, "americanindian": 8657, "10025": 8657,
}
ETHNICITY = {
    "hispanic": 38003563, "hispanicorlatino": 38003563, "21355": 38003563,
    "nonhispanic": 38003564, "nothispanicorlatino": 38003564, "21865": 38003564,
}
DOMAIN_TABLE = {
    "Condition": "condition_occurrence", "Drug": "drug_exposure", "Procedure": "procedure_occurrence",
    "Measurement": "measurement", "Observation": "observation", "Device": "device_exposure",
}
KIND_TABLE = {
    "condition": "condition_occurrence", "drug": "drug_exposure", "procedure": "procedure_occurrence",
    "measurement": "measurement", "observation": "observation", "device": "device_exposure",
    "allergy": "observation",
}
EVENT_TABLES = tuple(dict.fromkeys(KIND_TABLE.values()))
# An allergy is an observation: the allergy (SNOMED, by the source's category) with the substance as its
# value (OHDSI's THEMIS convention, the HL7 FHIR-to-OMOP IG's AllergyMap); never a drug exposure. A
# code that is itself a condition ("allergic rhinitis") stays a condition.
ALLERGY_SNOMED = {"medication": "416098002", "food": "414285001", "environment": "426232007"}
ALLERGY_TO_SUBSTANCE = "419199007"
OMOP_TABLES = (
    "location", "care_site", "provider", "person", "death", "observation_period", "visit_occurrence",
    "visit_detail", *EVENT_TABLES, "note", "condition_era", "drug_era", "episode", "episode_event", "cdm_source",
)
assert set(KINDS) == set(KIND_TABLE)


@dataclass
class OmopResult:
    tables: dict[str, pl.DataFrame]
    accounting: pl.DataFrame
    coverage: pl.DataFrame  # table, code_system, source_code, description, rows, mapped (one row per distinct code)
    stats: dict[str, float] = field(default_factory=dict)


def concepts_present(vocab: Vocabulary, ids: Iterable[int]) -> frozenset[int]:
    """The concept ids among ``ids`` that the vocabulary holds (a subset may lack some)."""
    wanted = sorted({int(i) for i in ids})
    found = vocab.concept.filter(pl.col("concept_id").is_in(wanted))["concept_id"].to_list()
    return frozenset(int(c) for c in found)


def _available(concepts: Mapping[str, int], present: Collection[int]) -> dict[str, int]:
    """``concepts`` with every id the vocabulary lacks replaced by its ``FALLBACK`` (or 0)."""
    return {k: (v if v in present else FALLBACK.get(v, 0)) for k, v in concepts.items()}


def _folded(col: str) -> pl.Expr:
    return pl.col(col).str.to_lowercase().str.replace_all(r"[^a-z0-9]", "")


def _location_key() -> pl.Expr:
    return pl.concat_str([pl.col("address"), pl.col("postcode"), pl.col("city"), pl.col("country")],
                         separator="|", ignore_nulls=True)


def build_location(site: str, persons: pl.DataFrame, care_sites: pl.DataFrame,
                   country_concepts: Mapping[str, int] | None = None) -> pl.DataFrame:
    """One location row per distinct address of persons and care sites. ``country`` is the staging's
    ISO 3166-1 alpha-2 code (``country_source_value``; ``country_concept_id`` from ``country_concepts``,
    ISO code -> concept, else 0); a Luxembourg postcode gives the canton as ``county`` when the source
    has none."""
    cols = ["address", "postcode", "city", "county", "country", "state"]

    def part(df: pl.DataFrame) -> pl.DataFrame:
        return df.select([pl.col(c).cast(pl.String) if c in df.columns else pl.lit(None, pl.String).alias(c) for c in cols])

    loc = pl.concat([part(persons), part(care_sites)]).with_columns(location_key=_location_key())
    loc = (loc.filter(pl.col("location_key") != "").sort("location_key", "state", nulls_last=True)
           .unique("location_key", keep="first", maintain_order=True))
    states = {v: state_code(v) for v in loc["state"].drop_nulls().unique().to_list()}
    canton = {k: v.canton for k, v in postcode_index().items()}
    lu_canton = pl.when(pl.col("country").fill_null(COUNTRY_CODE) == COUNTRY_CODE).then(
        pl.col("postcode").replace_strict(canton, default=None, return_dtype=pl.String))
    concepts = dict(country_concepts or {})
    loc = loc.with_columns(
        location_id=stable_id(f"location:{site}", loc["location_key"]),
        county=pl.coalesce(pl.col("county"), lu_canton),
        state=pl.col("state").replace_strict(states, default=None, return_dtype=pl.String),
        country_concept_id=pl.when(pl.col("country").is_not_null()).then(
            pl.col("country").replace_strict(concepts, default=0, return_dtype=pl.Int32)),
    )
    return cdm.conform(loc.select(
        "location_id", "country_concept_id", address_1="address", city="city", state="state", zip="postcode",
        county="county",
        country_source_value="country", location_source_value="location_key",
    ), "location")


def _location_ids(df: pl.DataFrame, location: pl.DataFrame) -> pl.DataFrame:
    return df.with_columns(location_key=_location_key()).join(
        location.select("location_id", location_key="location_source_value"), on="location_key", how="left",
        maintain_order="left",
    )


def build_care_sites(site: str, care_sites: pl.DataFrame, location: pl.DataFrame) -> pl.DataFrame:
    cs = _location_ids(care_sites, location).with_columns(care_site_id=stable_id(f"care_site:{site}", care_sites["care_site_key"]))
    return cdm.conform(cs.select(
        "care_site_id", "location_id", care_site_name="name", place_of_service_source_value="place_of_service",
        care_site_source_value="care_site_key",
    ), "care_site").sort("care_site_id")


def build_providers(site: str, providers: pl.DataFrame, care_site_ids: pl.DataFrame) -> pl.DataFrame:
    pr = providers.join(care_site_ids, on="care_site_key", how="left", maintain_order="left").with_columns(
        provider_id=stable_id(f"provider:{site}", providers["provider_key"]),
        gender_concept_id=pl.col("sex").replace_strict(GENDER, default=0, return_dtype=pl.Int32),
    )
    return cdm.conform(pr.select(
        "provider_id", "care_site_id", "gender_concept_id", provider_name="name",
        specialty_source_value="specialty", provider_source_value="provider_key", gender_source_value="sex",
    ), "provider").sort("provider_id")


def build_person(site: str, persons: pl.DataFrame, location: pl.DataFrame,
                 present: Collection[int] | None = None) -> pl.DataFrame:
    """``present``: the race and ethnicity concepts the vocabulary holds (``concepts_present``); a
    race or ethnicity maps to its OMB concept only when it is there (else 0, as an unmapped code)."""
    known = frozenset(present) if present is not None else frozenset({*RACE.values(), *ETHNICITY.values()})
    race = {k: v for k, v in RACE.items() if v in known}
    ethnicity = {k: v for k, v in ETHNICITY.items() if v in known}
    p = _location_ids(persons, location).with_columns(
        person_id=stable_id(f"person:{site}", persons["person_key"]),
        gender_concept_id=pl.col("sex").replace_strict(GENDER, default=0, return_dtype=pl.Int32),
        year_of_birth=pl.col("birth_date").dt.year(),
        month_of_birth=pl.col("birth_date").dt.month(),
        day_of_birth=pl.col("birth_date").dt.day(),
        birth_datetime=pl.col("birth_date").cast(pl.Datetime("us")),
        race_concept_id=_folded("race_source").replace_strict(race, default=0, return_dtype=pl.Int32).fill_null(0),
        ethnicity_concept_id=_folded("ethnicity_source").replace_strict(ethnicity, default=0, return_dtype=pl.Int32).fill_null(0),
        person_source_value=pl.col("person_key"),
        gender_source_value=pl.col("sex"),
        gender_source_concept_id=pl.lit(0),
        race_source_value=pl.col("race_source"),
        ethnicity_source_value=pl.col("ethnicity_source"),
    )
    return cdm.conform(p, "person").sort("person_id")


def rollup_visits(site: str, visits: pl.DataFrame,
                  visit_concepts: Mapping[str, int] = VISIT_CONCEPT) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(visit_occurrence rows, map visit_key -> visit_occurrence_id) after the OHDSI Synthea roll-up.

    A rolled-up visit takes the provider and care site of its earliest member that names one."""
    v = visits.with_columns(
        cls=pl.col("visit_class").str.to_uppercase().str.replace_all(r"[^A-Z]", ""),
        end=pl.coalesce("end", "start"),
    ).sort("person_key", "start", "visit_key")
    v = v.with_columns(grp=pl.when(pl.col("cls") == "INPATIENT").then(pl.lit("IP"))
                       .when(pl.col("cls").is_in(ER_CLASSES)).then(pl.lit("ER")).otherwise(pl.lit("OP")))
    # inpatient: a new stay starts when the gap to the running end of the previous one exceeds a day
    ip = v.filter(pl.col("grp") == "IP").with_columns(
        prev_end=pl.col("end").cum_max().shift(1).over("person_key")
    ).with_columns(
        new=(pl.col("prev_end").is_null() | (pl.col("start") > pl.col("prev_end") + pl.duration(days=1))).cast(pl.Int32)
    ).with_columns(seq=pl.col("new").cum_sum().over("person_key"))
    ip = ip.with_columns(rolled_key=pl.lit("IP|") + pl.col("person_key") + "|" + pl.col("seq").cast(pl.String))
    stays = ip.group_by("rolled_key").agg(pl.col("person_key").first(), pl.col("start").min(), pl.col("end").max(),
                                          pl.col("visit_key").min().alias("first_key"))
    # emergency / urgent care: grouped per person and day; absorbed by a covering inpatient stay
    er = v.filter(pl.col("grp") == "ER").with_columns(day=pl.col("start").dt.date())
    cover = er.join(stays.select("person_key", s_start="start", s_end="end", s_key="rolled_key"), on="person_key", how="inner")
    cover = cover.filter((pl.col("start") >= pl.col("s_start") - pl.duration(days=1)) & (pl.col("start") <= pl.col("s_end")))
    cover = cover.sort("visit_key", "s_start").unique("visit_key", keep="first").select("visit_key", "s_key")
    er = er.join(cover, on="visit_key", how="left").with_columns(
        rolled_key=pl.coalesce("s_key", pl.lit("ER|") + pl.col("person_key") + "|" + pl.col("day").cast(pl.String))
    )
    op = v.filter(pl.col("grp") == "OP").with_columns(rolled_key=pl.lit("OP|") + pl.col("visit_key"))
    member_cols = ["visit_key", "person_key", "start", "end", "cls", "rolled_key", "provider_key", "care_site_key"]

    def keys(df: pl.DataFrame) -> pl.DataFrame:
        return df.with_columns([pl.lit(None, pl.String).alias(c) for c in ("provider_key", "care_site_key")
                                if c not in df.columns]).select(member_cols)

    members = pl.concat([keys(ip), keys(er), keys(op)])
    rolled = members.group_by("rolled_key").agg(
        pl.col("person_key").first(), pl.col("start").min(), pl.col("end").max(),
        has_ip=(pl.col("cls") == "INPATIENT").any(), has_er=pl.col("cls").is_in(ER_CLASSES).any(),
        cls=pl.col("cls").sort_by("start").first(), n=pl.len(), source=pl.col("visit_key").min(),
        provider_key=pl.col("provider_key").sort_by("start", "visit_key").drop_nulls().first(),
        care_site_key=pl.col("care_site_key").sort_by("start", "visit_key").drop_nulls().first(),
    )
    rolled = rolled.with_columns(
        visit_concept_id=pl.when(pl.col("has_ip") & pl.col("has_er")).then(pl.lit(ERIP))
        .otherwise(pl.col("cls").replace_strict(dict(visit_concepts), default=0, return_dtype=pl.Int32)).cast(pl.Int32),
        visit_occurrence_id=stable_id(f"visit:{site}", pl.Series(rolled["source"])),
    )
    mapping = members.join(rolled.select("rolled_key", "visit_occurrence_id"), on="rolled_key").select(
        "visit_key", "visit_occurrence_id")
    return rolled, mapping


def _link(df: pl.DataFrame, key: str, ids: pl.DataFrame | None, id_col: str) -> pl.DataFrame:
    """``id_col`` from ``ids`` (``key`` -> ``id_col``) where ``df[key]`` names a built row, else null."""
    if ids is None or key not in df.columns:
        return df.with_columns(pl.lit(None, pl.Int64).alias(id_col))
    lut = ids.select(key, id_col).unique(key, keep="first")
    return df.join(lut, on=key, how="left", maintain_order="left")


def _preceding(df: pl.DataFrame, id_col: str, start: str, out: str) -> pl.DataFrame:
    """``out``: the id of the person's previous row by start (ties by id), as OHDSI's ETL-Synthea lags it."""
    order = df.select("person_id", start, id_col).sort("person_id", start, id_col)
    order = order.with_columns(pl.col(id_col).shift(1).over("person_id").alias(out)).select(id_col, out)
    return df.join(order, on=id_col, how="left", maintain_order="left")


def build_visits(site: str, visits: pl.DataFrame, person_ids: pl.DataFrame, *,
                 provider_ids: pl.DataFrame | None = None, care_site_ids: pl.DataFrame | None = None,
                 visit_concepts: Mapping[str, int] = VISIT_CONCEPT) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, int]:
    """(visit_occurrence, visit_detail, visit_key -> ids map, rows merged by the roll-up).

    ``provider_ids`` (provider_key, provider_id) and ``care_site_ids`` (care_site_key, care_site_id)
    link visits to the providers and care sites built; a key that names none stays unlinked.
    ``visit_concepts``: visit class -> concept (``VISIT_CONCEPT`` with what the vocabulary lacks replaced)."""
    rolled, mapping = rollup_visits(site, visits, visit_concepts)
    rolled = _link(_link(rolled, "provider_key", provider_ids, "provider_id"), "care_site_key", care_site_ids, "care_site_id")
    vo = rolled.join(person_ids, on="person_key", how="inner").with_columns(
        visit_start_date=pl.col("start").dt.date(), visit_start_datetime="start",
        visit_end_date=pl.col("end").dt.date(), visit_end_datetime="end",
        visit_type_concept_id=pl.lit(EHR_ENCOUNTER), visit_source_value=pl.col("source"),
        visit_source_concept_id=pl.lit(0),
    )
    vo = _preceding(vo, "visit_occurrence_id", "visit_start_datetime", "preceding_visit_occurrence_id")
    detail = visits.join(mapping, on="visit_key", how="inner").join(person_ids, on="person_key", how="inner")
    detail = _link(_link(detail, "provider_key", provider_ids, "provider_id"), "care_site_key", care_site_ids, "care_site_id")
    detail = detail.with_columns(
        visit_detail_id=stable_id(f"visit_detail:{site}", detail["visit_key"]),
        visit_detail_concept_id=pl.col("visit_class").str.to_uppercase().str.replace_all(r"[^A-Z]", "")
        .replace_strict(dict(visit_concepts), default=0, return_dtype=pl.Int32),
        visit_detail_start_date=pl.col("start").dt.date(), visit_detail_start_datetime="start",
        visit_detail_end_date=pl.coalesce("end", "start").dt.date(), visit_detail_end_datetime=pl.coalesce("end", "start"),
        visit_detail_type_concept_id=pl.lit(EHR_ENCOUNTER), visit_detail_source_value=pl.col("visit_key"),
        visit_detail_source_concept_id=pl.lit(0),
    )
    detail = _preceding(detail, "visit_detail_id", "visit_detail_start_datetime", "preceding_visit_detail_id")
    ids = detail.select("visit_key", "visit_occurrence_id", "visit_detail_id")
    merged = visits.height - vo.height
    return (cdm.conform(vo, "visit_occurrence").sort("visit_occurrence_id"),
            cdm.conform(detail, "visit_detail").sort("visit_detail_id"), ids, merged)


def map_events(events: pl.DataFrame, vocab: Vocabulary) -> pl.DataFrame:
    """Add concept_id, source_concept_id, domain, value_concept_id and the target table to each staging
    event: one row per standard target of its code (the second and later with ``#<concept_id>`` added
    to ``event_key``); the value of a "Maps to value" code, or of a coded result, in value_concept_id.
    A condition with an ICD-O-3 histology maps through its ICDO3 histology-topography concept when the
    vocabulary has it (``transforms/cancer_registry.py``); ``source_value`` keeps its ICD-O-3 code."""
    icdo3 = vocab.code_map(cancer_registry.ICDO3).filter(pl.col("concept_id") != 0).select("source_code")
    events = cancer_registry.with_icdo3(events, icdo3)
    frames = []
    cols = [*events.columns, "concept_id", "source_concept_id", "domain_id", "_map_value"]
    for system, part in events.partition_by("code_system", as_dict=True, maintain_order=True).items():
        vocabulary_id = vocabulary_of(system[0])
        m = vocab.code_map(vocabulary_id).select("source_code", "concept_id", "source_concept_id", "domain_id")
        one = part.with_columns(_code=pl.col("code").str.to_uppercase()).join(
            m.rename({"source_code": "_code"}), on="_code", how="left", maintain_order="left").join(
            vocab.value_map(vocabulary_id).rename({"source_code": "_code", "value_concept_id": "_map_value"}),
            on="_code", how="left", maintain_order="left")
        frames.append(one.select(cols))
        # a code with several standard targets: one more row per target, as OHDSI writes them
        more = one.drop("concept_id", "domain_id").join(
            vocab.code_targets(vocabulary_id).rename({"source_code": "_code"}), on="_code", how="inner",
            maintain_order="left")
        if more.height:
            frames.append(more.with_columns(
                event_key=pl.col("event_key") + "#" + pl.col("concept_id").cast(pl.String)).select(cols))
    if not frames:
        mapped = events.with_columns(concept_id=pl.lit(0, pl.Int32), source_concept_id=pl.lit(0, pl.Int32),
                                     domain_id=pl.lit(None, pl.String), _map_value=pl.lit(None, pl.Int32))
    else:
        mapped = pl.concat(frames)
    mapped = mapped.with_columns(
        concept_id=pl.col("concept_id").fill_null(0).cast(pl.Int32),
        source_concept_id=pl.col("source_concept_id").fill_null(0).cast(pl.Int32),
        default_table=pl.col("kind").replace_strict(KIND_TABLE, default="observation", return_dtype=pl.String),
    )
    mapped = mapped.with_columns(
        table=pl.when(pl.col("concept_id") != 0)
        .then(pl.col("domain_id").replace_strict(DOMAIN_TABLE, default=None, return_dtype=pl.String))
        .otherwise(None).fill_null(pl.col("default_table")),
    )
    return _allergies(_coded_values(mapped, vocab), vocab)


def _coded_values(mapped: pl.DataFrame, vocab: Vocabulary) -> pl.DataFrame:
    """``value_concept_id``: the standard concept of a coded result (0 where its code does not map, as
    the CDM says; null where the result is no code)."""
    if "value_code" not in mapped.columns or mapped["value_code"].null_count() == mapped.height:
        return mapped.with_columns(value_concept_id=pl.col("_map_value").cast(pl.Int32)).drop("_map_value")
    out = mapped.with_row_index("_row")
    coded = out.filter(pl.col("value_code").is_not_null())
    frames = []
    for system, part in coded.partition_by("value_code_system", as_dict=True, maintain_order=True).items():
        frames.append(vocab.lookup(part.select("_row", "value_code"), "value_code", vocabulary_of(system[0]), "value")
                      .select("_row", value_concept_id=pl.col("value_concept_id").cast(pl.Int32)))
    out = out.join(pl.concat(frames), on="_row", how="left", maintain_order="left").drop("_row")
    # a coded result's own code wins over the "Maps to value" of the event's code
    return out.with_columns(value_concept_id=pl.coalesce("value_concept_id", pl.col("_map_value").cast(pl.Int32))
                            ).drop("_map_value")


def allergy_concepts(vocab: Vocabulary) -> dict[str, int]:
    """category -> the standard SNOMED allergy concept the vocabulary has (0 where it lacks it);
    ``""``: "Allergy to substance", for any other category."""
    codes = {**ALLERGY_SNOMED, "": ALLERGY_TO_SUBSTANCE}
    found = dict(vocab.concept.filter((pl.col("vocabulary_id") == "SNOMED") & (pl.col("standard_concept") == "S")
                                      & pl.col("concept_code").is_in(list(codes.values())))
                 .select("concept_code", pl.col("concept_id").cast(pl.Int64)).iter_rows())
    return {category: int(found.get(code, 0)) for category, code in codes.items()}


def _allergies(mapped: pl.DataFrame, vocab: Vocabulary) -> pl.DataFrame:
    """Allergy rows: an observation of the allergy with the substance's standard concept as its value
    (0 when unmapped), whatever the substance's domain (aspirin is a Drug: no exposure); a code that
    maps to a Condition stays a condition."""
    allergy = (pl.col("kind") == "allergy") & (pl.col("domain_id").fill_null("") != "Condition")
    if not mapped.select(allergy.any()).item():
        return mapped
    concepts = allergy_concepts(vocab)
    general = concepts.pop("")
    category = pl.col("category") if "category" in mapped.columns else pl.lit(None, pl.String)
    by_category = category.fill_null("").replace_strict(concepts, default=general, return_dtype=pl.Int32)
    return mapped.with_columns(
        value_concept_id=pl.when(allergy).then(pl.col("concept_id")).otherwise(pl.col("value_concept_id")),
        concept_id=pl.when(allergy).then(by_category).otherwise(pl.col("concept_id")),
        table=pl.when(allergy).then(pl.lit("observation")).otherwise(pl.col("table")),
    )


def _unit_concepts(vocab: Vocabulary) -> pl.DataFrame:
    return vocab.concept.filter(pl.col("vocabulary_id") == "UCUM").select(
        unit=pl.col("concept_code"), unit_concept_id=pl.col("concept_id")).unique("unit", keep="first")


def _assign_visits(ev: pl.DataFrame, ids: pl.DataFrame, visits: pl.DataFrame) -> pl.DataFrame:
    """Events keep their own visit; events without one go to the person's covering visit."""
    ev = ev.join(ids, on="visit_key", how="left", maintain_order="left")
    missing = ev.filter(pl.col("visit_occurrence_id").is_null()).select("event_key", "person_id", "start")
    if missing.height and visits.height:
        cover = missing.join(visits.select("person_id", vid="visit_occurrence_id", vs="visit_start_datetime",
                                           ve="visit_end_datetime"), on="person_id", how="inner")
        cover = cover.filter((pl.col("start") >= pl.col("vs")) & (pl.col("start") <= pl.col("ve") + pl.duration(days=1)))
        cover = cover.sort("event_key", "vs").unique("event_key", keep="first").select("event_key", "vid")
        ev = ev.join(cover, on="event_key", how="left", maintain_order="left").with_columns(
            visit_occurrence_id=pl.coalesce("visit_occurrence_id", "vid")).drop("vid")
    return ev


def _type_concept(table: str, present: Collection[int]) -> pl.Expr:
    """The row's type concept: by the source's ``category`` where it says one (vital signs, survey,
    administered vaccine, ...), else the table's default; a concept the vocabulary lacks gives way
    to its ``FALLBACK``."""
    default = _available({"": DEFAULT_TYPE[table]}, present)[""]
    by_category = _available(CATEGORY_TYPE.get(table, {}), present)
    return pl.col("category").str.to_lowercase().replace_strict(by_category, default=default, return_dtype=pl.Int32).fill_null(default)


def _event_providers(ev: pl.DataFrame, visits: pl.DataFrame, provider_ids: pl.DataFrame,
                     visit_occurrence: pl.DataFrame) -> pl.DataFrame:
    """``provider_id`` of each event: its own provider (a FHIR performer), else its encounter's (as
    OHDSI's ETL-Synthea takes it), else its visit occurrence's; null when none names a built provider."""
    own = ev.drop("provider_id", strict=False)
    if "provider_key" not in own.columns:
        own = own.with_columns(provider_key=pl.lit(None, pl.String))
    own = _link(own, "provider_key", provider_ids, "provider_id")
    enc = _link(visits.select("visit_key", "provider_key").unique("visit_key", keep="first", maintain_order=True),
                "provider_key", provider_ids, "provider_id").select("visit_key", _enc_provider="provider_id")
    vo = visit_occurrence.select("visit_occurrence_id", _vo_provider="provider_id")
    out = (own.join(enc, on="visit_key", how="left", maintain_order="left")
           .join(vo, on="visit_occurrence_id", how="left", maintain_order="left"))
    return out.with_columns(provider_id=pl.coalesce("provider_id", "_enc_provider", "_vo_provider")).drop(
        "_enc_provider", "_vo_provider")


def build_events(site: str, mapped: pl.DataFrame, vocab: Vocabulary) -> dict[str, pl.DataFrame]:
    units = _unit_concepts(vocab)
    present = concepts_present(vocab, [*DEFAULT_TYPE.values(), *FALLBACK, *FALLBACK.values()])
    if "category" not in mapped.columns:
        mapped = mapped.with_columns(category=pl.lit(None, pl.String))
    if "provider_id" not in mapped.columns:
        mapped = mapped.with_columns(provider_id=pl.lit(None, pl.Int64))
    if "source_value" not in mapped.columns:
        mapped = mapped.with_columns(source_value=pl.lit(None, pl.String))
    if "value_code" not in mapped.columns:
        mapped = mapped.with_columns(value_code=pl.lit(None, pl.String))
    out: dict[str, pl.DataFrame] = {}
    for table in EVENT_TABLES:
        e = mapped.filter(pl.col("table") == table)
        if table in ("measurement", "observation"):
            e = e.join(units, on="unit", how="left", maintain_order="left")
        e = e.with_columns(_id=stable_id(f"{table}:{site}", e["event_key"]),
                           _date=pl.col("start").dt.date(), _end=pl.coalesce("end", "start"),
                           _type=_type_concept(table, present))
        common = dict(person_id=pl.col("person_id"), visit_occurrence_id=pl.col("visit_occurrence_id"),
                      visit_detail_id=pl.col("visit_detail_id"), provider_id=pl.col("provider_id"))
        if table == "condition_occurrence":
            df = e.select(condition_occurrence_id="_id", **common, condition_concept_id="concept_id",
                          condition_start_date="_date", condition_start_datetime="start",
                          condition_end_date=pl.col("end").dt.date(), condition_end_datetime="end",
                          condition_type_concept_id="_type",
                          condition_source_value=pl.coalesce("source_value", "code"),
                          condition_source_concept_id="source_concept_id", condition_status_source_value="status")
        elif table == "drug_exposure":
            df = e.select(drug_exposure_id="_id", **common, drug_concept_id="concept_id",
                          drug_exposure_start_date="_date", drug_exposure_start_datetime="start",
                          drug_exposure_end_date=pl.col("_end").dt.date(), drug_exposure_end_datetime="_end",
                          verbatim_end_date=pl.col("end").dt.date(), drug_type_concept_id="_type", quantity="quantity",
                          route_source_value="route", drug_source_value="code",
                          drug_source_concept_id="source_concept_id", dose_unit_source_value="unit")
        elif table == "procedure_occurrence":
            df = e.select(procedure_occurrence_id="_id", **common, procedure_concept_id="concept_id",
                          procedure_date="_date", procedure_datetime="start",
                          procedure_end_date=pl.col("end").dt.date(), procedure_end_datetime="end",
                          procedure_type_concept_id="_type", quantity="quantity",
                          procedure_source_value="code", procedure_source_concept_id="source_concept_id")
        elif table == "measurement":
            df = e.select(measurement_id="_id", **common, measurement_concept_id="concept_id",
                          measurement_date="_date", measurement_datetime="start",
                          measurement_type_concept_id="_type", value_as_number="value_number",
                          unit_concept_id="unit_concept_id", measurement_source_value="code",
                          measurement_source_concept_id="source_concept_id", unit_source_value="unit",
                          value_as_concept_id="value_concept_id",
                          value_source_value=pl.coalesce(pl.col("value_text"), pl.col("value_number").cast(pl.String),
                                                         pl.col("value_code")))
        elif table == "observation":
            df = e.select(observation_id="_id", **common, observation_concept_id="concept_id",
                          observation_date="_date", observation_datetime="start",
                          observation_type_concept_id="_type", value_as_number="value_number",
                          value_as_string="value_text", unit_concept_id="unit_concept_id",
                          observation_source_value="code", observation_source_concept_id="source_concept_id",
                          unit_source_value="unit", value_as_concept_id="value_concept_id",
                          # a coded result without a text keeps its code (its concept may be 0)
                          value_source_value=pl.coalesce("value_text", "value_code"))
        else:
            df = e.select(device_exposure_id="_id", **common, device_concept_id="concept_id",
                          device_exposure_start_date="_date", device_exposure_start_datetime="start",
                          device_exposure_end_date=pl.col("end").dt.date(), device_exposure_end_datetime="end",
                          device_type_concept_id="_type", quantity=pl.col("quantity").cast(pl.Int32),
                          device_source_value="code", device_source_concept_id="source_concept_id")
        out[table] = cdm.conform(df, table).sort(cdm.table(table).primary_key or "person_id")
    return out


def build_registry_modifiers(site: str, mapped: pl.DataFrame, vocab: Vocabulary) -> pl.DataFrame:
    """The stage group and TNM measurements of the diagnoses that record them (``cancer_registry``),
    linked to their condition occurrence (a code with several targets: its first row)."""
    fields = [c for c in cancer_registry.REGISTRY_FIELDS if c in mapped.columns]
    if not fields:
        return pl.DataFrame(schema=cdm.table("measurement").polars_schema)
    dx = mapped.filter((pl.col("table") == "condition_occurrence") & ~pl.col("event_key").str.contains("#", literal=True)
                       & pl.any_horizontal(pl.col(c).is_not_null() for c in fields))
    dx = dx.with_columns(condition_occurrence_id=stable_id(f"condition_occurrence:{site}", dx["event_key"]))
    wanted = [c for c, _ in cancer_registry.MODIFIER_CONCEPTS.values()]
    wanted += [*cancer_registry.STAGE_VALUE.values(), *cancer_registry.CATEGORY_VALUE.values()]
    return cancer_registry.registry_modifiers(
        dx.select("condition_occurrence_id", "person_id", "visit_occurrence_id", "start", *fields), site,
        concepts_present(vocab, wanted))


def build_notes(site: str, notes: pl.DataFrame, person_ids: pl.DataFrame, ids: pl.DataFrame) -> pl.DataFrame:
    n = notes.join(person_ids, on="person_key", how="inner").join(ids, on="visit_key", how="left")
    n = n.with_columns(note_id=stable_id(f"note:{site}", n["note_key"]))
    return cdm.conform(n.select(
        "note_id", "person_id", "visit_occurrence_id", "visit_detail_id",
        note_date=pl.col("date").dt.date(), note_datetime="date", note_type_concept_id=pl.lit(EHR),
        note_class_concept_id=pl.lit(0), note_title="title", note_text="text", encoding_concept_id=pl.lit(0),
        language_concept_id=pl.lit(0), note_source_value="note_key",
    ), "note").sort("note_id")


# what an observation period spans: table -> (start, end) date columns
PERIOD_DATES: dict[str, tuple[str, str]] = {
    "visit_occurrence": ("visit_start_date", "visit_end_date"),
    "condition_occurrence": ("condition_start_date", "condition_start_date"),
    "drug_exposure": ("drug_exposure_start_date", "drug_exposure_end_date"),
    "procedure_occurrence": ("procedure_date", "procedure_date"),
    "measurement": ("measurement_date", "measurement_date"),
    "observation": ("observation_date", "observation_date"),
    "device_exposure": ("device_exposure_start_date", "device_exposure_start_date"),
}


def build_observation_period(site: str, person: pl.DataFrame, tables: dict[str, pl.DataFrame],
                             known: pl.DataFrame | None = None) -> pl.DataFrame:
    """One observation period per person, as the CDM asks ("each Person needs to have at least one
    OBSERVATION_PERIOD record"): from the first to the last date of the person's visits and events
    (``PERIOD_DATES``), notes and death (observation ends with it). A person with none of them gets a one-day
    period on the last date the source knew the person (``known``: person_id, date; the hospital
    record's ``updated_at``). A person with no dated fact at all gets none: ``harmonise_site`` leaves
    such a person out of ``person`` and counts it (``omop.no_dated_fact``)."""
    frames = [tables[t].select("person_id", start=pl.col(s), end=pl.coalesce(pl.col(e), pl.col(s)))
              for t, (s, e) in PERIOD_DATES.items()]
    if "death" in tables:
        frames.append(tables["death"].select("person_id", start=pl.col("death_date"), end=pl.col("death_date")))
    if "note" in tables:  # a note is written when the person is seen
        frames.append(tables["note"].select("person_id", start=pl.col("note_date"), end=pl.col("note_date")))
    dates = pl.concat(frames).drop_nulls("start")
    if known is not None:
        fallback = known.select("person_id", start=pl.col("date"), end=pl.col("date")).drop_nulls("start")
        dates = pl.concat([dates, fallback.join(dates.select("person_id").unique(), on="person_id", how="anti")])
    op = dates.group_by("person_id").agg(
        observation_period_start_date=pl.col("start").min(), observation_period_end_date=pl.col("end").max()
    ).join(person.select("person_id"), on="person_id", how="inner")
    op = op.with_columns(observation_period_id=stable_id(f"observation_period:{site}", op["person_id"].cast(pl.String)),
                         period_type_concept_id=pl.lit(PERIOD_TYPE))
    return cdm.conform(op, "observation_period").sort("observation_period_id")


def build_death(persons: pl.DataFrame, person_ids: pl.DataFrame, vocab: Vocabulary | None = None) -> pl.DataFrame:
    """One row per person with a death date. The cause (staging ``death_cause_code`` in
    ``death_cause_system``) keeps its source value and source concept; ``cause_concept_id`` is its
    standard concept when that is a Condition (as OHDSI's ETL-Synthea maps the death certificate's
    reason), else 0."""
    d = persons.filter(pl.col("death_date").is_not_null()).join(person_ids, on="person_key", how="inner")
    for c in ("death_cause_code", "death_cause_system"):
        if c not in d.columns:
            d = d.with_columns(pl.lit(None, pl.String).alias(c))
    d = d.with_columns(_code=pl.col("death_cause_code").str.strip_chars(),
                       cause_concept_id=pl.lit(None, pl.Int32), cause_source_concept_id=pl.lit(None, pl.Int32))
    if vocab is not None and d["_code"].drop_nulls().len():
        parts = []
        for system, part in d.partition_by("death_cause_system", as_dict=True, maintain_order=True).items():
            m = vocab.code_map(vocabulary_of(system[0])).select("source_code", "concept_id", "source_concept_id", "domain_id")
            part = part.drop("cause_concept_id", "cause_source_concept_id").join(
                m, left_on=pl.col("_code").str.to_uppercase(), right_on="source_code", how="left", maintain_order="left")
            parts.append(part.with_columns(
                cause_concept_id=pl.when(pl.col("domain_id") == "Condition").then(pl.col("concept_id")).otherwise(0)
                .cast(pl.Int32),
                cause_source_concept_id=pl.col("source_concept_id").fill_null(0).cast(pl.Int32),
            ).select(d.columns))
        d = pl.concat(parts)
    d = d.with_columns(
        cause_concept_id=pl.when(pl.col("_code").is_not_null()).then(pl.col("cause_concept_id").fill_null(0)),
        cause_source_concept_id=pl.when(pl.col("_code").is_not_null()).then(pl.col("cause_source_concept_id").fill_null(0)),
    )
    return cdm.conform(d.select("person_id", "cause_concept_id", "cause_source_concept_id", death_date="death_date",
                                death_datetime=pl.col("death_date").cast(pl.Datetime("us")),
                                death_type_concept_id=pl.lit(EHR), cause_source_value="_code"), "death").sort("person_id")


def build_cdm_source(site: str, vocab_version: str, today: dt.date) -> pl.DataFrame:
    return cdm.conform(pl.DataFrame({
        "cdm_source_name": [f"ds4h {site}"], "cdm_source_abbreviation": [site[:25]], "cdm_holder": [site],
        "source_release_date": [today], "cdm_release_date": [today], "cdm_version": ["v5.4"],
        "cdm_version_concept_id": [756265], "vocabulary_version": [vocab_version],
    }), "cdm_source")


def _derived(site: str, tables: dict[str, pl.DataFrame], vocab: Vocabulary) -> dict[str, pl.DataFrame]:
    """Eras (transforms/eras.py), oncology episodes and the cancer modifiers (stage, grade) as measurements
    linked to their diagnosis (transforms/episodes.py); the modifiers are added to ``measurement``."""
    drug_eras = eras.drug_era(tables["drug_exposure"], vocab.ancestor, vocab.concept, site)
    episode, episode_event = episodes.oncology_episodes(
        tables["condition_occurrence"], tables["drug_exposure"], tables["procedure_occurrence"], vocab.concept, site,
        ancestor=vocab.ancestor)
    modifiers = episodes.cancer_modifiers(tables["condition_occurrence"], vocab.concept, site, vocab.ancestor)
    measurement = pl.concat([tables["measurement"], modifiers]).sort(cdm.table("measurement").primary_key or "person_id")
    return {"condition_era": eras.condition_era(tables["condition_occurrence"], site), "drug_era": drug_eras.eras,
            "episode": episode, "episode_event": episode_event, "measurement": measurement}


def harmonise_site(site: str, stg: dict[str, pl.DataFrame], vocab: Vocabulary, today: dt.date | None = None) -> OmopResult:
    """Staging tables of one site -> OMOP tables of the identifiable zone, with row accounting."""
    today = today or dt.date.today()
    persons, visits, events = stg["persons"], stg["visits"], stg["events"]
    location = build_location(site, persons, stg["care_sites"], vocab.country_concepts())
    care_site = build_care_sites(site, stg["care_sites"], location)
    cs_ids = care_site.select("care_site_id", care_site_key="care_site_source_value")
    provider = build_providers(site, stg["providers"], cs_ids)
    present = concepts_present(vocab, [*RACE.values(), *ETHNICITY.values(), *VISIT_CONCEPT.values(), *FALLBACK.values()])
    person = build_person(site, persons, location, present)
    person_ids = person.select("person_id", person_key="person_source_value")
    pr_ids = provider.select("provider_id", provider_key="provider_source_value")
    visit_occurrence, visit_detail, ids, merged_visits = build_visits(
        site, visits, person_ids, provider_ids=pr_ids, care_site_ids=cs_ids,
        visit_concepts=_available(VISIT_CONCEPT, present))
    known = events["person_key"].is_in(person_ids["person_key"].implode())
    orphans = events.filter(~known).with_columns(
        default_table=pl.col("kind").replace_strict(KIND_TABLE, default="observation", return_dtype=pl.String)
    ).group_by("default_table").len()
    ev = events.filter(known).join(person_ids, on="person_key", how="inner")
    ev = _assign_visits(ev, ids, visit_occurrence)
    ev = _event_providers(ev, visits, pr_ids, visit_occurrence)
    mapped = map_events(ev, vocab)
    tables: dict[str, pl.DataFrame] = {
        "location": location, "care_site": care_site, "provider": provider, "person": person,
        "visit_occurrence": visit_occurrence, "visit_detail": visit_detail,
        **build_events(site, mapped, vocab),
    }
    registry = build_registry_modifiers(site, mapped, vocab)
    if registry.height:
        tables["measurement"] = pl.concat([tables["measurement"], registry]).sort("measurement_id")
    tables["death"] = build_death(persons, person_ids, vocab)
    tables["note"] = build_notes(site, stg["notes"], person_ids, ids)
    record_dates = persons.select(person_key="person_key", date=pl.col("updated_at").dt.date()).join(
        person_ids, on="person_key", how="inner").select("person_id", "date")
    tables["observation_period"] = build_observation_period(site, person, tables, record_dates)
    # a person with no dated fact (no visit, event, death or record date) has no observation period: left out
    undated = person.join(tables["observation_period"].select("person_id"), on="person_id", how="anti")["person_id"]
    if undated.len():
        person = person.filter(~pl.col("person_id").is_in(undated.implode()))
        tables["person"] = person
    measured = tables["measurement"].height
    tables.update(_derived(site, tables, vocab))
    modifiers = tables["measurement"].height - measured  # cancer modifiers derived from the diagnoses
    tables["cdm_source"] = build_cdm_source(site, vocab.name or "unknown", today)

    acc: list[dict[str, object]] = []

    def row(table: str, category: str, rows: int, reason: str | None = None) -> None:
        if rows or category in ("in", "out"):
            acc.append(dict(table=table, category=category, reason_code=reason, rows=rows))

    row("person", "in", persons.height)
    row("person", "quarantined", undated.len(), "omop.no_dated_fact")
    row("person", "out", person.height)
    row("visit_occurrence", "in", visits.height)
    row("visit_occurrence", "merged", merged_visits, "omop.visit_rollup")
    row("visit_occurrence", "out", visit_occurrence.height)
    counts = mapped.group_by("default_table", "table").len()
    for t in EVENT_TABLES:
        part = counts.filter(pl.col("default_table") == t)
        lost = int(orphans.filter(pl.col("default_table") == t)["len"].sum())
        rerouted = int(part.filter(pl.col("table") != t)["len"].sum())
        stayed = int(part.filter(pl.col("table") == t)["len"].sum())
        row(t, "in", stayed + rerouted + lost)
        row(t, "quarantined", lost, "omop.unknown_person")
        row(t, "rerouted", rerouted, "omop.domain_route")
        row(t, "out", stayed)
        # rows rerouted here from another kind's table: produced in this table
        row(t, "produced", int(counts.filter((pl.col("table") == t) & (pl.col("default_table") != t))["len"].sum()))
    row("measurement", "produced", modifiers, "omop.cancer_modifier")
    row("measurement", "produced", registry.height, "omop.registry_modifier")
    row("note", "in", stg["notes"].height)
    row("note", "out", tables["note"].height)
    for t in ("location", "care_site", "provider", "visit_detail", "death", "observation_period",
              "condition_era", "drug_era", "episode", "episode_event", "cdm_source"):
        row(t, "produced", tables[t].height)
    # a diagnosis with a histology whose ICDO3 concept the vocabulary lacks maps by its ICD-10 code: counted apart
    histology = pl.col("source_value").is_not_null() & (pl.col("table") == "condition_occurrence")
    fallback = histology & (pl.col("code_system") != cancer_registry.ICDO3)
    coverage = (
        mapped.with_columns(code_system=pl.when(fallback).then(pl.col("code_system") + " (ICDO3 lacking)")
                            .otherwise(pl.col("code_system")))
        .group_by("table", "code_system", "code").agg(
            description=pl.col("description").drop_nulls().first(), rows=pl.len(),
            mapped=(pl.col("concept_id") != 0).all(),
        ).rename({"code": "source_code"}).sort("table", "rows", "source_code", descending=[False, True, False])
    )
    total = mapped.height
    n_mapped = int((mapped["concept_id"] != 0).sum())
    return OmopResult(
        tables=tables,
        accounting=accounting_frame("omop", site, acc),
        coverage=coverage,
        stats={"mapped_share": n_mapped / total if total else 1.0,
               "icdo3_conditions": int(mapped.select((histology & ~fallback).sum()).item()),
               "icdo3_via_icd10": int(mapped.select(fallback.sum()).item())},
    )


GLOBAL_TABLES = ("location", "care_site", "provider", "cdm_source")
"""Tables that are not per person: built from the whole site (locations: deduplicated over buckets)."""

Sink = Callable[[str, int, pl.DataFrame], None]
"""Receives (table, bucket, rows) for every per-person table of every bucket."""


def merge_coverage(parts: list[pl.DataFrame]) -> pl.DataFrame:
    """Coverage frames of several buckets -> one row per (table, code_system, source_code)."""
    cov = pl.concat(parts)
    return (
        cov.group_by("table", "code_system", "source_code", maintain_order=True).agg(
            description=pl.col("description").drop_nulls().first(), rows=pl.col("rows").sum().cast(pl.UInt32),
            mapped=pl.col("mapped").all(),
        ).select(cov.columns).sort("table", "rows", "source_code", descending=[False, True, False])
    )


def parts_accounting(stage: str, site: str, parts: list[pl.DataFrame], locations: int | None) -> pl.DataFrame:
    """The row accounting of a site processed in parts (person buckets): per-person tables summed over
    the parts; the site-wide tables, which every part builds again, counted once (from the first part);
    locations, deduplicated over the parts, by their final count."""
    kept = [acc.filter(pl.col("table") != "location" if k == 0 else ~pl.col("table").is_in(GLOBAL_TABLES))
            for k, acc in enumerate(parts)]
    if locations is not None:
        kept.append(accounting_frame(stage, site, [dict(table="location", category="produced", reason_code=None,
                                                        rows=locations)]))
    return merge_accounting(kept)


def harmonise_buckets(site: str, buckets: Iterable[Staging], vocab: Vocabulary, sink: Sink,
                      today: dt.date | None = None) -> OmopResult:
    """``harmonise_site`` over a site split into person buckets (``transforms/buckets.py``).

    Every staging dict holds the persons of one bucket, their visits, events and notes, and the
    site's providers and care sites. Per-person tables go to ``sink`` bucket by bucket (concatenated,
    they are what ``harmonise_site`` gives for the whole site: every step is per person); the
    returned result holds the site-wide tables (``GLOBAL_TABLES``), the summed row accounting and the
    merged mapping coverage, so memory is bounded by a bucket."""
    today = today or dt.date.today()
    first: OmopResult | None = None
    locations: list[pl.DataFrame] = []
    accounting: list[pl.DataFrame] = []
    coverage: list[pl.DataFrame] = []
    icdo3 = {"icdo3_conditions": 0.0, "icdo3_via_icd10": 0.0}
    for k, stg in enumerate(buckets):
        result = harmonise_site(site, stg, vocab, today)
        for key in icdo3:
            icdo3[key] += result.stats.get(key, 0)
        for t, df in result.tables.items():
            if t not in GLOBAL_TABLES:
                sink(t, k, df)
        locations.append(result.tables["location"])
        accounting.append(result.accounting)
        coverage.append(result.coverage)
        if first is None:
            first = result
    if first is None:
        raise ValueError("harmonise_buckets needs at least one bucket")
    location = pl.concat(locations).unique("location_id", keep="first").sort("location_source_value")
    tables = {"location": location, **{t: first.tables[t] for t in GLOBAL_TABLES if t != "location"}}
    cov = merge_coverage(coverage)
    total = int(cov["rows"].sum())
    mapped = int(cov.filter(pl.col("mapped"))["rows"].sum())
    return OmopResult(tables=tables, accounting=parts_accounting("omop", site, accounting, location.height), coverage=cov,
                      stats={"mapped_share": mapped / total if total else 1.0, "buckets": k + 1, **icdo3})


def usagi_csv(coverage: pl.DataFrame, top: int = 500) -> pl.DataFrame:
    """Unmapped codes, most frequent first, in the shape Usagi imports (sourceCode, sourceName, sourceFrequency)."""
    return (
        coverage.filter(~pl.col("mapped")).sort("rows", "source_code", descending=[True, False]).head(top)
        .select(sourceCode="source_code", sourceName=pl.col("description").fill_null(""),
                sourceFrequency="rows", **{"ADD_INFO:codeSystem": "code_system", "ADD_INFO:table": "table"})
    )


def coverage_summary(coverage: pl.DataFrame) -> pl.DataFrame:
    """Per table and code system: rows and distinct codes, mapped and total."""
    return coverage.group_by("table", "code_system").agg(
        rows=pl.col("rows").sum(), rows_mapped=pl.col("rows").filter(pl.col("mapped")).sum(),
        codes=pl.len(), codes_mapped=pl.col("mapped").sum(),
    ).sort("table", "code_system")


def passthrough_omop(site: str, raw: dict[str, pl.DataFrame]) -> OmopResult:
    """An existing OMOP CDM (omop-csv): the typed tables as they are, missing ones empty.

    Tables ds4h does not carry further (cohort, cost, specimen, ...) are accounted as quarantined
    with ``omop.table_not_carried``; nothing disappears silently."""
    tables: dict[str, pl.DataFrame] = {}
    acc: list[dict[str, object]] = []
    for t in OMOP_TABLES:
        df = raw.get(t)
        if df is None:
            tables[t] = pl.DataFrame(schema=cdm.table(t).polars_schema)
            continue
        tables[t] = cdm.conform(df, t)
        acc.append(dict(table=t, category="in", reason_code=None, rows=df.height))
        acc.append(dict(table=t, category="out", reason_code=None, rows=tables[t].height))
    for t, df in sorted(raw.items()):
        if t not in tables:
            acc.append(dict(table=t, category="in", reason_code=None, rows=df.height))
            acc.append(dict(table=t, category="quarantined", reason_code="omop.table_not_carried", rows=df.height))
    coverage = pl.DataFrame(schema={"table": pl.String, "code_system": pl.String, "source_code": pl.String,
                                    "description": pl.String, "rows": pl.UInt32, "mapped": pl.Boolean})
    return OmopResult(tables, accounting_frame("omop", site, acc), coverage, {"mapped_share": 1.0})


def omop_identity(person: pl.DataFrame) -> pl.DataFrame:
    """The identity frame of a source that is already OMOP: its person_source_value (or id) only."""
    return person.select(
        "person_id", patient_id=pl.coalesce(pl.col("person_source_value"), pl.col("person_id").cast(pl.String)),
        matricule=pl.lit(None, pl.String),
        birth_date=pl.coalesce(pl.col("birth_datetime").dt.date(),
                               pl.date(pl.col("year_of_birth"), pl.col("month_of_birth").fill_null(1), pl.col("day_of_birth").fill_null(1))),
        last_name=pl.lit(None, pl.String), first_name=pl.lit(None, pl.String), phone=pl.lit(None, pl.String),
        email=pl.lit(None, pl.String), address=pl.lit(None, pl.String), other_names=pl.lit(None, pl.String),
        other_ids=pl.lit(None, pl.String),
    )
