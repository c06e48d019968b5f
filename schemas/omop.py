"""OMOP CDM v5.4 tables, derived from the official specification CSVs in ``schemas/omop_spec``.

Nothing about a table is written by hand elsewhere: polars and Arrow schemas, required fields,
primary and foreign keys, and the DuckDB and PostgreSQL DDL all come from here.

Deviation from the OHDSI DDL (the one place it is decided): identifiers of rows — primary keys and
foreign keys to non-vocabulary tables (``person_id``, ``visit_occurrence_id``, ...) — are 64-bit
(``BIGINT``/``Int64``), because ds4h derives person ids from a keyed HMAC (63 bits). Concept ids and
other integers stay 32-bit as in the specification.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from importlib import resources

import polars as pl
import pyarrow as pa

VOCABULARY_TABLES = frozenset(
    {
        "concept", "vocabulary", "domain", "concept_class", "concept_relationship", "relationship",
        "concept_synonym", "concept_ancestor", "source_to_concept_map", "drug_strength",
    }
)


@dataclass(frozen=True, slots=True)
class Field:
    table: str
    name: str
    datatype: str  # as in the spec: integer, float, date, datetime, varchar(N)
    required: bool
    primary_key: bool
    fk_table: str | None
    fk_field: str | None
    fk_domain: str | None

    @property
    def is_identifier(self) -> bool:
        """A row identifier (stored as 64 bits): a primary key, a key into a non-vocabulary table, or
        another ``*_id`` integer of a clinical table that is not a concept (episode_parent_id, event_id)."""
        if self.primary_key or (self.fk_table is not None and self.fk_table not in VOCABULARY_TABLES):
            return True
        return (self.datatype.lower() == "integer" and self.name.endswith("_id") and "concept" not in self.name
                and self.fk_table is None and self.table not in VOCABULARY_TABLES)

    @property
    def is_concept(self) -> bool:
        return self.fk_table == "concept"

    @property
    def polars_type(self) -> pl.DataType:
        t = self.datatype.lower()
        if t == "integer":
            return pl.Int64() if self.is_identifier else pl.Int32()
        if t == "float":
            return pl.Float64()
        if t == "date":
            return pl.Date()
        if t == "datetime":
            return pl.Datetime("us")
        if t.startswith("varchar"):
            return pl.String()
        raise ValueError(f"unknown CDM datatype {self.datatype!r} for {self.table}.{self.name}")

    @property
    def sql_type(self) -> str:
        t = self.datatype.lower()
        if t == "integer":
            return "BIGINT" if self.is_identifier else "INTEGER"
        if t == "float":
            return "DOUBLE PRECISION"
        if t == "date":
            return "DATE"
        if t == "datetime":
            return "TIMESTAMP"
        if t == "varchar(max)":
            return "TEXT"
        return t.upper()


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    description: str
    fields: tuple[Field, ...]

    @property
    def columns(self) -> list[str]:
        return [f.name for f in self.fields]

    @property
    def required(self) -> list[str]:
        return [f.name for f in self.fields if f.required]

    @property
    def primary_key(self) -> str | None:
        for f in self.fields:
            if f.primary_key:
                return f.name
        return None

    @property
    def foreign_keys(self) -> list[Field]:
        return [f for f in self.fields if f.fk_table is not None]

    @property
    def polars_schema(self) -> pl.Schema:
        return pl.Schema({f.name: f.polars_type for f in self.fields})

    @property
    def arrow_schema(self) -> pa.Schema:
        empty = pl.DataFrame(schema=self.polars_schema)
        return empty.to_arrow().schema

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"{self.name} has no field {name!r}")


def _na(v: str) -> str | None:
    v = v.strip()
    return None if v in ("", "NA") else v


def _read(name: str) -> list[dict[str, str]]:
    text = resources.files("schemas").joinpath(f"omop_spec/{name}").read_text(encoding="utf-8-sig")
    return list(csv.DictReader(text.splitlines(keepends=True)))


@cache
def tables() -> dict[str, Table]:
    """All CDM v5.4 tables by lower-case name, fields in specification order."""
    descriptions = {r["cdmTableName"].lower(): r["tableDescription"] for r in _read("OMOP_CDMv5.4_Table_Level.csv")}
    fields: dict[str, list[Field]] = {}
    for r in _read("OMOP_CDMv5.4_Field_Level.csv"):
        table = r["cdmTableName"].lower()
        fk_table = _na(r["fkTableName"])
        fk_field = _na(r["fkFieldName"])
        fields.setdefault(table, []).append(
            Field(
                table=table,
                name=r["cdmFieldName"].strip().strip('"').lower(),
                datatype=r["cdmDatatype"].strip(),
                required=r["isRequired"].strip().lower() == "yes",
                primary_key=r["isPrimaryKey"].strip().lower() == "yes",
                fk_table=fk_table.lower() if fk_table else None,
                fk_field=fk_field.lower() if fk_field else None,
                fk_domain=_na(r["fkDomain"]),
            )
        )
    return {t: Table(t, descriptions.get(t, ""), tuple(fs)) for t, fs in fields.items()}


def table(name: str) -> Table:
    try:
        return tables()[name.lower()]
    except KeyError:
        raise KeyError(f"{name!r} is not an OMOP CDM v5.4 table") from None


def conform(df: pl.DataFrame, name: str) -> pl.DataFrame:
    """Exactly the spec's columns, in order and type; missing columns become nulls."""
    t = table(name)
    exprs = [
        (pl.col(f.name) if f.name in df.columns else pl.lit(None)).cast(f.polars_type).alias(f.name)
        for f in t.fields
    ]
    return df.select(exprs)


def _quote(name: str, dialect: str) -> str:
    return f'"{name}"' if name in {"offset"} else name


def ddl(dialect: str = "duckdb", names: list[str] | None = None, schema: str | None = None) -> str:
    """CREATE TABLE statements (duckdb or postgresql) with NOT NULL and primary keys."""
    if dialect not in ("duckdb", "postgresql"):
        raise ValueError("dialect must be 'duckdb' or 'postgresql'")
    prefix = f"{schema}." if schema else ""
    out = []
    for t in (tables()[n] for n in (names or list(tables()))):
        cols = []
        for f in t.fields:
            sql = f.sql_type
            if dialect == "duckdb" and sql == "DOUBLE PRECISION":
                sql = "DOUBLE"
            null = " NOT NULL" if f.required else ""
            cols.append(f"  {_quote(f.name, dialect)} {sql}{null}")
        if t.primary_key:
            cols.append(f"  PRIMARY KEY ({t.primary_key})")
        out.append(f"CREATE TABLE {prefix}{t.name} (\n" + ",\n".join(cols) + "\n);")
    return "\n\n".join(out) + "\n"
