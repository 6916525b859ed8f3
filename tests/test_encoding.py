"""Label alignment and windows: the contract between training and serving."""

import numpy as np
import pytest

from promptbert.encoding import (
    IGNORE_INDEX,
    CallCost,
    PromptEncoder,
    batch_arrays,
    load_tokenizer,
    piece_spans,
    token_budget_batches,
)
from promptbert.errors import ConfigError


@pytest.fixture(scope="module")
def tok(tiny_base):
    return load_tokenizer(tiny_base)


def encoder(tok, prompt="you tag names", max_length=64, stride=8):
    t, specials = tok
    return PromptEncoder(t, prompt, max_length, stride, specials)


def test_prompt_is_segment_a_and_text_segment_b(tok):
    enc = encoder(tok)
    (w,) = enc.encode(["john", "visited", "washington"], [1, 0, 5])
    n_head = 1 + enc.prompt_tokens + 1
    assert w.input_ids[0] == enc.cls_id and w.input_ids[n_head - 1] == enc.sep_id and w.input_ids[-1] == enc.sep_id
    assert w.token_type_ids == [0] * n_head + [1] * (len(w.input_ids) - n_head)
    # No prompt or special token carries a label.
    assert all(lab == IGNORE_INDEX for lab in w.labels[:n_head] + w.labels[-1:])


def test_only_first_piece_of_each_word_is_labelled(tok):
    enc = encoder(tok)
    words = ["washington", "met", "mcdonald", "."]
    (w,) = enc.encode(words, [1, 0, 1, 0])
    pieces = enc.word_pieces(words)
    assert [len(p) for p in pieces] == [2, 1, 3, 1]  # real continuation pieces
    labelled = [(tw, lab) for tw, lab in zip(w.token_word, w.labels) if lab != IGNORE_INDEX]
    assert labelled == [(0, 1), (1, 0), (2, 1), (3, 0)]
    # each labelled token is the first of its word
    for i, (tw, lab) in enumerate(zip(w.token_word, w.labels)):
        if lab != IGNORE_INDEX:
            assert w.token_word[i - 1] != tw


def test_no_prompt_uses_single_segment(tok):
    enc = encoder(tok, prompt="")
    (w,) = enc.encode(["john"])
    assert w.input_ids[0] == enc.cls_id and set(w.token_type_ids) == {0}


def test_unknown_or_empty_word_still_gets_a_piece(tok):
    enc = encoder(tok)
    pieces = enc.word_pieces(["\u200b", "qqqq", "john"])
    assert pieces[0] == (enc.unk_id,) and len(pieces) == 3


class CountingTokenizer:
    """The tokenizer, counting the words it is asked to encode."""

    def __init__(self, tokenizer):
        self.tokenizer, self.words = tokenizer, 0

    def encode(self, words, **kw):
        self.words += len(words)
        return self.tokenizer.encode(words, **kw)


def test_cached_pieces_equal_the_tokenizers_and_stay_bounded(tok, monkeypatch):
    import promptbert.encoding as encoding

    monkeypatch.setattr(encoding, "PIECE_CACHE_WORDS", 6)
    enc = encoder(tok)
    raw = enc.tokenizer
    enc.tokenizer = counting = CountingTokenizer(raw)

    def alone(word):  # what the tokenizer gives the word with no neighbours
        return tuple(raw.encode([word], is_pretokenized=True, add_special_tokens=False).ids) or (enc.unk_id,)

    texts = [["washington", "met", "mcdonald", "."], ["met", "john", "in", "washington", "qqqq", "\u200b"],
             ["a", "b", "c", "d", "e", "f", "g", "a"], ["washington", "met", "washington"]]
    for words in texts:
        assert enc.word_pieces(words) == [alone(w) for w in words]
        assert len(enc._pieces) <= max(6, len(set(words)))
    asked = counting.words
    assert enc.word_pieces(["washington", "met"]) == [alone("washington"), alone("met")]
    assert counting.words == asked  # both were cached by the last text: no tokenizer call


def test_pieces_do_not_depend_on_the_cache_after_reading_it(tok):
    """The service tags long texts in a thread while the event loop tags others: the cache may be
    cleared between a call's lookups and its answer (simulated here from inside the tokenizer)."""
    enc = encoder(tok)
    raw = enc.tokenizer
    want = enc.word_pieces(["washington", "met", "john"])

    class ClearingTokenizer:
        def encode(self, words, **kw):
            enc._pieces.clear()
            return raw.encode(words, **kw)

    enc._pieces.pop("john")
    enc.tokenizer = ClearingTokenizer()
    assert enc.word_pieces(["washington", "met", "john"]) == want


def test_piece_spans_cover_each_owned_word_in_model_row_coordinates():
    token_word = [-1, -1, -1, 0, 0, 1, 2, 2, 2, -1]  # a 3-token head, 3 words, [SEP]
    assert piece_spans(token_word, 3, 0, 3) == {0: (0, 2), 1: (2, 3), 2: (3, 6)}
    assert piece_spans(token_word, 3, 1, 2) == {1: (2, 3)}
    assert piece_spans(token_word, 0, 2, 3) == {2: (6, 9)}


