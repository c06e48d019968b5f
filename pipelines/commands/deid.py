"""``ds4h deid-text`` and ``ds4h eval-deid``: de-identify French clinical notes (JSONL) and measure it.

Imports neither Dagster nor great-expectations; presidio and spaCy are imported inside the command,
so ``ds4h deid-text --help`` answers at once.
"""

from __future__ import annotations

import json
import sys
from datetime import date
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from anonymisation.deid import Deidentifier

__all__ = ["CommandError", "deid_text", "deidentifier", "eval_deid", "read_jsonl", "register"]

_KNOWN_KEYS = ("names", "phones", "emails", "addresses", "national_ids", "birth_dates", "local_ids", "ibans")


class CommandError(Exception):
    """A user-facing error: one line on stderr, exit code 1."""


def read_jsonl(path: Path, required: tuple[str, ...]) -> list[dict[str, Any]]:
    """Every line of ``path`` as a dict; a malformed line raises CommandError naming its number."""
    if not path.exists():
        raise CommandError(f"{path}: no such file")
    rows: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CommandError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise CommandError(f"{path}:{number}: expected a JSON object")
            missing = [k for k in required if k not in row]
            if missing:
                raise CommandError(f"{path}:{number}: missing field(s) {', '.join(missing)}")
            rows.append(row)
    return rows


def _check_note(path: Path, number: int, row: dict[str, Any]) -> dict[str, list[str]]:
    if not isinstance(row["text"], str):
        raise CommandError(f"{path}:{number}: 'text' must be a string")
    shift = row.get("shift_days")
    if shift is not None and (isinstance(shift, bool) or not isinstance(shift, int)):
        raise CommandError(f"{path}:{number}: 'shift_days' must be an integer (days)")
    known = row.get("known") or {}
    if not isinstance(known, dict):
        raise CommandError(f"{path}:{number}: 'known' must be an object")
    out: dict[str, list[str]] = {}
    for key in _KNOWN_KEYS:
        values = known.get(key) or []
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise CommandError(f"{path}:{number}: known.{key} must be a list of strings")
        if key == "birth_dates":
            for v in values:
                try:
                    date.fromisoformat(v)
                except ValueError:
                    raise CommandError(
                        f"{path}:{number}: known.birth_dates holds {v!r}, not a date written YYYY-MM-DD"
                    ) from None
        out[key] = values
    return out


def _shift_range(config: str | None) -> int:
    """``policy.date_shift_days`` of the config (--config, $DS4H_CONFIG, $DS4H_HOME/ds4h.yaml) when
    one is found, else the policy's default."""
    from schemas.config import ConfigError, config_path, load_config
    from schemas.policy import PrivacyPolicy

    if config is None and not config_path().exists():
        return PrivacyPolicy().date_shift_days
    try:
        return load_config(config).policy.date_shift_days
    except ConfigError as exc:
        raise CommandError(str(exc)) from None


@cache
def deidentifier(lang: str = "fr", batch_size: int = 64) -> Deidentifier:
    """One Deidentifier per process (loading the spaCy model costs seconds)."""
    from anonymisation.deid import Deidentifier

    return Deidentifier(language=lang, batch_size=batch_size)


def deid_text(
    input_path: Annotated[
        Path, typer.Argument(metavar="INPUT.jsonl", help='lines {"id", "text", "known", "shift_days"}')
    ],
    out: Annotated[Path, typer.Option("--out", help="output JSONL: id, text_deid, spans")],
    lang: Annotated[str, typer.Option("--lang", help="language of the notes")] = "fr",
    project: Annotated[
        str | None,
        typer.Option(
            "--project",
            help="shift the dates of lines without shift_days by the project key's "
            "per-note offset (within the policy's date_shift_days) instead of [DATE]",
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="texts per spaCy batch")] = 64,
    config: Annotated[
        str | None,
        typer.Option(
            "--config",
            help="config whose policy.date_shift_days bounds --project's offsets "
            "(default $DS4H_CONFIG, else $DS4H_HOME/ds4h.yaml when present)",
        ),
    ] = None,
) -> None:
    """De-identify clinical notes: names, phones, e-mails, addresses, matricules, local ids, IBANs,
    ages and dates.

    Each line's "known" holds the patient's identifiers (names, phones, emails, addresses,
    national_ids, birth_dates as YYYY-MM-DD, local_ids, ibans). Dates are shifted by the line's
    "shift_days", else (with --project) by a keyed per-note offset, else tagged [DATE]; birth dates
    are always tagged.

    Example: ds4h deid-text notes.jsonl --out notes-deid.jsonl --project demo
    """
    try:
        _deid_text(input_path, out, lang, project, batch_size, config)
    except CommandError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


