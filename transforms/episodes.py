"""Oncology episodes (OMOP CDM v5.4 EPISODE and EPISODE_EVENT) and cancer modifiers, pure polars.

Follows the OHDSI Oncology Working Group's model (https://ohdsi.github.io/OncologyWG/, the CDM v5.4
EPISODE/EPISODE_EVENT user guide) and, for regimens, OHDSI's OncoRegimenFinder; the rules are
written out in ``docs/oncology-episodes.md``. From one site's CONDITION_OCCURRENCE, DRUG_EXPOSURE and
PROCEDURE_OCCURRENCE:

- **Disease First Occurrence** (32528): one per person and primary cancer, at its first diagnosis.
  A cancer is a condition whose concept name matches ``neoplasm|carcinoma|cancer|malignan``
  (case-insensitive) and not ``benign|in situ|suspected|history of|screening|fear of``, or whose
  condition_source_value is an ICD-10 malignant neoplasm code (``C`` and two digits). A cancer is its
  condition_concept_id (an unmapped one, concept 0, its source value). A **stage or grade variant**
  (a concept name holding ``stage <n>`` / ``TNM stage <n>`` / ``grade <n>``, e.g. SNOMED
  424132000 "Non-small cell carcinoma of lung, TNM stage 1") is no new cancer: it belongs to the
  person's non-variant cancer whose concept is its ancestor (CONCEPT_ANCESTOR, when given), else to
  the person's non-variant cancer first diagnosed closest in time to it; a person with variants only
  gets one disease per variant name without its stage/grade phrase. ``episode_object_concept_id`` and
  ``episode_source_value`` come from the first diagnosis; ``episode_end_date`` is the last related
  record (a later record or variant of the cancer, the end of a child regimen), null when none.
- **Cancer modifiers** (``cancer_modifiers``): every stage variant gives a MEASUREMENT row
  3022698 "Stage group.clinical Cancer" (LOINC 21908-9), value_source_value the stage phrase; a grade
  variant a row with concept 0 (no grade concept in the bundled vocabulary) and source value
  ``grade``; both linked to the variant's condition occurrence (``measurement_event_id`` =
  condition_occurrence_id, ``meas_event_field_concept_id`` = 1147127).
- **Treatment Regimen** (32531): treatment events are drug exposures of an antineoplastic drug (a
  concept name containing one of ``ANTINEOPLASTIC_NAMES``, or an ATC L01/L02 source value) and
  procedures whose concept name says chemotherapy, radiotherapy or radiation, on or after the
  person's first cancer diagnosis. An event's end is ``coalesce(end date, start + days_supply,
  start)``. Treatment days no more than ``BLOCK_GAP_DAYS`` (3) apart form an administration block
  (days 1-5 of a cycle); a block's combination is the set of its agents (ingredient names, ATC codes
  of unmapped drugs). A new regimen starts when a block starts more than ``regimen_gap_days`` (90)
  after the latest end so far, or when its combination differs from the regimen's (a block of
  procedures only keeps the combination around it). The regimen spans its first to last
  administration; ``episode_source_value`` is the combination (``cisplatin+paclitaxel``), its parent
  the person's cancer with the latest first diagnosis on or before its start, ``episode_number`` the
  line of treatment within that cancer. The Oncology WG wants a HemOnc regimen concept as object,
  which the demo vocabulary lacks, so ``episode_object_concept_id`` is the modality: 4273629
  Chemotherapy, 4029715 Radiation oncology AND/OR radiotherapy, or 45766298 Combined chemotherapy
  and radiation therapy.
- **Treatment Cycle** (32532): the regimen's **interval** is the median number of days between the
  starts of its successive blocks; a block that starts at least half that interval after the
  previous one opens a new cycle (a closer block joins the current cycle). A cycle spans its first
  to last administration, numbered within its regimen, child of the regimen.
- EPISODE_EVENT: each cancer's condition occurrences (field 1147127
  condition_occurrence.condition_occurrence_id) are linked to its disease episode, each treatment drug
  exposure (1147094 drug_exposure.drug_exposure_id) and procedure (1147082
  procedure_occurrence.procedure_occurrence_id) to its regimen and cycle.

``episode_type_concept_id`` is 32817 (EHR). Ids are stable unkeyed 63-bit hashes
(``transforms.ids.stable_id``) of the site and the episode's natural key.
"""

from __future__ import annotations

import polars as pl

from schemas import omop as cdm
from transforms.ids import stable_id

