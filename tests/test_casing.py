"""The casing signal: word shapes computed in the core, learnt in training, fed to the ONNX graph and served."""

import json
import shutil

import numpy as np
import pytest

from promptbert import constants as C
from promptbert.casing import CASELESS, CASING_SCHEME, SHAPES, casing_scheme, is_uncased, shape_ids, word_shape
from promptbert.encoding import PromptEncoder, batch_arrays, load_tokenizer
from promptbert.errors import ArtifactError, ConfigError
from promptbert.runtime import Artifact, make_session, ort_logits_fn
from promptbert.tagger import Tagger

LOWER, TITLE, UPPER, MIXED, DIGITS, PUNCT, UNCASED = range(1, 1 + len(SHAPES))


def test_word_shapes():
    assert [word_shape(w) for w in ("apple", "Apple", "US", "U.S.", "I", "McDonald", "iPhone")] == [
        LOWER, TITLE, UPPER, UPPER, TITLE, MIXED, MIXED]
    assert [word_shape(w) for w in ("1996", "3.5", ",", "--", "東京", "Zürich", "ÉCOLE")] == [
        DIGITS, DIGITS, PUNCT, PUNCT, UNCASED, TITLE, UPPER]
    # The first word of a sentence has ids of its own: its capital says little.
    assert shape_ids(["Apple", "bought", "Apple"]) == [TITLE + len(SHAPES), LOWER, TITLE]
    assert shape_ids(["we", "met", "IBM"]) == [LOWER + len(SHAPES), LOWER, UPPER]
    # A sentence without a capital carries no casing: "lower" there says nothing about names.
    assert shape_ids(["apple", "bought", "beats", "in", "2014"]) == [CASELESS] * 5
    assert shape_ids([]) == []


def test_auto_casing_follows_the_tokenizer(tiny_base):
    from tokenizers import Tokenizer, normalizers

    tok, _ = load_tokenizer(tiny_base)
    assert is_uncased(tok) and casing_scheme("auto", tok) == CASING_SCHEME
    cased = Tokenizer.from_str(tok.to_str())
    cased.normalizer = normalizers.BertNormalizer(lowercase=False)
    assert not is_uncased(cased) and casing_scheme("auto", cased) == ""
    assert casing_scheme("always", cased) == CASING_SCHEME and casing_scheme("never", tok) == ""


def test_windows_carry_one_shape_per_token(tiny_base):
    tok, specials = load_tokenizer(tiny_base)
    enc = PromptEncoder(tok, "tag names", 64, 8, specials, casing=CASING_SCHEME)
    words = ["Paris", "met", "IBM", "yesterday"]
    (w,) = enc.encode(words)
    head = len(enc.head_ids)
    assert w.word_shape[:head] == [0] * head and w.word_shape[-1] == 0  # head and [SEP]: no word
    expected = shape_ids(words)
    assert w.word_shape[head:-1] == [expected[i] for i in w.token_word[head:-1]]
    # Training's lowercase augmentation: same pieces, the shapes of lowercase words.
    (low,) = enc.encode(words, shapes=shape_ids([x.lower() for x in words]))
    assert low.input_ids == w.input_ids and set(low.word_shape[head:-1]) == {CASELESS}
    arrays = batch_arrays([w, low], enc.pad_id, skip=head)
    assert arrays["word_shape"].shape == arrays["input_ids"].shape
    plain = PromptEncoder(tok, "tag names", 64, 8, specials)
    assert plain.encode(words)[0].word_shape is None and "word_shape" not in batch_arrays(plain.encode(words), 0)
    with pytest.raises(ArtifactError, match="unknown scheme"):
        PromptEncoder(tok, "tag names", 64, 8, specials, casing="word-shape-v9")


def test_lowercase_rate_shapes_training_sentences_as_lowercase(tiny_base):
    from promptbert.data import Sentence
    from promptbert.training.train import lowercase_shapes

    tok, specials = load_tokenizer(tiny_base)
    enc = PromptEncoder(tok, "tag names", 64, 8, specials, casing=CASING_SCHEME)
    sents = [Sentence(("John", "met", "IBM"), ("B-PER", "O", "B-ORG"))] * 200
    assert lowercase_shapes(sents, enc, 0.0, 1) == [None] * 200
    assert all(s == [CASELESS] * 3 for s in lowercase_shapes(sents, enc, 1.0, 1))
    some = lowercase_shapes(sents, enc, 0.25, 1)
    assert 25 < sum(s is not None for s in some) < 75 and some == lowercase_shapes(sents, enc, 0.25, 1)


def test_lowercase_copies_keep_every_sentence_in_its_own_case(tiny_base):
    from promptbert.data import Sentence
    from promptbert.training.train import lowercase_shapes, with_lowercase

    tok, specials = load_tokenizer(tiny_base)
    enc = PromptEncoder(tok, "tag names", 64, 8, specials, casing=CASING_SCHEME)
    sents = [Sentence((f"John{i}", "met", "IBM"), ("B-PER", "O", "B-ORG")) for i in range(100)]
    shapes = lowercase_shapes(sents, enc, 0.3, 1)
    lowered = [s for s, shape in zip(sents, shapes) if shape is not None]
    assert with_lowercase(sents, shapes, copies=False) == (sents, shapes)
    both, both_shapes = with_lowercase(sents, shapes, copies=True)
    assert both == sents + lowered and both_shapes == [None] * 100 + [[CASELESS] * 3] * len(lowered)


