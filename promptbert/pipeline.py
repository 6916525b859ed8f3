"""One tagging path for every backend: encoder -> batches -> logits function -> words/entities.

PyTorch (training/evaluate) and ONNX Runtime (export parity, predict, service)
differ only in the ``logits_fn`` they pass, so scores from either are comparable.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .data import sentence_bounds, split_words
from .decoding import aggregate_word, check_strategy, entities_from_groups, group_units, softmax
from .encoding import (DEFAULT_CALL_COST, CallCost, Context, PromptEncoder, Window, batch_arrays, piece_spans,
                       token_budget_batches)
from .errors import InputError
from .labels import LabelMap

PROMPT_GROUP = "prompt_group"  # a batch's array naming, per row, which of the call's prompts it is tagged under
LogitsFn = Callable[[dict[str, np.ndarray]], np.ndarray]
# Told of every model call: the arrays it was given and the seconds it took (wall clock).
CallObserver = Callable[[dict[str, np.ndarray], float], None]


def check_text(text: str, where: str = "text") -> str:
    """A text the tokenizer can take: a str without lone surrogates (what JSON's "\\ud800" or a
    non-UTF-8 command line decode to, and the tokenizer refuses with a TypeError)."""
    if not isinstance(text, str):
        raise InputError(f"{where}: expected a string, got {type(text).__name__}")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InputError(f"{where}: not valid Unicode (a lone surrogate at character {exc.start})") from None
    return text


class TaggingPipeline:
    """Tags word lists or raw texts with any backend that maps padded int64 arrays to logits."""

    def __init__(
        self,
        encoder: PromptEncoder,
        labels: LabelMap,
        logits_fn: LogitsFn,
        max_batch_tokens: int = 8192,
        max_batch_items: int | None = 64,
        sort_by_length: bool = True,
        head_cached: bool = False,
        call_cost: CallCost | None = DEFAULT_CALL_COST,
        on_call: CallObserver | None = None,
        split_sentences: bool = True,
    ) -> None:
        self.encoder = encoder
        self.labels = labels
        self.logits_fn = logits_fn
        self.max_batch_tokens = max_batch_tokens
        self.max_batch_items = max_batch_items
        self.sort_by_length = sort_by_length
        self.call_cost = call_cost  # see token_budget_batches
        self.on_call = on_call  # the service counts model time, rows and padding with it (/metrics)
        self.split_sentences = split_sentences  # raw text: each sentence its own sequence (data.sentence_bounds)
        # Prompt-isolated models cache the [CLS] prompt [SEP] head: the backend sees only the text part.
        self.skip = len(encoder.head_ids) if head_cached else 0

    def _batches(self, windows: list[Window]) -> list[list[int]]:
        if self.sort_by_length:
            lengths = [len(w.input_ids) - self.skip for w in windows]
            return token_budget_batches(lengths, self.max_batch_tokens, self.max_batch_items, self.call_cost)
        size = self.max_batch_items or len(windows)
        return [list(range(i, min(i + size, len(windows)))) for i in range(0, len(windows), size)]

    def piece_probs(self, sentences: Sequence[Sequence[str]], contexts: Sequence[Context] | None = None,
                    groups: Sequence[int] | None = None) -> list[list[np.ndarray]]:
        """Per sentence, per word: the probability rows of its pieces, taken from the window that owns it.
        ``contexts``: the words around each sentence, for an encoder with ``context_tokens``; ``groups``:
        a prompt index per sentence, passed to the logits function per row (``PROMPT_GROUP``)."""
        windows: list[Window] = []
        owner: list[int] = []
        if contexts is not None and len(contexts) != len(sentences):
            raise ValueError(f"{len(contexts)} contexts for {len(sentences)} sentences")
        for si, words in enumerate(sentences):
            for w in self.encoder.encode(list(words), context=contexts[si] if contexts else None):
                if w.own_end > w.own_start:  # a text without words needs no model run
                    windows.append(w)
                    owner.append(si)
        result: list[list[Any]] = [[[] for _ in words] for words in sentences]
        for batch in self._batches(windows):
            chunk = [windows[i] for i in batch]
            arrays = batch_arrays(chunk, self.encoder.pad_id, self.skip)
            if groups is not None:
                arrays[PROMPT_GROUP] = np.asarray([groups[owner[wi]] for wi in batch], dtype=np.int64)
            t0 = time.perf_counter()
            logits = np.asarray(self.logits_fn(arrays))
            if self.on_call is not None:
                self.on_call(arrays, time.perf_counter() - t0)
            probs = softmax(logits)
            for row, wi in enumerate(batch):
                win = windows[wi]
                words_out = result[owner[wi]]
                for w, (a, b) in piece_spans(win.token_word, self.skip, win.own_start, win.own_end).items():
                    words_out[w] = probs[row, a:b]
        return result  # type: ignore[return-value]

    def word_tags(self, sentences: Sequence[Sequence[str]], strategy: str = "first",
                  contexts: Sequence[Context] | None = None) -> list[list[tuple[str, float]]]:
        """IOB2 tag and score per word (what evaluation compares to the gold tags)."""
        return self.tags_from_probs(self.piece_probs(sentences, contexts), strategy)

    def tags_from_probs(self, probs: list[list[np.ndarray]], strategy: str = "first") -> list[list[tuple[str, float]]]:
        """Word tags from already computed piece probabilities (score several strategies with one model pass)."""
        check_strategy(strategy)
        out = []
        for rows_per_word in probs:
            tags = []
            for rows in rows_per_word:
                idx, score = aggregate_word(rows, strategy)
                tags.append((self.labels.labels[idx], score))
            out.append(tags)
        return out

    def entities(
        self,
        texts: Sequence[str],
        strategy: str = "first",
        min_score: float = 0.0,
        entity_types: Sequence[str] | None = None,
        groups: Sequence[int] | None = None,
        group_labels: Sequence[LabelMap] | None = None,
    ) -> list[list[dict[str, Any]]]:
        """Entities per raw text, in the HF pipeline shape, offsets into the text as given.
        ``groups``/``group_labels``: texts under different prompts in one pass, text i labelled by
        ``group_labels[groups[i]]`` (its rows' columns past those labels carry no probability)."""
        check_strategy(strategy)
        if not 0.0 <= min_score <= 1.0:
            raise InputError(f"min_score: must be between 0 and 1, got {min_score}")
        for i, text in enumerate(texts):
            check_text(text, f"texts[{i}]")
        wanted = None
        if entity_types is not None:
            unknown = sorted(set(entity_types) - set(self.labels.entity_types))
            if unknown:
                raise InputError(f"entity_types: unknown type {unknown[0]!r} (model knows {', '.join(self.labels.entity_types)})")
            wanted = set(entity_types)
        splits = [split_words(t) for t in texts]
        probs = self._text_probs(texts, splits, groups)
        results = []
        for ti, (text, words, rows_per_word) in enumerate(zip(texts, splits, probs)):
            labels = self.labels if groups is None or group_labels is None else group_labels[groups[ti]]
            units: list[tuple[str, float, int, int]] = []
            if strategy == "simple":
                offsets = self._piece_offsets([w for w, _, _ in words])
                for (_, ws, _), rows, offs in zip(words, rows_per_word, offsets):
                    for row, (a, b) in zip(rows, offs):
                        idx = int(row.argmax())
                        units.append((labels.labels[idx], float(row[idx]), ws + a, ws + b))
            else:
                for (_, ws, we), rows in zip(words, rows_per_word):
                    idx, score = aggregate_word(rows, strategy)
                    units.append((labels.labels[idx], score, ws, we))
            results.append(entities_from_groups(text, group_units(units), min_score, wanted))
        return results

    def _text_probs(self, texts: Sequence[str], splits: list[list[tuple[str, int, int]]],
                    groups: Sequence[int] | None = None) -> list[list[np.ndarray]]:
        """piece_probs of each text's words; with split_sentences each sentence runs as its own sequence,
        as the model was trained (else the whole text is one), and the rows are put back in the text's
        word order."""
        units: list[list[str]] = []
        owner: list[int] = []
        near = self.encoder.context_tokens if self.split_sentences else 0
        contexts: list[Context] | None = [] if near else None
        for ti, (text, words) in enumerate(zip(texts, splits)):
            whole = [(0, len(words))] if words else []
            for a, b in sentence_bounds(text, words) if self.split_sentences else whole:
                units.append([w for w, _, _ in words[a:b]])
                owner.append(ti)
                if contexts is not None:  # the neighbouring sentences of the same text, as in training
                    contexts.append(([w for w, _, _ in words[max(0, a - near) : a]], [w for w, _, _ in words[b : b + near]]))
        probs: list[list[np.ndarray]] = [[] for _ in texts]
        unit_groups = None if groups is None else [groups[ti] for ti in owner]
        for ti, rows in zip(owner, self.piece_probs(units, contexts, unit_groups)):
            probs[ti].extend(rows)
        return probs

    def _piece_offsets(self, words: list[str]) -> list[list[tuple[int, int]]]:
        """Character span of each piece inside its word (for the token-level ``simple`` strategy)."""
        if not words:
            return []
        enc = self.encoder.tokenizer.encode(words, is_pretokenized=True, add_special_tokens=False)
        offs: list[list[tuple[int, int]]] = [[] for _ in words]
        for wid, span in zip(enc.word_ids, enc.offsets):
            if wid is not None:
                offs[wid].append(span)
        return [o if o else [(0, len(w))] for o, w in zip(offs, words)]
