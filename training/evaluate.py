"""Entity-level evaluation (seqeval) of a model folder or an ONNX artifact, by one code path.

    promptbert evaluate runs/model --data path/to/conll2003 --split test
    promptbert evaluate artifacts/model --variant int8 --data path/to/conll2003 --split test
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from promptbert import constants as C
from promptbert.data import Sentence, split_words
from promptbert.encoding import PromptEncoder, load_tokenizer
from promptbert.errors import ArtifactError
from promptbert.labels import LabelMap
from promptbert.manifest import ModelManifest
from promptbert.pipeline import TaggingPipeline
from promptbert.tagger import Tagger


def report(gold: list[list[str]], pred: list[list[str]]) -> dict[str, Any]:
    """seqeval's classification_report (per type, micro/macro/weighted) plus token accuracy."""
    from seqeval.metrics import accuracy_score, classification_report

    rep = classification_report(gold, pred, output_dict=True, zero_division=0)
    out: dict[str, Any] = {
        k: {m: (float(v) if m != "support" else int(v)) for m, v in row.items()} for k, row in rep.items()
    }
    out["token_accuracy"] = float(accuracy_score(gold, pred))
    out["sentences"] = len(gold)
    return out


def evaluate_sentences(tagger: Tagger, sentences: list[Sentence], strategy: str | None = None) -> dict[str, Any]:
    """The report on the gold words (``strategy`` None: the tagger's default aggregation); a model trained
    with document context is given each sentence's neighbours, as it was in training."""
    contexts = tagger.pipeline.encoder.document_contexts(sentences)
    pred = [[t for t, _ in row] for row in tagger.word_tags([s.words for s in sentences], strategy, contexts)]
    return report([list(s.tags) for s in sentences], pred)


def _entity_scores(gold: list[list[str]], pred: list[list[str]]) -> dict[str, float]:
    """Entity-level F1, precision and recall (seqeval, micro over types)."""
    from seqeval.metrics import f1_score, precision_score, recall_score

    return {"f1": float(f1_score(gold, pred)), "precision": float(precision_score(gold, pred)),
            "recall": float(recall_score(gold, pred))}


