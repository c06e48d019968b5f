"""Consolidate persons across sites: one row per pseudonymous person.

A patient seen at two hospitals has one person_id (the matricule is the identity). Their sex and
year of birth come from the most frequent value over the site records, ties going to the most
recent record (the site whose observation period ends last); disagreements are counted as
conflicts. Two different identities sharing a person_id (different textual pseudonyms) is a
collision: an error, never a merge.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from anonymisation.pseudonym import CollisionError


@dataclass
class Consolidated:
    persons: pl.DataFrame  # one row per person_id: the chosen person row
    merged_rows: int  # site person rows folded into another site's row
    conflicts: dict[str, int]  # attribute -> persons whose sites disagree
    site_rows: pl.DataFrame  # (site, person_id) of every site person row


def _vote(records: pl.DataFrame, attr: str) -> pl.DataFrame:
    """Most frequent value of ``attr`` per person; ties to the most recent record."""
    counts = records.group_by("person_id", attr).agg(n=pl.len(), recent=pl.col("recency").max())
    return (
        counts.sort(["person_id", "n", "recent", attr], descending=[False, True, True, False], nulls_last=True)
        .group_by("person_id", maintain_order=True)
        .first()
        .select("person_id", attr)
    )


def consolidate_persons(site_persons: dict[str, pl.DataFrame], site_periods: dict[str, pl.DataFrame]) -> Consolidated:
    """``site_persons``: each site's pseudo person table; ``site_periods``: its observation periods."""
    frames = []
    for site, p in sorted(site_persons.items()):
        per = site_periods.get(site)
        recency = (
            per.group_by("person_id").agg(recency=pl.col("observation_period_end_date").max())
            if per is not None and per.height
            else pl.DataFrame(schema={"person_id": pl.Int64, "recency": pl.Date})
        )
        frames.append(p.join(recency, on="person_id", how="left").with_columns(site=pl.lit(site)))
    if not frames:
        raise ValueError("no site has a person table: run the site partitions first")
    records = pl.concat(frames, how="vertical_relaxed")
    clash = records.group_by("person_id").agg(n=pl.col("person_source_value").n_unique(), sites=pl.col("site").unique().sort())
    clash = clash.filter(pl.col("n") > 1)
    if clash.height:
        sites = clash["sites"][0].to_list()
        raise CollisionError(
            f"person_id collision between different patients at sites {' and '.join(sites)}: "
            "nothing was merged; re-run with a new project key and report it"
        )
    conflicts = {}
    for attr in ("gender_concept_id", "year_of_birth", "location_id"):
        conflicts[attr] = int(
            records.group_by("person_id").agg(pl.col(attr).n_unique()).filter(pl.col(attr) > 1).height
        )
    chosen = (
        records.sort(["person_id", "recency", "site"], descending=[False, True, False], nulls_last=True)
        .group_by("person_id", maintain_order=True)
        .first()
    )
    for attr in ("gender_concept_id", "year_of_birth"):
        chosen = chosen.drop(attr).join(_vote(records, attr), on="person_id", how="left")
    persons = chosen.select(records.columns).drop("recency", "site").sort("person_id")
    return Consolidated(
        persons=persons,
        merged_rows=records.height - persons.height,
        conflicts=conflicts,
        site_rows=records.select("site", "person_id"),
    )
