"""Label-semantic prompts: the prompt's own entity types decide what a request tags.

A model with the ``types`` head has no fixed label set. Each entity type named in the prompt
(``labels``: name -> description) gets a vector pooled from the prompt's hidden states over
that type's ``NAME (description)`` span in the rendered text, and a word's score for ``B-t`` /
``I-t`` is a learned product of its hidden state with type ``t``'s vector (plus a learned ``O``
score). The labels of a request are therefore ``O, B-t1, I-t1, B-t2, ...`` in the prompt's order.

Because the prompt attends only to itself, everything the text needs from it -- keys and values
in every layer, the type vectors -- depends on the prompt alone: it is computed once per
distinct prompt (``PromptCache``) and reused by every text tagged under it.

This module is shared by training, export and serving (it never imports torch): the same
renderer, the same spans, the same fingerprint everywhere, so a request's prompt is the prompt
training would have built from the same spec.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from . import config as cfg
from .errors import ConfigError, InputError
from .labels import OUTSIDE, LabelMap
from .pipeline import PROMPT_GROUP
from .prompt import LABELS_PLACEHOLDER, PromptDetails, PromptSpec, describe_labels, fingerprint, render

HEADS = ("fixed", "types")  # the manifest's encoding.head; manifests without the key are fixed
DEFAULT_MAX_TYPES = 32
PREPARED_ENTRIES = 256  # request prompts remembered prepared (a few KB each: ids and a types x tokens mask)
TYPES_LINE = "Types: "  # added where a prompt has no {labels} placeholder, so every type has a span

PAD_BIAS = -1e4  # the logit of a padded type slot in a batch that mixes prompts: no probability after softmax

# What a backend computes from a prompt (keys, values, type_keys, type_bias as numpy arrays),
# and how it tags a batch of text windows with that encoding (or with one per row: ``rows_encoding``).
PromptEncodeFn = Callable[[np.ndarray, np.ndarray], dict[str, np.ndarray]]
TagFn = Callable[[dict[str, np.ndarray], dict[str, np.ndarray]], np.ndarray]
# Told of every cache lookup: hit or not, seconds spent encoding (0 on a hit), entries and bytes held after it.
CacheObserver = Callable[[bool, float, int, int], None]


def _parts(spec: PromptSpec) -> list[str]:
    d = spec.details
    return [spec.role, spec.task, *spec.requirements, *d.steps, *d.examples, *d.tips]


_SENTINEL = "\x00labels\x00"


def render_typed(spec: PromptSpec, types: Sequence[str] | None = None) -> tuple[str, list[tuple[int, int]]]:
    """The rendered prompt and, per type, the character span of its ``NAME (description)``.

    The text is ``prompt.render``'s (what a fixed-head model sees), with a ``Types:`` line added
    when no part says ``{labels}``: a type the text never names could not be pooled. The spans are
    those of the first place the label list is put (found by rendering with a marker there, so a
    role or an example quoting the same words cannot be taken for it).
    """
    types = tuple(types) if types is not None else tuple(spec.labels)
    text = render(spec, types)
    spans, at = [], 0
    for i, t in enumerate(types):
        d = " ".join(spec.labels.get(t, "").split())
        piece = f"{t} ({d})" if d else t
        at += 2 if i else 0  # ", "
        spans.append((at, at + len(piece)))
        at += len(piece)
    label_text = describe_labels(types, spec.labels)
    label_text = " ".join(label_text.split())  # as render() leaves it
    if not any(LABELS_PLACEHOLDER in p for p in _parts(spec)):
        text = f"{text}\n{TYPES_LINE}{label_text}"
        start = len(text) - len(label_text)
    else:
        marked = render(_marked(spec), ())
        start = marked.index(_SENTINEL)
        if marked.replace(_SENTINEL, label_text) != text:  # a guard against render() and this drifting apart
            raise ConfigError("prompt: cannot locate the label list in the rendered text")
    return text, [(a + start, b + start) for a, b in spans]


def _marked(spec: PromptSpec) -> PromptSpec:
    """``spec`` with every {labels} replaced by a marker (no whitespace, so render() keeps it whole)."""
    def mark(x: str) -> str:
        return x.replace(LABELS_PLACEHOLDER, _SENTINEL)

    d = spec.details
    return dataclasses.replace(
        spec, role=mark(spec.role), task=mark(spec.task), requirements=tuple(mark(r) for r in spec.requirements),
        details=PromptDetails(tuple(mark(x) for x in d.steps), tuple(mark(x) for x in d.examples),
                              tuple(mark(x) for x in d.tips)))


@dataclass(frozen=True)
class PreparedPrompt:
    """A prompt ready for a ``types`` model: its text, ids, type spans and the labels it defines."""

    spec: PromptSpec
    types: tuple[str, ...]
    text: str
    head_ids: tuple[int, ...]  # [CLS] prompt [SEP]
    type_mask: np.ndarray  # [types, head tokens] float32, each row averages its type's span

    @functools.cached_property  # read for every text of a batch: computed once
    def fingerprint(self) -> str:
        return fingerprint(self.text)

    @functools.cached_property
    def key(self) -> tuple[str, tuple[str, ...]]:
        """Cache identity: the rendered text and the types in order (the text alone names them too)."""
        return self.fingerprint, self.types

    @functools.cached_property
    def labels(self) -> LabelMap:
        return LabelMap.from_types(self.types)

    @property
    def tokens(self) -> int:
        return len(self.head_ids) - 2


@dataclass(frozen=True)
class PromptLimits:
    """What a ``types`` model accepts, from its manifest."""

    max_prompt_tokens: int
    max_types: int = DEFAULT_MAX_TYPES

    @classmethod
    def of(cls, encoding: Any) -> PromptLimits:
        """The limits a manifest's ``encoding`` records."""
        return cls(encoding.max_prompt_tokens, encoding.max_types)


