from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from schemas import omop
from schemas.config import ConfigError, parse_config
from schemas.extract import contract_markdown
from schemas.geo import CANTON_CODES, commune_index, communes, country_code, postcode_index

ROOT = Path(__file__).resolve().parents[1]


def test_contract_doc_is_generated_from_the_contract() -> None:
    assert (ROOT / "docs" / "hospital-csv.md").read_text(encoding="utf-8") == contract_markdown()


def test_omop_spec_tables() -> None:
    tables = omop.tables()
    assert len(tables) == 39
    person = omop.table("person")
    assert person.primary_key == "person_id"
    assert person.polars_schema["person_id"] == pl.Int64  # the one deviation: 64-bit row ids
    assert person.polars_schema["gender_concept_id"] == pl.Int32
    assert "year_of_birth" in person.required
    assert "offset" in omop.table("note_nlp").columns
    ddl = omop.ddl("postgresql", ["note_nlp"])
    assert '"offset" VARCHAR(50)' in ddl
    fk = {f.name: f.fk_table for f in omop.table("condition_occurrence").foreign_keys}
    assert fk["person_id"] == "person" and fk["condition_concept_id"] == "concept"


def test_conform_gives_exact_columns() -> None:
    df = omop.conform(pl.DataFrame({"person_id": [1], "extra": ["x"]}), "person")
    assert df.columns == omop.table("person").columns
    assert df.schema == omop.table("person").polars_schema


def test_duckdb_ddl_runs() -> None:
    import duckdb

    con = duckdb.connect()
    con.execute(omop.ddl("duckdb"))
    assert len(con.sql("SELECT table_name FROM information_schema.tables").fetchall()) == 39


def test_geo() -> None:
    assert len(communes()) == 100
    assert len({c.canton for c in communes()}) == 12
    assert all(pc.startswith("L-") and len(pc) == 6 for pc in postcode_index())


def test_geo_codes() -> None:
    # ISO 3166-2:LU: one code per canton of the communes file, none other
    assert set(CANTON_CODES) == {c.canton for c in communes()}
    assert len(set(CANTON_CODES.values())) == 12
    assert all(len(code) == 5 and code.startswith("LU-") and code[3:].isalpha() for code in CANTON_CODES.values())
    assert CANTON_CODES["Vianden"] == "LU-VD" and CANTON_CODES["Esch-sur-Alzette"] == "LU-ES"
    # commune codes: LU- and the four digits of the official code, one per commune
    assert len(commune_index()) == 100 and all(len(label) == 7 for label in commune_index())
    assert commune_index()["LU-0042"].name == "Beaufort"
    # no code of one level is a code of another
    assert not set(commune_index()) & set(CANTON_CODES.values())
    assert not set(postcode_index()) & set(commune_index())


@pytest.mark.parametrize(("value", "code"), [
    ("LU", "LU"), ("lu", "LU"), (" fr ", "FR"), ("Luxembourg", "LU"), ("Lëtzebuerg", "LU"), ("FRANCE", "FR"),
    ("Belgique", "BE"), ("België", "BE"), ("Deutschland", "DE"), ("Allemagne", "DE"), ("Netherlands", "NL"),
    ("United States", "US"), ("USA", "US"), ("US", "US"), ("United States of America", "US"), ("UK", "GB"),
    ("PT", "PT"), ("XK", "XK"), ("", None), (None, None), ("Atlantis", None), ("F", None),
])
def test_country_code(value: str | None, code: str | None) -> None:
    assert country_code(value) == code


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"project": "demo"}, "sources"),
        ({"sources": [{"site": "A B", "path": "x"}]}, "sources.0.site"),
        ({"sources": [{"site": "a", "path": "x", "encodng": "cp1252"}]}, "encodng"),
        ({"sources": [{"site": "a", "path": "x", "encoding": "klingon"}]}, "unknown encoding"),
        ({"sources": [{"site": "a", "path": "x"}], "policy": {"k": 1}}, "policy.k"),
        ({"sources": [{"site": "a", "path": "x"}, {"site": "a", "path": "y"}]}, "unique"),
        ({"sources": [{"site": "a", "path": "x"}], "policy": {"mode": "pseudonymised"}}, "needs release.permit"),
        ({"sources": [{"site": "a", "path": "x"}], "release": {"permit": "P-1"}}, "only used by pseudonymised"),
        ({"sources": [{"site": "a", "path": "x"}], "policy": {"l_diversity": {"attribute": "race"}}},
         "does not apply to a release"),
        ({"sources": [{"site": "a", "path": "x"}], "policy": {"rare_concept_threshold": 3}}, "replaced by attacker_facts"),
        ({"sources": [{"site": "a", "path": "x"}], "policy": {"attacker_facts": 4}}, "policy.attacker_facts"),
    ],
)
def test_config_errors_name_the_field(data: dict[str, object], needle: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        parse_config(data, tmp_path)


def test_config_paths_resolve_against_the_file(tmp_path: Path) -> None:
    cfg = parse_config({"sources": [{"site": "a", "path": "landing/a"}]}, tmp_path)
    assert cfg.sources[0].path == tmp_path / "landing" / "a"
    assert cfg.policy.k == 5 and cfg.policy.suppression == 0.05 and cfg.policy.thresholds.avg_risk == 0.05
