"""fhir-bulk adapter: FHIR R4 bulk-export NDJSON (``<Type>.*.ndjson``) and Bundles (``*.json``, one per
patient, transaction or collection, as Synthea writes them).

One raw entity per resource type (lower-case type name). A raw table holds the fields the staging
model needs, flattened and typed (dates as naive UTC), with ``_file`` and ``_line`` (the line number in
an NDJSON file, 1-based; the entry index in a Bundle, 0-based). Bundle files themselves are the entity
``bundle`` (one row per file). The quarantine keeps the resource's JSON text in the ``raw`` column.

Reason codes (first failing wins): ``raw.invalid_json`` (a line or file that is not JSON, or JSON
that is not a resource), ``raw.unknown_resource`` (a type this adapter does not read: all its rows),
``raw.invalid_value`` (a field of the wrong shape, attachment data that is not base64 text),
``raw.missing_required``, ``raw.invalid_date``, ``raw.duplicate_key`` (the same id with a different
content; the same content again is counted as ``deduplicated``), ``raw.orphan`` (the subject names no
valid Patient, or the encounter no valid Encounter).

References: ``Patient/<id>``, ``urn:uuid:<id>``, absolute URLs and ``_history`` are reduced to the id;
conditional references (``Practitioner?identifier=<system>|<value>``, or a Reference with only an
identifier) are kept as ``?<system>|<value>`` and resolved in staging through the identifiers of the
Practitioner, Organization and Location resources read.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import shutil
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from transforms import staging
from transforms.adapters import (
    FILE,
    LINE,
    PRE_DETAIL,
    PRE_REASON,
    RAW,
    SYSTEM_URIS,
    Spec,
    code_system_name,
    passes_row_checks,
    validate,
    with_country,
)
from transforms.buckets import BUCKET, DEFAULT_PERSONS_PER_BUCKET, bucket_count, bucket_lookup
from transforms.ingest import EntityResult, ExtractError, IngestResult, OrphanEvents

Row = dict[str, Any]

ENCOUNTER_CLASS: dict[str, str] = {
    "AMB": "AMBULATORY", "EMER": "EMERGENCY", "IMP": "INPATIENT", "ACUTE": "INPATIENT", "NONAC": "INPATIENT",
    "OBSENC": "OUTPATIENT", "PRENC": "OUTPATIENT", "SS": "OUTPATIENT", "HH": "HOME", "VR": "VIRTUAL",
    "FLD": "AMBULATORY",
}
_SEX = {"male": "M", "female": "F"}

_S = pl.String()
_F = pl.Float64()
_IDS = pl.List(pl.String())
_COMPONENTS = pl.List(pl.Struct({
    "code": pl.String(), "code_system": pl.String(), "description": pl.String(),
    "value_number": pl.Float64(), "value_text": pl.String(), "unit": pl.String(),
}))
_EVENT_COLUMNS: dict[str, pl.DataType] = {
    "id": _S, "patient": _S, "encounter": _S, "code": _S, "code_system": _S, "description": _S,
    "start": _S, "end": _S, "status": _S, "value_number": _F, "value_text": _S, "unit": _S,
    "quantity": _F, "route": _S, "performer": _S,
}
_ADDRESS: dict[str, pl.DataType] = {
    "address": _S, "city": _S, "postcode": _S, "district": _S, "state": _S, "country": _S,
}
COLUMNS: dict[str, dict[str, pl.DataType]] = {
    "patient": {
        "id": _S, "birth_date": _S, "gender": _S, "deceased": _S, "first_name": _S, "last_name": _S,
        "phone": _S, "email": _S, **_ADDRESS, "race": _S, "ethnicity": _S, "last_updated": _S, "other_names": _S,
        "other_ids": _S,
    },
    "encounter": {
        "id": _S, "patient": _S, "class_code": _S, "start": _S, "end": _S, "status": _S,
        "practitioner": _S, "organization": _S, "location": _S, "type_code": _S, "type_display": _S,
        "reason_code": _S, "reason_system": _S,
    },
    "condition": {**_EVENT_COLUMNS, "stage": _S},
    "observation": {**_EVENT_COLUMNS, "components": _COMPONENTS, "category": _S, "value_code": _S, "value_system": _S},
    "medicationrequest": _EVENT_COLUMNS,
    "procedure": _EVENT_COLUMNS,
    "immunization": _EVENT_COLUMNS,
    "allergyintolerance": {**_EVENT_COLUMNS, "category": _S},
    "device": _EVENT_COLUMNS,
    "documentreference": {
        "id": _S, "patient": _S, "encounter": _S, "date": _S, "title": _S, "note_class": _S, "text": _S,
        "content_type": _S, "author": _S, "status": _S,
    },
    "organization": {"id": _S, "name": _S, "type": _S, **_ADDRESS, "identifiers": _IDS},
    "practitioner": {"id": _S, "name": _S, "first_name": _S, "last_name": _S, "gender": _S, "identifiers": _IDS},
    "practitionerrole": {"id": _S, "practitioner": _S, "organization": _S, "specialty": _S},
    "location": {"id": _S, "name": _S, **_ADDRESS, "organization": _S, "identifiers": _IDS},
}
_REFS = {"patient": "patient", "encounter": "encounter"}
SPECS: dict[str, Spec] = {
    "patient": Spec("patient", key="id", required=("id", "birth_date"), dates=("birth_date", "deceased"),
                    datetimes=("last_updated",)),
    "encounter": Spec("encounter", key="id", required=("id", "patient", "start"), datetimes=("start", "end"),
                      refs={"patient": "patient"}),
    **{t: Spec(t, key="id", required=("id", "patient", "code", "start"), datetimes=("start", "end"), refs=_REFS)
       for t in ("condition", "observation", "medicationrequest", "procedure", "immunization", "allergyintolerance",
        "device")},
    "documentreference": Spec("documentreference", key="id", required=("id", "patient", "date", "text"),
                              datetimes=("date",), refs=_REFS),
    "organization": Spec("organization", key="id", required=("id",)),
    "practitioner": Spec("practitioner", key="id", required=("id",)),
    "practitionerrole": Spec("practitionerrole", key="id", required=("id",)),
    "location": Spec("location", key="id", required=("id",)),
}
ORDER = ("patient", "encounter", "organization", "practitioner", "practitionerrole", "location", "condition",
         "observation", "medicationrequest", "procedure", "immunization", "allergyintolerance", "device",
         "documentreference")


class _Bad(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


# ------------------------------------------------------------------------------------------ JSON helpers

def _d(x: Any) -> dict[str, Any]:
    return x if isinstance(x, dict) else {}


def _l(x: Any) -> list[Any]:
    return x if isinstance(x, list) else []


def _s(x: Any) -> str | None:
    if isinstance(x, bool) or x is None:
        return None if x is None else str(x).lower()
    if isinstance(x, str):
        return x.strip() or None
    if isinstance(x, int | float):
        return str(x)
    raise _Bad("raw.invalid_value", f"expected a text value, found {type(x).__name__}")


def _num(x: Any) -> float | None:
    if x is None or isinstance(x, bool):
        return None
    if isinstance(x, int | float):
        return float(x)
    try:
        return float(str(x))
    except ValueError:
        raise _Bad("raw.invalid_value", f"not a number: {x!r}") from None


def ref_id(reference: str) -> str:
    """``Patient/1``, ``urn:uuid:1``, ``http://x/fhir/Patient/1/_history/2`` -> ``1``;
    ``Practitioner?identifier=sys|val`` -> ``?sys|val``."""
    r = reference.strip()
    if "?" in r:
        query = unquote(r.split("?", 1)[1])
        for part in query.split("&"):
            if part.startswith("identifier="):
                return "?" + part[len("identifier="):]
        return "?" + query
    for prefix in ("urn:uuid:", "urn:oid:"):
        if r.startswith(prefix):
            return r[len(prefix):]
    parts = [p for p in r.split("/") if p]
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    return parts[-1] if parts else r


def _ref(obj: Any) -> str | None:
    o = _d(obj)
    r = o.get("reference")
    if isinstance(r, str) and r.strip():
        return ref_id(r)
    ident = _d(o.get("identifier"))
    value = _s(ident.get("value"))
    if value:
        return f"?{_s(ident.get('system')) or ''}|{value}"
    return None


def _identifiers(res: dict[str, Any]) -> list[str]:
    out = []
    for i in _l(res.get("identifier")):
        value = _s(_d(i).get("value"))
        if value:
            out.append(f"?{_s(_d(i).get('system')) or ''}|{value}")
    return out


def _pick(cc: Any) -> tuple[str | None, str | None, str | None]:
    """(code, code_system, description) of a CodeableConcept: its first coding of a known system, else
    its first coding."""
    c = _d(cc)
    codings = [_d(x) for x in _l(c.get("coding")) if _s(_d(x).get("code"))]
    if not codings:
        return None, None, _s(c.get("text"))
    chosen = next((x for x in codings if _s(x.get("system")) in SYSTEM_URIS), codings[0])
    desc = _s(chosen.get("display")) or _s(c.get("text"))
    return _s(chosen.get("code")), code_system_name(_s(chosen.get("system"))), desc


def _status(cc: Any) -> str | None:
    if isinstance(cc, str):
        return _s(cc)
    code, _, _ = _pick(cc)
    return code


def _first(*values: Any) -> str | None:
    for v in values:
        s = _s(v)
        if s:
            return s
    return None


def _address(addresses: Any) -> Row:
    items = [_d(a) for a in (addresses if isinstance(addresses, list) else [addresses]) if isinstance(a, dict)]
    if not items:
        return {}
    a = next((x for x in items if x.get("use") == "home"), items[0])
    lines = [s for s in (_s(x) for x in _l(a.get("line"))) if s]
    return {
        "address": ", ".join(lines) or None, "city": _s(a.get("city")), "postcode": _s(a.get("postalCode")),
        "district": _s(a.get("district")), "state": _s(a.get("state")), "country": _s(a.get("country")),
    }


def _other_names(names: Any) -> str | None:
    """Every name of the resource but the one :func:`_name` chose (maiden names, aliases), ' | '-joined."""
    items = [_d(n) for n in _l(names)]
    if len(items) < 2:
        return None
    chosen = next((x for x in items if x.get("use") == "official"), items[0])
    out = []
    for n in items:
        if n is chosen:
            continue
        given = [s for s in (_s(g) for g in _l(n.get("given"))) if s]
        family = _s(n.get("family"))
        full = _s(n.get("text")) or " ".join([*given, *([family] if family else [])])
        if full:
            out.append(full)
    return " | ".join(out) or None


def _name(names: Any) -> tuple[str | None, str | None, str | None]:
    """(first given, family, full name) of the official name, else the first."""
    items = [_d(n) for n in _l(names)]
    if not items:
        return None, None, None
    n = next((x for x in items if x.get("use") == "official"), items[0])
    given = [s for s in (_s(g) for g in _l(n.get("given"))) if s]
    family = _s(n.get("family"))
    full = _s(n.get("text")) or " ".join([*given, *([family] if family else [])]) or None
    return (given[0] if given else None), family, full


def _value(res: dict[str, Any]) -> Row:
    q = _d(res.get("valueQuantity"))
    if q:
        return {"value_number": _num(q.get("value")), "unit": _s(q.get("unit")) or _s(q.get("code"))}
    if "valueCodeableConcept" in res:
        code, _, desc = _pick(res.get("valueCodeableConcept"))
        return {"value_text": desc or code}
    for k in ("valueString", "valueBoolean", "valueInteger", "valueDateTime", "valueTime"):
        if k in res:
            if k == "valueInteger":
                return {"value_number": _num(res[k])}
            return {"value_text": _s(res[k])}
    return {}


# ------------------------------------------------------------------------------------- resource -> row

# identifier types (HL7 v2 table 0203) and systems of national identifiers other than a matricule
OTHER_ID_TYPES = frozenset({"SS", "SB", "DL", "PPN", "NI", "NNLUX"})
OTHER_ID_SYSTEMS = ("us-ssn", "passport", "driver", "2.16.840.1.113883.4.3.")


def _other_ids(r: dict[str, Any]) -> str | None:
    """The patient's social security, passport and driver's licence numbers, ' | '-joined."""
    out = []
    for i in _l(r.get("identifier")):
        i = _d(i)
        value = _s(i.get("value"))
        codes = {_s(_d(c).get("code")) for c in _l(_d(i.get("type")).get("coding"))}
        system = (_s(i.get("system")) or "").lower()
        if value and (codes & OTHER_ID_TYPES or any(k in system for k in OTHER_ID_SYSTEMS)):
            out.append(value)
    return " | ".join(out) or None


def _patient(r: dict[str, Any]) -> Row:
    first, last, _ = _name(r.get("name"))
    telecom = [_d(t) for t in _l(r.get("telecom"))]
    phone = next((_s(t.get("value")) for t in telecom if t.get("system") == "phone"), None)
    email = next((_s(t.get("value")) for t in telecom if t.get("system") == "email"), None)
    ext: dict[str, str | None] = {}
    for e in _l(r.get("extension")):
        url = _s(_d(e).get("url")) or ""
        for kind in ("race", "ethnicity"):
            if url.endswith(f"us-core-{kind}"):
                subs = [_d(x) for x in _l(_d(e).get("extension"))]
                text = next((_s(x.get("valueString")) for x in subs if x.get("url") == "text"), None)
                omb = next((_s(_d(x.get("valueCoding")).get("display")) for x in subs if x.get("url") == "ombCategory"), None)
                ext[kind] = text or omb
    return {
        "birth_date": _s(r.get("birthDate")), "gender": _s(r.get("gender")),
        "deceased": _s(r.get("deceasedDateTime")), "first_name": first, "last_name": last,
        "phone": phone, "email": email, **_address(r.get("address")),
        "race": ext.get("race"), "ethnicity": ext.get("ethnicity"),
        "last_updated": _s(_d(r.get("meta")).get("lastUpdated")),
        "other_names": _other_names(r.get("name")), "other_ids": _other_ids(r),
    }


def _encounter(r: dict[str, Any]) -> Row:
    cls = r.get("class")
    cls = _l(cls)[0] if isinstance(cls, list) and cls else cls  # R5: a list of CodeableConcepts
    cls = _d(cls)
    class_code = _s(cls.get("code")) or _pick(cls)[0]
    period = _d(r.get("period"))
    parts = [_d(p) for p in _l(r.get("participant"))]
    primary = next((p for p in parts if "PPRF" in json.dumps(p.get("type", []))), parts[0] if parts else {})
    locations = [_d(x) for x in _l(r.get("location"))]
    type_code, _, type_display = _pick(_l(r.get("type"))[0] if _l(r.get("type")) else None)
    reasons = _l(r.get("reasonCode"))
    reason_code, reason_system, _ = _pick(reasons[0] if reasons else None)
    return {
        "patient": _ref(r.get("subject")), "class_code": class_code, "start": _s(period.get("start")),
        "end": _s(period.get("end")), "status": _s(r.get("status")),
        "practitioner": _ref(primary.get("individual") or primary.get("actor")),
        "organization": _ref(r.get("serviceProvider")),
        "location": _ref(locations[0].get("location")) if locations else None,
        "type_code": type_code, "type_display": type_display, "reason_code": reason_code, "reason_system": reason_system,
    }


def _code_row(cc: Any) -> Row:
    code, system, desc = _pick(cc)
    return {"code": code, "code_system": system, "description": desc}


def _condition(r: dict[str, Any]) -> Row:
    return {
        "patient": _ref(r.get("subject")), "encounter": _ref(r.get("encounter")), **_code_row(r.get("code")),
        "start": _first(r.get("onsetDateTime"), _d(r.get("onsetPeriod")).get("start"), r.get("recordedDate")),
        "end": _first(r.get("abatementDateTime"), _d(r.get("abatementPeriod")).get("end")),
        "status": _status(r.get("clinicalStatus")),
        "performer": _ref(r.get("asserter") or r.get("recorder")),
        "stage": _stage(r.get("stage")),
    }


def _stage(stages: Any) -> str | None:
    """The stage group of a Condition's first ``stage`` with a ``summary`` (its text, else its coding's
    display, else its code: ``Stage IIB``); ``stage.assessment`` (references to staging observations) is
    not read."""
    for st in _l(stages):
        summary = _d(_d(st).get("summary"))
        code, _, display = _pick(summary)
        value = _s(summary.get("text")) or display or code
        if value:
            return value
    return None


def _observation(r: dict[str, Any]) -> Row:
    comps = []
    for c in _l(r.get("component")):
        c = _d(c)
        v = _value(c)
        comps.append({**_code_row(c.get("code")), "value_number": v.get("value_number"),
                      "value_text": v.get("value_text"), "unit": v.get("unit")})
    performers = _l(r.get("performer"))
    categories = [_pick(c)[0] for c in _l(r.get("category"))]
    value_code, value_system, _ = _pick(r.get("valueCodeableConcept"))
    return {
        "patient": _ref(r.get("subject")), "encounter": _ref(r.get("encounter")), **_code_row(r.get("code")),
        "start": _first(r.get("effectiveDateTime"), _d(r.get("effectivePeriod")).get("start"),
                        r.get("effectiveInstant"), r.get("issued")),
        "end": _s(_d(r.get("effectivePeriod")).get("end")),
        "status": _s(r.get("status")), **_value(r), "components": comps or None,
        "performer": _ref(performers[0]) if performers else None,
        "category": next((c for c in categories if c), None), "value_code": value_code, "value_system": value_system,
    }


def _medicationrequest(r: dict[str, Any]) -> Row:
    cc = r.get("medicationCodeableConcept")
    if cc is None and r.get("medicationReference") is not None:
        target = (_ref(r.get("medicationReference")) or "").lstrip("#")
        contained = [_d(c) for c in _l(r.get("contained")) if _d(c).get("id") == target]
        cc = contained[0].get("code") if contained else None
    dosage = [_d(x) for x in _l(r.get("dosageInstruction"))]
    route = _pick(dosage[0].get("route"))[2] if dosage else None
    dispense = _d(r.get("dispenseRequest"))
    return {
        "patient": _ref(r.get("subject")), "encounter": _ref(r.get("encounter")), **_code_row(cc),
        "start": _first(r.get("authoredOn"), _d(dispense.get("validityPeriod")).get("start")),
        "end": _s(_d(dispense.get("validityPeriod")).get("end")),
        "status": _s(r.get("status")), "quantity": _num(_d(dispense.get("quantity")).get("value")),
        "route": route, "performer": _ref(r.get("requester")),
    }


def _procedure(r: dict[str, Any]) -> Row:
    period = _d(r.get("performedPeriod"))
    performers = [_d(p) for p in _l(r.get("performer"))]
    return {
        "patient": _ref(r.get("subject")), "encounter": _ref(r.get("encounter")), **_code_row(r.get("code")),
        "start": _first(r.get("performedDateTime"), period.get("start")), "end": _s(period.get("end")),
        "status": _s(r.get("status")), "performer": _ref(performers[0].get("actor")) if performers else None,
    }


def _immunization(r: dict[str, Any]) -> Row:
    performers = [_d(p) for p in _l(r.get("performer"))]
    return {
        "patient": _ref(r.get("patient")), "encounter": _ref(r.get("encounter")), **_code_row(r.get("vaccineCode")),
        "start": _first(r.get("occurrenceDateTime"), r.get("recorded")), "status": _s(r.get("status")),
        "route": _pick(r.get("route"))[2], "performer": _ref(performers[0].get("actor")) if performers else None,
    }


def _allergyintolerance(r: dict[str, Any]) -> Row:
    return {
        "patient": _ref(r.get("patient")), "encounter": _ref(r.get("encounter")), **_code_row(r.get("code")),
        "start": _first(r.get("onsetDateTime"), _d(r.get("onsetPeriod")).get("start"), r.get("recordedDate")),
        "end": _s(r.get("lastOccurrence")), "status": _status(r.get("clinicalStatus")),
        "performer": _ref(r.get("recorder")),
        "category": _s(_l(r.get("category"))[0]) if _l(r.get("category")) else None,  # medication, food, ...
    }


# the FHIR R4 Device extension some servers write for the time the device was in use (none: no use date)
_DEVICE_USE = ("http://hl7.org/fhir/StructureDefinition/device-implantDate", "implantDate")


def _device(r: dict[str, Any]) -> Row:
    carriers = [_d(c) for c in _l(r.get("udiCarrier"))]
    used = next((_first(_d(e).get("valueDateTime"), _d(e).get("valueDate")) for e in _l(r.get("extension"))
                 if str(_d(e).get("url", "")).endswith(_DEVICE_USE)), None)
    if used is None:
        # manufactureDate is when the device was made, not when the patient got it (issue 13)
        raise _Bad("raw.missing_required", "Device has no date of use (an implant-date extension); its "
                   "manufactureDate is not one: send the use as a Procedure or DeviceUseStatement")
    return {
        "patient": _ref(r.get("patient")), **_code_row(r.get("type")),
        "start": used, "status": _s(r.get("status")),
        "value_text": _first(carriers[0].get("carrierHRF"), carriers[0].get("deviceIdentifier")) if carriers else None,
    }


def _charset(content_type: str | None) -> str:
    m = re.search(r"charset=([\w-]+)", content_type or "", re.IGNORECASE)
    return m.group(1) if m else "utf-8"


def _documentreference(r: dict[str, Any]) -> Row:
    text: str | None = None
    content_type: str | None = None
    for c in _l(r.get("content")):
        att = _d(_d(c).get("attachment"))
        data = att.get("data")
        content_type = _s(att.get("contentType"))
        if data is None:
            continue
        if content_type and not content_type.lower().startswith("text/"):
            continue
        try:
            text = base64.b64decode(str(data), validate=True).decode(_charset(content_type))
        except (binascii.Error, ValueError, LookupError) as e:
            raise _Bad("raw.invalid_value", f"attachment data is not base64 text: {e}") from None
        break
    ctx = _d(r.get("context"))
    encounters = _l(ctx.get("encounter"))
    code, _, display = _pick(r.get("type"))
    authors = _l(r.get("author"))
    return {
        "patient": _ref(r.get("subject")), "encounter": _ref(encounters[0]) if encounters else None,
        "date": _first(r.get("date"), _d(ctx.get("period")).get("start")), "title": display or code,
        "note_class": code, "text": text, "content_type": content_type,
        "author": _ref(authors[0]) if authors else None, "status": _s(r.get("status")),
    }


def _organization(r: dict[str, Any]) -> Row:
    types = _l(r.get("type"))
    return {"name": _s(r.get("name")), "type": _pick(types[0])[2] if types else None,
            **_address(r.get("address")), "identifiers": _identifiers(r)}


def _practitioner(r: dict[str, Any]) -> Row:
    first, last, full = _name(r.get("name"))
    return {"name": full, "first_name": first, "last_name": last, "gender": _s(r.get("gender")),
            "identifiers": _identifiers(r)}


def _practitionerrole(r: dict[str, Any]) -> Row:
    specialties = _l(r.get("specialty")) or _l(r.get("code"))
    return {"practitioner": _ref(r.get("practitioner")), "organization": _ref(r.get("organization")),
            "specialty": _pick(specialties[0])[2] if specialties else None}


def _location(r: dict[str, Any]) -> Row:
    return {"name": _s(r.get("name")), **_address(r.get("address")),
            "organization": _ref(r.get("managingOrganization")), "identifiers": _identifiers(r)}


FLATTEN: dict[str, Callable[[dict[str, Any]], Row]] = {
    "patient": _patient, "encounter": _encounter, "condition": _condition, "observation": _observation,
    "medicationrequest": _medicationrequest, "procedure": _procedure, "immunization": _immunization,
    "allergyintolerance": _allergyintolerance, "device": _device, "documentreference": _documentreference,
    "organization": _organization, "practitioner": _practitioner, "practitionerrole": _practitionerrole,
    "location": _location,
}


# -------------------------------------------------------------------------------------------- reading

class _Collector:
    def __init__(self) -> None:
        self.rows: dict[str, list[Row]] = {}
        self.files: dict[str, set[str]] = {}
        self.last = ""  # the entity of the last row added

    def add(self, entity: str, file: str, line: int, raw: str, row: Row) -> None:
        self.rows.setdefault(entity, []).append({FILE: file, LINE: line, RAW: raw, **row})
        self.files.setdefault(entity, set()).add(file)
        self.last = entity

    def bad(self, entity: str, file: str, line: int, raw: str, reason: str, detail: str) -> None:
        self.add(entity, file, line, raw, {PRE_REASON: reason, PRE_DETAIL: detail})

    def resource(self, res: Any, file: str, line: int, raw: str, fallback: str, full_url: str | None = None) -> None:
        if not isinstance(res, dict) or not isinstance(res.get("resourceType"), str):
            self.bad(fallback, file, line, raw, "raw.invalid_json", "not a FHIR resource (no resourceType)")
            return
        rtype = res["resourceType"]
        entity = rtype.lower()
        if entity not in FLATTEN:
            self.bad(entity, file, line, raw, "raw.unknown_resource", f"resource type {rtype} is not read")
            return
        try:
            rid = _s(res.get("id")) or (ref_id(full_url) if full_url else None)
            row = {"id": rid, **FLATTEN[entity](res)}
        except _Bad as e:
            self.bad(entity, file, line, raw, e.reason, e.detail)
            return
        self.add(entity, file, line, raw, row)


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    with path.open("rb") as f:
        for i, line in enumerate(f, start=1):
            if line.strip():
                yield i, line.rstrip(b"\r\n")


def _fallback(file: str) -> str:
    """The entity of a line of ``file`` that is not a resource: the file's resource type, lower-case."""
    return file.split(".", 1)[0].lower() or "unknown"