def default_prompt(folder: Any, recorded_fingerprint: str) -> PromptSpec:
    """The default prompt of a types model or artifact folder, checked against the fingerprint its manifest
    recorded: re-rendered here, it must be the very text the model was trained with."""
    from pathlib import Path

    from . import constants as C
    from .errors import ArtifactError

    spec = PromptSpec.from_yaml(Path(folder) / C.PROMPT_SPEC)
    text, _ = render_typed(spec)
    if fingerprint(text) != recorded_fingerprint:
        raise ArtifactError(f"{folder}: {C.PROMPT_SPEC} renders to another prompt than the model was trained with "
                            f"(fingerprint {fingerprint(text)[:12]}, manifest {recorded_fingerprint[:12]}): train/serve skew")
    return spec


def check_types(spec: PromptSpec, max_types: int, where: str = "prompt") -> None:
    """Entity types a request may name: 1..max_types, no two alike ignoring case."""
    names = list(spec.labels)
    if not names:
        raise InputError(f"{where}.labels: a prompt needs at least one entity type (name: description)")
    if len(names) > max_types:
        raise InputError(f"{where}.labels: {len(names)} entity types, more than the {max_types} this model takes")
    seen: dict[str, str] = {}
    for n in names:
        if n == OUTSIDE:
            raise InputError(f"{where}.labels.{n}: {OUTSIDE!r} is the outside tag, not a type name")
        if n.lower() in seen:
            raise InputError(f"{where}.labels.{n}: duplicate type name (also {seen[n.lower()]!r})")
        seen[n.lower()] = n


def prepare(spec: PromptSpec, tokenizer: Tokenizer, cls_id: int, sep_id: int, limits: PromptLimits,
            where: str = "prompt") -> PreparedPrompt:
    """Render, tokenize and locate the types of one prompt; a prompt the model cannot take raises InputError."""
    check_types(spec, limits.max_types, where)
    for name in spec.labels:
        if not tokenizer.encode(name, add_special_tokens=False).ids:
            raise InputError(f"{where}.labels.{name}: the type name is no token for this tokenizer")
    types = tuple(spec.labels)
    text, spans = render_typed(spec, types)
    enc = tokenizer.encode(text, add_special_tokens=False)
    if len(enc.ids) > limits.max_prompt_tokens:
        raise InputError(f"{where}: renders to {len(enc.ids)} tokens, more than the {limits.max_prompt_tokens} this "
                         f"model's positions leave beside a text window (shorten details.examples first)")
    head = (cls_id, *enc.ids, sep_id)
    offsets = np.asarray(enc.offsets, dtype=np.int64).reshape(-1, 2)
    bounds = np.asarray(spans, dtype=np.int64)
    inside = (offsets[None, :, 0] < bounds[:, 1:2]) & (offsets[None, :, 1] > bounds[:, 0:1])  # [types, tokens]
    counts = inside.sum(axis=1)
    if not counts.all():
        raise InputError(f"{where}.labels.{types[int(np.argmin(counts))]}: renders to no tokens")
    mask = np.zeros((len(types), len(head)), dtype=np.float32)
    mask[:, 1:-1] = inside / counts[:, None]
    return PreparedPrompt(spec, types, text, head, mask)


