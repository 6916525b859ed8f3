"""Prompt-isolated attention: compute the prompt once, not once per text.

In the classic pair encoding (``joint``) every token attends to every token, so the
prompt's hidden states depend on the text and the whole ``[CLS] prompt [SEP]`` head
is recomputed for each window -- about 70% of the work on CoNLL sentences with a
57-token prompt. With ``isolated`` attention the head attends only to itself while
the text attends to head + text in every layer. The head's keys and values per
layer are then the same for every input: training computes them once per batch
(gradients flow through them), inference once per model, and the export bakes them
into the ONNX graph as constants, so serving runs on the text tokens alone.

The text keeps the positions and segment it has in the full window (positions
continue after the head; segment ``text_type``), so this module computes exactly
what a full-sequence BERT computes with the matching 3D attention mask (see
``isolated_mask``; a test checks the two agree).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers.modeling_outputs import TokenClassifierOutput

from promptbert import constants as C
from promptbert.casing import SHAPE_VOCAB
from promptbert.errors import ArtifactError, ConfigError


def check_supported(model: Any) -> None:
    """Isolated attention re-implements BERT's encoder layer: refuse architectures it does not match."""
    base = getattr(model, "base_model", None)
    layers = getattr(getattr(base, "encoder", None), "layer", None)
    ok = (
        base is not None and layers is not None and hasattr(base, "embeddings")
        and (hasattr(model, "classifier") or base is model)  # a token classifier, or the bare encoder (types head)
        and all(hasattr(layer, "attention") and hasattr(layer.attention, "self") and hasattr(layer, "intermediate")
                for layer in layers)
        and getattr(model.config, "position_embedding_type", "absolute") == "absolute"
        and not getattr(model.config, "is_decoder", False)
    )
    if not ok:
        raise ConfigError(f"prompt_attention: 'isolated' needs a BERT-style encoder with absolute positions; "
                          f"{type(model).__name__} is not one (use prompt_attention: joint)")


def _heads(x: torch.Tensor, layer: Any) -> torch.Tensor:
    sa = layer.attention.self
    b, t, _ = x.shape
    return x.view(b, t, sa.num_attention_heads, sa.attention_head_size).transpose(1, 2)


