"""Pseudonymise one site's OMOP tables: keyed ids, per-patient date shift, identifiers dropped,
opted-out patients removed.

Every id is an HMAC of the identifiable zone's stable id in its own domain (``person``, ``visit``,
``condition``, ...), so the same key gives the same ids across releases and another project's key
gives unlinkable ones. Dates of a patient move by one offset in every table.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from anonymisation.pseudonym import id63, identity_expr, person_map, token
from schemas import omop as cdm
from schemas.policy import PrivacyPolicy
from transforms.ingest import accounting_frame

# table -> (primary key, id domain); person is special
EVENT_TABLES: dict[str, str] = {
    "visit_occurrence": "visit_occurrence_id",
    "condition_occurrence": "condition_occurrence_id",
    "observation_period": "observation_period_id",
}
# columns holding source ids (identifiers of the hospital): replaced by textual pseudonyms
SOURCE_ID_COLUMNS: dict[str, tuple[str, ...]] = {
    "visit_occurrence": ("visit_source_value",),
}
# columns that may hold direct identifiers: dropped (set to null)
DROPPED: dict[str, tuple[str, ...]] = {
    "person": ("month_of_birth", "day_of_birth", "birth_datetime", "provider_id", "care_site_id"),
    "location": ("address_1", "address_2", "location_source_value", "latitude", "longitude"),
}


@dataclass
class PseudoResult:
    tables: dict[str, pl.DataFrame]
    accounting: pl.DataFrame
    opted_out_persons: int


def read_opt_outs(path: str | None) -> set[str]:
    """Matricules (digits only) whose owners objected to secondary use; '#' starts a comment."""
    if not path:
        return set()
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"opt-out registry {p} does not exist: fix policy.opt_out_registry in the config")
    out = set()
    for line in p.read_text(encoding="utf-8").splitlines():
        digits = "".join(ch for ch in line.split("#", 1)[0] if ch.isdigit())
        if digits:
            out.add(digits)
    return out


def _remap(df: pl.DataFrame, col: str, ids: pl.DataFrame) -> pl.DataFrame:
    """Replace ``col`` by the ``new`` column of ``ids`` (old -> new)."""
    return df.join(ids.rename({"old": col}), on=col, how="left", maintain_order="left").with_columns(
        pl.col("new").alias(col)
    ).drop("new")


def _keyed(secret: bytes, domain: str, site: str, values: Iterable[int]) -> pl.DataFrame:
    olds = sorted(set(values))
    return pl.DataFrame(
        {"old": pl.Series(olds, dtype=pl.Int64),
         "new": pl.Series([id63(secret, domain, f"{site}:{v}") for v in olds], dtype=pl.Int64)}
    )


def shift_dates(df: pl.DataFrame, offsets: pl.DataFrame) -> pl.DataFrame:
    """Shift every Date and Datetime column by the row's person offset (days)."""
    cols = [c for c, t in df.schema.items() if t in (pl.Date, pl.Datetime("us"))]
    if not cols:
        return df
    out = df.join(offsets.select("person_id", "date_offset"), on="person_id", how="left", maintain_order="left")
    shift = pl.duration(days=pl.col("date_offset"))
    return out.with_columns([(pl.col(c) + shift).alias(c) for c in cols]).drop("date_offset")