def spec_from_request(data: Any, where: str = "prompt") -> PromptSpec:
    """A client's prompt (the fields of ``prompts/*.yaml`` as a JSON object) as a PromptSpec.

    ``labels`` may be a mapping or a list of ``{"name", "description"}`` (a list can say a
    name twice, which JSON objects silently cannot). Unknown fields are refused.
    """
    if not isinstance(data, Mapping):
        raise InputError(f"{where}: expected an object with role, task, requirements, details, labels")
    data = dict(data)
    labels = data.get("labels")
    if isinstance(labels, list):
        pairs: dict[str, str] = {}
        for i, item in enumerate(labels):
            if not isinstance(item, Mapping) or set(item) != {"name", "description"}:
                raise InputError(f"{where}.labels[{i}]: expected {{\"name\": ..., \"description\": ...}}")
            name = item["name"]
            if name in pairs:
                raise InputError(f"{where}.labels.{name}: duplicate type name")
            pairs[name] = item["description"]
        data["labels"] = pairs
    if isinstance(data.get("requirements"), str):
        data["requirements"] = [data["requirements"]]
    try:
        return cfg.from_dict(PromptSpec, data, where)
    except ConfigError as exc:
        msg = str(exc)
        raise InputError(msg if msg.startswith(where) else f"{where}.{msg}") from None


def narrow(spec: PromptSpec, entity_types: Sequence[str], where: str = "entity_types") -> PromptSpec:
    """The same prompt naming only ``entity_types`` (in that order): what the model is asked to tag."""
    unknown = [t for t in entity_types if t not in spec.labels]
    if unknown:
        raise InputError(f"{where}: unknown type {unknown[0]!r} (the prompt names {', '.join(spec.labels)})")
    if not entity_types:
        raise InputError(f"{where}: name at least one type")
    return dataclasses.replace(spec, labels={t: spec.labels[t] for t in dict.fromkeys(entity_types)})


def with_types(spec: PromptSpec, labels: Mapping[str, str], details: PromptDetails | None = None) -> PromptSpec:
    """``spec`` with other types (and optionally other details): how training draws its prompts."""
    return dataclasses.replace(spec, labels=dict(labels), details=spec.details if details is None else details)


@dataclass(frozen=True)
class CacheStats:
    entries: int
    bytes: int
    hits: int
    misses: int
    evictions: int
    encode_seconds: float
    max_entries: int
    max_bytes: int


class Lru:
    """Least recently used first out, bounded by entries and by bytes; thread-safe."""

    def __init__(self, max_entries: int, max_bytes: int | None = None) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._items: OrderedDict[Any, tuple[Any, int]] = OrderedDict()
        self.bytes = 0
        self.lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Any) -> Any:
        """The value under ``key`` (now the most recent), or None."""
        with self.lock:
            found = self._items.get(key)
            if found is None:
                return None
            self._items.move_to_end(key)
            return found[0]

    def put(self, key: Any, value: Any, size: int = 0) -> int:
        """Keep ``value`` unless it alone is over the byte budget; returns how many entries it evicted."""
        with self.lock:
            if (self.max_bytes is not None and size > self.max_bytes) or key in self._items:
                return 0
            self._items[key] = (value, size)
            self.bytes += size
            evicted = 0
            while len(self._items) > self.max_entries or (self.max_bytes is not None and self.bytes > self.max_bytes):
                _, (_, dropped) = self._items.popitem(last=False)
                self.bytes -= dropped
                evicted += 1
            return evicted


