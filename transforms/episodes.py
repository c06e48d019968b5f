"""Oncology episodes (OMOP CDM v5.4 EPISODE and EPISODE_EVENT), pure polars.

Follows the OMOP oncology conventions (CDM v5.4 EPISODE/EPISODE_EVENT user guide; OHDSI Oncology
WG, https://ohdsi.github.io/OncologyWG/): disease episodes are the parents of treatment episodes
(``episode_parent_id``), a Treatment Regimen is the parent of its Treatment Cycles, and EPISODE_EVENT
links an episode to the clinical records it abstracts, naming their table with a CDM "Field" concept.

What is derived here, from one site's CONDITION_OCCURRENCE, DRUG_EXPOSURE and PROCEDURE_OCCURRENCE:

- **Disease First Occurrence** (32528): one per person and cancer, at its first diagnosis.
  A cancer is a condition whose concept name matches ``neoplasm|carcinoma|cancer|malignan``
  (case-insensitive) and not ``benign|in situ|suspected|history of|screening|fear of``, or whose
  condition_source_value is an ICD-10 malignant neoplasm code (C00–C97, i.e. ``C`` and two digits).
  A cancer is the condition_concept_id; an unmapped one (concept 0) is told apart by its source
  value. ``episode_object_concept_id`` = the condition concept, ``episode_source_value`` = the
  source code of the first diagnosis, ``episode_start_date`` = the first diagnosis date,
  ``episode_end_date`` = the last related event (a later record of the same cancer or the end of a
  child regimen), null when there is none. A cancer diagnosis whose name states a stage or grade
  (``STAGED_NAME``: "…, TNM stage 1") restates the person's latest unstaged cancer diagnosed on or
  before it: it joins that cancer's episode (stage is a modifier, not a new primary); with none before
  it, it is a primary of its own.
- **Treatment Cycle** (32532): a run of a person's antineoplastic treatment events (after their first
  cancer diagnosis) at most ``cycle_gap_days`` (7) apart: days 1–5 of a 28-day cycle are one cycle.
- **Treatment Regimen** (32531): consecutive cycles of the same drug combination (the drug concepts of
  a cycle; a procedure-only cycle keeps the combination before it), split where the combination
  changes or a cycle starts more than ``regimen_gap_days`` (90) after the previous cycle's end (as
  OHDSI's OncoRegimenFinder groups by ingredients and time). Treatment events are drug exposures of an
  antineoplastic drug (concept name containing one of ``ANTINEOPLASTIC_NAMES``, or a source value that
  is an ATC L01/L02 code) and procedures whose concept name contains chemotherapy, radiotherapy or
  radiation. An event's end is ``coalesce(end date, start + days_supply, start)``. The parent is the
  person's cancer with the latest first diagnosis on or before the regimen's start.
  ``episode_number`` = the line of treatment (1, 2, …) within that cancer. The Oncology WG wants a
  regimen concept here (HemOnc), which neither the source nor the demo vocabulary has, so
  ``episode_object_concept_id`` is the treatment modality, a standard SNOMED procedure present in the
  demo vocabulary: 4273629 Chemotherapy, 4029715 Radiation oncology AND/OR radiotherapy, or 45766298
  Combined chemotherapy and radiation therapy.
- Cycles (optional, ``cycles``) are the regimen's children, numbered within it, with its object concept.
- EPISODE_EVENT: each drug exposure (field concept 1147094 drug_exposure.drug_exposure_id) and
  procedure (1147082 procedure_occurrence.procedure_occurrence_id) is linked to its regimen and, with
  cycles, to its cycle; each diagnosis (1147127 condition_occurrence.condition_occurrence_id) to its
  disease episode, when the vocabulary has that field concept (``link_conditions``; the demo
  vocabularies do).

``episode_type_concept_id`` is 32817 (EHR). Ids are stable unkeyed 63-bit hashes
(``transforms.omop.stable_id``) of the site and the episode's natural key, so the same input always
gives the same ids.

Both outputs go through ``schemas.omop.conform``; ``episode_parent_id`` and ``event_id`` hold 63-bit
row ids, which ``schemas.omop`` types as Int64 (identifier-like ``*_id`` integers).
"""