def obedience(tagger: Tagger, sentences: list[Sentence], draws: int = 5, seed: int = 0,
              strategy: str | None = None) -> dict[str, Any]:
    """Does a types model tag what its prompt names, and only that?

    The full prompt (all of the tagger's types) against ``draws`` prompts naming a random half of
    them (distinct halves while there are that many): F1 on the named types under each (gold entities of other types count as O), the same
    types' F1 under the full prompt, and how many predicted entities have a type the prompt did not
    name (an obedient model: none).
    """
    import random

    from seqeval.metrics import f1_score
    from seqeval.metrics.sequence_labeling import get_entities

    from promptbert.data import only_types

    rng = random.Random(seed)
    types = list(tagger.entity_types)
    words = [s.words for s in sentences]
    full = [[t for t, _ in row] for row in tagger.word_tags(words, strategy)]
    half = max(1, len(types) // 2)
    subsets: list[list[str]] = []  # distinct draws while there are enough (4 types: 6 halves)
    for _ in range(draws * 20):
        named = rng.sample(types, half)
        if sorted(named) not in [sorted(x) for x in subsets]:
            subsets.append(named)
        if len(subsets) == draws:
            break
    rows = []
    for named in subsets:
        gold = [list(s.tags) for s in only_types(sentences, named)]
        under = tagger.under(None, named) if tagger.prompted is not None else tagger
        pred = [[t for t, _ in row] for row in under.word_tags(words, strategy)]
        full_named = [[t if t == "O" or t[2:] in named else "O" for t in row] for row in full]
        stray = sum(1 for row in pred for etype, _, _ in get_entities(row) if etype not in named)
        # Precision and recall say how a half prompt differs: a named type given to mentions of a type it
        # left out (precision), or mentions of named types it no longer tags (recall).
        under_half, under_full = _entity_scores(gold, pred), _entity_scores(gold, full_named)
        rows.append({"types": named, **under_half, **{f"{k}_full_prompt": v for k, v in under_full.items()},
                     "unnamed_entities": stray})
    return {"types": types, "f1_full": float(f1_score([list(s.tags) for s in sentences], full)), "draws": rows,
            "sentences": len(sentences)}


# How a document's sentences are joined into one text: one a line, run together, or run together and
# hard-wrapped at WRAP characters (a line break then falls inside sentences).
AS_TEXT = {"sentences": None, "documents": "\n", "paragraphs": " ", "wrapped": " "}
WRAP = 72


def evaluate_as_text(tagger: Tagger, sentences: list[Sentence], strategy: str | None = None,
                     unit: str = "sentences") -> dict[str, Any]:
    """The same report through the path the service takes for raw text. Each sentence (``unit``
    "sentences"), or each document's sentences one a line ("documents"), in one paragraph
    ("paragraphs") or in one paragraph wrapped at WRAP characters ("wrapped"), is joined into a
    text with spaces between words, split again by ``split_words``, tagged, and its entities are
    mapped back onto the gold words by character offsets (an entity's
    first word B-, the rest I-; a word another entity already took stays with it). Against
    evaluate_sentences, the difference is what the raw-text path costs: the word splitter, and for
    documents, sentence splitting and context. ``resplit`` is the share of texts whose words split
    back exactly into the gold words."""
    if unit not in AS_TEXT:
        raise ValueError(f"unit: one of {', '.join(AS_TEXT)}, got {unit!r}")
    groups: list[list[Sentence]] = []
    for s in sentences:
        if unit != "sentences" and groups and groups[-1][-1].doc == s.doc:
            groups[-1].append(s)
        else:
            groups.append([s])
    texts, spans = [], []
    for group in groups:
        text, span = "", []
        for k, s in enumerate(group):
            text += AS_TEXT[unit] if k else ""
            for n, w in enumerate(s.words):
                text += " " if n else ""
                span.append((len(text), len(text) + len(w)))
                text += w
        if unit == "wrapped":  # a space before a word that would pass the width becomes a line break
            chars, line_start = list(text), 0
            for a, b in span[1:]:
                if b - line_start > WRAP:
                    chars[a - 1], line_start = "\n", a
            text = "".join(chars)
        texts.append(text)
        spans.append(span)
    pred = []
    for group, words, ents in zip(groups, spans, tagger.predict(texts, strategy)):
        tags = ["O"] * len(words)
        for e in ents:
            first = True
            for i, (a, b) in enumerate(words):
                if a < e["end"] and e["start"] < b and tags[i] == "O":
                    tags[i] = f"{'B' if first else 'I'}-{e['entity_group']}"
                    first = False
        at = 0
        for s in group:
            pred.append(tags[at:at + len(s.words)])
            at += len(s.words)
    out = report([list(s.tags) for s in sentences], pred)
    same = sum([w for w, _, _ in split_words(t)] == [w for s in g for w in s.words] for t, g in zip(texts, groups))
    out["resplit"] = same / max(len(groups), 1)
    out["texts"] = len(groups)
    return out


def format_report(rep: dict[str, Any], title: str = "") -> str:
    """The classic classification_report table."""
    rows = [k for k in rep if isinstance(rep[k], dict)]
    types = [k for k in rows if not k.endswith("avg")]
    avgs = [k for k in rows if k.endswith("avg")]
    width = max(len(k) for k in rows) + 2
    lines = [title] if title else []
    lines.append(f"{'':<{width}}{'precision':>10}{'recall':>10}{'f1-score':>10}{'support':>10}")
    for group in (types, avgs):
        for k in group:
            r = rep[k]
            lines.append(f"{k:<{width}}{r['precision']:>10.4f}{r['recall']:>10.4f}{r['f1-score']:>10.4f}{r['support']:>10d}")
        lines.append("")
    lines.append(f"token accuracy: {rep['token_accuracy']:.4f}  sentences: {rep['sentences']}")
    if "resplit" in rep:
        lines.append(f"as text: {rep['resplit']:.2%} of the {rep['texts']} texts split back into their gold words")
    return "\n".join(lines)


def torch_logits_fn(model: Any) -> Any:
    """Logits function over a PyTorch model (same inputs as the ONNX graph)."""
    import torch

    device = next(model.parameters()).device

    def run(batch: dict[str, np.ndarray]) -> np.ndarray:
        with torch.inference_mode():
            inputs = {k: torch.from_numpy(v).to(device) for k, v in batch.items()}
            return model(**inputs).logits.float().cpu().numpy()

    return run


def torch_pipeline(model: Any, encoder: PromptEncoder, labels: LabelMap, **kw: Any) -> TaggingPipeline:
    from .cached import PromptCachedTagger

    cached = isinstance(model, PromptCachedTagger)
    return TaggingPipeline(encoder, labels, torch_logits_fn(model), head_cached=cached, **kw)


def load_model_folder(folder: str | Path) -> tuple[Any, PromptEncoder, LabelMap, ModelManifest]:
    """A folder written by ``promptbert train``: PyTorch model, encoder (stored prompt text), labels, manifest."""
    from transformers import AutoModelForTokenClassification

    folder = Path(folder)
    if not folder.is_dir():
        raise ArtifactError(f"{folder}: model folder not found")
    manifest = ModelManifest.read(folder)
    for name in (C.LABELS, C.PROMPT_TEXT, "config.json"):
        if not (folder / name).is_file():
            raise ArtifactError(f"{folder}: missing {name} (not a complete promptbert model folder)")
    labels = LabelMap.load(folder / C.LABELS)
    tok, specials = load_tokenizer(folder)
    enc = manifest.encoding
    encoder = PromptEncoder(tok, (folder / C.PROMPT_TEXT).read_text(encoding="utf-8"), enc.max_length, enc.stride, specials,
                            text_tokens=enc.text_tokens or None, casing=enc.casing, context_tokens=enc.context_tokens)
    if enc.head == "types":
        from .typed import TypedTagger

        try:
            return TypedTagger.load(folder, enc.casing).eval(), encoder, labels, manifest
        except (OSError, ValueError) as exc:
            raise ArtifactError(f"{folder}: cannot load model weights ({str(exc).splitlines()[0][:200]})") from None
    try:
        model = AutoModelForTokenClassification.from_pretrained(str(folder))
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{folder}: cannot load model weights ({str(exc).splitlines()[0][:200]})") from None
    from .cached import tagger_for

    tagger = tagger_for(model, encoder, enc.prompt_attention)
    if getattr(tagger, "word_shapes", None) is not None:
        tagger.word_shapes.load(folder)
    return tagger.eval(), encoder, labels, manifest


def backend_name(tagger: Tagger) -> str:
    """How a report names what ran: ``pytorch`` or ``onnx:int8 (CPUExecutionProvider)``."""
    if tagger.variant == "pytorch":
        return "pytorch"
    return f"onnx:{tagger.variant} ({', '.join(tagger.providers)})"
