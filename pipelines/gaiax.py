"""Gaia-X 25.11 credentials for a ds4h release: a did:web document, Verifiable Credentials 2.0 secured as
JWTs (VC-JOSE, ``vc+jwt``, ES256) for the participant (gx:LegalPerson, its registration number from a
MOCK notary, the Gaia-X terms an issuer agrees to), the federated node (gx:ServiceOffering) and the
release (gx:DataProduct pointing at its HealthDCAT-AP dcat:Dataset), enveloped in a ``vp+jwt``
presentation; and their offline verification: signatures against the DID documents, then the subjects
against the vendored Gaia-X SHACL shapes (pySHACL, the gx JSON-LD context inlined: nothing is fetched).

What stays online and manual (Gaia-X clearing house: notary, trust anchor, compliance credential; did:web
hosting) is in docs/gaiax.md.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SHAPES_DIR = Path(__file__).resolve().parent.parent / "schemas" / "gaiax" / "25.11"
VC_CONTEXT = "https://www.w3.org/ns/credentials/v2"
GX_CONTEXT = "https://w3id.org/gaia-x/development#"
GX_TERMS_HASH = "4bd7554097444c960292b4726c2efa1373485e8a5565d94d41195214c5e0ceb3"
MOCK_NOTARY_DOMAIN = "mock-notary.ds4h.invalid"
MOCK_NOTARY_DID = f"did:web:{MOCK_NOTARY_DOMAIN}"
REGISTRATION_KINDS = {  # config kind -> (gx class, property of the gx context)
    "vatID": ("gx:VatID", "vatID"),
    "leiCode": ("gx:LeiCode", "leiCode"),
    "EORI": ("gx:EORI", "eori"),
    "local": ("gx:LocalRegistrationNumber", "local"),
}
CREDENTIALS = ("legal-person", "registration-number", "issuer-terms", "service-offering", "data-product")
DEMO_PARTICIPANT: dict[str, Any] = {
    "legal_name": "ds4h demo hospital network (DEMO)",
    "registration_number": {"type": "local", "value": "B000000-DEMO"},
    "legal_address": {"country_code": "LU", "street_address": "1 rue de la Démo", "locality": "Luxembourg",
                      "postal_code": "L-1000"},
    "headquarters_address": {"country_code": "LU", "street_address": "1 rue de la Démo", "locality": "Luxembourg",
                             "postal_code": "L-1000"},
    "did_web_domain": "ds4h-demo.example.org",
}


class GaiaxError(Exception):
    """A user-facing problem (one line)."""


# ----------------------------------------------------------------------------------------------- keys
def participant_key_path(project: str) -> Path:
    from anonymisation.keys import keys_dir

    return keys_dir() / f"{project}.participant.pem"


def new_participant_key(project: str, *, overwrite: bool = False) -> str:
    """Write an EC P-256 private key (PEM, 0600) outside the workspace; return the public JWK thumbprint."""
    from jwcrypto import jwk

    from anonymisation.keys import write_private

    path = participant_key_path(project)
    if path.exists() and not overwrite:
        raise GaiaxError(f"{path} exists: a participant key is never replaced silently")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = jwk.JWK.generate(kty="EC", crv="P-256")
    write_private(path, key.export_to_pem(private_key=True, password=None))
    return str(key.thumbprint())


def load_participant_key(project: str) -> Any:
    from jwcrypto import jwk

    path = participant_key_path(project)
    if not path.exists():
        raise GaiaxError(f"no participant key for project {project} ({path}): make one with "
                         f"'ds4h keys participant --project {project}'")
    return jwk.JWK.from_pem(path.read_bytes())


def exportable(dataspace: Path, dataset: str, version: int) -> dict[str, Any]:
    """The release's manifest if its credentials may be exported (as 'ds4h connector-export': a DEMO
    release, marked demo; else an approved, non-revoked, anonymised release); else GaiaxError."""
    from pipelines.publish import approved_versions, version_state

    ds = dataspace / dataset
    path = ds / str(version) / "manifest.json"
    if not path.exists():
        raise GaiaxError(f"no release {dataset} version {version} under {dataspace} ('ds4h releases' lists them)")
    m: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    if m.get("demo"):
        return m
    if m.get("mode", "anonymised") != "anonymised":
        raise GaiaxError(f"{dataset} v{version} is a pseudonymised release for permit {m.get('permit')}: it is "
                         "never offered to the data space")
    if version not in approved_versions(ds):
        state = version_state(ds, version)
        if state == "pending":
            raise GaiaxError(f"{dataset} v{version} is not approved: run 'ds4h approve {dataset} {version} --by NAME' "
                             "first")
        raise GaiaxError(f"{dataset} v{version} is {state}: its credentials cannot be exported")
    return m


# ----------------------------------------------------------------------------------------------- JOSE
def sign(payload: dict[str, Any], key: Any, kid: str, typ: str = "vc+jwt") -> str:
    from jwcrypto import jws
    from jwcrypto.common import json_encode

    token = jws.JWS(json.dumps(payload, ensure_ascii=False).encode("utf-8"))
    token.add_signature(key, alg="ES256", protected=json_encode({"alg": "ES256", "typ": typ, "kid": kid}))
    return str(token.serialize(compact=True))


def did_document(did: str, key: Any) -> dict[str, Any]:
    public = json.loads(key.export_public())
    vm = {"id": f"{did}#key-1", "type": "JsonWebKey", "controller": did, "publicKeyJwk": public}
    return {"@context": ["https://www.w3.org/ns/did/v1", "https://w3id.org/security/jwk/v1"], "id": did,
            "verificationMethod": [vm], "assertionMethod": [vm["id"]]}


def _vc(issuer: str, subject: dict[str, Any], vc_id: str, valid_from: str) -> dict[str, Any]:
    return {"@context": [VC_CONTEXT, GX_CONTEXT], "type": ["VerifiableCredential"], "id": vc_id,
            "issuer": issuer, "validFrom": valid_from, "credentialSubject": subject}


def _address(a: dict[str, Any]) -> dict[str, Any]:
    return {"type": "gx:Address", "countryCode": a["country_code"], "streetAddress": a["street_address"],
            "locality": a["locality"], "postalCode": a["postal_code"]}


def _terms(kind: str, url: str, text: bytes) -> dict[str, Any]:
    return {"type": kind, "url": url, "hash": hashlib.sha256(text).hexdigest()}


@dataclass
class Export:
    files: list[str] = field(default_factory=list)
    did: str = ""
    sign_seconds: float = 0.0


def export(folder: Path, out_dir: Path, participant: dict[str, Any], key: Any, demo: bool) -> Export:
    """Write did.json, mock-notary.did.json, one ``<name>.vc.jwt`` (and its decoded ``<name>.json``) per
    credential and ``presentation.vp.jwt`` (and ``presentation.json``) for the release in ``folder``."""
    from jwcrypto import jwk

    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    dcat_path = folder / "metadata" / "healthdcat-ap.jsonld"
    if not dcat_path.exists():
        raise GaiaxError(f"{dcat_path} is missing: the release has no HealthDCAT-AP record")
    dcat = json.loads(dcat_path.read_text(encoding="utf-8"))
    dataset_id = dcat["@id"]
    dataset, version = manifest["dataset"], manifest["version"]
    domain = participant["did_web_domain"]
    did = f"did:web:{domain}"
    kid = f"{did}#key-1"
    base = f"https://{domain}/gaiax/{dataset}/{version}"
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    tag = " DEMO: self-signed, registration number from a MOCK notary; not a Gaia-X compliant credential." if demo else ""
    lp_id, rn_id = f"{base}/legal-person.json#subject", f"{base}/registration-number.json#subject"
    so_id, dp_id = f"{base}/service-offering.json#subject", f"{base}/data-product.json#subject"

    out_dir.mkdir(parents=True, exist_ok=True)
    terms_text = (
        f"Terms and conditions of {participant['legal_name']} for the ds4h data space services.\n"
        f"Release {dataset} v{version}: access only under a data permit of the health data access body "
        f"({manifest.get('config', {}).get('release', {}).get('access_body', 'health data access body')}); "
        "re-identification of any person is prohibited; results leave only as aggregates.\n"
        "Federated node: analyses run where the data is; only aggregates of at least k persons leave the node.\n"
        + ("DEMO: these terms bind no one.\n" if demo else "")
    ).encode("utf-8")
    (out_dir / "terms-and-conditions.txt").write_bytes(terms_text)
    terms_url = f"https://{domain}/gaiax/terms-and-conditions.txt"

    rn = participant["registration_number"]
    if rn["type"] not in REGISTRATION_KINDS:
        raise GaiaxError(f"registration_number.type {rn['type']!r}: one of {', '.join(REGISTRATION_KINDS)}")
    rn_class, rn_prop = REGISTRATION_KINDS[rn["type"]]
    notary_key = jwk.JWK.generate(kty="EC", crv="P-256")  # MOCK: generated at each export, then dropped
    subjects: dict[str, tuple[str, Any, str, dict[str, Any]]] = {
        "legal-person": (did, key, kid, {
            "id": lp_id, "type": "gx:LegalPerson", "name": participant["legal_name"],
            "registrationNumber": {"id": rn_id}, "legalAddress": _address(participant["legal_address"]),
            "headquartersAddress": _address(participant["headquarters_address"]),
            **({"description": tag.strip()} if demo else {}),
        }),
        "registration-number": (MOCK_NOTARY_DID, notary_key, f"{MOCK_NOTARY_DID}#key-1", {
            # typed with its superclass too: the shapes' sh:class gx:RegistrationNumber holds without the ontology
            "id": rn_id, "type": ["gx:RegistrationNumber", rn_class], rn_prop: rn["value"],
        }),
        "issuer-terms": (did, key, kid, {"id": did, "type": "gx:Issuer", "gaiaxTermsAndConditions": GX_TERMS_HASH}),
        "service-offering": (did, key, kid, {
            "id": so_id, "type": "gx:ServiceOffering", "providedBy": {"id": lp_id},
            "name": f"ds4h federated node of {participant['legal_name']}",
            "description": "A Flower SuperNode answering federated analyses (counts, characterisation, "
                           "training) over the local pseudonymised OMOP CDM; only aggregates of at least k "
                           "persons leave the node (docs/federation.md)." + tag,
            "serviceOfferingTermsAndConditions": _terms("gx:TermsAndConditions", terms_url, terms_text),
            "dataProtectionRegime": "GDPR2016",
        }),
        "data-product": (did, key, kid, {
            "id": dp_id, "type": "gx:DataProduct",
            "name": f"{dataset} v{version}",
            "digitalServiceOfferingName": f"{dataset} v{version}" + (" (DEMO)" if demo else ""),
            "digitalServiceOfferingShortDescription": str(dcat.get("dct:description", dataset))[:500],
            "digitalServiceOfferingIdentifier": str(uuid.uuid5(uuid.NAMESPACE_URL, dataset_id)),
            "digitalServiceOfferingLaunchDate": manifest["created"],
            "digitalServiceOfferingProvider": {"id": lp_id},
            "digitalServiceLegalDocuments": {"type": "gx:LegalDocument", "url": f"{base}/healthdcat-ap.jsonld"},
            "digitalServiceOfferingTermsAndConditions": _terms("gx:ServiceTermsAndConditions", terms_url, terms_text),
            "digitalServiceUsageDataPolicy": _terms("gx:TermsAndConditions", terms_url, terms_text),
            "digitalServiceUsageTermsAndConditions": _terms("gx:UsageTermsAndConditions", terms_url, terms_text),
            "dataProductDescription": {
                "type": "gx:DataProductDescription",
                "dcat:Dataset": dataset_id,  # the release's HealthDCAT-AP dcat:Dataset
                "dataProductConfigurationParameters": {
                    "type": "gx:DataProductConfigurationParameter", "parameterName": "version",
                    "parameterDescription": "the release version (each version is an immutable, checksummed folder)",
                    "parameterAdmissibleValues": str(version)},
            },
        }),
    }
    result = Export(did=did)
    _write_json(out_dir / "did.json", did_document(did, key))
    _write_json(out_dir / "mock-notary.did.json", did_document(MOCK_NOTARY_DID, notary_key))
    result.files += ["did.json", "mock-notary.did.json", "terms-and-conditions.txt"]
    tokens: list[str] = []
    t0 = time.perf_counter()
    for name, (issuer, signer, signer_kid, subject) in subjects.items():
        vc = _vc(issuer, subject, f"{base}/{name}.json", now)
        if issuer == MOCK_NOTARY_DID:
            vc["description"] = "MOCK notary: the registration number was NOT checked against any registry."
        elif demo:
            vc["description"] = tag.strip()
        token = sign(vc, signer, signer_kid)
        tokens.append(token)
        (out_dir / f"{name}.vc.jwt").write_text(token + "\n", encoding="utf-8")
        _write_json(out_dir / f"{name}.json", vc)
        result.files += [f"{name}.vc.jwt", f"{name}.json"]
    vp = {"@context": [VC_CONTEXT], "type": ["VerifiablePresentation"], "holder": did,
          "verifiableCredential": [{"@context": VC_CONTEXT, "type": "EnvelopedVerifiableCredential",
                                    "id": f"data:application/vc+jwt,{t}"} for t in tokens]}
    (out_dir / "presentation.vp.jwt").write_text(sign(vp, key, kid, "vp+jwt") + "\n", encoding="utf-8")
    _write_json(out_dir / "presentation.json", vp)
    result.sign_seconds = time.perf_counter() - t0
    result.files += ["presentation.vp.jwt", "presentation.json"]
    return result


def _write_json(path: Path, doc: Any) -> None:
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


# ----------------------------------------------------------------------------------------------- verify
@dataclass
class Finding:
    ok: bool
    check: str
    detail: str


def _keys(out_dir: Path) -> dict[str, Any]:
    from jwcrypto import jwk

    keys: dict[str, Any] = {}
    for name in ("did.json", "mock-notary.did.json"):
        path = out_dir / name
        if not path.exists():
            raise GaiaxError(f"{path} is missing: export with 'ds4h gaiax export DATASET VERSION --out {out_dir}'")
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            for vm in doc["verificationMethod"]:
                if vm["id"] in doc.get("assertionMethod", []):
                    keys[vm["id"]] = jwk.JWK(**vm["publicKeyJwk"])
        except (ValueError, KeyError, TypeError) as e:
            raise GaiaxError(f"{path} is not a usable DID document: {e}") from e
    return keys


def check_token(token: str, keys: dict[str, Any], typ: str = "vc+jwt") -> dict[str, Any]:
    """Verify a compact JWS against the DID keys; return its payload. Raises GaiaxError (one line)."""
    from jwcrypto import jws
    from jwcrypto.common import JWException

    try:
        t = jws.JWS()
        t.deserialize(token.strip())
        header = t.jose_header
        if header.get("typ") != typ or header.get("alg") != "ES256":
            raise GaiaxError(f"header typ {header.get('typ')!r} alg {header.get('alg')!r}: expected {typ} ES256")
        kid = header.get("kid")
        if kid not in keys:
            raise GaiaxError(f"signed by {kid!r}: no such key in the DID documents")
        t.verify(keys[kid], alg="ES256")
        payload: dict[str, Any] = json.loads(t.payload)
    except GaiaxError:
        raise
    except (JWException, ValueError, UnicodeDecodeError) as e:
        raise GaiaxError(f"signature does not verify ({type(e).__name__})") from e
    if not str(kid).startswith(str(payload.get("issuer", payload.get("holder"))) + "#"):
        raise GaiaxError(f"signed by {kid} but issued by {payload.get('issuer', payload.get('holder'))}")
    return payload


_SHAPES: Any = None


def shapes_graph() -> Any:
    global _SHAPES
    if _SHAPES is None:
        import rdflib

        _SHAPES = rdflib.Graph().parse(SHAPES_DIR / "gx.shacl.ttl", format="turtle")
    return _SHAPES


def subjects_graph(vcs: list[dict[str, Any]]) -> Any:
    """The RDF graph of the credentials' subjects, the gx context inlined (the W3C VC v2 context, which
    cannot be fetched offline, is replaced by its id/type aliases)."""
    import rdflib

    ctx = json.loads((SHAPES_DIR / "gx.context.jsonld").read_text(encoding="utf-8"))["@context"]
    g = rdflib.Graph()
    with warnings.catch_warnings():  # rdflib 7.6's own JSON-LD parser still uses its ConjunctiveGraph
        warnings.filterwarnings("ignore", message="ConjunctiveGraph is deprecated", category=DeprecationWarning)
        for vc in vcs:
            subject = dict(vc["credentialSubject"])
            subject["@context"] = [ctx, {"id": "@id", "type": "@type"}]
            g.parse(data=json.dumps(subject), format="json-ld")
    return g


def shacl(vcs: list[dict[str, Any]]) -> tuple[list[Finding], dict[str, float]]:
    import pyshacl
    import rdflib
    from rdflib.namespace import SH

    times: dict[str, float] = {}
    t0 = time.perf_counter()
    shapes = shapes_graph()
    times["load_shapes"] = time.perf_counter() - t0
    data = subjects_graph(vcs)
    t0 = time.perf_counter()
    conforms, report, _ = pyshacl.validate(data, shacl_graph=shapes, inference="none", advanced=False,
                                           allow_warnings=True)
    times["validate"] = time.perf_counter() - t0
    if conforms:
        return [Finding(True, "Gaia-X 25.11 shapes", f"{len(data)} triples of {len(vcs)} subjects conform")], times
    findings = []
    for r in report.subjects(rdflib.RDF.type, SH.ValidationResult):
        path, focus = report.value(r, SH.resultPath), report.value(r, SH.focusNode)
        shape, msg = report.value(r, SH.sourceShape), str(report.value(r, SH.resultMessage))
        msg = re.split(r" on [\[<]", msg)[0]  # pySHACL repeats the whole focus node
        if len(msg) > 160:  # sh:in lists of every country code
            msg = msg[:157] + "..."
        where = _qname(shapes, focus)
        if isinstance(focus, rdflib.BNode):  # name the credential property holding it
            for s, p in data.subject_predicates(focus):
                where = f"the {_qname(shapes, p)} of {_qname(shapes, s)}"
        findings.append(Finding(False, "Gaia-X 25.11 shapes", f"{_qname(shapes, path)} on {where}: {msg}"
                                + (f" (shape {_qname(shapes, shape)})" if isinstance(shape, rdflib.URIRef) else "")))
    return sorted(findings, key=lambda f: f.detail), times


def _qname(g: Any, node: Any) -> str:
    import rdflib

    if isinstance(node, rdflib.URIRef):
        try:
            return str(g.namespace_manager.normalizeUri(node))
        except ValueError:
            return str(node)
    return "a blank node" if isinstance(node, rdflib.BNode) else str(node)


def verify(out_dir: Path) -> tuple[list[Finding], dict[str, float]]:
    if not out_dir.is_dir():
        raise GaiaxError(f"{out_dir} is not a folder: give the --out folder of 'ds4h gaiax export'")
    keys = _keys(out_dir)
    findings: list[Finding] = []
    vcs: list[dict[str, Any]] = []
    tokens = sorted(out_dir.glob("*.vc.jwt"))
    if not tokens:
        raise GaiaxError(f"no *.vc.jwt in {out_dir}")
    t0 = time.perf_counter()
    for path in tokens:
        try:
            vc = check_token(path.read_text(encoding="utf-8"), keys)
            vcs.append(vc)
            findings.append(Finding(True, path.name, f"signed by {vc['issuer']}"))
        except GaiaxError as e:
            findings.append(Finding(False, path.name, str(e)))
    vp_path = out_dir / "presentation.vp.jwt"
    if vp_path.exists():
        try:
            vp = check_token(vp_path.read_text(encoding="utf-8"), keys, "vp+jwt")
            enveloped = {c["id"].removeprefix("data:application/vc+jwt,") for c in vp["verifiableCredential"]}
            inner = {p.read_text(encoding="utf-8").strip() for p in tokens}
            ok = enveloped == inner
            findings.append(Finding(ok, vp_path.name, f"signed by {vp['holder']}; envelops "
                                    + ("exactly the credentials beside it" if ok else
                                       f"{len(enveloped)} credentials, not the {len(inner)} beside it")))
        except (GaiaxError, KeyError, TypeError, AttributeError) as e:
            findings.append(Finding(False, vp_path.name, str(e)))
    else:
        findings.append(Finding(False, vp_path.name, "missing"))
    times = {"signatures": time.perf_counter() - t0}
    if vcs:
        try:
            shacl_findings, t = shacl(vcs)
        except Exception as e:  # a malformed subject: not a traceback
            shacl_findings, t = [Finding(False, "Gaia-X 25.11 shapes", f"cannot read the subjects as JSON-LD: {e}")], {}
        findings += shacl_findings
        times.update(t)
    return findings, times
