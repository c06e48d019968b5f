"""Data-space metadata computed from a release's files: HealthDCAT-AP, Croissant, a DCAT catalog,
and the Eclipse Dataspace Components (EDC) asset, ODRL policy and contract definition.

Every JSON-LD document carries its ``@context`` inline: nothing is fetched to read it. Values come
from the files (row counts, sizes, checksums, dates and ages read from the Parquet), never typed in.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import duckdb

THEME_HEAL = "http://publications.europa.eu/resource/authority/data-theme/HEAL"
ACCESS_NON_PUBLIC = "http://publications.europa.eu/resource/authority/access-right/NON_PUBLIC"
ACCESS_RESTRICTED = "http://publications.europa.eu/resource/authority/access-right/RESTRICTED"
PERSONAL_DATA = [{"@id": "https://w3id.org/dpv/pd#HealthRecord"}, {"@id": "https://w3id.org/dpv/pd#Age"},
                 {"@id": "https://w3id.org/dpv/pd#Gender"}]
EHDS = "http://data.europa.eu/eli/reg/2025/327/oj"
GDPR = "http://data.europa.eu/eli/reg/2016/679/oj"
PARQUET = "http://publications.europa.eu/resource/authority/file-type/PARQUET"
BASE = "urn:ds4h:"

DCAT_CONTEXT: dict[str, Any] = {
    "dcat": "http://www.w3.org/ns/dcat#",
    "dct": "http://purl.org/dc/terms/",
    "foaf": "http://xmlns.com/foaf/0.1/",
    "vcard": "http://www.w3.org/2006/vcard/ns#",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
    "spdx": "http://spdx.org/rdf/terms#",
    "dcatap": "http://data.europa.eu/r5r/",
    "dpv": "https://w3id.org/dpv#",
    "healthdcatap": "http://healthdataportal.eu/ns/health#",
    "adms": "http://www.w3.org/ns/adms#",
    "owl": "http://www.w3.org/2002/07/owl#",
    "dct:issued": {"@type": "xsd:dateTime"},
    "dct:modified": {"@type": "xsd:dateTime"},
    "dcat:startDate": {"@type": "xsd:date"},
    "dcat:endDate": {"@type": "xsd:date"},
    "dcat:byteSize": {"@type": "xsd:nonNegativeInteger"},
    "healthdcatap:numberOfRecords": {"@type": "xsd:nonNegativeInteger"},
    "healthdcatap:numberOfUniqueIndividuals": {"@type": "xsd:nonNegativeInteger"},
    "healthdcatap:minTypicalAge": {"@type": "xsd:nonNegativeInteger"},
    "healthdcatap:maxTypicalAge": {"@type": "xsd:nonNegativeInteger"},
}

CODING_SYSTEMS = {
    "SNOMED": "http://snomed.info/sct",
    "LOINC": "http://loinc.org",
    "RxNorm": "http://www.nlm.nih.gov/research/umls/rxnorm",
    "ICD10": "http://hl7.org/fhir/sid/icd-10",
    "ATC": "http://www.whocc.no/atc",
    "OMOP": "https://ohdsi.github.io/CommonDataModel/cdm54.html",
}


def _q(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def facts(version_dir: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Numbers read from the release's Parquet: records, individuals, temporal coverage, ages."""
    omop = version_dir / "omop"
    con = duckdb.connect()
    person = omop / "person" / "part-0.parquet"
    visits = omop / "visit_occurrence" / "part-0.parquet"
    periods = omop / "observation_period" / "part-0.parquet"
    out: dict[str, Any] = {"records": sum(int(f["rows"]) for f in manifest["files"] if f["path"].endswith(".parquet"))}
    out["individuals"] = con.sql(f"SELECT count(DISTINCT person_id) FROM {_q(person)}").fetchall()[0][0]
    start, end = con.sql(
        f"SELECT min(visit_start_date), max(visit_end_date) FROM {_q(visits)}"
    ).fetchall()[0]
    out["start"] = start.isoformat() if start else None
    out["end"] = end.isoformat() if end else None
    ages = con.sql(
        f"SELECT min(year(p.observation_period_end_date) - q.year_of_birth), "
        f"max(year(p.observation_period_end_date) - q.year_of_birth) "
        f"FROM {_q(periods)} p JOIN {_q(person)} q USING (person_id) WHERE q.year_of_birth > 0"
    ).fetchall()[0]
    out["min_age"], out["max_age"] = (int(ages[0]) if ages[0] is not None else 0), (int(ages[1]) if ages[1] is not None else 0)
    con.close()
    return out


