"""Keyed pseudonyms and date offsets: HMAC-SHA256 under the project key, domain-separated.

Identity of a patient: the national identifier (Luxembourg matricule) where present, so that the
same patient at two hospitals gets one person_id; otherwise the site-local id, in its own namespace.
Work is vectorised: distinct identities are pseudonymised once and joined back.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import polars as pl

MASK63 = (1 << 63) - 1


class CollisionError(Exception):
    """Two different identities got the same 63-bit id: never merge people silently."""


def identity_expr(site: str, matricule: str = "matricule", local_id: str = "patient_id") -> pl.Expr:
    """``nat:LU:<digits>`` when the matricule is present, else ``site:<site>:<local id>``."""
    digits = pl.col(matricule).cast(pl.String).str.replace_all(r"\D", "")
    return (
        pl.when(digits.is_not_null() & (digits.str.len_chars() > 0))
        .then(pl.lit("nat:LU:") + digits)
        .otherwise(pl.lit(f"site:{site}:") + pl.col(local_id).cast(pl.String))
    )


class _HmacSha256:
    """HMAC-SHA256 (RFC 2104) with the keyed inner and outer states computed once: each message then
    costs two hash copies, 2.5x faster than ``hmac.new`` per value (millions of ids per site)."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        if len(key) > 64:
            key = hashlib.sha256(key).digest()
        key = key.ljust(64, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))

    def __repr__(self) -> str:  # never show key material
        return "_HmacSha256(<key hidden>)"

    def digest(self, msg: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(msg)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()

    def digest_many(self, prefix: bytes, values: Iterable[str]) -> list[bytes]:
        """The MAC of ``prefix + value`` for each value (the prefix hashed once)."""
        inner = self._inner.copy()
        inner.update(prefix)
        new_inner, new_outer = inner.copy, self._outer.copy
        out: list[bytes] = []
        append = out.append
        for v in values:
            i = new_inner()
            i.update(v.encode())
            o = new_outer()
            o.update(i.digest())
            append(o.digest())
        return out

    def id63_many(self, prefix: bytes, values: list[str]) -> list[int]:
        """The first 63 bits of the MAC of ``prefix + value`` for each value (the prefix hashed once).
        digest_many's loop with the conversion inside: the pseudo stage's hottest loop (millions of ids
        a site); building it on digest_many and converting in a second pass measured 5-10% slower."""
        inner = self._inner.copy()
        inner.update(prefix)
        new_inner, new_outer, from_bytes = inner.copy, self._outer.copy, int.from_bytes
        out: list[int] = []
        append = out.append
        for v in values:
            i = new_inner()
            i.update(v.encode())
            o = new_outer()
            o.update(i.digest())
            append(from_bytes(o.digest()[:8], "big") & MASK63)
        return out


_MACS: dict[bytes, _HmacSha256] = {}  # by a hash of the key: no key material kept as a dict key


def _mac(secret: bytes) -> _HmacSha256:
    ref = hashlib.sha256(b"ds4h-mac-cache\x1f" + secret).digest()
    mac = _MACS.get(ref)
    if mac is None:
        if len(_MACS) > 16:
            _MACS.clear()
        mac = _MACS[ref] = _HmacSha256(secret)
    return mac


def digest(secret: bytes, domain: str, value: str) -> bytes:
    return _mac(secret).digest(domain.encode() + b"\x1f" + value.encode())


def id63(secret: bytes, domain: str, value: str) -> int:
    """A non-negative 63-bit integer from the HMAC (fits int64)."""
    return int.from_bytes(digest(secret, domain, value)[:8], "big") & MASK63


def id63_many(secret: bytes, domain: str, values: list[str]) -> list[int]:
    """``id63`` of each value: the key's inner state with the domain prefix hashed once, copied per value
    (0.81 instead of 0.91 us a value; same digests)."""
    return _mac(secret).id63_many(domain.encode() + b"\x1f", values)


def digest_many(secret: bytes, domain: str, values: Iterable[str]) -> list[bytes]:
    """``digest`` of each value, the key looked up and the domain prefix hashed once: a per-value
    ``digest`` call costs ~11 us (the key cache hashes the secret each time), this ~1.3 us."""
    return _mac(secret).digest_many(domain.encode() + b"\x1f", values)


def token_many(secret: bytes, domain: str, values: Iterable[str], length: int = 20) -> list[str]:
    """``token`` of each value (same strings)."""
    return [d.hex()[:length] for d in digest_many(secret, domain, values)]


def offset_days_many(secret: bytes, values: Iterable[str], max_days: int) -> list[int]:
    """``offset_days`` of each value (same offsets)."""
    return [_offset(d, max_days) for d in digest_many(secret, "date-shift", values)]


def _offset(d: bytes, max_days: int) -> int:
    n = int.from_bytes(d[:8], "big") % (2 * max_days)
    return n - max_days if n < max_days else n - max_days + 1


def token(secret: bytes, domain: str, value: str, length: int = 20) -> str:
    """A textual pseudonym (hex), for *_source_value columns."""
    return digest(secret, domain, value).hex()[:length]


def offset_days(secret: bytes, value: str, max_days: int) -> int:
    """A per-identity date offset in [-max_days, -1] ∪ [1, max_days], never 0."""
    return _offset(digest(secret, "date-shift", value), max_days)


def id63_checked(secret: bytes, domain: str, values: list[str]) -> list[int]:
    """``id63`` of each of the distinct ``values``; raise CollisionError (naming the domain, never a
    value) if two of them share an id: two rows must never be merged silently."""
    ids = id63_many(secret, domain, values)
    if len(set(ids)) != len(set(values)):
        raise CollisionError(
            f"pseudonym collision in domain {domain!r}: two different source ids got the same 63-bit id; "
            "nothing was merged. Report this and re-run with a new project key."
        )
    return ids


def person_map(identities: pl.DataFrame, secret: bytes, max_shift: int) -> pl.DataFrame:
    """From rows (site, identity), the pseudonymous person_id, textual pseudonym and date offset.

    A collision names the two sites whose identities share an id.
    """
    distinct = identities.select("identity", "site").unique(subset="identity", keep="first").sort("identity")
    ident = distinct["identity"].to_list()
    out = distinct.with_columns(
        pl.Series("person_id", id63_many(secret, "person", ident), dtype=pl.Int64),
        pl.Series("person_source_value", token_many(secret, "person-source", ident), dtype=pl.String),
        pl.Series("date_offset", offset_days_many(secret, ident, max_shift), dtype=pl.Int32),
    )
    dup = out.filter(pl.col("person_id").is_duplicated()).sort("person_id")
    if dup.height:
        sites = sorted(set(dup["site"].to_list()))
        raise CollisionError(
            f"person_id collision: two different patients (sites {' and '.join(sites)}) got the same "
            "63-bit pseudonym; nothing was merged. Report this and re-run with a new project key."
        )
    return out.drop("site")
