"""Document context: a sentence tagged with its neighbours' words around it, unlabelled and unowned."""

import numpy as np
import pytest

from promptbert import constants as C
from promptbert.data import Sentence, document_contexts
from promptbert.encoding import IGNORE_INDEX, PromptEncoder, load_tokenizer
from promptbert.errors import ConfigError
from promptbert.labels import LabelMap
from promptbert.pipeline import TaggingPipeline


def _sent(text: str, doc: int, source: str = "a.txt") -> Sentence:
    words = tuple(text.split())
    return Sentence(words, ("O",) * len(words), source, 0, doc)


def test_neighbours_come_from_the_same_document():
    sents = [_sent("john met mary", 0), _sent("in paris", 0), _sent("then left", 0), _sent("new doc", 1),
             _sent("other file", 1, "b.txt")]
    ctx = document_contexts(sents, 3)
    assert ctx[0] == ((), ("in", "paris", "then"))
    assert ctx[1] == (("john", "met", "mary"), ("then", "left"))
    assert ctx[2] == (("mary", "in", "paris"), ())
    assert ctx[3] == ((), ()) and ctx[4] == ((), ())
    assert document_contexts(sents, 0)[1] == ((), ())


@pytest.fixture()
def encoder(tiny_base):
    tok, specials = load_tokenizer(tiny_base)
    return PromptEncoder(tok, "tag names", 40, 4, specials, context_tokens=3)


def test_context_sits_around_the_sentence_unlabelled(encoder):
    words = ["john", "met", "mary"]
    (plain,) = encoder.encode(words, [1, 0, 1])
    (w,) = encoder.encode(words, [1, 0, 1], context=(["a", "b", "in", "paris"], ["then", "left", "paris", "x"]))
    head = len(encoder.head_ids)
    left = [p for x in ["b", "in", "paris"] for p in encoder.word_pieces([x])[0]][-3:]
    assert w.input_ids[head : head + len(left)] == left  # at most context_tokens tokens on each side
    assert len(w.input_ids) - len(plain.input_ids) <= 6
    # The sentence's own tokens, labels and ownership are unchanged; context tokens are no word and carry no label.
    own = [t for t, tw in zip(w.input_ids, w.token_word) if tw >= 0]
    assert own == [t for t, tw in zip(plain.input_ids, plain.token_word) if tw >= 0]
    assert [lab for lab in w.labels if lab != IGNORE_INDEX] == [1, 0, 1]
    assert (w.own_start, w.own_end) == (0, 3)
    # An encoder without context_tokens ignores it.
    plain_enc = PromptEncoder(encoder.tokenizer, "tag names", 40, 4, {})
    assert plain_enc.encode(words, context=(["a"], ["b"]))[0].input_ids == plain.input_ids


def test_a_sentence_over_one_window_gets_no_context(encoder):
    words = ["john"] * (encoder.text_budget + 5)
    windows = encoder.encode(words, context=(["mary"], ["paris"]))
    assert len(windows) > 1
    assert windows == encoder.encode(words)


def test_the_text_path_gives_each_sentence_its_neighbours(encoder):
    seen = []

    def logits_fn(batch):
        seen.append(batch["input_ids"])
        return np.zeros((*batch["input_ids"].shape, 3), dtype=np.float32)

    labels = LabelMap.from_types(("PER",))
    pipe = TaggingPipeline(encoder, labels, logits_fn, head_cached=True)
    pipe.entities(["john met mary . paris is big ."])
    rows = [[int(t) for t in r if t != encoder.pad_id] for b in seen for r in b]
    skip = len(encoder.head_ids)
    alone = [w for w in encoder.encode("john met mary .".split())[0].input_ids[skip:]]
    paris = list(encoder.word_pieces(["paris"])[0])
    # the first sentence's row: its own tokens, then the next sentence's first pieces, then [SEP]
    (row,) = [r for r in rows if r[: len(alone) - 1] == alone[:-1]]
    assert row[len(alone) - 1 : len(alone) - 1 + len(paris)] == paris and row[-1] == encoder.sep_id
    (second,) = [r for r in rows if r is not row]
    assert len(second) > len(encoder.encode("paris is big .".split())[0].input_ids) - skip  # left context before it
    seen.clear()
    TaggingPipeline(encoder, labels, logits_fn, head_cached=True, split_sentences=False).entities(["john met mary . paris"])
    assert len(seen) == 1 and seen[0].shape[0] == 1


def test_context_is_trained_recorded_and_served(tiny_base, tiny_corpus, tiny_prompt, tmp_path):
    from promptbert.export.config import ExportConfig
    from promptbert.export.onnx_export import export
    from promptbert.runtime import Artifact
    from promptbert.training.train import train

    from .conftest import tiny_train_config

    model = tmp_path / "model"
    manifest = train(tiny_train_config(tiny_base, tiny_corpus, tiny_prompt, model, context_tokens=8))
    assert manifest.encoding.context_tokens == 8
    export(model, tmp_path / "art", ExportConfig(variants=("fp32",)))
    art = Artifact(tmp_path / "art")
    assert art.encoder().context_tokens == 8
    with pytest.raises(ConfigError, match="context_tokens: must be in"):
        tiny_train_config(tiny_base, tiny_corpus, tiny_prompt, model, context_tokens=-1)
    assert C.MANIFEST
