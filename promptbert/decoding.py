"""Logits -> entities with character offsets, following the Hugging Face pipeline's rules.

The HF token-classification pipeline cannot take a text pair, so this module
re-implements its aggregation (``simple``/``first``/``average``/``max``) over the
tokens of segment B only, and its entity grouping (``group_entities``).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from .errors import InputError

STRATEGIES = ("simple", "first", "average", "max")


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis in float32 (fp16 logits are cast first)."""
    x = logits.astype(np.float32, copy=False)
    x = x - x.max(axis=-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=-1, keepdims=True)


def check_strategy(strategy: str) -> str:
    if strategy not in STRATEGIES:
        raise InputError(f"aggregation_strategy: {strategy!r} is not one of {', '.join(STRATEGIES)}")
    return strategy


def aggregate_word(rows: np.ndarray, strategy: str) -> tuple[int, float]:
    """Label id and score of one word from its pieces' probability rows (HF ``aggregate_word``)."""
    if strategy == "first" or strategy == "simple" or len(rows) == 1:
        probs = rows[0]
    elif strategy == "average":
        probs = rows.mean(axis=0)
    elif strategy == "max":
        probs = rows[int(rows.max(axis=1).argmax())]
    else:
        raise InputError(f"aggregation_strategy: unknown {strategy!r}")
    idx = int(probs.argmax())
    return idx, float(probs[idx])


@functools.cache
def _tag(label: str) -> tuple[str, str]:
    if label.startswith("B-"):
        return "B", label[2:]
    if label.startswith("I-"):
        return "I", label[2:]
    return "I", label  # O groups with O, as in HF


def group_units(units: list[tuple[str, float, int, int]]) -> list[tuple[str, float, int, int]]:
    """Merge adjacent units (label, score, start, end) into entities, HF ``group_entities`` rules.

    A unit joins the previous group when it has the same type and is not ``B-``;
    the group's score is the mean of its units' scores.
    """
    groups: list[tuple[str, float, int, int]] = []
    current: list[tuple[str, float, int, int]] = []

    def flush() -> None:
        if current:
            _, etype = _tag(current[0][0])
            score = math.fsum(u[1] for u in current) / len(current)  # the mean, without np.mean's ~5 µs a call
            groups.append((etype, score, current[0][2], current[-1][3]))
            current.clear()

    for unit in units:
        bi, etype = _tag(unit[0])
        if current and etype == _tag(current[-1][0])[1] and bi != "B":
            current.append(unit)
        else:
            flush()
            current.append(unit)
    flush()
    return groups


def entities_from_groups(
    text: str,
    groups: list[tuple[str, float, int, int]],
    min_score: float = 0.0,
    entity_types: set[str] | None = None,
) -> list[dict[str, Any]]:
    """Pipeline-shaped dicts; ``word`` is ``text[start:end]`` (faithful even with an uncased model)."""
    out = []
    for etype, score, start, end in groups:
        if etype == "O" or score < min_score:
            continue
        if entity_types is not None and etype not in entity_types:
            continue
        out.append({"entity_group": etype, "score": float(score), "word": text[start:end], "start": int(start), "end": int(end)})
    return out