from __future__ import annotations

import polars as pl

from schemas import omop as cdm
from transforms.eras import merge_intervals
from transforms.ids import stable_id

DISEASE_FIRST_OCCURRENCE = 32528
TREATMENT_REGIMEN = 32531
TREATMENT_CYCLE = 32532
EHR = 32817
FIELD_DRUG_EXPOSURE = 1147094  # drug_exposure.drug_exposure_id
FIELD_PROCEDURE_OCCURRENCE = 1147082  # procedure_occurrence.procedure_occurrence_id
FIELD_CONDITION_OCCURRENCE = 1147127  # condition_occurrence.condition_occurrence_id (not in the demo vocabulary)
CHEMOTHERAPY = 4273629
RADIOTHERAPY = 4029715
CHEMORADIOTHERAPY = 45766298
REGIMEN_GAP_DAYS = 90
CYCLE_GAP_DAYS = 7  # administrations at most this far apart are one cycle (days 1-5 of a 28-day cycle)

CANCER_NAME = r"(?i)neoplasm|carcinoma|cancer|malignan"
NOT_CANCER_NAME = r"(?i)benign|in situ|suspected|history of|screening|fear of"
# a diagnosis that restates a cancer with its stage or grade ("... of lung, TNM stage 1"): a modifier of
# the cancer diagnosed before it, not a new primary (OHDSI Oncology WG: stage is a modifier)
STAGED_NAME = r"(?i)\bstage\b|\btnm\b|\bgrade\b|\bT[0-4][a-c]?N[0-3]M[01]\b"
CANCER_ICD10 = r"(?i)^\s*C\d{2}"
ANTINEOPLASTIC_NAMES = (
    "cisplatin", "carboplatin", "oxaliplatin", "fluorouracil", "capecitabine", "paclitaxel", "docetaxel",
    "etoposide", "leuprolide", "leuprorelin", "goserelin", "pemetrexed", "irinotecan", "gemcitabine",
    "cyclophosphamide", "doxorubicin", "epirubicin", "vinorelbine", "vincristine", "trastuzumab",
    "bevacizumab", "cetuximab", "pembrolizumab", "nivolumab", "tamoxifen", "letrozole", "anastrozole",
    "exemestane", "bicalutamide", "abiraterone", "enzalutamide",
)
ANTINEOPLASTIC_NAME = "(?i)" + "|".join(ANTINEOPLASTIC_NAMES)
ANTINEOPLASTIC_ATC = r"(?i)^\s*L0[12]"
CHEMO_PROCEDURE = r"(?i)chemotherap"
RADIO_PROCEDURE = r"(?i)radiotherap|radiation"

def _names(concept: pl.DataFrame) -> pl.DataFrame:
    return concept.select(pl.col("concept_id").cast(pl.Int32), pl.col("concept_name").cast(pl.String))


def _key(*parts: pl.Expr) -> pl.Expr:
    return pl.concat_str([p.cast(pl.String) for p in parts], separator="|")


