"""Prompt + words -> model inputs, shared by training, export and serving.

Layout of one window: ``[CLS] prompt [SEP] words... [SEP]``; ``token_type_ids`` are
0 for the prompt part and 1 for the words (0 throughout when there is no prompt,
as in single-sentence pretraining). The prompt is never truncated: a sentence too
long for one window is cut into overlapping windows at word boundaries, and each
word is *owned* by exactly one window (the one where it sits farthest from an
edge), so every word gets exactly one prediction.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from .casing import CASING_SCHEME, SHAPE_CACHE_WORDS, in_sentence, word_shape
from .data import Sentence, document_contexts
from .errors import ArtifactError, ConfigError
from .prompt import check_fits

IGNORE_INDEX = -100
# The words before and after a sentence in its document (document context).
Context = tuple[Sequence[str], Sequence[str]]
# A single "word" (say a 2,000-character URL) must not eat a whole window: keep its first pieces.
MAX_WORD_PIECES = 16
# Distinct words whose pieces PromptEncoder keeps: ~160 bytes each (CoNLL-2003 train: 23,623 words, 3.7 MB), 16 MB at most.
PIECE_CACHE_WORDS = 100_000


@dataclass(frozen=True)
class Window:
    """One model input covering words [word_start, word_end) of a sentence."""

    input_ids: list[int]
    token_type_ids: list[int]
    token_word: list[int]  # word index of each token, -1 for prompt and special tokens
    word_start: int
    word_end: int
    own_start: int  # words [own_start, own_end) take their prediction from this window
    own_end: int
    labels: list[int] | None = None
    word_shape: list[int] | None = None  # per token, a model with casing only (casing.py)


def load_tokenizer(folder: str | Path) -> tuple[Tokenizer, dict[str, str]]:
    """The fast tokenizer of a model/artifact folder plus its special tokens, without any truncation/padding."""
    folder = Path(folder)
    path = folder / "tokenizer.json"
    if not path.is_file():
        raise ArtifactError(f"{folder}: no tokenizer.json")
    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises plain Exception on a corrupt file
        raise ArtifactError(f"{path}: cannot load tokenizer ({exc})") from None
    tok = plain_tokenizer(tok)
    specials = {"cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]", "unk_token": "[UNK]"}
    conf = folder / "tokenizer_config.json"
    if conf.is_file():
        data = json.loads(conf.read_text(encoding="utf-8"))
        for key in specials:
            value = data.get(key)
            if isinstance(value, dict):  # AddedToken serialised
                value = value.get("content")
            if isinstance(value, str):
                specials[key] = value
    return tok, specials


def plain_tokenizer(tokenizer: Tokenizer) -> Tokenizer:
    """A copy with padding and truncation off.

    A saved tokenizer.json may pad every encode() to a fixed length (all-MiniLM-L6-v2's
    pads to 128): used as is, it would put [PAD] tokens inside the prompt at training
    time only -- train/serve skew. Every token count and every encoding goes through this.
    """
    tok = Tokenizer.from_str(tokenizer.to_str())
    tok.no_padding()
    tok.no_truncation()
    return tok


class PromptEncoder:
    """Turns word lists into windows for one tokenizer, prompt and max length."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        prompt_text: str,
        max_length: int,
        stride: int = 32,
        specials: dict[str, str] | None = None,
        text_tokens: int | None = None,
        casing: str = "",
        context_tokens: int = 0,
    ) -> None:
        """``text_tokens`` fixes the text part of a window whatever the prompt's length (``types`` models,
        whose prompt comes with each request); otherwise the text gets what the prompt leaves of max_length.
        ``casing``: the manifest's scheme ("" for none); with one, windows carry word shapes.
        ``context_tokens``: at most this many tokens of the words around a sentence on each side
        (its document's neighbours), unlabelled and unowned, where the window has room."""
        if casing not in ("", CASING_SCHEME):
            raise ArtifactError(f"casing: unknown scheme {casing!r} (this promptbert knows {CASING_SCHEME!r})")
        self.casing = casing
        self._shapes: dict[str, int] = {}
        if context_tokens < 0:
            raise ConfigError(f"context_tokens: must be >= 0, got {context_tokens}")
        self.context_tokens = context_tokens
        specials = specials or {}
        tokenizer = plain_tokenizer(tokenizer)
        self.tokenizer = tokenizer
        self.prompt_text = prompt_text
        self.max_length = max_length

        def special(key: str, default: str) -> int:
            token = specials.get(key, default)
            idx = tokenizer.token_to_id(token)
            if idx is None:
                raise ConfigError(f"tokenizer: special token {token!r} ({key}) is not in the vocabulary")
            return idx

        self.cls_id = special("cls_token", "[CLS]")
        self.sep_id = special("sep_token", "[SEP]")
        self.pad_id = special("pad_token", "[PAD]")
        self.unk_id = special("unk_token", "[UNK]")
        self.prompt_ids: list[int] = (
            tokenizer.encode(prompt_text, add_special_tokens=False).ids if prompt_text.strip() else []
        )
        self.text_budget = text_tokens if text_tokens else check_fits(len(self.prompt_ids), max_length)
        if not 0 <= stride < self.text_budget:
            raise ConfigError(f"stride: must be in [0, {self.text_budget}), got {stride}")
        self.stride = stride
        self._pieces: dict[str, tuple[int, ...]] = {}  # word -> its pieces (word_pieces)
        if self.prompt_ids:
            self.head_ids = [self.cls_id, *self.prompt_ids, self.sep_id]
            self.text_type = 1
        else:
            self.head_ids = [self.cls_id]
            self.text_type = 0

    @property
    def prompt_tokens(self) -> int:
        return len(self.prompt_ids)

    def word_pieces(self, words: list[str] | tuple[str, ...]) -> list[tuple[int, ...]]:
        """Word-piece ids per word; a word the tokenizer drops entirely becomes [UNK] so it still gets a prediction.

        Pre-tokenized input is tokenized word by word, so a word's pieces never depend on its
        neighbours: they are cached per word (words repeat), and only new words go to the
        tokenizer, whose call costs ~65 µs for a CoNLL sentence against ~5 µs of lookups.
        """
        cache = self._pieces  # read once per word below: another thread may clear it meanwhile
        found = [cache.get(w) for w in words]
        missing = list(dict.fromkeys(w for w, p in zip(words, found) if p is None))
        if not missing:
            return found  # type: ignore[return-value]
        enc = self.tokenizer.encode(missing, is_pretokenized=True, add_special_tokens=False)
        pieces: list[list[int]] = [[] for _ in missing]
        for tid, wid in zip(enc.ids, enc.word_ids):
            if wid is not None:
                pieces[wid].append(tid)
        cap = min(MAX_WORD_PIECES, self.text_budget)
        fresh = {w: tuple(p[:cap]) if p else (self.unk_id,) for w, p in zip(missing, pieces)}
        if len(cache) + len(fresh) > PIECE_CACHE_WORDS:
            cache.clear()  # bounded memory; refilled from the texts that follow
        cache.update(fresh)
        return [p if p is not None else fresh[w] for w, p in zip(words, found)]

    def spans(self, pieces: Sequence[Sequence[int]]) -> list[tuple[int, int, int, int]]:
        """Windows as (word_start, word_end, own_start, own_end) over word indices."""
        n = len(pieces)
        if n == 0:
            return [(0, 0, 0, 0)]
        sizes = [len(p) for p in pieces]
        bounds: list[tuple[int, int]] = []
        start = 0
        while True:
            end, used = start, 0
            while end < n and used + sizes[end] <= self.text_budget:
                used += sizes[end]
                end += 1
            bounds.append((start, end))
            if end >= n:
                break
            # Step back from `end` by about `stride` tokens of overlap, always moving forward.
            nxt, back = end, 0
            while nxt - 1 > start + 0 and back + sizes[nxt - 1] <= self.stride:
                back += sizes[nxt - 1]
                nxt -= 1
            start = max(nxt, start + 1)
        out = []
        for i, (s, e) in enumerate(bounds):
            own_s = s if i == 0 else (s + bounds[i - 1][1]) // 2
            own_e = e if i == len(bounds) - 1 else (bounds[i + 1][0] + e) // 2
            out.append((s, e, own_s, own_e))
        return out

    def word_shapes(self, words: Sequence[str], sentence: bool = True) -> list[int]:
        """Shape id per word (casing.py); ``sentence``: the words are a sentence (casing.in_sentence)."""
        cache = self._shapes  # read once: another thread may clear it meanwhile
        shapes = [cache.get(w) or 0 for w in words]
        if 0 in shapes:
            fresh = {w: word_shape(w) for w, s in zip(words, shapes) if not s}
            if len(cache) + len(fresh) > SHAPE_CACHE_WORDS:
                cache.clear()  # bounded memory, as the pieces' cache
            cache.update(fresh)
            shapes = [s or fresh[w] for w, s in zip(words, shapes)]
        return in_sentence(shapes) if sentence else shapes

    def document_contexts(self, sentences: Sequence[Sentence]) -> list[Context] | None:
        """Each sentence's neighbours in its document, for an encoder with ``context_tokens`` (else None):
        how training, evaluation and the benchmarks give a model the context it was trained with."""
        return document_contexts(sentences, self.context_tokens) if self.context_tokens else None

    def _context_side(self, words: Sequence[str], budget: int) -> list[tuple[tuple[int, ...], int]]:
        """Pieces and shape id of whole context words, nearest first, up to ``budget`` tokens in all."""
        kept: list[tuple[tuple[int, ...], int]] = []
        used = 0
        shapes = self.word_shapes(words, sentence=False) if self.casing else [0] * len(words)
        for p, shape in zip(self.word_pieces(words), shapes):
            if used + len(p) > budget:
                break
            used += len(p)
            kept.append((p, shape))
        return kept

    def _context(self, pieces: list[tuple[int, ...]], context: Context | None
                 ) -> tuple[list[int], list[int], list[int], list[int]]:
        """Tokens and shapes of the context kept left and right of a sentence: at most context_tokens a side,
        and half of what the window leaves each."""
        if not context or not self.context_tokens:
            return [], [], [], []
        budget = min(self.context_tokens, (self.text_budget - sum(len(p) for p in pieces)) // 2)
        if budget <= 0:
            return [], [], [], []
        left = self._context_side(list(context[0][-budget:])[::-1], budget)[::-1]  # a word is >= 1 token
        right = self._context_side(list(context[1][:budget]), budget)
        return ([t for p, _ in left for t in p], [s for p, s in left for _ in p],
                [t for p, _ in right for t in p], [s for p, s in right for _ in p])

    def encode(self, words: list[str] | tuple[str, ...], label_ids: list[int] | None = None,
               shapes: Sequence[int] | None = None,
               context: Context | None = None) -> list[Window]:
        """Windows of one sentence. With ``label_ids`` (one per word), the first piece of each word carries it.
        ``shapes`` replaces the words' own shape ids (training's lowercase augmentation); ``context``: the
        words before and after the sentence in its document (kept with a ``context_tokens`` encoder only)."""
        pieces = self.word_pieces(words)
        if label_ids is not None and len(label_ids) != len(pieces):
            raise ValueError(f"{len(label_ids)} labels for {len(pieces)} words")
        if not self.casing:
            shapes = None
        elif shapes is None:
            shapes = self.word_shapes(words)
        head_len = len(self.head_ids)
        spans = self.spans(pieces)
        left, left_shapes, right, right_shapes = self._context(pieces, context) if len(spans) == 1 else ([], [], [], [])
        windows = []
        for s, e, own_s, own_e in spans:
            ids = list(self.head_ids) + left
            token_word = [-1] * (head_len + len(left))
            labels = [IGNORE_INDEX] * (head_len + len(left)) if label_ids is not None else None
            for w in range(s, e):
                ids.extend(pieces[w])
                token_word.extend([w] * len(pieces[w]))
                if labels is not None:
                    labels.append(label_ids[w])  # type: ignore[index]
                    labels.extend([IGNORE_INDEX] * (len(pieces[w]) - 1))
            ids.extend(right)
            ids.append(self.sep_id)
            token_word.extend([-1] * (len(right) + 1))
            if labels is not None:
                labels.extend([IGNORE_INDEX] * (len(right) + 1))
            types = [0] * head_len + [self.text_type] * (len(ids) - head_len)
            shape_row = None
            if shapes is not None:
                middle = token_word[head_len + len(left) : len(token_word) - len(right) - 1]
                shape_row = [0] * head_len + left_shapes + [shapes[w] for w in middle] + right_shapes + [0]
            windows.append(Window(ids, types, token_word, s, e, own_s, own_e, labels, shape_row))
        return windows


def batch_arrays(windows: list[Window], pad_id: int, skip: int = 0) -> dict[str, np.ndarray]:
    """Pad windows to the longest into int64 arrays, the inputs of the ONNX graph (token_type_ids included).

    ``skip`` drops the first tokens of every window: a model with prompt-isolated
    attention has the ``[CLS] prompt [SEP]`` head cached and takes the text part only.
    """
    width = max(len(w.input_ids) for w in windows) - skip
    n = len(windows)
    ids = np.full((n, width), pad_id, dtype=np.int64)
    types = np.zeros((n, width), dtype=np.int64)
    mask = np.zeros((n, width), dtype=np.int64)
    for i, w in enumerate(windows):
        k = len(w.input_ids) - skip
        ids[i, :k] = w.input_ids[skip:]
        types[i, :k] = w.token_type_ids[skip:]
        mask[i, :k] = 1
    out = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
    if windows and windows[0].word_shape is not None:
        shapes = np.zeros((n, width), dtype=np.int64)
        for i, w in enumerate(windows):
            shapes[i, : len(w.input_ids) - skip] = w.word_shape[skip:]  # type: ignore[index]
        out["word_shape"] = shapes
    return out


def piece_spans(token_word: list[int], skip: int, own_start: int, own_end: int) -> dict[int, tuple[int, int]]:
    """Token span [a, b) of each owned word in a window's model row (the row starts ``skip`` tokens in).

    A word's pieces are contiguous (``encode`` lays them out so): one pass over the
    tokens instead of a mask per word, which cost ~40 µs a CoNLL sentence.
    """
    spans: dict[int, tuple[int, int]] = {}
    for j in range(skip, len(token_word)):
        w = token_word[j]
        if own_start <= w < own_end:
            a = spans[w][0] if w in spans else j - skip
            spans[w] = (a, j - skip + 1)
    return spans


@dataclass(frozen=True)
class CallCost:
    """What one model call costs besides its padded tokens, counted in padded tokens.

    Inside a batch, texts are sorted by length and cut into calls; each call pads to
    its longest text. More calls mean less padding but more fixed cost, and the
    balance is hardware-specific. Defaults: int8 MiniLM-L6, 1 ORT thread, this
    project's 2-core Xeon (``bench/batching.py`` fits them for another machine):
    a call costs 0.59 ms + 0.19 ms a row + 0.09 ms a padded token.
    """

    per_call: float = 6.5
    per_row: float = 2.1

    def __post_init__(self) -> None:
        if self.per_call < 0 or self.per_row < 0:
            raise ConfigError(f"call cost: per_call and per_row must be >= 0, got {self.per_call}, {self.per_row}")


DEFAULT_CALL_COST = CallCost()


def default_call_cost(gpu: bool) -> CallCost | None:
    """How to cut a batch into model calls on this device: on a CPU the cost model above; on a GPU
    ``None``, each call filled up to the token budget. On an H200 (fp16 CoNLL artifact, CUDA
    provider, ``bench/batching.py``) one call took 1.12 ms whatever its size up to 32 rows x 64
    tokens, so every cut only adds a call: CoNLL test in arrival-order chunks of 32, 7,503
    sentences/s one call per chunk against 2,369 cut by the CPU's model."""
    return None if gpu else DEFAULT_CALL_COST


_MAX_GROUP = 256  # past this many rows a call's fixed cost is spread too thin to matter


def token_budget_batches(
    lengths: list[int], max_tokens: int, max_items: int | None = None, cost: CallCost | None = DEFAULT_CALL_COST
) -> list[list[int]]:
    """Group item indices into model calls: sorted by length, cut where the cost model says.

    Each call holds at most ``max_items`` items and (items x longest) <= ``max_tokens``
    (the cap keeps a batch of long documents from blowing up memory or latency). Among
    those cuts of the sorted order, the one with the least modelled time wins: exact
    dynamic programming over per_call + rows x (per_row + longest). ``cost=None``
    fills each call up to the caps instead. Measured, int8 on 1 thread, CoNLL test in
    arrival-order chunks of 8 / 32 / 64: ``bench/batching.py``.
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    if cost is None or len(lengths) < 2:  # one text (the common request) has nothing to cut: skip numpy
        batches: list[list[int]] = []
        for i in order:
            if batches and (len(batches[-1]) + 1) * lengths[i] <= max_tokens and not (
                max_items and len(batches[-1]) >= max_items
            ):
                batches[-1].append(i)
            else:
                batches.append([i])
        return batches
    s = np.asarray([lengths[i] for i in order], dtype=np.float64)
    n = len(s)
    best = np.zeros(n + 1)
    cut = np.zeros(n + 1, dtype=np.int64)
    cap = min(max_items or _MAX_GROUP, _MAX_GROUP)
    for j in range(1, n + 1):  # best[j]: cheapest cover of the j shortest; the last call is items [i, j)
        rows = min(cap, j, max(1, int(max_tokens // max(s[j - 1], 1.0))))
        k = np.arange(1, rows + 1)  # candidate sizes of the last call
        total = best[j - k] + cost.per_call + k * (cost.per_row + s[j - 1])
        m = int(np.argmin(total))
        best[j], cut[j] = total[m], j - k[m]
    batches = []
    j = n
    while j > 0:
        batches.append(order[cut[j] : j])
        j = int(cut[j])
    return batches[::-1]
