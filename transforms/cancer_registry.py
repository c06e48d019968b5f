"""A cancer diagnosis as a registry codes it -> OMOP, as the OHDSI Oncology Working Group models it. Pure polars.

The staging events of a diagnosis may carry the registry's fields (``transforms/staging.py``):
``histology`` (ICD-O-3 morphology with behaviour, ``8140/3``), the clinical TNM categories
``tnm_t``/``tnm_n``/``tnm_m`` (UICC 8th edition: ``T2``, ``N1``, ``M0``) and the ``stage_group``
at diagnosis (``IIB``). From them:

- **the condition** (``with_icdo3``): the ICDO3 "histology-topography" concept (code ``8140/3-C34.1``;
  the topography is the diagnosis's ICD-10 code cut to one decimal, a three-character code taking
  ``.9``: C61 -> C61.9) when the vocabulary has it as a standard concept, else the ICD-10 code's own
  map (a SNOMED cancer concept); either way ``condition_source_value`` keeps the ICD-O-3 code.
- **the modifiers** (``registry_modifiers``): one MEASUREMENT row per field, linked to the condition
  occurrence (``measurement_event_id`` = its id, ``meas_event_field_concept_id`` 1147127): the stage
  group as 3022698 *Stage group.clinical Cancer* (LOINC 21908-9), ``value_source_value`` the stage
  (``IIB``: upper case, without a ``Stage`` prefix, arabic digits as roman numerals), ``value_as_concept_id``
  the Cancer Modifier *Stage n* of its main group (1635838, 1635131, 1634191, 1633987; 0 for stage 0
  and where the vocabulary lacks it); T, N and M as the LOINC clinical class concepts 3008841
  (21905-5), 3007727 (21906-3) and 3006575 (21907-1), ``value_source_value`` the category and
  ``value_as_concept_id`` the Cancer Modifier *AJCC/UICC* category where one was sourced (T1
  1635564, T2 1635562, M1 1635142; every other category 0, its source value kept).
"""

from __future__ import annotations

from collections.abc import Collection

import polars as pl

from schemas import omop as cdm
from transforms.ids import stable_id

ICDO3 = "ICDO3"
FIELD_CONDITION_OCCURRENCE = 1147127
EHR = 32817
STAGE_GROUP = 3022698  # LOINC 21908-9 Stage group.clinical Cancer
# registry field -> (measurement concept, its LOINC code)
MODIFIER_CONCEPTS: dict[str, tuple[int, str]] = {
    "stage_group": (STAGE_GROUP, "21908-9"),
    "tnm_t": (3008841, "21905-5"),  # Primary tumor.clinical [Class] Cancer
    "tnm_n": (3007727, "21906-3"),  # Regional lymph nodes.clinical [Class] Cancer
    "tnm_m": (3006575, "21907-1"),  # Distant metastases.clinical [Class] Cancer
}
REGISTRY_FIELDS = tuple(MODIFIER_CONCEPTS)
# main stage group -> Cancer Modifier "Stage n"
STAGE_VALUE = {"I": 1635838, "II": 1635131, "III": 1634191, "IV": 1633987}
# TNM category (upper case) -> Cancer Modifier "AJCC/UICC <category> Category" (only those sourced)
CATEGORY_VALUE = {"T1": 1635564, "T2": 1635562, "M1": 1635142}
_ROMAN = {"1": "I", "2": "II", "3": "III", "4": "IV"}


def topography(icd10: pl.Expr) -> pl.Expr:
    """The ICD-O-3 topography of an ICD-10 code: C34.1 -> C34.1, C341 -> C34.1, C61 -> C61.9 (null when
    the code is no ICD-10 ``C`` code)."""
    s = icd10.str.strip_chars().str.to_uppercase().str.replace_all(r"[.\s]", "")
    return pl.when(s.str.contains(r"^C\d{2}")).then(
        s.str.slice(0, 3) + "." + pl.when(s.str.len_chars() > 3).then(s.str.slice(3, 1)).otherwise(pl.lit("9")))


def icdo3_code(histology: pl.Expr, icd10: pl.Expr) -> pl.Expr:
    """``8140/3`` and ``C34.1`` -> ``8140/3-C34.1`` (null when either is missing)."""
    return histology.str.strip_chars() + "-" + topography(icd10)