def test_casing_config_is_checked(tiny_base, tiny_corpus, tiny_prompt, tmp_path):
    from .conftest import tiny_train_config

    with pytest.raises(ConfigError, match="casing: must be one of"):
        tiny_train_config(tiny_base, tiny_corpus, tiny_prompt, tmp_path / "m", casing="yes")
    with pytest.raises(ConfigError, match="casing: always needs prompt_attention: isolated"):
        tiny_train_config(tiny_base, tiny_corpus, tiny_prompt, tmp_path / "m", casing="always", prompt_attention="joint")


@pytest.fixture(scope="module")
def shaped(tiny_model, tmp_path_factory):
    """The tiny model with a strong random word-shape embedding (two training steps barely move it), exported."""
    import torch
    from safetensors.torch import save_file

    from promptbert.export.config import ExportConfig
    from promptbert.export.onnx_export import export

    root = tmp_path_factory.mktemp("shaped")
    model = root / "model"
    shutil.copytree(tiny_model, model)
    weight = torch.randn(CASELESS + 1, json.loads((model / "config.json").read_text())["hidden_size"],
                         generator=torch.Generator().manual_seed(0))
    save_file({"weight": weight}, str(model / C.CASING_WEIGHTS))
    export(model, root / "artifact", ExportConfig(variants=("fp32", "int8")))
    return model, root / "artifact"


def test_a_casing_change_moves_pytorch_and_onnx_alike(shaped):
    from promptbert.training.evaluate import load_model_folder, torch_pipeline

    model_dir, art_dir = shaped
    torch_model, encoder, labels, manifest = load_model_folder(model_dir)
    assert manifest.encoding.casing == CASING_SCHEME
    art = Artifact(art_dir)
    assert art.config.encoding.casing == CASING_SCHEME
    pipe, _ = art.pipeline("fp32", "cpu")
    torch_fn = torch_pipeline(torch_model, encoder, labels).logits_fn
    head = len(encoder.head_ids)
    cased = encoder.encode("John met Mary in Paris".split())
    lower = encoder.encode("john met mary in paris".split())
    assert cased[0].input_ids == lower[0].input_ids  # an uncased tokenizer: only the shapes differ
    a, b = (batch_arrays(w, encoder.pad_id, skip=head) for w in (cased, lower))
    moved_torch = torch_fn(a) - torch_fn(b)
    moved_onnx = pipe.logits_fn(a) - pipe.logits_fn(b)
    assert np.abs(moved_torch).max() > 0.05
    np.testing.assert_allclose(moved_onnx, moved_torch, atol=1e-4)
    # The same through the public API, int8 as served on a CPU: the scores follow the casing.
    tagger = Tagger.from_pretrained(art_dir, "int8", "cpu")
    probs_cased = tagger.pipeline.piece_probs([["John", "met", "Mary"]])
    probs_lower = tagger.pipeline.piece_probs([["john", "met", "mary"]])
    assert np.abs(probs_cased[0][0] - probs_lower[0][0]).max() > 1e-3


def test_a_graph_without_the_manifests_casing_is_refused(shaped, tiny_joint_artifact):
    _, art_dir = shaped
    session = make_session(art_dir / C.VARIANT_FILES["fp32"], ["CPUExecutionProvider"])
    with pytest.raises(ArtifactError, match="casing: none"):
        ort_logits_fn(session, "isolated", "")
    assert Artifact(tiny_joint_artifact).config.encoding.casing == ""  # joint attention: auto is off


def test_casing_off_trains_and_exports_without_shapes(tiny_base, tiny_corpus, tiny_prompt, tmp_path):
    from .conftest import tiny_train_config

    from promptbert.export.config import ExportConfig
    from promptbert.export.onnx_export import export
    from promptbert.training.train import train

    model = tmp_path / "model"
    manifest = train(tiny_train_config(tiny_base, tiny_corpus, tiny_prompt, model, casing="never"))
    assert manifest.encoding.casing == "" and not (model / C.CASING_WEIGHTS).exists()
    export(model, tmp_path / "art", ExportConfig(variants=("fp32",)))
    session = make_session(tmp_path / "art" / C.VARIANT_FILES["fp32"], ["CPUExecutionProvider"])
    assert {i.name for i in session.get_inputs()} == {"input_ids", "attention_mask"}
    entities = Tagger.from_pretrained(tmp_path / "art", "fp32", "cpu").predict("John met Mary in Paris")
    assert isinstance(entities, list)


def test_fine_tuning_a_casing_model_starts_from_its_shapes(shaped, tiny_corpus, tiny_prompt, tmp_path):
    from safetensors.torch import load_file

    from promptbert.training.train import train

    from .conftest import tiny_train_config

    model_dir, _ = shaped
    out = tmp_path / "again"
    train(tiny_train_config(model_dir, tiny_corpus, tiny_prompt, out, learning_rate=1e-7))
    before = load_file(str(model_dir / C.CASING_WEIGHTS))["weight"]
    after = load_file(str(out / C.CASING_WEIGHTS))["weight"]
    assert before.abs().mean() > 0.5 and (after - before).abs().max() < 1e-3
