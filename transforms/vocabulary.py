"""OMOP vocabularies: concepts, "Maps to" relationships and a SOURCE_TO_CONCEPT_MAP.

Mapping follows OHDSI: source code -> source concept -> "Maps to" -> standard concept; the standard
concept's domain decides the target table. Codes of local systems (ICD-10 and ATC at the demo
hospitals) reach standard concepts through the SOURCE_TO_CONCEPT_MAP, as Usagi exports it. Unmapped
codes keep their source value and source_concept_id, get concept_id 0, and are never dropped.

Where a vocabulary comes from (``load_vocabulary(location)``):

- ``bundled:demo``: the small TAB CSVs under ``schemas/vocabulary/demo/``;
- a folder written by ``ds4h vocabulary load`` (it has ``vocabulary.json``): Parquet;
- a raw Athena download folder: loaded once into ``$DS4H_HOME/vocabulary/<name>/`` (again when its
  files change) and read from there.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import cache, cached_property
from importlib import resources
from pathlib import Path
from typing import Literal

import polars as pl

from transforms import athena
from transforms.athena import VocabularyError

__all__ = ["BUNDLED", "RELEASE_TABLES", "Vocabulary", "VocabularyError", "VocabularySubset", "is_bundled",
           "load_vocabulary", "release_subset"]

BUNDLED = "bundled:demo"

_CONCEPT_COLUMNS = ("concept_id", "concept_name", "domain_id", "vocabulary_id", "concept_class_id",
                    "standard_concept", "concept_code")
_ANCESTOR_COLUMNS = ("ancestor_concept_id", "descendant_concept_id", "min_levels_of_separation")
_MAPS_TO_SCHEMA = pl.Schema({"concept_id_1": pl.Int32(), "concept_id_2": pl.Int32()})

Kind = Literal["memory", "athena", "parquet"]


def _empty(table: str, columns: tuple[str, ...] | None = None) -> pl.DataFrame:
    schema = athena.vocabulary_schema(table)
    return pl.DataFrame(schema={c: schema[c] for c in (columns or tuple(schema))})


@dataclass(frozen=True, eq=False)
class Vocabulary:
    """Concepts (the columns of ``_CONCEPT_COLUMNS``), valid "Maps to" pairs and the STCM.

    ``folder``/``kind`` say where the other tables can be read on demand (``scan``, ``ancestor``).
    """

    concept: pl.DataFrame
    maps_to: pl.DataFrame  # concept_id_1 -> concept_id_2, valid "Maps to" only
    stcm: pl.DataFrame  # SOURCE_TO_CONCEPT_MAP columns (source_code, source_concept_id, ..., target_concept_id, ...)
    folder: Path | None = None
    kind: Kind = "memory"
    name: str = ""
    versions: Mapping[str, str | None] = field(default_factory=dict)  # vocabulary_id -> vocabulary_version
    # concept_id_1 -> concept_id_2, valid "Maps to value" only: the value of a pre-coordinated code
    # ("Family history of diabetes" maps to "Family history of clinical finding", its value to "Diabetes")
    maps_to_value: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=_MAPS_TO_SCHEMA))
    _code_maps: dict[str, pl.DataFrame] = field(default_factory=dict, repr=False)  # code_map's results

    def scan(self, table: str) -> pl.LazyFrame | None:
        """A lazy, typed scan of any vocabulary table of this vocabulary, or None if it has none."""
        if self.folder is None:
            return None
        if self.kind == "parquet":
            p = self.folder / f"{table}.parquet"
            return pl.scan_parquet(p) if p.is_file() else None
        src = athena.find_tables(self.folder).get(table)
        return athena.scan_athena(src, table) if src is not None else None

    @cached_property
    def ancestor(self) -> pl.DataFrame:
        """CONCEPT_ANCESTOR (ancestor_concept_id, descendant_concept_id, min_levels_of_separation),
        read on first use; empty when the vocabulary has none."""
        lf = self.scan("concept_ancestor")
        if lf is None:
            return _empty("concept_ancestor", _ANCESTOR_COLUMNS)
        return lf.select(_ANCESTOR_COLUMNS).collect(engine="streaming")

    @cached_property
    def _country_concepts(self) -> dict[str, int]:
        from schemas.geo import COUNTRIES

        wanted = {n.casefold(): code for code, (name, others) in COUNTRIES.items() for n in (name, *others)}
        found = self.concept.filter(
            (pl.col("domain_id") == "Geography") & (pl.col("vocabulary_id") == "OSM")
            & (pl.col("concept_class_id") == "2nd level") & (pl.col("standard_concept") == "S")
            & pl.col("concept_name").str.to_lowercase().is_in(list(wanted))
        ).select("concept_id", "concept_name").sort("concept_id")
        out: dict[str, int] = {}
        for cid, name in found.iter_rows():
            out.setdefault(wanted[str(name).casefold()], int(cid))
        return out

    def country_concepts(self) -> dict[str, int]:
        """ISO 3166-1 alpha-2 code -> concept_id of the country, for the countries of
        ``schemas.geo.COUNTRIES`` the vocabulary has: standard OSM concepts of the "2nd level" (the
        countries, as OHDSI's conventions for ``location.country_concept_id`` say), matched by name.
        Empty for a vocabulary without OSM (the bundled demo): ``country_concept_id`` is then 0."""
        return dict(self._country_concepts)

    def with_stcm(self, path: str | Path) -> Vocabulary:
        """This vocabulary plus a site's SOURCE_TO_CONCEPT_MAP file (Usagi CSV export or Athena TAB)."""
        extra = athena.read_stcm(Path(path))
        stcm = pl.concat([self.stcm.select(extra.columns).cast(extra.schema), extra], how="vertical")
        return replace(self, stcm=stcm, _code_maps={})

    def _standard(self) -> pl.DataFrame:
        """concept_id (Int32), domain_id of the standard concepts."""
        return self.concept.filter(pl.col("standard_concept") == "S").select(
            pl.col("concept_id").cast(pl.Int32), "domain_id")

    def _codes(self, vocabulary_id: str) -> pl.DataFrame:
        """source_code (trimmed, upper case), source_concept_id (Int32): the concepts of a vocabulary."""
        return self.concept.filter(pl.col("vocabulary_id") == vocabulary_id).select(
            source_code=pl.col("concept_code").str.strip_chars().str.to_uppercase(),
            source_concept_id=pl.col("concept_id").cast(pl.Int32))

    def code_map(self, vocabulary_id: str) -> pl.DataFrame:
        """``_code_map``, computed once per vocabulary_id (a site's buckets all ask for the same maps)."""
        if vocabulary_id not in self._code_maps:
            self._code_maps[vocabulary_id] = self._code_map(vocabulary_id)
        return self._code_maps[vocabulary_id]

    def _code_map(self, vocabulary_id: str) -> pl.DataFrame:
        """source_code -> source_concept_id, concept_id (standard, 0 if none), domain_id.

        Code matching is case-insensitive (codes are upper-cased). For each code of
        ``vocabulary_id``:

        1. a valid SOURCE_TO_CONCEPT_MAP row (empty invalid_reason) with a non-zero target wins;
           its source_concept_id is taken from CONCEPT when the STCM leaves it 0;
        2. else the code's concept in CONCEPT maps through "Maps to" (a standard concept maps to itself);
        3. else concept_id is 0 (and source_concept_id 0 when the code is not in CONCEPT either).

        A target counts only if it is a standard concept of this vocabulary; its ``domain_id``
        routes the row to a CDM table (null when unmapped). When a code has several standard
        targets, the lowest target concept_id is kept here, so the result is deterministic and
        has exactly one row per source_code (``code_targets`` gives the others: the event builder
        writes one row per target, as OHDSI does). Among several source
        concepts with the same code, the one with a standard target, then the lowest id, is kept.
        """
        standard = self._standard()
        src = self._codes(vocabulary_id)
        # a standard concept maps to itself even where a vocabulary subset lacks its "Maps to" self row
        self_maps = standard.select(concept_id_1=pl.col("concept_id"), concept_id_2=pl.col("concept_id"))
        targets = pl.concat([
            self.maps_to.select(pl.col("concept_id_1").cast(pl.Int32), pl.col("concept_id_2").cast(pl.Int32)), self_maps,
        ]).unique().join(standard, left_on="concept_id_2", right_on="concept_id", how="inner")
        via_concept = (
            src.join(targets, left_on="source_concept_id", right_on="concept_id_1", how="left")
            .sort("source_code", "concept_id_2", "source_concept_id", nulls_last=True)
            .unique(subset="source_code", keep="first", maintain_order=True)
            .select("source_code", "source_concept_id", pl.col("concept_id_2").alias("concept_id"), "domain_id")
        )
        via_stcm = (
            self.stcm.filter(
                (pl.col("source_vocabulary_id") == vocabulary_id)
                & (pl.col("invalid_reason").fill_null("") == "")
                & (pl.col("target_concept_id").fill_null(0) != 0)
            )
            .select(
                source_code=pl.col("source_code").str.strip_chars().str.to_uppercase(),
                stcm_source_concept_id=pl.col("source_concept_id").cast(pl.Int32),
                concept_id=pl.col("target_concept_id").cast(pl.Int32),
            )
            .join(standard, on="concept_id", how="left")
            .sort(pl.col("source_code"), pl.col("domain_id").is_null(), pl.col("concept_id"))
            .unique(subset="source_code", keep="first", maintain_order=True)
            .join(via_concept.select("source_code", "source_concept_id"), on="source_code", how="left")
            .select(
                "source_code",
                source_concept_id=pl.when(pl.col("stcm_source_concept_id").fill_null(0) == 0)
                .then(pl.col("source_concept_id"))
                .otherwise(pl.col("stcm_source_concept_id")),
                concept_id=pl.col("concept_id"),
                domain_id=pl.col("domain_id"),
            )
        )
        both = pl.concat(
            [via_stcm, via_concept.join(via_stcm.select("source_code"), on="source_code", how="anti")],
            how="vertical",
        )
        return both.with_columns(
            concept_id=pl.when(pl.col("domain_id").is_null()).then(0).otherwise(pl.col("concept_id")).cast(pl.Int32),
            source_concept_id=pl.col("source_concept_id").fill_null(0).cast(pl.Int32),
        ).sort("source_code")

    def code_targets(self, vocabulary_id: str) -> pl.DataFrame:
        """source_code -> every standard "Maps to" target of the code's concepts but the one
        ``code_map`` keeps (concept_id, domain_id): OHDSI writes one row per target."""
        key = f"targets:{vocabulary_id}"
        if key not in self._code_maps:
            kept = self.code_map(vocabulary_id).select("source_code", _kept="concept_id")
            self._code_maps[key] = (
                self._codes(vocabulary_id).join(self.maps_to.cast(_MAPS_TO_SCHEMA), left_on="source_concept_id",
                                                right_on="concept_id_1")
                .join(self._standard(), left_on="concept_id_2", right_on="concept_id")
                .join(kept, on="source_code")
                .filter((pl.col("concept_id_2") != pl.col("_kept")) & (pl.col("_kept") != 0))
                .select("source_code", concept_id=pl.col("concept_id_2"), domain_id="domain_id")
                .unique().sort("source_code", "concept_id"))
        return self._code_maps[key]

    def value_map(self, vocabulary_id: str) -> pl.DataFrame:
        """source_code -> value_concept_id: the standard "Maps to value" target of the code's concept
        (the lowest, when there are several)."""
        key = f"values:{vocabulary_id}"
        if key not in self._code_maps:
            self._code_maps[key] = (
                self._codes(vocabulary_id).join(self.maps_to_value.cast(_MAPS_TO_SCHEMA), left_on="source_concept_id",
                                                right_on="concept_id_1")
                .join(self._standard(), left_on="concept_id_2", right_on="concept_id")
                .group_by("source_code").agg(value_concept_id=pl.col("concept_id_2").min()).sort("source_code"))
        return self._code_maps[key]

    def lookup(self, df: pl.DataFrame, code_col: str, vocabulary_id: str, prefix: str) -> pl.DataFrame:
        """Add ``<prefix>_concept_id``, ``<prefix>_source_concept_id`` and ``<prefix>_domain``."""
        m = self.code_map(vocabulary_id).rename(
            {"concept_id": f"{prefix}_concept_id", "source_concept_id": f"{prefix}_source_concept_id",
             "domain_id": f"{prefix}_domain"}
        )
        out = df.join(m, left_on=pl.col(code_col).str.strip_chars().str.to_uppercase(), right_on="source_code",
                      how="left", maintain_order="left")
        if "source_code" in out.columns and "source_code" not in df.columns:
            out = out.drop("source_code")
        return out.with_columns(
            pl.col(f"{prefix}_concept_id").fill_null(0),
            pl.col(f"{prefix}_source_concept_id").fill_null(0),
        )


RELEASE_TABLES = ("concept", "concept_ancestor", "concept_relationship", "vocabulary", "domain", "concept_class",
                  "relationship")
"""The vocabulary tables a release carries (the last four when the loaded vocabulary has them)."""


@dataclass(frozen=True)
class VocabularySubset:
    """The vocabulary rows a release needs (``release_subset``)."""

    tables: dict[str, pl.DataFrame]
    used: int  # distinct concept ids the release's tables use
    missing: list[int]  # used concept ids the vocabulary has no concept row for


def release_subset(vocab: Vocabulary, used: Iterable[int]) -> VocabularySubset:
    """The vocabulary rows for the concept ids ``used`` (every ``*_concept_id`` value of a release):

    - ``concept``: the used concepts and all their ancestors (so that a researcher can expand a concept
      to its descendants or roll it up), with every CDM column the vocabulary has;
    - ``concept_ancestor``: the rows whose descendant is a used concept;
    - ``concept_relationship``: the rows between two of those concepts that touch a used one ("Maps to",
      "Is a", "Has ingredient", ...);
    - ``vocabulary``, ``domain``, ``concept_class``, ``relationship``: the rows those concepts and
      relationships name, when the vocabulary has the table.

    Sorted by their keys (deterministic); concept ids as Int32 (the OHDSI DDL's integer)."""
    ids = sorted({int(i) for i in used})
    used_s = pl.Series("id", ids, dtype=pl.Int32)

    def typed(df: pl.DataFrame, table: str) -> pl.DataFrame:
        schema = athena.vocabulary_schema(table)
        return df.select([pl.col(c).cast(t) if c in df.columns else pl.lit(None, t).alias(c)
                          for c, t in schema.items()])

    lf = vocab.scan("concept_ancestor")
    anc = (lf if lf is not None else vocab.ancestor.lazy()).filter(
        pl.col("descendant_concept_id").cast(pl.Int32).is_in(used_s.implode())).collect(engine="streaming")
    ancestor = typed(anc, "concept_ancestor").sort("descendant_concept_id", "ancestor_concept_id")
    wanted = pl.Series("id", sorted({*ids, *ancestor["ancestor_concept_id"].to_list()}), dtype=pl.Int32)
    lf = vocab.scan("concept")
    concept = typed((lf if lf is not None else vocab.concept.lazy()).filter(
        pl.col("concept_id").cast(pl.Int32).is_in(wanted.implode())).collect(engine="streaming"), "concept")
    concept = concept.unique("concept_id", keep="first").sort("concept_id")
    have = concept["concept_id"]
    lf = vocab.scan("concept_relationship")
    if lf is None:  # a vocabulary in memory: its "Maps to" and "Maps to value" pairs
        lf = pl.concat([vocab.maps_to.lazy().with_columns(relationship_id=pl.lit("Maps to")),
                        vocab.maps_to_value.lazy().with_columns(relationship_id=pl.lit("Maps to value"))])
    c1, c2 = pl.col("concept_id_1").cast(pl.Int32), pl.col("concept_id_2").cast(pl.Int32)
    rel = lf.filter(c1.is_in(have.implode()) & c2.is_in(have.implode())
                    & (c1.is_in(used_s.implode()) | c2.is_in(used_s.implode()))).collect(engine="streaming")
    relationship_rows = typed(rel, "concept_relationship").unique().sort("concept_id_1", "concept_id_2", "relationship_id")
    tables = {"concept": concept, "concept_ancestor": ancestor, "concept_relationship": relationship_rows}
    named = {"vocabulary": ("vocabulary_id", concept["vocabulary_id"]), "domain": ("domain_id", concept["domain_id"]),
             "concept_class": ("concept_class_id", concept["concept_class_id"]),
             "relationship": ("relationship_id", relationship_rows["relationship_id"])}
    for table, (key, values) in named.items():
        lf = vocab.scan(table)
        if lf is None:
            continue
        keys = values.drop_nulls().unique()
        tables[table] = typed(lf.filter(pl.col(key).is_in(keys.implode())).collect(engine="streaming"), table).unique(
            key, keep="first").sort(key)
    missing = sorted(set(ids) - set(have.to_list()))
    return VocabularySubset(tables, len(ids), missing)


def _bundled_folder() -> Path:
    return Path(str(resources.files("schemas").joinpath("vocabulary/demo")))


def is_bundled(vocab: Vocabulary) -> bool:
    """Whether ``vocab`` is the demo vocabulary bundled with ds4h (``bundled:demo``)."""
    return vocab.folder is not None and vocab.folder.resolve() == _bundled_folder().resolve()


def _from_athena_csv(folder: Path) -> Vocabulary:
    """Read a (small) Athena TAB folder directly: used for the bundled demo vocabulary."""
    files = athena.find_tables(folder)
    missing = [t.upper() + ".csv" for t in ("concept", "concept_relationship") if t not in files]
    if missing:
        raise VocabularyError(f"{folder} has no {', '.join(missing)}: give an Athena download folder or 'bundled:demo'")
    concept = athena.scan_athena(files["concept"], "concept").select(_CONCEPT_COLUMNS).collect()
    maps_to, maps_to_value = _maps_to(athena.scan_athena(files["concept_relationship"], "concept_relationship"))
    stcm = (athena.scan_athena(files["source_to_concept_map"], "source_to_concept_map").collect()
            if "source_to_concept_map" in files else _empty("source_to_concept_map"))
    versions: dict[str, str | None] = {}
    if "vocabulary" in files:
        voc = athena.scan_athena(files["vocabulary"], "vocabulary").select("vocabulary_id", "vocabulary_version")
        versions = {str(k): v for k, v in voc.collect().iter_rows()}
    return Vocabulary(concept, maps_to, stcm, folder=folder, kind="athena", name=folder.name, versions=versions,
                      maps_to_value=maps_to_value)


def _maps_to(rel: pl.LazyFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The valid "Maps to" and "Maps to value" pairs, in one pass."""
    both = (
        rel.filter(pl.col("relationship_id").is_in(["Maps to", "Maps to value"])
                   & (pl.col("invalid_reason").fill_null("") == ""))
        .select("relationship_id", "concept_id_1", "concept_id_2")
        .collect(engine="streaming")
    )
    def pairs(relationship: str) -> pl.DataFrame:
        return (both.filter(pl.col("relationship_id") == relationship).drop("relationship_id")
                .cast(_MAPS_TO_SCHEMA).sort("concept_id_1", "concept_id_2"))
    return pairs("Maps to"), pairs("Maps to value")


def _from_parquet(folder: Path) -> Vocabulary:
    manifest = athena.read_manifest(folder)
    for t in ("concept", "concept_relationship"):
        if not (folder / f"{t}.parquet").is_file():
            raise VocabularyError(f"{folder} has no {t}.parquet: run 'ds4h vocabulary load' again")
    concept = pl.scan_parquet(folder / "concept.parquet").select(_CONCEPT_COLUMNS).collect(engine="streaming")
    maps_to, maps_to_value = _maps_to(pl.scan_parquet(folder / "concept_relationship.parquet"))
    p = folder / "source_to_concept_map.parquet"
    stcm = pl.read_parquet(p) if p.is_file() else _empty("source_to_concept_map")
    versions = {str(k): (None if v is None else str(v)) for k, v in dict(manifest.get("vocabularies", {})).items()}
    return Vocabulary(concept, maps_to, stcm, folder=folder, kind="parquet", name=str(manifest.get("name", folder.name)),
                      versions=versions, maps_to_value=maps_to_value)


@cache
def _open(kind: Kind, folder: str, stamp: int) -> Vocabulary:
    """Cached by folder and the manifest's mtime, so a reloaded vocabulary is read again."""
    del stamp
    return _from_parquet(Path(folder)) if kind == "parquet" else _from_athena_csv(Path(folder))


def load_vocabulary(location: str = BUNDLED) -> Vocabulary:
    """The vocabulary named by the config's ``vocabulary``: ``bundled:demo``, a folder written by
    ``ds4h vocabulary load``, or a raw Athena download folder (loaded into the workspace on first use).
    Cached per process."""
    if location == BUNDLED:
        return _open("athena", str(_bundled_folder()), 0)
    if location.startswith("bundled:"):
        raise VocabularyError(f"unknown bundled vocabulary {location!r}; use 'bundled:demo'")
    folder = Path(location).expanduser().resolve()
    if not folder.is_dir():
        raise VocabularyError(f"vocabulary folder {folder} does not exist: fix 'vocabulary' in the config")
    if not athena.is_loaded_folder(folder):
        if not athena.is_athena_folder(folder):
            raise VocabularyError(
                f"{folder} holds neither a loaded vocabulary ({athena.MANIFEST}) nor an Athena download "
                "(CONCEPT.csv): fix 'vocabulary' in the config"
            )
        from schemas.config import home

        folder = athena.ensure_loaded(folder, home())
    return _open("parquet", str(folder), (folder / athena.MANIFEST).stat().st_mtime_ns)