def _product_kind(manifest: dict[str, Any], name: object) -> str:
    docs = [p for p in manifest.get("products") or [] if p.get("name") == name]
    return ("person-level, pseudonymised" if docs and docs[0].get("person_level")
            else "aggregates under disclosure control")


def healthdcat(manifest: dict[str, Any], info: dict[str, Any], release: dict[str, Any]) -> dict[str, Any]:
    ident = f"{BASE}{manifest['dataset']}:{manifest['version']}"
    created = manifest["created"]
    distributions = [
        {
            "@id": f"{ident}:{f['table']}" if "table" in f else f"{ident}:{f['path']}",
            "@type": "dcat:Distribution",
            "dct:title": f"OMOP CDM v5.4 table {f['table']}" if "table" in f
            else f"data product {f.get('product')}: {Path(f['path']).stem} ({_product_kind(manifest, f.get('product'))})",
            "dct:format": {"@id": PARQUET},
            "dcat:mediaType": {"@id": "https://www.iana.org/assignments/media-types/application/vnd.apache.parquet"},
            "dcat:accessURL": {"@id": f"{ident}:{f['path']}"},
            "dcat:byteSize": f["bytes"],
            "spdx:checksum": {
                "@type": "spdx:Checksum",
                "spdx:algorithm": {"@id": "spdx:checksumAlgorithm_sha256"},
                "spdx:checksumValue": f["sha256"],
            },
            "healthdcatap:numberOfRecords": f["rows"],
        }
        for f in manifest["files"] if f["path"].endswith(".parquet")
    ]
    demo = " DEMO release made with the demo key: not for research." if manifest.get("demo") else ""
    anonymised = manifest.get("mode", "anonymised") == "anonymised"
    if not anonymised:
        demo += f" Pseudonymised release for data permit {manifest.get('permit')}: personal data, restricted access."
    return {
        "@context": DCAT_CONTEXT,
        "@id": ident,
        "@type": "dcat:Dataset",
        "dct:identifier": f"{manifest['dataset']}/{manifest['version']}",
        "dct:title": release["title"] + (" (DEMO)" if manifest.get("demo") else ""),
        "dct:description": release["description"] + demo,
        "dct:issued": created,
        "dct:modified": created,
        "owl:versionInfo": str(manifest["version"]),
        "dct:publisher": {"@type": "foaf:Agent", "foaf:name": release["publisher"]},
        "dcat:contactPoint": {"@type": "vcard:Kind", "vcard:fn": release["publisher"],
                              "vcard:hasEmail": {"@id": f"mailto:{release['contact_email']}"}},
        "healthdcatap:hdab": {"@type": "foaf:Agent", "foaf:name": release["access_body"]},
        "dcat:theme": {"@id": THEME_HEAL},
        # anonymised: no personal data, listed publicly, obtained on request; pseudonymised: personal
        # data for one permit's secure processing environment, never listed
        "dct:accessRights": {"@id": ACCESS_RESTRICTED if anonymised else ACCESS_NON_PUBLIC},
        "dcatap:applicableLegislation": [{"@id": EHDS}] + ([] if anonymised else [{"@id": GDPR}]),
        "dpv:hasPurpose": {"@id": "https://w3id.org/dpv#ScientificResearch"},
        "dpv:hasTechnicalMeasure": {"@id": "https://w3id.org/dpv#Anonymisation" if anonymised
                                    else "https://w3id.org/dpv#Pseudonymisation"},
        **({} if anonymised else {
            "dpv:hasLegalBasis": {"@id": "https://w3id.org/dpv/legal/eu/gdpr#A9-2-j"},
            "dpv:hasPersonalData": PERSONAL_DATA,
        }),
        "dct:temporal": {"@type": "dct:PeriodOfTime", "dcat:startDate": info["start"], "dcat:endDate": info["end"]},
        "healthdcatap:numberOfRecords": info["records"],
        "healthdcatap:numberOfUniqueIndividuals": info["individuals"],
        "healthdcatap:minTypicalAge": info["min_age"],
        "healthdcatap:maxTypicalAge": info["max_age"],
        "healthdcatap:hasCodingSystem": [{"@id": v} for v in CODING_SYSTEMS.values()],
        "adms:versionNotes": f"key fingerprint {manifest['key_fingerprint']}; project {manifest['project']}",
        "dcat:distribution": distributions,
    }


