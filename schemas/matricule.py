"""Luxembourg national identification number (matricule, "numéro d'identification national").

Since 2014 the matricule has 13 digits: ``YYYYMMDD`` (birth date), a 3-digit serial, then two check
digits computed over the first 11 digits: a Luhn digit and a Verhoeff digit, in that order.

    >>> make_matricule(date(1985, 7, 14), 123)
    '1985071412341'
    >>> is_valid_matricule("1985 0714 123 41")
    True
"""

from __future__ import annotations

from datetime import date

__all__ = ["is_valid_matricule", "luhn_digit", "make_matricule", "normalise_matricule", "verhoeff_digit"]

_DIGITS = frozenset("0123456789")

# Verhoeff: multiplication table of the dihedral group D5, permutation table and inverses.
_VERHOEFF_D: tuple[tuple[int, ...], ...] = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9),
    (1, 2, 3, 4, 0, 6, 7, 8, 9, 5),
    (2, 3, 4, 0, 1, 7, 8, 9, 5, 6),
    (3, 4, 0, 1, 2, 8, 9, 5, 6, 7),
    (4, 0, 1, 2, 3, 9, 5, 6, 7, 8),
    (5, 9, 8, 7, 6, 0, 4, 3, 2, 1),
    (6, 5, 9, 8, 7, 1, 0, 4, 3, 2),
    (7, 6, 5, 9, 8, 2, 1, 0, 4, 3),
    (8, 7, 6, 5, 9, 3, 2, 1, 0, 4),
    (9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
)
_VERHOEFF_P: tuple[tuple[int, ...], ...] = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9),
    (1, 5, 7, 6, 2, 8, 3, 0, 9, 4),
    (5, 8, 0, 3, 7, 9, 6, 1, 4, 2),
    (8, 9, 1, 6, 0, 4, 3, 5, 2, 7),
    (9, 4, 5, 3, 1, 2, 6, 8, 7, 0),
    (4, 2, 8, 6, 5, 7, 3, 9, 0, 1),
    (2, 7, 9, 3, 8, 0, 6, 4, 1, 5),
    (7, 0, 4, 6, 9, 1, 3, 2, 5, 8),
)
_VERHOEFF_INV: tuple[int, ...] = (0, 4, 3, 2, 1, 5, 6, 7, 8, 9)


def _check_digits(digits: str) -> None:
    if not digits or not set(digits) <= _DIGITS:
        raise ValueError(f"expected a non-empty string of digits, got {digits!r}")


def luhn_digit(digits: str) -> str:
    """The Luhn check digit to append to ``digits``."""
    _check_digits(digits)
    total = 0
    # The rightmost payload digit is doubled (it becomes the second from the right once the check
    # digit is appended).
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def verhoeff_digit(digits: str) -> str:
    """The Verhoeff check digit to append to ``digits``."""
    _check_digits(digits)
    c = 0
    for i, ch in enumerate(reversed(digits)):
        c = _VERHOEFF_D[c][_VERHOEFF_P[(i + 1) % 8][ord(ch) - 48]]
    return str(_VERHOEFF_INV[c])


def make_matricule(birth: date, serial: int) -> str:
    """The 13-digit matricule of a person born on ``birth`` with a serial in 0..999."""
    if not 0 <= serial <= 999:
        raise ValueError(f"serial must be in 0..999, got {serial}")
    if not 1000 <= birth.year <= 9999:
        raise ValueError(f"birth year must have 4 digits, got {birth.year}")
    base = f"{birth.year:04d}{birth.month:02d}{birth.day:02d}{serial:03d}"
    return base + luhn_digit(base) + verhoeff_digit(base)


def normalise_matricule(s: str) -> str:
    """Remove the spaces that people put in matricules (``1985 0714 123 41``)."""
    return "".join(s.split())


def is_valid_matricule(s: str) -> bool:
    """True when ``s`` (spaces ignored) is 13 digits, starts with a real date and has both check digits."""
    digits = normalise_matricule(s)
    if len(digits) != 13 or not set(digits) <= _DIGITS:
        return False
    try:
        date(int(digits[0:4]), int(digits[4:6]), int(digits[6:8]))
    except ValueError:
        return False
    base = digits[:11]
    return digits[11] == luhn_digit(base) and digits[12] == verhoeff_digit(base)
