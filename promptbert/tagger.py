"""The public API: ``Tagger.from_pretrained(path)(texts)``.

One object for every caller -- the service, ``promptbert predict`` and ``evaluate``, the export's
gates -- so that they all pre- and post-process alike. An artifact folder runs on ONNX Runtime
(no torch); a model folder from ``promptbert train`` runs on PyTorch (needs the ``train`` extra).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, overload

import numpy as np

from . import constants as C
from .encoding import Context
from .errors import ArtifactError, InputError
from .labels import LabelMap
from .manifest import ArtifactConfig, ModelManifest, kind_of, version_warnings
from .pipeline import TaggingPipeline
from .prompt import PromptSpec
from .typed import PreparedPrompt, PromptedModel, narrow, spec_from_request

PromptLike = PromptSpec | PreparedPrompt | Mapping[str, Any]
FIXED_HEAD = ("prompt: this model has a fixed label set (head: fixed); request-time prompts need a model trained "
              "with head: types")

log = logging.getLogger("promptbert")

Entity = dict[str, Any]  # {"entity_group", "score", "word", "start", "end"}: the Hugging Face pipeline shape


class Tagger:
    """Tags raw texts (or word lists, for evaluation) with one loaded model.

    ``config`` is the manifest the model was loaded from: an ``ArtifactConfig`` for an artifact, a
    ``ModelManifest`` for a model folder, None for a graph the export is still gating.
    """

    def __init__(self, pipeline: TaggingPipeline, config: ArtifactConfig | ModelManifest | None = None,
                 variant: str = "", providers: Sequence[str] = (), path: Path | None = None,
                 prompted: PromptedModel | None = None) -> None:
        self.prompted = prompted  # a label-semantic (``types``) model: the prompt decides the labels
        self.prompt: PreparedPrompt | None = None  # the prompt of a view made by under(); None: the default
        self.pipeline = pipeline
        self.config = config
        self.variant = variant
        self.providers = list(providers)
        self.path = path  # the file or folder the weights came from
        self.default_aggregation = config.best_aggregation if config is not None else "first"

    @classmethod
    def prompted_by(cls, prompted: PromptedModel, config: ArtifactConfig | ModelManifest | None = None,
                    variant: str = "", providers: Sequence[str] = (), path: Path | None = None) -> Tagger:
        """A types model's tagger, answering under its default prompt until ``under()`` says otherwise."""
        return cls(prompted.pipeline(), config, variant, providers, path, prompted=prompted)

    @classmethod
    def from_pretrained(cls, path: str | Path, variant: str = "auto", device: str = "auto", *,
                        threads: int | None = None, spinning: bool = True, cache_entries: int = 256,
                        cache_bytes: int = 256 << 20, **pipeline_options: Any) -> Tagger:
        """Load an artifact folder (``promptbert export``) or a model folder (``promptbert train``).

        ``variant``: auto (fp16/fp32 on CUDA, int8 on CPU), fp32, optimized, int8 or fp16; ``device``: auto,
        cpu or cuda. ``pipeline_options`` go to ``TaggingPipeline`` (batching, ``split_sentences``);
        ``cache_entries`` and ``cache_bytes`` bound a types model's cache of prompt encodings.
        """
        folder = Path(path)
        if not folder.is_dir():
            raise ArtifactError(f"{folder}: artifact or model folder not found")
        if kind_of(folder) == C.MODEL_FOLDER_KIND:
            tagger = cls._from_model_folder(folder, variant, device, cache_entries, cache_bytes, **pipeline_options)
        else:
            from .runtime import Artifact

            artifact = Artifact(folder)
            pipe, loaded = artifact.pipeline(variant, device, threads, spinning, cache_entries, cache_bytes,
                                             **pipeline_options)
            if artifact.head == "types":  # `pipe` is the PromptedModel over the artifact's two graphs
                tagger = cls.prompted_by(pipe, artifact.config, loaded.variant, loaded.providers, loaded.path)
            else:
                tagger = cls(pipe, artifact.config, loaded.variant, loaded.providers, loaded.path)
        for line in version_warnings(tagger.config.versions):  # type: ignore[union-attr]
            log.warning("%s: %s", folder, line)
        return tagger

    @classmethod
    def _from_model_folder(cls, folder: Path, variant: str, device: str, cache_entries: int, cache_bytes: int,
                           **pipeline_options: Any) -> Tagger:
        """PyTorch, on CUDA where asked for or (auto) available. ONNX variants belong to artifacts."""
        if variant not in ("auto", "pytorch"):
            raise InputError(f"variant: {variant!r} is an artifact's; a model folder runs on PyTorch "
                             f"(export it for ONNX variants)")
        try:
            import torch

            from .training.evaluate import load_model_folder, torch_pipeline
        except ImportError as exc:
            raise ArtifactError(f"{folder}: a model folder runs on PyTorch, which is not installed ({exc.name}); "
                                f"install promptbert[train] or export the folder to an artifact") from None
        if device == "cuda" and not torch.cuda.is_available():
            raise InputError("device: cuda was asked for, but torch sees no CUDA device")
        target = "cuda" if device == "cuda" or (device == "auto" and torch.cuda.is_available()) else "cpu"
        model, encoder, labels, manifest = load_model_folder(folder)
        model.to(target)
        if manifest.encoding.head == "types":
            from .training.typed import prompted_model
            from .typed import PromptLimits, default_prompt

            prompted = prompted_model(model, encoder, default_prompt(folder, manifest.prompt.fingerprint),
                                      PromptLimits.of(manifest.encoding), cache_entries, cache_bytes, **pipeline_options)
            return cls.prompted_by(prompted, manifest, "pytorch", [f"torch:{target}"], folder)
        pipe = torch_pipeline(model, encoder, labels, **pipeline_options)
        return cls(pipe, manifest, "pytorch", [f"torch:{target}"], folder)

    def observe(self, on_call: Any = None, on_cache: Any = None) -> None:
        """Report every model call (``TaggingPipeline.on_call``) and, types models, every prompt-cache lookup."""
        self.pipeline.on_call = on_call
        if self.prompted is not None:
            self.prompted.base.on_call = on_call
            self.prompted.cache.observer = on_cache

    @property
    def labels(self) -> LabelMap:
        return self.pipeline.labels

    @property
    def entity_types(self) -> tuple[str, ...]:
        return self.pipeline.labels.entity_types

    @overload
    def predict(self, texts: str, aggregation_strategy: str | None = ..., min_score: float = ...,
                entity_types: Sequence[str] | None = ..., prompt: PromptLike | None = ...) -> list[Entity]: ...

    @overload
    def predict(self, texts: Sequence[str], aggregation_strategy: str | None = ..., min_score: float = ...,
                entity_types: Sequence[str] | None = ..., prompt: PromptLike | None = ...) -> list[list[Entity]]: ...

    def predict(self, texts: str | Sequence[str], aggregation_strategy: str | None = None, min_score: float = 0.0,
                entity_types: Sequence[str] | None = None, prompt: PromptLike | None = None
                ) -> list[Entity] | list[list[Entity]]:
        """Entities of one text (a list) or of several (a list per text), offsets into the text as given.

        ``aggregation_strategy``: simple, first, average or max (default: the artifact's best on dev);
        ``min_score`` drops entities scored lower; ``entity_types`` asks for only those types (a
        ``types`` model is prompted with just them; a fixed-head model's answer is filtered);
        ``prompt`` (``types`` models): a PromptSpec, or its fields as a mapping, instead of the default.
        """
        one = isinstance(texts, str)
        batch = [texts] if one else list(texts)  # type: ignore[list-item]
        strategy = aggregation_strategy or self.default_aggregation
        if self.prompted is not None:
            if prompt is not None or entity_types is not None:
                pipe = self.under(prompt, entity_types).pipeline
            else:
                pipe = self.pipeline
            out = pipe.entities(batch, strategy, min_score, None)
        else:
            if prompt is not None:
                raise InputError(FIXED_HEAD)
            out = self.pipeline.entities(batch, strategy, min_score, entity_types)
        return out[0] if one else out

    def predict_each(self, texts: Sequence[str], prompts: Sequence[PromptLike | None],
                     aggregation_strategy: str | None = None, min_score: float = 0.0,
                     entity_types: Sequence[str] | None = None) -> list[list[Entity]]:
        """Entities of each text under its own prompt (``types`` models; None: this tagger's prompt).
        Texts of different prompts share model calls, so mixing prompts costs what one prompt costs."""
        if len(prompts) != len(texts):
            raise InputError(f"prompts: {len(prompts)} for {len(texts)} texts")
        if all(p is None for p in prompts):  # this tagger's own prompt (a fixed head: its labels) for every text
            return self.predict(list(texts), aggregation_strategy, min_score, entity_types)
        if self.prompted is None:
            raise InputError(FIXED_HEAD)
        prepared = [self.prepare(p, entity_types) if p is not None or entity_types is not None else self.prompt
                    for p in prompts]
        return self.prompted.entities(list(texts), prepared, aggregation_strategy or self.default_aggregation, min_score)

    def prepare(self, prompt: PromptLike | None = None, entity_types: Sequence[str] | None = None) -> PreparedPrompt:
        """A prompt checked against this model's limits (InputError names the field that is wrong)."""
        if self.prompted is None:
            raise InputError(FIXED_HEAD)
        if isinstance(prompt, PreparedPrompt):
            if entity_types is None:
                return prompt
            prompt = prompt.spec
        prompted = self.prompted

        def make() -> PreparedPrompt:
            if prompt is None:  # this view's prompt (narrowed by entity_types), else the model's default
                spec = self.prompt.spec if self.prompt is not None else prompted.default_spec
            elif isinstance(prompt, PromptSpec):
                spec = prompt
            else:
                spec = spec_from_request(prompt)
            if entity_types is not None:
                spec = narrow(spec, list(entity_types))
            return prompted.prepare(spec)

        if isinstance(prompt, PromptSpec):
            return make()
        try:  # a request's prompt (JSON data) or a narrowing of this view's: remembered by its JSON (keys in the
            # order given: the order of the labels is the order of the types)
            key = (json.dumps(prompt), None if entity_types is None else tuple(entity_types),
                   None if self.prompt is None else self.prompt.key)
        except (TypeError, ValueError):
            return make()
        return prompted.prepared(key, make)

    def under(self, prompt: PromptLike | None = None, entity_types: Sequence[str] | None = None) -> Tagger:
        """This tagger answering under another prompt (``types`` models): same weights, cached encoding."""
        import copy

        prepared = self.prepare(prompt, entity_types)
        view = copy.copy(self)
        view.pipeline = self.prompted.pipeline(prepared)  # type: ignore[union-attr]
        view.prompt = prepared
        return view

    __call__ = predict

    def word_tags(self, sentences: Sequence[Sequence[str]], aggregation_strategy: str | None = None,
                  contexts: Sequence[Context] | None = None) -> list[list[tuple[str, float]]]:
        """IOB2 tag and score per word of already split sentences (what evaluation compares to gold tags);
        ``contexts``: each sentence's neighbouring words (data.document_contexts), for a model trained with them."""
        return self.pipeline.word_tags(sentences, aggregation_strategy or self.default_aggregation, contexts)

    def piece_probs(self, sentences: Sequence[Sequence[str]], contexts: Sequence[Context] | None = None
                    ) -> list[list[np.ndarray]]:
        """Probability rows of each word's pieces: score several aggregations with one model pass."""
        return self.pipeline.piece_probs(sentences, contexts)

    def tags_from_probs(self, probs: list[list[np.ndarray]], aggregation_strategy: str) -> list[list[tuple[str, float]]]:
        return self.pipeline.tags_from_probs(probs, aggregation_strategy)

    def __repr__(self) -> str:
        return f"Tagger({self.path}, variant={self.variant!r}, providers={self.providers}, types={list(self.entity_types)})"