def croissant(manifest: dict[str, Any], schemas: dict[str, list[tuple[str, str]]], release: dict[str, Any]) -> dict[str, Any]:
    """A Croissant 1.0 description (ML Commons) of the release's Parquet tables."""
    types = {"Int64": "sc:Integer", "Int32": "sc:Integer", "Float64": "sc:Float", "Date": "sc:Date",
             "Datetime": "sc:DateTime", "String": "sc:Text"}
    files = [f for f in manifest["files"] if f["path"].endswith(".parquet") and "table" in f]
    return {
        "@context": {
            "@language": "en", "@vocab": "https://schema.org/", "sc": "https://schema.org/",
            "cr": "http://mlcommons.org/croissant/", "dct": "http://purl.org/dc/terms/",
            "conformsTo": "dct:conformsTo", "recordSet": "cr:recordSet", "field": "cr:field",
            "fileObject": "cr:fileObject", "source": "cr:source", "extract": "cr:extract", "column": "cr:column",
            "dataType": {"@id": "cr:dataType", "@type": "@vocab"}, "md5": "cr:md5",
        },
        "@type": "sc:Dataset",
        "conformsTo": "http://mlcommons.org/croissant/1.0",
        "name": f"{manifest['dataset']}-v{manifest['version']}",
        "description": release["description"] + (" DEMO release." if manifest.get("demo") else ""),
        "version": f"{manifest['version']}.0.0",
        "datePublished": manifest["created"],
        "license": "Access under a data permit of the health data access body; re-identification prohibited.",
        "url": f"{BASE}{manifest['dataset']}:{manifest['version']}",
        "distribution": [
            {"@type": "cr:FileObject", "@id": f["table"], "name": f["table"], "contentUrl": f["path"],
             "encodingFormat": "application/x-parquet", "sha256": f["sha256"], "contentSize": f"{f['bytes']} B"}
            for f in files
        ],
        "recordSet": [
            {"@type": "cr:RecordSet", "@id": f["table"] + "_records", "name": f["table"],
             "field": [
                 {"@type": "cr:Field", "@id": f"{f['table']}/{col}", "name": col,
                  "dataType": types.get(dtype.split("(")[0], "sc:Text"),
                  "source": {"fileObject": {"@id": f["table"]}, "extract": {"column": col}}}
                 for col, dtype in schemas.get(f["table"], [])
             ]}
            for f in files
        ],
    }


def catalog(entries: list[dict[str, Any]], now: dt.datetime) -> dict[str, Any]:
    """The DCAT catalog of the data space: one dataset per approved release."""
    return {
        "@context": DCAT_CONTEXT,
        "@id": f"{BASE}catalog",
        "@type": "dcat:Catalog",
        "dct:title": "ds4h data space catalog",
        "dct:modified": now.isoformat().replace("+00:00", "Z"),
        "dcat:dataset": entries,
    }


def edc(manifest: dict[str, Any], release_dir: Path, release: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Asset, policy definition and contract definition for an EDC connector's management API."""
    asset_id = f"{manifest['dataset']}-v{manifest['version']}"
    edc_ctx = {"@vocab": "https://w3id.org/edc/v0.0.1/ns/", "edc": "https://w3id.org/edc/v0.0.1/ns/",
               "odrl": "http://www.w3.org/ns/odrl/2/", "dct": "http://purl.org/dc/terms/"}
    asset = {
        "@context": edc_ctx, "@id": asset_id, "@type": "Asset",
        "properties": {"name": release["title"], "description": release["description"],
                       "version": str(manifest["version"]), "contenttype": "application/x-parquet",
                       "dct:identifier": f"{manifest['dataset']}/{manifest['version']}"},
        "dataAddress": {"@type": "DataAddress", "type": "File", "path": str(release_dir)},
    }
    policy_id = f"{asset_id}-research-only"
    policy = {
        "@context": edc_ctx, "@id": policy_id, "@type": "PolicyDefinition",
        "policy": {
            "@type": "odrl:Set",
            "odrl:permission": [{
                "odrl:action": {"@id": "odrl:use"},
                "odrl:constraint": [{"odrl:leftOperand": {"@id": "odrl:purpose"}, "odrl:operator": {"@id": "odrl:eq"},
                                     "odrl:rightOperand": "scientific-research"}],
            }],
            "odrl:prohibition": [
                {"odrl:action": {"@id": "https://w3id.org/ds4h/ns#reidentify"}},
                {"odrl:action": {"@id": "odrl:distribute"}},
            ],
        },
    }
    contract = {
        "@context": edc_ctx, "@id": f"{asset_id}-contract", "@type": "ContractDefinition",
        "accessPolicyId": policy_id, "contractPolicyId": policy_id,
        "assetsSelector": [{"@type": "Criterion", "operandLeft": "https://w3id.org/edc/v0.0.1/ns/id",
                            "operator": "=", "operandRight": asset_id}],
    }
    return {"asset.json": asset, "policy-definition.json": policy, "contract-definition.json": contract}
