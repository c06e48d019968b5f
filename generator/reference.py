"""Reference data of the hospital generator: codes from the bundled demo vocabulary, Faker pools.

Everything here is read from the ``schemas`` package (``importlib.resources``), never from
``../shared``, so the generator runs on a machine that has only the project.
"""

from __future__ import annotations

import csv
import unicodedata
from dataclasses import dataclass
from functools import cache
from importlib import resources

from faker import Faker

from generator.clinical import MEDS
from schemas.geo import Commune, communes

__all__ = [
    "FOREIGN_TOWNS",
    "LAB_TESTS",
    "PROCEDURE_CODES",
    "UNKNOWN_ATC",
    "UNKNOWN_ICD10",
    "UNKNOWN_LOINC",
    "UNKNOWN_SNOMED",
    "ForeignTown",
    "LabTest",
    "NamePools",
    "UnknownDrug",
    "UnknownLab",
    "Vocabulary",
    "ascii_fold",
    "commune_weights",
    "name_pools",
    "vocabulary",
]

_VOCAB_DIR = "vocabulary/demo"
ENCODING_FLOOR = "cp1252"  # every generated text must survive the most restrictive site encoding


def _read_tsv(name: str) -> list[dict[str, str]]:
    text = resources.files("schemas").joinpath(f"{_VOCAB_DIR}/{name}").read_text(encoding="utf-8")
    return list(csv.DictReader(text.splitlines(), delimiter="\t", quoting=csv.QUOTE_NONE))


@dataclass(frozen=True, slots=True)
class Vocabulary:
    """The codes the generator may draw from, each with its description."""

    icd10: dict[str, str]
    atc: dict[str, str]
    loinc: dict[str, str]  # LOINC Measurement and Observation concepts (smoking status is an Observation)
    snomed_procedures: dict[str, str]  # SNOMED Procedure concepts
    snomed_all: frozenset[str]  # every SNOMED concept_code (for unknown-code checks)
    ucum: frozenset[str]


@cache
def vocabulary() -> Vocabulary:
    icd10: dict[str, str] = {}
    atc: dict[str, str] = {}
    for r in _read_tsv("SOURCE_TO_CONCEPT_MAP.csv"):
        if r["source_vocabulary_id"] == "ICD10":
            icd10[r["source_code"]] = r["source_code_description"]
        elif r["source_vocabulary_id"] == "ATC":
            atc[r["source_code"]] = r["source_code_description"]
    loinc: dict[str, str] = {}
    procedures: dict[str, str] = {}
    snomed: set[str] = set()
    ucum: set[str] = set()
    for r in _read_tsv("CONCEPT.csv"):
        vocab, domain = r["vocabulary_id"], r["domain_id"]
        if vocab == "LOINC" and domain in ("Measurement", "Observation"):
            loinc.setdefault(r["concept_code"], r["concept_name"])
        elif vocab == "SNOMED":
            snomed.add(r["concept_code"])
            if domain == "Procedure":
                procedures.setdefault(r["concept_code"], r["concept_name"])
        elif vocab == "UCUM":
            ucum.add(r["concept_code"])
    vocab_ = Vocabulary(icd10, atc, loinc, procedures, frozenset(snomed), frozenset(ucum))
    _check_vocabulary(vocab_)
    return vocab_


# --- codes used by the clinical model -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LabTest:
    loinc: str
    unit: str
    decimals: int


LAB_TESTS: dict[str, LabTest] = {
    "hba1c": LabTest("4548-4", "%", 1),
    "glucose": LabTest("2345-7", "mg/dL", 0),
    "creatinine": LabTest("2160-0", "mg/dL", 2),
    "cholesterol": LabTest("2093-3", "mg/dL", 0),
    "hdl": LabTest("2085-9", "mg/dL", 0),
    "ldl": LabTest("18262-6", "mg/dL", 0),
    "potassium": LabTest("2823-3", "mmol/L", 1),
    "sodium": LabTest("2951-2", "mmol/L", 0),
    "haemoglobin": LabTest("718-7", "g/dL", 1),
    "platelets": LabTest("777-3", "10*3/uL", 0),
    "leukocytes": LabTest("6690-2", "10*3/uL", 1),
    "weight": LabTest("29463-7", "kg", 1),
    "systolic": LabTest("8480-6", "mm[Hg]", 0),
    "diastolic": LabTest("8462-4", "mm[Hg]", 0),
    "egfr": LabTest("62238-1", "mL/min/(173.10*-2.m2)", 0),  # CKD-EPI, mL/min/1.73 m2
    "uacr": LabTest("14959-1", "mg/g", 1),
    "bmi": LabTest("39156-5", "kg/m2", 1),
    "smoking": LabTest("72166-2", "", 0),  # a coded result (value_code), no value nor unit
}

