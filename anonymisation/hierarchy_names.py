"""Names of the built-in hierarchies (no numpy import, so ``--help`` lists them at once)."""

from __future__ import annotations

BUILTINS: dict[str, str] = {
    "year5": "year of birth → 5-year band → 10 → 20 → *",
    "year10": "year of birth → 10-year band → 20 → *",
    "year20": "year of birth → 20-year band → *",
    "age5": "age → 5-year band → 10 → 20 → *",
    "age10": "age → 10-year band → 20 → *",
    "age20": "age → 20-year band → *",
    "date-month": "ISO date → month → quarter → year → *",
    "date-quarter": "ISO date → quarter → year → *",
    "date-year": "ISO date → year → *",
    "lu-postcode": "residence: postcode L-1234 → commune LU-0042 → canton LU-EC → LU → *; abroad FR-57000 → FR → FR → FR → *",
    "sex": "value → *",
    "flat": "any categorical value → *",
}