def head_states(base: Any, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One head (``[1, head_len]`` ids, segment 0) through the encoder: its keys and values in every
    layer, each ``[layers, heads, head_len, head_dim]``, and its last hidden states ``[head_len, hidden]``."""
    out = base(input_ids=ids, token_type_ids=torch.zeros_like(ids), attention_mask=torch.ones_like(ids),
               output_hidden_states=True)
    keys, values = [], []
    for i, layer in enumerate(base.encoder.layer):
        h = out.hidden_states[i]
        keys.append(_heads(layer.attention.self.key(h), layer))
        values.append(_heads(layer.attention.self.value(h), layer))
    return torch.cat(keys), torch.cat(values), out.last_hidden_state[0]


def text_states(base: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, keys: torch.Tensor,
                values: torch.Tensor, text_type: int, shapes: WordShapes | None = None,
                word_shape: torch.Tensor | None = None, prompt_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Last hidden states of text tokens that attend to a head's cached keys/values and to each other.

    ``keys``/``values``: one head's, ``[layers, heads, head_len, head_dim]``, or one head per text row,
    ``[rows, layers, heads, head_len, head_dim]`` (rows: 1 or the batch), heads of different lengths
    padded to the longest and ``prompt_mask`` ``[rows, head_len]`` (1: a real head token) saying where.
    The text keeps the positions it has in the full window (after its own head) and segment ``text_type``.
    A model with casing (``shapes``) adds its word-shape vectors to the tokens' word embeddings, before
    the embedding LayerNorm.
    """
    b, t = input_ids.shape
    per_row = keys.dim() == 5
    head = keys.shape[-2]
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    steps = torch.arange(t, device=input_ids.device)
    if prompt_mask is None:
        positions = (steps + head).unsqueeze(0).expand(b, t)
    else:  # each row's text continues after its own head
        positions = (steps.unsqueeze(0) + prompt_mask.sum(dim=1, keepdim=True)).expand(b, t)
    segments = torch.full_like(input_ids, text_type)
    if shapes is None:
        h = base.embeddings(input_ids=input_ids, token_type_ids=segments, position_ids=positions)
    else:
        h = base.embeddings(inputs_embeds=base.embeddings.word_embeddings(input_ids) + shapes(word_shape),
                            token_type_ids=segments, position_ids=positions)
    low = torch.finfo(h.dtype).min
    additive = ((1.0 - attention_mask.to(h.dtype)) * low)[:, None, None, :]
    # A single head is never masked; padded per-row heads mask their padding.
    head_additive = None if prompt_mask is None else ((1.0 - prompt_mask.to(h.dtype)) * low)[:, None, None, :]
    for i, layer in enumerate(base.encoder.layer):
        sa = layer.attention.self
        q = _heads(sa.query(h), layer) / math.sqrt(sa.attention_head_size)
        # Scores against the head's keys and the text's, side by side. The head's keys and values
        # broadcast over the batch inside the products rather than being copied for every row and
        # concatenated with the text's (in the exported graph that copy was a per-row cost).
        hk, hv = (keys[:, i], values[:, i]) if per_row else (keys[i : i + 1], values[i : i + 1])
        head_scores = q @ hk.transpose(-1, -2)
        if head_additive is not None:
            head_scores = head_scores + head_additive
        scores = torch.cat([head_scores, q @ _heads(sa.key(h), layer).transpose(-1, -2) + additive], dim=-1)
        probs = sa.dropout(torch.softmax(scores, dim=-1))
        ctx = probs[..., :head] @ hv + probs[..., head:] @ _heads(sa.value(h), layer)
        ctx = ctx.transpose(1, 2).reshape(b, t, sa.all_head_size)
        attn = layer.attention.output(ctx, h)
        h = layer.output(layer.intermediate(attn), attn)
    return h


class WordShapes(nn.Module):
    """The casing signal: a learned vector per word shape (promptbert/casing.py), added to the text tokens'
    word embeddings. Zero at the start, so training begins from exactly the base model."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(SHAPE_VOCAB, hidden)
        nn.init.zeros_(self.embedding.weight)

    def forward(self, word_shape: torch.Tensor | None) -> torch.Tensor:
        if word_shape is None:
            raise ValueError("this model was trained with casing: its inputs need word_shape")
        return self.embedding(word_shape)

    def save(self, folder: Path) -> None:
        from safetensors.torch import save_file

        save_file({"weight": self.embedding.weight.detach().contiguous()}, str(Path(folder) / C.CASING_WEIGHTS))

    def load(self, folder: Path) -> WordShapes:
        from safetensors.torch import load_file

        path = Path(folder) / C.CASING_WEIGHTS
        if not path.is_file():
            raise ArtifactError(f"{folder}: the manifest says casing but {C.CASING_WEIGHTS} is missing")
        weight = load_file(str(path)).get("weight")
        if weight is None or weight.shape != self.embedding.weight.shape:
            raise ArtifactError(f"{path}: does not hold a {tuple(self.embedding.weight.shape)} word-shape embedding")
        with torch.no_grad():
            self.embedding.weight.copy_(weight)
        return self


def word_shapes_for(config: Any, casing: str) -> WordShapes | None:
    """The word-shape embedding of a model whose manifest (or training) says ``casing``; None without."""
    return WordShapes(config.hidden_size) if casing else None


class PromptCachedTagger(nn.Module):
    """A BERT token classifier that runs text-only inputs against the cached keys/values of a fixed head.

    Inputs are the text part of a window (``words... [SEP]``) and its mask; logits come
    back for those tokens only.
    """

    def __init__(self, model: Any, head_ids: list[int], text_type: int, casing: str = "") -> None:
        super().__init__()
        check_supported(model)
        self.model = model
        self.config = model.config
        self.text_type = int(text_type)
        self.word_shapes = word_shapes_for(model.config, casing)
        self.register_buffer("head_ids", torch.tensor(head_ids, dtype=torch.long), persistent=False)
        self._kv: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def head_len(self) -> int:
        return int(self.head_ids.numel())

    def train(self, mode: bool = True) -> PromptCachedTagger:
        if mode:
            self._kv = None  # weights are about to change: the cached head goes stale
        return super().train(mode)

    def prompt_kv(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of the head in every layer, each ``[layers, heads, head_len, head_dim]``."""
        keys, values, _ = head_states(self.model.base_model, self.head_ids.unsqueeze(0))
        return keys, values

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, prompt_kv: tuple[torch.Tensor, torch.Tensor] | None = None,
                word_shape: torch.Tensor | None = None, **_: Any) -> TokenClassifierOutput:
        if prompt_kv is not None:
            keys, values = prompt_kv
        elif self.training or self._kv is None:
            keys, values = self.prompt_kv()
            if not self.training and not torch.is_grad_enabled():
                self._kv = (keys, values)
        else:
            keys, values = self._kv
        h = text_states(self.model.base_model, input_ids, attention_mask, keys, values, self.text_type,
                        self.word_shapes, word_shape)
        logits = self.model.classifier(self.model.dropout(h))
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(logits.view(-1, logits.shape[-1]), labels.view(-1), ignore_index=-100)
        return TokenClassifierOutput(loss=loss, logits=logits)


