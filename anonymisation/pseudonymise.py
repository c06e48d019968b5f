"""Pseudonymise one site's OMOP tables: keyed ids, per-patient date shift, identifiers dropped,
opted-out patients removed (by matricule everywhere, by local patient id at their site), notes
de-identified.

Driven by the CDM specification (``schemas/omop.py``) and the column policy
(``schemas/column_policy.py``): every primary key is re-keyed with an HMAC in the domain of its
table, every foreign key to a non-vocabulary table in the domain of the table it points to, every
date and datetime of a person moves by that person's offset. The same key gives the same ids across
releases; another project's key gives unlinkable ones.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from anonymisation.leakscan import Identifiers, identifiers_from_patients, mask_identifiers
from anonymisation.pseudonym import id63_checked, identity_expr, person_map, token_many
from schemas import omop as cdm
from schemas.column_policy import (
    DROPPED,
    EPISODE_EVENT_FIELDS,
    EVENT_LINKS,
    EXTRA_ID_REFERENCES,
    FREE_TEXT,
    TOKENISED,
)
from schemas.policy import PrivacyPolicy
from transforms.ingest import accounting_frame

# (note texts, known identifiers per note, date offsets per note, dates to tag per note) -> texts
NoteDeid = Callable[[list[str], list[dict[str, list[str]]], list[int], list[set[dt.date]]], list[str]]


DEATH_YEARS = "_death_year"  # the pseudo zone's side table: person_id, true death year (never published)
DEATH_YEARS_SCHEMA = {"person_id": pl.Int64, "death_year": pl.Int32}


@dataclass
class PseudoResult:
    tables: dict[str, pl.DataFrame]
    accounting: pl.DataFrame
    opted_out_persons: int
    masked_cells: dict[str, int]  # table -> free-text cells emptied because they held an identifier
    death_years: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=DEATH_YEARS_SCHEMA))


class OptOutError(ValueError):
    """A malformed line of the opt-out registry (the message names the line, never its content)."""


@dataclass(frozen=True)
class OptOuts:
    """Patients who objected to secondary use: by matricule (removed at every site) or by a site's
    own patient id (the identity table's ``patient_id``; removed at that site)."""

    matricules: frozenset[str] = frozenset()  # digits only
    local: frozenset[tuple[str, str]] = frozenset()  # (site, local patient id)

    def at(self, site: str) -> set[str]:
        """The local patient ids opted out at ``site``."""
        return {pid for s, pid in self.local if s == site}


_MATRICULE_LINE = re.compile(r"[\d\s]+")


def read_opt_outs(path: str | None, sites: Collection[str] | None = None) -> OptOuts:
    """Read the opt-out registry: one patient per line, either a matricule (digits, spaces allowed:
    ``1980 0101 123 45``) or ``site,local_patient_id`` (the site as named in the config, the site's
    own patient id). '#' starts a comment; blank lines are skipped. With ``sites`` (the configured
    sites), a line naming another site is an error. Errors name the line, never what it holds."""
    if not path:
        return OptOuts()
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"opt-out registry {p} does not exist: fix policy.opt_out_registry in the config")
    usage = "a line is a matricule (digits, spaces allowed) or 'site,local_patient_id'"
    matricules: set[str] = set()
    local: set[tuple[str, str]] = set()
    for n, line in enumerate(p.read_text(encoding="utf-8-sig").splitlines(), start=1):
        content = line.split("#", 1)[0].strip()
        if not content:
            continue
        where = f"opt-out registry {p}, line {n}"
        if "," in content:
            fields = [f.strip() for f in content.split(",")]
            if len(fields) != 2:
                raise OptOutError(f"{where}: {len(fields)} fields; {usage}")
            if not all(fields):
                raise OptOutError(f"{where}: an empty field; {usage}")
            if sites is not None and fields[0] not in sites:
                raise OptOutError(f"{where}: the site is not a configured site ({', '.join(sorted(sites))}); "
                                  "write it as in the config's sources")
            local.add((fields[0], fields[1]))
        elif _MATRICULE_LINE.fullmatch(content):
            matricules.add("".join(content.split()))
        else:
            raise OptOutError(f"{where}: not a matricule (digits only); {usage}")
    return OptOuts(frozenset(matricules), frozenset(local))


