"""The label-semantic (``head: types``) model and its multi-corpus training.

Each batch comes from one corpus and is tagged under one prompt drawn for it: all of the
corpus's types (``full_prompt_rate`` of batches) or a random non-empty subset in random
order, each type described by one of its phrasings. Entities of types the prompt does not
name are labelled ``O``: that is what teaches the model to tag what the prompt asks for and
nothing else. One prompt per batch keeps its keys and values computed once per batch.
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import Trainer

from promptbert import data as D
from promptbert.encoding import IGNORE_INDEX, PromptEncoder
from promptbert.errors import ConfigError
from promptbert.labels import LabelMap
from promptbert.prompt import PromptSpec, find_file
from promptbert.typed import PromptedModel, PromptLimits, prepare

from .cached import check_supported, head_states, text_states, word_shapes_for
from .config import CorpusConfig, TrainConfig
from .train import training_sentences

log = logging.getLogger("promptbert.train")
HEAD_WEIGHTS = "type_head.safetensors"


class TypedTagger(nn.Module):
    """BERT with prompt-isolated attention and a label-semantic head.

    ``encode_prompt``: the head's keys/values in every layer and, per type, a B and an I key
    (projections of the mean of the prompt's last hidden states over the type's span) with a
    bias each. ``tag``: a text token's score for ``B-t``/``I-t`` is its projected state dotted
    with those keys; ``O`` has its own linear score. Labels: O, B-t1, I-t1, B-t2, ...
    """

    def __init__(self, base: Any, text_type: int = 1, casing: str = "") -> None:
        super().__init__()
        self.base = base
        self.config = base.config
        self.text_type = text_type
        check_supported(base)
        self.word_shapes = word_shapes_for(base.config, casing)
        h = base.config.hidden_size
        self.query = nn.Linear(h, h)
        self.type_b = nn.Linear(h, h)
        self.type_i = nn.Linear(h, h)
        self.outside = nn.Linear(h, 1)
        self.bi_bias = nn.Parameter(torch.zeros(2))
        self.dropout = nn.Dropout(base.config.hidden_dropout_prob)
        self.scale = 1.0 / math.sqrt(h)

    def encode_prompt(self, prompt_ids: torch.Tensor, type_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        keys, values, last = head_states(self.base, prompt_ids)
        vec = type_mask @ last  # [types, hidden]
        type_keys = torch.stack([self.type_b(vec), self.type_i(vec)], dim=1).reshape(-1, vec.shape[-1])
        type_bias = self.bi_bias.unsqueeze(0).expand(vec.shape[0], 2).reshape(-1)
        return keys, values, type_keys, type_bias

    def tag(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
            type_keys: torch.Tensor, type_bias: torch.Tensor, word_shape: torch.Tensor | None = None,
            prompt_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Logits of text windows under one prompt's encoding, or under one per row: ``keys``/``values``
        ``[rows, layers, ...]``, ``type_keys`` ``[rows, labels, hidden]``, ``type_bias`` ``[rows, labels]``
        and ``prompt_mask`` (see ``text_states``), rows 1 or the batch."""
        h = self.dropout(text_states(self.base, input_ids, attention_mask, keys, values, self.text_type,
                                     self.word_shapes, word_shape, prompt_mask))
        if type_keys.dim() == 2:
            scores = (self.query(h) @ type_keys.transpose(0, 1)) * self.scale + type_bias
        else:
            scores = (self.query(h) @ type_keys.transpose(1, 2)) * self.scale + type_bias.unsqueeze(1)
        return torch.cat([self.outside(h), scores], dim=-1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, prompt_ids: torch.Tensor,
                type_mask: torch.Tensor, labels: torch.Tensor | None = None, word_shape: torch.Tensor | None = None,
                **_: Any) -> dict[str, torch.Tensor]:
        logits = self.tag(input_ids, attention_mask, *self.encode_prompt(prompt_ids, type_mask), word_shape=word_shape)
        out = {"logits": logits}
        if labels is not None:
            out["loss"] = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                                      ignore_index=IGNORE_INDEX)
        return out

    def save(self, folder: Path) -> None:
        from safetensors.torch import save_file

        self.base.save_pretrained(str(folder), safe_serialization=True)
        head = {k: v.detach().contiguous() for k, v in self.state_dict().items() if not k.startswith("base.")}
        save_file(head, str(folder / HEAD_WEIGHTS))

    @classmethod
    def load(cls, folder: Path, casing: str = "") -> TypedTagger:
        from transformers import AutoModel

        return cls(AutoModel.from_pretrained(str(folder), add_pooling_layer=False), casing=casing).load_head(folder)

    def load_head(self, folder: Path) -> TypedTagger:
        """The label-semantic head's weights from a types model folder (the encoder's are loaded already)."""
        from safetensors.torch import load_file

        missing = self.load_state_dict(load_file(str(folder / HEAD_WEIGHTS)), strict=False)
        if missing.unexpected_keys or any(not k.startswith("base.") for k in missing.missing_keys):
            raise ConfigError(f"{folder}: {HEAD_WEIGHTS} does not match the types head")
        return self


