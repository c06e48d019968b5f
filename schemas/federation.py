"""A federated node's disclosure policy: what one site answers to a federated analysis, and at which k.

One YAML file per site, kept by the hospital (not by the coordinator)::

    site: site-a
    min_cell: 5            # no count between 1 and min_cell - 1 ever leaves the node
    allow: [count, characterise, oncology, train]
    max_rounds: 20         # the most fit requests answered per run id

``train`` covers every request of a federated model's training (features, standardise, fit, evaluate).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from schemas.config import SITE_PATTERN, _describe

Analysis = Literal["count", "characterise", "oncology", "train"]
ANALYSES: tuple[Analysis, ...] = ("count", "characterise", "oncology", "train")  # train: features/standardise/fit/evaluate


class NodePolicy(BaseModel):
    """The node's answers: which analyses (``allow``), the smallest count shown (``min_cell``) and the
    most training rounds (``max_rounds`` fit answers per run id)."""

    model_config = ConfigDict(extra="forbid")
    site: str = Field(pattern=SITE_PATTERN, description="the site this node answers for (its pseudo-zone partition)")
    min_cell: int = Field(5, ge=2, description="k: no count between 1 and k-1 ever leaves the node")
    allow: list[Analysis] = Field(default_factory=lambda: list(ANALYSES),
                                  description="the analyses answered; train covers features/standardise/fit/evaluate")
    max_rounds: int = Field(20, ge=1, description="the most fit requests answered per run id")


def parse_node_policy(data: Any, source: str = "the node policy") -> NodePolicy:
    if not isinstance(data, dict):
        raise ValueError(f"{source}: must be a YAML mapping with at least 'site'")
    try:
        return NodePolicy.model_validate(data)
    except ValidationError as e:
        unknown = f"unknown key (allowed: {', '.join(NodePolicy.model_fields)})"
        raise ValueError(f"{source}: {_describe(e, unknown)}") from None


def load_node_policy(path: Path) -> NodePolicy:
    """The policy in ``path`` (YAML); ValueError naming the file and the field on bad input."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path}: no such node policy file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not readable ({e})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ValueError(f"{path} is not valid YAML{where}") from None
    return parse_node_policy(data, str(path))
