"""Regular-expression detectors for Luxembourg and French clinical text, without presidio.

Each detector returns ``(start, end, entity_type, score)`` over the text; ``anonymisation.deid``
wraps them as presidio recognisers. Entity types use the ds4h vocabulary: PATIENT_NAME, OTHER_NAME,
MATRICULE, PHONE, EMAIL, ADDRESS, DATE, IBAN.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date

from schemas.matricule import is_valid_matricule

__all__ = [
    "DETECTORS",
    "EPONYMS",
    "MONTHS",
    "Detector",
    "Found",
    "find_known",
    "is_eponym_use",
    "is_valid_iban",
    "normalise",
    "parse_date",
]

Found = tuple[int, int, str, float]

MONTHS: dict[str, int] = {
    "janvier": 1, "février": 2, "fevrier": 2, "mars": 3, "avril": 4, "mai": 5, "juin": 6,
    "juillet": 7, "août": 8, "aout": 8, "septembre": 9, "octobre": 10, "novembre": 11,
    "décembre": 12, "decembre": 12,
}  # fmt: skip
_MONTH_RE = "|".join(sorted(MONTHS, key=len, reverse=True))

# Surnames that are also medical eponyms; not masked when used as an eponym ("maladie de Parkinson").
EPONYMS = frozenset(
    {
        "wagner", "parkinson", "babinski", "charcot", "hodgkin", "crohn", "basedow", "cushing",
        "alzheimer", "glasgow", "addison", "horton", "raynaud", "lasegue", "murphy", "hashimoto",
        "kaposi", "barrett", "down", "turner", "marfan", "wernicke", "korsakoff", "guillain", "barre",
        "dupuytren", "paget", "bouchard", "heberden", "quincke", "folstein", "child", "pugh", "apgar",
    }
)  # fmt: skip
_EPONYM_CONTEXT = re.compile(
    r"(?:maladie|signe|syndrome|classification|score|stade|test|manœuvre|manoeuvre|pied|lymphome|"
    r"sarcome|tumeur|phénomène|phenomene|échelle|echelle|triade|œsophage|oesophage|contracture|"
    r"nodules?|grade|index|critères|criteres|selon)\s+(?:de\s+|d'|d’|du\s+)?$",
    re.IGNORECASE,
)


def is_eponym_use(text: str, start: int, end: int) -> bool:
    """True when ``text[start:end]`` is an eponym in a medical phrase ("classification de Wagner")."""
    if normalise(text[start:end]).strip() not in EPONYMS:
        return False
    return bool(_EPONYM_CONTEXT.search(text[max(0, start - 40) : start]))


def normalise(s: str) -> str:
    """Case- and accent-folded copy of ``s`` with the same length (offsets stay valid)."""
    out = []
    for ch in s:
        base = unicodedata.normalize("NFKD", ch)[:1] or ch
        out.append(base.lower()[:1] or base)
    return "".join(out)


# ---------------------------------------------------------------- validators


def is_valid_iban(s: str) -> bool:
    """ISO 13616 mod-97 check (spaces ignored); Luxembourg IBANs have 20 characters."""
    compact = "".join(s.split()).upper()
    if not re.fullmatch(r"[A-Z]{2}\d{2}[0-9A-Z]{10,30}", compact):
        return False
    if compact.startswith("LU") and len(compact) != 20:
        return False
    rearranged = compact[4:] + compact[:4]
    numeric = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(numeric) % 97 == 1


def parse_date(s: str) -> tuple[date, str] | None:
    """Parse a numeric or French long date; return it and a format tag for rewriting, or None."""
    m = re.fullmatch(r"(\d{1,2})([/.\-])(\d{1,2})\2(\d{4}|\d{2})", s)
    if m:
        day, month, year = int(m.group(1)), int(m.group(3)), int(m.group(4))
        short = len(m.group(4)) == 2
        if short:
            year += 1900 if year > 30 else 2000
        try:
            return date(year, month, day), f"num{m.group(2)}{'2' if short else '4'}"
        except ValueError:
            return None
    m = re.fullmatch(rf"(1er|\d{{1,2}})\s+({_MONTH_RE})(?:\s+(\d{{4}}))?", s, re.IGNORECASE)
    if m:
        day = 1 if m.group(1).lower() == "1er" else int(m.group(1))
        month = MONTHS[m.group(2).lower()]
        year = int(m.group(3)) if m.group(3) else 2000  # leap year: 29 février stays valid
        try:
            return date(year, month, day), "long" if m.group(3) else "longnoyear"
        except ValueError:
            return None
    return None


# ---------------------------------------------------------------- detectors


@dataclass(frozen=True, slots=True)
class Detector:
    name: str
    entity: str
    regex: re.Pattern[str]
    score: float
    group: int = 0
    validate: Callable[[str], bool] | None = None

    def find(self, text: str) -> Iterable[Found]:
        for m in self.regex.finditer(text):
            start, end = m.span(self.group)
            if start < 0 or start == end:
                continue
            if self.validate is not None and not self.validate(text[start:end]):
                continue
            yield (start, end, self.entity, self.score)


def _valid_date(s: str) -> bool:
    return parse_date(s) is not None


_UP = "A-ZÀ-ÖØ-Þ"
_NAME_TOKEN = rf"[{_UP}](?:\.(?:-[{_UP}][\w'’]*)?|[\w'’\-]*)"  # "Anne", "P.", "H.-Dieter"
_NAME = rf"{_NAME_TOKEN}(?:[ \t]+{_NAME_TOKEN}){{0,2}}"
_STREET_WORDS = (
    r"rue|avenue|av\.|route|boulevard|bd|place|chemin|allée|allee|impasse|montée|montee|cité|cite|"
    r"quai|rampe|sentier|square|côte|cote|val|op|um|an|am|Grand-Rue|Grand'Rue|Grand’Rue"
)

DETECTORS: tuple[Detector, ...] = (
    Detector(
        "matricule",
        "MATRICULE",
        re.compile(r"(?<![\d\w])(?:\d[ ]?){12}\d(?![\d\w])"),
        1.0,
        validate=is_valid_matricule,
    ),
    Detector(
        "iban",
        "IBAN",
        re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[0-9A-Z]{4}){3,7}(?:[ ]?[0-9A-Z]{1,3})?\b"),
        1.0,
        validate=is_valid_iban,
    ),
    Detector(
        "email",
        "EMAIL",
        re.compile(r"\b[\w.+\-]+@[\w\-]+(?:\.[\w\-]+)*\.[A-Za-z]{2,}\b"),
        1.0,
    ),
    # International numbers of Luxembourg, France, Belgium, Germany: +352 621 123 456, 0033 6 12 ...
    Detector(
        "phone_intl",
        "PHONE",
        re.compile(r"(?<![\w+])(?:\+|00)[ ]?(?:352|33|32|49)[ ]?(?:\(0\)[ ]?)?\d(?:[ .\-/]?\d){5,11}(?!\d)"),
        0.9,
    ),
    # French national numbers: 06 12 34 56 78
    Detector("phone_fr", "PHONE", re.compile(r"(?<![\d\w])0[1-9](?:[ .\-]?\d{2}){4}(?!\d)"), 0.8),
    # Luxembourg mobiles without prefix: 621 123 456
    Detector("phone_lu", "PHONE", re.compile(r"(?<![\d\w,.])6[2-9]1[ .]?\d{3}[ .]?\d{3}(?![\d,])"), 0.75),
    Detector(
        "date_num",
        "DATE",
        re.compile(r"(?<![\d\w/.])\d{1,2}([/.\-])\d{1,2}\1(?:\d{4}|\d{2})(?![\d/])"),
        0.9,
        validate=_valid_date,
    ),
    Detector(
        "date_long",
        "DATE",
        re.compile(rf"\b(?:1er|\d{{1,2}})\s+(?:{_MONTH_RE})(?:\s+\d{{4}})?\b", re.IGNORECASE),
        0.9,
        validate=_valid_date,
    ),
    Detector(
        "street",
        "ADDRESS",
        re.compile(
            rf"(?<![\d\w,.])\d{{1,4}}(?:[ ]?(?:bis|ter|[a-cA-C]))?,?[ ]+(?:{_STREET_WORDS})\b[^\n,;:()]{{0,60}}?"
            r"(?=[ ]*(?:[,;:()\n]|$|\.\s|[LFBD]-\d{4}))"
        ),
        0.85,
    ),
    Detector(
        "postcode_city",
        "ADDRESS",
        re.compile(
            rf"\b(?:L-?[ ]?\d{{4}}|[FBD]-[ ]?\d{{4,5}})(?:[ ]+[{_UP}][\w'’]*(?:[-/][\w'’]+)*(?:[ ]+(?:sur|sous|de|la|le|les|du|des|lès|[{_UP}][\w'’]*)(?:-[\w'’]+)*){{0,3}})?"
        ),
        0.85,
    ),
    # Names after a title or a relation word: "Mme Anne Muller", "Dr P. Schmit", "sa fille Claire".
    Detector(
        "titled_name",
        "OTHER_NAME",
        re.compile(
            r"\b(?:M\.|MM\.|Mme|Mmes|Mlle|Madame|Monsieur|Dr\.?|Docteur|Doctoresse|Pr\.?|Professeur|"
            rf"Me|Maître)[ ]+({_NAME})"
        ),
        0.85,
        group=1,
    ),
    Detector(
        "relative_name",
        "OTHER_NAME",
        re.compile(
            r"\b(?:sa|son|ses|leur)[ ]+(?:fille|fils|épouse|époux|epouse|epoux|mari|femme|sœur|soeur|frère|"
            rf"frere|mère|mere|père|pere|compagne|compagnon|conjoint|conjointe|petite-fille|petit-fils|"
            rf"belle-fille|gendre|neveu|nièce|niece|tante|oncle|voisin|voisine|ami|amie)[ ]+({_NAME})"
        ),
        0.85,
        group=1,
    ),
    Detector(
        "patient_label",
        "OTHER_NAME",
        re.compile(rf"\b(?:Patient|Patiente|Nom|Dossier)[ ]*:[ ]*({_NAME})"),
        0.8,
        group=1,
    ),
)


# ---------------------------------------------------------------- known identifiers (deny list)

_SEP = r"[\s\-'’.,]*"


def _digits_pattern(digits: str) -> str:
    return r"[ .\-/]?".join(re.escape(d) for d in digits)


def _known_patterns(known: dict[str, list[str]]) -> list[tuple[str, str]]:
    pats: list[tuple[str, str]] = []
    names = list(known.get("names") or [])
    # "Spieß" is written "SPIESS" in capitals: add the ss spelling of every name with ß
    names += [n.replace("ß", "ss") for n in names if "ß" in n]
    for name in names:
        tokens = re.findall(r"\w+", normalise(name))
        if not tokens:
            continue
        orders = [tokens]
        # every rotation: "DA SILVA Jean-François" (surname first, several tokens each side), and
        # every suffix: the surname alone ("LE GALL")
        orders += [tokens[i:] + tokens[:i] for i in range(1, len(tokens))]
        orders += [tokens[i:] for i in range(1, len(tokens))]
        for order in orders:
            pats.append(("PATIENT_NAME", r"\b" + _SEP.join(re.escape(t) for t in order) + r"\b"))
        pats.extend(("PATIENT_NAME", rf"\b{re.escape(t)}\b") for t in tokens if len(t) >= 3)
    for phone in known.get("phones") or []:
        digits = re.sub(r"\D", "", phone)
        for cc in ("352", "33", "32", "49"):
            if digits.startswith("00" + cc):
                digits = digits[2:]
            if digits.startswith(cc) and len(digits) > 8:
                national = digits[len(cc) :].lstrip("0")
                pats.append(
                    ("PHONE", rf"(?:(?:\+|00)[ ]?{cc}[ ]?)?(?:\(?0\)?[ ]?)?{_digits_pattern(national)}(?!\d)")
                )
                break
        else:
            if len(digits) >= 6:
                pats.append(("PHONE", _digits_pattern(digits) + r"(?!\d)"))
    for email in known.get("emails") or []:
        if email.strip():
            pats.append(("EMAIL", re.escape(normalise(email.strip()))))
    for address in known.get("addresses") or []:
        tokens = re.findall(r"\w+", normalise(address))
        if tokens:
            pats.append(("ADDRESS", r"\b" + _SEP.join(re.escape(t) for t in tokens) + r"\b"))
    for nid in known.get("national_ids") or []:
        digits = re.sub(r"\D", "", nid)
        if len(digits) >= 6:
            pats.append(("MATRICULE", r"(?<!\d)" + r"[ .\-]?".join(digits) + r"(?!\d)"))
    return pats


def find_known(text: str, known: dict[str, list[str]] | None, normalised: str | None = None) -> list[Found]:
    """Spans of ``known`` identifiers in ``text``, tolerant of case, accents and spacing.

    A name token that is a medical eponym in a medical phrase ("classification de Wagner") is skipped.
    """
    if not known:
        return []
    norm = normalise(text) if normalised is None else normalised
    out: list[Found] = []
    for kind, pat in _known_patterns(known):
        for m in re.finditer(pat, norm):
            start, end = m.span()
            if start == end:
                continue
            if kind == "PATIENT_NAME" and is_eponym_use(text, start, end):
                continue
            out.append((start, end, kind, 1.0))
    return out