def torch_backend(model: TypedTagger) -> tuple[Any, Any]:
    """The two calls a PromptedModel needs, over a PyTorch TypedTagger (same arrays as the ONNX graphs)."""
    device = next(model.parameters()).device

    def encode(head_ids: np.ndarray, type_mask: np.ndarray) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            outs = model.encode_prompt(torch.from_numpy(head_ids).to(device), torch.from_numpy(type_mask).to(device))
        return {k: v.detach().float().cpu().numpy() for k, v in zip(("keys", "values", "type_keys", "type_bias"), outs)}

    def tag(batch: dict[str, np.ndarray], enc: dict[str, np.ndarray]) -> np.ndarray:
        with torch.inference_mode():
            t = {k: torch.from_numpy(v).to(device) for k, v in {**enc, **batch}.items() if k != "token_type_ids"}
            return model.tag(t["input_ids"], t["attention_mask"], t["keys"], t["values"], t["type_keys"],
                             t["type_bias"], t.get("word_shape"), t.get("prompt_mask")).float().cpu().numpy()

    return encode, tag


def prompted_model(model: TypedTagger, encoder: PromptEncoder, default: PromptSpec, limits: PromptLimits,
                   cache_entries: int = 256, cache_bytes: int = 256 << 20, **pipeline_kwargs: Any) -> PromptedModel:
    """A PromptedModel over a PyTorch TypedTagger (training's scores, model folders, the export's reference)."""
    encode, tag = torch_backend(model)
    return PromptedModel(encoder, encode, tag, default, limits, cache_entries, cache_bytes, **pipeline_kwargs)


@dataclass
class Corpus:
    """One corpus ready for training: its prompt, types, phrasings and labelled text windows."""

    name: str
    spec: PromptSpec  # role/task/... and the default description of each type
    types: tuple[str, ...]
    phrasings: dict[str, tuple[str, ...]]
    negatives: dict[str, str]
    weight: float
    local: LabelMap  # the labels the windows carry (the corpus's own types)
    rows: list[dict[str, list[int]]]
    dev: list[D.Sentence]
    test: list[D.Sentence]
    files: list[Path]

    def full_spec(self) -> PromptSpec:
        return replace(self.spec, labels={t: self.phrasings[t][0] for t in self.types})


def canonical_tags(sentences: list[D.Sentence], mapping: dict[str, str], where: str) -> list[D.Sentence]:
    if not mapping:
        return sentences
    out = []
    for s in sentences:
        tags = []
        for t in s.tags:
            if t == "O":
                tags.append(t)
                continue
            new = mapping.get(t[2:])
            if new is None:
                raise ConfigError(f"{where}.types: the corpus has type {t[2:]!r}, which types does not map "
                                  f"(map it, or to drop it map it to O)")
            tags.append("O" if new == "O" else f"{t[:2]}{new}")
        out.append(replace(s, tags=tuple(tags)))
    return out


def load_corpus(c: CorpusConfig, i: int, config: TrainConfig, encoder: PromptEncoder) -> Corpus:
    where = f"corpora[{i}]"
    prompt_path = find_file(c.prompt or config.prompt)
    spec = PromptSpec.from_yaml(prompt_path)
    train = canonical_tags(D.load_split(c.data_dir, "train", config.train_limit or None), c.types, where)
    dev = canonical_tags(D.load_split(c.data_dir, "dev", config.dev_limit or None), c.types, where)
    files = [D.find_split(c.data_dir, "train"), D.find_split(c.data_dir, "dev")]
    test: list[D.Sentence] = []
    if config.eval_test:
        try:
            files.append(D.find_split(c.data_dir, "test"))
            test = canonical_tags(D.read_conll(files[-1]), c.types, where)
        except D.DataError:
            pass
    seen: list[str] = []
    for s in train:
        for t in s.tags:
            if t != "O" and t[2:] not in seen:
                seen.append(t[2:])
    order = [t for t in spec.labels if t in seen] + sorted(t for t in seen if t not in spec.labels)
    phrasings = {t: tuple(c.descriptions.get(t) or ((spec.labels[t],) if t in spec.labels else ())) for t in order}
    lacking = [t for t, p in phrasings.items() if not p]
    if lacking:
        raise ConfigError(f"{where}: type {lacking[0]!r} has no description (add it to descriptions or to the prompt's labels)")
    if not order:
        raise ConfigError(f"{where}: {c.data_dir} has no entities in its training split")
    local = LabelMap.from_types(tuple(order))
    l2i = local.label2id
    skip = len(encoder.head_ids)
    rows = []
    shaped, shapes = training_sentences(train, encoder, config, config.seed + i)
    for s, shape in zip(shaped, shapes):
        for w in encoder.encode(s.words, [l2i[t] for t in s.tags], shape):
            row = {"input_ids": w.input_ids[skip:], "labels": (w.labels or [])[skip:]}
            if w.word_shape is not None:
                row["word_shape"] = w.word_shape[skip:]
            rows.append(row)
    return Corpus(c.label, spec, tuple(order), phrasings, dict(c.negatives), c.weight, local, rows, dev, test, files)