def _read_line(file: str, i: int, line: bytes, c: _Collector) -> Any:
    """Read one NDJSON line into ``c``; -> the parsed JSON (None when it is not JSON)."""
    try:
        text = line.decode("utf-8")
        res = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        c.bad(_fallback(file), file, i, line.decode("utf-8", "replace"), "raw.invalid_json", f"not JSON: {e}")
        return None
    c.resource(res, file, i, text, _fallback(file))
    return res


def _read_ndjson(path: Path, c: _Collector) -> None:
    for i, line in _lines(path):
        _read_line(path.name, i, line, c)


def _read_json(path: Path, c: _Collector) -> None:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
        doc = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        head = data[:4096].decode("utf-8", "replace")  # the start of the file, not all of it
        c.bad("bundle", path.name, 0, head, "raw.invalid_json", f"not JSON: {e}")
        return
    if not isinstance(doc, dict) or doc.get("resourceType") != "Bundle":
        c.resource(doc, path.name, 0, text, "bundle")
        return
    entries = _l(doc.get("entry"))
    c.add("bundle", path.name, 0, "", {"id": _s(doc.get("id")), "type": _s(doc.get("type")), "entries": str(len(entries))})
    for i, entry in enumerate(entries):
        ent = _d(entry)
        res = ent.get("resource")
        raw = json.dumps(res, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        if res is None:
            c.bad("unknown", path.name, i, json.dumps(entry), "raw.unknown_resource", "bundle entry without a resource")
            continue
        c.resource(res, path.name, i, raw, "unknown", _s(ent.get("fullUrl")))


def read_fhir(site: str, folder: Path, orphan_events: OrphanEvents = "keep") -> IngestResult:
    """Read and check one site's FHIR R4 folder (NDJSON files and/or Bundles)."""
    if not folder.is_dir():
        raise ExtractError(f"landing folder {folder} does not exist: copy the FHIR bulk export there")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in (".ndjson", ".json"))
    if not files:
        raise ExtractError(f"{folder} holds no .ndjson or .json file: expected a FHIR bulk export or Bundles")
    c = _Collector()
    for p in files:
        if p.suffix.lower() == ".ndjson":
            _read_ndjson(p, c)
        else:
            _read_json(p, c)
    result = IngestResult(site)
    valid: dict[str, pl.Series] = {}
    rejected: dict[str, pl.DataFrame] = {}
    if "patient" not in c.rows:
        result.missing_files.append("Patient.*.ndjson")
    names = [*[t for t in ORDER if t in c.rows], *sorted(t for t in c.rows if t not in ORDER)]
    for name in names:
        r = _validate(name, c.rows[name], ",".join(sorted(c.files[name])), valid, rejected, orphan_events)
        result.entities[name] = r
        if name in SPECS:
            valid[name] = r.table["id"]
            if r.rejected_keys is not None:
                rejected[name] = r.rejected_keys
    return result


def entity_frame(name: str, rows: list[Row]) -> pl.DataFrame:
    """An entity's rows as read (strings, ``_file``, ``_line``, ``raw``), before the checks."""
    cols = COLUMNS.get(name, {"id": _S, "type": _S, "entries": _S} if name == "bundle" else {})
    schema: dict[str, pl.DataType] = {FILE: _S, LINE: pl.Int64(), RAW: _S, PRE_REASON: _S, PRE_DETAIL: _S, **cols}
    return pl.DataFrame(rows, schema=schema)


def _validate(name: str, rows: list[Row], files: str, valid: dict[str, pl.Series],
              rejected: dict[str, pl.DataFrame] | None = None, orphan_events: OrphanEvents = "keep",
              duplicate_rows: pl.DataFrame | None = None) -> EntityResult:
    df = entity_frame(name, rows)
    spec = SPECS.get(name, Spec(name))
    return validate(spec, df, file=files, source_columns=[RAW], dedup_on=[RAW] if name != "bundle" else [],
                    parents=valid, rejected=rejected, visit_refs=("encounter",), orphan_events=orphan_events,
                    duplicate_rows=duplicate_rows)


# ---------------------------------------------------------------------------------------------- staging

def _resolver(tables: list[pl.DataFrame]) -> pl.DataFrame:
    """``?system|value`` of every identifier of the given resources -> their id."""
    frames = [t.select("id", "identifiers").explode("identifiers").drop_nulls()
              for t in tables if t.height and "identifiers" in t.columns]
    if not frames:
        return pl.DataFrame(schema={"ref": pl.String, "target": pl.String})
    return pl.concat(frames).select(ref="identifiers", target="id").unique("ref", keep="first")