def with_icdo3(events: pl.DataFrame, icdo3_concepts: pl.DataFrame) -> pl.DataFrame:
    """Staging events with ``source_value``: the ICD-O-3 code of a condition that has a histology (else
    null); where ``icdo3_concepts`` (``source_code``: the upper-case codes of the vocabulary's standard
    ICDO3 concepts) holds it, ``code``/``code_system`` become that code and ``ICDO3``."""
    if "histology" not in events.columns:
        return events.with_columns(source_value=pl.lit(None, pl.String))
    code = pl.when((pl.col("kind") == "condition") & pl.col("histology").is_not_null()).then(
        icdo3_code(pl.col("histology"), pl.col("code")))
    out = events.with_columns(source_value=code)
    known = icdo3_concepts["source_code"].implode()
    found = pl.col("source_value").is_not_null() & pl.col("source_value").str.to_uppercase().is_in(known)
    return out.with_columns(
        code=pl.when(found).then(pl.col("source_value")).otherwise(pl.col("code")),
        code_system=pl.when(found).then(pl.lit(ICDO3)).otherwise(pl.col("code_system")),
    )


def normalise_stage(stage: pl.Expr) -> pl.Expr:
    """A stage group as written -> its short form: ``Stage 2b`` -> ``IIB``, ``IIIA`` -> ``IIIA`` (null when empty)."""
    s = (stage.str.strip_chars().str.to_uppercase().str.replace(r"\s*\([^)]*\)$", "")  # "(qualifier value)"
         .str.replace(r"^(?:TNM\s+|CLINICAL\s+|AJCC\s+)?STAGE(?:\s+GROUP)?\s*", "").str.replace_all(r"\s", ""))
    digit = s.str.extract(r"^([1-4])", 1)
    s = pl.when(digit.is_not_null()).then(
        digit.replace_strict(_ROMAN, default=None, return_dtype=pl.String) + s.str.slice(1)).otherwise(s)
    return pl.when(s != "").then(s)


def main_stage(stage: pl.Expr) -> pl.Expr:
    """The main group (``0``, ``I`` .. ``IV``) of a normalised stage group, null when it has none."""
    return stage.str.extract(r"^(IV|I{1,3}|0)", 1)


def _category(value: pl.Expr) -> pl.Expr:
    return value.str.strip_chars().str.replace_all(r"\s", "")


def registry_modifiers(conditions: pl.DataFrame, site: str, present: Collection[int]) -> pl.DataFrame:
    """MEASUREMENT rows of the registry fields of condition occurrences.

    ``conditions``: condition_occurrence_id, person_id, visit_occurrence_id, start (Datetime), and the
    ``REGISTRY_FIELDS`` (strings, null when not recorded). ``present``: the concept ids the vocabulary
    holds (a concept it lacks is written as 0)."""
    def have(concept: int) -> int:
        return concept if concept in present else 0

    frames = []
    for field, (concept, loinc) in MODIFIER_CONCEPTS.items():
        if field not in conditions.columns:
            continue
        part = conditions.filter(pl.col(field).is_not_null() & (pl.col(field).str.strip_chars() != ""))
        if not part.height:
            continue
        if field == "stage_group":
            value = normalise_stage(pl.col(field))
            value_concept = main_stage(value).replace_strict(
                {k: have(v) for k, v in STAGE_VALUE.items()}, default=0, return_dtype=pl.Int32)
        else:
            value = _category(pl.col(field))
            value_concept = value.str.to_uppercase().replace_strict(
                {k: have(v) for k, v in CATEGORY_VALUE.items()}, default=0, return_dtype=pl.Int32)
        frames.append(part.select(
            "condition_occurrence_id", "person_id", "visit_occurrence_id", "start",
            field=pl.lit(field), measurement_concept_id=pl.lit(have(concept), pl.Int32),
            measurement_source_value=pl.lit(loinc), value_source_value=value, value_as_concept_id=value_concept,
        ))
    if not frames:
        return pl.DataFrame(schema=cdm.table("measurement").polars_schema)
    m = pl.concat(frames)
    m = m.with_columns(measurement_id=stable_id(
        f"measurement:{site}", m.select(k=pl.concat_str([pl.lit("registry-modifier"), pl.col("field"),
                                                          pl.col("condition_occurrence_id").cast(pl.String)],
                                                         separator="|"))["k"]))
    out = m.select(
        "measurement_id", "person_id", "measurement_concept_id", "visit_occurrence_id",
        measurement_date=pl.col("start").dt.date(), measurement_datetime="start",
        measurement_type_concept_id=pl.lit(EHR), measurement_source_value="measurement_source_value",
        measurement_source_concept_id="measurement_concept_id", value_as_concept_id="value_as_concept_id",
        value_source_value="value_source_value", measurement_event_id="condition_occurrence_id",
        meas_event_field_concept_id=pl.lit(FIELD_CONDITION_OCCURRENCE),
    )
    return cdm.conform(out, "measurement").sort("measurement_id")
