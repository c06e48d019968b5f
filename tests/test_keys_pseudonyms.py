from __future__ import annotations

import hashlib
import hmac
import os
import stat
from pathlib import Path

import polars as pl
import pytest

from anonymisation.keys import KeyError_, env_var, fingerprint, load_key, new_key
from anonymisation.pseudonym import CollisionError, id63, offset_days, person_map

KEY = bytes.fromhex("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff")


def test_hmac_known_answer() -> None:
    expected = hmac.new(KEY, b"person\x1fnat:LU:1980010112345", hashlib.sha256).digest()
    assert id63(KEY, "person", "nat:LU:1980010112345") == int.from_bytes(expected[:8], "big") & ((1 << 63) - 1)
    # frozen known answers: a change here changes every published pseudonym
    assert id63(KEY, "person", "nat:LU:1980010112345") == 6691965178439454517
    assert offset_days(KEY, "nat:LU:1980010112345", 180) == -29


def test_offsets_in_range_never_zero() -> None:
    offs = [offset_days(KEY, f"id{i}", 180) for i in range(2000)]
    assert all(o != 0 and -180 <= o <= 180 for o in offs)
    assert min(offs) < -170 and max(offs) > 170


def test_two_keys_give_disjoint_ids() -> None:
    ident = pl.DataFrame({"identity": [f"nat:LU:{i:013d}" for i in range(1000)], "site": ["a"] * 1000})
    a = set(person_map(ident, KEY, 180)["person_id"].to_list())
    b = set(person_map(ident, bytes(32), 180)["person_id"].to_list())
    assert len(a) == len(b) == 1000
    assert not a & b
    assert all(0 <= v < 2**63 for v in a)


def test_collision_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    import anonymisation.pseudonym as ps

    monkeypatch.setattr(ps, "id63_many", lambda _s, _d, values: [42] * len(values))
    ident = pl.DataFrame({"identity": ["nat:LU:1", "site:b:X"], "site": ["hospital-a", "hospital-b"]})
    with pytest.raises(CollisionError, match="hospital-a and hospital-b"):
        ps.person_map(ident, KEY, 180)


def test_key_file_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(KeyError_, match="ds4h keys new --project p1"):
        load_key("p1")
    k = new_key("p1")
    assert stat.S_IMODE(os.stat(k.source).st_mode) == 0o600
    assert load_key("p1").secret == k.secret
    assert k.secret.hex() not in repr(k)
    monkeypatch.setenv(env_var("p1"), KEY.hex())
    assert load_key("p1").secret == KEY
    assert load_key("p1").fingerprint == fingerprint(KEY)
    monkeypatch.setenv(env_var("p1"), "abc")
    with pytest.raises(KeyError_, match="64 hex digits"):
        load_key("p1")
    assert env_var("my-project.x") == "DS4H_KEY_MY_PROJECT_X"


def test_world_readable_key_is_refused(tmp_path: Path) -> None:
    k = new_key("p2")
    os.chmod(k.source, 0o644)
    with pytest.raises(KeyError_, match="chmod 600"):
        load_key("p2")


def test_replacing_a_key_never_writes_the_secret_to_a_readable_file(monkeypatch: pytest.MonkeyPatch) -> None:
    from anonymisation.keys import key_path

    path = key_path("p3")
    path.parent.mkdir(parents=True)
    path.write_text("00" * 32 + "\n")
    os.chmod(path, 0o644)
    monkeypatch.setattr(os, "chmod", lambda *a, **k: None)  # the file must be 0600 without any chmod
    k = new_key("p3", overwrite=True)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert path.read_text().strip() == k.secret.hex()
    assert sorted(p.name for p in path.parent.iterdir()) == ["p3.key"]  # no temporary file left


@pytest.mark.parametrize("key", [KEY, b"k", bytes(range(100))])  # shorter than, and longer than, the block
def test_batch_hmac_equals_hmac_per_value(key: bytes) -> None:
    import anonymisation.pseudonym as ps

    values = [f"site-a:{i}" for i in range(3000)] + ["", "é€ 漢字 \x00 x", "x" * 300]
    expected = [int.from_bytes(hmac.new(key, b"visit_occurrence\x1f" + v.encode(), hashlib.sha256).digest()[:8], "big")
                & ((1 << 63) - 1) for v in values]
    assert ps.id63_many(key, "visit_occurrence", values) == expected
    assert id63(KEY, "person", "nat:LU:1980010112345") == 6691965178439454517


@pytest.mark.parametrize("key", [KEY, b"k", bytes(range(100))])
def test_batched_digests_tokens_offsets_equal_the_per_value_ones(key: bytes) -> None:
    """person_map, the tokens and the release's date anchors use the batched forms: the same bytes as
    the per-value functions (and as the standard library's HMAC) for every value."""
    import anonymisation.pseudonym as ps

    values = [f"nat:LU:{19800101 * 100000 + i}" for i in range(2000)] + ["", "é€ 漢字 \x00 x", "x" * 300]
    assert ps.digest_many(key, "death-anchor", values) == [
        hmac.new(key, b"death-anchor\x1f" + v.encode(), hashlib.sha256).digest() for v in values]
    assert ps.token_many(key, "person-source", values) == [ps.token(key, "person-source", v) for v in values]
    assert ps.token_many(key, "note.x", values, 12) == [ps.token(key, "note.x", v, 12) for v in values]
    assert ps.offset_days_many(key, values, 365) == [ps.offset_days(key, v, 365) for v in values]
    frame = pl.DataFrame({"identity": values, "site": ["a"] * len(values)})
    pmap = ps.person_map(frame, key, 365)
    by_identity = {r["identity"]: r for r in pmap.iter_rows(named=True)}
    for v in values:
        assert by_identity[v]["person_id"] == ps.id63(key, "person", v)
        assert by_identity[v]["person_source_value"] == ps.token(key, "person-source", v)
        assert by_identity[v]["date_offset"] == ps.offset_days(key, v, 365)
