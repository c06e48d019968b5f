"""Dates in a release: per-person shifts on top of the pseudonymisation offset, and coarser precision.

- **Death anchor** (anonymised releases). A dead person's published death date is drawn uniformly
  (keyed HMAC of the person, so deterministic) within the first year of the band of the death-year
  level the release chose (the year itself at level 0), independently of the true date, and the
  person's whole timeline moves with it: intervals stay exact, the published death year is the
  band's first year (as a banded year of birth is), and the death date, the end of the observation
  period and the last events together reveal the band, nothing finer. When the death year is
  withheld the range is every death year of the release (and no death row is published).
- **Permit shift** (pseudonymised releases). Every person's timeline moves by a second offset derived
  from the permit id, so two permits' releases cannot be aligned on dates.
- **Coarsening** (``policy.event_dates``): every date truncated to its week (Monday) or month after
  all shifts; truncation keeps order (start <= end, events before death).
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

import polars as pl

from anonymisation.pseudonym import digest_many, offset_days_many

Precision = Literal["day", "week", "month"]
DELTA = "_delta_days"


def date_columns(df: pl.DataFrame) -> list[str]:
    return [c for c, t in df.schema.items() if isinstance(t, pl.Date | pl.Datetime)]


def anchor_deltas(
    deaths: pl.DataFrame, bands: dict[int, tuple[int, int]], secret: bytes, latest: dt.date | None = None
) -> pl.DataFrame:
    """(person_id, _delta_days) moving each dead person's timeline so that the death date falls on a
    keyed uniform day of its band.

    ``deaths``: person_id, death_date (as in the pseudonymised data: shifted), death_year (the true
    year, which selects the band); ``bands``: true death year -> (first year, last year) of its band;
    ``latest``: no anchored death date goes beyond it (the release's last date)."""
    rows: list[tuple[int, int]] = []
    todo = [(pid, shifted, year) for pid, shifted, year in deaths.select("person_id", "death_date", "death_year").iter_rows()
            if shifted is not None and year is not None and int(year) in bands]
    anchors = digest_many(secret, "death-anchor", [str(pid) for pid, _, _ in todo])
    for (pid, shifted, year), d in zip(todo, anchors, strict=True):
        lo, hi = bands[int(year)]
        first = dt.date(lo, 1, 1)
        last = dt.date(hi, 12, 31)
        if latest is not None:
            last = max(first, min(last, latest))
        span = (last - first).days + 1
        u = int.from_bytes(d[:8], "big") % span
        rows.append((int(pid), (first + dt.timedelta(days=u) - shifted).days))
    return pl.DataFrame(rows, schema={"person_id": pl.Int64, DELTA: pl.Int32}, orient="row")


def permit_deltas(person_ids: pl.Series, secret: bytes, permit: str, max_days: int) -> pl.DataFrame:
    """(person_id, _delta_days): a second per-person offset in ±max_days (never 0), keyed by the permit."""
    ids = person_ids.unique().sort().to_list()
    return pl.DataFrame({
        "person_id": pl.Series(ids, dtype=pl.Int64),
        DELTA: pl.Series(offset_days_many(secret, [f"permit:{permit}:{i}" for i in ids], max_days), dtype=pl.Int32),
    })


def shift(df: pl.DataFrame, deltas: pl.DataFrame | None) -> pl.DataFrame:
    """Every Date and Datetime column moved by the row's person delta (rows without one stay)."""
    cols = date_columns(df)
    if deltas is None or deltas.is_empty() or not cols or "person_id" not in df.columns:
        return df
    out = df.join(deltas, on="person_id", how="left", maintain_order="left")
    d = pl.duration(days=pl.col(DELTA).fill_null(0))
    return out.with_columns([(pl.col(c) + d).alias(c) for c in cols]).drop(DELTA)


def coarsen(df: pl.DataFrame, precision: Precision) -> pl.DataFrame:
    """Every date truncated to its week (Monday) or month; datetimes lose their time of day."""
    if precision == "day":
        return df
    every = "1w" if precision == "week" else "1mo"
    exprs = []
    for c in date_columns(df):
        col = pl.col(c)
        exprs.append(col.dt.truncate(every).alias(c))
    return df.with_columns(exprs) if exprs else df
