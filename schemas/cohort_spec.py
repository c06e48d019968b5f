"""A small cohort spec (``schemas/cohorts/<name>.yaml``), the ATLAS cohort definition's essentials:
an entry concept set, first or all occurrences, age at index, prior observation, exclusion concept
sets and the cohort end. Concept set paths are relative to the spec file.

    cohort_definition_id: 1
    name: Type 2 diabetes, first diagnosis, adults
    entry: type-2-diabetes.json
    occurrence: first            # first | all
    age_at_index: {min: 18}      # years (year of index - year of birth), bounds included
    prior_observation_days: 365  # days of observation before the index date
    exclusions: [type-1-diabetes.json]   # any of these concepts on or before the index date
    end: observation_period_end  # observation_period_end | index | {days: N}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class CohortSpecError(ValueError):
    """A cohort spec that cannot be used (the message says what is wrong, on one line)."""


class AgeAtIndex(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min: int | None = Field(default=None, ge=0)
    max: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> AgeAtIndex:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


class EndDays(BaseModel):
    model_config = ConfigDict(extra="forbid")

    days: int = Field(ge=0)


class CohortSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cohort_definition_id: int = Field(ge=1)
    name: str = Field(min_length=1)
    entry: Path
    occurrence: Literal["first", "all"] = "first"
    age_at_index: AgeAtIndex | None = None
    prior_observation_days: int = Field(default=0, ge=0)
    exclusions: list[Path] = Field(default_factory=list)
    end: Literal["observation_period_end", "index"] | EndDays = "observation_period_end"


def _describe(err: ValidationError) -> str:
    parts = []
    for e in err.errors()[:3]:
        loc = ".".join(str(p) for p in e["loc"] if not str(p).startswith(("literal[", "EndDays"))) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = ("unknown key (allowed: cohort_definition_id, name, entry, occurrence, age_at_index, "
                   "prior_observation_days, exclusions, end)")
        elif e["type"] == "missing":
            msg = "required key is missing"
        parts.append(f"{loc}: {msg}")
    more = f" (and {len(err.errors()) - 3} more)" if len(err.errors()) > 3 else ""
    return "; ".join(parts) + more


def parse_cohort_spec(data: Any, base: Path, source: str = "the cohort spec") -> CohortSpec:
    """Validate a parsed YAML mapping; concept set paths resolve against ``base`` and must exist."""
    if not isinstance(data, dict):
        raise CohortSpecError(f"{source} must be a YAML mapping with cohort_definition_id, name and entry")
    try:
        spec = CohortSpec.model_validate(data)
    except ValidationError as e:
        raise CohortSpecError(f"{source} is invalid: {_describe(e)}") from None
    spec.entry = spec.entry if spec.entry.is_absolute() else (base / spec.entry).resolve()
    spec.exclusions = [p if p.is_absolute() else (base / p).resolve() for p in spec.exclusions]
    for what, path in [("entry", spec.entry)] + [("exclusions", p) for p in spec.exclusions]:
        if not path.is_file():
            raise CohortSpecError(f"{source}: {what} concept set {path} does not exist "
                                  "(paths are relative to the spec file)")
    return spec


def load_cohort_spec(path: Path) -> CohortSpec:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CohortSpecError(f"{path} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise CohortSpecError(f"{path} is not readable ({e})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise CohortSpecError(f"{path} is not valid YAML{where}: fix the syntax") from None
    return parse_cohort_spec(data, path.parent.resolve(), str(path))