def _resolve(df: pl.DataFrame, col: str, lut: pl.DataFrame) -> pl.DataFrame:
    """Replace conditional references in ``col`` by the id they name (kept as written when unknown)."""
    if col not in df.columns or not df.height:
        return df
    joined = df.join(lut.rename({"ref": col}), on=col, how="left", maintain_order="left")
    return joined.with_columns(pl.coalesce("target", col).alias(col)).drop("target")


def _table(raw: IngestResult, name: str) -> pl.DataFrame:
    r = raw.entities.get(name)
    if r is not None:
        return r.table
    return _validate(name, [], "", {}).table


def _sex(col: str) -> pl.Expr:
    return pl.col(col).str.to_lowercase().replace_strict(_SEX, default="U", return_dtype=pl.String)


_KIND = {"condition": "condition", "medicationrequest": "drug", "immunization": "drug",
         "procedure": "procedure", "allergyintolerance": "allergy", "device": "device"}


DEATH_CERTIFICATION = "308646001"  # SNOMED "Death certification" (the encounter's reason is the cause)
CAUSE_OF_DEATH = "69453-9"  # LOINC "Cause of death [US Standard Certificate of Death]" (value: the cause)


def death_causes(enc: pl.DataFrame, obs: pl.DataFrame) -> pl.DataFrame:
    """person_key, death_cause_code, death_cause_system: a cause-of-death Observation's coded value,
    else the reason of the death certification Encounter (the earliest of each), as Synthea writes them."""
    by_obs = obs.filter((pl.col("code") == CAUSE_OF_DEATH) & pl.col("value_code").is_not_null()).select(
        person_key="patient", death_cause_code="value_code", death_cause_system="value_system", _at="start", _id="id",
        _rank=pl.lit(0))
    by_enc = enc.filter((pl.col("type_code") == DEATH_CERTIFICATION) & pl.col("reason_code").is_not_null()).select(
        person_key="patient", death_cause_code="reason_code", death_cause_system="reason_system", _at="start", _id="id",
        _rank=pl.lit(1))
    both = pl.concat([by_obs, by_enc]).sort("person_key", "_rank", "_at", "_id")
    return both.unique("person_key", keep="first", maintain_order=True).select(
        "person_key", "death_cause_code", "death_cause_system")