PROCEDURE_CODES: dict[str, str] = {
    "colonoscopy": "73761001",
    "chemotherapy": "367336001",
    "radiotherapy": "108290001",
    "prostatectomy": "90470006",
    "colectomy": "43075005",
    "rectal_resection": "4558008",
    "mastectomy": "359728003",
    "sentinel_node": "396487001",
    "lung_excision": "119746007",
    "prostate_biopsy": "65575008",
    "colon_biopsy": "76164006",
    "lung_fna": "432231006",
    "haemodialysis": "302497006",
    "echocardiography": "40701008",
    "chest_xray": "399208008",
}

# Well-formed codes that the demo vocabulary does NOT hold (fault ``unknown_code``).
UNKNOWN_ICD10: tuple[tuple[str, str], ...] = (
    ("Z99.8", "Dependence on other enabling machines and devices"),
    ("R69", "Illness, unspecified"),
    ("K35.8", "Acute appendicitis, other and unspecified"),
    ("M54.5", "Low back pain"),
    ("N39.0", "Urinary tract infection, site not specified"),
    ("K80.2", "Calculus of gallbladder without cholecystitis"),
)


@dataclass(frozen=True, slots=True)
class UnknownDrug:
    atc: str
    name: str
    dose: str
    unit: str
    route: str


UNKNOWN_ATC: tuple[UnknownDrug, ...] = (
    UnknownDrug("A02BC01", "omeprazole", "20", "mg", "PO"),
    UnknownDrug("N05BA01", "diazepam", "5", "mg", "PO"),
    UnknownDrug("R03AC02", "salbutamol", "0.1", "mg", "INH"),
    UnknownDrug("H02AB06", "prednisolone", "20", "mg", "PO"),
    UnknownDrug("N02AA01", "morphine", "10", "mg", "SC"),
)


@dataclass(frozen=True, slots=True)
class UnknownLab:
    loinc: str
    name: str
    unit: str
    low: float
    high: float
    decimals: int


UNKNOWN_LOINC: tuple[UnknownLab, ...] = (
    UnknownLab(
        "2324-2",
        "Gamma glutamyl transferase [Enzymatic activity/volume] in Serum or Plasma",
        "U/L",
        10,
        90,
        0,
    ),
    UnknownLab("14749-6", "Glucose [Moles/volume] in Serum or Plasma", "mmol/L", 4.0, 12.0, 1),
    UnknownLab("14682-9", "Creatinine [Moles/volume] in Serum or Plasma", "umol/L", 50, 160, 0),
    UnknownLab("2777-1", "Phosphate [Mass/volume] in Serum or Plasma", "mg/dL", 2.5, 4.5, 1),
    UnknownLab("1989-3", "25-Hydroxyvitamin D3 [Mass/volume] in Serum or Plasma", "ng/mL", 8, 60, 0),
)

UNKNOWN_SNOMED: tuple[tuple[str, str], ...] = (
    ("80146002", "Appendectomy"),
    ("38102005", "Cholecystectomy"),
    ("77477000", "Computerized axial tomography"),
    ("29303009", "Electrocardiographic procedure"),
)

# ICD-10 codes of the clinical model (generator.hospital and generator.clinical).
_USED_ICD10: tuple[str, ...] = (
    "E10.9",
    "E10.2",
    "E10.3",
    "E11.9",
    "E11.2",
    "E11.3",
    "E11.4",
    "E11.5",
    "C34.9",
    "C34.3",
    "C34.1",
    "C18.0",
    "C18.2",
    "C18.7",
    "C18.9",
    "C18.8",
    "C19",
    "C61",
    "C50.9",
    "C50.4",
    "C20",
    "I10",
    "E78.5",
    "J45.9",
    "I48.9",
    "I50.9",
    "I21.9",
    "J18.9",
    "J20.9",
    "F32.9",
    "N18.3",
    "D64.9",
    "U07.1",
    "J01.9",
    "S82.8",
    "J02.9",
)


