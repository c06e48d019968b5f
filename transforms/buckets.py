"""Person buckets: split a site's extract so that memory is bounded by a bucket, not by the site.

Every OMOP step from staging on works per person (visit roll-up, eras, observation periods, episodes),
so a site's patients can be processed in buckets and the outputs concatenated. A patient's bucket is
a stable hash of its source id (blake2b, the same on every machine and polars version) modulo the
number of buckets; each event file is streamed once, in chunks, and its rows are appended to the
Parquet file of their patient's bucket. Rows naming no known patient go to bucket 0, where the
orphan check quarantines them as it would in one piece.

The split files hold the source cells as strings and ``_line`` (the 1-based source line, header = 1),
exactly what ``transforms.ingest.read_text_csv`` gives for the whole file.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from transforms.ids import stable_id
from transforms.ingest import LINE, ExtractError

BUCKET = "_bucket"
DEFAULT_PERSONS_PER_BUCKET = 5_000
CHUNK_ROWS = 200_000


def bucket_count(persons: int, per_bucket: int = DEFAULT_PERSONS_PER_BUCKET) -> int:
    """How many buckets hold ``persons`` at about ``per_bucket`` each (at least one)."""
    if per_bucket < 1:
        raise ValueError(f"persons per bucket must be at least 1, not {per_bucket}")
    return max(1, math.ceil(persons / per_bucket))


def bucket_lookup(keys: pl.Series, buckets: int) -> pl.DataFrame:
    """``_person_key`` -> ``_bucket`` (UInt32) for each distinct non-null person key."""
    distinct = keys.drop_nulls().unique().sort()
    return pl.DataFrame({
        "_person_key": distinct,
        BUCKET: (stable_id("bucket", distinct) % buckets).cast(pl.UInt32),
    })


@dataclass(frozen=True)
class CsvDialect:
    """How a CSV file is written: its encoding and delimiter (a source's ``encoding`` and ``delimiter``)."""

    encoding: str = "utf-8"
    delimiter: str = ","
    configurable: bool = False  # set by the source's 'encoding' and 'delimiter' (an error says so)

    @property
    def utf8(self) -> bool:
        return self.encoding.lower().replace("-", "").replace("_", "") in ("utf8", "utf8sig")

    @property
    def default(self) -> bool:
        return self.utf8 and self.delimiter == ","


UTF8_COMMA = CsvDialect()


def _csv_error(path: Path, e: Exception, dialect: CsvDialect = UTF8_COMMA) -> ExtractError:
    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
    # pyarrow quotes the offending row after "Expected N columns, got M: ": cells may be identifiers
    first = re.sub(r"(columns?, got \d+).*", r"\1", first)[:160]
    if dialect.default and not dialect.configurable:
        return ExtractError(f"{path} is not a readable CSV ({first}); check that it is the export's comma-separated UTF-8 file")
    return ExtractError(f"{path} is not a readable CSV ({first}); check the source's 'encoding' and 'delimiter'")


def csv_header(path: Path, dialect: CsvDialect = UTF8_COMMA) -> list[str]:
    """The column names of a CSV file (a repeated name is suffixed as polars does)."""
    if dialect.default:
        try:
            return list(pl.scan_csv(path, infer_schema=False, n_rows=0).collect_schema().names())
        except (pl.exceptions.ComputeError, pl.exceptions.NoDataError, OSError) as e:
            raise _csv_error(path, e) from None
    try:  # another encoding or delimiter: the first line, decoded, as polars reads it
        with open(path, "rb") as fh:
            first = fh.readline()
        text = first.decode(dialect.encoding).lstrip("\ufeff")
        return list(pl.read_csv(text.encode("utf-8"), separator=dialect.delimiter, infer_schema=False, n_rows=0,
                                quote_char='"').columns)
    except (pl.exceptions.ComputeError, pl.exceptions.NoDataError, OSError, UnicodeDecodeError, LookupError) as e:
        raise _csv_error(path, e, dialect) from None


@dataclass(frozen=True)
class SplitFile:
    """One source file split into bucket files ``<folder>/<k>.parquet`` (absent: no row in bucket k)."""

    source: Path
    folder: Path
    columns: tuple[str, ...]  # source columns as written in the header
    rows: int

    def bucket(self, k: int) -> pl.DataFrame:
        """The rows of bucket ``k``: every source column as a string, plus ``_line`` (Int64)."""
        path = self.folder / f"{k}.parquet"
        if path.is_file():
            return pl.read_parquet(path)
        return pl.DataFrame(schema={LINE: pl.Int64(), **{c: pl.String() for c in self.columns}})

    def files(self) -> list[Path]:
        """The bucket files written (buckets without rows have none)."""
        return sorted(self.folder.glob("*.parquet"))


def _csv_batches(path: Path, columns: list[str], chunk_rows: int,
                 dialect: CsvDialect = UTF8_COMMA) -> Iterator[pl.DataFrame]:
    """The rows of a CSV file as string frames of about ``chunk_rows`` rows, with ``_line``.

    pyarrow's streaming reader with small blocks: memory stays flat whatever the file's size (polars'
    streaming CSV source buffers the whole file)."""
    reader = pacsv.open_csv(
        path,
        read_options=pacsv.ReadOptions(block_size=1 << 20, column_names=columns, skip_rows=1,
                                       encoding="utf8" if dialect.utf8 else dialect.encoding),
        parse_options=pacsv.ParseOptions(newlines_in_values=True, delimiter=dialect.delimiter),
        convert_options=pacsv.ConvertOptions(column_types={c: pa.string() for c in columns},
                                             null_values=[""], strings_can_be_null=True,
                                             quoted_strings_can_be_null=False),  # as polars reads: empty -> null, "" -> ""
    )
    line = 2
    pending: list[pa.RecordBatch] = []
    size = 0
    for batch in reader:
        pending.append(batch)
        size += batch.num_rows
        if size >= chunk_rows:
            df = pl.from_arrow(pa.Table.from_batches(pending))
            assert isinstance(df, pl.DataFrame)
            yield df.with_row_index(LINE, offset=line).with_columns(pl.col(LINE).cast(pl.Int64))
            line += size
            pending, size = [], 0
    if pending:
        df = pl.from_arrow(pa.Table.from_batches(pending))
        assert isinstance(df, pl.DataFrame)
        yield df.with_row_index(LINE, offset=line).with_columns(pl.col(LINE).cast(pl.Int64))


def csv_column(path: Path, column: str, dialect: CsvDialect = UTF8_COMMA) -> pl.Series:
    """One column of a CSV file, streamed (the rest of each row is read and dropped)."""
    columns = csv_header(path, dialect)
    try:
        parts = [chunk[column] for chunk in _csv_batches(path, columns, CHUNK_ROWS, dialect)]
    except (pa.ArrowInvalid, UnicodeDecodeError) as e:
        raise _csv_error(path, e, dialect) from None
    return pl.concat(parts) if parts else pl.Series(column, [], pl.String)


def split_csv(path: Path, key_column: str | None, lookup: pl.DataFrame, out: Path, *, chunk_rows: int = CHUNK_ROWS,
              dialect: CsvDialect = UTF8_COMMA, strip_key: bool = False,
              on_chunk: Callable[[pl.DataFrame], None] | None = None) -> SplitFile:
    """Stream ``path`` once, in chunks of ``chunk_rows``, into one Parquet file per bucket of ``key_column``.

    Memory is bounded by a chunk (and the lookup), whatever the size of the file. Without a key
    column (the file lacks it) every row goes to bucket 0, where the checks quarantine it.
    ``strip_key``: the key is looked up trimmed (as the checks read it; the lookup's keys are trimmed
    too); ``on_chunk`` sees every chunk (source strings and ``_line``) before it is written."""
    columns = csv_header(path, dialect)
    if key_column is not None and key_column not in columns:
        raise ValueError(f"{key_column} is not a column of {path.name}")
    out.mkdir(parents=True, exist_ok=True)
    schema = pa.schema([pa.field(LINE, pa.int64()), *[pa.field(c, pa.string()) for c in columns]])
    writers: dict[int, pq.ParquetWriter] = {}
    rows = 0
    try:
        for chunk in _csv_batches(path, columns, chunk_rows, dialect):
            rows += chunk.height
            if on_chunk is not None:
                on_chunk(chunk)
            if key_column is None:
                chunk = chunk.with_columns(pl.lit(0, pl.UInt32).alias(BUCKET))
            elif strip_key:
                chunk = chunk.with_columns(pl.col(key_column).str.strip_chars().alias("_key")).join(
                    lookup, left_on="_key", right_on="_person_key", how="left", maintain_order="left")
                chunk = chunk.with_columns(pl.col(BUCKET).fill_null(0))
            else:
                chunk = chunk.join(lookup, left_on=key_column, right_on="_person_key", how="left", maintain_order="left")
                chunk = chunk.with_columns(pl.col(BUCKET).fill_null(0))
            for (k,), part in chunk.partition_by(BUCKET, as_dict=True, include_key=False).items():
                w = writers.get(int(k))
                if w is None:
                    w = writers[int(k)] = pq.ParquetWriter(out / f"{k}.parquet", schema, compression="zstd")
                w.write_table(part.select(LINE, *columns).to_arrow().cast(schema))
    except (pa.ArrowInvalid, UnicodeDecodeError) as e:
        raise _csv_error(path, e, dialect) from None
    finally:
        for w in writers.values():
            w.close()
    return SplitFile(path, out, tuple(columns), rows)