def fhir_to_staging(raw: IngestResult) -> dict[str, pl.DataFrame]:
    """The staging tables (``transforms/staging.py``) of a FHIR site's valid raw rows.

    Care sites are the Organizations read, and the Locations whose managing organization is not
    among them; an Encounter's care site is its serviceProvider, else its Location's managing
    organization, else that Location."""
    pract = _table(raw, "practitioner")
    orgs = _table(raw, "organization")
    p_lut = _resolver([pract])
    o_lut = _resolver([orgs])
    locs = _resolve(_table(raw, "location"), "organization", o_lut)
    l_lut = _resolver([locs])
    org_ids = orgs["id"].implode()
    loc_org = locs.select(location="id", _managing=pl.when(pl.col("organization").is_in(org_ids)).then("organization"))

    p = _table(raw, "patient")
    persons = with_country(p.select(
        person_key="id", birth_date="birth_date", sex=_sex("gender"), race_source="race",
        ethnicity_source="ethnicity", death_date="deceased", address="address", postcode="postcode",
        city="city", county="district", country="country", updated_at="last_updated",
        first_name="first_name", last_name="last_name", phone="phone", email="email", other_names="other_names",
        state="state", other_ids="other_ids",
    ))  # Address.country: a code or a name ("Luxembourg"), as ISO alpha-2; none when the address has none
    enc = _resolve(_resolve(_resolve(_table(raw, "encounter"), "practitioner", p_lut), "organization", o_lut),
                   "location", l_lut)
    persons = persons.join(death_causes(enc, _table(raw, "observation")), on="person_key", how="left",
                           maintain_order="left")
    code = pl.col("class_code").str.to_uppercase()
    enc = enc.join(loc_org, on="location", how="left", maintain_order="left")
    visits = enc.select(
        visit_key="id", person_key="patient", start="start", end="end",
        visit_class=code.replace_strict(ENCOUNTER_CLASS, default=code, return_dtype=pl.String),
        provider_key="practitioner", care_site_key=pl.coalesce("organization", "_managing", "location"),
    )

    frames: list[pl.DataFrame] = []
    event_cols = [c for c in _EVENT_COLUMNS if c not in ("id", "patient", "encounter", "performer")]
    for name, kind in _KIND.items():
        t = _resolve(_table(raw, name), "performer", p_lut)
        if not t.height:
            continue
        frames.append(staging.conform(t.select(
            *event_cols, event_key=pl.lit(f"{name}/") + pl.col("id"), person_key="patient",
            visit_key="encounter", kind=pl.lit(kind), provider_key="performer",
            category=(pl.col("category").str.to_lowercase() if name == "allergyintolerance"
                      else pl.lit("immunization" if name == "immunization" else None, pl.String)),
            # Condition.stage.summary: the stage group at diagnosis (transforms/cancer_registry.py)
            stage_group=pl.col("stage") if "stage" in t.columns else pl.lit(None, pl.String),
        ), "events"))
    obs = _resolve(_table(raw, "observation"), "performer", p_lut)
    if obs.height:
        base: dict[str, str | pl.Expr] = dict(
            person_key="patient", visit_key="encounter", start="start", end="end", status="status",
            provider_key="performer", category=pl.col("category").str.to_lowercase())
        has_comp = pl.col("components").list.len().fill_null(0) > 0
        own = obs.filter(~has_comp | pl.col("value_number").is_not_null() | pl.col("value_text").is_not_null())
        frames.append(staging.conform(own.select(
            event_key=pl.lit("observation/") + pl.col("id"), code="code", code_system="code_system",
            description="description", value_number="value_number", value_text="value_text", unit="unit",
            value_code="value_code", value_code_system="value_system", **base,
        ), "events"))
        comp = (obs.filter(has_comp)
                .select("id", "patient", "encounter", "start", "end", "status", "performer", "category", "components",
                        _i=pl.col("components").list.eval(pl.int_range(pl.len())))
                .explode("components", "_i").unnest("components"))
        frames.append(staging.conform(comp.select(
            event_key=pl.lit("observation/") + pl.col("id") + "#" + pl.col("_i").cast(pl.String),
            code="code", code_system="code_system", description="description", value_number="value_number",
            value_text="value_text", unit="unit", **base,
        ), "events"))
    events = pl.concat(frames) if frames else staging.empty("events")
    if obs.height:
        events = events.with_columns(
            kind=pl.when(pl.col("event_key").str.starts_with("observation/"))
            .then(pl.when(pl.col("value_number").is_not_null()).then(pl.lit("measurement")).otherwise(pl.lit("observation")))
            .otherwise(pl.col("kind"))
        )

    roles = _resolve(_resolve(_table(raw, "practitionerrole"), "practitioner", p_lut), "organization", o_lut)
    roles = roles.select(id="practitioner", specialty="specialty", care_site_key="organization").unique("id", keep="first")
    providers = pract.join(roles, on="id", how="left", maintain_order="left").select(
        provider_key="id", name="name", specialty="specialty", care_site_key="care_site_key", sex=_sex("gender"),
    )
    site_cols = dict(address="address", postcode="postcode", city="city", county="district", country="country",
                     state="state")
    own_sites = locs.filter(~pl.col("organization").is_in(org_ids) | pl.col("organization").is_null())
    care_sites = with_country(pl.concat([
        orgs.select(care_site_key="id", name="name", place_of_service="type", **site_cols),
        own_sites.select(care_site_key="id", name="name", place_of_service=pl.lit(None, pl.String), **site_cols),
    ]))
    d = _resolve(_table(raw, "documentreference"), "author", p_lut)
    notes = d.select(
        note_key="id", person_key="patient", visit_key="encounter", date="date", title="title",
        note_class="note_class", text="text", provider_key="author",
    )
    return {
        "persons": staging.conform(persons, "persons"),
        "visits": staging.conform(visits, "visits"),
        "events": events,
        "providers": staging.conform(providers, "providers"),
        "care_sites": staging.conform(care_sites, "care_sites"),
        "notes": staging.conform(notes, "notes"),
    }


