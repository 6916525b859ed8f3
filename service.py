"""promptbert NER service: plain text in, entities out, prompt wrapping done here.

    PROMPTBERT_ARTIFACT=artifacts/demo bentoml serve service:PromptBertNER --port 3000

Loads one artifact folder once (ONNX Runtime: CUDA + fp16/fp32 when a GPU really
comes up, else CPU + int8), warms it up, then reports ready on /readyz.
Endpoints: POST /tag (batchable: a list of texts), POST /tag_text (one text, with
options), POST /metadata; BentoML's own /livez, /readyz and /metrics.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import sys
import threading
import time
from collections import Counter
from typing import Annotated, Any, Literal

import bentoml
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from promptbert.constants import WORD_SPLITTER
from promptbert.errors import InputError, PromptBertError
from promptbert.manifest import best_aggregation, versions
from promptbert.runtime import Artifact, cuda_available
from promptbert.serving import KeepAliveBudget, ServeConfig, SharedLoad, inline_steps, tune_gc


# Set in a worker of `bentoml serve` (from 1), None in the serve process itself and in to_asgi() callers.
WORKER_INDEX = bentoml.server_context.worker_index


def _settings() -> ServeConfig:
    """The settings, and the artifact checked against them. This module is imported by the serve process
    before any worker starts: what would make every worker fail at start is caught there once, instead
    of BentoML restarting the workers in a loop, a traceback each, with a serve that never exits.
    (A worker's own load runs the same checks: ``Artifact.pipeline``.)"""
    config = ServeConfig.from_env()
    if not WORKER_INDEX:
        Artifact(config.artifact).check(config.variant, config.device)
    return config


try:
    CONFIG = _settings()
except PromptBertError as exc:  # a bad PROMPTBERT_* variable or artifact: one line and exit 2
    print(f"promptbert: {exc}", file=sys.stderr)
    raise SystemExit(2) from None

GPU = CONFIG.device == "cuda" or (CONFIG.device == "auto" and cuda_available())
WORKERS = CONFIG.resolved_workers(GPU)
THREADS = CONFIG.resolved_threads(WORKERS)


def _tracing_exporter() -> str | None:
    """The tracing exporter of BentoML's configuration (BENTOML_CONFIG), if any."""
    try:
        from bentoml._internal.configuration.containers import BentoMLContainer

        return BentoMLContainer.config.tracing.exporter_type.get()
    except Exception:  # noqa: BLE001 -- a private API: if it moves, keep tracing on rather than guess
        return "unknown"


TRACING = CONFIG.tracing_enabled(_tracing_exporter())
KEEPALIVE_REQUESTS = CONFIG.keepalive_requests if WORKERS > 1 else 0  # one worker: nothing to balance
EXAMPLE = "Angela Merkel met Emmanuel Macron in Paris to discuss the European Union budget."
log = logging.getLogger("bentoml.service.promptbert")

Text = Annotated[str, Field(max_length=CONFIG.max_chars, description="raw text; empty returns no entities")]


class TagInput(bentoml.IODescriptor):
    """POST /tag. Unknown fields are refused: a misspelt field must not yield a default answer."""

    model_config = ConfigDict(extra="forbid")
    texts: Annotated[list[Text], Field(min_length=1, max_length=CONFIG.max_items, examples=[[EXAMPLE]])]


class TagTextInput(bentoml.IODescriptor):
    """POST /tag_text: one text and the HF pipeline's options."""

    model_config = ConfigDict(extra="forbid")
    text: Annotated[Text, Field(examples=[EXAMPLE])]
    aggregation_strategy: Literal["simple", "first", "average", "max"] | None = None
    min_score: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    entity_types: list[str] | None = None


class Entity(BaseModel):
    """One entity in the Hugging Face pipeline shape; text[start:end] == word."""

    entity_group: str
    score: float
    word: str
    start: int
    end: int


# Seconds of one ONNX Runtime call: ~1 ms (one short text) to ~100 ms (a 128-text batch) on 2 CPU cores.
MODEL_CALL_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


@functools.cache
def model_metrics() -> Any:
    """This process's observer of model calls, for /metrics: how long each ONNX Runtime call took, how
    many rows it ran and how much of what it computed was padding. BentoML's own metrics stop at the
    batch; these say what share of the service's time the model takes (``bench/service.py`` reads them).

    Made on first use, in the worker: prometheus_client must be imported after BentoML has set
    ``PROMETHEUS_MULTIPROC_DIR`` there, or the workers' values never reach /metrics. Once per process.
    """
    from prometheus_client import Counter, Histogram

    seconds = Histogram("promptbert_model_call_seconds", "Wall time of one ONNX Runtime call", buckets=MODEL_CALL_BUCKETS)
    rows = Counter("promptbert_model_rows", "Rows (text windows) the model ran")
    padded = Counter("promptbert_model_padded_tokens", "Tokens the model computed, padding included (rows x width)")
    tokens = Counter("promptbert_model_tokens", "Tokens of text the model computed (padding excluded)")

    def observe(arrays: dict[str, np.ndarray], elapsed: float) -> None:
        mask = arrays["attention_mask"]
        seconds.observe(elapsed)
        rows.inc(mask.shape[0])
        padded.inc(mask.size)
        tokens.inc(int(mask.sum()))

    return observe


def bind_apis_once(instance: Any) -> None:
    """Bind each API method of the service instance once, as an instance attribute.

    BentoML's ``APIMethod.__get__`` builds a new bound wrapper (``inspect.signature``,
    ``functools.wraps``) on every attribute access, and its server looks the method up on every
    request and every batch: about 0.05 ms of CPU a request (empty texts, 8 clients: 0.48-0.52 ->
    0.43-0.46 ms, 3300-3500 -> 3700-3900 requests/s). ``APIMethod`` is a non-data descriptor, so an
    instance attribute of the same name takes precedence; the bound wrapper does not change.
    """
    for name, method in PromptBertNER.apis.items():
        instance.__dict__[name] = method.__get__(instance, type(instance))


@bentoml.service(
    name="promptbert",
    traffic={"timeout": CONFIG.timeout_s, "max_concurrency": CONFIG.max_concurrency},
    workers=WORKERS,
    logging={"access": {"enabled": CONFIG.access_log}},
    **({} if TRACING else {"tracing": {"excluded_urls": [".*"]}}),  # see ServeConfig.tracing_enabled
)
class PromptBertNER:
    def __init__(self) -> None:
        t0 = time.perf_counter()
        self.artifact = Artifact(CONFIG.artifact)
        cost = CONFIG.batch_cost()  # None: auto, the device's own from the providers ORT gives (Artifact.pipeline)
        self.pipe, self.loaded = self.artifact.pipeline(
            CONFIG.variant, CONFIG.device, THREADS or None, CONFIG.ort_spinning,
            max_batch_tokens=CONFIG.max_batch_tokens, max_batch_items=None,
            on_call=model_metrics(), split_sentences=CONFIG.split_sentences,
            **({} if cost is None else {"call_cost": cost}),
        )
        self.serving_versions = versions()
        self.default_strategy = CONFIG.aggregation or best_aggregation(self.artifact.manifest)
        self.batch_sizes: Counter[int] = Counter()
        self._lock = threading.Lock()
        bind_apis_once(self)
        self.pipe.entities([EXAMPLE])  # warm-up: /readyz turns green only after a real inference
        self.gc_state = tune_gc(CONFIG.gc_threshold if WORKER_INDEX else 0)  # not in to_asgi() callers
        self.ready = True
        log.info("promptbert: %s variant on %s, loaded and warmed up in %.1fs; tracing %s",
                 self.loaded.variant, self.loaded.providers, time.perf_counter() - t0, "on" if TRACING else "off")

    def __is_ready__(self) -> bool:
        return getattr(self, "ready", False)

    # PROMPTBERT_MAX_BATCH_SIZE=1 turns adaptive batching off (BentoML itself requires a size > 1).
    @bentoml.api(batchable=CONFIG.max_batch_size > 1, max_batch_size=max(2, CONFIG.max_batch_size),
                 max_latency_ms=CONFIG.max_latency_ms, input_spec=TagInput)
    async def tag(self, texts: list[str]) -> list[list[Entity]]:
        """Entities for each text (adaptive batching merges concurrent requests)."""
        with self._lock:
            self.batch_sizes[len(texts)] += 1
        return await self._infer(texts, self.default_strategy)  # type: ignore[return-value]

    async def _infer(self, texts: list[str], *options: Any) -> list[list[dict[str, Any]]]:
        """Run a batch on the event loop in steps (``inline_steps``: sorted by length, at most
        ``inline_chars`` characters each) and let the loop turn ``gather_yields`` times after each.

        On the loop rather than in a thread: the hand-off cost more CPU than it saved (2 workers,
        8 clients: 410-450 -> 470-486 sentences/s; 32 clients x 8 sentences with 128-text batches:
        781-790 -> 844-846). In steps, so that the loop is never held long: between steps it answers
        /livez, /readyz and /metrics. The turns matter for batching: while a step ran, the loop could
        not read the requests that arrived, and BentoML's dispatcher takes its queue the moment this
        batch is answered; a request needs three turns to get from its socket to that queue (read,
        ASGI task, BentoML's timeout task), so without them the next call holds only stragglers
        (32 clients x 1 sentence: 3.7-4.2 -> 7.8-8.1 requests per call). A text longer than
        ``inline_chars`` runs in a thread, and ``inline_chars`` 0 sends the whole batch to one.
        """
        if not CONFIG.inline_chars:
            return await asyncio.to_thread(self.pipe.entities, texts, *options)
        answers: list[list[dict[str, Any]]] = [[] for _ in texts]
        for step in inline_steps([len(t) for t in texts], CONFIG.inline_chars):
            part = [texts[i] for i in step]
            if len(part[0]) > CONFIG.inline_chars:
                out = await asyncio.to_thread(self.pipe.entities, part, *options)
            else:
                out = self.pipe.entities(part, *options)
                for _ in range(CONFIG.gather_yields):
                    await asyncio.sleep(0)
            for i, ents in zip(step, out):
                answers[i] = ents
        return answers

    @bentoml.api(input_spec=TagTextInput)
    async def tag_text(
        self,
        text: str,
        aggregation_strategy: str | None = None,
        min_score: float = 0.0,
        entity_types: list[str] | None = None,
    ) -> list[Entity]:
        """Entities for one text, with the options of the HF pipeline."""
        try:
            (ents,) = await self._infer([text], aggregation_strategy or self.default_strategy, min_score, entity_types)
        except InputError as exc:
            raise bentoml.exceptions.InvalidArgument(str(exc)) from None
        return ents  # type: ignore[return-value]

    @bentoml.api
    def metadata(self) -> dict[str, Any]:
        """What is being served: model, prompt, labels, variant, provider, versions, batching."""
        m = self.artifact.manifest
        with self._lock:
            sizes = dict(sorted(self.batch_sizes.items()))
        return {
            "artifact": str(self.artifact.folder),
            "variant": self.loaded.variant,
            "providers": self.loaded.providers,
            "base_model": m["source_model"].get("base_model"),
            "prompt": {"fingerprint": m["prompt"]["fingerprint"], "tokens": m["prompt"]["tokens"], "kind": m["prompt"]["kind"]},
            "labels": m["labels"],
            "entity_types": list(self.artifact.labels.entity_types),
            "metrics": m.get("metrics", {}),
            "default_aggregation": self.default_strategy,
            "word_splitter": WORD_SPLITTER,  # how raw text is cut into words here (the manifest's: at training)
            "split_sentences": CONFIG.split_sentences,
            "versions": m.get("versions", {}),  # where the artifact was exported
            "serving_versions": self.serving_versions,  # what runs it here, the loaded onnxruntime build included
            "workers": WORKERS,
            "tracing": TRACING,
            "access_log": CONFIG.access_log,
            "ort_threads_per_worker": THREADS or "ORT default",
            "gc": self.gc_state,
            "limits": {"max_batch_size": CONFIG.max_batch_size, "max_latency_ms": CONFIG.max_latency_ms,
                       "max_items": CONFIG.max_items, "max_chars": CONFIG.max_chars, "inline_chars": CONFIG.inline_chars,
                       "gather_yields": CONFIG.gather_yields,
                       "keepalive_requests": KEEPALIVE_REQUESTS},
            # what the pipeline really uses; null: each call filled up to max_batch_tokens (the GPU's default)
            "call_cost": dataclasses.asdict(self.pipe.call_cost) if self.pipe.call_cost else None,
            "batch_sizes_seen": sizes,
        }


# BentoML derives a response's MIME type from the output model's JSON schema, regenerated on every
# response (about 6% of the server's CPU under load, measured with py-spy). Ours are all JSON: say so once.
for _api in PromptBertNER.apis.values():
    _api.output_spec.media_type = "application/json"


def shared_load() -> SharedLoad | None:
    """This worker's slot in the serve's table of keep-alive connections. None outside a worker of
    `bentoml serve` (the serve process itself, to_asgi() in tests) or where the table cannot be made:
    the budget then falls back to in_flight/N."""
    if not WORKER_INDEX or WORKER_INDEX > WORKERS:
        return None
    try:
        return SharedLoad.for_worker(WORKERS, WORKER_INDEX - 1)
    except OSError as exc:
        log.warning("promptbert: workers do not share keep-alive counts (%s); each sheds in_flight/N", exc)
        return None


if KEEPALIVE_REQUESTS:
    PromptBertNER.add_asgi_middleware(KeepAliveBudget, every=KEEPALIVE_REQUESTS, load=shared_load())