def pseudonymise_site(
    site: str,
    omop: dict[str, pl.DataFrame],
    patients: pl.DataFrame,
    secret: bytes,
    policy: PrivacyPolicy,
    opt_outs: set[str] | None = None,
) -> PseudoResult:
    """``patients`` is the raw patients table (patient_id, matricule, birth_date) of the site."""
    ident = patients.select(
        "patient_id", "birth_date", identity=identity_expr(site), site=pl.lit(site),
        matricule_digits=pl.col("matricule").cast(pl.String).str.replace_all(r"\D", ""),
    )
    pmap = person_map(ident.select("identity", "site"), secret, policy.date_shift_days)
    person = omop["person"]
    # old (identifiable-zone) person_id -> identity -> keyed person_id, pseudonym, offset
    link = (
        person.select(old="person_id", patient_id="person_source_value")
        .join(ident, on="patient_id", how="inner")
        .join(pmap, on="identity", how="inner")
    )
    opted = link.filter(pl.col("matricule_digits").is_in(sorted(opt_outs or set())))["old"]
    acc: list[dict[str, object]] = []
    tables: dict[str, pl.DataFrame] = {}
    person_ids = link.select("old", new="person_id")

    def account(table: str, before: int, after: int, removed: int) -> None:
        acc.append(dict(table=table, category="in", reason_code=None, rows=before))
        if removed:
            acc.append(dict(table=table, category="opted_out", reason_code="pseudo.opt_out", rows=removed))
        acc.append(dict(table=table, category="out", reason_code=None, rows=after))

    # person
    p = person.filter(~pl.col("person_id").is_in(opted.implode()))
    removed = person.height - p.height
    p = p.join(link.select(person_id="old", new_id="person_id", pseudo="person_source_value",
                           offset="date_offset", birth_date="birth_date"), on="person_id", how="left")
    p = p.with_columns(
        person_id=pl.col("new_id"),
        person_source_value=pl.col("pseudo"),
        year_of_birth=(pl.col("birth_date") + pl.duration(days=pl.col("offset"))).dt.year().cast(pl.Int32),
    )
    # location: no street, keyed id on what remains
    loc = omop["location"]
    loc_key = pl.concat_str([pl.col("zip"), pl.col("city"), pl.col("county")], separator="|", ignore_nulls=True)
    loc = loc.with_columns(loc_key=loc_key)
    loc_ids = {
        k: id63(secret, "location", k) for k in sorted(set(loc["loc_key"].to_list()))
    }
    loc = loc.with_columns(new_loc=pl.col("loc_key").replace_strict(loc_ids, return_dtype=pl.Int64))
    p = p.join(loc.select(location_id="location_id", new_loc="new_loc"), on="location_id", how="left").with_columns(
        location_id=pl.col("new_loc")
    )
    p = p.with_columns([pl.lit(None).alias(c) for c in DROPPED["person"]])
    tables["person"] = cdm.conform(p, "person").sort("person_id")
    account("person", person.height, p.height, removed)
    loc_out = loc.with_columns(location_id=pl.col("new_loc")).with_columns(
        [pl.lit(None).alias(c) for c in DROPPED["location"]]
    )
    used = set(tables["person"]["location_id"].drop_nulls().to_list())
    loc_out = cdm.conform(loc_out, "location").unique("location_id").filter(pl.col("location_id").is_in(sorted(used)))
    tables["location"] = loc_out.sort("location_id")
    acc.append(dict(table="location", category="produced", reason_code=None, rows=loc_out.height))

    for table, pk in EVENT_TABLES.items():
        df = omop[table]
        kept = df.filter(~pl.col("person_id").is_in(opted.implode()))
        out = _remap(kept, pk, _keyed(secret, table, site, kept[pk].to_list()))
        if "visit_occurrence_id" in out.columns and table != "visit_occurrence":
            visits = omop["visit_occurrence"]["visit_occurrence_id"].to_list()
            out = _remap(out, "visit_occurrence_id", _keyed(secret, "visit_occurrence", site, visits))
        for col in SOURCE_ID_COLUMNS.get(table, ()):
            distinct = sorted(set(out[col].drop_nulls().to_list()))
            tokens = {v: token(secret, f"{table}.{col}", f"{site}:{v}") for v in distinct}
            out = out.with_columns(pl.col(col).replace_strict(tokens, default=None, return_dtype=pl.String))
        out = shift_dates(out, link.select(person_id="old", date_offset="date_offset"))
        out = _remap(out, "person_id", person_ids)
        tables[table] = cdm.conform(out, table).sort(pk)
        account(table, df.height, out.height, df.height - out.height)
    return PseudoResult(tables, accounting_frame("pseudo", site, acc), int(opted.len()))