# ---------------------------------------------------------------------------------------------- person buckets

SHARED_ENTITIES = ("organization", "practitioner", "practitionerrole", "location")  # site-wide: read once
PERSON_ENTITIES = ("patient", "encounter")  # checked first, bucket by bucket: the events' parents
SPLIT_LINES = 20_000  # NDJSON lines parsed at a time by the split, at most
SPLIT_BYTES = 8 << 20  # ... and about this many bytes
_LINES = pa.schema([pa.field(FILE, pa.string()), pa.field(LINE, pa.int64()), pa.field("text", pa.binary())])
_ORD_LINE = 1 << 40  # a row's place in the site: file index * _ORD_LINE + line


def _group(entity: str) -> str:
    if entity in SHARED_ENTITIES:
        return "shared"
    return "persons" if entity in PERSON_ENTITIES else "events"


def entity_order(names: Collection[str]) -> list[str]:
    """Entities in the order ``read_fhir`` checks them (known types, then the others by name)."""
    return [*[t for t in ORDER if t in names], *sorted(t for t in names if t not in ORDER)]


def _person_ref(res: Any) -> str | None:
    """The patient a resource belongs to: a Patient's id, else its subject or patient reference."""
    if not isinstance(res, dict):
        return None
    try:
        if res.get("resourceType") == "Patient":
            return _s(res.get("id"))
        return _ref(res.get("subject")) or _ref(res.get("patient"))
    except _Bad:
        return None