def pseudonyms(identity: pl.DataFrame, site: str, secret: bytes, max_shift: int) -> pl.DataFrame:
    """Each identity row's pseudonymous person: ``person_id`` (the identity zone's, as in the site's
    OMOP tables), ``pseudo_person_id`` (as in the pseudo zone), ``person_source_value`` (its textual
    pseudonym) and ``date_offset``. The leak scans read the first two from the identity zone
    (``lake/identity/pseudonyms``) to know whose rows are whose; the table is never published."""
    ident = identity.select("person_id", identity=identity_expr(site), site=pl.lit(site))
    pmap = person_map(ident.select("identity", "site"), secret, max_shift)
    return ident.select("person_id", "identity").join(pmap, on="identity", how="inner").select(
        pl.col("person_id").cast(pl.Int64), pseudo_person_id="person_id_right", person_source_value="person_source_value",
        date_offset="date_offset")


def _keyed(secret: bytes, domain: str, site: str, values: pl.Series) -> pl.DataFrame:
    """old -> new ids of ``domain`` (a table), sorted by old; CollisionError if two old ids would share a new one."""
    olds = values.cast(pl.Int64).drop_nulls().unique().sort()
    messages = olds.to_frame("o").select(pl.lit(f"{site}:") + pl.col("o").cast(pl.String)).to_series().to_list()
    return pl.DataFrame({"old": olds.alias("old"),
                         "new": pl.Series(id63_checked(secret, domain, messages), dtype=pl.Int64)})


def _remap(df: pl.DataFrame, col: str, ids: pl.DataFrame) -> pl.DataFrame:
    """Replace ``col`` by the ``new`` column of ``ids`` (old -> new)."""
    return df.join(ids.rename({"old": col}), on=col, how="left", maintain_order="left").with_columns(
        pl.col("new").alias(col)
    ).drop("new")


def shift_dates(df: pl.DataFrame, offsets: pl.DataFrame) -> pl.DataFrame:
    """Shift every Date and Datetime column by the row's person offset (``offsets``: person_id, date_offset)."""
    cols = [c for c, t in df.schema.items() if isinstance(t, pl.Date | pl.Datetime)]
    if not cols or "person_id" not in df.columns:
        return df
    out = df.join(offsets.select("person_id", "date_offset"), on="person_id", how="left", maintain_order="left")
    shift = pl.duration(days=pl.col("date_offset"))
    return out.with_columns([(pl.col(c) + shift).alias(c) for c in cols]).drop("date_offset")


def identity_frame(persons: pl.DataFrame, person: pl.DataFrame) -> pl.DataFrame:
    """The identifiable zone's identity table: OMOP person_id with the person's identifiers.

    ``persons`` is the staging persons table; columns are named as the leak scan expects."""
    ids = person.select("person_id", person_key="person_source_value")
    return persons.join(ids, on="person_key", how="inner").select(
        "person_id", patient_id="person_key", matricule="national_id", birth_date="birth_date",
        last_name="last_name", first_name="first_name", phone="phone", email="email", address="address",
        other_names=pl.col("other_names") if "other_names" in persons.columns else pl.lit(None, pl.String),
        # SSN, passport, driver's licence: known to the leak scan and the note de-identification, never published
        other_ids=pl.col("other_ids") if "other_ids" in persons.columns else pl.lit(None, pl.String),
    )