DISEASE_FIRST_OCCURRENCE = 32528
TREATMENT_REGIMEN = 32531
TREATMENT_CYCLE = 32532
EHR = 32817
FIELD_DRUG_EXPOSURE = 1147094  # drug_exposure.drug_exposure_id
FIELD_PROCEDURE_OCCURRENCE = 1147082  # procedure_occurrence.procedure_occurrence_id
FIELD_CONDITION_OCCURRENCE = 1147127  # condition_occurrence.condition_occurrence_id
CHEMOTHERAPY = 4273629
RADIOTHERAPY = 4029715
CHEMORADIOTHERAPY = 45766298
STAGE_GROUP = 3022698  # LOINC 21908-9 Stage group.clinical Cancer
REGIMEN_GAP_DAYS = 90
BLOCK_GAP_DAYS = 3

CANCER_NAME = r"(?i)neoplasm|carcinoma|cancer|malignan"
NOT_CANCER_NAME = r"(?i)benign|in situ|suspected|history of|screening|fear of"
CANCER_ICD10 = r"(?i)^\s*(?:C\d{2}|\d{4}/3-C\d{2})"  # ICD-10 Cxx, or an ICD-O-3 malignant histology-topography
STAGE_PHRASE = r"(?i)\b(?:TNM\s+)?stage\s+(?:0|[1-4]|IV|I{1,3})(?:[A-C]\d?)?\b"
GRADE_PHRASE = r"(?i)\bgrade\s+(?:[1-4]|IV|I{1,3})\b"
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


def _ids(ns: str, df: pl.DataFrame, *parts: pl.Expr) -> pl.Series:
    return stable_id(ns, df.select(k=_key(*parts))["k"])