def _diseases(condition_occurrence: pl.DataFrame, names: pl.DataFrame, site: str) -> pl.DataFrame:
    """All cancer diagnoses, with their disease key and episode id."""
    co = condition_occurrence.select(
        pl.col("condition_occurrence_id").cast(pl.Int64),
        pl.col("person_id").cast(pl.Int64),
        concept=pl.col("condition_concept_id").cast(pl.Int32).fill_null(0),
        start=pl.col("condition_start_date").cast(pl.Date),
        end=pl.col("condition_end_date").cast(pl.Date),
        source=pl.col("condition_source_value").cast(pl.String),
    ).filter(pl.col("person_id").is_not_null() & pl.col("start").is_not_null())
    co = co.join(names, left_on="concept", right_on="concept_id", how="left", maintain_order="left")
    name = pl.col("concept_name").fill_null("")
    by_name = (pl.col("concept") != 0) & name.str.contains(CANCER_NAME) & ~name.str.contains(NOT_CANCER_NAME)
    by_code = pl.col("source").fill_null("").str.contains(CANCER_ICD10)
    co = co.filter(by_name | by_code)
    disease = pl.when(pl.col("concept") != 0).then(pl.col("concept").cast(pl.String)).otherwise(
        pl.lit("0:") + pl.col("source").fill_null("").str.strip_chars().str.to_uppercase()
    )
    co = co.with_columns(disease=disease, staged=pl.col("concept_name").fill_null("").str.contains(STAGED_NAME))
    # a staged restatement belongs to the person's latest unstaged cancer diagnosed on or before it
    primaries = co.filter(~pl.col("staged")).select("person_id", _p_start="start", _p_disease="disease")
    staged = (co.filter(pl.col("staged")).with_row_index("_r")
              .join(primaries, on="person_id", how="left")
              .filter(pl.col("_p_start").is_null() | (pl.col("_p_start") <= pl.col("start")))
              .sort("_r", "_p_start", "_p_disease", descending=[False, True, False], nulls_last=True)
              .group_by("_r", maintain_order=True).agg(pl.all().first())
              .with_columns(disease=pl.coalesce("_p_disease", "disease"))
              .drop("_r", "_p_start", "_p_disease"))
    co = pl.concat([co.filter(~pl.col("staged")), staged.select(co.columns)])
    return co.with_columns(
        disease_episode_id=stable_id(f"episode:{site}", co.select(
            k=_key(pl.lit("disease"), pl.col("person_id"), pl.col("disease")))["k"])
    )


def _treatment_events(
    drug_exposure: pl.DataFrame, procedure_occurrence: pl.DataFrame, names: pl.DataFrame
) -> pl.DataFrame:
    """Antineoplastic drug exposures and chemo/radiotherapy procedures as dated events."""
    de = drug_exposure.select(
        pl.col("person_id").cast(pl.Int64),
        event_id=pl.col("drug_exposure_id").cast(pl.Int64),
        concept=pl.col("drug_concept_id").cast(pl.Int32).fill_null(0),
        start=pl.col("drug_exposure_start_date").cast(pl.Date),
        end=pl.col("drug_exposure_end_date").cast(pl.Date),
        days_supply=pl.col("days_supply").cast(pl.Int32),
        source=pl.col("drug_source_value").cast(pl.String),
    ).join(names, left_on="concept", right_on="concept_id", how="left", maintain_order="left")
    supply_end = pl.when(pl.col("days_supply") > 0).then(pl.col("start") + pl.duration(days=pl.col("days_supply")))
    de = de.filter(
        pl.col("concept_name").fill_null("").str.contains(ANTINEOPLASTIC_NAME)
        | pl.col("source").fill_null("").str.contains(ANTINEOPLASTIC_ATC)
    ).select(
        "person_id", "event_id", "start", "concept",
        end=pl.coalesce("end", supply_end, "start"),
        field=pl.lit(FIELD_DRUG_EXPOSURE, dtype=pl.Int32),
        chemo=pl.lit(True),
        radio=pl.lit(False),
    )
    po = procedure_occurrence.select(
        pl.col("person_id").cast(pl.Int64),
        event_id=pl.col("procedure_occurrence_id").cast(pl.Int64),
        concept=pl.col("procedure_concept_id").cast(pl.Int32).fill_null(0),
        start=pl.col("procedure_date").cast(pl.Date),
        end=pl.col("procedure_end_date").cast(pl.Date),
    ).join(names, left_on="concept", right_on="concept_id", how="left", maintain_order="left")
    name = pl.col("concept_name").fill_null("")
    po = po.with_columns(chemo=name.str.contains(CHEMO_PROCEDURE), radio=name.str.contains(RADIO_PROCEDURE))
    po = po.filter(pl.col("chemo") | pl.col("radio")).select(
        "person_id", "event_id", "start", "concept",
        end=pl.coalesce("end", "start"),
        field=pl.lit(FIELD_PROCEDURE_OCCURRENCE, dtype=pl.Int32),
        chemo="chemo",
        radio="radio",
    )
    ev = pl.concat([de, po], how="vertical_relaxed").filter(
        pl.col("person_id").is_not_null() & pl.col("start").is_not_null() & pl.col("event_id").is_not_null()
    )
    return ev.with_columns(end=pl.max_horizontal("start", "end"))