def _location(loc: pl.DataFrame, secret: bytes) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Locations without street lines, keyed on what remains; (new rows, old -> new ids)."""
    key = pl.concat_str([pl.col("zip"), pl.col("city"), pl.col("county"), pl.col("country_source_value")],
                        separator="|", ignore_nulls=True)
    loc = loc.with_columns(loc_key=key)
    keys = sorted(set(loc["loc_key"].to_list()))
    new = dict(zip(keys, id63_checked(secret, "location", keys), strict=True))
    loc = loc.with_columns(new=pl.col("loc_key").replace_strict(new, return_dtype=pl.Int64))
    ids = loc.select(old="location_id", new="new")
    rows = loc.with_columns(location_id=pl.col("new")).with_columns([pl.lit(None).alias(c) for c in DROPPED["location"]])
    return cdm.conform(rows, "location").unique("location_id").sort("location_id"), ids


def pseudonymise_site(
    site: str,
    omop: dict[str, pl.DataFrame],
    identity: pl.DataFrame,
    secret: bytes,
    policy: PrivacyPolicy,
    opt_outs: OptOuts | set[str] | None = None,
    note_deid: NoteDeid | None = None,
    identifiers: Identifiers | None = None,
) -> PseudoResult:
    """``identity``: :func:`identity_frame` of the site (person_id, patient_id, matricule, birth_date, ...).

    ``identifiers``: what free-text cells are masked for (default: those of ``identity``); when a site
    is pseudonymised in person buckets, ``identity`` holds the bucket's persons and ``identifiers``
    the whole site's. ``opt_outs``: :func:`read_opt_outs` (a plain set holds matricules)."""
    if not isinstance(opt_outs, OptOuts):
        opt_outs = OptOuts(matricules=frozenset(opt_outs or ()))
    ident = identity.select(pl.col("person_id").alias("old"), "birth_date",
                            matricule_digits=pl.col("matricule").cast(pl.String).str.replace_all(r"\D", ""),
                            local_id=pl.col("patient_id").cast(pl.String))
    opted = ident.filter(pl.col("matricule_digits").is_in(sorted(opt_outs.matricules))
                         | pl.col("local_id").is_in(sorted(opt_outs.at(site))))["old"]
    opted_list = opted.implode()
    keyed_persons = identity
    if "person" not in omop:  # a pass without the person table (the notes): only the persons its rows name are keyed
        named = [df["person_id"] for df in omop.values() if "person_id" in df.columns]
        wanted = pl.concat(named).drop_nulls().unique() if named else pl.Series("person_id", [], pl.Int64)
        keyed_persons = identity.filter(pl.col("person_id").is_in(wanted.implode()))
    pmap = pseudonyms(keyed_persons, site, secret, policy.date_shift_days)
    link = ident.join(pmap.rename({"person_id": "old", "pseudo_person_id": "person_id"}), on="old", how="inner")
    offsets = link.select(person_id="old", date_offset="date_offset")
    person_ids = link.select("old", new="person_id")
    acc: list[dict[str, object]] = []
    tables: dict[str, pl.DataFrame] = {}

    loc_rows, loc_ids = _location(omop["location"], secret) if "location" in omop else (None, None)
    identifiers = identifiers if identifiers is not None else identifiers_from_patients(identity)
    masked: dict[str, int] = {}
    # one old -> new map per table of the part, over all its rows, reused for its primary key and every
    # foreign key to it (a visit's id was hashed again for each of the ~10 tables that name it)
    domain_maps: dict[str, pl.DataFrame] = {}

    def keyed(domain: str, values: pl.Series) -> pl.DataFrame:
        """old -> new ids of ``domain`` for ``values``: the map of the whole table when the part has it,
        plus any value the table lacks (so a table's ids do not depend on which other tables are loaded)."""
        target, pk = omop.get(domain), cdm.table(domain).primary_key
        if target is None or pk is None or pk not in target.columns:
            return _keyed(secret, domain, site, values)
        if domain not in domain_maps:
            domain_maps[domain] = _keyed(secret, domain, site, target[pk])
        known = domain_maps[domain]
        distinct = values.drop_nulls().unique()
        missing = distinct.filter(~distinct.is_in(known["old"].implode()))
        if missing.len():
            return pl.concat([known, _keyed(secret, domain, site, missing)])
        return known

    # the true year of each death (the release chooses its band and anchors the dates on it; the
    # shifted date would give the wrong year for about a quarter of deaths): a side table, never published
    death_years = pl.DataFrame(schema=DEATH_YEARS_SCHEMA)
    if "death" in omop and omop["death"].height:
        d = omop["death"].filter(~pl.col("person_id").is_in(opted_list))
        death_years = (d.join(person_ids.rename({"old": "person_id"}), on="person_id", how="inner")
                       .group_by("new").agg(death_year=pl.col("death_date").min().dt.year().cast(pl.Int32))
                       .rename({"new": "person_id"}).sort("person_id"))
    for table, df in omop.items():
        if table == "location":
            continue
        spec = cdm.table(table)
        before = df.height
        out = df
        if "person_id" in out.columns:
            out = out.filter(~pl.col("person_id").is_in(opted_list))
        removed = before - out.height
        # notes: de-identified with the person's own identifiers, dates shifted by the person's offset
        if table == "note" and out.height:
            out = _deid_notes(out, identity, offsets, note_deid)
        if table in FREE_TEXT and table != "note":
            out, n = mask_identifiers(out, list(FREE_TEXT[table]), identifiers)
            if n:
                masked[table] = n
        # dates move before ids change (offsets are keyed on the identifiable zone's person_id)
        out = shift_dates(out, offsets)
        pk = spec.primary_key
        if pk and pk in out.columns and pk != "person_id":
            out = _remap(out, pk, keyed(table, out[pk]))
        for f in spec.foreign_keys:
            if f.name == pk or f.name not in out.columns or f.fk_table in cdm.VOCABULARY_TABLES:
                continue
            if f.fk_table == "person":
                out = _remap(out, f.name, person_ids)
            elif f.fk_table == "location":
                if loc_ids is not None:
                    out = _remap(out, f.name, loc_ids.unique("old"))
            elif f.fk_table is not None:
                out = _remap(out, f.name, keyed(f.fk_table, out[f.name]))
        for (tbl, col), target_table in EXTRA_ID_REFERENCES.items():
            if tbl == table and col in out.columns:
                out = _remap(out, col, keyed(target_table, out[col]))
        for (tbl, col), field_col in EVENT_LINKS.items():
            if tbl == table and col in out.columns and out[col].is_not_null().any():
                linked = []
                for concept, event_table in EPISODE_EVENT_FIELDS.items():
                    part = out.filter(pl.col(field_col) == concept)
                    # ids of events not in the part keep a pseudonym here (the map of the values, not the table's)
                    linked.append(_remap(part, col, _keyed(secret, event_table, site, part[col])))
                linked.append(out.filter(~pl.col(field_col).is_in(list(EPISODE_EVENT_FIELDS)) | pl.col(field_col).is_null())
                              .with_columns(pl.lit(None, pl.Int64).alias(col)))
                out = pl.concat(linked)
        if table == "episode_event" and out.height:
            parts = []
            for concept, event_table in EPISODE_EVENT_FIELDS.items():
                part = out.filter(pl.col("episode_event_field_concept_id") == concept)
                parts.append(_remap(part, "event_id", _keyed(secret, event_table, site, part["event_id"])))
            known = list(EPISODE_EVENT_FIELDS)
            parts.append(out.filter(~pl.col("episode_event_field_concept_id").is_in(known)).with_columns(event_id=pl.lit(None, pl.Int64)))
            out = pl.concat(parts)
        for col in TOKENISED.get(table, ()):
            distinct = sorted(set(out[col].drop_nulls().to_list()))
            tokens = dict(zip(distinct, token_many(secret, f"{table}.{col}", [f"{site}:{v}" for v in distinct]), strict=True))
            out = out.with_columns(pl.col(col).replace_strict(tokens, default=None, return_dtype=pl.String))
        if table == "person":
            out = _remap(out, "person_id", person_ids)
            # the true year of birth (the release generalises it): the shifted birth date would give
            # the wrong year for about a quarter of persons and, ungeneralised, narrow the secret offset
            tok = link.select(person_id="person_id", _tok="person_source_value", _birth="birth_date")
            out = out.join(tok, on="person_id", how="left").with_columns(
                person_source_value=pl.col("_tok"),
                year_of_birth=pl.coalesce(pl.col("_birth").dt.year().cast(pl.Int32), pl.col("year_of_birth")),
            )
        out = out.with_columns([pl.lit(None).alias(c) for c in DROPPED.get(table, ()) if c in out.columns])
        out = cdm.conform(out, table)
        tables[table] = out.sort(pk) if pk else out
        if "person_id" in df.columns:
            acc.append(dict(table=table, category="in", reason_code=None, rows=before))
            if removed:
                acc.append(dict(table=table, category="opted_out", reason_code="pseudo.opt_out", rows=removed))
            acc.append(dict(table=table, category="out", reason_code=None, rows=out.height))
        else:
            acc.append(dict(table=table, category="produced", reason_code=None, rows=out.height))
    if loc_rows is not None:
        used = set(tables["person"]["location_id"].drop_nulls().to_list()) if "person" in tables else set()
        if "care_site" in tables:
            used |= set(tables["care_site"]["location_id"].drop_nulls().to_list())
        tables["location"] = loc_rows.filter(pl.col("location_id").is_in(sorted(used)))
        acc.append(dict(table="location", category="produced", reason_code=None, rows=tables["location"].height))
    return PseudoResult(tables, accounting_frame("pseudo", site, acc), int(opted.len()), masked, death_years)


