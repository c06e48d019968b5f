from __future__ import annotations

import doctest
import random
from datetime import date

import pytest

import schemas.matricule as matricule_module
from schemas.matricule import is_valid_matricule, luhn_digit, make_matricule, verhoeff_digit


@pytest.mark.parametrize(
    ("digits", "expected"),
    [("7992739871", "3"), ("0", "0"), ("18", "2"), ("4992739871", "6"), ("123456789", "7")],
)
def test_luhn_known_answers(digits: str, expected: str) -> None:
    assert luhn_digit(digits) == expected


@pytest.mark.parametrize(
    ("digits", "expected"),
    [("236", "3"), ("12345", "1"), ("142857", "0"), ("123456789012", "0"), ("8473643095483728456789", "2")],
)
def test_verhoeff_known_answers(digits: str, expected: str) -> None:
    assert verhoeff_digit(digits) == expected


@pytest.mark.parametrize("bad", ["", "12a4", " 12", "1.5"])
def test_check_digits_reject_non_digits(bad: str) -> None:
    with pytest.raises(ValueError):
        luhn_digit(bad)
    with pytest.raises(ValueError):
        verhoeff_digit(bad)


def test_make_matricule_layout() -> None:
    m = make_matricule(date(1985, 7, 14), 123)
    assert m == "1985071412341"
    assert len(m) == 13
    assert m[:11] == "19850714123"
    assert m[11] == luhn_digit(m[:11])
    assert m[12] == verhoeff_digit(m[:11])
    assert make_matricule(date(2001, 1, 2), 7).startswith("20010102007")


@pytest.mark.parametrize("serial", [-1, 1000])
def test_make_matricule_rejects_bad_serial(serial: int) -> None:
    with pytest.raises(ValueError):
        make_matricule(date(1990, 1, 1), serial)


def test_valid_with_spaces() -> None:
    assert is_valid_matricule("1985071412341")
    assert is_valid_matricule("1985 0714 123 41")
    assert is_valid_matricule(" 1985 07 14 12341 ")


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "198507141234",  # 12 digits
        "19850714123410",  # 14 digits
        "1985O71412341",  # letter O
        "1985-07-14-123-41",
        "19850714123 4x",
    ],
)
def test_invalid_shapes(bad: str) -> None:
    assert not is_valid_matricule(bad)


def test_invalid_date_even_with_correct_check_digits() -> None:
    base = "19850230123"  # 30 February
    candidate = base + luhn_digit(base) + verhoeff_digit(base)
    assert not is_valid_matricule(candidate)
    base = "19851301123"  # month 13
    assert not is_valid_matricule(base + luhn_digit(base) + verhoeff_digit(base))


def test_each_check_digit_is_checked() -> None:
    m = make_matricule(date(1970, 12, 31), 42)
    wrong_luhn = m[:11] + str((int(m[11]) + 1) % 10) + m[12]
    wrong_verhoeff = m[:12] + str((int(m[12]) + 1) % 10)
    assert not is_valid_matricule(wrong_luhn)
    assert not is_valid_matricule(wrong_verhoeff)


def test_flipping_any_single_digit_invalidates() -> None:
    rng = random.Random(7)
    for _ in range(50):
        birth = date.fromordinal(rng.randint(date(1920, 1, 1).toordinal(), date(2024, 12, 31).toordinal()))
        m = make_matricule(birth, rng.randint(0, 999))
        assert is_valid_matricule(m)
        for pos in range(13):
            for d in "0123456789":
                if d == m[pos]:
                    continue
                flipped = m[:pos] + d + m[pos + 1 :]
                assert not is_valid_matricule(flipped), (m, flipped)


def test_adjacent_transposition_detected_by_verhoeff() -> None:
    m = make_matricule(date(1963, 4, 18), 517)
    for pos in range(12):
        if m[pos] == m[pos + 1]:
            continue
        swapped = m[:pos] + m[pos + 1] + m[pos] + m[pos + 2 :]
        assert not is_valid_matricule(swapped), (m, swapped)


def test_doctests() -> None:
    result = doctest.testmod(matricule_module)
    assert result.failed == 0
    assert result.attempted >= 2
