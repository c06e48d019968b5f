"""What the leak scans of the pipeline read from the identity zone, and how they rule out chance.

The scans (``anonymisation/leakscan.py``) match names, birth dates and street lines against the rows
of the person they belong to, so they need each identity keyed by the person ids of the data they
scan: the pseudo stage writes, beside each site's identities, its pseudonyms (``person_id`` ->
``pseudo_person_id``, ``lake/identity/pseudonyms``); a pseudonymised release re-keys them for its
permit (``anonymisation/permit.py``). What the release holds is recorded in
``lake/identity/release/persons`` and, once published, ``lake/identity/published/<dataset>/<version>``
(``ds4h verify --workspace`` reads it). None of it is ever published. No Dagster here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from pathlib import Path

import polars as pl

from anonymisation.dates import DELTA
from anonymisation.leakscan import LeakScan, birth_date_images
from anonymisation.permit import rekey_ids
from transforms.storage import Workspace, has_partition, partition_files, read_partition, scan_parquet_files

PERSONS_SCHEMA = {"person_id": pl.Int64, "pseudo_person_id": pl.Int64, "birth_date_coincidence": pl.Boolean}


def as_pseudonymous(identity: pl.DataFrame, pmap: pl.DataFrame) -> pl.DataFrame:
    """The identity rows with ``person_id`` replaced by the pseudonymous one (``pmap``: person_id,
    pseudo_person_id), as the pseudo zone's tables hold it."""
    return identity.join(pmap.select("person_id", "pseudo_person_id"), on="person_id", how="left").with_columns(
        person_id=pl.col("pseudo_person_id")).drop("pseudo_person_id")


def identity_sites(ws: Workspace) -> list[str]:
    """The sites with identities in the workspace's identity zone."""
    if not ws.identity_table.is_dir():
        return []
    return sorted(p.name.removeprefix("site=") for p in ws.identity_table.glob("site=*") if has_partition(p))


def pseudonymous_identities(ws: Workspace, sites: Iterable[str]) -> pl.DataFrame:
    """Every site's identity rows keyed by pseudonymous person ids (null for a site whose pseudo stage
    has not written its pseudonyms yet: only what is identifying everywhere is then looked for)."""
    frames = []
    for s in sites:
        if not has_partition(ws.identity(s)):
            continue
        ident = read_partition(ws.identity(s))
        if has_partition(ws.pseudonyms(s)):
            frames.append(as_pseudonymous(ident, read_partition(ws.pseudonyms(s))))
        else:
            frames.append(ident.with_columns(person_id=pl.lit(None, pl.Int64)))
    return pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame(schema={"person_id": pl.Int64})


def release_persons(pseudo_ids: pl.Series, secret: bytes | None = None, permit: str | None = None) -> pl.DataFrame:
    """person_id (as the release holds it), pseudo_person_id: the same ids, or those of ``permit`` (a
    pseudonymised release)."""
    distinct = pseudo_ids.drop_nulls().unique().sort().cast(pl.Int64)
    released = rekey_ids(distinct, secret, permit, "person") if permit and secret is not None else distinct
    return pl.DataFrame({"person_id": released.cast(pl.Int64), "pseudo_person_id": distinct,
                         "birth_date_coincidence": pl.Series([False] * distinct.len(), dtype=pl.Boolean)})


def released_identities(identities: pl.DataFrame, persons: pl.DataFrame) -> pl.DataFrame:
    """``identities`` (keyed by pseudonymous ids) keyed by the released ids of ``persons``."""
    return identities.join(persons.select(_r="person_id", person_id="pseudo_person_id"), on="person_id", how="left"
                           ).with_columns(person_id=pl.col("_r")).drop("_r")


def pseudo_coincidences(ws: Workspace, sites: Iterable[str]) -> list[int]:
    """Pseudonymous ids whose pseudo-zone dates fell on their birth date by the date shift's chance."""
    out: list[int] = []
    for s in sites:
        if has_partition(ws.pseudonyms(s)):
            pm = read_partition(ws.pseudonyms(s))
            if "birth_date_coincidence" in pm.columns:
                out.extend(pm.filter(pl.col("birth_date_coincidence"))["pseudo_person_id"].to_list())
    return out


def zone_dates(ws: Workspace, zone: str, sites: Iterable[str], persons: list[int]) -> pl.DataFrame:
    """person_id, date: every Date and Datetime cell of ``persons`` in a zone's tables (omop, pseudo)."""
    from schemas import omop as cdm

    frames: list[pl.LazyFrame] = []
    for s in sites:
        for t in cdm.tables():
            files = partition_files(ws.lake(zone, t, s))
            if not files:
                continue
            lf = scan_parquet_files(files)
            schema = lf.collect_schema()
            cols = [c for c, ty in schema.items() if isinstance(ty, pl.Date | pl.Datetime)]
            if "person_id" not in schema or not cols:
                continue
            lf = lf.filter(pl.col("person_id").is_in(persons))
            frames.extend(lf.select(pl.col("person_id").cast(pl.Int64), date=pl.col(c).cast(pl.Date)) for c in cols)
    if not frames:
        return pl.DataFrame(schema={"person_id": pl.Int64, "date": pl.Date})
    return pl.concat(pl.collect_all(frames)).drop_nulls()