class PromptCache:
    """Encodings of recent prompts, least recently used evicted first, bounded by entries and bytes.

    A full cache evicts; it never refuses. An encoding larger than the whole byte budget is
    returned without being kept, so a flood of distinct (or huge) prompts costs encode time,
    never memory. Thread-safe: the service's workers tag from threads.
    """

    def __init__(self, encode: PromptEncodeFn, max_entries: int = 256, max_bytes: int = 256 << 20,
                 observer: CacheObserver | None = None) -> None:
        if max_entries < 1 or max_bytes < 1:
            raise ConfigError(f"prompt cache: max_entries and max_bytes must be >= 1, got {max_entries}, {max_bytes}")
        self.encode = encode
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.observer = observer  # the service's /metrics
        self._lru = Lru(max_entries, max_bytes)
        self.hits = self.misses = self.evictions = 0
        self.encode_seconds = 0.0

    def get(self, prompt: PreparedPrompt) -> dict[str, np.ndarray]:
        found = self._lru.get(prompt.key)
        hit, seconds, evicted = found is not None, 0.0, 0
        if not hit:  # encoded outside any lock: other prompts' requests go on meanwhile
            t0 = time.perf_counter()
            found = self.encode(np.asarray([prompt.head_ids], dtype=np.int64), prompt.type_mask)
            seconds = time.perf_counter() - t0
            evicted = self._lru.put(prompt.key, found, sum(a.nbytes for a in found.values()))
        with self._lru.lock:
            self.hits += hit
            self.misses += not hit
            self.evictions += evicted
            self.encode_seconds += seconds
            entries, held = len(self._lru), self._lru.bytes
        if self.observer is not None:
            self.observer(hit, seconds, entries, held)
        return found

    def stats(self) -> CacheStats:
        with self._lru.lock:
            return CacheStats(len(self._lru), self._lru.bytes, self.hits, self.misses, self.evictions,
                              round(self.encode_seconds, 6), self.max_entries, self.max_bytes)