def _modality() -> pl.Expr:
    return (
        pl.when(pl.col("chemo") & pl.col("radio")).then(pl.lit(CHEMORADIOTHERAPY))
        .when(pl.col("radio")).then(pl.lit(RADIOTHERAPY))
        .otherwise(pl.lit(CHEMOTHERAPY))
    )


def oncology_episodes(
    condition_occurrence: pl.DataFrame,
    drug_exposure: pl.DataFrame,
    procedure_occurrence: pl.DataFrame,
    concept: pl.DataFrame,
    site: str,
    *,
    regimen_gap_days: int = REGIMEN_GAP_DAYS,
    cycle_gap_days: int = CYCLE_GAP_DAYS,
    cycles: bool = True,
    link_conditions: bool | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(EPISODE, EPISODE_EVENT) for one site: disease, regimen and cycle episodes (see module doc).
    ``link_conditions``: link the diagnoses to their disease episode (default: when the vocabulary
    has the field concept 1147127)."""
    if link_conditions is None:
        link_conditions = concept.filter(pl.col("concept_id") == FIELD_CONDITION_OCCURRENCE).height > 0
    names = _names(concept)
    dx = _diseases(condition_occurrence, names, site)
    ns = f"episode:{site}"

    first = dx.sort("person_id", "disease", "staged", "start", "condition_occurrence_id", nulls_last=True).group_by(
        "person_id", "disease", maintain_order=True
    ).agg(
        episode_id=pl.col("disease_episode_id").first(),
        episode_object_concept_id=pl.col("concept").first(),
        episode_source_value=pl.col("source").first(),
        episode_start_date=pl.col("start").min(),
        last_record=pl.coalesce("end", "start").max(),
    )

    ev = _treatment_events(drug_exposure, procedure_occurrence, names)
    onset = first.group_by("person_id").agg(onset=pl.col("episode_start_date").min())
    ev = ev.join(onset, on="person_id", how="inner").filter(pl.col("start") >= pl.col("onset")).drop("onset")
    # cycles: runs of administrations at most CYCLE_GAP_DAYS apart; a regimen: consecutive cycles of the
    # same combination (drugs and procedures, by concept) less than regimen_gap_days apart
    ev = merge_intervals(ev, ["person_id"], "start", "end", cycle_gap_days, out="cycle")
    cyc_all = ev.group_by("person_id", "cycle").agg(
        c_start=pl.col("start").min(), c_end=pl.col("end").max(),
        combo=pl.col("concept").filter(pl.col("field") == FIELD_DRUG_EXPOSURE).unique().sort().cast(pl.String)
        .str.join(","),
    ).sort("person_id", "cycle")
    # the combination is the drugs' (a procedure-only cycle keeps the one before it)
    cyc_all = cyc_all.with_columns(combo=pl.when(pl.col("combo") != "").then(pl.col("combo"))
                                   .forward_fill().over("person_id").fill_null(""))
    new_regimen = (
        (pl.col("cycle") == 1)
        | (pl.col("combo") != pl.col("combo").shift(1).over("person_id"))
        | (pl.col("c_start") > pl.col("c_end").shift(1).over("person_id") + pl.duration(days=regimen_gap_days))
    )
    cyc_all = cyc_all.with_columns(regimen=new_regimen.cast(pl.Int32).cum_sum().over("person_id"))
    ev = ev.join(cyc_all.select("person_id", "cycle", "regimen"), on=["person_id", "cycle"], how="left")

    regimens = ev.group_by("person_id", "regimen").agg(
        episode_start_date=pl.col("start").min(),
        episode_end_date=pl.col("end").max(),
        chemo=pl.col("chemo").any(),
        radio=pl.col("radio").any(),
    ).with_columns(episode_object_concept_id=_modality())
    regimens = regimens.sort("person_id", "episode_start_date")
    regimens = regimens.with_columns(episode_id=stable_id(ns, regimens.select(
        k=_key(pl.lit("regimen"), pl.col("person_id"), pl.col("episode_start_date")))["k"]))
    parents = (
        regimens.select("person_id", "episode_id", "episode_start_date")
        .join(first.select("person_id", "disease", parent_id="episode_id", dx_start="episode_start_date"),
              on="person_id", how="inner")
        .filter(pl.col("dx_start") <= pl.col("episode_start_date"))
        .sort("episode_id", "dx_start", "disease", descending=[False, True, False])
        .group_by("episode_id", maintain_order=True)
        .agg(episode_parent_id=pl.col("parent_id").first())
    )
    regimens = regimens.join(parents, on="episode_id", how="left").with_columns(
        episode_number=pl.col("episode_start_date").rank("ordinal").over("episode_parent_id"),
        episode_concept_id=pl.lit(TREATMENT_REGIMEN),
    )

    child_end = regimens.group_by("episode_parent_id").agg(child_end=pl.col("episode_end_date").max())
    diseases = first.join(child_end, left_on="episode_id", right_on="episode_parent_id", how="left").with_columns(
        episode_end_date=pl.max_horizontal("last_record", "child_end"),
        episode_concept_id=pl.lit(DISEASE_FIRST_OCCURRENCE),
    ).with_columns(
        episode_end_date=pl.when(pl.col("episode_end_date") > pl.col("episode_start_date"))
        .then(pl.col("episode_end_date"))
    )

    regimen_of = regimens.select("person_id", "regimen", regimen_id="episode_id",
                                 regimen_object="episode_object_concept_id")
    ev = ev.join(regimen_of, on=["person_id", "regimen"], how="left")
    links = [ev.select(episode_id="regimen_id", event_id="event_id", episode_event_field_concept_id="field")]
    parts = [
        diseases.select("episode_id", "person_id", "episode_concept_id", "episode_start_date", "episode_end_date",
                        "episode_object_concept_id", "episode_source_value"),
        regimens.select("episode_id", "person_id", "episode_concept_id", "episode_start_date", "episode_end_date",
                        "episode_parent_id", "episode_number", "episode_object_concept_id"),
    ]
    if cycles:
        cyc = ev.group_by("person_id", "regimen_id", "cycle").agg(
            episode_start_date=pl.col("start").min(), episode_end_date=pl.col("end").max(),
            episode_object_concept_id=pl.col("regimen_object").first(),
        ).sort("person_id", "episode_start_date")
        cyc = cyc.with_columns(
            episode_id=stable_id(ns, cyc.select(
                k=_key(pl.lit("cycle"), pl.col("person_id"), pl.col("episode_start_date")))["k"]),
            episode_number=pl.col("episode_start_date").rank("ordinal").over("regimen_id"),
            episode_concept_id=pl.lit(TREATMENT_CYCLE),
        )
        parts.append(cyc.rename({"regimen_id": "episode_parent_id"}).select(
            "episode_id", "person_id", "episode_concept_id", "episode_start_date", "episode_end_date",
            "episode_parent_id", "episode_number", "episode_object_concept_id"))
        links.append(ev.join(cyc.select("person_id", "cycle", cycle_id="episode_id"), on=["person_id", "cycle"])
                     .select(episode_id="cycle_id", event_id="event_id", episode_event_field_concept_id="field"))
    if link_conditions:
        links.append(dx.select(episode_id="disease_episode_id", event_id="condition_occurrence_id",
                               episode_event_field_concept_id=pl.lit(FIELD_CONDITION_OCCURRENCE)))

    episode = pl.concat(parts, how="diagonal_relaxed").with_columns(episode_type_concept_id=pl.lit(EHR))
    episode = cdm.conform(episode, "episode").sort(
        "person_id", "episode_start_date", "episode_concept_id", "episode_id")
    event = cdm.conform(pl.concat(links, how="vertical_relaxed"), "episode_event").unique().sort(
        "episode_id", "episode_event_field_concept_id", "event_id")
    return episode, event