@dataclass
class FhirSplit:
    """A fhir-bulk folder (NDJSON) split into person buckets (``transforms/buckets.py``) under ``work``.

    A Patient goes to the bucket of its id, every other resource to that of its subject (or patient)
    reference; resources naming no Patient of the Patient files go to bucket 0, where the orphan check
    quarantines them as in one piece. Organizations, practitioners, their roles and locations are kept
    apart (``shared``), read once. Every bucket file holds the source lines (file, line, bytes) in the
    site's order. What is not a person matter is decided over the whole site beforehand:
    ``duplicates`` holds, per entity, the rows (``_file``, ``_line``) whose id an earlier row that
    passes the row checks already has."""

    site: str
    buckets: int
    persons: int
    work: Path
    files: dict[str, str]  # entity -> the files holding its rows, comma-joined (as read_fhir names them)
    duplicates: dict[str, pl.DataFrame]
    missing_files: list[str]
    orphan_events: OrphanEvents = "keep"

    def read(self, group: str, k: int | None = None) -> dict[str, list[Row]]:
        """The rows of ``group`` (persons, events: bucket ``k``; shared) read as ``read_fhir`` reads them."""
        path = self.work / (f"{group}.parquet" if k is None else f"{group}-{k}.parquet")
        c = _Collector()
        if path.is_file():
            for batch in pq.ParquetFile(path).iter_batches(batch_size=SPLIT_LINES):
                cols = batch.to_pydict()
                for file, line, text in zip(cols[FILE], cols[LINE], cols["text"], strict=True):
                    _read_line(file, line, text, c)
        return c.rows

    def entities(self, group: str) -> list[str]:
        """The entities of ``group`` that have rows anywhere in the site, in the order they are checked."""
        return entity_order([e for e in self.files if _group(e) == group])

    def check(self, name: str, rows: list[Row], valid: dict[str, pl.Series],
              rejected: dict[str, pl.DataFrame]) -> EntityResult:
        """``read_fhir``'s check of one entity's rows of a bucket, with the whole site's duplicate ids."""
        return _validate(name, rows, self.files.get(name, ""), valid, rejected, self.orphan_events,
                         self.duplicates.get(name))


_DUPLICATES_SQL = """
SELECT entity, ord FROM (SELECT entity, ord, min(ord) OVER (PARTITION BY entity, key) AS first FROM c)
WHERE ord <> first ORDER BY entity, ord
"""


