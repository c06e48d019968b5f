"""Earlier published versions of a dataset, as a recipient holding them sees them.

Every numbered folder ``dataspace/<dataset>/<n>/`` counts, whatever its approval state or the code
that wrote it. For each version: each person's *class key* (every published person-level field:
the person row but its ids, the person's location row but its id, the death year; docs/privacy.md)
and the person's facts (``anonymisation.facts.table_fact_keys`` over the fact tables and the derived
tables). The release being built joins them on ``person_id``: the keys become fixed columns of the
person-level search and the facts are pinned in the k^m engine.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from anonymisation.facts import fact_key, table_fact_keys
from schemas.facts import DERIVED_FACTS, FACT_TABLES
from transforms.storage import partition_files, read_parquet_files

VERSION = re.compile(r"^[1-9][0-9]*$")
ABSENT = "ABSENT"


class VersionError(ValueError):
    """An earlier version cannot be read (it is needed: a recipient may hold it)."""


@dataclass
class Earlier:
    numbers: list[int] = field(default_factory=list)
    keys: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema={"person_id": pl.Int64}))
    facts: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema={"person_id": pl.Int64, "key": pl.String}))

    @property
    def columns(self) -> list[str]:
        return [c for c in self.keys.columns if c != "person_id"]


def version_numbers(dataset_dir: Path, *, published: bool = True) -> list[int]:
    """The numbered versions of a dataset; ``published``: only those with a manifest (a folder without one
    is a publication that did not finish: nobody received it), else every numbered folder (the next
    version's number comes after all of them: an unfinished one is never written over)."""
    if not dataset_dir.is_dir():
        return []
    return sorted(int(p.name) for p in dataset_dir.iterdir() if p.is_dir() and VERSION.match(p.name)
                  and (not published or (p / "manifest.json").exists()))


def _table(version: Path, table: str) -> pl.DataFrame | None:
    folder = version / "omop" / table
    files = partition_files(folder)
    if not files:
        return None
    try:
        return read_parquet_files(files)
    except Exception as e:  # a damaged copy must stop the release, with the file named
        raise VersionError(f"cannot read {folder}: {e}; repair or restore that version") from None


def class_keys(version: Path) -> pl.DataFrame:
    """person_id, key: the class key of every person of a published version (a string)."""
    person = _table(version, "person")
    if person is None:
        raise VersionError(f"{version} has no omop/person table: a damaged version? restore it before releasing")
    loc = _table(version, "location")
    cols = [c for c in sorted(person.columns) if c not in ("person_id", "location_id")]
    parts = [pl.lit(f"{c}=") + pl.col(c).cast(pl.String).fill_null("∅") for c in cols]
    frame = person.select("person_id", *([] if "location_id" not in person.columns else ["location_id"]), *cols)
    if loc is not None and "location_id" in frame.columns:
        lcols = [c for c in sorted(loc.columns) if c != "location_id"]
        frame = frame.join(loc.select("location_id", *[pl.col(c).alias(f"loc.{c}") for c in lcols]),
                           on="location_id", how="left")
        parts += [pl.lit(f"loc.{c}=") + pl.col(f"loc.{c}").cast(pl.String).fill_null("∅") for c in lcols]
    death = _table(version, "death")
    if death is not None and death.height:
        dy = death.group_by("person_id").agg(_dy=pl.col("death_date").min().dt.year())
        frame = frame.join(dy, on="person_id", how="left")
    else:
        frame = frame.with_columns(_dy=pl.lit(None, pl.Int32))
    parts.append(pl.lit("death_year=") + pl.col("_dy").cast(pl.String).fill_null("∅"))
    return frame.select("person_id", key=pl.concat_str(parts, separator="|"))


def version_facts(version: Path) -> pl.DataFrame:
    """person_id, key: the distinct facts of every person of a published version."""
    out = []
    for t in FACT_TABLES:
        df = _table(version, t)
        if df is not None:
            out.append(table_fact_keys(df, t))
    for t, cols in DERIVED_FACTS.items():
        df = _table(version, t)
        if df is not None and "person_id" in df.columns:
            out += [df.select(pl.col("person_id").cast(pl.Int64), key=fact_key(t, c)).drop_nulls()
                    for c in cols if c in df.columns]
    if not out:
        return pl.DataFrame(schema={"person_id": pl.Int64, "key": pl.String})
    return pl.concat(out).unique()


def read_earlier(dataset_dir: Path | None, persons: pl.Series) -> Earlier:
    """The earlier versions' keys (one column ``_v<n>`` per version, ``ABSENT`` where the person is
    not in it) and facts, for ``persons`` (the person_ids of the release being built)."""
    numbers = version_numbers(dataset_dir) if dataset_dir is not None else []
    ids = pl.DataFrame({"person_id": persons.cast(pl.Int64).unique().sort()})
    if not numbers or dataset_dir is None:
        return Earlier([], ids, Earlier().facts)
    keys = ids
    facts: list[pl.DataFrame] = []
    for n in numbers:
        v = dataset_dir / str(n)
        ck = class_keys(v).join(ids, on="person_id", how="semi")
        keys = keys.join(ck.rename({"key": f"_v{n}"}), on="person_id", how="left").with_columns(
            pl.col(f"_v{n}").fill_null(ABSENT))
        facts.append(version_facts(v).join(ids, on="person_id", how="semi"))
    return Earlier(numbers, keys, pl.concat(facts).unique().sort("person_id", "key"))
