"""Build the small vocabulary bundled in schemas/vocabulary/demo from ../shared/data/vocabulary-demo.

Run once by a developer (the product never reads ../shared): ``uv run python scripts/build_demo_vocabulary.py``.
The ICD-10 and ATC rows of SOURCE_TO_CONCEPT_MAP are hand-made demo mappings, the way an OHDSI site
maps local codes with Usagi; several are approximations and say so in their description.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "vocabulary-demo"
DST = Path(__file__).resolve().parents[1] / "schemas" / "vocabulary" / "demo"
# Real OMOP concepts absent from vocabulary-demo, one topic per file set (see ADDITIONS_README):
#   <topic>.concepts.tsv       the 10 CONCEPT columns, then `provenance` (where the row was read)
#   <topic>.ancestors.tsv      ancestor_concept_id, descendant_concept_id, min/max levels, `note`
#   <topic>.relationships.tsv  concept_id_1, concept_id_2, relationship_id, `note` ("Maps to" gets its reverse)
#   <topic>.source_maps.tsv    source_code, source_vocabulary_id, source_code_description, target_concept_id
ADDITIONS = Path(__file__).resolve().parent / "vocabulary_additions"

# (ICD-10 code, WHO description, SNOMED standard concept_id)
ICD10 = [
    ("E10.9", "Type 1 diabetes mellitus without complications", 201254),
    ("E10.2", "Type 1 diabetes mellitus with renal complications", 192279),
    ("E11.9", "Type 2 diabetes mellitus without complications", 201826),
    ("E11.2", "Type 2 diabetes mellitus with renal complications", 192279),
    ("E11.3", "Type 2 diabetes mellitus with ophthalmic complications", 4226121),
    ("E11.4", "Type 2 diabetes mellitus with neurological complications", 37016354),
    ("C34.9", "Malignant neoplasm of bronchus or lung, unspecified (demo: NSCLC)", 4115276),
    ("C34.1", "Malignant neoplasm of upper lobe, bronchus or lung (demo: small cell)", 4110591),
    ("C18.9", "Malignant neoplasm of colon, unspecified", 197500),
    ("C18.8", "Malignant neoplasm of overlapping lesion of colon", 79740),
    ("C78.5", "Secondary malignant neoplasm of large intestine and rectum", 4311765),
    ("C61", "Malignant neoplasm of prostate", 4129902),
    ("I10", "Essential (primary) hypertension", 320128),
    ("E78.5", "Hyperlipidaemia, unspecified", 432867),
    ("J45.9", "Asthma, unspecified", 317009),
    ("I48.9", "Atrial fibrillation and atrial flutter, unspecified", 313217),
    ("I50.9", "Heart failure, unspecified", 316139),
    ("I21.9", "Acute myocardial infarction, unspecified", 4329847),
    ("J18.9", "Pneumonia, unspecified", 255848),
    ("J20.9", "Acute bronchitis, unspecified", 260139),
    ("F32.9", "Depressive episode, unspecified", 4152280),
    ("N18.3", "Chronic kidney disease, stage 3", 443597),
    ("D64.9", "Anaemia, unspecified", 439777),
    ("U07.1", "COVID-19, virus identified", 37311061),
    ("J01.9", "Acute sinusitis, unspecified", 4294548),
    ("S82.8", "Fractures of other parts of lower leg (demo: ankle)", 4059173),
    ("J02.9", "Acute pharyngitis, unspecified", 4112343),
]

# (ATC code, name, RxNorm standard concept_id)
ATC = [
    ("A10BA02", "metformin", 40163924),
    ("A10AB04", "insulin lispro", 40166274),
    ("A10AD01", "insulin (human), intermediate-acting combined with fast-acting", 19009384),
    ("A10BJ02", "liraglutide", 40169222),
    ("L01XA01", "cisplatin", 35604087),
    ("L01XA02", "carboplatin", 1344909),
    ("L01XA03", "oxaliplatin", 35603924),
    ("L01BC02", "fluorouracil", 42628973),
    ("L01CD01", "paclitaxel", 1378388),
    ("L01CD02", "docetaxel", 1718758),
    ("L01CB01", "etoposide", 35606289),
    ("L02AE02", "leuprorelin", 1351705),
    ("C09AA03", "lisinopril", 19080128),
    ("C08CA01", "amlodipine", 1332419),
    ("C10AA01", "simvastatin", 1539411),
    ("C10AA05", "atorvastatin", 1545959),
    ("B01AC06", "acetylsalicylic acid", 19059056),
    ("B01AC04", "clopidogrel", 19075600),
    ("B01AA03", "warfarin", 40163554),
    ("N02BE01", "paracetamol", 19020053),
    ("J01CA04", "amoxicillin", 19073188),
    ("C03AA03", "hydrochlorothiazide", 19078106),
]

# RxNorm ingredients of the ATC targets above that vocabulary-demo lacks, so that drug_era rolls them up (real
# OMOP concepts: ids, names and RxNorm codes as OHDSI's PhenotypeLibrary concept sets list them).
# (concept_id, name, RxNorm code, the demo drug concepts it is the ingredient of). The two insulins have none here:
# their ingredient ids could not be checked, so they give no drug era with this vocabulary.
INGREDIENTS = [
    (1503297, "metformin", "6809", (40163924,)),
    (40170911, "liraglutide", "475968", (40169222,)),
    (1397599, "cisplatin", "2555", (35604087,)),
    (1344905, "carboplatin", "40048", (1344909,)),
    (1318011, "oxaliplatin", "32592", (35603924,)),
    (955632, "fluorouracil", "4492", (42628973,)),
    (1378382, "paclitaxel", "56946", (1378388,)),
    (1315942, "docetaxel", "72962", (1718758,)),
    (1350504, "etoposide", "4179", (35606289,)),
    (1351541, "leuprolide", "42375", (1351705,)),
    (1310149, "Warfarin", "11289", (40163554,)),
    (974166, "hydrochlorothiazide", "5487", (19078106,)),
]
# the levels of separation between an ingredient and a drug of each class (as in vocabulary-demo: 2 to 3
# for a Clinical Drug; one more for a quantified or branded one)
LEVELS = {"Clinical Drug": (2, 3), "Quant Clinical Drug": (3, 4), "Branded Drug": (3, 4)}

# causes of death of the shared FHIR sample's death certificates (sudden cardiac death, end-stage renal disease)
KEEP_CAUSES = {4317150, 193782}
KEEP_DOMAINS = {"Gender", "Race", "Ethnicity", "Visit", "Type Concept", "Episode", "Metadata", "Unit"}
KEEP_PROCEDURES = {
    4249893, 4273629, 4029715, 4141448, 4181781, 4235738, 4278515, 4294513, 4331248, 4263386,
    4120120, 4146536, 4230911, 4163872, 4024603, 45766298, 4108565, 4057420,
}


def read(name: str) -> tuple[list[str], list[list[str]]]:
    with (SRC / name).open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    return rows[0], rows[1:]


def write(name: str, header: list[str], rows: list[list[str]]) -> None:
    with (DST / name).open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def read_additions(kind: str) -> list[list[str]]:
    """The rows of every ``*.<kind>.tsv`` of ADDITIONS (header skipped), in file-name order."""
    rows: list[list[str]] = []
    for path in sorted(ADDITIONS.glob(f"*.{kind}.tsv")):
        with path.open(encoding="utf-8", newline="") as f:
            body = [r for r in csv.reader(f, delimiter="\t")][1:]
        rows += [r for r in body if r and not r[0].startswith("#")]
    return rows


def main() -> int:
    if not SRC.exists():
        print(f"error: {SRC} not found: run from a checkout beside ../shared", file=sys.stderr)
        return 1
    DST.mkdir(parents=True, exist_ok=True)
    header, concepts = read("CONCEPT.csv")
    targets = {c for _, _, c in ICD10} | {c for _, _, c in ATC}
    keep: set[int] = set()
    for r in concepts:
        cid, domain, vocab, standard = int(r[0]), r[2], r[3], r[5]
        if (
            cid in targets
            or cid in KEEP_PROCEDURES
            or cid in KEEP_CAUSES
            or (domain in KEEP_DOMAINS and vocab in {"Gender", "Race", "Ethnicity", "Visit", "Type Concept", "Episode", "CDM", "None", "UCUM"})
            or (domain == "Visit")
            or (vocab == "LOINC" and domain == "Measurement" and standard == "S")
        ):
            keep.add(cid)
    # the ingredients of the kept drugs that vocabulary-demo has (CONCEPT_ANCESTOR), and their own rows
    _, anc_rows = read("CONCEPT_ANCESTOR.csv")
    ingredient_ids = {int(r[0]) for r in concepts if r[4] == "Ingredient" and r[5] == "S"}
    keep |= {int(a) for a, d, *_ in anc_rows if int(d) in keep and int(a) in ingredient_ids}
    keep |= {c for c, *_ in INGREDIENTS if str(c) in {r[0] for r in concepts}}
    missing = targets - keep
    if missing:
        print(f"error: targets missing from the demo vocabulary: {sorted(missing)}", file=sys.stderr)
        return 1
    # hand-added: the CDM version concept cdm_source.cdm_version_concept_id needs (a real OMOP concept
    # absent from vocabulary-demo)
    extra = [["756265", "OMOP CDM Version 5.4.0", "Metadata", "CDM", "CDM", "S", "CDM v5.4.0", "20210906", "20991231", ""]]
    # hand-added (real OMOP concepts absent from vocabulary-demo): the visit concepts of hospice and
    # skilled nursing stays, and the type concepts of vital signs, surveys and administered vaccines
    extra += [
        ["8546", "Hospice", "Visit", "CMS Place of Service", "Visit", "S", "34", "19700101", "20991231", ""],
        ["8863", "Skilled Nursing Facility", "Visit", "CMS Place of Service", "Visit", "S", "31", "19700101", "20991231", ""],
        *[[str(c), name, "Type Concept", "Type Concept", "Type Concept", "S", str(c), "19700101", "20991231", ""]
          for c, name in ((32818, "EHR administration record"), (32836, "EHR physical examination"),
                          (32862, "Patient filled survey"))],
    ]
    extra += [[str(c), name, "Drug", "RxNorm", "Ingredient", "S", code, "19700101", "20991231", ""]
              for c, name, code, _ in INGREDIENTS]
    added = [r[:10] for r in read_additions("concepts")]
    by_id = {r[0]: r for r in concepts}
    for r in added:
        if r[0] in by_id and by_id[r[0]][:7] != r[:7]:
            print(f"error: addition {r[0]} differs from vocabulary-demo's row: {r[:7]} vs {by_id[r[0]][:7]}",
                  file=sys.stderr)
            return 1
    extra += added
    have = {r[0] for r in concepts}
    seen: set[str] = set()
    extra = [r for r in extra if (r[0] not in have or int(r[0]) not in keep) and not (r[0] in seen or seen.add(r[0]))]
    known = keep | {int(r[0]) for r in extra}
    write("CONCEPT.csv", header, [r for r in concepts if int(r[0]) in keep] + extra)
    rheader, rels = read("CONCEPT_RELATIONSHIP.csv")
    relationships = [r for r in rels if int(r[0]) in keep and int(r[1]) in keep]
    rel_pairs = {(r[0], r[1], r[2]) for r in relationships}
    reverse = {"Maps to": "Mapped from"}
    wanted = [[r[0], r[0], "Maps to"] for r in extra if r[5] == "S"]
    wanted += [r[:3] for r in read_additions("relationships")]
    for a, b, rel in list(wanted):
        if rel in reverse:
            wanted.append([b, a, reverse[rel]])
    for a, b, rel in wanted:
        if int(a) not in known or int(b) not in known:
            print(f"error: relationship {a} {rel} {b} names a concept the vocabulary lacks", file=sys.stderr)
            return 1
        if (a, b, rel) not in rel_pairs:
            relationships.append([a, b, rel, "19700101", "20991231", ""])
            rel_pairs.add((a, b, rel))
    write("CONCEPT_RELATIONSHIP.csv", rheader, relationships)
    aheader, anc = read("CONCEPT_ANCESTOR.csv")
    ancestors = [r for r in anc if int(r[0]) in keep and int(r[1]) in keep]
    pairs = {(r[0], r[1]) for r in ancestors}
    drug_class = {r[0]: r[4] for r in concepts}
    for c, _, _, drugs in INGREDIENTS:
        for row in ([str(c), str(c), "0", "0"],
                    *([str(c), str(dr), *map(str, LEVELS[drug_class[str(dr)]])] for dr in drugs)):
            if (row[0], row[1]) not in pairs:
                ancestors.append(row)
                pairs.add((row[0], row[1]))
    for row in [[r[0], r[0], "0", "0"] for r in extra if r[5] == "S"] + [r[:4] for r in read_additions("ancestors")]:
        if int(row[0]) not in known or int(row[1]) not in known:
            print(f"error: ancestor row {row} names a concept the vocabulary lacks", file=sys.stderr)
            return 1
        if (row[0], row[1]) not in pairs:
            ancestors.append(row)
            pairs.add((row[0], row[1]))
    write("CONCEPT_ANCESTOR.csv", aheader, ancestors)
    vheader, vocs = read("VOCABULARY.csv")
    write("VOCABULARY.csv", vheader, vocs)
    stcm_header = [
        "source_code", "source_concept_id", "source_vocabulary_id", "source_code_description",
        "target_concept_id", "target_vocabulary_id", "valid_start_date", "valid_end_date", "invalid_reason",
    ]
    vocab_of = {int(r[0]): r[3] for r in concepts} | {int(r[0]): r[3] for r in extra}
    stcm = [[c, "0", "ICD10", d, str(t), vocab_of[t], "19700101", "20991231", ""] for c, d, t in ICD10]
    stcm += [[c, "0", "ATC", d, str(t), vocab_of[t], "19700101", "20991231", ""] for c, d, t in ATC]
    for code, vocabulary_id, description, target in read_additions("source_maps"):
        if int(target) not in known:
            print(f"error: {vocabulary_id} {code} maps to {target}, which the vocabulary lacks", file=sys.stderr)
            return 1
        stcm.append([code, "0", vocabulary_id, description, target, vocab_of[int(target)], "19700101", "20991231", ""])
    write("SOURCE_TO_CONCEPT_MAP.csv", stcm_header, stcm)
    print(f"wrote {len(keep)} concepts and {len(stcm)} source mappings to {DST}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