class PromptDraws:
    """The prompt of each training batch, drawn for its corpus."""

    def __init__(self, config: TrainConfig, seed: int) -> None:
        self.rng = random.Random(seed)
        self.full_rate = config.full_prompt_rate
        self.max_types = config.max_types

    def draw(self, corpus: Corpus) -> PromptSpec:
        rng = self.rng
        types = list(corpus.types)
        if rng.random() >= self.full_rate:
            types = rng.sample(types, rng.randint(1, len(types)))
        chosen = {t: rng.choice(corpus.phrasings[t]) for t in types}
        if corpus.negatives and rng.random() < 0.3:
            for name in rng.sample(sorted(corpus.negatives), min(2, len(corpus.negatives))):
                chosen[name] = corpus.negatives[name]
        names = list(chosen)[: self.max_types]
        rng.shuffle(names)
        return replace(corpus.spec, labels={t: chosen[t] for t in names})


class BatchCollator:
    """Pads one pre-made batch and tags it under a freshly drawn prompt (labels remapped to its order)."""

    def __init__(self, corpora: list[Corpus], draws: PromptDraws, encoder: PromptEncoder, limits: PromptLimits) -> None:
        self.corpora = corpora
        self.draws = draws
        self.encoder = encoder
        self.limits = limits

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        (item,) = items
        corpus = self.corpora[item["corpus"]]
        spec = self.draws.draw(corpus)
        enc = self.encoder
        prompt = prepare(spec, enc.tokenizer, enc.cls_id, enc.sep_id, self.limits)
        remap = np.zeros(len(corpus.local.labels), dtype=np.int64)
        for j, lab in enumerate(corpus.local.labels[1:], 1):
            if lab[2:] in prompt.types:
                remap[j] = 1 + 2 * prompt.types.index(lab[2:]) + (lab[0] == "I")
        rows = [corpus.rows[i] for i in item["rows"]]
        width = max(len(r["input_ids"]) for r in rows)
        ids = np.full((len(rows), width), enc.pad_id, dtype=np.int64)
        mask = np.zeros_like(ids)
        labels = np.full_like(ids, IGNORE_INDEX)
        shapes = np.zeros_like(ids) if "word_shape" in rows[0] else None
        for r, row in enumerate(rows):
            n = len(row["input_ids"])
            ids[r, :n] = row["input_ids"]
            mask[r, :n] = 1
            lab = np.asarray(row["labels"], dtype=np.int64)
            labels[r, :n] = np.where(lab == IGNORE_INDEX, IGNORE_INDEX, remap[np.maximum(lab, 0)])
            if shapes is not None:
                shapes[r, :n] = row["word_shape"]
        batch = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask),
                 "labels": torch.from_numpy(labels), "prompt_ids": torch.tensor([prompt.head_ids]),
                 "type_mask": torch.from_numpy(prompt.type_mask)}
        if shapes is not None:
            batch["word_shape"] = torch.from_numpy(shapes)
        return batch


def make_batches(corpora: list[Corpus], batch_size: int, seed: int) -> list[dict[str, Any]]:
    """Batches of one corpus each, of windows of similar length (less padding), ``weight`` x each corpus."""
    rng = random.Random(seed)
    out = []
    for ci, c in enumerate(corpora):
        idx = list(range(len(c.rows)))
        whole, part = divmod(c.weight, 1.0)
        picks = idx * int(whole) + rng.sample(idx, round(part * len(idx)))
        picks.sort(key=lambda i: (len(c.rows[i]["input_ids"]), rng.random()))
        for s in range(0, len(picks), batch_size):
            out.append({"corpus": ci, "rows": picks[s : s + batch_size]})
    return out


def corpus_tagger(model: TypedTagger, encoder: PromptEncoder, corpus: Corpus, limits: PromptLimits) -> Any:
    """The PyTorch tagger of a corpus's full prompt: how training scores each corpus, during and after."""
    from promptbert.tagger import Tagger

    return Tagger.prompted_by(prompted_model(model, encoder, corpus.full_spec(), limits), variant="pytorch")


class TypedTrainer(Trainer):
    """A Trainer whose evaluation tags each corpus's dev split under its full prompt, word by word, through the
    same Tagger path as serving; ``eval_f1`` is the mean over corpora."""

    def __init__(self, *args: Any, corpora: list[Corpus], encoder: PromptEncoder, limits: PromptLimits,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.corpora, self.encoder, self.limits = corpora, encoder, limits

    def evaluate(self, eval_dataset: Any = None, ignore_keys: Any = None, metric_key_prefix: str = "eval") -> dict[str, float]:
        from .evaluate import evaluate_sentences

        self.model.eval()
        scores = {f"{metric_key_prefix}_f1_{c.name}":
                  evaluate_sentences(corpus_tagger(self.model, self.encoder, c, self.limits), c.dev)["micro avg"]["f1-score"]
                  for c in self.corpora if c.dev}
        self.model.train()
        metrics = {f"{metric_key_prefix}_f1": float(np.mean(list(scores.values()))) if scores else 0.0, **scores}
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics
