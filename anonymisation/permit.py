"""Pseudonymised releases: every id re-derived per data permit, so two permits' releases cannot be
joined on ids (their records still resemble each other: the risk report's k^m figures say how much).

A released id of table T (its primary key, or a foreign key pointing to T) becomes the 63-bit HMAC,
under the project key, of ``permit:<ID>`` and ``T:<old id>``: a foreign key and the key it points to
stay equal, and the same permit gives the same ids again (a re-delivery joins with the previous one).
Other id columns (``*_event_id`` without a known target) are emptied.
"""

from __future__ import annotations

import polars as pl

from anonymisation.pseudonym import CollisionError, id63_many
from schemas import omop as cdm
from schemas.column_policy import EPISODE_EVENT_FIELDS, EVENT_LINKS, EXTRA_ID_REFERENCES


def rekey_ids(values: pl.Series, secret: bytes, permit: str, target: str) -> pl.Series:
    """``values`` (ids of table ``target``) as a release for ``permit`` holds them."""
    distinct = values.drop_nulls().unique().sort()
    new = id63_many(secret, f"permit:{permit}", [f"{target}:{v}" for v in distinct.to_list()])
    if len(set(new)) != len(new):
        raise CollisionError(f"id collision re-keying {target} ids for permit {permit}: nothing was published; "
                             "report this")
    mapping = pl.DataFrame({"_old": distinct.cast(pl.Int64), "_new": pl.Series(new, dtype=pl.Int64)})
    return (pl.DataFrame({"_old": values.cast(pl.Int64)}).join(mapping, on="_old", how="left", maintain_order="left")
            ["_new"].alias(values.name))


def rekey_table(df: pl.DataFrame, table: str, secret: bytes, permit: str) -> pl.DataFrame:
    """``df`` (a released table) with every id column re-derived for ``permit``."""
    spec = cdm.table(table)
    targets: dict[str, str] = {}
    for f in spec.fields:
        if f.name not in df.columns:
            continue
        if f.primary_key:
            targets[f.name] = table
        elif f.fk_table is not None and f.fk_table not in cdm.VOCABULARY_TABLES:
            targets[f.name] = f.fk_table
    for (t, col), target in EXTRA_ID_REFERENCES.items():
        if t == table and col in df.columns:
            targets[col] = target
    out = df.with_columns([rekey_ids(df[c], secret, permit, t) for c, t in targets.items()])
    if table == "episode_event" and out.height:
        parts = []
        for concept, target in EPISODE_EVENT_FIELDS.items():
            part = out.filter(pl.col("episode_event_field_concept_id") == concept)
            parts.append(part.with_columns(rekey_ids(part["event_id"], secret, permit, target)))
        parts.append(out.filter(~pl.col("episode_event_field_concept_id").is_in(list(EPISODE_EVENT_FIELDS)))
                     .with_columns(event_id=pl.lit(None, pl.Int64)))
        out = pl.concat(parts)
    links = {col: field_col for (t, col), field_col in EVENT_LINKS.items() if t == table and col in out.columns}
    for col, field_col in links.items():
        field = pl.col(field_col)
        expr = pl.lit(None, pl.Int64)
        for concept, target in EPISODE_EVENT_FIELDS.items():
            expr = pl.when(field == concept).then(rekey_ids(out[col], secret, permit, target)).otherwise(expr)
        out = out.with_columns(expr.alias(col))
    unknown = [f.name for f in spec.fields if f.is_identifier and f.name in out.columns and f.name not in targets
               and not (table == "episode_event" and f.name == "event_id") and f.name not in links]
    if unknown:
        out = out.with_columns([pl.lit(None, out.schema[c]).alias(c) for c in unknown])
    return out
