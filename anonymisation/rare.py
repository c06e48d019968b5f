"""Rare concepts: concepts used by fewer than k persons are generalised to an ancestor or removed.

A concept is *rare* when fewer than ``threshold`` distinct persons have a row with it. Rows whose
concept is 0 (or null) are unmapped: their rarity is judged on the source value column instead (when
one is given), and a rare unmapped row is removed, since there is no ancestor to climb to. Without a
source column, concept 0 is judged as one concept and, if rare, removed.

A rare concept climbs CONCEPT_ANCESTOR (never level 0, the concept itself) to the nearest ancestor
that is a standard concept (``standard_concept == "S"``) of the same domain. Candidates are ordered by
``min_levels_of_separation``, then by the most persons (rolled-up count, below), then by the smallest
id. The *rolled-up* count of an ancestor is the number of distinct persons having a row whose concept
is the ancestor or one of its descendants; a candidate whose rolled-up count is below the threshold is
never used.

The rolled-up count is only an upper bound of what the ancestor will hold in the output: descendants
that are not rare keep their own concept and do not add to the ancestor, and a rare concept may go to
another ancestor. So the choice is a fixpoint: every rare concept starts at its first candidate. A
rare concept chosen as the ancestor of another rare concept keeps its own rows (they pool with the
rows moved to it); any other rare concept moves its rows to its current candidate. The output count
of every chosen ancestor is computed, and every rare concept pointing at an ancestor below the
threshold moves on to its next candidate; this repeats until every chosen ancestor reaches the
threshold. A rare concept out of candidates (and not kept as a pool) is removed. Pointers only move
forward, so the loop ends (at most once per candidate), and every concept left in the output has at
least ``threshold`` persons: generalising never creates a new rare concept.

Unmapped rows with a null source value are judged together, as one value. Persons are counted
distinct and non-null. Each round is a few joins and group-bys over distinct (concept, person) pairs; nothing loops over rows.
The rows whose concept was replaced are flagged in the boolean column ``_generalised`` (``GENERALISED``)
so the caller can null their source values; the caller drops the column.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

GENERALISED = "_generalised"

_C = "_rare_concept"
_P = "_rare_person"
_A = "_rare_ancestor"
_L = "_rare_level"
_N = "_rare_n"
_R = "_rare_rank"


@dataclass
class RareResult:
    """Outcome of ``generalise_rare_concepts``; ``table`` carries the extra boolean column ``_generalised``."""

    table: pl.DataFrame  # the rows kept, concept column possibly replaced by an ancestor
    generalised_rows: int  # rows whose concept was replaced by an ancestor
    removed_rows: int  # rows removed because no ancestor reaches the threshold (or unmapped and rare)
    generalised_concepts: dict[int, int] = field(default_factory=dict)  # rare concept -> ancestor chosen
    removed_concepts: int = 0  # rare concept ids removed (concept 0 included when judged as a concept)
    removed_source_values: int = 0  # rare source values of unmapped rows removed (with ``source_col``)
    kept_rare_concepts: int = 0  # rare concepts kept as themselves: rare descendants moved to them
    rounds: int = 0  # fixpoint rounds used to choose the ancestors


def _persons(expr_person: str) -> pl.Expr:
    return pl.col(expr_person).drop_nulls().n_unique().alias(_N)


def _candidates(
    pairs: pl.DataFrame,
    rare: pl.Series,
    ancestor: pl.DataFrame,
    concept: pl.DataFrame,
    threshold: int,
) -> pl.DataFrame:
    """Candidate ancestors of each rare concept, ranked 0.. (columns _C, _A, _R)."""
    anc = (
        ancestor.select(
            pl.col("ancestor_concept_id").cast(pl.Int64).alias(_A),
            pl.col("descendant_concept_id").cast(pl.Int64).alias(_C),
            pl.col("min_levels_of_separation").cast(pl.Int64).alias(_L),
        )
        .filter((pl.col(_L) > 0) & (pl.col(_A) != pl.col(_C)))
        .group_by(_A, _C)
        .agg(pl.col(_L).min())
    )
    info = concept.select(
        pl.col("concept_id").cast(pl.Int64),
        pl.col("domain_id").cast(pl.String),
        pl.col("standard_concept").cast(pl.String),
    ).unique("concept_id", keep="first")
    cand = (
        anc.filter(pl.col(_C).is_in(rare.implode()))
        .join(info.select(pl.col("concept_id").alias(_C), pl.col("domain_id").alias("_d")), on=_C)
        .join(
            info.filter(pl.col("standard_concept") == "S").select(
                pl.col("concept_id").alias(_A), pl.col("domain_id").alias("_ad")
            ),
            on=_A,
        )
        .filter(pl.col("_d") == pl.col("_ad"))
        .select(_C, _A, _L)
    )
    if cand.is_empty():
        return cand.with_columns(pl.lit(0, pl.Int64).alias(_R))
    # rolled-up persons of each candidate ancestor: its own rows and its descendants' rows in df
    targets = cand.select(_A).unique()
    below = anc.join(targets, on=_A).select(_A, _C)
    below = pl.concat([below, targets.with_columns(pl.col(_A).alias(_C))]).unique()
    rolled = below.join(pairs, on=_C).group_by(_A).agg(_persons(_P))
    return (
        cand.join(rolled, on=_A)
        .filter(pl.col(_N) >= threshold)
        .sort(_C, _L, _N, _A, descending=[False, False, True, False])
        .with_columns((pl.int_range(pl.len()).over(_C)).cast(pl.Int64).alias(_R))
        .select(_C, _A, _R)
    )


def _choose(
    pairs: pl.DataFrame, rare: pl.Series, cand: pl.DataFrame, threshold: int
) -> tuple[pl.DataFrame, pl.Series, int]:
    """Fixpoint: rare concept -> ancestor such that every concept of the output has >= threshold persons.

    Returns the moves (_C -> _A), the rare concepts kept as themselves (chosen as an ancestor by another
    rare concept, so their own rows stay) and the number of rounds.
    """
    ptr = cand.filter(pl.col(_R) == 0).select(_C, _R)
    rounds = 0
    while True:
        rounds += 1
        assign = cand.join(ptr, on=[_C, _R]).select(_C, _A)
        targets = assign.get_column(_A).unique()
        absorbing = targets.filter(targets.is_in(rare.implode())).rename(_C)
        moves = assign.filter(~pl.col(_C).is_in(absorbing.implode()))
        if assign.is_empty():
            return moves, absorbing, rounds
        native = pairs.filter(pl.col(_C).is_in(targets.implode()))  # a rare target keeps its rows
        moved = pairs.join(moves, on=_C).select(pl.col(_A).alias(_C), _P)
        counts = pl.concat([native, moved]).group_by(_C).agg(_persons(_P))
        failing = counts.filter(pl.col(_N) < threshold).get_column(_C)
        if failing.is_empty():
            return moves, absorbing, rounds
        advance = assign.filter(pl.col(_A).is_in(failing.implode())).get_column(_C)
        ptr = ptr.with_columns(
            pl.when(pl.col(_C).is_in(advance.implode())).then(pl.col(_R) + 1).otherwise(pl.col(_R))
        ).join(cand.select(_C, _R), on=[_C, _R], how="semi")


def generalise_rare_concepts(
    df: pl.DataFrame,
    concept_col: str,
    threshold: int,
    ancestor: pl.DataFrame | None,
    concept: pl.DataFrame | None,
    *,
    person_col: str = "person_id",
    source_col: str | None = None,
) -> RareResult:
    """Generalise concepts of ``concept_col`` used by fewer than ``threshold`` persons, or remove their rows.

    ``ancestor`` is CONCEPT_ANCESTOR (ancestor_concept_id, descendant_concept_id,
    min_levels_of_separation); ``concept`` is CONCEPT (concept_id, domain_id, standard_concept). When
    either is None, rare concepts are removed. Row order of the kept rows is preserved; the returned
    table has the extra boolean column ``_generalised`` (see the module docstring for the rules).
    """
    dtype = df.schema[concept_col]
    cid = pl.col(concept_col).cast(pl.Int64)
    unmapped = cid.is_null() | (cid == 0)
    if source_col is None:
        mapped_expr = pl.lit(True)
        key = cid.fill_null(0)
    else:
        mapped_expr = ~unmapped
        key = cid

    base = df.select(key.alias(_C), pl.col(person_col).alias(_P), mapped_expr.alias("_m"))
    pairs = base.filter(pl.col("_m")).select(_C, _P).unique()
    counts = pairs.group_by(_C).agg(_persons(_P))
    rare = counts.filter(pl.col(_N) < threshold).get_column(_C).sort()

    remove_source: pl.Series = pl.Series(values=[], dtype=pl.String)
    if source_col is not None:
        src = df.filter(unmapped).select(pl.col(source_col).alias("_s"), pl.col(person_col).alias(_P))
        src_counts = src.group_by("_s").agg(_persons(_P))
        remove_source = src_counts.filter(pl.col(_N) < threshold).get_column("_s")

    rounds = 0
    assign = pl.DataFrame(schema={_C: pl.Int64, _A: pl.Int64})
    kept_rare = pl.Series(_C, [], dtype=pl.Int64)
    generalisable = rare.filter(rare != 0)
    if ancestor is not None and concept is not None and generalisable.len():
        cand = _candidates(pairs, generalisable, ancestor, concept, threshold)
        assign, kept_rare, rounds = _choose(pairs, generalisable, cand, threshold)
    assign = assign.sort(_C)
    mapping = dict(zip(assign.get_column(_C).to_list(), assign.get_column(_A).to_list(), strict=True))
    settled = pl.concat([assign.get_column(_C), kept_rare])
    removed_ids = rare.filter(~rare.is_in(settled.implode()))

    is_generalised = cid.is_in(assign.get_column(_C).implode()).fill_null(False)
    is_removed = key.is_in(removed_ids.implode()).fill_null(False)
    if source_col is not None:
        is_removed = is_removed & ~unmapped
        src_rare = pl.col(source_col).is_in(remove_source.drop_nulls().implode()).fill_null(False)
        if remove_source.null_count():
            src_rare = src_rare | pl.col(source_col).is_null()
        is_removed = is_removed | (unmapped & src_rare)

    flagged = df.with_columns(is_generalised.alias(GENERALISED), is_removed.alias("_rare_removed"))
    removed_rows = int(flagged.get_column("_rare_removed").sum())
    generalised_rows = int(flagged.get_column(GENERALISED).sum())
    table = flagged.filter(~pl.col("_rare_removed")).drop("_rare_removed")
    if mapping:
        table = table.with_columns(
            pl.col(concept_col).cast(pl.Int64).replace(list(mapping), list(mapping.values())).cast(dtype)
        )
    return RareResult(
        table=table,
        generalised_rows=generalised_rows,
        removed_rows=removed_rows,
        generalised_concepts=mapping,
        removed_concepts=removed_ids.len(),
        removed_source_values=remove_source.len(),
        kept_rare_concepts=kept_rare.len(),
        rounds=rounds,
    )
