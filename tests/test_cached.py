"""Prompt-isolated attention: the cached-head model computes exactly what full-window BERT computes with the isolated mask."""

import numpy as np
import pytest
import torch

from promptbert.encoding import PromptEncoder, batch_arrays, load_tokenizer
from promptbert.training.cached import PromptCachedTagger, isolated_mask


@pytest.fixture(scope="module")
def setup(tiny_base):
    from transformers import AutoModelForTokenClassification

    torch.manual_seed(1)
    model = AutoModelForTokenClassification.from_pretrained(str(tiny_base), num_labels=5).eval()
    torch.nn.init.normal_(model.classifier.weight, std=3.0)  # logits of a useful size, so differences show
    tok, specials = load_tokenizer(tiny_base)
    enc = PromptEncoder(tok, "tag names as person place", 64, 8, specials)
    windows = [w for s in ("john met mary in paris .", "washingtons", "the acme corp bank") for w in enc.encode(s.split())]
    return model, enc, windows


def full_logits(model, enc, windows, mask_fn):
    b = {k: torch.from_numpy(v) for k, v in batch_arrays(windows, enc.pad_id).items()}
    with torch.inference_mode():
        return model(input_ids=b["input_ids"], token_type_ids=b["token_type_ids"], attention_mask=mask_fn(b)).logits.numpy()


def test_cached_head_equals_full_window_with_isolated_mask(setup):
    model, enc, windows = setup
    head = len(enc.head_ids)
    full = full_logits(model, enc, windows, lambda b: isolated_mask(b["token_type_ids"], b["attention_mask"], head))
    tagger = PromptCachedTagger(model, enc.head_ids, enc.text_type).eval()
    text = {k: torch.from_numpy(v) for k, v in batch_arrays(windows, enc.pad_id, skip=head).items()}
    with torch.inference_mode():
        cached = tagger(input_ids=text["input_ids"], attention_mask=text["attention_mask"]).logits.numpy()
    real = text["attention_mask"].numpy().astype(bool)
    same = np.abs(cached[real] - full[:, head:][real]).max()
    # And it is not the joint model: there the prompt sees the text, so the text's logits differ.
    joint = full_logits(model, enc, windows, lambda b: b["attention_mask"])
    differ = np.abs(joint[:, head:][real] - cached[real]).max()
    assert same < 5e-5 and differ > 100 * same


def test_word_shapes_reach_the_text_as_in_the_full_window_reference(setup):
    """With casing, the cached tagger adds the shape embedding to the text's word embeddings only; the
    full-window reference (bench/infer.py's pytorch-full) computes the same logits."""
    from promptbert.casing import CASING_SCHEME
    from promptbert.training.cached import full_window_logits_fn

    model, enc, _ = setup
    shaped = PromptEncoder(enc.tokenizer, "tag names as person place", 64, 8, {}, casing=CASING_SCHEME)
    windows = [w for s in ("John met Mary in Paris .", "the ACME corp") for w in shaped.encode(s.split())]
    head = len(shaped.head_ids)
    tagger = PromptCachedTagger(model, shaped.head_ids, shaped.text_type, CASING_SCHEME).eval()
    torch.nn.init.normal_(tagger.word_shapes.embedding.weight, std=1.0)
    text = {k: torch.from_numpy(v) for k, v in batch_arrays(windows, shaped.pad_id, skip=head).items()}
    with torch.inference_mode():
        cached = tagger(**text).logits.numpy()
        unshaped = tagger(**{**text, "word_shape": torch.zeros_like(text["word_shape"])}).logits.numpy()
    full = full_window_logits_fn(tagger)(batch_arrays(windows, shaped.pad_id))[:, head:]
    real = text["attention_mask"].numpy().astype(bool)
    assert np.abs(cached[real] - full[real]).max() < 5e-5
    assert np.abs(cached[real] - unshaped[real]).max() > 1e-2
    with pytest.raises(ValueError, match="need word_shape"):
        tagger(input_ids=text["input_ids"], attention_mask=text["attention_mask"])


def test_cached_head_uses_the_text_segment(setup):
    """Fed as segment A (type 0) the text would get different logits: the segment id is part of the cache contract."""
    model, enc, windows = setup
    head = len(enc.head_ids)
    text = {k: torch.from_numpy(v) for k, v in batch_arrays(windows, enc.pad_id, skip=head).items()}
    right = PromptCachedTagger(model, enc.head_ids, enc.text_type).eval()
    wrong = PromptCachedTagger(model, enc.head_ids, 0).eval()
    with torch.inference_mode():
        a = right(input_ids=text["input_ids"], attention_mask=text["attention_mask"]).logits
        b = wrong(input_ids=text["input_ids"], attention_mask=text["attention_mask"]).logits
    assert enc.text_type == 1 and (a - b).abs().max() > 1e-2


def test_training_mode_recomputes_the_head_with_gradients(setup):
    model, enc, windows = setup
    tagger = PromptCachedTagger(model, enc.head_ids, enc.text_type).train()
    head = len(enc.head_ids)
    text = {k: torch.from_numpy(v) for k, v in batch_arrays(windows, enc.pad_id, skip=head).items()}
    labels = torch.zeros_like(text["input_ids"])
    out = tagger(input_ids=text["input_ids"], attention_mask=text["attention_mask"], labels=labels)
    out.loss.backward()
    # The prompt's own tokens get gradient only through the cached head.
    emb = model.base_model.embeddings.word_embeddings.weight.grad
    only_in_prompt = set(enc.prompt_ids) - set(text["input_ids"].flatten().tolist())
    assert only_in_prompt and all(emb[i].abs().sum() > 0 for i in only_in_prompt)
    model.zero_grad()
    tagger.eval()


def test_non_bert_architecture_is_refused():
    from promptbert.errors import ConfigError

    class NotBert(torch.nn.Module):
        config = None

    with pytest.raises(ConfigError, match="prompt_attention"):
        PromptCachedTagger(NotBert(), [1, 2], 1)
