"""Notes per second: the whole `ds4h deid-text` command vs presidio's plain AnalyzerEngine with the
same French model, one analyze() per note, on the same generated notes; recall of both.

    uv run python bench/bench_deid.py [N_PATIENTS]     (5 notes per patient; default 300)
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


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    from generator.notes import known_identifiers, make_notes, make_patients

    tmp = Path(tempfile.mkdtemp(prefix="ds4h-deid-"))
    patients = make_patients(7, n)
    notes = make_notes(patients, 7, per_patient=5)
    by_id = {p.patient_id: p for p in patients}
    with (tmp / "notes.jsonl").open("w", encoding="utf-8") as f:
        for note in notes:
            f.write(json.dumps({"id": note.id, "text": note.text, "known": known_identifiers(by_id[note.patient_id])}) + "\n")
    with (tmp / "gold.jsonl").open("w", encoding="utf-8") as f:
        for note in notes:
            f.write(json.dumps({"id": note.id, "spans": [list(s) for s in note.spans]}) + "\n")
    ours = timed([sys.executable, "-m", "pipelines.cli", "deid-text", str(tmp / "notes.jsonl"), "--out", str(tmp / "ours.jsonl")]).wall
    base = timed([sys.executable, "-c", BASELINE, str(tmp / "notes.jsonl"), str(tmp / "base.jsonl")]).wall
    results = {}
    for name in ("ours", "base"):
        subprocess.run([sys.executable, "-m", "pipelines.cli", "eval-deid", str(tmp / "gold.jsonl"), str(tmp / f"{name}.jsonl"),
                        "--json", str(tmp / f"{name}-eval.json")], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
        results[name] = json.loads((tmp / f"{name}-eval.json").read_text())
    k = len(notes)
    lines = [f"\n## {dt.datetime.now():%Y-%m-%d %H:%M}: note de-identification (bench/bench_deid.py), {k} notes, {os.cpu_count()} cores\n",
             "| engine | notes/s (whole command) | recall PATIENT_NAME | recall DATE | recall ALL | precision ALL |", "|---|---:|---:|---:|---:|---:|"]
    for name, secs in (("ds4h deid-text", ours), ("presidio AnalyzerEngine, one analyze() per note", base)):
        r = results["ours" if name.startswith("ds4h") else "base"]
        lines.append(f"| {name} | {k / secs:.0f} | {r.get('PATIENT_NAME', {}).get('recall', 0):.3f} | "
                     f"{r.get('DATE', {}).get('recall', 0):.3f} | {r.get('ALL', {}).get('recall', 0):.3f} | {r.get('ALL', {}).get('precision', 0):.3f} |")
    append_results("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