def _repeated_ids(candidates: list[Path], files: list[Path], temp_dir: Path) -> dict[str, pl.DataFrame]:
    """entity -> (``_file``, ``_line``) of the rows whose id an earlier candidate row has (DuckDB with
    a memory limit, spilling to ``temp_dir``: bounded however large the site)."""
    if not candidates:
        return {}
    temp_dir.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(config={"memory_limit": "512MB", "threads": 2, "temp_directory": str(temp_dir)})
    try:
        paths = ", ".join("'" + str(p).replace("'", "''") + "'" for p in candidates)
        con.execute(f"CREATE VIEW c AS SELECT entity, key, ord FROM read_parquet([{paths}])")
        dup = con.sql(_DUPLICATES_SQL).pl()
    finally:
        con.close()
    names = {i: p.name for i, p in enumerate(files)}
    dup = dup.with_columns((pl.col("ord") // _ORD_LINE).replace_strict(names, return_dtype=pl.String).alias(FILE),
                           (pl.col("ord") % _ORD_LINE).cast(pl.Int64).alias(LINE))
    return {str(e): part.select(FILE, LINE) for (e,), part in dup.partition_by("entity", as_dict=True).items()}


def _chunks(lines: Iterator[tuple[int, bytes]], n: int, size: int = SPLIT_BYTES) -> Iterator[list[tuple[int, bytes]]]:
    """Lines in chunks of at most ``n`` lines or about ``size`` bytes (resources can be large: notes)."""
    chunk: list[tuple[int, bytes]] = []
    held = 0
    for x in lines:
        chunk.append(x)
        held += len(x[1])
        if len(chunk) >= n or held >= size:
            yield chunk
            chunk, held = [], 0
    if chunk:
        yield chunk


def split_fhir(site: str, folder: Path, work: Path, *, persons_per_bucket: int = DEFAULT_PERSONS_PER_BUCKET,
               chunk_lines: int = SPLIT_LINES, progress: Callable[[str], None] | None = None,
               orphan_events: OrphanEvents = "keep") -> FhirSplit | None:
    """Stream every NDJSON file of a fhir-bulk folder once into person-bucket Parquet files under
    ``work`` (about ``persons_per_bucket`` patients a bucket), deciding duplicate ids over the whole
    site. None when the folder holds Bundles (``*.json``): those are read in one piece."""
    if not folder.is_dir():
        raise ExtractError(f"landing folder {folder} does not exist: copy the FHIR bulk export there")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in (".ndjson", ".json"))
    if not files:
        raise ExtractError(f"{folder} holds no .ndjson or .json file: expected a FHIR bulk export or Bundles")
    if any(p.suffix.lower() == ".json" for p in files):
        return None
    ids: list[str] = []
    for p in files:  # the Patients of the Patient files pick the buckets
        if _fallback(p.name) != "patient":
            continue
        for _i, line in _lines(p):
            try:
                res = json.loads(line)
            except ValueError:
                continue
            if isinstance(res, dict) and res.get("resourceType") == "Patient":
                pid = _person_ref(res)
                if pid:
                    ids.append(pid)
    id_series = pl.Series("key", ids, pl.String).unique()
    del ids
    buckets = bucket_count(id_series.len(), persons_per_bucket)
    lookup = bucket_lookup(id_series, buckets)
    persons = id_series.len()
    del id_series
    shutil.rmtree(work, ignore_errors=True)
    (work / "_keys").mkdir(parents=True)
    writers: dict[tuple[str, int], pq.ParquetWriter] = {}
    candidates: list[Path] = []
    entity_files: dict[str, set[str]] = {}
    try:
        for fi, p in enumerate(files):
            rows = 0
            for chunk in _chunks(_lines(p), chunk_lines):
                c = _Collector()
                groups: list[str] = []
                keys: list[str | None] = []
                for i, line in chunk:
                    res = _read_line(p.name, i, line, c)
                    row = c.rows[c.last][-1]
                    if c.last == "patient" and PRE_REASON not in row:
                        key = row.get("id")
                    elif "patient" in row:
                        key = row["patient"]
                    else:
                        key = _person_ref(res)
                    groups.append(_group(c.last))
                    keys.append(key)
                rows += len(chunk)
                for e, fs in c.files.items():
                    entity_files.setdefault(e, set()).update(fs)
                for e, erows in c.rows.items():
                    if e not in SPECS or _group(e) == "shared":
                        continue
                    df = entity_frame(e, erows)
                    cand = df.filter(passes_row_checks(SPECS[e], df) & pl.col("id").is_not_null()).select(
                        entity=pl.lit(e), key=pl.col("id"), ord=pl.lit(fi * _ORD_LINE, pl.Int64) + pl.col(LINE))
                    if cand.height:
                        target = work / "_keys" / f"{len(candidates)}.parquet"
                        cand.write_parquet(target)
                        candidates.append(target)
                frame = pl.DataFrame({
                    FILE: [p.name] * len(chunk), LINE: [i for i, _ in chunk], "text": [b for _, b in chunk],
                    "group": groups, "key": keys,
                }, schema={FILE: pl.String, LINE: pl.Int64, "text": pl.Binary, "group": pl.String, "key": pl.String})
                frame = frame.join(lookup, left_on="key", right_on="_person_key", how="left", maintain_order="left")
                frame = frame.with_columns(pl.when(pl.col("group") == "shared").then(pl.lit(0, pl.UInt32))
                                           .otherwise(pl.col(BUCKET).fill_null(0)).alias(BUCKET))
                for (g, k), part in frame.partition_by("group", BUCKET, as_dict=True, maintain_order=True).items():
                    w = writers.get((str(g), int(k)))
                    if w is None:
                        name = "shared.parquet" if g == "shared" else f"{g}-{k}.parquet"
                        w = writers[(str(g), int(k))] = pq.ParquetWriter(work / name, _LINES, compression="zstd")
                    w.write_table(part.select(FILE, LINE, "text").to_arrow().cast(_LINES))
            if progress is not None:
                progress(f"{site}: split {p.name} ({rows:,} resources) into {buckets} person buckets")
    finally:
        for w in writers.values():
            w.close()
    duplicates = _repeated_ids(candidates, files, work / "_duckdb")
    shutil.rmtree(work / "_keys", ignore_errors=True)
    shutil.rmtree(work / "_duckdb", ignore_errors=True)
    missing = [] if "patient" in entity_files else ["Patient.*.ndjson"]
    return FhirSplit(site, buckets, persons, work, {e: ",".join(sorted(f)) for e, f in entity_files.items()},
                     duplicates, missing, orphan_events)
