"""Notes per second: the whole `ds4h deid-text` command vs presidio's plain AnalyzerEngine with the
same French model (its predefined recognisers, NLP engine configured offline, one analyze() per
note), side by side on the same generated notes; precision and recall of both.

    uv run python bench/bench_deid.py [N_NOTES ...]     (default: 300 1500)

Both are timed as whole processes (Python start, imports, model load, reading and writing JSONL).
Before timing, `ds4h deid-text` runs once on a few notes, so that the compiled French tokenizer
pattern is in its cache (anonymisation/nlp_model.py), as it is on any machine after the first run;
the cold first run is timed and reported too.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from common import ROOT, append_results, timed

BASELINE = r"""
import json, sys, time, warnings, logging
logging.disable(logging.CRITICAL)
from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
from presidio_analyzer.nlp_engine import NlpEngineProvider
t0 = time.perf_counter()
conf = {"nlp_engine_name": "spacy", "models": [{"lang_code": "fr", "model_name": "fr_core_news_sm"}]}
nlp = NlpEngineProvider(nlp_configuration=conf).create_engine()
registry = RecognizerRegistry(supported_languages=["fr"])
registry.load_predefined_recognizers(languages=["fr"], nlp_engine=nlp)
registry.remove_recognizer("UrlRecognizer")
engine = AnalyzerEngine(registry=registry, nlp_engine=nlp, supported_languages=["fr"])
lines = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8")]
with open(sys.argv[2], "w", encoding="utf-8") as out:
    for rec in lines:
        res = engine.analyze(text=rec["text"], language="fr")
        out.write(json.dumps({"id": rec["id"], "text_deid": "", "spans": [
            {"start": r.start, "end": r.end, "entity_type": r.entity_type, "score": r.score} for r in res]}) + "\n")
print(time.perf_counter() - t0)
"""

TYPES = ("PATIENT_NAME", "OTHER_NAME", "DATE", "PHONE", "ADDRESS", "AGE")


def _write_notes(folder: Path, n: int) -> None:
    from generator.notes import known_identifiers, make_notes, make_patients

    patients = make_patients(7, (n + 4) // 5)
    notes = make_notes(patients, 7, per_patient=5)[:n]
    by_id = {p.patient_id: p for p in patients}
    with (folder / "notes.jsonl").open("w", encoding="utf-8") as f:
        for note in notes:
            known = known_identifiers(by_id[note.patient_id])
            f.write(json.dumps({"id": note.id, "text": note.text, "known": known}, ensure_ascii=False) + "\n")
    with (folder / "gold.jsonl").open("w", encoding="utf-8") as f:
        for note in notes:
            f.write(json.dumps({"id": note.id, "spans": [list(s) for s in note.spans]}, ensure_ascii=False) + "\n")


def _eval(folder: Path, name: str) -> dict[str, dict[str, float]]:
    subprocess.run([sys.executable, "-m", "pipelines.cli", "eval-deid", str(folder / "gold.jsonl"),
                    str(folder / f"{name}.jsonl"), "--json", str(folder / f"{name}-eval.json")],
                   check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    result: dict[str, dict[str, float]] = json.loads((folder / f"{name}-eval.json").read_text())
    return result


def main() -> int:
    sizes = [int(a) for a in sys.argv[1:]] or [300, 1500]
    tmp = Path(tempfile.mkdtemp(prefix="ds4h-deid-"))
    ours_cmd = [sys.executable, "-m", "pipelines.cli", "deid-text"]
    cache = Path(tmp / "cache")
    env = {**os.environ, "DS4H_CACHE": str(cache)}  # a fresh cache: the cold run below fills it
    (tmp / "warm").mkdir()
    _write_notes(tmp / "warm", 5)
    cold = timed([*ours_cmd, str(tmp / "warm" / "notes.jsonl"), "--out", str(tmp / "warm" / "o.jsonl")], env=env).wall
    warm = timed([*ours_cmd, str(tmp / "warm" / "notes.jsonl"), "--out", str(tmp / "warm" / "o.jsonl")], env=env).wall
    lines = [
        f"\n## {dt.datetime.now():%Y-%m-%d %H:%M}: note de-identification (bench/bench_deid.py), {os.cpu_count()} cores\n",
        "Whole processes on the same generated notes, back to back; `ds4h deid-text` vs presidio's "
        "AnalyzerEngine (predefined recognisers, same spaCy model, one analyze() per note). "
        f"`ds4h deid-text` on 5 notes: {cold:.1f} s with an empty cache (compiles spaCy's French tokenizer "
        f"pattern), {warm:.1f} s after.\n",
        "| notes | engine | wall s | notes/s | speed-up | " + " | ".join(f"recall {t}" for t in TYPES)
        + " | recall ALL | precision ALL |",
        "|---:|---|---:|---:|---:|" + "---:|" * (len(TYPES) + 2),
    ]
    for n in sizes:
        folder = tmp / f"n{n}"
        folder.mkdir()
        _write_notes(folder, n)
        ours = timed([*ours_cmd, str(folder / "notes.jsonl"), "--out", str(folder / "ours.jsonl")], env=env).wall
        base = timed([sys.executable, "-c", BASELINE, str(folder / "notes.jsonl"), str(folder / "base.jsonl")]).wall
        for name, secs in (("ds4h deid-text", ours), ("presidio AnalyzerEngine", base)):
            r = _eval(folder, "ours" if name.startswith("ds4h") else "base")
            speed = f"{base / ours:.2f}x" if name.startswith("ds4h") else ""
            recalls = " | ".join(f"{r.get(t, {}).get('recall', 0):.3f}" for t in TYPES)
            lines.append(f"| {n} | {name} | {secs:.1f} | {n / secs:.0f} | {speed} | {recalls} | "
                         f"{r['ALL']['recall']:.3f} | {r['ALL']['precision']:.3f} |")
    append_results("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
