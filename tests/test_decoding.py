import numpy as np
import pytest

from promptbert.decoding import aggregate_word, entities_from_groups, group_units, softmax
from promptbert.errors import InputError


def test_softmax_casts_fp16_and_sums_to_one():
    p = softmax(np.array([[1.0, 2.0, 3.0]], dtype=np.float16))
    assert p.dtype == np.float32 and np.allclose(p.sum(-1), 1.0)


def test_group_units_follows_hf_rules():
    units = [
        ("B-PER", 0.9, 0, 4), ("I-PER", 0.7, 5, 10),  # one PER
        ("B-PER", 0.8, 11, 15),  # B- starts a new entity
        ("O", 0.99, 16, 18),
        ("I-LOC", 0.6, 19, 24),  # I- after O starts an entity (lenient, like HF)
        ("I-ORG", 0.5, 25, 28),  # a type change starts a new one
    ]
    assert group_units(units) == [
        ("PER", pytest.approx(0.8), 0, 10), ("PER", 0.8, 11, 15), ("O", 0.99, 16, 18),
        ("LOC", 0.6, 19, 24), ("ORG", 0.5, 25, 28),
    ]


def test_aggregation_strategies():
    rows = np.array([[0.1, 0.9, 0.0], [0.6, 0.0, 0.4], [0.05, 0.0, 0.95]])
    assert aggregate_word(rows, "first") == (1, pytest.approx(0.9))
    assert aggregate_word(rows, "max") == (2, pytest.approx(0.95))
    idx, score = aggregate_word(rows, "average")
    assert idx == 2 and score == pytest.approx((0 + 0.4 + 0.95) / 3)
    with pytest.raises(InputError):
        aggregate_word(rows, "mean")


def test_entities_shape_filters_and_faithful_word():
    text = "NEW YORK and Acme"
    groups = [("LOC", 0.9, 0, 8), ("O", 0.99, 9, 12), ("ORG", 0.4, 13, 17)]
    ents = entities_from_groups(text, groups)
    assert ents == [
        {"entity_group": "LOC", "score": 0.9, "word": "NEW YORK", "start": 0, "end": 8},
        {"entity_group": "ORG", "score": 0.4, "word": "Acme", "start": 13, "end": 17},
    ]
    assert type(ents[0]["score"]) is float
    assert [e["entity_group"] for e in entities_from_groups(text, groups, min_score=0.5)] == ["LOC"]
    assert [e["entity_group"] for e in entities_from_groups(text, groups, entity_types={"ORG"})] == ["ORG"]