def _deid_text(
    input_path: Path, out: Path, lang: str, project: str | None, batch_size: int, config: str | None = None
) -> None:
    rows = read_jsonl(input_path, ("id", "text"))
    knowns = [_check_note(input_path, i + 1, r) for i, r in enumerate(rows)]
    secret: bytes | None = None
    if project is not None:
        from anonymisation.keys import KeyError_, load_key

        try:
            secret = load_key(project).secret
        except KeyError_ as exc:
            raise CommandError(str(exc)) from None
    if lang != "fr":
        raise CommandError(f"--lang {lang}: only 'fr' is configured")
    needs_key = secret is not None and any(r.get("shift_days") is None for r in rows)
    max_days = _shift_range(config) if needs_key else 0

    from rich.console import Console
    from rich.progress import Progress

    from anonymisation.deid import redact
    from anonymisation.pseudonym import offset_days

    deid = deidentifier(lang, batch_size)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    texts = [str(r["text"]) for r in rows]
    with (
        tmp.open("w", encoding="utf-8") as f,
        Progress(
            console=Console(stderr=True), transient=True, disable=len(rows) < 200 or not sys.stderr.isatty()
        ) as progress,
    ):
        task = progress.add_task("de-identifying", total=len(rows))
        for row, text, spans in zip(rows, texts, deid.analyze_batch(texts, knowns), strict=True):
            offset = row.get("shift_days")
            if offset is None and secret is not None:
                offset = offset_days(secret, f"note:{row['id']}", max_days)
            line = {
                "id": row["id"],
                "text_deid": redact(text, spans, offset),
                "spans": [
                    {"start": s.start, "end": s.end, "entity_type": s.entity_type, "score": round(s.score, 3)}
                    for s in spans
                ],
            }
            f.write(json.dumps(line, ensure_ascii=False) + "\n")
            progress.advance(task)
    tmp.replace(out)
    typer.echo(f"{len(rows)} notes de-identified -> {out}", err=True)


def eval_deid(
    gold_path: Annotated[
        Path, typer.Argument(metavar="GOLD.jsonl", help='lines {"id", "spans": [[s, e, type, text]]}')
    ],
    output_path: Annotated[Path, typer.Argument(metavar="OUTPUT.jsonl", help="deid-text output")],
    json_path: Annotated[Path | None, typer.Option("--json", help="write the report as JSON")] = None,
    notes_path: Annotated[
        Path | None,
        typer.Option("--notes", help="the deid-text input: report notes with and without 'known' apart too"),
    ] = None,
) -> None:
    """Precision, recall and unchanged identifiers per type of a deid-text output against gold spans.

    A gold identifier is found when at least 80% of its characters are masked, unchanged when none is.
    With --notes, the notes with "known" identifiers and those without are also reported apart, and the
    JSON report becomes {"all": ..., "with_known": ..., "without_known": ...}.

    Example: ds4h eval-deid notes_gold.jsonl notes-deid.jsonl --notes notes.jsonl --json eval.json
    """
    try:
        from anonymisation.deid import evaluate, spans_by_id

        gold = spans_by_id(read_jsonl(gold_path, ("id", "spans")))
        predicted = spans_by_id(read_jsonl(output_path, ("id", "spans")))
        with_known: set[str] | None = None
        if notes_path is not None:
            with_known = {
                str(r["id"]) for r in read_jsonl(notes_path, ("id",)) if any((r.get("known") or {}).values())
            }
    except CommandError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        typer.echo(f"error: malformed span ({exc})", err=True)
        raise typer.Exit(1) from None
    missing = sorted(set(gold) - set(predicted))
    if missing:
        typer.echo(f"error: {len(missing)} gold note(s) have no output line (first: {missing[0]})", err=True)
        raise typer.Exit(1)
    reports: dict[str, dict[str, dict[str, float]]] = {"all": evaluate(gold, predicted)}
    if with_known is not None:
        for name, keep in (("with_known", True), ("without_known", False)):
            ids = {i for i in gold if (i in with_known) == keep}
            reports[name] = evaluate(
                {i: gold[i] for i in ids}, {i: predicted[i] for i in ids if i in predicted}
            )

    from rich.console import Console
    from rich.table import Table

    console = Console()
    for name, report in reports.items():
        n_notes = (
            len(gold)
            if name == "all"
            else sum(1 for i in gold if (i in (with_known or set())) == (name == "with_known"))
        )
        table = Table(title=f"de-identification: {name.replace('_', ' ')} ({n_notes} notes)")
        for col in ("type", "precision", "recall", "support", "unchanged"):
            table.add_column(col, justify="left" if col == "type" else "right")
        for kind, row in report.items():
            table.add_row(
                kind,
                f"{row['precision']:.3f}",
                f"{row['recall']:.3f}",
                str(int(row["support"])),
                str(int(row["unchanged"])),
            )
        console.print(table)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        payload: Any = reports if with_known is not None else reports["all"]
        json_path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")


def register(app: typer.Typer) -> None:
    """Add ``deid-text`` and ``eval-deid`` to ``app``."""
    app.command("deid-text")(deid_text)
    app.command("eval-deid")(eval_deid)
