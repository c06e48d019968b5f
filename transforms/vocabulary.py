"""OMOP vocabularies: concepts, "Maps to" relationships and a SOURCE_TO_CONCEPT_MAP.

Mapping follows OHDSI: source code -> source concept -> "Maps to" -> standard concept; codes of
local systems (ICD-10 and ATC at the demo hospitals) reach standard concepts through the
SOURCE_TO_CONCEPT_MAP, as Usagi exports it. Unmapped codes get concept_id 0 and are never dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import polars as pl

BUNDLED = "bundled:demo"

_CONCEPT_SCHEMA = {
    "concept_id": pl.Int32, "concept_name": pl.String, "domain_id": pl.String, "vocabulary_id": pl.String,
    "concept_class_id": pl.String, "standard_concept": pl.String, "concept_code": pl.String,
}


class VocabularyError(Exception):
    """A vocabulary folder is missing or incomplete; the message says what to do."""


@dataclass(frozen=True)
class Vocabulary:
    concept: pl.DataFrame
    maps_to: pl.DataFrame  # concept_id_1 -> concept_id_2
    stcm: pl.DataFrame  # source_code, source_vocabulary_id, source_code_description, target_concept_id, source_concept_id

    def code_map(self, vocabulary_id: str) -> pl.DataFrame:
        """source_code -> source_concept_id, concept_id (standard, 0 if none), domain_id.

        Codes of ``vocabulary_id`` found in CONCEPT map through "Maps to"; codes found only in the
        SOURCE_TO_CONCEPT_MAP map to its target. Code matching is case-insensitive.
        """
        src = self.concept.filter(pl.col("vocabulary_id") == vocabulary_id).select(
            source_code=pl.col("concept_code").str.to_uppercase(), source_concept_id=pl.col("concept_id")
        ).unique(subset="source_code", keep="first")
        via_concept = (
            src.join(self.maps_to, left_on="source_concept_id", right_on="concept_id_1", how="left")
            .rename({"concept_id_2": "concept_id"})
            .unique(subset="source_code", keep="first")
        )
        via_stcm = self.stcm.filter(pl.col("source_vocabulary_id") == vocabulary_id).select(
            source_code=pl.col("source_code").str.to_uppercase(),
            source_concept_id=pl.col("source_concept_id"),
            concept_id=pl.col("target_concept_id"),
        ).unique(subset="source_code", keep="first")
        both = pl.concat([via_stcm, via_concept.filter(~pl.col("source_code").is_in(via_stcm["source_code"].implode()))])
        standard = self.concept.filter(pl.col("standard_concept") == "S").select("concept_id", "domain_id")
        return (
            both.join(standard, on="concept_id", how="left")
            .with_columns(
                concept_id=pl.when(pl.col("domain_id").is_null()).then(0).otherwise(pl.col("concept_id")).cast(pl.Int32),
                source_concept_id=pl.col("source_concept_id").fill_null(0).cast(pl.Int32),
            )
            .sort("source_code")
        )

    def lookup(self, df: pl.DataFrame, code_col: str, vocabulary_id: str, prefix: str) -> pl.DataFrame:
        """Add ``<prefix>_concept_id``, ``<prefix>_source_concept_id`` and ``<prefix>_domain``."""
        m = self.code_map(vocabulary_id).rename(
            {"concept_id": f"{prefix}_concept_id", "source_concept_id": f"{prefix}_source_concept_id",
             "domain_id": f"{prefix}_domain"}
        )
        out = df.join(m, left_on=pl.col(code_col).str.to_uppercase(), right_on="source_code", how="left", maintain_order="left")
        if "source_code" in out.columns and "source_code" not in df.columns:
            out = out.drop("source_code")
        return out.with_columns(
            pl.col(f"{prefix}_concept_id").fill_null(0),
            pl.col(f"{prefix}_source_concept_id").fill_null(0),
        )


def _read_athena(folder: Path, name: str, required: bool = True) -> pl.DataFrame | None:
    for candidate in (folder / f"{name}.csv", folder / f"{name.lower()}.csv", folder / f"{name}.parquet"):
        if candidate.exists():
            if candidate.suffix == ".parquet":
                return pl.read_parquet(candidate)
            return pl.read_csv(candidate, separator="\t", infer_schema=False, quote_char=None)
    if required:
        raise VocabularyError(f"{folder} has no {name}.csv: give an Athena download folder or 'bundled:demo'")
    return None


@cache
def load_vocabulary(location: str = BUNDLED) -> Vocabulary:
    if location == BUNDLED:
        folder = Path(str(resources.files("schemas").joinpath("vocabulary/demo")))
    elif location.startswith("bundled:"):
        raise VocabularyError(f"unknown bundled vocabulary {location!r}; use 'bundled:demo'")
    else:
        folder = Path(location)
        if not folder.is_dir():
            raise VocabularyError(f"vocabulary folder {folder} does not exist: fix 'vocabulary' in the config")
    concept = _read_athena(folder, "CONCEPT")
    rel = _read_athena(folder, "CONCEPT_RELATIONSHIP")
    stcm = _read_athena(folder, "SOURCE_TO_CONCEPT_MAP", required=False)
    assert concept is not None and rel is not None
    concept = concept.select(list(_CONCEPT_SCHEMA)).cast(_CONCEPT_SCHEMA)  # type: ignore[arg-type]
    maps_to = (
        rel.filter((pl.col("relationship_id") == "Maps to") & (pl.col("invalid_reason").fill_null("") == ""))
        .select(pl.col("concept_id_1").cast(pl.Int32), pl.col("concept_id_2").cast(pl.Int32))
        .sort("concept_id_1", "concept_id_2")
    )
    if stcm is None:
        stcm = pl.DataFrame(schema={"source_code": pl.String, "source_vocabulary_id": pl.String,
                                    "source_code_description": pl.String, "target_concept_id": pl.Int32,
                                    "source_concept_id": pl.Int32})
    else:
        stcm = stcm.select(
            "source_code", "source_vocabulary_id", "source_code_description",
            pl.col("target_concept_id").cast(pl.Int32), pl.col("source_concept_id").cast(pl.Int32),
        )
    return Vocabulary(concept, maps_to, stcm)
