"""Write anonymisation/data/first_names.txt: the first names the note de-identifier recognises before a
surname ("Anne Weber", "WEBER Anne"), drawn from Faker's person providers for the languages of
Luxembourg's patients (French, German, Luxembourgish, Dutch, Portuguese, Italian, Spanish, English).

    uv run python scripts/make_first_names.py

The list is checked in (loading Faker at every de-identification would cost 0.3 s); run this again
after a Faker upgrade.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

LOCALES = ("fr_FR", "fr_BE", "fr_CH", "de_DE", "de_AT", "de_CH", "de_LU", "nl_BE", "nl_NL", "pt_PT", "pt_BR",
           "it_IT", "es_ES", "en_GB")  # fmt: skip
# French words written capitalised at the start of a sentence or a heading, or month and day names
EXCLUDED = {"avril", "mai", "juin", "mars", "août", "auguste", "lundi", "mardi", "mercredi", "jeudi", "vendredi",
            "samedi", "dimanche", "patient", "service", "bilan", "mode", "suite", "date", "note"}  # fmt: skip
OUT = Path(__file__).resolve().parents[1] / "anonymisation" / "data" / "first_names.txt"


def main() -> None:
    names: set[str] = set()
    for locale in LOCALES:
        provider = importlib.import_module(f"faker.providers.person.{locale}").Provider
        for attr in ("first_names", "first_names_male", "first_names_female"):
            names.update(getattr(provider, attr, ()) or ())
    kept = sorted(
        n for n in names
        if len(n) >= 3 and re.fullmatch(r"[^\W\d_]+(?:[-'][^\W\d_]+)*", n) and n.lower() not in EXCLUDED
    )
    OUT.write_text("# first names (scripts/make_first_names.py, from Faker's person providers)\n"
                   + "\n".join(kept) + "\n", encoding="utf-8")
    print(f"{len(kept)} first names -> {OUT}")


if __name__ == "__main__":
    main()