def _check_vocabulary(v: Vocabulary) -> None:
    """Fail early (and loudly) when the bundled vocabulary no longer covers the generator's model."""
    missing = [c for c in _USED_ICD10 if c not in v.icd10]
    missing += [c for c in MEDS if c not in v.atc]
    missing += [t.loinc for t in LAB_TESTS.values() if t.loinc not in v.loinc]
    missing += [t.unit for t in LAB_TESTS.values() if t.unit and t.unit not in v.ucum]
    missing += [c for c in PROCEDURE_CODES.values() if c not in v.snomed_procedures]
    if missing:
        raise RuntimeError(f"demo vocabulary lacks codes the generator uses: {sorted(set(missing))}")
    present = [c for c, _ in UNKNOWN_ICD10 if c in v.icd10]
    present += [d.atc for d in UNKNOWN_ATC if d.atc in v.atc]
    present += [lab.loinc for lab in UNKNOWN_LOINC if lab.loinc in v.loinc]
    present += [c for c, _ in UNKNOWN_SNOMED if c in v.snomed_all]
    if present:
        raise RuntimeError(f"'unknown' codes of the generator are in the vocabulary: {present}")


# --- names, streets, places -----------------------------------------------------------------------

# (Faker locale, share of the population). de_LU has Luxembourg's own name frequencies (with its
# Portuguese community); fr_FR and de_DE add the French- and German-speaking residents and frontaliers.
NAME_LOCALES: tuple[tuple[str, float], ...] = (
    ("de_LU", 0.55),
    ("fr_FR", 0.25),
    ("de_DE", 0.12),
    ("pt_PT", 0.08),
)

LU_STREETS: tuple[str, ...] = (
    "rue de la Gare",
    "rue Principale",
    "Grand-Rue",
    "route d'Arlon",
    "route de Luxembourg",
    "rue de l'Église",
    "rue du Moulin",
    "rue des Jardins",
    "rue de la Forêt",
    "rue du Cimetière",
    "avenue de la Liberté",
    "boulevard Royal",
    "rue des Prés",
    "rue de l'École",
    "rue du Château",
    "route de Thionville",
    "route d'Esch",
    "rue de Mersch",
    "rue des Champs",
    "rue du Parc",
    "rue de la Fontaine",
    "rue des Vignes",
    "rue de Bettembourg",
    "avenue Grande-Duchesse Charlotte",
    "rue Michel Rodange",
    "rue Dicks",
    "boulevard Grande-Duchesse Joséphine-Charlotte",
    "rue des Romains",
    "rue Émile Mayrisch",
    "place de l'Hôtel de Ville",
    "rue de Strasbourg",
    "avenue de la Gare",
    "rue Pierre Krier",
    "rue des Acacias",
    "rue des Écoles",
    "rue de Hollerich",
    "route de Longwy",
    "rue Nicolas Welter",
    "rue Jean-Pierre Brasseur",
    "montée de la Pétrusse",
)

COMMUNE_POPULATION_K: dict[str, float] = {
    "Luxembourg": 135,
    "Esch-sur-Alzette": 37,
    "Differdange": 29,
    "Dudelange": 22,
    "Pétange": 21,
    "Sanem": 18,
    "Hesperange": 16,
    "Bettembourg": 11,
    "Schifflange": 11,
    "Käerjeng": 11,
    "Mamer": 10,
    "Mersch": 10,
    "Ettelbruck": 10,
    "Strassen": 10,
    "Kayl": 9,
    "Bertrange": 9,
    "Walferdange": 8.5,
    "Junglinster": 8,
    "Diekirch": 7.5,
    "Wiltz": 7.5,
    "Mondercange": 7,
    "Niederanven": 7,
    "Roeser": 6.3,
    "Kehlen": 6,
    "Echternach": 5.8,
    "Steinsel": 5.5,
    "Rumelange": 5.5,
    "Steinfort": 5.5,
    "Mondorf-les-Bains": 5.3,
    "Grevenmacher": 5,
    "Habscht": 4.5,
    "Contern": 4,
    "Sandweiler": 3.8,
    "Remich": 3.7,
}
_DEFAULT_COMMUNE_K = 2.5


def commune_weights() -> tuple[tuple[Commune, ...], tuple[float, ...]]:
    """Communes and their (approximate) population weights, for drawing home addresses."""
    cs = communes()
    return cs, tuple(COMMUNE_POPULATION_K.get(c.name, _DEFAULT_COMMUNE_K) for c in cs)


@dataclass(frozen=True, slots=True)
class ForeignTown:
    """A town across the border where patients of Luxembourg hospitals live (real postcodes)."""

    country: str  # ISO 3166-1 alpha-2
    postcode: str  # the country's own format: FR and DE 5 digits, BE 4 digits
    name: str
    weight: float  # relative, within the towns abroad


