"""Publishing a large release table range by range of person_id: the file holds the rows of one sort
of the whole table, in the same order, and is the same bytes each time."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest

from pipelines import publish
from transforms.storage import LazyTables, PartitionWriter


def _release_zone(folder: Path) -> LazyTables:
    rng = np.random.default_rng(3)
    n = 1_000
    persons = rng.integers(1, 2**63 - 1, size=120, dtype=np.int64)
    df = pl.DataFrame({
        "measurement_id": np.arange(n, dtype=np.int64),
        "person_id": persons[rng.integers(0, len(persons), size=n)],
        "measurement_date": [dt.date(2020, 1, 1) + dt.timedelta(days=int(d)) for d in rng.integers(0, 400, size=n)],
        "value_as_number": rng.normal(size=n),
    }).with_columns(person_id=pl.when(pl.col("measurement_id") % 97 == 0).then(None).otherwise("person_id"))
    writer = PartitionWriter(folder / "measurement")
    for i, start in enumerate(range(0, n, 300)):  # parts as the release writes them: each one sorted
        writer.write(df.slice(start, 300).sort("person_id", "measurement_id", nulls_last=True), i)
    return LazyTables({"measurement": writer.commit()})


def test_a_large_table_is_written_range_by_range_in_the_order_of_one_sort(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    tables = _release_zone(tmp_path / "release")
    whole = tmp_path / "whole.parquet"
    publish.write_sorted(tables, "measurement", whole)
    monkeypatch.setattr(publish, "PUBLISH_CHUNK_ROWS", 90)
    ranged, again = tmp_path / "ranged.parquet", tmp_path / "again.parquet"
    schema = publish.write_sorted(tables, "measurement", ranged)
    publish.write_sorted(tables, "measurement", again)
    expected, got = pl.read_parquet(whole), pl.read_parquet(ranged)
    assert schema == expected.schema == got.schema
    assert got.equals(expected)  # the same rows in the same order (nulls of person_id last)
    assert got.height == 1_000 and got["person_id"].null_count() == expected["person_id"].null_count() > 0
    assert pq.ParquetFile(ranged).metadata.num_row_groups > 1  # written range by range
    assert ranged.read_bytes() == again.read_bytes()
