"""The privacy policy a data steward sets: pseudonymisation, release mode and anonymisation, as YAML.

Defaults are cautious: an ``anonymised`` release, k = 5 over every published person-level field and
k^m over the facts of each record (an attacker who knows up to m = 2 facts of a person, such as a
diagnosis and a drug), at most 5% of persons suppressed, average prosecutor risk at most 0.05.
docs/privacy.md says what each release protects against and what it does not.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Metric = Literal["loss", "precision", "discernibility", "aecs", "entropy"]
Mode = Literal["anonymised", "pseudonymised"]
_EPS = 1e-12


class QuasiIdentifier(BaseModel):
    """A person-level quasi-identifier and the hierarchy that generalises it."""

    model_config = ConfigDict(extra="forbid")
    column: str = Field(description="person-level field: year_of_birth, sex, postcode, death_year, race, ethnicity")
    hierarchy: str = Field(description="builtin:NAME or the path of an ARX hierarchy CSV")
    allow_removal: bool = Field(False, description="the release may collapse this field to one value (every "
                                "location the country, every year of birth 0); off: such a release is blocked")


class Thresholds(BaseModel):
    """Re-identification risk thresholds that a release must hold (checked after anonymisation).

    k already bounds the highest prosecutor risk by 1/k: ``max_risk`` and ``max_share_at_risk`` are
    off unless set, and a value that k makes impossible to fail is refused (it would do nothing)."""

    model_config = ConfigDict(extra="forbid")
    max_risk: float | None = Field(None, gt=0, le=1, description="highest prosecutor risk; must be below 1/k "
                                   "(e.g. 0.09 for a public release under the EMA's guidance at k = 5 needs k >= 12)")
    avg_risk: float = Field(0.05, gt=0, le=1, description="average prosecutor risk (classes / records)")
    risk_level: float = Field(0.1, gt=0, le=1, description="a record is at risk above this prosecutor risk "
                              "(reported; checked with max_share_at_risk)")
    max_share_at_risk: float | None = Field(None, ge=0, le=1, description="share of records allowed above risk_level")


class LDiversity(BaseModel):
    """l-diversity of a person-level field that is not a quasi-identifier (e.g. death_year, race)."""

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
    mode: Mode = Field("anonymised", description="anonymised (k and k^m guaranteed, the only mode a public catalogue "
                       "lists) or pseudonymised (for one recipient's secure processing environment under a data "
                       "permit: ids and dates re-keyed per release.permit, risk measured, not guaranteed)")
    # pseudonymisation
    date_shift_days: int = Field(180, ge=1, le=3650, description="dates move by a per-patient offset in ±N days, never 0")
    birth: Literal["year", "none"] = Field("year", description="publish the year of birth (generalised by its "
                                           "hierarchy), or none (year_of_birth is 0 for everyone); month and day are "
                                           "never published")
    event_dates: Literal["day", "week", "month"] = Field("day", description="precision of published event dates: the "
                                                         "shifted day, or truncated to its week (Monday) or month")
    opt_out_registry: str | None = Field(None, description="file of persons who objected: one matricule, or "
                                         "'site,local_patient_id', per line")
    publish_notes: bool = Field(
        False,
        description="publish de-identified clinical notes in the release; off by default because free text still "
        "carries quasi-identifiers (ages, shifted dates, rare details) that no k or k^m check covers",
    )
    # anonymisation
    k: int = Field(5, ge=2)
    attacker_facts: int = Field(2, ge=0, le=3, description="m of k^m: any m facts of a person (concepts, codes, care "
                                "sites), with the person-level fields, are shared by at least k persons")
    fact_weight: float = Field(0.5, ge=0, le=1, description="how much the facts lost weigh against the "
                               "generalisation of the person-level fields when the levels are chosen: 0 keeps the "
                               "optimal levels of the metric; higher values coarsen the fields when that spares facts")
    suppression: float = Field(0.05, ge=0, le=1, description="largest share of persons that may be suppressed")
    metric: Metric = "loss"
    quasi_identifiers: list[QuasiIdentifier] = Field(default_factory=_default_qis)
    l_diversity: LDiversity | None = None
    thresholds: Thresholds = Field(default_factory=Thresholds)
    population: str | None = Field(
        None, description="CSV of population counts by EVERY quasi-identifier (e.g. age band, sex, canton) for "
        "journalist risk"
    )
    population_size: int | None = Field(None, ge=1, description="size of the population the persons are drawn "
                                        "from (e.g. the residents a hospital serves): without a population table, "
                                        "population uniqueness is estimated from it")
    uniqueness_model: Literal["dankar", "pitman", "zayatz", "snb"] = Field(
        "dankar", description="population uniqueness model (ARX's): Dankar et al.'s rule picks Pitman, Zayatz or "
        "SNB by the sampling fraction")

    @model_validator(mode="before")
    @classmethod
    def _replaced(cls, data: Any) -> Any:
        if isinstance(data, dict) and "rare_concept_threshold" in data:
            raise ValueError("rare_concept_threshold was replaced by attacker_facts: every fact is now shared by at "
                             "least k persons of its class (k^m); remove the key")
        return data

    @model_validator(mode="after")
    def _consistent(self) -> PrivacyPolicy:
        cols = [q.column for q in self.quasi_identifiers]
        if len(cols) != len(set(cols)):
            raise ValueError(f"quasi_identifiers name a column twice: {cols}")
        t, bound = self.thresholds, 1.0 / self.k
        if t.max_risk is not None and t.max_risk >= bound - _EPS:
            raise ValueError(f"thresholds.max_risk {t.max_risk:g} cannot fail at k = {self.k} (the highest risk is at "
                             f"most 1/k = {bound:.3g}): set it below {bound:.3g} or leave it out")
        if t.max_share_at_risk is not None and t.risk_level >= bound - _EPS:
            raise ValueError(f"thresholds.max_share_at_risk does nothing with risk_level {t.risk_level:g} at k = "
                             f"{self.k} (no record can be above {bound:.3g}): set risk_level below {bound:.3g}")
        if self.population and self.population_size:
            raise ValueError("give population (a table of counts) or population_size (an estimate from the class "
                             "sizes), not both")
        if self.l_diversity is not None and self.l_diversity.attribute in cols:
            raise ValueError(f"l_diversity.attribute {self.l_diversity.attribute} is a quasi-identifier: choose a "
                             "person-level field that is not one")
        return self
