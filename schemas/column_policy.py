"""What pseudonymisation does with every column: one place, read by the pseudonymisation stage and
shown in the docs.

Source columns (hospital-csv): each is a direct identifier (never leaves the identifiable zone), a
quasi-identifier (kept for the k-anonymity stage, which alone decides how far to generalise it) or
clinical. OMOP columns in the pseudonymised zone: ids are re-keyed (HMAC in the domain of their
table), dates shifted by the person's offset, and the columns below tokenised or dropped.
"""

from __future__ import annotations

from typing import Literal

from schemas.extract import ENTITIES

Role = Literal["direct", "quasi", "clinical"]

QUASI_SOURCE_COLUMNS = frozenset({"birth_date", "sex", "postcode", "city", "country"})


def source_column_roles() -> dict[str, dict[str, Role]]:
    """entity -> column -> role, for every column of the hospital-csv contract."""
    out: dict[str, dict[str, Role]] = {}
    for e in ENTITIES:
        roles: dict[str, Role] = {}
        for c in e.columns:
            if c.identifier or c.name == "address":
                roles[c.name] = "direct"
            elif e.name == "patients" and c.name in QUASI_SOURCE_COLUMNS:
                roles[c.name] = "quasi"
            else:
                roles[c.name] = "clinical"
        out[e.name] = roles
    return out


# OMOP columns holding the hospital's own ids: replaced by a keyed textual pseudonym
TOKENISED: dict[str, tuple[str, ...]] = {
    "visit_occurrence": ("visit_source_value",),
    "visit_detail": ("visit_detail_source_value",),
    "provider": ("provider_source_value",),
    "care_site": ("care_site_source_value",),
    "note": ("note_source_value",),
}
# OMOP columns that hold or may hold direct identifiers (or needless detail): dropped (null)
DROPPED: dict[str, tuple[str, ...]] = {
    "person": ("month_of_birth", "day_of_birth", "birth_datetime", "provider_id", "care_site_id",
               "race_source_value", "ethnicity_source_value"),
    "location": ("address_1", "address_2", "location_source_value", "latitude", "longitude"),
    "provider": ("provider_name", "npi", "dea"),
}
# event_id of episode_event points to the table its field concept names
EPISODE_EVENT_FIELDS: dict[int, str] = {1147094: "drug_exposure", 1147082: "procedure_occurrence",
                                        1147127: "condition_occurrence"}
# a record's link to another record (the Oncology WG's modifier link: a stage measurement's
# condition_occurrence_id): (table, id column) -> the column holding the field concept that names its table
EVENT_LINKS: dict[tuple[str, str], str] = {("measurement", "measurement_event_id"): "meas_event_field_concept_id",
                                           ("observation", "observation_event_id"): "obs_event_field_concept_id"}
# id columns the specification gives no foreign key for, and the table whose ids they hold
EXTRA_ID_REFERENCES: dict[tuple[str, str], str] = {("episode", "episode_parent_id"): "episode"}
# free-text value columns: cells holding a direct identifier of the site's persons are emptied
# (Synthea, for one, records a patient's address as an observation value)
FREE_TEXT: dict[str, tuple[str, ...]] = {
    "observation": ("value_as_string", "value_source_value", "qualifier_source_value"),
    "measurement": ("value_source_value",),
    "note": ("note_title",),
}