@pytest.mark.parametrize("n_words", [1, 40, 137, 500])
def test_long_sentence_windows_own_every_word_once(tok, n_words):
    enc = encoder(tok, max_length=48, stride=8)
    words = (["washington", "met", "the", "mcdonald", "team", "."] * 100)[:n_words]
    windows = enc.encode(words, [0] * n_words)
    owned = []
    for w in windows:
        assert len(w.input_ids) <= 48
        assert w.input_ids[: len(enc.head_ids)] == enc.head_ids  # the prompt is never truncated
        assert w.word_start <= w.own_start <= w.own_end <= w.word_end
        owned.extend(range(w.own_start, w.own_end))
        covered = {tw for tw in w.token_word if tw >= 0}
        assert covered == set(range(w.word_start, w.word_end))
    assert owned == list(range(n_words))
    if n_words > 40:
        assert len(windows) > 1 and all(a.word_end > b.word_start for a, b in zip(windows, windows[1:]))


def test_prompt_leaving_no_room_is_an_error(tok):
    with pytest.raises(ConfigError, match="prompt: renders to"):
        encoder(tok, prompt=" ".join(["names"] * 40), max_length=64)


def test_batch_arrays_pad_and_mask(tok):
    enc = encoder(tok)
    a = enc.encode(["john"])[0]
    b = enc.encode(["john", "met", "mary", "jones"])[0]
    arr = batch_arrays([a, b], enc.pad_id)
    assert arr["input_ids"].dtype == np.int64 and arr["input_ids"].shape == (2, len(b.input_ids))
    assert arr["attention_mask"][0].sum() == len(a.input_ids)
    assert (arr["input_ids"][0, len(a.input_ids):] == enc.pad_id).all()
    assert arr["token_type_ids"][1].tolist() == b.token_type_ids


@pytest.mark.parametrize("cost", [None, CallCost(), CallCost(0.0, 0.0), CallCost(1000.0, 0.0)])
def test_token_budget_batches_cover_everything_and_respect_budget(cost):
    lengths = [5, 50, 7, 49, 6, 100, 8, 3, 3, 60]
    batches = token_budget_batches(lengths, max_tokens=100, max_items=3, cost=cost)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        assert len(b) <= 3
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 100


def _modelled(batches, lengths, cost):
    return sum(cost.per_call + len(b) * (cost.per_row + max(lengths[i] for i in b)) for b in batches)


def _cheapest_by_brute_force(lengths, cost, max_tokens):
    """Every way to cut the sorted order into consecutive calls."""
    s = sorted(lengths)
    best = float("inf")
    for mask in range(2 ** (len(s) - 1)):
        cuts = [0, *[i + 1 for i in range(len(s) - 1) if mask >> i & 1], len(s)]
        calls = [s[a:b] for a, b in zip(cuts, cuts[1:])]
        if all(len(c) == 1 or len(c) * c[-1] <= max_tokens for c in calls):
            best = min(best, sum(cost.per_call + len(c) * (cost.per_row + c[-1]) for c in calls))
    return best


@pytest.mark.parametrize("seed", range(6))
def test_token_budget_batches_find_the_cheapest_cut(seed):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 60, size=9).tolist()
    cost = CallCost(per_call=float(rng.uniform(0, 30)), per_row=float(rng.uniform(0, 5)))
    batches = token_budget_batches(lengths, max_tokens=150, cost=cost)
    assert _modelled(batches, lengths, cost) == pytest.approx(_cheapest_by_brute_force(lengths, cost, 150))


def test_token_budget_batches_trade_calls_against_padding():
    lengths = [10, 12, 14, 16, 30, 40, 44]
    assert token_budget_batches(lengths, max_tokens=10_000, cost=None) == [list(range(7))]
    # cheap calls: short texts are not padded to long ones
    assert token_budget_batches(lengths, max_tokens=10_000, cost=CallCost(6.5, 2.1)) == [[0, 1], [2, 3], [4], [5, 6]]
    # calls free: no padding at all; calls dear: one call
    assert token_budget_batches(lengths, max_tokens=10_000, cost=CallCost(0.0, 0.0)) == [[i] for i in range(7)]
    assert token_budget_batches(lengths, max_tokens=10_000, cost=CallCost(1000.0, 2.1)) == [list(range(7))]
    assert token_budget_batches([], max_tokens=100) == []


def test_call_cost_rejects_negative_costs():
    with pytest.raises(ConfigError):
        CallCost(per_call=-1.0)


def test_a_padding_tokenizer_does_not_leak_pads_into_the_prompt(tiny_base):
    """Regression: the saved tokenizer pads to a fixed length; the encoder must ignore that (train/serve skew)."""
    from tokenizers import Tokenizer

    raw = Tokenizer.from_file(str(tiny_base / "tokenizer.json"))
    assert raw.padding is not None and raw.padding["length"] == 24  # the trap is really there
    t, specials = load_tokenizer(tiny_base)
    padded = PromptEncoder(raw, "you tag names", 64, 8, specials)
    plain = PromptEncoder(t, "you tag names", 64, 8, specials)
    assert padded.prompt_tokens == plain.prompt_tokens == 3
    words = ["john"] * 40  # longer than the tokenizer's truncation length
    assert padded.encode(words) == plain.encode(words)
    assert all(len(p) == 1 for p in padded.word_pieces(words))
