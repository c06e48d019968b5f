"""Which columns of which OMOP tables are *facts* an attacker may know of a person (docs/privacy.md).

The release enforces k^m over these (anonymisation/facts.py, anonymisation/kmanon.py); the audit
(anonymisation/audit.py) keeps its own copy of the same table, written from docs/privacy.md, so
that the check does not share the engine's code.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FactColumns:
    """The fact columns of one table.

    ``concept``/``source``/``source_concept`` are the coded group of a row (generalised together);
    ``cells`` are independent facts (ids such as ``care_site_id``) that are emptied when they must go.
    ``removable``: suppressing the concept removes the row (an event); otherwise the row stays with
    the concept set to 0 (a visit keeps its dates and links; a death row stays, its cause emptied).
    """

    concept: str
    source: str | None
    source_concept: str | None
    cells: tuple[str, ...] = ()
    removable: bool = True


def _event(prefix: str) -> FactColumns:
    return FactColumns(f"{prefix}_concept_id", f"{prefix}_source_value", f"{prefix}_source_concept_id", ("provider_id",))


FACT_TABLES: dict[str, FactColumns] = {
    # visit_source_value holds a keyed token of the hospital's visit id (a pseudonym, not a fact; the
    # release leaves it empty)
    "visit_occurrence": FactColumns("visit_concept_id", None, "visit_source_concept_id",
                                    ("care_site_id", "provider_id"), removable=False),
    "visit_detail": FactColumns("visit_detail_concept_id", None, "visit_detail_source_concept_id",
                                ("care_site_id", "provider_id"), removable=False),
    "condition_occurrence": _event("condition"),
    "drug_exposure": _event("drug"),
    "procedure_occurrence": _event("procedure"),
    "device_exposure": _event("device"),
    "measurement": _event("measurement"),
    "observation": _event("observation"),
    "specimen": FactColumns("specimen_concept_id", "specimen_source_value", None),
    "death": FactColumns("cause_concept_id", "cause_source_value", "cause_source_concept_id", removable=False),
    # an episode's object (the cancer, or the treatment modality) is what it says of the person
    "episode": FactColumns("episode_object_concept_id", "episode_source_value", "episode_source_concept_id",
                           ("episode_concept_id",)),
}

# derived tables: recomputed from the released rows, so each of their facts is implied by a released
# fact of the same person (an era's concept is its rows' concept, or their ingredient)
DERIVED_FACTS: dict[str, tuple[str, ...]] = {
    "condition_era": ("condition_concept_id",),
    "drug_era": ("drug_concept_id",),
    "dose_era": ("drug_concept_id",),
}

# tables whose source values are codes with a shorter, coarser code (ICD-10 E11.65 -> E11.6 -> E11;
# ATC A10BA02 -> A10BA -> A10B -> A10 -> A); other source values have nothing above them
ATC_TABLES = frozenset({"drug_exposure"})