def _deid_notes(notes: pl.DataFrame, identity: pl.DataFrame, offsets: pl.DataFrame, deid: NoteDeid | None) -> pl.DataFrame:
    """note_text de-identified; without a de-identifier the text is dropped (never published raw)."""
    if deid is None:
        return notes.with_columns(note_text=pl.lit(None, pl.String), note_title=pl.lit(None, pl.String))
    joined = notes.join(identity, on="person_id", how="left", maintain_order="left").join(
        offsets, on="person_id", how="left", maintain_order="left")
    for c in ("other_names", "other_ids"):
        if c not in joined.columns:
            joined = joined.with_columns(pl.lit(None, pl.String).alias(c))
    known = [
        {"names": [x for x in (r["first_name"], r["last_name"],
                               f"{r['first_name'] or ''} {r['last_name'] or ''}".strip(),
                               *[n.strip() for n in (r["other_names"] or "").split("|")]) if x],
         "phones": [r["phone"]] if r["phone"] else [], "emails": [r["email"]] if r["email"] else [],
         "addresses": [r["address"]] if r["address"] else [], "national_ids": [x for x in (r["matricule"], *(n.strip() for n in (r["other_ids"] or "").split("|")))
                          if x],
         # the birth date is tagged wherever it is written (never shifted); the site's own patient id is masked
         "birth_dates": [r["birth_date"].isoformat()] if r["birth_date"] is not None else [],
         "local_ids": [str(r["patient_id"])] if r["patient_id"] is not None else []}
        for r in joined.select("first_name", "last_name", "phone", "email", "address", "matricule", "other_names", "other_ids",
                               "birth_date", "patient_id").iter_rows(named=True)
    ]
    shifts: list[int] = joined["date_offset"].fill_null(0).to_list()
    births: list[set[dt.date]] = [{b} if b is not None else set() for b in joined["birth_date"].to_list()]
    texts = deid(joined["note_text"].fill_null("").to_list(), known, shifts, births)
    titles = deid(joined["note_title"].fill_null("").to_list(), known, shifts, births)
    return notes.with_columns(note_text=pl.Series(texts, dtype=pl.String), note_title=pl.Series(titles, dtype=pl.String))
