"""The privacy policy a data steward sets: pseudonymisation and k-anonymity, readable as YAML.

Defaults are cautious: k = 5, at most 5% of records suppressed, average prosecutor risk at most 0.05.
For a public release under the EMA's guidance, set ``thresholds.max_risk`` to 0.09.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Metric = Literal["loss", "precision", "discernibility", "aecs", "entropy"]


class QuasiIdentifier(BaseModel):
    """A person-level quasi-identifier and the hierarchy that generalises it."""

    model_config = ConfigDict(extra="forbid")
    column: str = Field(description="column of the person-level QI table (year_of_birth, sex, postcode, ...)")
    hierarchy: str = Field(description="builtin:NAME or the path of an ARX hierarchy CSV")


class Thresholds(BaseModel):
    """Re-identification risk thresholds that a release must hold (checked after anonymisation)."""

    model_config = ConfigDict(extra="forbid")
    max_risk: float = Field(0.2, gt=0, le=1, description="highest prosecutor risk (1/k of the smallest class)")
    avg_risk: float = Field(0.05, gt=0, le=1, description="average prosecutor risk")
    risk_level: float = Field(0.2, gt=0, le=1, description="a record is at risk above this level")
    max_share_at_risk: float = Field(0.0, ge=0, le=1, description="share of records allowed above risk_level")


class LDiversity(BaseModel):
    model_config = ConfigDict(extra="forbid")
    attribute: str
    l: int = Field(2, ge=2)  # noqa: E741
    variant: Literal["distinct", "entropy"] = "distinct"


def _default_qis() -> list[QuasiIdentifier]:
    return [
        QuasiIdentifier(column="year_of_birth", hierarchy="builtin:year5"),
        QuasiIdentifier(column="sex", hierarchy="builtin:sex"),
        QuasiIdentifier(column="postcode", hierarchy="builtin:lu-postcode"),
        QuasiIdentifier(column="death_year", hierarchy="builtin:year5"),
    ]


class PrivacyPolicy(BaseModel):
    """What may leave the hospital, and how far it is generalised."""

    model_config = ConfigDict(extra="forbid")
    # pseudonymisation
    date_shift_days: int = Field(180, ge=1, le=3650, description="dates move by a per-patient offset in ±N days, never 0")
    birth: Literal["year", "none"] = Field("year", description="keep the year of birth (month and day are always dropped)")
    opt_out_registry: str | None = Field(None, description="file of matricules whose owners objected (one per line)")
    publish_notes: bool = Field(
        False,
        description="publish de-identified clinical notes in the release; off by default because free text still "
        "carries quasi-identifiers (ages, shifted dates, rare details) that the k-anonymity of the tables does not cover",
    )
    # k-anonymity
    k: int = Field(5, ge=2)
    suppression: float = Field(0.05, ge=0, le=1, description="largest share of persons that may be suppressed")
    metric: Metric = "loss"
    quasi_identifiers: list[QuasiIdentifier] = Field(default_factory=_default_qis)
    l_diversity: LDiversity | None = None
    rare_concept_threshold: int | None = Field(None, ge=1, description="concepts used by fewer persons are generalised or removed; default k")
    thresholds: Thresholds = Field(default_factory=Thresholds)
    population: str | None = Field(
        None, description="CSV of population counts by some QIs (e.g. age band, sex, canton) for journalist risk"
    )

    @model_validator(mode="after")
    def _unique_qis(self) -> PrivacyPolicy:
        cols = [q.column for q in self.quasi_identifiers]
        if len(cols) != len(set(cols)):
            raise ValueError(f"quasi_identifiers name a column twice: {cols}")
        return self

    @property
    def rare_threshold(self) -> int:
        return self.rare_concept_threshold or self.k