def as_rows(encoding: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One prompt's encoding in the per-row form a tagger graph takes, as one row every text shares
    (views, no copy): keys/values ``[1, layers, heads, tokens, dim]``, type keys ``[1, labels, hidden]``,
    type bias ``[1, labels]`` and a ``prompt_mask`` of ones."""
    if encoding["keys"].ndim == 5:
        return encoding
    return {"keys": encoding["keys"][None], "values": encoding["values"][None],
            "type_keys": encoding["type_keys"][None], "type_bias": encoding["type_bias"][None],
            "prompt_mask": np.ones((1, encoding["keys"].shape[2]), dtype=np.int64)}


def rows_encoding(encodings: Sequence[dict[str, np.ndarray]], rows: np.ndarray) -> dict[str, np.ndarray]:
    """Several prompts' encodings as one per row (``rows[i]``: the index of row i's prompt).

    Shorter prompts are padded to the longest (``prompt_mask`` 0 there) and fewer types to the most
    (zero keys, bias PAD_BIAS): a row's logits past its own labels carry no probability, and its text
    sits after its own prompt's positions, so every row gets what its prompt alone would give it.
    """
    first = encodings[0]
    layers, heads, _, dim = first["keys"].shape
    tokens = max(e["keys"].shape[2] for e in encodings)
    labels = max(e["type_bias"].shape[0] for e in encodings)
    g = len(encodings)
    kv_dtype, t_dtype = first["keys"].dtype, first["type_keys"].dtype
    keys = np.zeros((g, layers, heads, tokens, dim), dtype=kv_dtype)
    values = np.zeros_like(keys)
    mask = np.zeros((g, tokens), dtype=np.int64)
    type_keys = np.zeros((g, labels, first["type_keys"].shape[1]), dtype=t_dtype)
    type_bias = np.full((g, labels), PAD_BIAS, dtype=first["type_bias"].dtype)
    for i, e in enumerate(encodings):
        n, k = e["keys"].shape[2], e["type_bias"].shape[0]
        keys[i, :, :, :n], values[i, :, :, :n], mask[i, :n] = e["keys"], e["values"], 1
        type_keys[i, :k], type_bias[i, :k] = e["type_keys"], e["type_bias"]
    rows = np.asarray(rows)
    return {"keys": keys[rows], "values": values[rows], "type_keys": type_keys[rows], "type_bias": type_bias[rows],
            "prompt_mask": mask[rows]}


class PromptedModel:
    """A ``types`` model behind one TaggingPipeline per prompt, sharing the encoder, the backend and the cache.

    The text windows of a ``types`` model do not depend on the prompt (a fixed text budget; the
    backend places the text after whatever head it is given), so every prompt's pipeline is the
    same pipeline with that prompt's labels and encoding.
    """

    def __init__(self, encoder: Any, encode: PromptEncodeFn, tag: TagFn, default: PromptSpec, limits: PromptLimits,
                 cache_entries: int = 256, cache_bytes: int = 256 << 20, mixes: bool = True,
                 **pipeline_kwargs: Any) -> None:
        """Over any backend's two calls (ONNX Runtime, PyTorch); ``pipeline_kwargs`` go to the shared pipeline.
        ``mixes``: ``tag`` takes an encoding per row, so texts of different prompts share a model call."""
        from .pipeline import TaggingPipeline

        self.mixes = mixes
        self.base = TaggingPipeline(encoder, LabelMap.from_types(tuple(default.labels)), _no_prompt, head_cached=True,
                                    **pipeline_kwargs)
        self.tag = tag
        self.limits = limits
        self.default_spec = default
        self.cache = PromptCache(encode, cache_entries, cache_bytes)
        self.default = self.prepare(default, "default prompt")
        # Requests repeat their prompts: the prepared prompt (rendered, tokenized, type mask) of each recent
        # request prompt, by its JSON, so a repeated one skips parsing and tokenizing too.
        self._prepared = Lru(PREPARED_ENTRIES)

    def prepared(self, key: Any, make: Callable[[], PreparedPrompt]) -> PreparedPrompt:
        """``make()``, remembered under ``key`` (the last PREPARED_ENTRIES keys); a bad prompt raises every time."""
        found = self._prepared.get(key)
        if found is None:
            found = make()
            self._prepared.put(key, found)
        return found

    def prepare(self, spec: PromptSpec, where: str = "prompt") -> PreparedPrompt:
        enc = self.base.encoder
        return prepare(spec, enc.tokenizer, enc.cls_id, enc.sep_id, self.limits, where)

    def pipeline(self, prompt: PreparedPrompt | None = None) -> Any:
        """The TaggingPipeline of one prompt (the default when None); its encoding comes from the cache."""
        prompt = prompt or self.default
        encoding = self.cache.get(prompt)
        return self._view(lambda batch: self.tag(batch, encoding), prompt.labels)

    def _view(self, logits_fn: Callable[[dict[str, np.ndarray]], np.ndarray], labels: LabelMap) -> Any:
        """The shared pipeline with its own logits function and labels (no copy of anything it holds)."""
        import copy

        view = copy.copy(self.base)
        view.labels = labels
        view.logits_fn = logits_fn
        return view

    def entities(self, texts: Sequence[str], prompts: Sequence[PreparedPrompt | None], strategy: str = "first",
                 min_score: float = 0.0) -> list[list[dict[str, Any]]]:
        """Entities of each text under its own prompt (None: the default). Texts of different prompts
        are batched together, each row fed its own prompt's encoding, so a batch that mixes prompts
        costs the model calls one prompt would (a backend that cannot mix runs prompt by prompt)."""
        if len(texts) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts for {len(texts)} texts")
        chosen = [p or self.default for p in prompts]
        distinct = list({p.key: p for p in chosen}.values())
        if len(distinct) == 1:
            return self.pipeline(distinct[0]).entities(texts, strategy, min_score)
        index = {p.key: i for i, p in enumerate(distinct)}
        groups = [index[p.key] for p in chosen]
        if not self.mixes:
            out: list[list[dict[str, Any]]] = [[] for _ in texts]
            for g, prompt in enumerate(distinct):
                idx = [i for i, x in enumerate(groups) if x == g]
                for i, ents in zip(idx, self.pipeline(prompt).entities([texts[i] for i in idx], strategy, min_score)):
                    out[i] = ents
            return out
        encodings = [self.cache.get(p) for p in distinct]

        def logits(batch: dict[str, np.ndarray]) -> np.ndarray:
            used, rows = np.unique(batch[PROMPT_GROUP], return_inverse=True)
            if len(used) == 1:
                return self.tag(batch, encodings[int(used[0])])
            return self.tag(batch, rows_encoding([encodings[int(u)] for u in used], rows))

        view = self._view(logits, self.default.labels)
        return view.entities(texts, strategy, min_score, groups=groups, group_labels=[p.labels for p in distinct])


def _no_prompt(batch: dict[str, np.ndarray]) -> np.ndarray:
    raise RuntimeError("a types model's shared pipeline runs only through PromptedModel.pipeline(prompt)")