def tagger_for(model: Any, encoder: Any, prompt_attention: str) -> Any:
    """The module that runs a model of this prompt attention: the cached-head wrapper, or the model itself."""
    if prompt_attention == "isolated":
        return PromptCachedTagger(model, encoder.head_ids, encoder.text_type, encoder.casing)
    return model


class BakedPromptTagger(nn.Module):
    """What the ONNX export traces: text ids + mask -> logits, with the head's keys/values as constants."""

    def __init__(self, tagger: PromptCachedTagger) -> None:
        super().__init__()
        tagger.eval()
        with torch.no_grad():
            keys, values = tagger.prompt_kv()
        self.tagger = tagger
        # Buffers, not a lazily filled cache: the exporter's own eval()/tracing cannot recompute the head.
        self.register_buffer("keys", keys.detach().clone())
        self.register_buffer("values", values.detach().clone())
        self.eval()  # a new Module starts in training mode; the exporter restores that mode afterwards

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                word_shape: torch.Tensor | None = None) -> torch.Tensor:
        return self.tagger(input_ids=input_ids, attention_mask=attention_mask, prompt_kv=(self.keys, self.values),
                           word_shape=word_shape).logits


def isolated_mask(token_type_ids: torch.Tensor, attention_mask: torch.Tensor, head_len: int) -> torch.Tensor:
    """The full-window 3D mask that isolated attention implements: head rows see only the head."""
    b, s = attention_mask.shape
    mask = attention_mask[:, None, :].expand(b, s, s).clone()
    mask[:, :head_len, head_len:] = 0
    return mask


def full_window_logits_fn(tagger: PromptCachedTagger) -> Any:
    """The uncached reference: the plain HF model on whole windows with the isolated mask.

    Same answers as the cached tagger, but the head is recomputed for every window; the
    benchmark uses it to show what caching saves in PyTorch itself.
    """
    import numpy as np

    model, head_len = tagger.model, tagger.head_len

    def run(batch: dict[str, np.ndarray]) -> np.ndarray:
        with torch.inference_mode():
            ids, types, mask = (torch.from_numpy(batch[k]) for k in ("input_ids", "token_type_ids", "attention_mask"))
            embeds = model.base_model.embeddings.word_embeddings(ids)
            if tagger.word_shapes is not None:  # the head was encoded without word shapes
                extra = tagger.word_shapes(torch.from_numpy(batch["word_shape"]))
                extra[:, :head_len] = 0
                embeds = embeds + extra
            out = model(inputs_embeds=embeds, token_type_ids=types, attention_mask=isolated_mask(types, mask, head_len))
            return out.logits.float().numpy()

    return run
