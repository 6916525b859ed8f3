"""Word shapes: the casing an uncased encoder never sees, as one small id per text token.

An uncased tokenizer gives "apple" and "Apple", "us" and "US", "may" and "May" the same
pieces. A model with ``casing`` on adds a learned embedding of each word's shape to its
text tokens' input embeddings (training/cached.py), the way NER systems used word shapes
before cased transformers. The ids are computed here, from the words, for training,
export and serving alike; the ONNX graph takes them as its ``word_shape`` input.

Ids: 0 for tokens that are no word (the prompt head, ``[SEP]``, padding); a word's id is
its shape, plus ``len(SHAPES)`` when it is the first word of its sentence (where a capital
says little). A sentence without a single capital letter (chat, queries, text lowercased
on the way) carries no casing at all: every word gets ``CASELESS``, so that "lower" in a
cased sentence is not confused with text that has no case. Every piece of a word carries
the word's id.
"""

from __future__ import annotations

from collections.abc import Sequence

from tokenizers import Tokenizer

# Recorded in the manifest: a model trained on one scheme must be served with the same one.
CASING_SCHEME = "word-shape-v2"
SHAPES = ("lower", "title", "upper", "mixed", "digits", "punct", "uncased")
CASELESS = 1 + 2 * len(SHAPES)  # every word of a sentence that has no capital letter
SHAPE_VOCAB = CASELESS + 1
_CAPITALISED = frozenset(1 + SHAPES.index(s) for s in ("title", "upper", "mixed"))
# Not on/off: YAML reads those as booleans.
CASING_MODES = ("auto", "always", "never")
# Words whose shape the encoder keeps (a dict lookup costs less than the checks below).
SHAPE_CACHE_WORDS = 100_000


def word_shape(word: str) -> int:
    """The shape id (1..len(SHAPES)) of a word that is not the first of its sentence."""
    cased = [c for c in word if c.isalpha() and c.lower() != c.upper()]
    if not cased:
        if any(c.isalpha() for c in word):
            return 1 + SHAPES.index("uncased")  # letters without case (CJK, Arabic, ...)
        if any(c.isdigit() for c in word):
            return 1 + SHAPES.index("digits")
        return 1 + SHAPES.index("punct")
    if all(c.islower() for c in cased):
        return 1 + SHAPES.index("lower")
    if all(c.isupper() for c in cased):
        return 1 + SHAPES.index("upper" if len(cased) > 1 else "title")  # "I", "A": a capital, not an acronym
    if cased[0].isupper() and all(c.islower() for c in cased[1:]):
        return 1 + SHAPES.index("title")
    return 1 + SHAPES.index("mixed")  # McDonald, iPhone, eBay


def first_word(shape: int) -> int:
    """The id of a shape as the first word of its sentence."""
    return shape + len(SHAPES)


def in_sentence(shapes: list[int]) -> list[int]:
    """A sentence's ids from its words' shapes: the first word marked, or all CASELESS without a capital."""
    if not any(s in _CAPITALISED for s in shapes):
        return [CASELESS] * len(shapes)
    return [first_word(shapes[0]), *shapes[1:]]


def shape_ids(words: Sequence[str]) -> list[int]:
    """One id per word of a sentence."""
    return in_sentence([word_shape(w) for w in words])


def is_uncased(tokenizer: Tokenizer) -> bool:
    """Whether the tokenizer folds case (its normalizer lowercases): then casing is lost unless the model is
    given it. Asked of the normalizer rather than of token ids, which a small vocabulary may map all to [UNK]."""
    norm = tokenizer.normalizer
    probe = "Apple US May"
    return norm is not None and norm.normalize_str(probe) == norm.normalize_str(probe.lower())


def casing_scheme(mode: str, tokenizer: Tokenizer) -> str:
    """What a training's ``casing`` setting means for this tokenizer: the scheme, or "" for none.
    ``auto`` turns it on for uncased tokenizers only: a cased one already sees case."""
    if mode == "always" or (mode == "auto" and is_uncased(tokenizer)):
        return CASING_SCHEME
    return ""