def _diseases(condition_occurrence: pl.DataFrame, names: pl.DataFrame, site: str,
              ancestor: pl.DataFrame | None) -> pl.DataFrame:
    """All cancer diagnoses with their disease key, variant flag and disease episode id."""
    co = condition_occurrence.select(
        pl.col("condition_occurrence_id").cast(pl.Int64),
        pl.col("person_id").cast(pl.Int64),
        visit_occurrence_id=pl.col("visit_occurrence_id").cast(pl.Int64) if "visit_occurrence_id" in
        condition_occurrence.columns else pl.lit(None, pl.Int64),
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
    known = pl.col("concept") != 0
    co = co.with_columns(
        stage=pl.when(known).then(name.str.extract(f"({STAGE_PHRASE})", 1)),
        grade=pl.when(known).then(name.str.extract(f"({GRADE_PHRASE})", 1)),
        own=pl.when(known).then(pl.col("concept").cast(pl.String)).otherwise(
            pl.lit("0:") + pl.col("source").fill_null("").str.strip_chars().str.to_uppercase()),
    ).with_columns(variant=pl.col("stage").is_not_null() | pl.col("grade").is_not_null())
    co = co.with_columns(stripped=name.str.replace_all(STAGE_PHRASE, "").str.replace_all(GRADE_PHRASE, "")
                         .str.replace_all(r"[\s,;:-]+$", "").str.strip_chars().str.to_lowercase())

    bases = co.filter(~pl.col("variant")).group_by("person_id", "own").agg(
        base_concept=pl.col("concept").first(), base_start=pl.col("start").min())
    variants = co.filter(pl.col("variant")).select("condition_occurrence_id", "person_id", "concept", "start")
    cand = variants.join(bases, on="person_id", how="inner")
    if ancestor is not None and cand.height:
        anc = ancestor.select(base_concept=pl.col("ancestor_concept_id").cast(pl.Int32),
                              concept=pl.col("descendant_concept_id").cast(pl.Int32)).unique().with_columns(
            related=pl.lit(True))
        cand = cand.join(anc, on=["base_concept", "concept"], how="left")
    else:
        cand = cand.with_columns(related=pl.lit(None, pl.Boolean))
    cand = cand.with_columns(
        rank=pl.when(pl.col("related").fill_null(False)).then(0).otherwise(1),
        dist=(pl.col("start") - pl.col("base_start")).dt.total_days().abs(),
    ).sort("condition_occurrence_id", "rank", "dist", "base_start", "own")
    chosen = cand.group_by("condition_occurrence_id", maintain_order=True).agg(base=pl.col("own").first())
    co = co.join(chosen, on="condition_occurrence_id", how="left", maintain_order="left").with_columns(
        disease=pl.when(~pl.col("variant")).then(pl.col("own"))
        .otherwise(pl.coalesce(pl.col("base"), pl.lit("name:") + pl.col("stripped"))))
    return co.with_columns(disease_episode_id=_ids(f"episode:{site}", co, pl.lit("disease"), pl.col("person_id"),
                                                   pl.col("disease")))


def cancer_modifiers(condition_occurrence: pl.DataFrame, concept: pl.DataFrame, site: str,
                     ancestor: pl.DataFrame | None = None) -> pl.DataFrame:
    """MEASUREMENT rows for the stage and grade of cancer diagnoses, linked to their condition occurrence."""
    dx = _diseases(condition_occurrence, _names(concept), site, ancestor)
    stage = dx.filter(pl.col("stage").is_not_null()).with_columns(
        kind=pl.lit("stage"), measurement_concept_id=pl.lit(STAGE_GROUP, pl.Int32), value=pl.col("stage"))
    grade = dx.filter(pl.col("grade").is_not_null()).with_columns(
        kind=pl.lit("grade"), measurement_concept_id=pl.lit(0, pl.Int32), value=pl.col("grade"))
    m = pl.concat([stage, grade])
    m = m.with_columns(measurement_id=_ids(f"measurement:{site}", m, pl.lit("cancer-modifier"), pl.col("kind"),
                                           pl.col("condition_occurrence_id")))
    out = m.select(
        "measurement_id", "person_id", "measurement_concept_id", "visit_occurrence_id",
        measurement_date="start", measurement_datetime=pl.col("start").cast(pl.Datetime("us")),
        measurement_type_concept_id=pl.lit(EHR),
        measurement_source_value=pl.when(pl.col("kind") == "stage").then(pl.lit("21908-9")).otherwise(pl.lit("grade")),
        measurement_source_concept_id="measurement_concept_id",
        value_source_value=pl.col("value").str.strip_chars(),
        measurement_event_id="condition_occurrence_id",
        meas_event_field_concept_id=pl.lit(FIELD_CONDITION_OCCURRENCE),
    )
    return cdm.conform(out, "measurement").sort("measurement_id")


def _treatment_events(
    drug_exposure: pl.DataFrame, procedure_occurrence: pl.DataFrame, names: pl.DataFrame
) -> pl.DataFrame:
    """Antineoplastic drug exposures and chemo/radiotherapy procedures as dated events with their agents."""
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
    name = pl.col("concept_name").fill_null("")
    atc = pl.col("source").fill_null("").str.strip_chars().str.to_uppercase()
    de = de.filter(name.str.contains(ANTINEOPLASTIC_NAME) | atc.str.contains(ANTINEOPLASTIC_ATC)).select(
        "person_id", "event_id", "start",
        end=pl.coalesce("end", supply_end, "start"),
        field=pl.lit(FIELD_DRUG_EXPOSURE, dtype=pl.Int32),
        chemo=pl.lit(True),
        radio=pl.lit(False),
        agents=pl.when(name.str.contains(ANTINEOPLASTIC_NAME))
        .then(name.str.to_lowercase().str.extract_all(ANTINEOPLASTIC_NAME.removeprefix("(?i)")))
        .otherwise(pl.concat_list(atc)),
    )
    po = procedure_occurrence.select(
        pl.col("person_id").cast(pl.Int64),
        event_id=pl.col("procedure_occurrence_id").cast(pl.Int64),
        concept=pl.col("procedure_concept_id").cast(pl.Int32).fill_null(0),
        start=pl.col("procedure_date").cast(pl.Date),
        end=pl.col("procedure_end_date").cast(pl.Date),
    ).join(names, left_on="concept", right_on="concept_id", how="left", maintain_order="left")
    po = po.with_columns(chemo=name.str.contains(CHEMO_PROCEDURE), radio=name.str.contains(RADIO_PROCEDURE))
    po = po.filter(pl.col("chemo") | pl.col("radio")).select(
        "person_id", "event_id", "start",
        end=pl.coalesce("end", "start"),
        field=pl.lit(FIELD_PROCEDURE_OCCURRENCE, dtype=pl.Int32),
        chemo="chemo",
        radio="radio",
        agents=pl.lit([], dtype=pl.List(pl.String)),
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


def _blocks(ev: pl.DataFrame, regimen_gap_days: int) -> pl.DataFrame:
    """Administration blocks of treatment events, with their regimen and cycle numbers per person."""
    ev = ev.sort("person_id", "start", "event_id")
    prev_day = pl.col("start").shift(1).over("person_id")
    ev = ev.with_columns(block=(prev_day.is_null() | (pl.col("start") > prev_day + pl.duration(days=BLOCK_GAP_DAYS)))
                         .cast(pl.Int32).cum_sum().over("person_id"))
    blocks = ev.group_by("person_id", "block").agg(
        start=pl.col("start").min(), end=pl.col("end").max(),
        combination=pl.col("agents").list.explode(keep_nulls=False, empty_as_null=False).drop_nulls().unique().sort()
        .str.join("+"),
    ).sort("person_id", "block")
    reach = pl.col("end").cum_max().shift(1).over("person_id")
    blocks = blocks.with_columns(
        segment=(reach.is_null() | (pl.col("start") > reach + pl.duration(days=regimen_gap_days)))
        .cast(pl.Int32).cum_sum().over("person_id"),
        combination=pl.when(pl.col("combination") != "").then(pl.col("combination")),
    )
    # a block of procedures only keeps the combination around it (before it, else after it)
    blocks = blocks.with_columns(combination=pl.col("combination").forward_fill().backward_fill()
                                 .over("person_id", "segment").fill_null(""))
    changed = pl.col("combination") != pl.col("combination").shift(1).over("person_id", "segment")
    blocks = blocks.with_columns(
        regimen=(pl.col("segment") != pl.col("segment").shift(1).over("person_id")).fill_null(True)
        .or_(changed.fill_null(False)).cast(pl.Int32).cum_sum().over("person_id"))
    gap = (pl.col("start") - pl.col("start").shift(1)).dt.total_days().over("person_id", "regimen")
    blocks = blocks.with_columns(gap=gap).with_columns(interval=pl.col("gap").median().over("person_id", "regimen"))
    opens = pl.col("gap").is_null() | (pl.col("gap") * 2 >= pl.col("interval"))
    blocks = blocks.with_columns(cycle=opens.cast(pl.Int32).cum_sum().over("person_id", "regimen"))
    return ev.join(
        blocks.select("person_id", "block", "combination", "regimen", "cycle", "interval"),
        on=["person_id", "block"], how="left")


def oncology_episodes(
    condition_occurrence: pl.DataFrame,
    drug_exposure: pl.DataFrame,
    procedure_occurrence: pl.DataFrame,
    concept: pl.DataFrame,
    site: str,
    *,
    ancestor: pl.DataFrame | None = None,
    regimen_gap_days: int = REGIMEN_GAP_DAYS,
    cycles: bool = True,
    link_conditions: bool = True,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(EPISODE, EPISODE_EVENT) for one site: disease, regimen and cycle episodes (see module doc)."""
    if regimen_gap_days < 0:
        raise ValueError(f"regimen_gap_days must be >= 0, got {regimen_gap_days}")
    names = _names(concept)
    dx = _diseases(condition_occurrence, names, site, ancestor)
    ns = f"episode:{site}"

    # the first diagnosis that is no stage/grade variant names the disease; a variant-only one, its first variant
    first = dx.sort("person_id", "disease", "variant", "start", "condition_occurrence_id", nulls_last=True).group_by(
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
    ev = _blocks(ev, regimen_gap_days)

    regimens = ev.group_by("person_id", "regimen").agg(
        episode_start_date=pl.col("start").min(),
        episode_end_date=pl.col("end").max(),
        chemo=pl.col("chemo").any(),
        radio=pl.col("radio").any(),
        combination=pl.col("combination").first(),
    ).with_columns(episode_object_concept_id=_modality(),
                   episode_source_value=pl.when(pl.col("combination") != "").then(pl.col("combination").str.slice(0, 50)))
    regimens = regimens.sort("person_id", "episode_start_date")
    regimens = regimens.with_columns(episode_id=_ids(ns, regimens, pl.lit("regimen"), pl.col("person_id"),
                                                     pl.col("episode_start_date")))
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
                        "episode_parent_id", "episode_number", "episode_object_concept_id", "episode_source_value"),
    ]
    if cycles:
        cyc = ev.group_by("person_id", "regimen_id", "cycle").agg(
            episode_start_date=pl.col("start").min(), episode_end_date=pl.col("end").max(),
            episode_object_concept_id=pl.col("regimen_object").first(),
        ).sort("person_id", "episode_start_date")
        cyc = cyc.with_columns(
            episode_id=_ids(ns, cyc, pl.lit("cycle"), pl.col("person_id"), pl.col("episode_start_date")),
            episode_number=pl.col("cycle"),
            episode_concept_id=pl.lit(TREATMENT_CYCLE),
        )
        parts.append(cyc.select("episode_id", "person_id", "episode_concept_id", "episode_start_date",
                                "episode_end_date", episode_parent_id="regimen_id", episode_number="episode_number",
                                episode_object_concept_id="episode_object_concept_id"))
        links.append(ev.join(cyc.select("regimen_id", "cycle", cycle_id="episode_id"), on=["regimen_id", "cycle"])
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