FOREIGN_TOWNS: tuple[ForeignTown, ...] = (
    # France: Moselle (57) and Meurthe-et-Moselle (54) along the border
    ForeignTown("FR", "57100", "Thionville", 8),
    ForeignTown("FR", "57970", "Yutz", 3),
    ForeignTown("FR", "57330", "Hettange-Grande", 2),
    ForeignTown("FR", "57190", "Florange", 2),
    ForeignTown("FR", "57700", "Hayange", 2),
    ForeignTown("FR", "57390", "Audun-le-Tiche", 1.5),
    ForeignTown("FR", "57570", "Cattenom", 0.8),
    ForeignTown("FR", "57000", "Metz", 5),
    ForeignTown("FR", "54400", "Longwy", 2.5),
    ForeignTown("FR", "54190", "Villerupt", 1.5),
    # Belgium: the province of Luxembourg (arrondissement of Arlon and around)
    ForeignTown("BE", "6700", "Arlon", 6),
    ForeignTown("BE", "6790", "Aubange", 2.5),
    ForeignTown("BE", "6780", "Messancy", 1.2),
    ForeignTown("BE", "6717", "Attert", 0.8),
    ForeignTown("BE", "6760", "Virton", 1.2),
    ForeignTown("BE", "6600", "Bastogne", 1.5),  # 6600 is also a synthetic L-6600: the country tells them apart
    # Germany: Trier and the Saar-Moselle
    ForeignTown("DE", "54290", "Trier", 5),
    ForeignTown("DE", "54294", "Trier", 2),
    ForeignTown("DE", "54329", "Konz", 2),
    ForeignTown("DE", "54439", "Saarburg", 1),
    ForeignTown("DE", "54634", "Bitburg", 1.2),
    ForeignTown("DE", "54298", "Igel", 0.4),
    ForeignTown("DE", "66706", "Perl", 0.8),
)


@dataclass(frozen=True, slots=True)
class NamePools:
    """Pools drawn once with seeded Faker instances; generation then samples them with its own RNG."""

    male: tuple[tuple[str, ...], ...]  # per locale of NAME_LOCALES
    female: tuple[tuple[str, ...], ...]
    last: tuple[tuple[str, ...], ...]
    streets: tuple[str, ...]


def _encodable(s: str) -> bool:
    try:
        s.encode(ENCODING_FLOOR)
    except UnicodeEncodeError:
        return False
    return bool(s.strip())


def _tidy_last_name(s: str) -> str:
    # de_LU writes "Da silva", "Dos santos": capitalise the particle's noun as people do.
    parts = s.split(" ")
    if len(parts) == 2 and parts[0] in {"Da", "Dos", "De", "Das", "Do"}:
        return f"{parts[0]} {parts[1][:1].upper()}{parts[1][1:]}"
    return s


def _draw(fn: object, n: int) -> tuple[str, ...]:
    assert callable(fn)
    out = [str(fn()) for _ in range(n)]
    return tuple(x for x in out if _encodable(x))


@cache
def name_pools(seed: int, pool_size: int = 1500) -> NamePools:
    """Faker-drawn pools of first names, last names and French street names for ``seed``.

    Faker is slow per call; drawing ``pool_size`` values per locale once keeps the population
    frequencies of Faker's weighted lists while generation stays fast.
    """
    male: list[tuple[str, ...]] = []
    female: list[tuple[str, ...]] = []
    last: list[tuple[str, ...]] = []
    for locale, _share in NAME_LOCALES:
        fake = Faker(locale)
        fake.seed_instance(f"ds4h:{seed}:{locale}")
        male.append(_draw(fake.first_name_male, pool_size))
        female.append(_draw(fake.first_name_female, pool_size))
        last.append(tuple(_tidy_last_name(x) for x in _draw(fake.last_name, 2 * pool_size)))
    fr = Faker("fr_FR")
    fr.seed_instance(f"ds4h:{seed}:streets")
    faker_streets = _draw(fr.street_name, pool_size)
    # Half of the draws from typical Luxembourg street names, half from Faker's French ones.
    streets = tuple(LU_STREETS) * max(1, len(faker_streets) // len(LU_STREETS)) + faker_streets
    return NamePools(tuple(male), tuple(female), tuple(last), streets)


def ascii_fold(s: str) -> str:
    """``Éloïse Müller-Gonçalves`` -> ``Eloise Muller-Goncalves`` (for e-mail addresses)."""
    s = s.replace("ß", "ss").replace("œ", "oe").replace("Œ", "Oe").replace("æ", "ae").replace("Æ", "Ae")
    decomposed = unicodedata.normalize("NFKD", s)
    return "".join(ch for ch in decomposed if ord(ch) < 128 and not unicodedata.combining(ch))