def written_dates(texts: pl.DataFrame) -> pl.DataFrame:
    """person_id, date: the full dates (day, month and year) written in ``texts`` (person_id, text), as
    the note de-identification reads them (its recognisers and date parser)."""
    from anonymisation.deid_dates import parse_date
    from anonymisation.deid_recognizers import BIRTH_DATE, find_all

    rows: list[tuple[int, dt.date]] = []
    for pid, text in texts.drop_nulls().iter_rows():
        for s, e, kind, _score in find_all(text):
            if kind not in ("DATE", BIRTH_DATE):
                continue
            parsed = parse_date(text[s:e])
            if parsed is not None and parsed.value is not None and parsed.precision == "day" and parsed.form.year_digits:
                rows.append((int(pid), parsed.value))
    return pl.DataFrame(rows, schema={"person_id": pl.Int64, "date": pl.Date}, orient="row")


def zone_note_dates(ws: Workspace, zone: str, sites: Iterable[str], persons: list[int]) -> pl.DataFrame:
    """person_id, date: the full dates written in the notes (text and title) of ``persons`` in a zone."""
    frames: list[pl.DataFrame] = []
    for s in sites:
        files = partition_files(ws.lake(zone, "note", s))
        if not files:
            continue
        lf = scan_parquet_files(files)
        cols = [c for c in ("note_text", "note_title") if c in lf.collect_schema()]
        notes = lf.filter(pl.col("person_id").is_in(persons)).select("person_id", *cols).collect()
        frames.extend(written_dates(notes.select(pl.col("person_id").cast(pl.Int64), text=pl.col(c))) for c in cols)
    return pl.concat(frames) if frames else pl.DataFrame(schema={"person_id": pl.Int64, "date": pl.Date})


def explain_pseudo_dates(ws: Workspace, site: str, scan: LeakScan, pmap: pl.DataFrame, identity: pl.DataFrame) -> set[int]:
    """Rule out the pseudo zone's Date cells (and dates written in notes) that fall on the person's birth
    date because a true date of the person (OMOP zone: a Date cell or a full date written in one of
    their notes), moved by the person's offset, lands there (about 1 person in 3,000 of
    generated data): such persons' Date hits are explained; any other stays a leak. ``pmap``:
    :func:`anonymisation.pseudonymise.pseudonyms` of the site. Returns the pseudonymous ids explained."""
    hit = scan.birth_date_persons()
    if not hit:
        return set()
    mine = pmap.filter(pl.col("pseudo_person_id").is_in(hit))
    # a date cell, or a date written in a note (the note's dates are shifted with the person's offset)
    dates = pl.concat([zone_dates(ws, "omop", [site], mine["person_id"].to_list()),
                       zone_note_dates(ws, "omop", [site], mine["person_id"].to_list())])
    births = identity.select("person_id", "birth_date").filter(pl.col("person_id").is_in(mine["person_id"].implode()))
    images = birth_date_images(dates, mine.select("person_id", shift="date_offset"), births)
    explained = set(mine.filter(pl.col("person_id").is_in(sorted(images)))["pseudo_person_id"].to_list())
    scan.explain(explained)
    return explained


def explain_release_dates(ws: Workspace, sites: Iterable[str], scan: LeakScan, persons: pl.DataFrame,
                          deltas: pl.DataFrame | None, precision: str) -> set[int]:
    """The release's counterpart: a released Date cell on the person's birth date is explained when
    one of the person's pseudo-zone dates, moved by the release (death anchor, permit shift:
    ``deltas``, pseudonymous person_id, _delta_days) and coarsened to ``precision``, lands there.
    Returns the released person ids explained (their Date hits are dropped from ``scan``)."""
    hit = scan.birth_date_persons()
    if not hit:
        return set()
    mine = persons.filter(pl.col("person_id").is_in(hit))
    pseudo = mine["pseudo_person_id"].to_list()
    births = scan.ids.births.join(mine.select("person_id", "pseudo_person_id"), on="person_id").select(
        person_id="pseudo_person_id", birth_date="birth_date")
    # a pseudo-zone date on the birth date is an image only if the pseudo stage explained it (else it
    # is a leak its own check reported)
    before = set(pseudo_coincidences(ws, sites))
    dates = pl.concat([zone_dates(ws, "pseudo", sites, pseudo), zone_note_dates(ws, "pseudo", sites, pseudo)]).join(births, on="person_id", how="left").filter(
        (pl.col("date") != pl.col("birth_date")).fill_null(True) | pl.col("person_id").is_in(sorted(before))
    ).select("person_id", "date")
    shifts = deltas.select("person_id", shift=DELTA) if deltas is not None and deltas.height else None
    images = birth_date_images(dates, shifts, births, precision)  # type: ignore[arg-type]
    explained = set(mine.filter(pl.col("pseudo_person_id").is_in(sorted(images)))["person_id"].to_list())
    scan.explain(explained)
    return explained


def write_private(ws: Workspace, df: pl.DataFrame, folder: Path) -> None:
    """Replace a partition of the identity zone (0700 folders, 0600 files) with ``df``."""
    writer = ws.private_writer(folder)
    writer.write(df, 0)
    writer.commit()
